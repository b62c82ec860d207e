//! Inline receives (on by default, `runtime/src/driver/inline_recv.rs`,
//! `interposer/src/inline_recv.rs`): a thread about to block on an empty flow runs
//! the runtime's receiving side itself for a short while. The answers it takes that
//! way are the bytes sent, `RINA_INLINE_RECV=0` turns it off, and what a program sees
//! of a read does not change: a nonblocking read of an empty flow fails with EAGAIN at
//! once, a blocking one waits (for `SO_RCVTIMEO`, then EAGAIN; a signal interrupts it),
//! `os.read` and `recv` get the same bytes, and the end of the stream reads as 0.

use std::process::{Command, Stdio};
use std::time::Duration;

use rina_e2e::{
    ctl_json, have, listening, pair, rina_run, spawn_server, temp_dir, Proc, PY_ECHO_SERVER,
};

/// `cmd` with inline receives on (`on`) or off.
fn receiving(mut c: Command, on: bool) -> Command {
    c.env("RINA_INLINE_RECV", if on { "1" } else { "0" });
    c
}

fn echo_server(rules: &std::path::Path, port: u16) -> Proc {
    let port = port.to_string();
    let args = ["python3", "-c", PY_ECHO_SERVER, "127.0.0.1", &port];
    spawn_server(rules, &args, Stdio::null(), Stdio::null())
}

/// 300 messages of 1 to 4096 bytes, one at a time, each echoed before the next (the
/// client's blocking `recv` waits for it): the echoes are exact; with inline receives
/// on, the client's own thread ran receiving turns, and with them off it ran none.
#[test]
fn answers_taken_by_the_reading_thread_are_exact() {
    assert!(have("python3"));
    let dir = temp_dir();
    let p = pair(dir.path(), "inline-recv");
    let mut srv = echo_server(&p.server, p.port);
    let client = format!(
        r#"
import random, socket, sys
s = socket.create_connection(("127.0.0.1", {port}))
r = random.Random(7)
for k in range(300):
    m = r.randbytes(1 + (k * 997) % 4096)
    s.sendall(m)
    got = b""
    while len(got) < len(m):
        d = s.recv(len(m) - len(got))
        if not d:
            sys.exit("the stream ended early")
        got += d
    if got != m:
        sys.exit("echo %d differs" % k)
print("ok", flush=True)
sys.stdin.readline()
"#,
        port = p.port
    );
    for on in [true, false] {
        let args = ["python3", "-c", &client];
        let mut cmd = receiving(
            rina_run(&p.client, &args, Stdio::piped(), Stdio::piped()),
            on,
        );
        let mut c = Proc::spawn("client", &mut cmd);
        let said = c
            .stdout_until("\n", Duration::from_secs(60))
            .unwrap_or_default();
        assert_eq!(said.trim(), "ok", "{}", c.kill_and_stderr());
        let turns = ctl_json(c.pid())["inline_receives"].as_u64().unwrap_or(0);
        if on {
            assert!(turns > 0, "the client's thread ran no receiving turn");
        } else {
            assert_eq!(turns, 0, "RINA_INLINE_RECV=0 still ran receiving turns");
        }
        c.close_stdin();
        assert!(
            c.expect_exit(Duration::from_secs(30)).success(),
            "{}",
            c.stderr()
        );
    }
    srv.kill_and_stderr();
}

/// What a program sees of reads on an empty flow, with inline receives on: EAGAIN at
/// once when nonblocking; a blocking read waits for `SO_RCVTIMEO` and then fails with
/// EAGAIN; a signal whose handler raises interrupts a blocking read; `os.read` (the
/// `read` hook) gets the echoed bytes as `recv` does; after the server's end, 0.
#[test]
fn reads_of_an_empty_flow_keep_their_semantics() {
    assert!(have("python3"));
    let dir = temp_dir();
    let p = pair(dir.path(), "inline-recv-sem");
    let server = r#"
import socket, sys
l = socket.socket(); l.bind(("127.0.0.1", int(sys.argv[1]))); l.listen(1)
c, _ = l.accept()
while True:
    d = c.recv(4096)
    if not d or d == b"bye":
        break
    c.sendall(d)
c.close()
"#;
    let port = p.port.to_string();
    let args = ["python3", "-c", server, &port];
    let mut srv = listening(
        "server",
        &mut receiving(
            rina_run(&p.server, &args, Stdio::null(), Stdio::null()),
            true,
        ),
    );
    let client = format!(
        r#"
import errno, os, signal, socket, struct, sys, time
s = socket.create_connection(("127.0.0.1", {port}))
out = []
s.setblocking(False)
t = time.monotonic()
try:
    s.recv(100); out.append("nonblocking read returned")
except BlockingIOError:
    out.append("nonblocking EAGAIN %s" % (time.monotonic() - t < 0.1))
s.setblocking(True)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 300000))
t = time.monotonic()
try:
    s.recv(100); out.append("timed read returned")
except OSError as e:
    out.append("timeout %s %s" % (errno.errorcode.get(e.errno), time.monotonic() - t >= 0.25))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 0))
class Alarm(Exception): pass
def ring(*_): raise Alarm()
signal.signal(signal.SIGALRM, ring)
signal.setitimer(signal.ITIMER_REAL, 0.3)
try:
    s.recv(100); out.append("interrupted read returned")
except Alarm:
    out.append("interrupted")
s.sendall(b"hello")
got = b""
while len(got) < 5:
    got += os.read(s.fileno(), 5 - len(got))
out.append(got.decode())
s.sendall(b"bye")
out.append("end %r" % s.recv(100))
print(", ".join(out), flush=True)
"#,
        port = p.port
    );
    let args = ["python3", "-c", &client];
    let mut cmd = receiving(
        rina_run(&p.client, &args, Stdio::null(), Stdio::piped()),
        true,
    );
    let mut c = Proc::spawn("client", &mut cmd);
    let said = c
        .stdout_until("\n", Duration::from_secs(60))
        .unwrap_or_default();
    assert_eq!(
        said.trim(),
        "nonblocking EAGAIN True, timeout EAGAIN True, interrupted, hello, end b''",
        "{}",
        c.kill_and_stderr()
    );
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
