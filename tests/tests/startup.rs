//! Start-up failures are said once: a stack that cannot start (its UDP endpoint held by
//! a program that runs no RINA stack, an address that is not local, an Ethernet
//! interface that does not exist) prints why on stderr once per process, naming the
//! program, the DIF, the endpoint and the reason, and every call the rules send to RINA
//! fails with `ENETDOWN` (README, "What a program sees"); nothing goes over TCP/IP.
//! `rina node` whose endpoint is held exits 1 with the reason instead of running on
//! another port.

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rina_e2e::*;

/// Three connects and a listen, each printing the errno's name (or "ok").
const CLIENT: &str = r#"
import errno, socket, sys
port = int(sys.argv[1])
for _ in range(3):
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port))
        print("ok")
    except OSError as e:
        print(errno.errorcode.get(e.errno, e.errno))
    s.close()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", port + 1))
    s.listen(1)
    print("ok")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
"#;

/// Rules with the shim `shim` (a `[[dif]]` body named "lower"), a normal DIF over it
/// that bootstraps, a connect rule for `port` and a listen rule for `port + 1`.
fn rules_over(shim: &str, port: u16) -> String {
    format!(
        "[[dif]]\nname = \"lower\"\n{shim}\n\
         [[dif]]\nname = \"net\"\ntype = \"normal\"\nover = \"lower\"\nbootstrap = true\n\n\
         [[connect]]\nto = \"127.0.0.1:{port}\"\ndif = \"net\"\napp = \"echo\"\n\n\
         [[listen]]\non = \"127.0.0.1:{}\"\ndif = \"net\"\napp = \"echo\"\n",
        port + 1
    )
}

/// Runs the Python client under `rules`; checks that every call failed with ENETDOWN
/// and that stderr says, once, that the stack cannot start, with each of `words`.
fn expect_said_once(rules: &std::path::Path, port: u16, words: &[&str]) {
    let start = Instant::now();
    let mut p = Proc::spawn(
        "python3",
        rina_run(
            rules,
            &["python3", "-c", CLIENT, &port.to_string()],
            Stdio::null(),
            Stdio::piped(),
        )
        .env("RINA_LOG", "trace")
        .env("RINA_LOG_FILE", rules.with_extension("log")),
    );
    let st = p.expect_exit(Duration::from_secs(30));
    let out = p.stdout_within(Duration::from_secs(30));
    let err = p.stderr();
    assert!(st.success(), "{st:?}: {err}");
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["ENETDOWN"; 4],
        "every call fails with ENETDOWN: {err}"
    );
    let said = "rina: python3: cannot start the RINA stack: DIF lower: ";
    assert_eq!(err.matches(said).count(), 1, "said once: {err}");
    let line = err.lines().find(|l| l.contains(said)).unwrap();
    for w in words {
        assert!(line.contains(w), "{w:?} missing in: {err}");
    }
    assert!(err.contains("nothing goes over TCP/IP"), "{err}");
    // The log says it too.
    let log = std::fs::read_to_string(rules.with_extension("log")).unwrap_or_default();
    assert!(log.contains("cannot start the RINA stack"), "{log}");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_udp_endpoint_held_by_another_program() {
    assert!(have("python3") && have("nc"));
    let dir = temp_dir();
    let held = UdpSocket::bind("127.0.0.1:0").unwrap();
    let at = held.local_addr().unwrap();
    let port = free_tcp_port();
    let shim = format!("type = \"udp\"\nbind = \"{at}\"\n");
    let r = rules(dir.path(), "busy.toml", &rules_over(&shim, port));
    expect_said_once(
        &r,
        port,
        &[
            &format!("UDP {at}: cannot bind: Address already in use"),
            &format!("held by pid {} (", std::process::id()),
            "which runs no RINA stack",
        ],
    );
    // nc reports the errno as it does for TCP.
    let out = run_within(
        &r,
        &["nc", "-v", "127.0.0.1", &port.to_string()],
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("Network is down"), "{err}");
    assert_eq!(
        err.matches("rina: nc: cannot start the RINA stack: ")
            .count(),
        1,
        "{err}"
    );
    drop(held);
}

#[test]
fn a_udp_address_that_is_not_local() {
    assert!(have("python3"));
    let dir = temp_dir();
    let port = free_tcp_port();
    // TEST-NET-1: never an address of this host.
    let shim = format!("type = \"udp\"\nbind = \"192.0.2.1:{}\"\n", free_udp_port());
    let r = rules(dir.path(), "remote.toml", &rules_over(&shim, port));
    expect_said_once(
        &r,
        port,
        &[
            "UDP 192.0.2.1:",
            "cannot bind: Cannot assign requested address",
        ],
    );
}

#[test]
fn an_ethernet_interface_that_does_not_exist() {
    assert!(have("python3"));
    // SAFETY: a plain query of this process's effective user id.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED: raw Ethernet needs CAP_NET_RAW (run as root)");
        return;
    }
    let dir = temp_dir();
    let port = free_tcp_port();
    let r = rules(
        dir.path(),
        "eth.toml",
        &rules_over("type = \"ethernet\"\ninterface = \"rinanoif0\"\n", port),
    );
    expect_said_once(
        &r,
        port,
        &["no Ethernet interface \"rinanoif0\" in this network namespace"],
    );
}

#[test]
fn a_node_whose_endpoint_is_held_exits_with_the_reason() {
    let dir = temp_dir();
    let held = UdpSocket::bind("127.0.0.1:0").unwrap();
    let at = held.local_addr().unwrap();
    let r = rules(
        dir.path(),
        "node.toml",
        &format!(
            "[[dif]]\nname = \"udp\"\ntype = \"udp\"\nbind = \"{at}\"\n\n\
             [[dif]]\nname = \"net\"\ntype = \"normal\"\nover = \"udp\"\nbootstrap = true\n"
        ),
    );
    let mut node = Proc::spawn(
        "rina node",
        Command::new(rina())
            .args(["node", "-c"])
            .arg(&r)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let st = node.expect_exit(Duration::from_secs(10));
    let err = node.stderr();
    assert_eq!(st.code(), Some(1), "{err}");
    for w in [
        format!("rina node: cannot start the RINA stack: DIF udp: UDP {at}: cannot bind: Address already in use"),
        format!("held by pid {} (", std::process::id()),
        "a node needs its own endpoint".to_owned(),
    ] {
        assert!(err.contains(&w), "{w:?} missing in: {err}");
    }
    assert!(!err.contains("member of"), "it never ran: {err}");
    // Once the port is free, the same node starts.
    drop(held);
    let log = dir.path().join("node.log");
    let mut node = rina_node(&r, &log, "net");
    // SAFETY: signalling the node we started, by its pid.
    unsafe { libc::kill(node.pid() as i32, libc::SIGTERM) };
    assert!(node.expect_exit(Duration::from_secs(10)).success());
}

/// Nothing at the enrollment endpoint (issue 9): the UDP port the rules enroll through
/// has no process behind it, so the kernel answers the first datagram with ICMP port
/// unreachable; the join fails at once (not after the enrollment time-out, about 3 s)
/// with a message naming the endpoint, and the connect with ENETUNREACH ("Network is
/// unreachable", README's errno table), in well under 100 ms.
#[test]
fn nothing_at_the_enrollment_endpoint_fails_at_once() {
    assert!(have("python3"));
    let dir = temp_dir();
    // Ports that were just free: nothing listens at the enroller's.
    let (enroller, tcp) = (free_udp_port(), free_tcp_port());
    let (_, client_rules) = pair_rules(enroller, free_udp_port(), tcp, "nobody-home");
    let r = rules(dir.path(), "client.toml", &client_rules);
    let client = format!(
        r#"
import errno, socket, time
s = socket.socket()
t = time.monotonic()
try:
    s.connect(("127.0.0.1", {tcp}))
    print("connected")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno), round((time.monotonic() - t) * 1000, 1))
"#
    );
    let mut p = Proc::spawn(
        "client",
        &mut rina_run(
            &r,
            &["python3", "-c", &client],
            Stdio::null(),
            Stdio::piped(),
        ),
    );
    let out = p.stdout_within(Duration::from_secs(20));
    assert!(p.expect_exit(Duration::from_secs(20)).success());
    let err = p.stderr();
    let mut words = out.split_whitespace();
    assert_eq!(words.next(), Some("ENETUNREACH"), "{out}{err}");
    let ms: f64 = words.next().and_then(|w| w.parse().ok()).expect("a time");
    assert!(ms < 100.0, "connect took {ms} ms");
    assert!(
        err.contains(&format!("nothing listens at 127.0.0.1:{enroller}")),
        "{err}"
    );
}

/// A client that starts before its server and tries again (every 50 ms) connects as
/// soon as the server is up: each connect tries joining again at once, rather than
/// failing until the back-off between join attempts (up to 30 s) runs out, as a TCP
/// connect tries whenever it is called.
#[test]
fn a_client_retrying_before_the_server_is_up_gets_through_once_it_is() {
    assert!(have("python3"));
    let dir = temp_dir();
    let p = pair(dir.path(), "late-server");
    let client = format!(
        r#"
import socket, sys, time
while True:
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", {port}))
        break
    except OSError:
        print("refused", flush=True); s.close(); time.sleep(0.05)
print("connected", flush=True)
print(s.recv(10).decode(), flush=True)
"#,
        port = p.port
    );
    let out = dir.path().join("client.out");
    let mut c = Proc::spawn(
        "client",
        &mut rina_run(
            &p.client,
            &["python3", "-c", &client],
            Stdio::null(),
            stdout_to(&out),
        ),
    );
    let read = || std::fs::read_to_string(&out).unwrap_or_default();
    // Refused a good many times: the join has failed and backed off by now.
    assert!(
        wait_until(Duration::from_secs(20), || read()
            .matches("refused")
            .count()
            >= 20),
        "{}",
        c.kill_and_stderr()
    );
    let server = format!(
        "import socket\nl = socket.socket(); l.bind(('127.0.0.1', {})); l.listen(4)\nc, _ = l.accept(); c.sendall(b'hi'); c.close()\n",
        p.port
    );
    let started = Instant::now();
    // Not spawn_server: the waiting client may connect, take its answer and let the
    // server exit before a poll for its listener would see it; the client's "hi" is
    // the proof it listened.
    let mut s = Proc::spawn(
        "server",
        &mut rina_run(
            &p.server,
            &["python3", "-c", &server],
            Stdio::null(),
            Stdio::null(),
        ),
    );
    assert!(
        wait_until(Duration::from_secs(20), || read().contains("hi")),
        "{}{}",
        read(),
        c.kill_and_stderr()
    );
    println!("connected {:?} after the server started", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the client waited {:?} after the server was up",
        started.elapsed()
    );
    assert!(c.expect_exit(Duration::from_secs(10)).success());
    assert!(s.expect_exit(Duration::from_secs(10)).success());
}
