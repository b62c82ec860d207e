//! A program slow to accept never stalls its stack: an incoming flow whose listener's
//! backlog is full waits (unanswered, as TCP leaves a connection while its accept queue
//! is full) instead of blocking the runtime thread. A single-threaded server that
//! writes 32 MiB to its first client while twenty more connect: over the old blocking
//! connect, the runtime thread waited on the full backlog, the server's write waited on
//! the runtime thread, and nothing moved again.

use std::process::Stdio;
use std::time::Duration;

use rina_e2e::*;

#[test]
fn a_full_backlog_waits_without_stalling_the_stack() {
    assert!(have("python3"));
    let dir = temp_dir();
    let p = pair(dir.path(), "backlog");
    let port = p.port;
    let server = format!(
        r#"
import socket
l = socket.socket(); l.bind(("127.0.0.1", {port})); l.listen(1)
c, _ = l.accept()
c.sendall(b"x" * (32 << 20)); c.close()
for _ in range(20):
    c, _ = l.accept(); c.sendall(b"ok"); c.close()
"#
    );
    let mut srv = spawn_server(
        &p.server,
        &["python3", "-c", &server],
        Stdio::null(),
        Stdio::null(),
    );
    let client = format!(
        r#"
import socket, threading
a = socket.create_connection(("127.0.0.1", {port}), timeout=60)
got = []
def late():
    s = socket.create_connection(("127.0.0.1", {port}), timeout=60)
    got.append(s.recv(10)); s.close()
threads = [threading.Thread(target=late) for _ in range(20)]
for t in threads: t.start()
n = 0
while True:
    b = a.recv(1 << 16)
    if not b: break
    n += len(b)
for t in threads: t.join(60)
print(n, sum(1 for g in got if g == b"ok"))
"#
    );
    let mut c = Proc::spawn(
        "client",
        &mut rina_run(
            &p.client,
            &["python3", "-c", &client],
            Stdio::null(),
            Stdio::piped(),
        ),
    );
    let out = c.stdout_within(Duration::from_secs(90));
    let st = c.expect_exit(Duration::from_secs(90));
    assert!(st.success(), "{}", c.stderr());
    assert_eq!(out.trim(), format!("{} 20", 32 << 20), "{}", c.stderr());
    assert!(srv.expect_exit(Duration::from_secs(30)).success());
}
