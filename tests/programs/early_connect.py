"""Early connects as a program sees them (tests/tests/early.rs).

    early_connect.py server PORT
    early_connect.py client PORT ROUNDS
    early_connect.py late PORT

The server echoes every connection (reads to the end, writes it all back, closes)
and prints `got LENGTH`. A line `close` on its stdin closes its listener (it prints
`closed`); it exits at the end of its stdin.

`late` connects once and exchanges a line, prints `again?`, waits for a line on its
stdin, then connects again, writes `late ` and 20,000 bytes more and a newline (more
than a flow request carries), closes without reading, prints `written` and exits.

The client makes ROUNDS connections one after another, each sending a request of its
own length and content (64 bytes to about 19 KiB) and half-closing, and checks that the
echo is the request: it prints `ok ROUNDS`. Then it prints `again?`, waits for a line
on its stdin and connects once more: it prints `connect: refused` (ECONNREFUSED from
connect), `reset` (ECONNRESET on the first read or write) or `connected`.
"""
import select
import socket
import sys
import threading


def echo(conn):
    got = bytearray()
    while True:
        b = conn.recv(1 << 16)
        if not b:
            break
        got += b
    print(f"got {len(got)}", flush=True)
    try:
        conn.sendall(got)
    except OSError:
        pass  # a client that wrote and left
    conn.close()


def late(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(b"first\n")
    s.shutdown(socket.SHUT_WR)
    while s.recv(1 << 16):
        pass
    s.close()
    print("again?", flush=True)
    sys.stdin.readline()
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(b"late " + b"y" * 20000 + b"\n")
    s.close()
    print("written", flush=True)


def server(port):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    print("listening", flush=True)
    while True:
        watched = [sys.stdin] + ([listener] if listener else [])
        ready, _, _ = select.select(watched, [], [])
        if listener in ready:
            conn, _ = listener.accept()
            threading.Thread(target=echo, args=(conn,), daemon=True).start()
        if sys.stdin in ready:
            line = sys.stdin.readline()
            if not line:
                return
            if line.strip() == "close" and listener:
                listener.close()
                listener = None
                print("closed", flush=True)


def request(i):
    return bytes((i * 31 + j) % 251 for j in range(64 + i * 997))


def client(port, rounds):
    for i in range(rounds):
        req = request(i)
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(req)
        s.shutdown(socket.SHUT_WR)
        got = bytearray()
        while True:
            b = s.recv(1 << 16)
            if not b:
                break
            got += b
        s.close()
        if bytes(got) != req:
            print(f"round {i}: {len(got)} of {len(req)} bytes, or not the request", flush=True)
            sys.exit(1)
    print(f"ok {rounds}", flush=True)
    print("again?", flush=True)
    sys.stdin.readline()
    s = socket.socket()
    s.settimeout(30)
    try:
        s.connect(("127.0.0.1", port))
    except ConnectionRefusedError:
        print("connect: refused", flush=True)
        return
    try:
        s.sendall(b"x")
        s.shutdown(socket.SHUT_WR)
        s.recv(16)
        print("connected", flush=True)
    except ConnectionResetError:
        print("reset", flush=True)


if __name__ == "__main__":
    role, port = sys.argv[1], int(sys.argv[2])
    if role == "server":
        server(port)
    elif role == "late":
        late(port)
    else:
        client(port, int(sys.argv[3]))
