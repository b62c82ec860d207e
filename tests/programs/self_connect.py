"""One process, a listener thread and a client thread (issue 16): connect, accept,
echo and close, round after round, with nothing else in the DIF to wake the stack.

    self_connect.py PORT ROUNDS blocking|epoll

`blocking`: the client connects with a blocking socket. `epoll`: a nonblocking
connect completed in an edge-triggered epoll loop (EINPROGRESS, EPOLLOUT, SO_ERROR).
A warm-up round comes first (the first round also pays for the interpreter's own
start-up work, over TCP too). Prints one line: `rounds N median_ms M p99_ms P max_ms X`.
"""
import errno
import select
import socket
import sys
import threading
import time


def serve(listener):
    while True:
        conn, _ = listener.accept()
        data = conn.recv(100)
        conn.sendall(data)
        conn.close()


def blocking_round(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"hello")
    assert s.recv(100) == b"hello"
    s.close()


def epoll_round(port):
    s = socket.socket()
    s.setblocking(False)
    e = s.connect_ex(("127.0.0.1", port))
    assert e in (0, errno.EINPROGRESS), e
    ep = select.epoll()
    ep.register(s, select.EPOLLOUT | select.EPOLLET)
    assert ep.poll(10), "connect never completed"
    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    assert err == 0, errno.errorcode.get(err, err)
    s.send(b"hello")
    ep.modify(s, select.EPOLLIN | select.EPOLLET)
    got = b""
    while got != b"hello":
        assert ep.poll(10), "no echo"
        got += s.recv(100)
    ep.close()
    s.close()


def main():
    port, rounds, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(16)
    threading.Thread(target=serve, args=(listener,), daemon=True).start()
    one = blocking_round if mode == "blocking" else epoll_round
    one(port)
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        one(port)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    print(
        f"rounds {len(times)} median_ms {times[len(times) // 2]:.3f} "
        f"p99_ms {times[len(times) * 99 // 100]:.3f} max_ms {times[-1]:.3f}",
        flush=True,
    )


main()
