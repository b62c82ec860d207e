//! Inline sends (on by default, `runtime/src/driver/inline.rs`): small writes
//! sent by the application's thread itself keep the stream's order among larger writes
//! that take the socket pair, a write after `shutdown` still fails with EPIPE, and a
//! lost PDU sent inline while the runtime thread sleeps is retransmitted (its timer
//! reaches the sleeping thread), through 20% loss both ways with the round trip still
//! timed right.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rina_e2e::netns::{eth_member, Hosts};
use rina_e2e::{ctl_json, have, listening, pair, rina_run, rules, temp_dir, Proc, PY_ECHO_SERVER};

fn inline(mut c: Command) -> Command {
    c.env("RINA_INLINE_SEND", "1");
    c
}

/// A Python client `script` under `rules`, with inline sends, its stdout piped.
fn python_client(rules: &Path, script: &str, stdin: Stdio) -> Proc {
    let args = ["python3", "-c", script];
    let mut cmd = inline(rina_run(rules, &args, stdin, Stdio::piped()));
    Proc::spawn("client", &mut cmd)
}

fn echo_server(rules: &Path, host: &str, port: u16) -> Proc {
    let port = port.to_string();
    let args = ["python3", "-c", PY_ECHO_SERVER, host, &port];
    listening(
        "echo server",
        &mut inline(rina_run(rules, &args, Stdio::null(), Stdio::null())),
    )
}

/// Writes of 1 byte to 64 KiB, in a fixed mix, echoed back: the bytes that return
/// are the bytes sent, in order, although the client's small writes go inline and the
/// large ones through the socket pair (the server echoes what each read brought, inline
/// or not). Twenty round trips of a byte before it make sure some writes went inline.
#[test]
fn small_and_large_writes_keep_their_order() {
    assert!(have("python3"));
    let dir = temp_dir();
    let p = pair(dir.path(), "inline-mix");
    let mut srv = echo_server(&p.server, "127.0.0.1", p.port);
    let client = format!(
        r#"
import random, socket, sys, threading
s = socket.create_connection(("127.0.0.1", {port}))
r = random.Random(5)
sizes = [1, 3, 64, 700, 4096, 4097, 9000, 65536, 5, 2, 200, 16384, 1, 1, 1]
chunks = [r.randbytes(sizes[k % len(sizes)]) for k in range(400)]
# Round trips first: each write finds the socket pair drained and the window open,
# so it may go inline (however busy the machine, which may keep the mix below off
# the inline path); then the mix, with a reader beside it.
for k in range(20):
    s.sendall(b"p")
    if s.recv(1) != b"p":
        print("ping %d not echoed" % k, flush=True)
got = bytearray()
def reader():
    while True:
        d = s.recv(65536)
        if not d:
            break
        got.extend(d)
t = threading.Thread(target=reader); t.start()
for c in chunks:
    s.sendall(c)
s.shutdown(socket.SHUT_WR)
t.join(60)
sent = b"".join(chunks)
print("ok" if bytes(got) == sent else "mismatch: %d of %d bytes back" % (len(got), len(sent)), flush=True)
sys.stdin.readline()
"#,
        port = p.port
    );
    let mut c = python_client(&p.client, &client, Stdio::piped());
    let said = c.stdout_until("\n", Duration::from_secs(60));
    let said = said.unwrap_or_else(|| panic!("the client said nothing: {}", c.kill_and_stderr()));
    assert_eq!(said.trim(), "ok", "{}", c.kill_and_stderr());
    let client_inline = ctl_json(c.pid())["inline_sends"].as_u64().unwrap_or(0);
    assert!(client_inline > 0, "the client sent nothing inline");
    c.close_stdin();
    assert!(
        c.expect_exit(Duration::from_secs(30)).success(),
        "{}",
        c.stderr()
    );
    srv.kill_and_stderr();
}

/// After `shutdown(SHUT_WR)`, a write fails with EPIPE (not sent inline past the end),
/// and the server reads exactly what came before the shutdown.
#[test]
fn a_write_after_shutdown_fails_with_epipe() {
    assert!(have("python3"));
    let dir = temp_dir();
    let p = pair(dir.path(), "inline-shut");
    let server = r#"
import socket, sys
l = socket.socket(); l.bind(("127.0.0.1", int(sys.argv[1]))); l.listen(1)
c, _ = l.accept()
data = b""
while True:
    d = c.recv(4096)
    if not d:
        break
    data += d
print(repr(data), flush=True)
"#;
    let port = p.port.to_string();
    let mut srv = listening(
        "server",
        &mut inline(rina_run(
            &p.server,
            &["python3", "-c", server, &port],
            Stdio::null(),
            Stdio::piped(),
        )),
    );
    let client = format!(
        r#"
import socket
s = socket.create_connection(("127.0.0.1", {port}))
s.sendall(b"before")
s.shutdown(socket.SHUT_WR)
try:
    s.send(b"after")
    print("sent after shutdown", flush=True)
except BrokenPipeError:
    print("EPIPE", flush=True)
"#,
        port = p.port
    );
    let mut c = python_client(&p.client, &client, Stdio::null());
    let said = c
        .stdout_until("\n", Duration::from_secs(30))
        .unwrap_or_default();
    assert_eq!(said.trim(), "EPIPE", "{}", c.kill_and_stderr());
    let got = srv
        .stdout_until("\n", Duration::from_secs(30))
        .unwrap_or_default();
    assert_eq!(got.trim(), "b'before'", "{}", srv.kill_and_stderr());
    assert!(
        c.expect_exit(Duration::from_secs(30)).success(),
        "{}",
        c.stderr()
    );
    assert!(
        srv.expect_exit(Duration::from_secs(30)).success(),
        "{}",
        srv.stderr()
    );
}

/// What `rina ctl` reports of process `pid` in host `i` (its management socket is in
/// that host's network namespace).
fn ctl_in(hosts: &Hosts, i: usize, pid: u32) -> serde_json::Value {
    let rina = rina_e2e::rina();
    let pid = pid.to_string();
    let args = [rina.to_str().expect("path"), "ctl", &pid, "--json"];
    let out = rina_e2e::output_within(
        hosts.command(i, &args).stdout(Stdio::piped()),
        Duration::from_secs(30),
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!("rina ctl: {}", String::from_utf8_lossy(&out.stderr));
    })
}

/// One message at a time, 200 of them, each echoed before the next, while 20% of the
/// frames are dropped both ways: the messages go inline on both sides while their
/// runtime threads sleep, the lost ones are retransmitted, every echo is exact, and
/// the deadlines the inline sends set reached the sleeping threads (their timer woke
/// them). The round-trip estimates stay near the path's (a few ms with the delayed
/// acknowledgement; they grew to hundreds of ms when a retransmission's
/// acknowledgement timed earlier PDUs, and 3 runs in 20 stalled past a minute), and
/// lost last PDUs were probed before their timeout.
#[test]
fn a_lost_inline_send_is_retransmitted() {
    assert!(have("python3") && have("nft"));
    let dir = temp_dir();
    let hosts = Hosts::pair("inl-loss");
    let s = rules(
        dir.path(),
        "s.toml",
        &eth_member(
            true,
            "[[listen]]\non = \"10.9.0.1:5000\"\ndif = \"net\"\napp = \"echo\"\n",
        ),
    );
    let c = rules(
        dir.path(),
        "c.toml",
        &eth_member(
            false,
            "[[connect]]\nto = \"10.9.0.1:5000\"\ndif = \"net\"\napp = \"echo\"\n",
        ),
    );
    let mut srv = listening(
        "echo server",
        &mut inline(hosts.rina_run(
            0,
            &s,
            &["python3", "-c", PY_ECHO_SERVER, "10.9.0.1", "5000"],
            Stdio::null(),
            Stdio::null(),
        )),
    );
    let client = r#"
import socket, sys
s = socket.create_connection(("10.9.0.1", 5000))
def rt(i):
    m = (b"%06d" % i) * 10
    s.sendall(m)
    got = b""
    while len(got) < len(m):
        d = s.recv(4096)
        if not d:
            sys.exit("the server closed")
        got += d
    if got != m:
        sys.exit("echo %r for %r" % (got, m))
rt(0)
print("up", flush=True)
sys.stdin.readline()
for i in range(1, 201):
    rt(i)
print("done", flush=True)
sys.stdin.readline()
"#;
    let mut cl = Proc::spawn(
        "client",
        &mut inline(hosts.rina_run(
            1,
            &c,
            &["python3", "-c", client],
            Stdio::piped(),
            Stdio::piped(),
        )),
    );
    let up = cl.stdout_until("up\n", Duration::from_secs(30));
    assert!(up.is_some(), "no flow: {}", cl.kill_and_stderr());
    let nft = "table netdev loss {\n chain in {\n  type filter hook ingress device \"eth0\" priority 0;\n  numgen random mod 100 < 20 counter drop\n }\n}\n";
    let file = rules(dir.path(), "loss.nft", nft);
    for i in 0..2 {
        let out = rina_e2e::output_within(
            &mut hosts.command(i, &["nft", "-f", file.to_str().expect("path")]),
            Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "nft: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if let Some(mut stdin) = cl.take_stdin() {
        stdin.write_all(b"go\n").expect("client stdin");
        let done = cl.stdout_until("done\n", Duration::from_secs(60));
        assert!(
            done.is_some(),
            "the exchange stalled: {}",
            cl.kill_and_stderr()
        );
        let (c, s) = (ctl_in(&hosts, 1, cl.pid()), ctl_in(&hosts, 0, srv.pid()));
        let count = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
        let sent = count(&c, "inline_sends");
        assert!(sent > 0, "none of the client's writes went inline");
        let echoed = count(&s, "inline_sends");
        assert!(echoed > 0, "none of the server's writes went inline");
        for (side, v) in [("client", &c), ("server", &s)] {
            let flow = &v["difs"][0]["flows"][0];
            let srtt = flow["srtt_us"].as_u64().unwrap_or(u64::MAX);
            assert!(srtt < 50_000, "{side}'s smoothed round trip: {srtt} µs");
        }
        let probes = |v: &serde_json::Value| count(&v["difs"][0]["flows"][0], "tail_probes");
        assert!(probes(&c) + probes(&s) > 0, "no tail-loss probe");
        let timer = count(&c, "inline_timer_wakes") + count(&s, "inline_timer_wakes");
        assert!(
            timer > 0,
            "no deadline an inline send set ever woke a runtime"
        );
        let listed = rina_e2e::output_within(
            &mut hosts.command(0, &["nft", "list", "table", "netdev", "loss"]),
            Duration::from_secs(30),
        );
        let text = String::from_utf8_lossy(&listed.stdout);
        assert!(!text.contains("packets 0 "), "nothing was dropped: {text}");
        drop(stdin);
    }
    assert!(
        cl.expect_exit(Duration::from_secs(30)).success(),
        "{}",
        cl.stderr()
    );
    srv.kill_and_stderr();
}
