//! Many connections opened at once by one program: 200 threads each connect, set
//! `TCP_NODELAY` and exchange requests at once, over RINA. The interposer's socket
//! table sweeps the entries of closed sockets while it grows; a sweep used to drop
//! the entries other threads recorded while it read `/proc/self/fd`, and the
//! `setsockopt` of such a connection then failed with EOPNOTSUPP (about one run in
//! five of this test). `reqresp` checks every answer against its request.
//!
//! And quiet flows cost nothing, streams and datagrams alike. With 300 connections
//! held open and idle, a turn of the runtime pumped every one of them for every message
//! of the one that talks (a 64-byte round trip took ten times as long with 500 idle
//! flows). It now pumps only the flows an event touched, which `rina ctl` counts.

use std::process::Stdio;
use std::time::Duration;

use rina_e2e::*;

#[test]
fn two_hundred_connections_opened_at_once_all_work() {
    let dir = temp_dir();
    let p = pair(dir.path(), "many-conns");
    let load = bin_dir().join("reqresp");
    let load = load.to_str().expect("path");
    let addr = format!("127.0.0.1:{}", p.port);
    let mut srv = spawn_server(
        &p.server,
        &[load, "server", &addr],
        Stdio::null(),
        Stdio::null(),
    );
    for round in 0..2 {
        let out = output_within(
            &mut rina_run(
                &p.client,
                &[load, "client", &addr, "1", "200", "1"],
                Stdio::null(),
                Stdio::piped(),
            ),
            Duration::from_secs(120),
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && said.contains("rps="),
            "round {round}: {said} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    srv.kill_and_stderr();
}

/// 300 idle connections and one that exchanges 400 messages, one at a time: the
/// client's runtime pumps flow sockets a number of times that follows the messages,
/// not the messages times the flows (at least 120,000 if every turn pumped every
/// flow; a few thousand when only the touched ones are).
#[test]
fn idle_flows_are_not_pumped_for_others_messages() {
    assert!(have("python3"));
    let dir = temp_dir();
    let p = pair(dir.path(), "idle-flows");
    let port = p.port.to_string();
    let args = ["python3", "-c", PY_ECHO_SERVER, "127.0.0.1", &port];
    let mut srv = spawn_server(&p.server, &args, Stdio::null(), Stdio::null());
    let client = format!(
        r#"
import socket, sys
port = {port}
idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(300)]
s = socket.create_connection(("127.0.0.1", port))
for k in range(400):
    m = b"%064d" % k
    s.sendall(m)
    got = b""
    while len(got) < len(m):
        got += s.recv(64)
    if got != m:
        sys.exit("echo %d differs" % k)
print("ok", flush=True)
sys.stdin.readline()
"#,
        port = p.port
    );
    let pumps = pumps_of(&p.client, &client);
    assert!(
        pumps < 20_000,
        "{pumps} pumps of flow sockets for 400 messages beside 300 idle flows"
    );
    srv.kill_and_stderr();
}

/// Runs the Python `client` under `rules` until it prints "ok" (its exchanges done and
/// checked), then reads how many times its runtime pumped a flow (`rina ctl`), lets it
/// exit, and checks that it exited well and pumped at all.
fn pumps_of(rules: &std::path::Path, client: &str) -> u64 {
    let args = ["python3", "-c", client];
    let mut c = Proc::spawn(
        "client",
        &mut rina_run(rules, &args, Stdio::piped(), Stdio::piped()),
    );
    let said = c
        .stdout_until("\n", Duration::from_secs(90))
        .unwrap_or_default();
    assert_eq!(said.trim(), "ok", "{}", c.kill_and_stderr());
    let pumps = ctl_json(c.pid())["flow_pumps"].as_u64().unwrap_or(0);
    eprintln!("flows pumped: {pumps}");
    c.close_stdin();
    assert!(pumps > 0, "rina ctl reports no pump at all");
    assert!(
        c.expect_exit(Duration::from_secs(30)).success(),
        "{}",
        c.stderr()
    );
    pumps
}

/// The same for datagram flows: 200 UDP sockets of one client each send one datagram to
/// a server (200 datagram flows each side), then one of them exchanges 400 datagrams:
/// the client's runtime pumps a number of times that follows the datagrams.
#[test]
fn idle_datagram_flows_are_not_pumped_for_others_datagrams() {
    assert!(have("python3"));
    let dir = temp_dir();
    let p = pair(dir.path(), "idle-dgrams");
    let server = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(65536)
    s.sendto(data, peer)
"#;
    let port = p.port.to_string();
    let args = ["python3", "-c", server, &port];
    let mut srv = Proc::spawn(
        "server",
        &mut rina_run(&p.server, &args, Stdio::null(), Stdio::piped()),
    );
    let ready = srv
        .stdout_until("\n", Duration::from_secs(30))
        .unwrap_or_default();
    assert_eq!(ready.trim(), "ready", "{}", srv.kill_and_stderr());
    let client = format!(
        r#"
import socket, sys
to = ("127.0.0.1", {port})
def ask(s, m):
    s.sendto(m, to)
    data, _ = s.recvfrom(65536)
    if data != m:
        sys.exit("datagram %r came back as %r" % (m, data))
quiet = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(200)]
for q in quiet:
    q.settimeout(20)
    ask(q, b"hello")
s = quiet[0]
for k in range(400):
    ask(s, b"%064d" % k)
print("ok", flush=True)
sys.stdin.readline()
"#,
        port = p.port
    );
    let pumps = pumps_of(&p.client, &client);
    assert!(
        pumps < 20_000,
        "{pumps} pumps for 400 datagrams beside 199 idle datagram flows"
    );
    srv.kill_and_stderr();
}
