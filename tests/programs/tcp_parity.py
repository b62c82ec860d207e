"""TCP's smaller promises (issue 16), checked the same way over kernel TCP and over
RINA: run plainly, then under rules that send every loopback listen and connect of
this process through RINA (listen 127.0.0.1:* registers p{port}, connect 127.0.0.1:*
allocates a flow to p{port}).

    tcp_parity.py BASE_PORT [CASE...]

Each case prints `CASE ok` or `CASE FAIL: why` on one line; the exit code is 0 when
every case passed. Cases use ports from BASE_PORT up.
"""
import errno
import select
import socket
import struct
import sys
import threading
import time

BASE = int(sys.argv[1])
HOST = "127.0.0.1"


def port(n):
    return BASE + n


def listener(p, backlog=16, **opts):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    for (level, name), value in opts.get("options", {}).items():
        s.setsockopt(level, name, value)
    s.bind((HOST, p))
    s.listen(backlog)
    return s


def closed_listener_refuses():
    """A connect after the server closed its listener is refused."""
    p = port(0)
    l = listener(p)
    c = socket.create_connection((HOST, p), timeout=5)
    a, _ = l.accept()
    a.close()
    c.close()
    l.close()
    time.sleep(0.05)  # let the close be seen; TCP needs none
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect((HOST, p))
    except ConnectionRefusedError:
        return
    raise AssertionError("connect succeeded after the listener was closed")


def connect_before_listen_then_retry():
    """A nonblocking connect before the server listens fails; after the server
    listens, a new connect succeeds."""
    p = port(1)
    s = socket.socket()
    s.setblocking(False)
    e = s.connect_ex((HOST, p))
    if e == errno.EINPROGRESS:
        select.select([], [s], [], 5)
        e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    assert e == errno.ECONNREFUSED, errno.errorcode.get(e, e)
    s.close()
    l = listener(p)
    s = socket.socket()
    s.settimeout(5)
    s.connect((HOST, p))
    a, _ = l.accept()
    s.sendall(b"late")
    assert a.recv(10) == b"late"
    for x in (a, s, l):
        x.close()


def connect_cancelled_before_listen_then_retry():
    """A nonblocking connect before the server listens, closed at once (cancelled);
    after the server listens, a new connect succeeds."""
    p = port(9)
    s = socket.socket()
    s.setblocking(False)
    e = s.connect_ex((HOST, p))
    assert e in (errno.EINPROGRESS, errno.ECONNREFUSED), errno.errorcode.get(e, e)
    s.close()
    l = listener(p)
    s = socket.socket()
    s.settimeout(5)
    s.connect((HOST, p))
    a, _ = l.accept()
    for x in (a, s, l):
        x.close()


def bound_source_port_is_kept():
    """bind((host, port)) then connect: getsockname shows that port."""
    p, q = port(2), port(3)
    l = listener(p)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((HOST, q))
    s.connect((HOST, p))
    a, peer = l.accept()
    assert s.getsockname() == (HOST, q), s.getsockname()
    assert peer[1] == q, peer
    for x in (a, s, l):
        x.close()


OPTIONS = {
    (socket.SOL_SOCKET, socket.SO_REUSEPORT): 1,
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE): 1,
    (socket.IPPROTO_TCP, socket.TCP_NODELAY): 1,
    (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE): 77,
    (socket.IPPROTO_IP, socket.IP_TOS): 0x10,
}


def options_set_before_read_back():
    """Options set before listen or connect read back as set afterwards."""
    p = port(4)
    l = listener(p, options=OPTIONS)
    c = socket.socket()
    for (level, name), value in OPTIONS.items():
        c.setsockopt(level, name, value)
    c.connect((HOST, p))
    a, _ = l.accept()
    for s, who in ((l, "listener"), (c, "client")):
        for (level, name), value in OPTIONS.items():
            got = s.getsockopt(level, name)
            assert got == value, f"{who}: option {level}/{name}: {got} != {value}"
    # And set afterwards, on the accepted socket.
    a.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    assert a.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    for x in (a, c, l):
        x.close()


def sendto_on_a_connected_stream():
    """sendto(data, addr) on a connected stream socket ignores the address."""
    p = port(5)
    l = listener(p)
    c = socket.create_connection((HOST, p), timeout=5)
    a, _ = l.accept()
    assert c.sendto(b"abc", (HOST, p)) == 3
    assert a.recv(10) == b"abc"
    for x in (a, c, l):
        x.close()


def send_timeout_with_a_stalled_reader():
    """A sender with a 10 ms send timeout meets back-pressure within a few MB when
    the reader stops."""
    p = port(6)
    l = listener(p)
    c = socket.create_connection((HOST, p), timeout=5)
    a, _ = l.accept()
    c.settimeout(None)  # blocking, so that SO_SNDTIMEO decides
    c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 0, 10000))
    chunk = b"x" * 65536
    sent, read = 0, 0
    timed_out = False
    while sent < 10 << 20:
        try:
            sent += c.send(chunk)
        except (BlockingIOError, socket.timeout, TimeoutError):
            timed_out = True
            break
        while read < min(88000, sent):
            read += len(a.recv(min(88000, sent) - read))
    print(f"  (held {sent - read} bytes when the send timed out)", file=sys.stderr)
    assert timed_out, f"{sent} bytes taken by a reader that stopped"
    for x in (a, c, l):
        x.close()


def read_after_the_peer_closed():
    """After the peer closed, a read returns end of stream (not an error)."""
    p = port(7)
    l = listener(p, backlog=64)
    for i in range(50):
        c = socket.create_connection((HOST, p), timeout=5)
        a, _ = l.accept()
        a.sendall(b"bye")
        a.close()
        got = b""
        while True:
            try:
                b = c.recv(10)
            except OSError as e:
                raise AssertionError(f"round {i}: read after close: {e}")
            if not b:
                break
            got += b
        assert got == b"bye", got
        c.close()
    l.close()


def both_ends_agree_on_addresses():
    """What the client sees as its own address is what the server sees as the peer,
    and the other way round."""
    p = port(8)
    l = listener(p)
    c = socket.create_connection((HOST, p), timeout=5)
    a, peer = l.accept()
    assert c.getsockname() == a.getpeername() == peer, (c.getsockname(), a.getpeername(), peer)
    assert c.getpeername() == a.getsockname(), (c.getpeername(), a.getsockname())
    for x in (a, c, l):
        x.close()


CASES = [
    closed_listener_refuses,
    connect_before_listen_then_retry,
    connect_cancelled_before_listen_then_retry,
    bound_source_port_is_kept,
    options_set_before_read_back,
    sendto_on_a_connected_stream,
    send_timeout_with_a_stalled_reader,
    read_after_the_peer_closed,
    both_ends_agree_on_addresses,
]


def main():
    wanted = sys.argv[2:]
    failed = 0
    for case in CASES:
        if wanted and case.__name__ not in wanted:
            continue
        result = [None]

        def run():
            try:
                case()
            except BaseException as e:  # noqa: BLE001 - reported as the case's failure
                result[0] = f"{type(e).__name__}: {e}"

        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.join(30)
        if t.is_alive():
            result[0] = "did not finish in 30 s"
        if result[0] is None:
            print(f"{case.__name__} ok", flush=True)
        else:
            failed += 1
            print(f"{case.__name__} FAIL: {result[0]}", flush=True)
    sys.exit(1 if failed else 0)


main()
