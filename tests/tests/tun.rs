//! `rina tun`: IP over RINA. Two hosts (network namespaces) whose only link is a veth
//! with no IP address run `rina tun` over the Ethernet shim: `ping` crosses the
//! tunnel (IPv4 and IPv6), UDP datagrams (one of them in IP fragments) come back, plain `nc` over
//! TCP/IP inside it moves 8 MiB each way byte-exact, every packet one device gave
//! reaches the other (none dropped for want of room in the flow), and a
//! capture on the veth sees only RINA's Ethertype. Without CAP_NET_ADMIN it says so.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rina_e2e::netns::{Hosts, IFACE};
use rina_e2e::*;

/// A UDP server in host 2 that sends each datagram back reversed.
const UDP_ECHO: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("10.77.0.2", 5003))
print("ready", flush=True)
while True:
    d, a = s.recvfrom(70000); s.sendto(d[::-1], a)
"#;

/// A UDP client in host 1: each size until answered (bounded), "SIZE ok" if the
/// answer is right.
const UDP_ASK: &str = r#"
import os, socket
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(0.5)
for size in (1200, 4000):
    d = os.urandom(size)
    for _ in range(20):
        c.sendto(d, ("10.77.0.2", 5003))
        try:
            got, _ = c.recvfrom(70000)
        except socket.timeout:
            continue
        print(size, "ok" if got == d[::-1] else "wrong", flush=True)
        break
"#;

/// Host `me`'s rules (1 or 2): the Ethernet shim, DIF `net` (host 1 bootstraps it),
/// and a tunnel `10.77.0.{me}/24` whose peer is the other host's tunnel.
fn tun_rules(me: u8) -> String {
    let other = 3 - me;
    let join = if me == 1 {
        "bootstrap = true"
    } else {
        "enroll-via = { dif = \"eth\" }"
    };
    format!(
        "[[dif]]\nname = \"eth\"\ntype = \"ethernet\"\ninterface = \"{IFACE}\"\n\n\
         [[dif]]\nname = \"net\"\ntype = \"normal\"\nover = [\"eth\"]\n{join}\n\n\
         [tun]\nname = \"rina0\"\ndif = \"net\"\napp = \"tun-{me}\"\n\
         addresses = [\"10.77.0.{me}/24\", \"fd77::{me}/64\"]\n\n\
         [[tun.peer]]\napp = \"tun-{other}\"\nroutes = [\"10.77.0.{other}/32\", \"fd77::{other}/128\"]\n"
    )
}

/// Starts `rina tun` in host `i` and waits (bounded) until its device is up.
fn start_tun(hosts: &Hosts, i: usize, rules: &Path, err: &Path) -> Proc {
    let mut p = Proc::spawn(
        "rina tun",
        hosts
            .command(
                i,
                &[
                    rina().to_str().unwrap(),
                    "tun",
                    "-c",
                    rules.to_str().unwrap(),
                ],
            )
            .env("RINA_STRICT", "1")
            .env("RINA_LOG", "info")
            .env("RINA_LOG_FILE", err.with_extension("log"))
            .stdout(Stdio::null())
            .stderr(stdout_to(err)),
    );
    let up = wait_until(Duration::from_secs(15), || {
        std::fs::read_to_string(err).is_ok_and(|t| t.contains("SIGINT or SIGTERM stops it"))
    });
    if !up {
        let _ = p.kill_and_stderr();
        panic!(
            "rina tun never came up in host {i}: {}",
            std::fs::read_to_string(err).unwrap_or_default()
        );
    }
    p
}

#[test]
fn ping_and_tcp_cross_a_tunnel_with_only_rina_on_the_wire() {
    assert!(have("ping") && have("nc") && have("tcpdump"));
    let dir = temp_dir();
    let hosts = Hosts::pair("tun");
    let capture = hosts.capture(0, &dir.path().join("cap.pcap"), &dir.path().join("cap.err"));
    // IPv6 on for the devices made from now on (the tunnels'), still off on the veth.
    for i in 0..2 {
        let st = output_within(
            &mut hosts.command(
                i,
                &["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=0"],
            ),
            Duration::from_secs(10),
        )
        .status;
        assert!(st.success(), "sysctl in host {i}");
    }
    let rules: Vec<PathBuf> = (1..=2)
        .map(|me| rules(dir.path(), &format!("tun{me}.toml"), &tun_rules(me)))
        .collect();
    let a = start_tun(&hosts, 0, &rules[0], &dir.path().join("a.err"));
    let b = start_tun(&hosts, 1, &rules[1], &dir.path().join("b.err"));
    // The device has the rules' address and an MTU one PDU carries (below the veth's).
    let out = output_within(
        &mut hosts.command(0, &["ip", "-o", "addr", "show", "dev", "rina0"]),
        Duration::from_secs(10),
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("inet 10.77.0.1/24"), "{shown}");
    let out = output_within(
        &mut hosts.command(0, &["ip", "-o", "link", "show", "dev", "rina0"]),
        Duration::from_secs(10),
    );
    let link = String::from_utf8_lossy(&out.stdout);
    let mtu: usize = link
        .split_whitespace()
        .skip_while(|w| *w != "mtu")
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no MTU in {link}"));
    assert!((1280..1500).contains(&mtu), "mtu {mtu}");
    // ICMP: the first echo waits for the flow, none is lost.
    let out = output_within(
        &mut hosts.command(0, &["ping", "-c", "5", "-i", "0.2", "-W", "5", "10.77.0.2"]),
        Duration::from_secs(30),
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("5 received"),
        "{said}"
    );
    let six = ["ping", "-6", "-c", "3", "-i", "0.2", "-W", "5", "fd77::2"];
    let out = output_within(&mut hosts.command(0, &six), Duration::from_secs(30));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("3 received"),
        "IPv6: {said}"
    );
    // UDP: a datagram and one larger than the MTU (IP fragments inside the tunnel).
    let mut server = Proc::spawn(
        "udp echo",
        hosts
            .command(1, &["python3", "-c", UDP_ECHO])
            .stdout(Stdio::piped()),
    );
    if server
        .stdout_until("ready", Duration::from_secs(10))
        .is_none()
    {
        panic!("the UDP echo never started: {}", server.kill_and_stderr());
    }
    let out = output_within(
        &mut hosts.command(0, &["python3", "-c", UDP_ASK]),
        Duration::from_secs(30),
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("1200 ok") && said.contains("4000 ok"),
        "{said}"
    );
    // TCP: plain nc (not interposed) inside the tunnel, 8 MiB each way (one way at a
    // time: OpenBSD nc stops sending once its peer's end of stream comes).
    let up = random_bytes(8 << 20, 47);
    assert!(
        transfer(&hosts, dir.path(), (0, 1), "10.77.0.2", &up) == up,
        "up differs"
    );
    let down = random_bytes(8 << 20, 48);
    assert!(
        transfer(&hosts, dir.path(), (1, 0), "10.77.0.1", &down) == down,
        "down differs"
    );
    // TCP over IPv6 (TSO6 inside the tunnel).
    let v6 = random_bytes(4 << 20, 49);
    assert!(
        transfer(&hosts, dir.path(), (0, 1), "fd77::2", &v6) == v6,
        "IPv6 differs"
    );
    // Every packet is accounted for (`rina ctl`): what one host gave its device went
    // to the flow, what the flow carried was written to the other's device, and none
    // was dropped for want of room in the flow (a full flow holds the device back
    // instead: before, one run of this test dropped 2 and 9 packets there).
    let pids = [a.pid(), b.pid()];
    let carried = || {
        let t = [0, 1].map(|i| tunnel_counts(&hosts, i, pids[i]));
        let tx = [0, 1].map(|i| device_packets(&hosts, i, "tx"));
        let rx = [0, 1].map(|i| device_packets(&hosts, i, "rx"));
        let whole = (0..2).all(|i| {
            t[i]["from_device"] == tx[i]
                && t[i]["to_device"] == rx[i]
                && t[i]["sdus_sent"] == t[1 - i]["sdus_received"]
        });
        (whole, format!("device tx {tx:?}, rx {rx:?}; tunnels {t:?}"))
    };
    let whole = wait_until(Duration::from_secs(10), || carried().0);
    let (_, said) = carried();
    assert!(whole, "packets lost in the tunnel: {said}");
    for (i, pid) in pids.into_iter().enumerate() {
        let t = tunnel_counts(&hosts, i, pid);
        for dropped in ["no_flow", "sdus_dropped", "not_admitted", "device_refused"] {
            assert_eq!(t[dropped], 0, "host {i}: {dropped}: {said}");
        }
        // And `rina ctl` says so in words.
        let rina = rina();
        let args = [rina.to_str().unwrap(), "ctl", &pid.to_string()];
        let out = output_within(&mut hosts.command(i, &args), Duration::from_secs(10));
        let text = String::from_utf8_lossy(&out.stdout);
        for words in [
            "tunnel rina0: ",
            " packets from the device: ",
            ", 0 without a flow; ",
            " 0 SDUs not admitted, 0 refused by the device",
        ] {
            assert!(text.contains(words), "host {i}: no {words:?} in {text}");
        }
    }
    // A member that is not a peer of the rules (a gateway whose flows come from
    // "intruder") cannot open a flow to a tunnel.
    let intruder = intruder(&hosts, dir.path());
    drop(intruder);
    capture.expect_only_rina(2 * (8 << 20) / 1500);
}

/// Runs, in host 2, a gateway whose UDP ingress sends to host 1's tunnel as
/// "intruder", sends it a datagram, and checks that the tunnel refused the flow.
fn intruder(hosts: &Hosts, dir: &Path) -> Proc {
    let text = format!(
        "[[dif]]\nname = \"eth\"\ntype = \"ethernet\"\ninterface = \"{IFACE}\"\n\n\
         [[dif]]\nname = \"net\"\ntype = \"normal\"\nover = [\"eth\"]\nenroll-via = {{ dif = \"eth\" }}\n\n\
         [[ingress]]\nlisten = \"127.0.0.1:7777\"\nproto = \"udp\"\ndif = \"net\"\napp = \"tun-1\"\nlocal-app = \"intruder\"\n"
    );
    let r = rules(dir, "intruder.toml", &text);
    let err = dir.join("intruder.err");
    let mut gw = Proc::spawn(
        "rina gateway",
        hosts
            .command(
                1,
                &[
                    rina().to_str().unwrap(),
                    "gateway",
                    "-c",
                    r.to_str().unwrap(),
                ],
            )
            .stdout(Stdio::null())
            .stderr(stdout_to(&err)),
    );
    let read = || std::fs::read_to_string(&err).unwrap_or_default();
    if !wait_until(Duration::from_secs(15), || read().contains("stops it")) {
        let _ = gw.kill_and_stderr();
        panic!("the intruder's gateway never started: {}", read());
    }
    let send = "import socket; socket.socket(2, 2).sendto(b'E' * 60, ('127.0.0.1', 7777))";
    let st = output_within(
        &mut hosts.command(1, &["python3", "-c", send]),
        Duration::from_secs(10),
    )
    .status;
    assert!(st.success(), "cannot send to the intruder's gateway");
    let refused = wait_until(Duration::from_secs(20), || {
        read().contains("no flow for UDP client 127.0.0.1:")
    });
    assert!(refused, "the intruder's flow was not refused: {}", read());
    // Refused by the tunnel, for not being a peer (not for any other reason).
    let log = dir.join("a.log");
    let said = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&log)
            .is_ok_and(|t| t.contains("tunnel: a flow from intruder refused"))
    });
    assert!(
        said,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    gw
}

/// What the tunnel of process `pid` in host `i` carried (`rina ctl --json`).
fn tunnel_counts(hosts: &Hosts, i: usize, pid: u32) -> serde_json::Value {
    let rina = rina();
    let args = [rina.to_str().unwrap(), "ctl", &pid.to_string(), "--json"];
    let out = output_within(&mut hosts.command(i, &args), Duration::from_secs(10));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "rina ctl in host {i}: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    report["tunnel"].clone()
}

/// The packets host `i`'s tunnel device sent (`way` "tx": those the host's IP stack
/// gave the tunnel) or received ("rx": those the tunnel wrote to it).
fn device_packets(hosts: &Hosts, i: usize, way: &str) -> serde_json::Value {
    let path = format!("/sys/class/net/rina0/statistics/{way}_packets");
    let out = output_within(
        &mut hosts.command(i, &["cat", &path]),
        Duration::from_secs(10),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let n: u64 = text
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{path} in host {i}: {text:?}"));
    n.into()
}

/// Sends `data` with `nc -N` from host `from` to `nc -l` on `to_ip` in host `to`,
/// inside the tunnel: what the listener received.
fn transfer(
    hosts: &Hosts,
    dir: &Path,
    (from, to): (usize, usize),
    to_ip: &str,
    data: &[u8],
) -> Vec<u8> {
    let (inp, out) = (dir.join(format!("in{from}")), dir.join(format!("out{to}")));
    std::fs::write(&inp, data).expect("write the data");
    let mut server = Proc::spawn(
        "nc -l",
        hosts
            .command(to, &["nc", "-l", to_ip, "5000"])
            .stdout(stdout_to(&out)),
    );
    let listening = hosts.wait_listening(to, 5000, Duration::from_secs(10));
    assert!(listening, "nc never listened: {}", server.kill_and_stderr());
    let mut client = Proc::spawn(
        "nc",
        hosts
            .command(from, &["nc", "-N", to_ip, "5000"])
            .stdin(stdin_from(&inp))
            .stdout(Stdio::null()),
    );
    for (p, who) in [(&mut client, "client"), (&mut server, "server")] {
        let st = p.expect_exit(Duration::from_secs(60));
        assert!(st.success(), "{who}: {st:?}: {}", p.stderr());
    }
    std::fs::read(&out).expect("the received bytes")
}

#[test]
fn without_cap_net_admin_it_says_so() {
    assert!(have("setpriv"));
    let dir = temp_dir();
    let text = format!(
        "{}\n[tun]\nname = \"rina-nocap\"\ndif = \"net\"\napp = \"t\"\naddresses = [\"10.78.0.1/24\"]\n",
        many::udp_member(free_udp_port(), None, "")
    );
    let path = rules(dir.path(), "nocap.toml", &text);
    let out = output_within(
        Command::new("setpriv")
            .args([
                "--bounding-set",
                "-net_admin",
                "--inh-caps",
                "-net_admin",
                "--",
            ])
            .arg(rina())
            .args(["tun", "-c"])
            .arg(&path),
        Duration::from_secs(15),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("creating TUN device rina-nocap needs CAP_NET_ADMIN"),
        "{err}"
    );
}
