"""Peer addresses of concurrent connections (issue 9).

    fidelity_peers.py server PORT N
    fidelity_peers.py client PORT N

The server listens on 127.0.0.1:PORT and accepts N connections that are all open at
once; for each it prints `accepted IP PORT getpeername IP PORT` (what accept returned,
then what getpeername says), then sends back `IP PORT` of what accept returned and
waits for the client to close. The client opens N connections before reading any,
then for each prints `sockname IP PORT seen IP PORT` (its own getsockname, then what
the server saw) and closes them all.
"""
import socket
import sys


def server(port, n):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(n)
    listener.settimeout(30)
    conns = []
    for _ in range(n):
        c, peer = listener.accept()
        c.settimeout(30)
        named = c.getpeername()
        print(f"accepted {peer[0]} {peer[1]} getpeername {named[0]} {named[1]}", flush=True)
        conns.append((c, peer))
    for c, peer in conns:
        c.sendall(f"{peer[0]} {peer[1]}\n".encode())
    for c, _ in conns:
        while c.recv(100):
            pass
        c.close()


def client(port, n):
    conns = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(n)]
    for s in conns:
        me = s.getsockname()
        seen = s.makefile("r").readline().strip()
        print(f"sockname {me[0]} {me[1]} seen {seen}", flush=True)
    for s in conns:
        s.close()


def main():
    role, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if role == "server":
        server(port, n)
    elif role == "client":
        client(port, n)
    else:
        raise SystemExit(f"unknown role {role}")


main()
