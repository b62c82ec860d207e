//! Datagram rules (issue 3): UDP programs over unreliable RINA flows. Each
//! application keeps its own UDP socket; flows are reached through proxies on
//! loopback. Message boundaries are kept, `recvfrom` shows the addresses programs
//! expect, and nothing is sent to the rule's address over IP.

use std::process::Stdio;
use std::time::Duration;

use rina_e2e::*;

/// A member's rules: a UDP shim and a normal DIF (bootstrap, or enrolled through
/// `via`), then `rules`.
fn member(udp: u16, via: Option<u16>, rules: &str) -> String {
    let join = match via {
        None => "bootstrap = true".to_owned(),
        Some(p) => format!("enroll-via = {{ dif = \"udp\", neighbor = \"127.0.0.1:{p}\" }}"),
    };
    format!(
        "[[dif]]\nname = \"udp\"\ntype = \"udp\"\nbind = \"127.0.0.1:{udp}\"\n\n[[dif]]\nname = \"net\"\ntype = \"normal\"\nover = [\"udp\"]\n{join}\n\n{rules}"
    )
}

fn rule(kind: &str, addr: &str, app: &str, extra: &str) -> String {
    let key = if kind == "connect" { "to" } else { "on" };
    format!("[[{kind}]]\n{key} = \"{addr}\"\ndif = \"net\"\napp = \"{app}\"\n{extra}\n")
}

/// The rules of a server member (bootstrapping the DIF, with a listen rule for `app`
/// at `addr` and `listen_extra`) and of a client member joining through it (a
/// connect rule with `connect_extra`), written into `dir`: (server's, client's).
fn pair_rules(
    dir: &std::path::Path,
    su: u16,
    addr: &str,
    app: &str,
    listen_extra: &str,
    connect_extra: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let s = rules(
        dir,
        "s.toml",
        &member(su, None, &rule("listen", addr, app, listen_extra)),
    );
    let c = rules(
        dir,
        "c.toml",
        &member(0, Some(su), &rule("connect", addr, app, connect_extra)),
    );
    (s, c)
}

/// Starts a Python UDP server `script` under `rules` (it prints `ready` once bound)
/// and waits until it is ready.
fn python_server(rules: &std::path::Path, script: &str, stdin: Stdio) -> Proc {
    let mut srv = Proc::spawn(
        "udp server",
        &mut rina_run(rules, &["python3", "-c", script], stdin, Stdio::piped()),
    );
    if srv.stdout_until("ready", Duration::from_secs(10)).is_none() {
        panic!("the server did not start: {}", srv.kill_and_stderr());
    }
    srv
}

fn read(p: &std::path::Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// `nc -u -l` and `nc -u`: the server learns its peer with `recvfrom(MSG_PEEK)` and
/// connects to it, then both sides use read/write; each line is one datagram.
#[test]
fn nc_udp_pair() {
    assert!(have("nc"));
    let dir = temp_dir();
    let (su, port) = (free_udp_port(), free_udp_port());
    let addr = format!("127.0.0.1:{port}");
    let (s, c) = pair_rules(
        dir.path(),
        su,
        &addr,
        "nc-udp",
        "proto = \"udp\"",
        "proto = \"udp\"",
    );
    let (s_in, s_out, c_in, c_out) = (
        dir.path().join("s_in"),
        dir.path().join("s_out"),
        dir.path().join("c_in"),
        dir.path().join("c_out"),
    );
    std::fs::write(&s_in, "pong from the server\n").unwrap();
    std::fs::write(&c_in, "ping from the client\n").unwrap();
    let p = port.to_string();
    let mut server = Proc::spawn(
        "nc -u -l",
        &mut rina_run(
            &s,
            &["nc", "-u", "-l", "127.0.0.1", &p],
            stdin_from(&s_in),
            stdout_to(&s_out),
        ),
    );
    // The name is registered once bind returns; a UDP server has no listener to
    // wait for, so wait until the client's datagram gets through. A client started
    // before the server's stack is up finds nothing at its endpoint (refused at once,
    // as a TCP connect would be): start it again until it gets through.
    let mut client: Option<Proc> = None;
    let got = wait_until(Duration::from_secs(15), || {
        if client.as_ref().is_none_or(|c| has_exited(c.pid())) {
            client = Some(Proc::spawn(
                "nc -u",
                &mut rina_run(
                    &c,
                    &["nc", "-u", "127.0.0.1", &p],
                    stdin_from(&c_in),
                    stdout_to(&c_out),
                ),
            ));
        }
        read(&c_out) == "pong from the server\n"
    });
    let client_err = client
        .as_mut()
        .map(Proc::kill_and_stderr)
        .unwrap_or_default();
    let server_err = server.kill_and_stderr();
    assert!(
        got,
        "client got {:?}; client: {client_err}; server: {server_err}",
        read(&c_out)
    );
    assert_eq!(read(&s_out), "ping from the client\n");
}

const ECHO_SERVER: &str = r#"
import socket, sys
name, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", port))
assert s.getsockname() == ("127.0.0.1", port), s.getsockname()
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(65536)
    print("peer", peer[0], peer[1], len(data), flush=True)
    s.sendto(name.encode() + b":" + data, peer)
"#;

/// The client side: one unconnected socket talks to every server in `argv[1:]`
/// (`port` each), datagrams of several sizes, each answered once by its server.
const ECHO_CLIENT: &str = r#"
import socket, sys
ports = [int(p) for p in sys.argv[1:]]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
for size in (1, 100, 1400, 9000, 60000):
    for port in ports:
        msg = bytes((i * 7 + size + port) % 256 for i in range(size))
        s.sendto(msg, ("127.0.0.1", port))
    got = {}
    for _ in ports:
        data, peer = s.recvfrom(65536)
        assert peer[0] == "127.0.0.1", peer
        name, _, body = data.partition(b":")
        got[peer[1]] = (name.decode(), body)
    for port in ports:
        name, body = got[port]
        want = bytes((i * 7 + size + port) % 256 for i in range(size))
        assert body == want, (port, size, len(body))
        print(port, name, size, flush=True)
# A connected socket: send/recv and getpeername as for UDP.
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.settimeout(10)
c.connect(("127.0.0.1", ports[0]))
assert c.getpeername() == ("127.0.0.1", ports[0]), c.getpeername()
c.send(b"connected")
assert c.recv(100).endswith(b":connected")
c.close(); s.close()
print("closed", flush=True)
sys.stdin.read()
"#;

/// Python UDP servers and clients: message boundaries kept from 1 byte to 60000;
/// one unconnected client socket talks to two servers and tells their answers apart
/// by source address; one server socket answers two client processes, which it sees
/// at distinct synthetic addresses; closing a client's sockets releases its flows.
#[test]
fn python_udp_servers_and_clients() {
    assert!(have("python3"));
    let dir = temp_dir();
    let (su, pa, pb) = (free_udp_port(), free_udp_port(), free_udp_port());
    let listen = format!(
        "{}{}",
        rule("listen", &format!("127.0.0.1:{pa}"), "echo-a", ""),
        rule("listen", &format!("127.0.0.1:{pb}"), "echo-b", "")
    );
    // Server a bootstraps the DIF; server b joins through it.
    let sa = rules(dir.path(), "a.toml", &member(su, None, &listen));
    let sb = rules(dir.path(), "b.toml", &member(0, Some(su), &listen));
    let connect = |local: &str| {
        format!(
            "{}{}",
            rule(
                "connect",
                &format!("127.0.0.1:{pa}"),
                "echo-a",
                &format!("local-app = \"{local}\"")
            ),
            rule(
                "connect",
                &format!("127.0.0.1:{pb}"),
                "echo-b",
                &format!("local-app = \"{local}\"")
            )
        )
    };
    let server_log = |n: &str| dir.path().join(format!("{n}.log"));
    let mut servers = Vec::new();
    for (name, port, s) in [("a", pa, &sa), ("b", pb, &sb)] {
        let mut p = Proc::spawn(
            "python udp server",
            &mut rina_run(
                s,
                &["python3", "-c", ECHO_SERVER, name, &port.to_string()],
                Stdio::null(),
                stdout_to(&server_log(name)),
            ),
        );
        if !wait_until(Duration::from_secs(10), || {
            read(&server_log(name)).starts_with("ready")
        }) {
            panic!("server {name}: {}", p.kill_and_stderr());
        }
        servers.push(p);
    }
    // Two client processes at once, each under its own name.
    let mut clients = Vec::new();
    for who in ["one", "two"] {
        let r = rules(
            dir.path(),
            &format!("{who}.toml"),
            &member(0, Some(su), &connect(&format!("client-{who}"))),
        );
        let out = dir.path().join(format!("{who}.out"));
        let mut cmd = rina_run(
            &r,
            &[
                "python3",
                "-c",
                ECHO_CLIENT,
                &pa.to_string(),
                &pb.to_string(),
            ],
            Stdio::piped(), // held open: the client waits after closing its sockets
            stdout_to(&out),
        );
        clients.push((Proc::spawn(who, &mut cmd), out));
    }
    for (c, out) in &mut clients {
        let done = wait_until(Duration::from_secs(30), || read(out).contains("closed"));
        assert!(
            done,
            "client output {:?}: {}",
            read(out),
            c.kill_and_stderr()
        );
        let text = read(out);
        for size in [1, 100, 1400, 9000, 60000] {
            assert!(text.contains(&format!("{pa} a {size}\n")), "{text}");
            assert!(text.contains(&format!("{pb} b {size}\n")), "{text}");
        }
    }
    // Server a saw both clients, each at one address of the default peer range,
    // 100.64.0.0/10 (not loopback), and answered them there.
    let log = read(&server_log("a"));
    let peers: std::collections::BTreeSet<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("peer "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert_eq!(peers.len(), 2, "{log}");
    for p in &peers {
        assert!(is_shown_peer(p), "{p}");
    }
    // The clients closed their sockets (and still run): the servers' proxies for
    // their flows are gone.
    let proxies = |pid: u32| {
        let out = output_within(
            std::process::Command::new("ss").args(["-Huanp"]),
            Duration::from_secs(10),
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&format!("pid={pid},")))
            .filter_map(|l| l.split_whitespace().nth(3).map(str::to_owned))
            .filter(|local| is_synthetic(local))
            .count()
    };
    for s in &servers {
        let pid = s.pid();
        assert!(
            wait_until(Duration::from_secs(10), || proxies(pid) == 0),
            "server {pid} still has {} proxies",
            proxies(pid)
        );
    }
    // Nothing was sent to the rules' ports over IP: only the servers' loopback
    // sockets (bound elsewhere) exist, nobody bound the ports themselves.
    let out = output_within(
        std::process::Command::new("ss")
            .args(["-Huan", &format!("( sport = :{pa} or sport = :{pb} )")]),
        Duration::from_secs(10),
    );
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty());
}

/// True for `IP:PORT` with IP in the default peer range 100.64.0.0/10.
fn is_shown_peer(addr: &str) -> bool {
    let ip = addr.rsplit_once(':').map_or(addr, |(ip, _)| ip);
    let o: Vec<u8> = ip.split('.').filter_map(|x| x.parse().ok()).collect();
    o.len() == 4 && o[0] == 100 && (64..128).contains(&o[1])
}

/// True for `IP:PORT` with IP in the synthetic range 127.128.0.0/9 (the proxies').
fn is_synthetic(addr: &str) -> bool {
    let ip = addr.rsplit_once(':').map_or(addr, |(ip, _)| ip);
    let o: Vec<u8> = ip.split('.').filter_map(|x| x.parse().ok()).collect();
    o.len() == 4 && o[0] == 127 && o[1] >= 128
}

/// `sendmmsg` and `recvmmsg` (a Rust program): three datagrams to a rule's address in
/// one call, three answers in one call, each shown from the rule's address.
#[test]
fn sendmmsg_and_recvmmsg_are_translated() {
    assert!(have("python3"));
    let dir = temp_dir();
    let (su, port) = (free_udp_port(), free_udp_port());
    let addr = format!("127.0.0.1:{port}");
    let (s, c) = pair_rules(dir.path(), su, &addr, "mm", "", "");
    let log = dir.path().join("server.log");
    let mut server = Proc::spawn(
        "python udp server",
        &mut rina_run(
            &s,
            &["python3", "-c", ECHO_SERVER, "mm", &port.to_string()],
            Stdio::null(),
            stdout_to(&log),
        ),
    );
    if !wait_until(Duration::from_secs(10), || read(&log).starts_with("ready")) {
        panic!("server: {}", server.kill_and_stderr());
    }
    let mmsg = bin_dir().join("mmsg");
    let out = run_within(
        &c,
        &[mmsg.to_str().unwrap(), &addr],
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("sent 10 sent 200 sent 3000"), "{text}");
    let mut sizes: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("got "))
        .map(|l| {
            assert!(l.ends_with(&format!(" from {addr}")), "{l}");
            l.split(' ').next().unwrap()
        })
        .collect();
    sizes.sort_unstable();
    // The server answers "mm:" + the datagram.
    assert_eq!(sizes, ["13", "203", "3003"], "{text}");
}

/// A listen rule's `peers` (issue 9): with `peers = "192.0.2.7"` a UDP server sees
/// every remote application at that one address (each flow at its own port) and
/// answers it there; by default peers are outside loopback too (above).
#[test]
fn a_listen_rule_chooses_where_datagram_peers_show() {
    assert!(have("python3"));
    let dir = temp_dir();
    let (su, port) = (free_udp_port(), free_udp_port());
    let addr = format!("127.0.0.1:{port}");
    let (s, c) = pair_rules(
        dir.path(),
        su,
        &addr,
        "fixed",
        "proto = \"udp\"\npeers = \"192.0.2.7\"",
        "proto = \"udp\"",
    );
    let server = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('127.0.0.1', {port}))\nprint('ready', flush=True)\nfor _ in range(2):\n    d, a = s.recvfrom(100)\n    s.sendto(a[0].encode() + b' ' + d, a)\n"
    );
    let mut srv = python_server(&s, &server, Stdio::null());
    let client = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.settimeout(10)\nfor m in (b'one', b'two'):\n    s.sendto(m, ('127.0.0.1', {port}))\n    print(s.recvfrom(100)[0].decode())\n"
    );
    let mut cl = Proc::spawn(
        "udp client",
        &mut rina_run(
            &c,
            &["python3", "-c", &client],
            Stdio::null(),
            Stdio::piped(),
        ),
    );
    let got = cl.stdout_within(Duration::from_secs(20));
    assert!(
        cl.expect_exit(Duration::from_secs(20)).success(),
        "{}",
        cl.stderr()
    );
    assert_eq!(
        got,
        "192.0.2.7 one\n192.0.2.7 two\n",
        "{}",
        srv.kill_and_stderr()
    );
}

/// A UDP server that answers and exits at once: its answer arrives. The client is
/// stopped (SIGSTOP) from before the answer is sent until the server has exited, so
/// that its runtime finds the answer and the flow's end together; it dropped the
/// answer with the flow before.
#[test]
fn the_last_answer_of_a_server_that_exits_arrives() {
    assert!(have("python3"));
    let dir = temp_dir();
    let (su, port) = (free_udp_port(), free_udp_port());
    let addr = format!("127.0.0.1:{port}");
    let (s, c) = pair_rules(
        dir.path(),
        su,
        &addr,
        "last",
        "proto = \"udp\"",
        "proto = \"udp\"",
    );
    let got = dir.path().join("got");
    let server = format!(
        "import socket, sys\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('127.0.0.1', {port}))\nprint('ready', flush=True)\nd, a = s.recvfrom(100)\n\
         open({got:?}, 'w').close()\nsys.stdin.read()\ns.sendto(b'last ' + d, a)\n"
    );
    let mut srv = python_server(&s, &server, Stdio::piped());
    let client = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.settimeout(20)\n\
         s.sendto(b'question', ('127.0.0.1', {port}))\nprint(s.recvfrom(100)[0].decode())\n"
    );
    let mut cl = Proc::spawn(
        "udp client",
        &mut rina_run(
            &c,
            &["python3", "-c", &client],
            Stdio::null(),
            Stdio::piped(),
        ),
    );
    assert!(
        wait_until(Duration::from_secs(15), || got.exists()),
        "the question never came: {}",
        srv.kill_and_stderr()
    );
    let client_pid = libc::pid_t::try_from(cl.pid()).expect("pid");
    // SAFETY: signals to our own child, which is alive (it waits for the answer).
    assert_eq!(unsafe { libc::kill(client_pid, libc::SIGSTOP) }, 0);
    srv.close_stdin();
    let st = srv.expect_exit(Duration::from_secs(15));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(client_pid, libc::SIGCONT) }, 0);
    assert!(st.success(), "{}", srv.stderr());
    let answer = cl.stdout_within(Duration::from_secs(30));
    assert!(
        cl.expect_exit(Duration::from_secs(10)).success(),
        "{}",
        cl.stderr()
    );
    assert_eq!(answer, "last question\n");
}
