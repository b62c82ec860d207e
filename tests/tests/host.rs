//! The host member (issue 13): one long-lived `rina node` per host (network namespace)
//! serves the programs of its host, which run no stack of their own
//! (`[settings] stack = "host"`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rina_e2e::netns::{eth_member, Hosts};
use rina_e2e::*;

/// A program's rules: served by the host member at `socket`; connect and listen on
/// `127.0.0.1:port` go to `app` in DIF `net`.
fn program_rules(socket: &str, port: u16, app: &str) -> String {
    format!(
        "[settings]\nstack = \"host\"\nhost-socket = \"{socket}\"\n\n\
         [[connect]]\nto = \"127.0.0.1:{port}\"\ndif = \"net\"\napp = \"{app}\"\n\n\
         [[listen]]\non = \"*:{port}\"\ndif = \"net\"\napp = \"{app}\"\n"
    )
}

/// `[host]` at `socket`, keeping its state beside its rules, then `extra` (allow
/// rules).
fn host_section(socket: &str, extra: &str) -> String {
    let state = socket.trim_start_matches('@');
    format!("[host]\nsocket = \"{socket}\"\nstate = \"{state}.state.json\"\n{extra}")
}

/// A host member over Ethernet: bootstraps DIF `net`, or joins it by broadcast.
fn eth_host_member(bootstrap: bool, socket: &str) -> String {
    eth_member(bootstrap, &host_section(socket, ""))
}

/// A member over UDP on loopback at `udp`: bootstraps DIF `net`, or joins it through
/// the member at `via`; `extra` follows.
fn udp_member(udp: u16, via: Option<u16>, extra: &str) -> String {
    let join = via.map_or_else(
        || "bootstrap = true".to_owned(),
        |v| format!("enroll-via = {{ dif = \"udp0\", neighbor = \"127.0.0.1:{v}\" }}"),
    );
    format!(
        "[[dif]]\nname = \"udp0\"\ntype = \"udp\"\nbind = \"127.0.0.1:{udp}\"\n\n\
         [[dif]]\nname = \"net\"\ntype = \"normal\"\nover = \"udp0\"\n{join}\n\n{extra}"
    )
}

/// `rina node -c RULES` in namespace `i` of `hosts`, waited for until it serves
/// programs (its socket listens).
fn node_in(hosts: &Hosts, i: usize, rules: &Path, socket: &str) -> Proc {
    let rina = rina();
    let mut p = Proc::spawn(
        "host member",
        &mut hosts.command(
            i,
            &[
                rina.to_str().unwrap(),
                "node",
                "-c",
                rules.to_str().unwrap(),
            ],
        ),
    );
    // `ip netns exec` execs the node: the pid is the node's.
    wait_serving(&mut p, socket);
    p
}

/// Waits (bounded) until the host member `p` listens at `socket` (an abstract name,
/// in its network namespace); panics with its stderr otherwise.
fn wait_serving(p: &mut Proc, socket: &str) {
    let name = socket.trim_start_matches('@');
    let serving = wait_until(Duration::from_secs(15), || {
        abstract_listeners_of(p.pid(), name)
            .iter()
            .any(|n| n[1..] == *name)
    });
    if !serving {
        panic!("host member never served: {}", p.kill_and_stderr());
    }
}

/// The pids with a RINA stack (a management socket) in the namespace of `pid`.
fn stacks_in_namespace_of(pid: u32) -> Vec<u32> {
    abstract_listeners_of(pid, "rina-mgmt/")
        .iter()
        .filter_map(|n| n.rsplit('/').next()?.parse().ok())
        .collect()
}

/// A Python server that says whether it could open a raw packet socket, then echoes
/// `n` connections one after the other.
const ECHO_N: &str = r#"
import socket, sys
try:
    socket.socket(socket.AF_PACKET, socket.SOCK_RAW); print("raw: yes", flush=True)
except PermissionError:
    print("raw: no", flush=True)
l = socket.socket(); l.bind(("127.0.0.1", int(sys.argv[1]))); l.listen(4)
print("listening", flush=True)
for _ in range(int(sys.argv[2])):
    c, _ = l.accept()
    while True:
        b = c.recv(65536)
        if not b: break
        c.sendall(b)
    c.close()
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    rules(dir, name, text)
}

/// Sends `data` with `nc -N` (under `rules`, in namespace `i`, without CAP_NET_RAW)
/// and checks the echo.
fn echo_from(hosts: &Hosts, i: usize, rules: &Path, port: u16, data: &[u8], input: &Path) {
    std::fs::write(input, data).unwrap();
    let out = output_within(
        &mut hosts.rina_run(
            i,
            rules,
            &[
                "setpriv",
                "--bounding-set",
                "-net_raw",
                "--",
                "nc",
                "-N",
                "127.0.0.1",
                &port.to_string(),
            ],
            stdin_from(input),
            Stdio::piped(),
        ),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "client in host {i}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout == data,
        "client in host {i}: {} of {} bytes echoed",
        out.stdout.len(),
        data.len()
    );
}

/// Two hosts (namespaces) joined by a veth pair with no IP, each with a host member
/// over Ethernet. A server and a client in the first host, and a client in the second,
/// all without CAP_NET_RAW, talk through them: 1 MiB echoed byte-exact to each client.
/// No program runs a stack: the only stack in each namespace is its host member's.
#[test]
fn programs_without_cap_net_raw_talk_through_host_members_over_ethernet() {
    assert!(have("nc") && have("python3") && have("setpriv"));
    let hosts = Hosts::pair("hm1");
    let dir = temp_dir();
    let socket = "@rina-host-hm1";
    let a = write(dir.path(), "a.toml", &eth_host_member(true, socket));
    let b = write(dir.path(), "b.toml", &eth_host_member(false, socket));
    let port = 5000;
    let prog = write(dir.path(), "p.toml", &program_rules(socket, port, "echo"));
    let mut node_a = node_in(&hosts, 0, &a, socket);
    let mut node_b = node_in(&hosts, 1, &b, socket);
    let mut server = Proc::spawn(
        "echo server",
        &mut hosts.rina_run(
            0,
            &prog,
            &[
                "setpriv",
                "--bounding-set",
                "-net_raw",
                "--",
                "python3",
                "-c",
                ECHO_N,
                &port.to_string(),
                "2",
            ],
            Stdio::null(),
            Stdio::piped(),
        ),
    );
    let said = server.stdout_until("listening", Duration::from_secs(20));
    let said = said.unwrap_or_else(|| panic!("server: {}", server.kill_and_stderr()));
    assert!(
        said.contains("raw: no"),
        "the server has CAP_NET_RAW: {said}"
    );
    // Programs of the same host reach each other through their host member ...
    echo_from(
        &hosts,
        0,
        &prog,
        port,
        &random_bytes(1 << 20, 1),
        &dir.path().join("in0"),
    );
    // ... and those of another host through both host members, over Ethernet (the
    // connect waits for the second member to have joined).
    echo_from(
        &hosts,
        1,
        &prog,
        port,
        &random_bytes(1 << 20, 2),
        &dir.path().join("in1"),
    );
    assert!(
        server.expect_exit(Duration::from_secs(20)).success(),
        "{}",
        server.stderr()
    );
    for (node, i) in [(&node_a, 0), (&node_b, 1)] {
        assert_eq!(
            stacks_in_namespace_of(node.pid()),
            vec![node.pid()],
            "host {i}: a program ran a stack of its own"
        );
    }
    node_a.kill_and_stderr();
    node_b.kill_and_stderr();
}

/// A Python server that daemonises once it has its one connection (fork, `setsid`,
/// fork again; both parents exit at once); the daemon echoes what comes until the end
/// of the stream.
const FORKING: &str = r#"
import os, socket, sys
l = socket.socket(); l.bind(("127.0.0.1", int(sys.argv[1]))); l.listen(1)
c, _ = l.accept()
if os.fork() == 0:
    os.setsid()
    if os.fork() != 0:
        os._exit(0)
    l.close()
    while True:
        b = c.recv(65536)
        if not b: break
        c.sendall(b)
    c.close(); os._exit(0)
sys.exit(0)
"#;

/// Servers whose connection outlives the process that accepted it, served by a host
/// member: `busybox nc -l -e cat` execs `cat` with the socket, a Python server
/// daemonises (double fork, `setsid`) with the connection and exits. While the flow
/// is open (half the data sent) no keeper exists, nor any stack but the host member's;
/// then all of it is echoed byte-exact.
#[test]
fn exec_and_exiting_servers_keep_their_flows_with_no_keeper() {
    assert!(have("nc") && have("busybox") && have("python3"));
    let hosts = Hosts::pair("hm3");
    let dir = temp_dir();
    let socket = "@rina-host-hm3";
    let a = write(dir.path(), "a.toml", &eth_host_member(true, socket));
    let mut node = node_in(&hosts, 0, &a, socket);
    let cases: [&[&str]; 2] = [
        &["busybox", "nc", "-l", "-p", "{p}", "-e", "cat"],
        &["python3", "-c", FORKING, "{p}"],
    ];
    for (i, case) in cases.iter().enumerate() {
        let port = 5100 + i as u16;
        let prog = write(
            dir.path(),
            &format!("p{i}.toml"),
            &program_rules(socket, port, &format!("svc{i}")),
        );
        let args: Vec<String> = case
            .iter()
            .map(|a| a.replace("{p}", &port.to_string()))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut server = Proc::spawn(
            args[0],
            &mut hosts.rina_run(0, &prog, &args, Stdio::null(), Stdio::null()),
        );
        assert!(
            wait_for_rina_listener(server.pid(), Duration::from_secs(15)),
            "{args:?}: {}",
            server.kill_and_stderr()
        );
        let data: Vec<u8> = random_bytes(200_000, i as u64)
            .iter()
            .map(|b| b"0123456789abcdef"[usize::from(b & 15)])
            .collect();
        let mut client = Proc::spawn(
            "nc",
            &mut hosts.rina_run(
                0,
                &prog,
                &["nc", "-N", "127.0.0.1", &port.to_string()],
                Stdio::piped(),
                Stdio::piped(),
            ),
        );
        let mut stdout = client.take_stdout().unwrap();
        let reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stdout, &mut v);
            v
        });
        let mut stdin = client.take_stdin().unwrap();
        std::io::Write::write_all(&mut stdin, &data[..100_000]).unwrap();
        std::io::Write::flush(&mut stdin).unwrap();
        if args[0] == "python3" {
            // The server exited: its daemon holds the flow.
            assert!(
                server.expect_exit(Duration::from_secs(15)).success(),
                "{args:?}"
            );
        } else {
            // busybox has exec'd cat (same pid) once it accepted.
            let pid = server.pid();
            assert!(
                wait_until(Duration::from_secs(15), || std::fs::read_to_string(
                    format!("/proc/{pid}/comm")
                )
                .is_ok_and(|c| c.trim() == "cat")),
                "busybox never exec'd cat"
            );
        }
        assert_eq!(
            stacks_in_namespace_of(node.pid()),
            vec![node.pid()],
            "{args:?}: a keeper or another stack runs"
        );
        std::io::Write::write_all(&mut stdin, &data[100_000..]).unwrap();
        drop(stdin);
        assert!(
            client.expect_exit(Duration::from_secs(30)).success(),
            "{args:?}: {}",
            client.stderr()
        );
        let echoed = reader.join().unwrap();
        assert!(
            echoed == data,
            "{args:?}: {} of {} bytes echoed",
            echoed.len(),
            data.len()
        );
        if args[0] != "python3" {
            assert!(
                server.expect_exit(Duration::from_secs(15)).success(),
                "{args:?}"
            );
        }
    }
    node.kill_and_stderr();
}

/// `rina node -c RULES` on this host's loopback, logging to `log`, waited for until it
/// has joined DIF `net` and serves at `socket` (if it has a `[host]`).
fn loopback_node(rules: &Path, log: &Path, socket: Option<&str>) -> Proc {
    let mut p = rina_node(rules, log, "net");
    if let Some(s) = socket {
        wait_serving(&mut p, s);
    }
    p
}

/// The echo server `ECHO_N` (100 connections) under `rules` on `port`, once it listens.
fn echo_server(rules: &Path, port: u16) -> Proc {
    let mut p = Proc::spawn(
        "echo server",
        &mut rina_run(
            rules,
            &["python3", "-c", ECHO_N, &port.to_string(), "100"],
            Stdio::null(),
            Stdio::piped(),
        ),
    );
    if p.stdout_until("listening", Duration::from_secs(20))
        .is_none()
    {
        panic!("echo server never listened: {}", p.kill_and_stderr());
    }
    p
}

/// 200 short-lived `curl` processes through a host member, ten at a time, each
/// downloading a file from `python3 -m http.server` (served by the same host member):
/// every file byte-exact, and the DIF's members, link-state database and leaves are
/// what they were before. `rina ctl` of the host member lists the server.
#[test]
fn two_hundred_curls_through_a_host_member_cost_the_dif_nothing() {
    assert!(have("curl") && have("python3"));
    let dir = temp_dir();
    let (u1, u2) = (free_udp_port(), free_udp_port());
    let socket = format!("@rina-host-{u2}");
    let m1 = write(dir.path(), "m1.toml", &udp_member(u1, None, ""));
    let h = write(
        dir.path(),
        "h.toml",
        &udp_member(u2, Some(u1), &host_section(&socket, "")),
    );
    let mut member = loopback_node(&m1, &dir.path().join("m1.log"), None);
    let mut host = loopback_node(&h, &dir.path().join("h.log"), Some(&socket));
    let port = free_tcp_port();
    let prog = write(dir.path(), "p.toml", &program_rules(&socket, port, "web"));
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let file = random_bytes(20_000, 9);
    std::fs::write(www.join("f.bin"), &file).unwrap();
    let mut cmd = rina_run(
        &prog,
        &[
            "python3",
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ],
        Stdio::null(),
        Stdio::null(),
    );
    cmd.current_dir(&www);
    let mut server = Proc::spawn("http.server", &mut cmd);
    assert!(
        wait_for_rina_listener(server.pid(), Duration::from_secs(15)),
        "{}",
        server.kill_and_stderr()
    );
    let shape = |pid: u32| {
        let d = ctl_json(pid)["difs"][0].clone();
        (
            d["members"].clone(),
            d["lsdb_size"].clone(),
            d["leaves"].clone(),
        )
    };
    let before = (shape(member.pid()), shape(host.pid()));
    let url = format!("http://127.0.0.1:{port}/f.bin");
    for round in 0..20 {
        let curls: Vec<(Proc, PathBuf)> = (0..10)
            .map(|i| {
                let out = dir.path().join(format!("got{round}-{i}"));
                let p = Proc::spawn(
                    "curl",
                    &mut rina_run(
                        &prog,
                        &["curl", "-sS", "-o", out.to_str().unwrap(), &url],
                        Stdio::null(),
                        Stdio::null(),
                    ),
                );
                (p, out)
            })
            .collect();
        for (mut p, out) in curls {
            let st = p.expect_exit(Duration::from_secs(30));
            assert!(st.success(), "curl {round}: {}", p.stderr());
            assert!(
                std::fs::read(&out).unwrap() == file,
                "curl {round}: wrong bytes"
            );
        }
    }
    let after = (shape(member.pid()), shape(host.pid()));
    assert_eq!(before, after, "the DIF changed for short-lived programs");
    let programs = ctl_json(host.pid())["programs"].clone();
    let served = programs.as_array().expect("a list of programs");
    assert!(
        served.iter().any(|p| p["pid"] == server.pid()
            && p["names"]
                .as_array()
                .is_some_and(|n| n.iter().any(|n| n == "web in net"))),
        "{programs}"
    );
    server.kill_and_stderr();
    host.kill_and_stderr();
    member.kill_and_stderr();
}

/// Tries `listen` on `127.0.0.1:PORT` then `connect` to `127.0.0.1:PORT2` and prints
/// what each gave (`ok` or the errno's name).
const TRY: &str = r#"
import errno, socket, sys
l = socket.socket()
try:
    l.bind(("127.0.0.1", int(sys.argv[1]))); l.listen(1); print("listen ok")
except OSError as e:
    print("listen", errno.errorcode.get(e.errno, e.errno))
c = socket.socket()
r = c.connect_ex(("127.0.0.1", int(sys.argv[2])))
print("connect", "ok" if r == 0 else errno.errorcode.get(r, r))
"#;

/// The host member's rules say which local users may register which names: a user
/// they do not name gets `EACCES` for `listen` and `connect`; a user allowed only
/// `ok*` names registers `ok1` and connects, but gets `EACCES` for `web`; each
/// refusal is a line in the host member's log.
#[test]
fn users_the_host_member_does_not_allow_get_eacces() {
    assert!(have("python3") && have("setpriv"));
    let dir = temp_dir();
    // Programs of other users read the rules.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let u = free_udp_port();
    let socket = format!("@rina-host-{u}");
    let allow = "[[host.allow]]\nusers = [\"root\"]\n\n\
                 [[host.allow]]\nusers = [\"daemon\"]\nnames = [\"ok*\"]\n";
    let h = write(
        dir.path(),
        "h.toml",
        &udp_member(u, None, &host_section(&socket, allow)),
    );
    let mut host = loopback_node(&h, &dir.path().join("h.log"), Some(&socket));
    let (web, ok) = (free_tcp_port(), free_tcp_port());
    let prog = write(
        dir.path(),
        "p.toml",
        &format!(
            "{}\n[[connect]]\nto = \"127.0.0.1:{ok}\"\ndif = \"net\"\napp = \"ok1\"\n\n\
             [[listen]]\non = \"127.0.0.1:{ok}\"\ndif = \"net\"\napp = \"ok1\"\n",
            program_rules(&socket, web, "web")
        ),
    );
    let as_user = |user: &str, listen: u16, connect: u16| {
        let out = run_within(
            &prog,
            &[
                "setpriv",
                &format!("--reuid={user}"),
                "--regid=65534",
                "--clear-groups",
                "--",
                "/usr/bin/python3",
                "-c",
                TRY,
                &listen.to_string(),
                &connect.to_string(),
            ],
            Duration::from_secs(30),
        );
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let nobody = as_user("nobody", web, web);
    assert!(nobody.contains("listen EACCES"), "{nobody}");
    assert!(nobody.contains("connect EACCES"), "{nobody}");
    let daemon = as_user("daemon", web, web);
    assert!(daemon.contains("listen EACCES"), "{daemon}");
    let daemon = as_user("daemon", ok, ok);
    assert!(daemon.contains("listen ok"), "{daemon}");
    assert!(daemon.contains("connect ok"), "{daemon}");
    let log = host.kill_and_stderr();
    assert!(
        log.contains("refused program") && log.contains("(user nobody)"),
        "{log}"
    );
    assert!(log.contains("register web in DIF net"), "{log}");
}

/// Connects to `127.0.0.1:PORT` for each line read (the port), sends a line, prints
/// the echo (`ok LINE`) or the errno's name.
const CLIENT: &str = r#"
import errno, socket, sys
for line in sys.stdin:
    s = socket.socket()
    r = s.connect_ex(("127.0.0.1", int(line)))
    if r:
        print("err", errno.errorcode.get(r, r), flush=True)
        continue
    s.sendall(b"ping\n")
    print("ok", s.recv(100).decode().strip(), flush=True)
    s.close()
"#;

/// SIGKILL of the host member: a running program's next connect fails with
/// `ENETDOWN` and a message naming the socket, never over TCP; once the host member is
/// back (and has joined again), the same program's next connect succeeds, to a server
/// of another member and to a server of its own, which kept running: the new host
/// member registered its name again.
#[test]
fn a_killed_host_member_fails_calls_until_it_is_back() {
    assert!(have("python3"));
    let dir = temp_dir();
    let (u1, u2) = (free_udp_port(), free_udp_port());
    let (sa, sb) = (format!("@rina-host-{u1}"), format!("@rina-host-{u2}"));
    let m1 = write(
        dir.path(),
        "m1.toml",
        &udp_member(u1, None, &host_section(&sa, "")),
    );
    let h = write(
        dir.path(),
        "h.toml",
        &udp_member(u2, Some(u1), &host_section(&sb, "")),
    );
    let mut member = loopback_node(&m1, &dir.path().join("m1.log"), Some(&sa));
    let mut host = loopback_node(&h, &dir.path().join("h1.log"), Some(&sb));
    let port = free_tcp_port();
    let server_rules = write(dir.path(), "s.toml", &program_rules(&sa, port, "echo"));
    let port2 = free_tcp_port();
    let client_rules = write(
        dir.path(),
        "c.toml",
        &format!(
            "{}\n[[connect]]\nto = \"127.0.0.1:{port2}\"\ndif = \"net\"\napp = \"echo2\"\n",
            program_rules(&sb, port, "echo")
        ),
    );
    let local_rules = write(dir.path(), "l.toml", &program_rules(&sb, port2, "echo2"));
    let mut local = echo_server(&local_rules, port2);
    let mut server = echo_server(&server_rules, port);
    let mut client = Proc::spawn(
        "client",
        &mut rina_run(
            &client_rules,
            &["python3", "-c", CLIENT],
            Stdio::piped(),
            Stdio::piped(),
        ),
    );
    let mut stdin = client.take_stdin().unwrap();
    let mut ask = |client: &mut Proc, port: u16, expect: &str| {
        std::io::Write::write_all(&mut stdin, format!("{port}\n").as_bytes()).unwrap();
        std::io::Write::flush(&mut stdin).unwrap();
        client
            .stdout_until(expect, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("no {expect:?}: {}", client.kill_and_stderr()))
    };
    ask(&mut client, port, "ok ping");
    ask(&mut client, port2, "ok ping");
    host.kill_and_stderr(); // SIGKILL, waited for
    ask(&mut client, port, "err ENETDOWN");
    assert!(!tcp_port_in_use(port), "a connect went over TCP");
    // The host member is back: it joins again and serves the same program.
    let mut again = loopback_node(&h, &dir.path().join("h2.log"), Some(&sb));
    ask(&mut client, port, "ok ping");
    // Its own server's name comes back once the DIF has forgotten the killed member,
    // which still held it (2.25 liveness bounds: about 14 s by default).
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let mut line = ask(&mut client, port2, "\n");
        // The end of the line before, if its newline came in a read of its own.
        while line.trim().is_empty() {
            line = client
                .stdout_until("\n", Duration::from_secs(20))
                .unwrap_or_else(|| panic!("no answer: {}", client.kill_and_stderr()));
        }
        if line.contains("ok ping") {
            break;
        }
        assert!(line.contains("err ECONNREFUSED"), "{line}");
        assert!(
            std::time::Instant::now() < deadline,
            "never registered again"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(stdin);
    assert!(client.expect_exit(Duration::from_secs(10)).success());
    let said = client.stderr();
    assert!(said.contains(&format!("host member at {sb}")), "{said}");
    assert!(said.contains("ENETDOWN"), "{said}");
    let log = std::fs::read_to_string(dir.path().join("h2.log")).unwrap_or_default();
    assert!(log.contains("echo2 registered again"), "{log}");
    for p in [&mut server, &mut local, &mut again, &mut member, &mut host] {
        p.kill_and_stderr();
    }
}

/// Echoes datagrams back to whoever sent them.
const UDP_ECHO: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
print("bound", flush=True)
while True:
    b, a = s.recvfrom(65536)
    s.sendto(b, a)
"#;

/// Sends datagrams of several sizes and prints how many came back whole.
const UDP_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.connect(("127.0.0.1", int(sys.argv[1])))
good = 0
for n in (1, 100, 1400, 30000):
    m = bytes((i * 7 + n) % 256 for i in range(n))
    for _ in range(20):
        s.send(m)
        try:
            if s.recv(65536) == m:
                good += 1
                break
        except socket.timeout:
            pass
print("echoed", good, flush=True)
"#;

/// Datagram flows through a host member: a UDP echo server and a client that is
/// served by it, boundaries kept from 1 B to 30000 B.
#[test]
fn datagrams_go_through_a_host_member() {
    assert!(have("python3"));
    let dir = temp_dir();
    let u = free_udp_port();
    let socket = format!("@rina-host-{u}");
    let h = write(
        dir.path(),
        "h.toml",
        &udp_member(u, None, &host_section(&socket, "")),
    );
    let mut host = loopback_node(&h, &dir.path().join("h.log"), Some(&socket));
    let port = free_udp_port();
    let prog = write(dir.path(), "p.toml", &program_rules(&socket, port, "uecho"));
    let mut server = Proc::spawn(
        "udp echo",
        &mut rina_run(
            &prog,
            &["python3", "-c", UDP_ECHO, &port.to_string()],
            Stdio::null(),
            Stdio::piped(),
        ),
    );
    assert!(
        server
            .stdout_until("bound", Duration::from_secs(20))
            .is_some(),
        "{}",
        server.kill_and_stderr()
    );
    // The server's socket is not on the port: its name is registered in the host member.
    assert!(std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok());
    let programs = ctl_json(host.pid())["programs"].to_string();
    assert!(programs.contains("uecho in net"), "{programs}");
    let out = run_within(
        &prog,
        &["python3", "-c", UDP_CLIENT, &port.to_string()],
        Duration::from_secs(60),
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("echoed 4"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.kill_and_stderr();
    host.kill_and_stderr();
}
