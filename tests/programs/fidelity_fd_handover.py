"""A flow's fd in a process other than the one that accepted it (issue 9): by exec,
by fork, or passed over SCM_RIGHTS to a process started before the flow existed. The
process that holds the fd checks that it looks like a TCP connection, then echoes.

    fidelity_fd_handover.py server PORT exec|fork|scm
    fidelity_fd_handover.py client PORT BYTES

The server listens on 127.0.0.1:PORT, accepts one connection and hands it over; the
process that got the fd prints one line per check (`CHECK ok: ...` or
`CHECK FAIL: ...`), echoes to end of stream, and exits 1 if a check failed (the
server exits with its status). The client sends BYTES bytes, reads the echo to end
of stream and prints `echoed N of BYTES intact` (or `... different`).
"""
import ipaddress
import os
import socket
import subprocess
import sys
import threading

SHARED = ipaddress.ip_network("100.64.0.0/10")


def in_shared(addr):
    """True if `addr` is an (ip, port) pair with ip in 100.64.0.0/10."""
    try:
        return ipaddress.ip_address(addr[0]) in SHARED
    except (TypeError, ValueError, IndexError):
        return False


def check(fd, port):
    """Checks the accepted connection `fd` (listener port `port`), then echoes on it
    to end of stream. Returns the exit status: 0 if every check passed."""
    failed = []

    def expect(what, ok, detail):
        print(f"{what} {'ok' if ok else 'FAIL'}: {detail}", flush=True)
        if not ok:
            failed.append(what)

    s = socket.socket(fileno=fd)
    s.settimeout(30)
    expect("family", s.family == socket.AF_INET, repr(s.family))
    try:
        peer = s.getpeername()
    except OSError as e:
        peer = e
    expect("getpeername", isinstance(peer, tuple) and len(peer) == 2 and in_shared(peer), repr(peer))
    try:
        me = s.getsockname()
    except OSError as e:
        me = e
    expect(
        "getsockname",
        isinstance(me, tuple) and len(me) == 2 and isinstance(me[0], str) and me[1] == port,
        repr(me),
    )
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        nodelay = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    except OSError as e:
        nodelay = e
    expect("nodelay", nodelay == 1, repr(nodelay))
    n = 0
    while True:
        b = s.recv(65536)
        if not b:
            break
        s.sendall(b)
        n += len(b)
    s.close()
    print(f"echoed {n}", flush=True)
    return 1 if failed else 0


def serve(port, mode):
    receiver = None
    if mode == "scm":
        # Started before the flow exists: a process of its own (not a fork of this one).
        ours, theirs = socket.socketpair()
        receiver = subprocess.Popen(
            [sys.executable, __file__, "receive", str(theirs.fileno()), str(port)],
            pass_fds=[theirs.fileno()],
        )
        theirs.close()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1)
    listener.settimeout(30)
    conn, peer = listener.accept()
    print(f"accepted {peer!r}", flush=True)
    if mode == "exec":
        fd = conn.detach()
        os.set_inheritable(fd, True)
        os.execv(sys.executable, [sys.executable, __file__, "check", str(fd), str(port)])
    if mode == "fork":
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                listener.close()
                status = check(conn.detach(), port)
            finally:
                os._exit(status)
        conn.close()
        _, st = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(st)
    if mode == "scm":
        socket.send_fds(ours, [b"fd"], [conn.fileno()])
        conn.close()
        return receiver.wait(60)
    raise SystemExit(f"unknown mode {mode}")


def receive(sock_fd, port):
    s = socket.socket(fileno=sock_fd)
    s.settimeout(60)
    _, fds, _, _ = socket.recv_fds(s, 16, 1)
    if not fds:
        print("no fd received", flush=True)
        return 1
    return check(fds[0], port)


def client(port, n):
    data = bytes((i * 13 + 7) % 256 for i in range(n))
    s = socket.create_connection(("127.0.0.1", port), timeout=30)

    def send():
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)

    t = threading.Thread(target=send, daemon=True)
    t.start()
    got = bytearray()
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += b
    t.join(30)
    s.close()
    print(f"echoed {len(got)} of {n} {'intact' if got == data else 'different'}", flush=True)
    return 0


def main():
    role = sys.argv[1]
    if role == "server":
        sys.exit(serve(int(sys.argv[2]), sys.argv[3]))
    if role == "check":
        sys.exit(check(int(sys.argv[2]), int(sys.argv[3])))
    if role == "receive":
        sys.exit(receive(int(sys.argv[2]), int(sys.argv[3])))
    if role == "client":
        sys.exit(client(int(sys.argv[2]), int(sys.argv[3])))
    raise SystemExit(f"unknown role {role}")


main()
