#!/usr/bin/env bash
# The warren demo: two userspace WireGuard peers (warren-wg) in two throw-away
# network namespaces joined by a veth pair. It pings through the tunnel (IPv4 and
# IPv6), moves data with iperf3 and prints `wg show` for both ends; then, as the
# unprivileged user `nobody`, `warren run` puts one program in a sandbox whose only
# way out is a tunnel to the second peer; last, `warren expose` in the first
# namespace makes a local web server public through a `warren relay` in the second,
# over TLS through the tunnel. Everything it created is removed, also on failure or
# Ctrl-C. Run as root after scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || { echo "demo.sh: run as root (network namespaces and TUN need it)" >&2; exit 1; }
[ -f dist/src/cli/warren-wg.js ] && [ -f build/Release/warren_native.node ] ||
  { echo "demo.sh: not built yet; run: bash scripts/setup.sh" >&2; exit 1; }

id=$$
a="wrn-demo-$id-a"; b="wrn-demo-$id-b"
wa="wgd${id}a"; wb="wgd${id}b"
work=$(mktemp -d)
pids=()

tun_mode=$(stat -c %a /dev/net/tun)
cleanup() {
  [ "$(stat -c %a /dev/net/tun)" = "$tun_mode" ] || chmod "$tun_mode" /dev/net/tun
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # The relay and the agent close gracefully (a second or two): leave nothing behind.
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  ip netns del "$a" 2>/dev/null || true
  ip netns del "$b" 2>/dev/null || true
  rm -f "/var/run/wireguard/$wa.sock" "/var/run/wireguard/$wb.sock"
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Two namespaces joined by a veth pair (outer network 192.0.2.0/24)"
ip netns add "$a"; ip netns add "$b"
ip link add "veth-$id-a" netns "$a" type veth peer name "veth-$id-b" netns "$b"
ip -n "$a" addr add 192.0.2.1/24 dev "veth-$id-a"; ip -n "$a" link set "veth-$id-a" up; ip -n "$a" link set lo up
ip -n "$b" addr add 192.0.2.2/24 dev "veth-$id-b"; ip -n "$b" link set "veth-$id-b" up; ip -n "$b" link set lo up

step "Starting warren-wg in each namespace"
start() { # ns ifname
  ip netns exec "$1" env WG_PROCESS_FOREGROUND=1 node dist/src/cli/warren-wg.js "$2" 2>"$work/$2.log" &
  pids+=($!)
  for _ in $(seq 100); do ip netns exec "$1" wg show "$2" >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "warren-wg $2 did not start:"; cat "$work/$2.log"; exit 1
}
start "$a" "$wa"; start "$b" "$wb"

(umask 077; wg genkey > "$work/a.key"; wg genkey > "$work/b.key")
pa=$(wg pubkey < "$work/a.key"); pb=$(wg pubkey < "$work/b.key")
ip netns exec "$a" wg set "$wa" private-key "$work/a.key" listen-port 51820 \
  peer "$pb" allowed-ips 198.51.100.2/32,fd00:77::2/128 endpoint 192.0.2.2:51821
ip netns exec "$b" wg set "$wb" private-key "$work/b.key" listen-port 51821 \
  peer "$pa" allowed-ips 198.51.100.1/32,fd00:77::1/128
for side in "$a:$wa:1" "$b:$wb:2"; do
  IFS=: read -r ns ifn n <<<"$side"
  ip -n "$ns" addr add "198.51.100.$n/24" dev "$ifn"
  ip -n "$ns" addr add "fd00:77::$n/64" dev "$ifn" nodad
  ip -n "$ns" link set "$ifn" up
done

step "ping through the tunnel (IPv4, then IPv6)"
ip netns exec "$a" ping -c 3 -i 0.2 198.51.100.2
ip netns exec "$a" ping -6 -c 3 -i 0.2 fd00:77::2

step "iperf3: 3 seconds of TCP through the tunnel"
ip netns exec "$b" iperf3 -s -1 -B 198.51.100.2 >/dev/null &
pids+=($!)
sleep 0.3
ip netns exec "$a" iperf3 -c 198.51.100.2 -t 3 -f m | grep -E 'sender|receiver'

step "wg show (both ends)"
ip netns exec "$a" wg show "$wa"
echo
ip netns exec "$b" wg show "$wb"

step "warren run, as the unprivileged user nobody: one program, only the tunnel"
(umask 077; wg genkey > "$work/run.key")
chmod 644 "$work/run.key" && chmod 755 "$work"   # readable by nobody: a demo key, deleted at exit
ip netns exec "$b" wg set "$wb" peer "$(wg pubkey < "$work/run.key")" allowed-ips 198.51.100.3/32
if [ "$tun_mode" != 666 ]; then
  echo "(making /dev/net/tun mode 0666 for the demo, as distributions ship it; restored at exit)"
  chmod 0666 /dev/net/tun
fi
echo "$ warren run --wg-endpoint 192.0.2.2:51821 --wg-public-key $pb \\"
echo "      --wg-private-key-file run.key --wg-address 198.51.100.3/24 -- sh -c 'id -u; ip -o -4 addr; ping -c 2 198.51.100.2; exit 3'"
status=0
ip netns exec "$a" setpriv --reuid=nobody --regid=nogroup --clear-groups -- \
  node dist/src/cli/warren.js run --wg-endpoint 192.0.2.2:51821 --wg-public-key "$pb" \
  --wg-private-key-file "$work/run.key" --wg-address 198.51.100.3/24 -- \
  sh -c 'id -u; ip -o -4 addr; ping -c 2 -i 0.2 198.51.100.2; exit 3' || status=$?
echo "warren run exited with $status (the program's own exit status)"

step "warren relay + warren expose: a web server in the first namespace made public by a relay in the second"
# The relay runs in the second namespace with a local dev CA; the agent runs in
# the first and reaches the relay through the WireGuard tunnel (198.51.100.2).
relay_dir="$work/relay"
w() { node dist/src/cli/warren.js "$@"; }
w relay token create --data-dir "$relay_dir" --name demo --subdomain app >"$work/relay.token" 2>/dev/null
echo "$ warren relay --domain tunnel.test --dev-ca --agent-listen 198.51.100.2:7443 --https-listen 127.0.0.1:8443 …"
ip netns exec "$b" node dist/src/cli/warren.js relay --domain tunnel.test --data-dir "$relay_dir" --dev-ca \
  --agent-listen 198.51.100.2:7443 --https-listen 127.0.0.1:8443 --http-listen 127.0.0.1:8080 \
  --admin-listen 127.0.0.1:9090 >"$work/relay.out" 2>"$work/relay.err" &
pids+=($!)
for _ in $(seq 100); do grep -q '^{' "$work/relay.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^{' "$work/relay.out" || { echo "the relay did not start:"; cat "$work/relay.err"; exit 1; }
mkdir -p "$work/site" && echo "hello from a web server in $a" >"$work/site/index.html"
ip netns exec "$a" python3 -m http.server 3000 --bind 127.0.0.1 --directory "$work/site" >/dev/null 2>&1 &
pids+=($!)
echo "$ warren expose http 3000 --relay 198.51.100.2:7443 --server-name tunnel.test --ca dev-ca/ca.crt --subdomain app"
ip netns exec "$a" node dist/src/cli/warren.js expose http 3000 --relay 198.51.100.2:7443 \
  --server-name tunnel.test --ca "$relay_dir/dev-ca/ca.crt" --token-file "$work/relay.token" \
  --subdomain app --no-inspect >"$work/expose.out" 2>"$work/expose.err" &
pids+=($!)
for _ in $(seq 100); do grep -q '^https://' "$work/expose.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^https://' "$work/expose.out" || { echo "warren expose did not connect:"; cat "$work/expose.err"; exit 1; }
cat "$work/expose.out"
for _ in $(seq 50); do ip netns exec "$a" curl -s -o /dev/null http://127.0.0.1:3000/ && break; sleep 0.1; done
echo "$ curl --cacert dev-ca/ca.crt https://app.tunnel.test:8443/   (in $b)"
ip netns exec "$b" curl -sS --cacert "$relay_dir/dev-ca/ca.crt" \
  --resolve app.tunnel.test:8443:127.0.0.1 https://app.tunnel.test:8443/
echo "$ curl http://127.0.0.1:9090/metrics | grep responses_total   (the relay's admin listener)"
ip netns exec "$b" curl -sS http://127.0.0.1:9090/metrics | grep '^warren_relay_http_responses_total.*class="2xx"'

step "Done; cleaning up"
