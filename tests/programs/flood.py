#!/usr/bin/env python3
"""Floods a member's UDP shim endpoint as the issue's attacker did (issue 11's tests).

flood.py PORT COUNT DIF

Sends COUNT shim allocation requests for DIF's name with fresh flow ids from one UDP
socket on 127.0.0.1, and on every flow the member answers, a forged handshake
initiation (right type and size, random bytes). Reads everything sent back. Prints
"sent BYTES got BYTES answers N".
"""
import os
import socket
import struct
import sys
import time


def name(text):
    b = text.encode()
    return bytes([len(b)]) + b + b"\0\0\0"


def main():
    port, count, dif = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    to = ("127.0.0.1", port)
    sent = got = answers = 0

    def drain():
        nonlocal sent, got, answers
        while True:
            try:
                d = s.recv(65536)
            except BlockingIOError:
                return
            got += len(d)
            # An allocation answer (management, version 1, type 2) names the flow.
            if len(d) >= 15 and d[:6] == b"\0\0\0\0\x01\x02" and d[14] == 0:
                answers += 1
                init = d[10:14] + b"\x01" + os.urandom(96)
                s.sendto(init, to)
                sent += len(init)

    for i in range(1, count + 1):
        req = b"\0\0\0\0\x01\x01" + struct.pack("!I", i) + name("x") + name(dif)
        while True:
            try:
                s.sendto(req, to)
                break
            except BlockingIOError:
                drain()
        sent += len(req)
        if i % 50 == 0:
            drain()
    end = time.monotonic() + 2
    while time.monotonic() < end:
        drain()
        time.sleep(0.01)
    print(f"sent {sent} got {got} answers {answers}", flush=True)


if __name__ == "__main__":
    main()
