#!/usr/bin/env python3
"""Attacks a secured DIF's UDP shim flow on loopback, as the issue's attacker did
(issue 11's tests; run as root).

sealed_attack.py SERVER_PORT CLIENT_PORT COUNT

Sniffs COUNT sealed PDUs the client sends the server (AF_PACKET on lo), then sends
the server, from the client's port (a raw socket writes the UDP header):
- each captured datagram again (replays);
- each with one bit of its counter flipped (so it is new, and does not open);
- COUNT forged sealed PDUs for the flow (its id from the capture, random bytes);
- one forged shim release of the flow (10 bytes).
Prints "replayed N flipped N forged N releases 1".
"""
import os
import socket
import struct
import sys

ETH_P_IP = 0x0800
PACKET_OUTGOING = 4


def sniff(server, client, count):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    s.bind(("lo", 0))
    s.settimeout(30)
    got = []
    while len(got) < count:
        frame, addr = s.recvfrom(65536)
        if addr[2] == PACKET_OUTGOING:
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != socket.IPPROTO_UDP:
            continue
        sport, dport = struct.unpack("!HH", ip[ihl:ihl + 4])
        payload = ip[ihl + 8:]
        flow = payload[:4]
        # Sealed PDUs only (type 0x10 or 0x11 after the shim's flow id).
        sealed_pdu = len(payload) > 40 and payload[4] in (0x10, 0x11)
        if sport == client and dport == server and flow != b"\0\0\0\0" and sealed_pdu:
            got.append(payload)
    s.close()
    return got


def main():
    server, client, count = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    captured = sniff(server, client, count)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)

    def send(payload):
        header = struct.pack("!HHHH", client, server, 8 + len(payload), 0)
        raw.sendto(header + payload, ("127.0.0.1", 0))

    for p in captured:
        send(p)
    for p in captured:
        flipped = bytearray(p)
        flipped[5] ^= 0x80  # the counter's top byte: new to the window, and forged
        send(bytes(flipped))
    flow = captured[0][:4]
    for _ in range(count):
        send(flow + bytes([0x10]) + os.urandom(120))
    send(b"\0\0\0\0" + bytes([1, 3]) + flow)
    print(f"replayed {count} flipped {count} forged {count} releases 1", flush=True)


if __name__ == "__main__":
    main()
