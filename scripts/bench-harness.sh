#!/usr/bin/env bash
# The harness benchmark (issue 12 item 5): DORAs per second of `calloutd test` on the virtual network,
# for one scenario of N clients (default 10 000), each doing DISCOVER then REQUEST (each step checks
# its reply), with the noop callout (all eight hooks, doing nothing) loaded in-process and isolated
# (`calloutd test`'s default). No root, no network: the virtual network makes no system call per
# packet (isolated, a hook call is a round trip through shared memory). A benchmark, not a test.
#
# The rate is N / the scenario's wall time as `calloutd test` reports it (callout load, host start and
# Control START/STOP included; reading the scenario file not). Each mode runs BENCH_RUNS times; the
# median is reported with the load average before and after, since the machine may be shared.
#
# Environment: BENCH_CLIENTS (default 10000), BENCH_MODES (default "in-process isolate"),
# BENCH_RUNS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${BENCH_CLIENTS:-10000}
modes=${BENCH_MODES:-in-process isolate}
runs=${BENCH_RUNS:-3}
work=$(mktemp -d "${TMPDIR:-/tmp}/calloutd-bench-harness.XXXXXX")
trap 'rm -rf "$work"' EXIT

cargo build -q --release
# Its first line is the Linux folder (a second names the Windows one when mingw-w64 is installed).
callouts=$(cargo run -q --release -p calloutd-fixtures --example build-fixtures)
callouts=${callouts%%$'\n'*}

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

echo "machine: $(nproc) CPUs; calloutd $(git rev-parse --short HEAD) (release)"
for mode in $modes; do
    case "$mode" in
        in-process) switch=--in-process ;;
        isolate|isolated) switch=--isolate ;;
        *) echo "unknown mode $mode (in-process or isolate)" >&2; exit 2 ;;
    esac
    load_before=$(cut -d' ' -f1-3 /proc/loadavg)
    rates=()
    for run in $(seq 1 "$runs"); do
        # The whole command's wall and CPU time too (reading the scenario file included; isolated,
        # the host's CPU is not counted): on a busy machine CPU time says more than wall time.
        TIMEFORMAT='%R %U %S'
        { time ./target/release/calloutd test "$switch" --callouts "$callouts" "$work/bench.toml" \
            > "$work/out.txt"; } 2> "$work/time.txt"
        status=$(tail -n 1 "$work/out.txt")
        case "$status" in "1 passed, 0 failed, 0 invalid") ;; *) grep -v '^  ok' "$work/out.txt" >&2; exit 1 ;; esac
        ms=$(sed -n 's/^scenario .*: ok in \([0-9]*\) ms$/\1/p' "$work/out.txt")
        rate=$(( clients * 1000 / (ms > 0 ? ms : 1) ))
        read -r real user sys < "$work/time.txt"
        echo "run $run: $clients DORAs in $ms ms: $rate DORAs/s ($mode); whole command: ${real} s wall, ${user} s user + ${sys} s sys CPU"
        rates+=("$rate")
    done
    load_after=$(cut -d' ' -f1-3 /proc/loadavg)
    median=$(printf '%s\n' "${rates[@]}" | sort -n | awk '{ r[NR] = $1 } END { print r[int((NR + 1) / 2)] }')
    echo "median: $median DORAs/s ($clients clients, noop callout, $mode; runs: ${rates[*]}; load average before $load_before, after $load_after)"
done
