#!/usr/bin/env python3
"""Which server answers (issue 11's access tests).

whoami.py serve PORT NAME   accepts connections on 127.0.0.1:PORT forever; each gets
                            NAME and a newline, then the connection closes.
whoami.py ask PORT COUNT    makes COUNT connections to 127.0.0.1:PORT one after the
                            other and prints what each answered (one line each).
"""
import socket
import sys


def serve(port, name):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(16)
    while True:
        c, _ = s.accept()
        c.sendall(name.encode() + b"\n")
        c.close()


def ask(port, count):
    for _ in range(count):
        c = socket.create_connection(("127.0.0.1", port), timeout=20)
        got = b""
        while True:
            b = c.recv(100)
            if not b:
                break
            got += b
        c.close()
        print(got.decode().strip() or "(nothing)", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]), sys.argv[3])
    else:
        ask(int(sys.argv[2]), int(sys.argv[3]))
