"""A program under the common 1024-descriptor limit opens many connections at once
(issue 9): over TCP it gets about 1000 before EMFILE; a flow must cost it what a TCP
connection costs (the stack's own descriptors live above its range).

    many_flows.py server PORT        accepts and holds every connection
    many_flows.py client PORT COUNT  opens COUNT connections under a 1024 limit

The client prints `opened N highest_fd H select ok` (or the errno that stopped it).
"""
import errno
import resource
import select
import socket
import sys


def server(port):
    l = socket.socket()
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("127.0.0.1", port))
    l.listen(128)
    print("listening", flush=True)
    held = []
    while True:
        c, _ = l.accept()
        held.append(c)
        c.sendall(b"x")


def client(port, count):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    conns = []
    stopped = ""
    for _ in range(count):
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", port))
        except OSError as e:
            stopped = errno.errorcode.get(e.errno, str(e.errno))
            s.close()
            break
        conns.append(s)
    highest = max((c.fileno() for c in conns), default=-1)
    ok = "no"
    if conns:
        r, _, _ = select.select([conns[-1]], [], [], 10)
        ok = "ok" if r and conns[-1].recv(1) == b"x" else "no"
    print(f"opened {len(conns)} highest_fd {highest} select {ok} {stopped}".strip(), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(int(sys.argv[2]))
    else:
        client(int(sys.argv[2]), int(sys.argv[3]))
