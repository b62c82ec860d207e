#!/usr/bin/env python3
"""An echo server behind a gateway's egress (the gateway tests).

proxy_echo.py PORT [--proxy] [--udp UPORT] [--reset-after N]
    Listens on 127.0.0.1:PORT and prints "ready" once it does. Each connection is
    served on a thread of its own: with --proxy it must open with a PROXY protocol v2
    header, and "from SRC to DST" is printed (SRC and DST as ADDR:PORT); then what
    comes is echoed until the client's end, and the connection is closed. With
    --udp, datagrams to 127.0.0.1:UPORT come back prefixed with "re:". With
    --reset-after, a connection is reset (SO_LINGER 0, close) once N bytes came.
"""
import ipaddress
import socket
import struct
import sys
import threading

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
lock = threading.Lock()


def read_exactly(c, n):
    got = b""
    while len(got) < n:
        b = c.recv(n - len(got))
        if not b:
            raise EOFError("the connection ended inside the PROXY header")
        got += b
    return got


def proxy_header(c):
    head = read_exactly(c, 16)
    if head[:12] != SIGNATURE:
        raise ValueError("no PROXY v2 signature: %r" % head)
    body = read_exactly(c, int.from_bytes(head[14:16], "big"))
    if head[12] == 0x20:
        return "LOCAL"
    size = {0x11: 4, 0x21: 16}[head[13]]
    src = ipaddress.ip_address(body[:size])
    dst = ipaddress.ip_address(body[size:2 * size])
    sport = int.from_bytes(body[2 * size:2 * size + 2], "big")
    dport = int.from_bytes(body[2 * size + 2:2 * size + 4], "big")
    return "from %s:%d to %s:%d" % (src, sport, dst, dport)


def serve(c, proxy, reset_after):
    try:
        if proxy:
            line = proxy_header(c)
            with lock:
                print(line, flush=True)
        got = 0
        while True:
            b = c.recv(65536)
            if not b:
                break
            got += len(b)
            if reset_after is not None and got >= reset_after:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                break
            c.sendall(b)
    except (OSError, EOFError, ValueError, KeyError) as e:
        with lock:
            print("error: %s" % e, flush=True)
    finally:
        c.close()


def udp(port):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", port))
    while True:
        d, a = u.recvfrom(65536)
        u.sendto(b"re:" + d, a)


def main():
    port = int(sys.argv[1])
    proxy = "--proxy" in sys.argv
    reset_after = None
    if "--reset-after" in sys.argv:
        reset_after = int(sys.argv[sys.argv.index("--reset-after") + 1])
    if "--udp" in sys.argv:
        uport = int(sys.argv[sys.argv.index("--udp") + 1])
        threading.Thread(target=udp, args=(uport,), daemon=True).start()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(256)
    print("ready", flush=True)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c, proxy, reset_after), daemon=True).start()


main()
