#!/usr/bin/env bash
# Startup cost of `calloutd serve` on a large lease database (issue 14 item 6): for each binary given,
# RUNS times, alternating the binaries, calloutd serve (no callout: scripts/bench/nocallout.reg,
# scripts/bench/scopes-scale.txt) is started on a fresh copy of one database written by populate.py,
# in a network namespace of its own (a veth with 198.18.10.1/16, nothing else), until it
# logs that it serves. Then it reads, as bench.sh's scale phase does:
#   cpu_s    utime + stime of calloutd (/proc/PID/stat) at that moment: the steadier figure on a
#            loaded machine, where the wall time is mostly the scheduler's;
#   rss_mb   VmRSS then; hwm_mb VmHWM (the peak while loading);
#   wall_s   from the start until the log line was seen (polled every 0.1 s);
#   load     the 1-minute load average just before the run.
# One line per run, then the median per binary. Needs root (ip netns); leaves nothing behind.
#
# Usage: scripts/bench/loadtime.sh [-r RUNS] [-n LEASES] CALLOUTD [CALLOUTD...]
#   -r RUNS    rounds (default 3)
#   -n LEASES  stored leases (default 1000000: 115 000 in 198.18.0.0/15, the rest in 240.0.0.0/12,
#              as bench.sh's scale phase)
# Example (before/after): scripts/bench/loadtime.sh /tmp/calloutd-before target/release/calloutd
set -euo pipefail
cd "$(dirname "$0")/../.."

runs=3
leases=1000000
while getopts r:n: opt; do
    case $opt in
    r) runs=$OPTARG ;;
    n) leases=$OPTARG ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { echo "usage: $0 [-r RUNS] [-n LEASES] CALLOUTD [CALLOUTD...]" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "loadtime.sh: needs root (a network namespace)" >&2; exit 2; }
bins=()
for b in "$@"; do
    [ -x "$b" ] || { echo "loadtime.sh: $b is not an executable" >&2; exit 2; }
    bins+=("$(realpath "$b")")
done

low=$((leases < 115000 ? leases : 115000))
high=$((leases - low))
ns=calloutd-load-$$
work=$(mktemp -d /tmp/calloutd-loadtime.XXXXXX)
pid=
cleanup() {
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$ns"
ip -n "$ns" link set lo up
# A veth pair with both ends in the namespace (the kernel may have no dummy interfaces); nothing is
# sent on it.
ip -n "$ns" link add ld0 type veth peer name ld1
ip -n "$ns" addr add 198.18.10.1/16 dev ld0
ip -n "$ns" link set ld1 up
ip -n "$ns" link set ld0 up

python3 scripts/bench/populate.py "$work/master.sqlite3" "$low" "$high" >/dev/null
clk_tck=$(getconf CLK_TCK)

# one BINARY: prints "wall_s cpu_s rss_mb hwm_mb" (or "- - - -" when it did not start).
one() {
    local bin=$1 db=$work/run.sqlite3 log=$work/run.log t0 ticks
    rm -f "$db"* "$log"
    cp "$work/master.sqlite3" "$db"
    t0=$(date +%s.%N)
    ip netns exec "$ns" "$bin" serve --reg scripts/bench/nocallout.reg --scopes scripts/bench/scopes-scale.txt \
        --interface ld0 --lease-db "$db" --data-dir "$work/data" >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 6000); do
        grep -q "serving on" "$log" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if ! grep -q "serving on" "$log" 2>/dev/null; then
        echo "loadtime.sh: $bin did not start: $(tail -3 "$log" | tr '\n' ' ')" >&2
        echo "- - - -"
    else
        local wall
        wall=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.2f}')")
        # utime and stime are fields 14 and 15 of /proc/PID/stat (after the ")" of the command name).
        ticks=$(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')
        local rss hwm
        rss=$(awk '$1 == "VmRSS:" {printf "%.0f", $2 / 1024}' "/proc/$pid/status")
        hwm=$(awk '$1 == "VmHWM:" {printf "%.0f", $2 / 1024}' "/proc/$pid/status")
        echo "$wall $(python3 -c "print(f'{$ticks / $clk_tck:.2f}')") $rss $hwm"
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
}

printf '%-4s %-40s %7s %6s %7s %7s  %s\n' run binary wall_s cpu_s rss_mb hwm_mb load
results=$work/results
: >"$results"
for run in $(seq "$runs"); do
    for i in "${!bins[@]}"; do
        load=$(cut -d' ' -f1-3 /proc/loadavg)
        read -r wall cpu rss hwm < <(one "${bins[$i]}")
        printf '%-4s %-40s %7s %6s %7s %7s  %s\n' "$run" "${bins[$i]}" "$wall" "$cpu" "$rss" "$hwm" "$load"
        echo "$i $wall $cpu $rss $hwm" >>"$results"
    done
done
echo "median of $runs, $leases leases ($low + $high):"
for i in "${!bins[@]}"; do
    python3 - "$i" "${bins[$i]}" "$results" <<'EOF'
import statistics, sys
index, name, path = sys.argv[1], sys.argv[2], sys.argv[3]
rows = [l.split()[1:] for l in open(path) if l.split()[0] == index and "-" not in l.split()[1:]]
if not rows:
    print(f"  {name}: no run started")
else:
    med = [statistics.median(float(r[k]) for r in rows) for k in range(4)]
    print(f"  {name}: wall {med[0]:.2f} s, CPU {med[1]:.2f} s, RSS {med[2]:.0f} MB, peak {med[3]:.0f} MB")
EOF
done
