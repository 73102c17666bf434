#!/usr/bin/env bash
# The harness benchmark (issue 12 item 5): DORAs per second of `calloutd test` on the virtual network,
# for one scenario of N clients (default 10 000), each doing DISCOVER then REQUEST, with the noop
# callout (all eight hooks, doing nothing) loaded in-process. No root, no network: the virtual network
# makes no system calls per packet. Prints the rate; it is a benchmark, not a test.
#
# Environment: BENCH_CLIENTS (default 10000), BENCH_MODE (in-process | isolate; default in-process),
# BENCH_RUNS (default 3; the best run is reported).
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${BENCH_CLIENTS:-10000}
mode=${BENCH_MODE:-in-process}
runs=${BENCH_RUNS:-3}
work=$(mktemp -d "${TMPDIR:-/tmp}/calloutd-bench-harness.XXXXXX")
trap 'rm -rf "$work"' EXIT

cargo build -q --release
callouts=$(cargo run -q --release -p calloutd-fixtures --example build-fixtures | head -n 1)

# A /16 scope with enough addresses for every client (198.18.0.0/15 only).
cat > "$work/scope.txt" <<SCOPE
Dhcp Server \\\\bench add scope 198.18.0.0 255.255.0.0 "bench" "harness benchmark"
Dhcp Server \\\\bench Scope 198.18.0.0 set state 1
Dhcp Server \\\\bench Scope 198.18.0.0 Add iprange 198.18.0.10 198.18.254.250
Dhcp Server \\\\bench Scope 198.18.0.0 set optionvalue 3 IPADDRESS "198.18.0.1"
Dhcp Server \\\\bench Scope 198.18.0.0 set optionvalue 51 DWORD "3600"
SCOPE
sed 's/trace\.so/noop.so/g; s/74,00,72,00,61,00,63,00,65,00/6e,00,6f,00,6f,00,70,00/' \
    fixtures/scenarios/trace.reg > "$work/noop.reg"
awk -v n="$clients" 'BEGIN {
    print "name = \"" n " DORAs (noop callout)\"\nreg = \"noop.reg\"\nscopes = \"scope.txt\"\n"
    for (i = 0; i < n; i++) {
        printf "[clients.c%d]\nmac = \"02:00:%02x:%02x:%02x:%02x\"\n", i, int(i / 16777216) % 256, int(i / 65536) % 256, int(i / 256) % 256, i % 256
    }
    for (i = 0; i < n; i++) {
        printf "[[step]]\nclient = \"c%d\"\nsend = \"discover\"\nexpect = { reply = \"offer\" }\n", i
        printf "[[step]]\nclient = \"c%d\"\nsend = \"request\"\nexpect = { reply = \"ack\" }\n", i
    }
}' > "$work/bench.toml"

best=0
for run in $(seq 1 "$runs"); do
    out=$(./target/release/calloutd test --"$mode" --callouts "$callouts" "$work/bench.toml")
    status=$(printf '%s\n' "$out" | tail -n 1)
    case "$status" in "1 passed, 0 failed, 0 invalid") ;; *) printf '%s\n' "$out" | grep -v '^  ok' >&2; exit 1 ;; esac
    ms=$(printf '%s\n' "$out" | sed -n 's/^scenario .*: ok in \([0-9]*\) ms$/\1/p')
    rate=$(( clients * 1000 / (ms > 0 ? ms : 1) ))
    echo "run $run: $clients DORAs in $ms ms: $rate DORAs/s ($mode)"
    (( rate > best )) && best=$rate
done
echo "best: $best DORAs/s ($clients clients, noop callout, $mode)"
