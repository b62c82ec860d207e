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
assert peer[0].startswith("::ffff:100."), peer
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
    assert s.getsockname()[0].startswith("100."), s.getsockname()
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
    let out = run_within(
        &p.client,
        &["python3", "-c", &client],
        Duration::from_secs(60),
    );
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
    let out = run_within(
        &p.client,
        &["python3", "-c", &client],
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "still here\n");
}

/// The Python side of [`nonblocking_connect_completes_through_poll_select_and_epoll`]:
/// for each way of making a socket nonblocking and each way of waiting, connect gives
/// EINPROGRESS, the socket turns writable when the flow is up (or refused), and
/// SO_ERROR says which, once.
const NONBLOCKING_CLIENT: &str = r#"
import errno, fcntl, os, select, socket, struct, sys
port, expect, hows, waits = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(","), sys.argv[4].split(",")

def make(how):
    if how == "SOCK_NONBLOCK":
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    s = socket.socket()
    if how == "fcntl":
        fcntl.fcntl(s, fcntl.F_SETFL, fcntl.fcntl(s, fcntl.F_GETFL) | os.O_NONBLOCK)
    else:  # FIONBIO, as Python's own setblocking(False) does
        fcntl.ioctl(s, 0x5421, struct.pack("i", 1))
    return s

def writable(s, wait, timeout):
    if wait == "select":
        return bool(select.select([], [s], [], timeout)[1])
    if wait == "poll":
        p = select.poll(); p.register(s, select.POLLOUT)
        return bool(p.poll(timeout * 1000))
    e = select.epoll(); e.register(s, select.EPOLLOUT | select.EPOLLET)
    try:
        return bool(e.poll(timeout))
    finally:
        e.close()

for how in hows:
    for wait in waits:
        s = make(how)
        assert fcntl.fcntl(s, fcntl.F_GETFL) & os.O_NONBLOCK
        e = s.connect_ex(("127.0.0.1", port))
        assert e == errno.EINPROGRESS, (how, errno.errorcode.get(e, e))
        if expect == "ENETUNREACH":
            # Still in progress: not writable, a second connect says EALREADY, and
            # there is no peer yet.
            assert not writable(s, wait, 0), "writable before the flow is up"
            assert s.connect_ex(("127.0.0.1", port)) == errno.EALREADY
            try:
                s.getpeername(); assert False, "a peer while connecting"
            except OSError as x:
                assert x.errno == errno.ENOTCONN, x
        assert writable(s, wait, 20), (how, wait, "never writable")
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        got = errno.errorcode.get(err, "ok") if err else "ok"
        assert got == expect, (how, wait, got)
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0, "reported twice"
        if expect == "ok":
            assert s.getpeername() == ("127.0.0.1", port)
            s.setblocking(True)
            s.sendall(("%s/%s" % (how, wait)).encode())
            s.shutdown(socket.SHUT_WR)
            assert s.makefile("rb").read() == ("echo %s/%s" % (how, wait)).encode()
        s.close()
        print(how, wait, got, flush=True)
"#;

/// Nonblocking connect (SOCK_NONBLOCK, fcntl O_NONBLOCK, ioctl FIONBIO) followed by
/// select, poll or edge-triggered epoll and SO_ERROR: success, refusal (no such
/// application) and unreachable (no member answers), with the in-progress state
/// (not writable, EALREADY, ENOTCONN) seen while a flow is being made.
#[test]
fn nonblocking_connect_completes_through_poll_select_and_epoll() {
    assert!(have("python3"));
    let dir = temp_dir();
    let p = pair(dir.path(), "nonblocking");
    let server = format!(
        r#"
import socket, threading
l = socket.socket(); l.bind(("127.0.0.1", {port})); l.listen(16)
def serve(c):
    data = c.makefile("rb").read()
    c.sendall(b"echo " + data); c.close()
for _ in range(9):
    threading.Thread(target=serve, args=(l.accept()[0],)).start()
"#,
        port = p.port
    );
    let mut srv = Proc::spawn(
        "python server",
        rina_run(
            &p.server,
            &["python3", "-c", &server],
            Stdio::null(),
            Stdio::null(),
        )
        .stderr(Stdio::piped()),
    );
    assert!(
        wait_for_rina_listener(srv.pid(), Duration::from_secs(10)),
        "server: {}",
        srv.kill_and_stderr()
    );
    let port = p.port.to_string();
    let run = |rules: &std::path::Path, port: &str, expect: &str, hows: &str, waits: &str| {
        let out = run_within(
            rules,
            &[
                "python3",
                "-c",
                NONBLOCKING_CLIENT,
                port,
                expect,
                hows,
                waits,
            ],
            Duration::from_secs(60),
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{expect}: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let all = "SOCK_NONBLOCK,fcntl,FIONBIO";
    let ok = run(&p.client, &port, "ok", all, "select,poll,epoll");
    assert_eq!(ok.lines().count(), 9, "{ok}");
    assert!(
        srv.expect_exit(Duration::from_secs(10)).success(),
        "{}",
        srv.stderr()
    );

    // Refused: the rule names an application nobody registered.
    let text = std::fs::read_to_string(&p.client).unwrap();
    let refused = rules(
        dir.path(),
        "refused.toml",
        &text.replace("app = \"nonblocking\"", "app = \"nobody-registered-this\""),
    );
    let _server_member = spawn_server(
        &p.server,
        &["nc", "-l", "127.0.0.1", &port],
        Stdio::null(),
        Stdio::null(),
    );
    let got = run(&refused, &port, "ECONNREFUSED", all, "poll");
    assert_eq!(got.lines().count(), 3, "{got}");

    // Unreachable: the member to enroll through does not answer.
    let lonely = rules(
        dir.path(),
        "lonely.toml",
        &text.replace(
            "neighbor = \"127.0.0.1:",
            &format!("neighbor = \"127.0.0.1:{}\" }} # ", free_udp_port()),
        ),
    );
    let got = run(&lonely, &port, "ENETUNREACH", "SOCK_NONBLOCK", "epoll");
    assert_eq!(got.lines().count(), 1, "{got}");
}

/// TCP Fast Open (`sendto` with `MSG_FASTOPEN` on a stream socket) to a rule's
/// address connects through RINA and sends the data: never a TCP connection.
#[test]
fn fast_open_goes_through_rina() {
    assert!(have("python3") && have("nc"));
    let dir = temp_dir();
    let p = pair(dir.path(), "fastopen");
    let out_file = dir.path().join("out");
    let mut server = spawn_server(
        &p.server,
        &["nc", "-l", "127.0.0.1", &p.port.to_string()],
        Stdio::null(),
        stdout_to(&out_file),
    );
    let client = format!(
        "import socket\ns = socket.socket()\ns.sendto(b'sent with fast open', socket.MSG_FASTOPEN, ('127.0.0.1', {}))\ns.shutdown(socket.SHUT_WR)\ns.recv(1)\n",
        p.port
    );
    let out = run_within(
        &p.client,
        &["python3", "-c", &client],
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.expect_exit(Duration::from_secs(10)).success());
    assert_eq!(
        std::fs::read_to_string(&out_file).unwrap(),
        "sent with fast open"
    );
    assert!(!tcp_port_in_use(p.port));
}
