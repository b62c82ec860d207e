//! The Ethernet shim (issue 4): RINA straight over Ethernet between hosts, which here
//! are network namespaces joined by veth pairs or a bridge, with no IP address on any
//! interface (IPv6 is off too).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

// A member's rules: an Ethernet shim on eth0 and DIF `net` over it, then the rest.
use rina_e2e::netns::{eth_member as member, Hosts, IFACE};
use rina_e2e::*;

fn listen(addr: &str, app: &str) -> String {
    format!("[[listen]]\non = \"{addr}\"\ndif = \"net\"\napp = \"{app}\"\n")
}

fn connect(addr: &str, app: &str) -> String {
    format!("[[connect]]\nto = \"{addr}\"\ndif = \"net\"\napp = \"{app}\"\n")
}

fn write_rules(dir: &Path, name: &str, text: &str) -> PathBuf {
    rules(dir, name, text)
}

/// Runs a server in host `i` and waits until it listens (its name is registered).
fn server(hosts: &Hosts, i: usize, r: &Path, args: &[&str], stdin: Stdio, stdout: Stdio) -> Proc {
    let mut p = Proc::spawn(args[0], &mut hosts.rina_run(i, r, args, stdin, stdout));
    // `ip netns exec` execs the program: the pid is the server's.
    if !wait_for_rina_listener(p.pid(), Duration::from_secs(10)) {
        panic!("{} never listened: {}", args[0], p.kill_and_stderr());
    }
    p
}

/// Sends malformed and stray frames of Ethertype 0xD1F0 from host `i`: truncated,
/// wrong version, unknown kind, addressed to other processes, garbage names, data for
/// flows that do not exist. `count` frames, to broadcast and to `mac`.
fn junk_sender(hosts: &Hosts, i: usize, mac: &str, count: usize) -> Proc {
    let script = format!(
        r#"
import random, socket
random.seed(7)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("{IFACE}", 0))
me = s.getsockname()[4]
dsts = [b"\xff" * 6, bytes.fromhex("{mac}".replace(":", ""))]
for i in range({count}):
    kind = i % 6
    if kind == 0:
        body = bytes(random.randrange(256) for _ in range(random.randrange(10)))
    elif kind == 1:
        body = bytes([9, 0]) + bytes(random.randrange(256) for _ in range(30))
    elif kind == 2:
        body = bytes([1, 7]) + bytes(random.randrange(256) for _ in range(30))
    elif kind == 3:
        body = bytes([1, 1, 255, 255, 255, 255, 0, 0, 0, 9]) + bytes(random.randrange(256) for _ in range(random.randrange(40)))
    elif kind == 4:
        body = bytes([1, 0]) + random.randrange(2**32).to_bytes(4, "big") + bytes(random.randrange(256) for _ in range(60))
    else:
        body = bytes([1, 0, 0, 0, 0, 0]) + bytes(random.randrange(256) for _ in range(random.randrange(1400)))
    s.send(dsts[i % 2] + me + b"\xd1\xf0" + body)
print("sent", {count})
"#
    );
    Proc::spawn(
        "junk frames",
        hosts
            .command(i, &["python3", "-c", &script])
            .stdout(Stdio::null()),
    )
}

/// Two hosts joined by a veth pair with no IP address at all: nc to nc, 8 MiB each way
/// at once, byte-exact, while junk frames are thrown at the server; a capture on the
/// veth sees Ethertype 0xD1F0 frames and no IP packet.
#[test]
fn nc_pair_over_a_veth_without_ip() {
    assert!(have("nc") && have("tcpdump") && have("python3"));
    let dir = temp_dir();
    let hosts = Hosts::pair("eth-nc");
    for i in 0..2 {
        let out = output_within(
            &mut hosts.command(i, &["ip", "-o", "addr", "show", "dev", IFACE]),
            Duration::from_secs(10),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("inet"), "an address on {IFACE}: {text}");
    }
    let s = write_rules(
        dir.path(),
        "s.toml",
        &member(true, &listen("10.9.0.1:5000", "nc-server")),
    );
    let c = write_rules(
        dir.path(),
        "c.toml",
        &member(false, &connect("10.9.0.1:5000", "nc-server")),
    );
    let ex = Exchange::new(dir.path(), 8 << 20, 41);
    let capture = hosts.capture(0, &dir.path().join("cap.pcap"), &dir.path().join("cap.err"));
    let (sin, sout) = ex.server_io();
    let mut srv = server(
        &hosts,
        0,
        &s,
        &["nc", "-l", "-N", "10.9.0.1", "5000"],
        sin,
        sout,
    );
    let mut junk = junk_sender(&hosts, 1, &hosts.mac(0), 3000);
    let (cin, cout) = ex.client_io();
    let mut client = Proc::spawn(
        "nc",
        &mut hosts.rina_run(1, &c, &["nc", "10.9.0.1", "5000"], cin, cout),
    );
    ex.check(&mut client, &mut srv);
    assert!(
        junk.expect_exit(Duration::from_secs(30)).success(),
        "junk: {}",
        junk.stderr()
    );
    capture.expect_only_rina(2 * (8 << 20) / 1500);
}

/// The Python echo server used below: each connection's bytes come back once its
/// sender half-closes.
const ECHO: &str = r#"
import socket, sys, threading
l = socket.socket(); l.bind(("10.9.0.1", int(sys.argv[1]))); l.listen(8)
def serve(c):
    data = c.makefile("rb").read()
    c.sendall(data); c.close()
while True:
    c, _ = l.accept()
    threading.Thread(target=serve, args=(c,)).start()
"#;

/// Three hosts on one bridge: a server on one, a client on each of the other two at the
/// same time; every byte comes back.
#[test]
fn three_hosts_on_a_bridge() {
    assert!(have("nc") && have("python3"));
    let dir = temp_dir();
    let hosts = Hosts::bridge("eth-br", 3);
    let s = write_rules(
        dir.path(),
        "s.toml",
        &member(true, &listen("10.9.0.1:7000", "echo")),
    );
    let c = write_rules(
        dir.path(),
        "c.toml",
        &member(false, &connect("10.9.0.1:7000", "echo")),
    );
    let _srv = server(
        &hosts,
        0,
        &s,
        &["python3", "-c", ECHO, "7000"],
        Stdio::null(),
        Stdio::null(),
    );
    let mut clients = Vec::new();
    for i in 1..3 {
        let data = random_bytes(2 << 20, 50 + i as u64);
        let (input, output) = (
            dir.path().join(format!("in{i}")),
            dir.path().join(format!("out{i}")),
        );
        std::fs::write(&input, &data).unwrap();
        let p = Proc::spawn(
            "nc",
            &mut hosts.rina_run(
                i,
                &c,
                &["nc", "-N", "10.9.0.1", "7000"],
                stdin_from(&input),
                stdout_to(&output),
            ),
        );
        clients.push((p, data, output));
    }
    for (mut p, data, output) in clients {
        let st = p.expect_exit(Duration::from_secs(30));
        assert!(st.success(), "client: {}", p.stderr());
        let got = std::fs::read(&output).unwrap();
        assert!(
            got == data,
            "{} of {} bytes came back",
            got.len(),
            data.len()
        );
    }
}

/// Two server processes in one host, on one interface, with different application
/// names: a client on the other host reaches each. (They joined the DIF through a
/// member on the other host, as full members (`role = "member"`) that take newcomers,
/// and the client joins through one of them: processes of one host do not see each
/// other's frames.)
#[test]
fn two_servers_on_one_interface() {
    assert!(have("nc") && have("python3"));
    let dir = temp_dir();
    let hosts = Hosts::pair("eth-two");
    let named = |name: &str, port: u16| {
        format!(
            "import socket\nl = socket.socket(); l.bind(('10.9.0.1', {port})); l.listen(4)\nwhile True:\n    c, _ = l.accept(); c.sendall(b'{name}\\n'); c.close()\n"
        )
    };
    // The member that starts the DIF lives on host 1 and stays.
    let boot = write_rules(
        dir.path(),
        "boot.toml",
        &member(true, &listen("10.9.0.1:9", "anchor")),
    );
    let _anchor = server(
        &hosts,
        1,
        &boot,
        &["python3", "-c", &named("anchor", 9)],
        Stdio::null(),
        Stdio::null(),
    );
    let mut servers = Vec::new();
    for (name, port) in [("alpha", 7001u16), ("beta", 7002)] {
        let r = write_rules(
            dir.path(),
            &format!("{name}.toml"),
            &member(false, &listen(&format!("10.9.0.1:{port}"), name)).replace(
                "{ dif = \"eth\" }\n",
                "{ dif = \"eth\" }\nrole = \"member\"\n",
            ),
        );
        servers.push(server(
            &hosts,
            0,
            &r,
            &["python3", "-c", &named(name, port)],
            Stdio::null(),
            Stdio::null(),
        ));
    }
    let c = write_rules(
        dir.path(),
        "c.toml",
        &member(
            false,
            &format!(
                "{}{}",
                connect("10.9.0.1:7001", "alpha"),
                connect("10.9.0.1:7002", "beta")
            ),
        ),
    );
    for (name, port) in [("alpha", "7001"), ("beta", "7002"), ("alpha", "7001")] {
        let out = output_within(
            &mut hosts.rina_run(
                1,
                &c,
                &["nc", "-N", "10.9.0.1", port],
                Stdio::null(),
                Stdio::piped(),
            ),
            Duration::from_secs(60),
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{name}\n"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A 60 KiB datagram written in one `sendto` over a 1500-byte MTU is fragmented by the
/// normal DIF and arrives whole, in one `recvfrom`; the answer, as large, comes back
/// whole too.
#[test]
fn a_60_kib_sdu_arrives_whole() {
    assert!(have("python3"));
    let dir = temp_dir();
    let hosts = Hosts::pair("eth-sdu");
    let mtu = output_within(
        &mut hosts.command(0, &["cat", &format!("/sys/class/net/{IFACE}/mtu")]),
        Duration::from_secs(10),
    );
    assert_eq!(String::from_utf8_lossy(&mtu.stdout).trim(), "1500");
    let s = write_rules(
        dir.path(),
        "s.toml",
        &member(true, &listen("10.9.0.1:6000", "big")),
    );
    let c = write_rules(
        dir.path(),
        "c.toml",
        &member(false, &connect("10.9.0.1:6000", "big")),
    );
    let log = dir.path().join("server.log");
    let server_script = r#"
import hashlib, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.9.0.1", 6000))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(65536)
    print(len(data), hashlib.sha256(data).hexdigest(), flush=True)
    s.sendto(bytes(reversed(data)), peer)
"#;
    let mut srv = Proc::spawn(
        "udp server",
        &mut hosts.rina_run(
            0,
            &s,
            &["python3", "-c", server_script],
            Stdio::null(),
            stdout_to(&log),
        ),
    );
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(&log)
            .is_ok_and(|t| t.starts_with("ready"))),
        "server: {}",
        srv.kill_and_stderr()
    );
    let client_script = r#"
import hashlib, socket
data = bytes((i * 7 + 3) % 251 for i in range(61440))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
# Datagrams may be lost (one lost frame of its 42 loses this one): ask again, as a
# UDP client does; what arrives must be whole.
for attempt in range(5):
    s.sendto(data, ("10.9.0.1", 6000))
    try:
        back, peer = s.recvfrom(65536)
        break
    except socket.timeout:
        continue
assert back == bytes(reversed(data)), len(back)
print(len(data), hashlib.sha256(data).hexdigest())
"#;
    let out = output_within(
        &mut hosts.rina_run(
            1,
            &c,
            &["python3", "-c", client_script],
            Stdio::null(),
            Stdio::piped(),
        ),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(sent.starts_with("61440 "), "{sent}");
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(&log)
            .is_ok_and(|t| t.lines().nth(1) == Some(sent.as_str()))),
        "the server got {:?}",
        std::fs::read_to_string(&log)
    );
}

/// Without CAP_NET_RAW a program whose rules name an Ethernet DIF stops at once with
/// a message saying so and how to grant it; nothing runs, nothing is sent.
#[test]
fn without_cap_net_raw_the_program_stops() {
    assert!(have("setpriv") && have("nc"));
    let dir = temp_dir();
    let c = write_rules(
        dir.path(),
        "c.toml",
        &member(false, &connect("10.9.0.1:5000", "x")),
    );
    let marker = dir.path().join("ran");
    let out = output_within(
        std::process::Command::new("setpriv")
            .args(["--bounding-set", "-net_raw", "--"])
            .arg(rina())
            .args(["run", "-c"])
            .arg(&c)
            .args(["--", "sh", "-c", &format!("touch {}", marker.display())])
            .stdin(Stdio::null()),
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("needs CAP_NET_RAW"), "{err}");
    assert!(err.contains("ambient"), "{err}");
    assert!(!marker.exists(), "the program ran");
}

/// `examples/ethernet/demo.sh` runs as documented: the DIF is secured, the two lines
/// cross, only RINA frames are on the wire and none holds the text.
#[test]
fn the_ethernet_demo_runs() {
    assert!(have("nc") && have("tcpdump"));
    let root = bin_dir().join("../..");
    let out = output_within(
        std::process::Command::new(root.join("examples/ethernet/demo.sh"))
            .env("RINA_BIN", rina())
            .stdin(Stdio::null()),
        Duration::from_secs(120),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("client got: hello from the server, over RINA over Ethernet"),
        "{text}"
    );
    assert!(
        text.contains("server got: hello from the client, over RINA over Ethernet"),
        "{text}"
    );
    assert!(text.contains("IP packets:                 0"), "{text}");
    assert!(text.contains("frames with readable text:  0"), "{text}");
    assert!(text.contains("DIF net is secured: member key"), "{text}");
    let frames: usize = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("frames of Ethertype 0xd1f0: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(frames > 0, "{text}");
}

/// Nobody on the wire answers for the DIF: the client's connect fails with
/// "Network is unreachable" within the bound, and the log says who did not answer.
#[test]
fn nobody_answering_is_a_clear_error() {
    assert!(have("nc"));
    let dir = temp_dir();
    let hosts = Hosts::pair("eth-none");
    let c = write_rules(
        dir.path(),
        "c.toml",
        &member(false, &connect("10.9.0.1:5000", "x")),
    );
    expect_unreachable(
        &mut hosts.rina_run(
            1,
            &c,
            &["nc", "-v", "-N", "10.9.0.1", "5000"],
            Stdio::null(),
            Stdio::null(),
        ),
        &dir.path().join("c.log"),
        "no member of DIF net answered for net on interface eth0",
    );
}

/// A DIF whose members are joined by different shims: A --Ethernet-- B --UDP-- C. B (a
/// `rina node` in host 0, over both) relays; nc from A (host 1) to C (host 0, over UDP
/// on loopback), 2 MiB each way, byte-exact.
#[test]
fn a_dif_over_ethernet_and_udp() {
    assert!(have("nc"));
    let dir = temp_dir();
    let hosts = Hosts::pair("eth-mixed");
    let udp_b = free_udp_port();
    let b_rules = write_rules(
        dir.path(),
        "b.toml",
        &format!(
            "[[dif]]\nname = \"eth\"\ntype = \"ethernet\"\ninterface = \"{IFACE}\"\n\n[[dif]]\nname = \"udp\"\ntype = \"udp\"\nbind = \"127.0.0.1:{udp_b}\"\n\n[[dif]]\nname = \"net\"\ntype = \"normal\"\nover = [\"eth\", \"udp\"]\nbootstrap = true\n"
        ),
    );
    let c_rules = write_rules(
        dir.path(),
        "c.toml",
        &format!(
            "[[dif]]\nname = \"udp\"\ntype = \"udp\"\nbind = \"127.0.0.1:0\"\n\n[[dif]]\nname = \"net\"\ntype = \"normal\"\nover = [\"udp\"]\nenroll-via = {{ neighbor = \"127.0.0.1:{udp_b}\" }}\n\n{}",
            listen("10.9.0.3:5000", "far")
        ),
    );
    let a_rules = write_rules(
        dir.path(),
        "a.toml",
        &member(false, &connect("10.9.0.3:5000", "far")),
    );
    let rina_path = rina();
    let b_log = dir.path().join("b.log");
    let mut b = Proc::spawn(
        "rina node",
        hosts
            .command(
                0,
                &[
                    rina_path.to_str().unwrap(),
                    "node",
                    "-c",
                    b_rules.to_str().unwrap(),
                ],
            )
            .env("RINA_LOG", "info")
            .env("RINA_LOG_FILE", &b_log),
    );
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(&b_log)
            .is_ok_and(|t| t.contains("enrolled in DIF net"))),
        "B: {}",
        b.kill_and_stderr()
    );
    // A is the client, C the server.
    let ex = Exchange::new(dir.path(), 2 << 20, 91);
    let (sin, sout) = ex.server_io();
    let mut c = server(
        &hosts,
        0,
        &c_rules,
        &["nc", "-l", "-N", "10.9.0.3", "5000"],
        sin,
        sout,
    );
    let (cin, cout) = ex.client_io();
    let mut a = Proc::spawn(
        "nc",
        &mut hosts.rina_run(1, &a_rules, &["nc", "10.9.0.3", "5000"], cin, cout),
    );
    ex.check(&mut a, &mut c);
}
