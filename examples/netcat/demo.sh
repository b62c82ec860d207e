#!/usr/bin/env bash
# The demo: two unmodified OpenBSD netcat processes talk over RINA.
# Builds what it needs, runs a server and a client, each under its own rules file
# (examples/netcat/server.toml, client.toml), and shows that no TCP socket is used.
# Installs what is missing first (as root with apt-get; otherwise it names the packages
# and stops): netcat-openbsd, iproute2 (`ss`), and gcc and libc6-dev (Rust's linker).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source-path=SCRIPTDIR/../..
. scripts/lib/packages.sh

need_packages netcat-openbsd iproute2 gcc libc6-dev
need_cargo
cargo build --release --quiet -p rina-tools -p rina-interposer
RINA=target/release/rina
PORT=5000
tmp=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "== rules =="
$RINA check examples/netcat/server.toml | sed 's/^/  /'

echo "hello from the server, over RINA" > "$tmp/reply"
$RINA run -c examples/netcat/server.toml -- nc -l 127.0.0.1 $PORT < "$tmp/reply" > "$tmp/server.out" &
server_pid=$!
# Wait (bounded) until the server has registered its name and listens.
for _ in $(seq 100); do
  grep -q "@rina-listen/$server_pid/" /proc/net/unix && break
  sleep 0.1
done

echo "== while the server listens: TCP sockets on port $PORT (none), and the UDP tunnel =="
ss -Htan "( sport = :$PORT or dport = :$PORT )" | sed 's/^/  tcp: /'
ss -Huanp "( sport = :7100 )" | sed 's/^/  udp: /'

echo "== client sends, server replies =="
printf 'hello from the client, over RINA\n' |
  $RINA run -c examples/netcat/client.toml -- nc -N 127.0.0.1 $PORT | sed 's/^/  client got: /'
wait "$server_pid" || true
server_pid=
sed 's/^/  server got: /' "$tmp/server.out"

echo "done."
