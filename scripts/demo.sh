#!/usr/bin/env bash
# Runs calloutd on the shipped example: the trace callout (fixtures/config/example.reg) and the lab
# scopes (fixtures/config/lab.xml), serving a real client over a veth pair between two network
# namespaces this script creates (198.18.0.0/15 addresses only; the host's interfaces are untouched).
# The client does a broadcast DORA; the script prints the lease, every hook call, and cleans up.
# Needs root for the namespaces; without root it runs `calloutd check` on the example instead.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
    for p in gcc libc6-dev iproute2; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="${need:-} $p"
    done
    if [ -n "${need:-}" ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends $need >/dev/null; fi
fi
cargo build --release --quiet
scripts/build-callouts.sh >/dev/null
bin=$PWD/target/release/calloutd

echo "== calloutd check --reg fixtures/config/example.reg --scopes fixtures/config/lab.xml"
"$bin" check --reg fixtures/config/example.reg --scopes fixtures/config/lab.xml | grep -v '^  '
if [ "$(id -u)" != 0 ]; then
    echo "demo: serving needs root (network namespaces); run: sudo scripts/demo.sh"
    exit 0
fi

work=$(mktemp -d)
srv=calloutd-demo-srv-$$
cli=calloutd-demo-cli-$$
cleanup() {
    for ns in "$srv" "$cli"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    done
    sleep 0.3
    ip netns del "$srv" 2>/dev/null || true
    ip netns del "$cli" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$srv"
ip netns add "$cli"
ip link add veth-srv netns "$srv" type veth peer name veth-cli netns "$cli"
ip -n "$srv" link set lo up
ip -n "$cli" link set lo up
ip -n "$srv" addr add 198.18.0.1/24 dev veth-srv
ip -n "$srv" link set veth-srv up
ip -n "$cli" link set veth-cli up

echo "== calloutd serve --interface veth-srv (in namespace $srv)"
CALLOUT_TRACE_FILE=$work/callout.jsonl ip netns exec "$srv" "$bin" serve \
    --reg fixtures/config/example.reg --scopes fixtures/config/lab.xml \
    --interface veth-srv --data-dir "$work/data" --trace "$work/trace.jsonl" \
    2>"$work/server.log" &
for _ in $(seq 100); do grep -q serving "$work/server.log" 2>/dev/null && break; sleep 0.1; done
grep -q serving "$work/server.log" || { cat "$work/server.log"; exit 1; }

echo "== calloutd client dora --interface veth-cli (a client with no address, in namespace $cli)"
ip netns exec "$cli" "$bin" client dora --interface veth-cli --mac 02:00:00:de:00:01 --hostname demo-client

echo "== calloutd ctl leases (the control API, on the server's loopback)"
ip netns exec "$srv" "$bin" ctl leases
for pid in $(ip netns pids "$srv"); do kill -TERM "$pid"; done
for _ in $(seq 100); do [ -z "$(ip netns pids "$srv")" ] && break; sleep 0.1; done
echo "== every hook call, as calloutd traced it (--trace)"
cat "$work/trace.jsonl"
echo "== the same calls as the trace callout itself saw them (CALLOUT_TRACE_FILE), first 3 lines"
head -3 "$work/callout.jsonl"
echo "== the Microsoft-format audit log"
cat "$work"/data/Windows/System32/Dhcp/DhcpSrvLog-*.log | tail -4
