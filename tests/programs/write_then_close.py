"""Write-then-close rounds (issue 9): a server that accepts, writes its answer and
closes without reading, and a client that writes a request, then reads to the end.

    write_then_close.py server PORT ANSWER_BYTES ROUNDS
    write_then_close.py client PORT ANSWER_BYTES ROUNDS REQUEST_BYTES

The client prints `lost L of ROUNDS` (answers that did not arrive whole) and exits 0;
over TCP L is 0.
"""
import socket
import sys


def answer(n):
    return bytes((i * 7) % 251 for i in range(n))


def server(port, n, rounds):
    ans = answer(n)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    print("listening", flush=True)
    for _ in range(rounds):
        conn, _ = listener.accept()
        conn.sendall(ans)
        conn.close()


def client(port, n, rounds, request):
    ans = answer(n)
    lost = 0
    for _ in range(rounds):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        try:
            s.sendall(b"q" * request)
        except OSError:
            pass  # the server may be gone already: its answer must still arrive
        got = bytearray()
        try:
            while True:
                b = s.recv(1 << 16)
                if not b:
                    break
                got += b
        except ConnectionResetError:
            pass  # after the answer, as TCP may report it
        if bytes(got) != ans:
            lost += 1
            print(f"round: {len(got)} of {n} bytes", file=sys.stderr)
        s.close()
    print(f"lost {lost} of {rounds}", flush=True)


if __name__ == "__main__":
    role, port, n, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    if role == "server":
        server(port, n, rounds)
    else:
        client(port, n, rounds, int(sys.argv[5]))
