#!/usr/bin/env bash
# Installs everything warren needs on Debian 12 (run as root): the Debian packages
# it drives or tests against, then the npm dependencies, the native addon and the
# TypeScript build (npm ci runs node-gyp and tsc through the package's install/prepare scripts).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (it installs Debian packages; warren-wg needs CAP_NET_ADMIN)" >&2
  exit 1
fi

packages=(
  wireguard-tools  # wg, wg-quick: warren-wg's control tools
  wireguard-go     # the reference userspace implementation the tests and benchmarks compare against
  iproute2 util-linux iputils-ping
  iperf3           # throughput through the tunnel
  ncat tcpdump nftables curl
  openssl          # the relay's --dev-ca makes its local CA with it
  pebble           # Let's Encrypt's test ACME server: the relay's --acme tests run against it on loopback
  postgresql       # the relay store's PostgreSQL tests start a throw-away cluster (initdb, postgres)
  golang-go golang-github-hashicorp-yamux-dev  # a Go yamux peer the relay's multiplexer is tested against
  make g++ python3 # node-gyp builds the C addon
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "setup.sh: Node.js >= 20.19 is required (found $(node --version))" >&2
  exit 1
fi

npm ci --no-audit --no-fund
