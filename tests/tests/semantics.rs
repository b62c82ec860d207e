//! Socket semantics programs rely on (issue 3), checked from Python under the
//! interposer: nonblocking connect completed through select and SO_ERROR; a listener
//! readable in select, poll and edge-triggered epoll when a flow waits; accept4 flags;
//! names and options answered as for TCP.

use std::process::Stdio;
use std::time::Duration;

use rina_e2e::*;

#[test]
fn python_sees_tcp_semantics() {
    assert!(have("python3"));
    let dir = temp_dir();
    let p = pair(dir.path(), "semantics");
    let port = p.port;
    // The server binds the IPv6 wildcard: its rule matches any address on the port.
    let text = std::fs::read_to_string(&p.server).unwrap();
    std::fs::write(
        &p.server,
        text.replace(
            &format!("on = \"127.0.0.1:{port}\""),
            &format!("on = \"*:{port}\""),
        ),
    )
    .unwrap();
    let server = format!(
        r#"
import socket, select
l = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
l.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("::", {port}))
l.listen(4)
assert l.getsockname()[:2] == ("::", {port}), l.getsockname()
assert l.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN) == socket.AF_INET6
assert l.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
# 1: select
r, _, _ = select.select([l], [], [], 10); assert r == [l], "select"
c, peer = l.accept()
assert peer[0].startswith("::ffff:127."), peer
c.sendall(b"one"); c.close()
# 2: poll
po = select.poll(); po.register(l, select.POLLIN)
assert po.poll(10000), "poll"
c = socket.socket(fileno=socket.accept4(l.fileno(), socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)[0]) if hasattr(socket, "accept4") else l.accept()[0]
c.setblocking(True); c.sendall(b"two"); c.close()
# 3: edge-triggered epoll
ep = select.epoll(); ep.register(l, select.EPOLLIN | select.EPOLLET)
assert ep.poll(10), "epoll"
c, _ = l.accept()
assert c.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_STREAM
assert c.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL) == socket.IPPROTO_TCP
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
assert c.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
c.sendall(b"three"); c.close()
print("server ok")
"#
    );
    let client = format!(
        r#"
import socket, select, errno
for want in (b"one", b"two", b"three"):
    s = socket.socket()
    s.setblocking(False)
    e = s.connect_ex(("127.0.0.1", {port}))
    assert e in (0, errno.EINPROGRESS), e
    _, w, _ = select.select([], [s], [], 10); assert w == [s]
    assert s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    assert s.getpeername() == ("127.0.0.1", {port}), s.getpeername()
    assert s.getsockname()[0] == "127.0.0.1"
    assert s.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN) == socket.AF_INET
    s.setblocking(True)
    s.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        b = s.recv(100)
        if not b: break
        got += b
    assert got == want, (got, want)
    s.close()
print("client ok")
"#
    );
    let mut srv = Proc::spawn(
        "python server",
        rina_run(
            &p.server,
            &["python3", "-c", &server],
            Stdio::null(),
            Stdio::piped(),
        )
        .stderr(Stdio::piped()),
    );
    assert!(
        wait_for_rina_listener(srv.pid(), Duration::from_secs(10)),
        "server: {}",
        srv.kill_and_stderr()
    );
    let out = rina_run(
        &p.client,
        &["python3", "-c", &client],
        Stdio::null(),
        Stdio::piped(),
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "client ok\n");
    let st = srv.expect_exit(Duration::from_secs(10));
    assert!(st.success(), "server: {}", srv.stderr());
}

/// A program that closes every fd above stderr first (as ssh and daemons do) still
/// gets its flow: the stack starts only at the first call a rule matches, so nothing
/// of it exists yet to be closed.
#[test]
fn closing_every_fd_first_does_not_break_the_stack() {
    assert!(have("python3") && have("nc"));
    let dir = temp_dir();
    let p = pair(dir.path(), "closeall");
    let reply = dir.path().join("reply");
    std::fs::write(&reply, b"still here\n").unwrap();
    let _server = spawn_server(
        &p.server,
        &["nc", "-l", "127.0.0.1", &p.port.to_string()],
        stdin_from(&reply),
        Stdio::null(),
    );
    let client = format!(
        r#"
import os, socket
os.closerange(3, 4096)
s = socket.create_connection(("127.0.0.1", {}), timeout=10)
s.shutdown(socket.SHUT_WR)
print(s.makefile().read(), end="")
"#,
        p.port
    );
    let out = rina_run(
        &p.client,
        &["python3", "-c", &client],
        Stdio::null(),
        Stdio::piped(),
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "still here\n");
}
