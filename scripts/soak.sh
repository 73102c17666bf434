#!/usr/bin/env bash
# scripts/soak.sh SECONDS: calloutd with the trace callout under a steady perfdhcp load for SECONDS,
# to show that nothing grows (issue 14 item 6). Reports, at the start of the load, after the warm-up
# and at the end: the server's RSS, open descriptors and threads (and the callout host's with
# SOAK_ISOLATE=1); the drops (perfdhcp's, the server's socket overflows, calloutd's own drop counters);
# and the hook latency percentiles (every hook call's duration from calloutd's --trace, read from a
# FIFO as it is written, so nothing piles up on disk).
#
# Like scripts/bench.sh: two network namespaces joined by a veth pair (198.18.0.0/15 addresses only;
# the host's interfaces are untouched), needs root, installs kea-admin (perfdhcp) when missing.
# Environment:
#   SOAK_RATE      DORA exchanges per second (default 1000)
#   SOAK_CLIENTS   distinct clients perfdhcp cycles through (default 10000: after the first pass every
#                  exchange renews an existing lease, so the lease table stops growing)
#   SOAK_ISOLATE   1: serve --isolate (the callout in its child host); default 0
#   SOAK_SAMPLE    seconds between samples (default 10)
#   SOAK_WARMUP    seconds of load before the "warm" sample that growth is measured from (default:
#                  60, or a tenth of SECONDS when that is less)
#   SOAK_WORK      scratch folder, emptied at the start (default bench/work-soak)
#   SOAK_RESULTS   the Markdown report (default $SOAK_WORK/soak.md; printed too)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

secs=${1:-}
[[ "$secs" =~ ^[0-9]+$ ]] && [ "$secs" -gt 0 ] || { echo "usage: scripts/soak.sh SECONDS" >&2; exit 2; }
rate=${SOAK_RATE:-1000}
clients=${SOAK_CLIENTS:-10000}
isolate=${SOAK_ISOLATE:-0}
sample_every=${SOAK_SAMPLE:-10}
warmup=${SOAK_WARMUP:-$((secs / 10 < 60 ? secs / 10 : 60))}
work=${SOAK_WORK:-$root/bench/work-soak}
results=${SOAK_RESULTS:-$work/soak.md}
srv_ip=198.18.10.1
gen_ip=198.18.10.2
srv_if=cs-srv
gen_if=cs-gen
srv_ns=calloutd-soak-srv-$$
gen_ns=calloutd-soak-gen-$$
started_at=$(date +%s)

log() { printf '[soak %5ds] %s\n' "$(($(date +%s) - started_at))" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (network namespaces): sudo scripts/soak.sh SECONDS"
need=()
for p in kea-admin iproute2 python3 gcc libc6-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
for tool in perfdhcp ip python3 cargo; do command -v "$tool" >/dev/null || die "$tool not found"; done

log "building calloutd (cargo build --release) and the callouts"
cargo build --release --quiet --bin calloutd
scripts/build-callouts.sh >/dev/null
calloutd=$root/target/release/calloutd
trace_so=$root/fixtures/callouts/build/linux/trace.so
[ -f "$trace_so" ] || die "trace.so was not built"

rm -rf "$work"
mkdir -p "$work"

# The registry file: the trace callout (CalloutDlls is REG_MULTI_SZ, UTF-16LE hex).
python3 - "$trace_so" >"$work/trace.reg" <<'EOF'
import sys
data = (sys.argv[1] + "\0\0").encode("utf-16-le")
print("Windows Registry Editor Version 5.00\n")
print(r"[HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Services\DHCPServer\Parameters]")
print('"CalloutDlls"=hex(7):' + ",".join(f"{b:02x}" for b in data))
print('"CalloutEnabled"=dword:00000001')
EOF

srv_pid=
reader_pid=
# shellcheck source=scripts/lib/netns-pair.sh
. scripts/lib/netns-pair.sh
cleanup() {
    set +e
    netns_pair_down
    [ -n "$reader_pid" ] && kill "$reader_pid" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

netns_pair_up

# The server's trace goes into a FIFO; this reader keeps one histogram of call durations per hook
# (exact microsecond counts) and writes them out at the end of the stream.
mkfifo "$work/trace.fifo"
python3 - "$work/trace.fifo" "$work/hooks.json" <<'EOF' &
import collections, json, sys
hist = collections.defaultdict(collections.Counter)
faults = collections.Counter()
lines = bad = 0
with open(sys.argv[1], "rb") as f:
    for line in f:
        lines += 1
        try:
            r = json.loads(line)
        except ValueError:
            bad += 1
            continue
        hist[r.get("hook", "?")][int(r.get("dur_us", 0))] += 1
        if r.get("fault"):
            faults[r.get("hook", "?")] += 1
with open(sys.argv[2], "w") as out:
    json.dump({"lines": lines, "unreadable": bad, "faults": faults,
               "hist": {h: {str(k): v for k, v in c.items()} for h, c in hist.items()}}, out)
EOF
reader_pid=$!

extra=()
[ "$isolate" = 1 ] && extra=(--isolate)
CALLOUT_TRACE_FILE=/dev/null ip netns exec "$srv_ns" "$calloutd" serve --reg "$work/trace.reg" \
    --scopes scripts/bench/scopes.txt --interface "$srv_if" --lease-db "$work/leases.sqlite3" \
    --trace "$work/trace.fifo" "${extra[@]}" >"$work/server.log" 2>&1 &
srv_pid=$!
for _ in $(seq 300); do
    grep -q "serving on" "$work/server.log" 2>/dev/null && break
    kill -0 "$srv_pid" 2>/dev/null || die "calloutd exited: $(tail -3 "$work/server.log")"
    sleep 0.1
done
grep -q "serving on" "$work/server.log" || die "calloutd did not start: $(tail -3 "$work/server.log")"

# sample: one line "t rss_kB fds threads host_rss_kB host_fds host_threads" for the server and its
# children (the callout host with --isolate).
host_pids() { cat /proc/"$srv_pid"/task/*/children 2>/dev/null | tr ' ' '\n' | grep . || true; }
sample() {
    local t=$1 rss fds thr hr=0 hf=0 ht=0 c
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$srv_pid/status")
    thr=$(awk '/^Threads:/ {print $2}' "/proc/$srv_pid/status")
    fds=$(find "/proc/$srv_pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    for c in $(host_pids); do
        hr=$((hr + $(awk '/^VmRSS:/ {print $2}' "/proc/$c/status" 2>/dev/null || echo 0)))
        ht=$((ht + $(awk '/^Threads:/ {print $2}' "/proc/$c/status" 2>/dev/null || echo 0)))
        hf=$((hf + $(find "/proc/$c/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)))
    done
    echo "$t $rss $fds $thr $hr $hf $ht $(cut -d' ' -f1 /proc/loadavg)" >>"$work/samples.txt"
}
overflows() { ip netns exec "$1" awk '/^Udp: [0-9]/ {print $6; exit}' /proc/net/snmp; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
so0=$(overflows "$srv_ns")
go0=$(overflows "$gen_ns")
cpu0=$(awk '{print $14 + $15}' "/proc/$srv_pid/stat")
: >"$work/samples.txt"
sample 0
log "perfdhcp $rate/s, $clients clients, ${secs}s -> calloutd (trace callout$([ "$isolate" = 1 ] && echo ', --isolate'))"
ip netns exec "$gen_ns" timeout -k 5 $((secs + 60)) perfdhcp -4 -l "$gen_if" -r "$rate" -R "$clients" \
    -p "$secs" -W 500000 "$srv_ip" >"$work/perfdhcp.txt" 2>&1 &
gen_pid=$!
t0=$(date +%s)
warm_done=0
while kill -0 "$gen_pid" 2>/dev/null; do
    sleep "$sample_every"
    kill -0 "$srv_pid" 2>/dev/null || die "calloutd exited during the soak: $(tail -5 "$work/server.log")"
    t=$(($(date +%s) - t0))
    [ "$t" -le "$secs" ] || break
    sample "$t"
    if [ "$warm_done" = 0 ] && [ "$t" -ge "$warmup" ]; then
        warm_done=1
        echo "$t" >"$work/warm_t"
    fi
done
wait "$gen_pid" || true
cpu1=$(awk '{print $14 + $15}' "/proc/$srv_pid/stat")
sample "end"
so1=$(overflows "$srv_ns")
go1=$(overflows "$gen_ns")
ip netns exec "$srv_ns" "$calloutd" ctl stats >"$work/stats.json" 2>/dev/null || echo '{}' >"$work/stats.json"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
kill -TERM "$srv_pid"
for _ in $(seq 300); do kill -0 "$srv_pid" 2>/dev/null || break; sleep 0.1; done
wait "$reader_pid" || true
reader_pid=

# (An unquoted here-document, for the shell's figures: no backquotes in it.)
python3 - "$work" "$results" <<EOF
import json, re, sys
from pathlib import Path
work, results = Path(sys.argv[1]), Path(sys.argv[2])
secs, rate, clients, isolate = $secs, $rate, $clients, "$isolate" == "1"
clk = $(getconf CLK_TCK)
rows = [l.split() for l in (work / "samples.txt").read_text().splitlines() if l.strip()]
start = rows[0]
warm_t = (work / "warm_t").read_text().strip() if (work / "warm_t").exists() else None
warm = next((r for r in rows if r[0] == warm_t), rows[1] if len(rows) > 1 else rows[0])
end = rows[-1]
def col(r, i): return int(r[i])
text = (work / "perfdhcp.txt").read_text(errors="replace")
stages, cur = {}, None
for line in text.splitlines():
    m = re.match(r"\*\*\*Statistics for: (\S+)\*\*\*", line)
    if m:
        cur = stages.setdefault(m.group(1), {})
        continue
    if cur is None:
        continue
    for key, pat in (("sent", r"sent packets: (\d+)"), ("received", r"received packets: (\d+)"),
                     ("drops", r"drops: (\d+)")):
        m = re.match(pat, line.strip())
        if m and key not in cur:
            cur[key] = int(m.group(1))
do, ra = stages.get("DISCOVER-OFFER", {}), stages.get("REQUEST-ACK", {})
started, completed = do.get("sent", 0), ra.get("received", 0)
drops = do.get("drops", 0) + ra.get("drops", 0)
stats = json.loads((work / "stats.json").read_text() or "{}")
hooks = json.loads((work / "hooks.json").read_text()) if (work / "hooks.json").exists() else {"hist": {}}
def pct(counter, qs):
    items = sorted((int(k), v) for k, v in counter.items())
    total = sum(v for _, v in items)
    out, acc, i = [], 0, 0
    for q in qs:
        target = q * total
        while i < len(items) and acc + items[i][1] < target:
            acc += items[i][1]
            i += 1
        out.append(items[min(i, len(items) - 1)][0] if items else 0)
    return total, out, (items[-1][0] if items else 0)
names = ["Control", "NewPkt", "HandleOptions", "AddressOffer", "PktSend", "PktDrop", "AddressDel", "DeleteClient"]
all_hist = {}
for h, c in hooks["hist"].items():
    for k, v in c.items():
        all_hist[k] = all_hist.get(k, 0) + v
doc = [f"### Soak: {secs} s at {rate}/s, {clients} clients, trace callout{', --isolate' if isolate else ''}", "",
       f"scripts/soak.sh {secs} (SOAK_RATE={rate}, SOAK_CLIENTS={clients}, SOAK_ISOLATE={1 if isolate else 0}); "
       f"load average before {'$load_before'}, after {'$load_after'} (2 CPUs).", "",
       "| sample | t s | server RSS MB | server fds | server threads"
       + (" | host RSS MB | host fds | host threads" if isolate else "") + " | load |",
       "|---|---|---|---|---|" + ("---|---|---|" if isolate else "") + "---|"]
for name, r in (("before the load", start), ("after the warm-up", warm), ("end", end)):
    cells = [name, r[0], f"{col(r, 1) / 1024:.1f}", r[2], r[3]]
    if isolate:
        cells += [f"{col(r, 4) / 1024:.1f}", r[5], r[6]]
    cells.append(r[7])
    doc.append("| " + " | ".join(cells) + " |")
rss = [col(r, 1) for r in rows[1:]] or [col(start, 1)]
doc += ["",
        f"- RSS over the run (every {$sample_every} s): min {min(rss) / 1024:.1f} MB, max {max(rss) / 1024:.1f} MB; "
        f"end minus warm: {(col(end, 1) - col(warm, 1)) / 1024:+.1f} MB; descriptors {warm[2]} -> {end[2]}, "
        f"threads {warm[3]} -> {end[3]}",
        f"- exchanges: {started} started, {completed} completed, drops {drops} "
        f"({100.0 * drops / (started or 1):.3f} %); socket overflows: server {$so1 - $so0}, generator {$go1 - $go0}",
        f"- server CPU: {($cpu1 - $cpu0) / clk:.1f} s, {($cpu1 - $cpu0) / clk * 1e6 / (completed or 1):.1f} µs per exchange"
        + (" (without the callout host)" if isolate else ""),
        f"- calloutd's drop counters at the end: {json.dumps(stats.get('drops', stats.get('runtime', {}).get('drops', '?')))}",
        f"- hook calls traced: {hooks.get('lines', 0)} ({hooks.get('unreadable', 0)} unreadable); faults: {dict(hooks.get('faults', {})) or 'none'}",
        "", "| hook | calls | p50 µs | p99 µs | p99.9 µs | max µs |", "|---|---|---|---|---|---|"]
for h in names + ["all"]:
    c = all_hist if h == "all" else hooks["hist"].get(h)
    if not c:
        continue
    total, (p50, p99, p999), mx = pct(c, [0.5, 0.99, 0.999])
    doc.append(f"| {h} | {total} | {p50} | {p99} | {p999} | {mx} |")
doc.append("")
results.write_text("\n".join(doc))
print("\n".join(doc))
EOF
log "done: $results"
