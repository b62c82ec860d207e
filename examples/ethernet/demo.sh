#!/usr/bin/env bash
# RINA straight over Ethernet, in one command: two network namespaces joined by a veth
# pair with no IP address at all (IPv6 off too), an nc server in one and an nc client
# in the other, each under its own rules (examples/ethernet/server.toml, client.toml).
# The DIF is secured: the demo makes each member's key (`rina keygen`) and trusts the
# other's. A capture on the veth shows Ethertype 0xD1F0 frames, no IP, and none of
# the text the two exchange (every PDU is sealed). Needs root (network
# namespaces, raw sockets). Installs what is missing with apt-get: netcat-openbsd,
# iproute2, tcpdump, procps (`sysctl`), and to build, gcc and libc6-dev (Rust's linker).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source-path=SCRIPTDIR/../..
. scripts/lib/packages.sh

[ "$(id -u)" = 0 ] || { echo "demo: run as root (namespaces and raw Ethernet)" >&2; exit 1; }
# RINA_BIN: an already built `rina` (the tests use it); otherwise build.
if [ -n "${RINA_BIN:-}" ]; then
  need_packages netcat-openbsd iproute2 tcpdump procps
  RINA=$RINA_BIN
else
  need_packages netcat-openbsd iproute2 tcpdump procps gcc libc6-dev
  need_cargo
  cargo build --release --quiet -p rina-tools -p rina-interposer
  RINA=${CARGO_TARGET_DIR:-$PWD/target}/release/rina
fi
A=rina-demo-a-$$
B=rina-demo-b-$$
tmp=$(mktemp -d)
cleanup() {
  for ns in "$A" "$B"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "== keys: each member's own, and the other's public key trusted =="
mkdir -p "$tmp/keys/trusted-by-server" "$tmp/keys/trusted-by-client"
cp examples/ethernet/server.toml examples/ethernet/client.toml "$tmp/"
"$RINA" keygen "$tmp/keys/server.key" > "$tmp/keys/trusted-by-client/server.pub"
"$RINA" keygen "$tmp/keys/client.key" > "$tmp/keys/trusted-by-server/client.pub"
"$RINA" check "$tmp/server.toml" | grep -E "secured" | sed 's/^ */  /'

echo "== two hosts: namespaces $A and $B, joined by a veth pair, no IP =="
for ns in "$A" "$B"; do
  ip netns add "$ns"
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$ns" link set lo up
done
ip -n "$A" link add eth0 type veth peer name eth0 netns "$B"
ip -n "$A" link set eth0 up
ip -n "$B" link set eth0 up
ip -n "$A" -br addr show eth0 | sed 's/^/  A: /'
ip -n "$B" -br addr show eth0 | sed 's/^/  B: /'

ip netns exec "$A" tcpdump -i eth0 -nn -e -U --immediate-mode -w "$tmp/cap.pcap" 2>"$tmp/tcpdump.err" &
for _ in $(seq 100); do grep -q "listening on" "$tmp/tcpdump.err" && break; sleep 0.1; done

echo "hello from the server, over RINA over Ethernet" > "$tmp/reply"
ip netns exec "$A" "$RINA" run -c "$tmp/server.toml" -- nc -l 10.9.0.1 5000 \
  < "$tmp/reply" > "$tmp/server.out" &
server_pid=$!
for _ in $(seq 100); do
  grep -q "@rina-listen/$server_pid/" "/proc/$server_pid/net/unix" 2>/dev/null && break
  sleep 0.1
done

echo "== client (in B) sends, server (in A) replies =="
printf 'hello from the client, over RINA over Ethernet\n' |
  ip netns exec "$B" "$RINA" run -c "$tmp/client.toml" -- nc -N 10.9.0.1 5000 |
  sed 's/^/  client got: /'
wait "$server_pid" || true
sed 's/^/  server got: /' "$tmp/server.out"

# Let the capture catch up with the last frames (bounded), then stop it.
for _ in $(seq 50); do [ "$(stat -c %s "$tmp/cap.pcap")" -gt 24 ] && break; sleep 0.1; done
sleep 0.2
for pid in $(ip netns pids "$A"); do kill -INT "$pid" 2>/dev/null || true; done
wait 2>/dev/null || true
echo "== on the wire =="
echo "  frames of Ethertype 0xd1f0: $(tcpdump -nn -r "$tmp/cap.pcap" 'ether proto 0xd1f0' 2>/dev/null | wc -l)"
echo "  IP packets:                 $(tcpdump -nn -r "$tmp/cap.pcap" 'ip or ip6 or arp' 2>/dev/null | wc -l)"
echo "  frames with readable text:  $(grep -c -a -e "hello from" -e "nc-server" "$tmp/cap.pcap" || true)"
# (sed reads the whole capture: `head` would end tcpdump with SIGPIPE, a failure here)
tcpdump -nn -e -r "$tmp/cap.pcap" 2>/dev/null | sed -n '1,3s/^/  /p'
echo "done."
