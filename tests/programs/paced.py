#!/usr/bin/env python3
"""A paced stream for the security tests (issue 11).

paced.py send HOST PORT SECONDS
    connects and sends 16 KiB of seeded pseudo-random bytes every 5 ms for SECONDS,
    then closes; prints "sent BYTES sha256 HEX".
paced.py sink HOST PORT
    listens, takes one connection and reads it to its end, then prints
    "got BYTES sha256 HEX max_gap_ms MS" (the longest wait between two reads once data
    flows) and stays until its standard input ends, so that its stack can be asked
    for its figures first.
"""
import hashlib
import random
import socket
import sys
import time


def send(host, port, seconds):
    rng = random.Random(7)
    h = hashlib.sha256()
    total = 0
    s = socket.create_connection((host, port), timeout=20)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        chunk = rng.randbytes(16384)
        s.sendall(chunk)
        h.update(chunk)
        total += len(chunk)
        time.sleep(0.005)
    s.shutdown(socket.SHUT_WR)
    s.settimeout(20)
    while s.recv(65536):
        pass
    s.close()
    print(f"sent {total} sha256 {h.hexdigest()}", flush=True)


def sink(host, port):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port))
    ls.listen(1)
    c, _ = ls.accept()
    h = hashlib.sha256()
    total, last, gap = 0, None, 0.0
    while True:
        b = c.recv(1 << 20)
        now = time.monotonic()
        if not b:
            break
        if last is not None:
            gap = max(gap, now - last)
        last = now
        h.update(b)
        total += len(b)
    c.close()
    print(f"got {total} sha256 {h.hexdigest()} max_gap_ms {gap * 1000:.1f}", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    if sys.argv[1] == "send":
        send(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        sink(sys.argv[2], int(sys.argv[3]))
