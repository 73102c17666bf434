#!/usr/bin/env bash
# The benchmark of issue 6: calloutd against the floor, Kea and dnsmasq under the same perfdhcp load.
#
# Creates two network namespaces joined by a veth pair (server 198.18.10.1/16, load generator
# 198.18.10.2/16; 198.18.0.0/15 addresses only, the host's interfaces are untouched) and measures, each
# server freshly started with an empty lease store per run:
#   floor          examples/bench_floor.rs: fixed OFFER/ACK, no state (what the kernel alone costs)
#   calloutd+noop  calloutd serve with the noop callout (all eight hooks, doing nothing), SQLite leases
#   calloutd       calloutd serve with CalloutEnabled = 0
#   calloutd+noop+isolate  calloutd+noop with --isolate: the callout in its child host process (its
#                  CPU is counted with the server's)
#   kea            kea-dhcp4 (memfile), config written to bench/work
#   dnsmasq        dnsmasq --no-ping, leasefile in bench/work
# under perfdhcp (DORA, relay mode) at 1 000, 4 000, 8 000 and 12 000/s with 200 and 10 000 clients,
# then `calloutd bench --rate 0` against each, then a lease-count scaling run of calloutd+noop with
# 200, 10 000 and 1 000 000 pre-existing leases (see "lease-count scaling" below for where 1 000 000
# leases live without using addresses outside 198.18.0.0/15 on the wire). For each run: achieved rate,
# drops, average delay and the server's CPU seconds (utime+stime from /proc/PID/stat) per 1 000
# exchanges. Prints the table and the ratios calloutd/floor, calloutd/Kea, calloutd/dnsmasq and writes
# them to bench/results.md.
#
# Needs root (namespaces; installs kea-dhcp4-server, kea-admin, dnsmasq-base with apt-get when missing).
# Environment:
#   BENCH_SERVERS       servers of the perfdhcp and calloutd bench phases, a subset of
#                       "floor calloutd+noop calloutd+noop+isolate calloutd kea dnsmasq"
#                       (default: all but calloutd+noop+isolate)
#   BENCH_PHASES        phases to run, a subset of "perfdhcp target bench scale isolate" (default: all
#                       but isolate); the target, scale and isolate phases always run their own servers,
#                       whatever BENCH_SERVERS says
#   BENCH_ISOLATE_REPEATS  isolate phase (the cost of --isolate, issue 11): rounds of calloutd+noop,
#                       calloutd+noop+isolate and kea, in a rotating order, at BENCH_ISOLATE_RATE
#                       (default 8000) with BENCH_ISOLATE_CLIENTS (default 10000); default 3 rounds, so
#                       each figure is a median of three runs measured next to its peers
#   BENCH_TARGET_REPEATS  target phase: how many more times the floor and calloutd+noop, alternating,
#                       run at the target point (8 000/s, 10 000 clients; default 4), so the ratio the
#                       issue targets is a median of several runs instead of one run's noise
#   BENCH_SECONDS       load period per run (default 5)
#   BENCH_CALLOUTD_ARGS extra arguments for every `calloutd serve` of the run (space-separated, e.g.
#                       "--coalesce-us 0" or "--pin-workers never"), to compare a setting against
#                       the default in the same conditions; written into results.md
#   BENCH_RATES, BENCH_CLIENTS (perfdhcp phase), BENCH_SCALE_LEASES (scale phase, total pre-existing
#                       leases per run, default "200 10000 1000000"): space-separated lists
#   BENCH_MAX_OUTSTANDING  calloutd bench's in-flight count (default 64)
#   BENCH_NOISE_NOTE, BENCH_NOTES, BENCH_NOTES_FILE  text for results.md
#   BENCH_RESULTS       the file to write (default bench/results.md; point it elsewhere for partial runs)
#   BENCH_WORK          scratch folder for configs, databases and raw outputs, emptied at the start
#                       (default bench/work)
#   BENCH_BUDGET        seconds after which the remaining runs are skipped (default 540, so the whole
#                       default run stays within 10 minutes; the 1 000 000-lease run costs about 30-35 s
#                       of it: populating the database, calloutd loading it, counting the leases)
# Quick partial run, e.g.:
#   BENCH_PHASES=scale BENCH_SECONDS=3 BENCH_RESULTS=/tmp/r.md BENCH_WORK=/tmp/w scripts/bench.sh
# The cost of --isolate alone (writes only that section when no other phase ran):
#   BENCH_PHASES=isolate BENCH_RESULTS=/tmp/isolate.md scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

secs=${BENCH_SECONDS:-5}
read -r -a calloutd_args <<<"${BENCH_CALLOUTD_ARGS:-}"
read -r -a rates <<<"${BENCH_RATES:-1000 4000 8000 12000}"
read -r -a client_counts <<<"${BENCH_CLIENTS:-200 10000}"
read -r -a scale_leases <<<"${BENCH_SCALE_LEASES:-200 10000 1000000}"
read -r -a servers <<<"${BENCH_SERVERS:-floor calloutd+noop calloutd kea dnsmasq}"
read -r -a phases <<<"${BENCH_PHASES:-perfdhcp target bench scale}"
for s in "${servers[@]}"; do
    case $s in floor | calloutd+noop | calloutd+noop+isolate | calloutd | kea | dnsmasq) ;; *)
        echo "bench.sh: BENCH_SERVERS: unknown server '$s' (floor calloutd+noop calloutd+noop+isolate calloutd kea dnsmasq)" >&2
        exit 2
        ;;
    esac
done
for p in "${phases[@]}"; do
    case $p in perfdhcp | target | bench | scale | isolate) ;; *)
        echo "bench.sh: BENCH_PHASES: unknown phase '$p' (perfdhcp target bench scale isolate)" >&2
        exit 2
        ;;
    esac
done
# has WORD LIST...: whether WORD is one of LIST.
has() {
    local word=$1
    shift
    local w
    for w in "$@"; do [ "$w" = "$word" ] && return 0; done
    return 1
}
budget=${BENCH_BUDGET:-540}
# calloutd bench's default with --rate 0 (256 in flight, refilled in bursts) overflows the default
# 212 992-byte receive buffer of every server here, the floor included, and then paces itself by its
# 1 s timeouts (a few hundred exchanges/s); 64 in flight measures the servers instead.
bench_outstanding=${BENCH_MAX_OUTSTANDING:-64}
scale_rate=8000
scale_clients=10000
work=${BENCH_WORK:-$root/bench/work}
results=${BENCH_RESULTS:-$root/bench/results.md}
srv_ip=198.18.10.1
gen_ip=198.18.10.2
srv_if=cb-srv
gen_if=cb-gen
srv_ns=calloutd-bench-srv-$$
gen_ns=calloutd-bench-gen-$$
clk_tck=$(getconf CLK_TCK)
started_at=$(date +%s)

log() { printf '[bench %3ds] %s\n' "$(($(date +%s) - started_at))" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (network namespaces): sudo scripts/bench.sh"

# --- tools --------------------------------------------------------------------------------------
need=()
for p in kea-dhcp4-server kea-admin dnsmasq-base iproute2 python3 gcc libc6-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    apt-get update -qq
    # Debian would start the kea/dnsmasq services on the host; policy-rc.d (containers) or no
    # systemd keeps them stopped, and nothing here depends on them.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
for tool in perfdhcp kea-dhcp4 dnsmasq ip ss python3 cargo; do
    command -v "$tool" >/dev/null || die "$tool not found"
done

log "building calloutd and the floor (cargo build --release)"
cargo build --release --quiet --bin calloutd --example bench_floor
scripts/build-callouts.sh >/dev/null
calloutd=$root/target/release/calloutd
floor=$root/target/release/examples/bench_floor
[ -f fixtures/callouts/build/linux/noop.so ] || die "noop.so was not built"

# The audit log is another helper's work; turn it on when this build has an option for it.
audit_opt=$("$calloutd" serve --help | grep -o -- '--audit-log[a-z-]*' | head -1 || true)
if [ -n "$audit_opt" ]; then audit="on ($audit_opt)"; else audit="off (calloutd serve has no audit-log option in this build)"; fi

rm -rf "$work"
mkdir -p "$work"
: >"$work/runs.jsonl"

# --- namespaces -----------------------------------------------------------------------------------
srv_pid=
# shellcheck source=scripts/lib/netns-pair.sh
. scripts/lib/netns-pair.sh
cleanup() {
    set +e
    netns_pair_down
}
trap cleanup EXIT
trap 'exit 130' INT TERM

netns_pair_up

# (Servers are started with `ip netns exec ... &` directly, not through a function, so that $! is the
# server's own pid: ip netns exec execs the command.)
in_srv() { ip netns exec "$srv_ns" "$@"; }
in_gen() { ip netns exec "$gen_ns" "$@"; }
# utime + stime of a process in clock ticks (all its threads, live and exited), plus those of its
# children: live ones (calloutd --isolate's callout host) and reaped ones (cutime + cstime, e.g. a host
# that was replaced); empty if the process is gone.
cpu_ticks() {
    local own kids=0 c t
    own=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat" 2>/dev/null) || return 0
    [ -n "$own" ] || return 0
    for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        t=$(awk '{print $14 + $15}' "/proc/$c/stat" 2>/dev/null || true)
        kids=$((kids + ${t:-0}))
    done
    echo $((own + kids))
}
# utime + stime of a process's live children alone (the callout host), in clock ticks.
child_ticks() {
    local kids=0 c t
    for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        t=$(awk '{print $14 + $15}' "/proc/$c/stat" 2>/dev/null || true)
        kids=$((kids + ${t:-0}))
    done
    echo "$kids"
}
# UDP datagrams dropped for a full socket receive buffer, in a namespace.
overflows() { ip netns exec "$1" awk '/^Udp: [0-9]/ {print $6; exit}' /proc/net/snmp; }
over_budget() { [ $(($(date +%s) - started_at)) -ge "$budget" ]; }

# --- servers --------------------------------------------------------------------------------------
kea_conf() {
    cat <<EOF
{ "Dhcp4": {
    "interfaces-config": { "interfaces": [ "$srv_if" ], "dhcp-socket-type": "udp" },
    "lease-database": { "type": "memfile", "persist": true, "name": "$work/kea-leases4.csv", "lfc-interval": 0 },
    "valid-lifetime": 86400,
    "subnet4": [ { "id": 1, "subnet": "198.18.0.0/16",
                   "pools": [ { "pool": "198.18.20.1 - 198.18.254.254" } ] } ],
    "loggers": [ { "name": "kea-dhcp4", "severity": "WARN",
                   "output_options": [ { "output": "$work/kea.log" } ] } ]
} }
EOF
}

# wait_ready PID LOGFILE PATTERN TRIES: until the log shows PATTERN (or, with PATTERN "-", something
# listens on UDP 67 in the server namespace); fails if the process died or TRIES × 0.1 s passed.
wait_ready() {
    local pid=$1 logfile=$2 pattern=$3 tries=$4
    for _ in $(seq "$tries"); do
        kill -0 "$pid" 2>/dev/null || return 1
        if [ "$pattern" = - ]; then
            [ -n "$(in_srv ss -Hlun 'sport = :67')" ] && return 0
        else
            grep -q "$pattern" "$logfile" 2>/dev/null && return 0
        fi
        sleep 0.1
    done
    return 1
}

# start_server NAME [SCOPES] [LEASE_DB]: starts NAME in the server namespace, sets srv_pid.
start_server() {
    local name=$1 scopes=${2:-scripts/bench/scopes.txt} db=${3:-$work/leases.sqlite3}
    local logfile=$work/server-$name.log
    : >"$logfile"
    case $name in
    floor)
        ip netns exec "$srv_ns" "$floor" "$srv_ip:67" >>"$logfile" 2>&1 &
        srv_pid=$!
        wait_ready "$srv_pid" "$logfile" "serving on" 50
        ;;
    calloutd+noop | calloutd+noop+isolate | calloutd)
        local reg=scripts/bench/noop.reg
        [ "$name" = calloutd ] && reg=scripts/bench/nocallout.reg
        local extra=()
        [ "$name" = calloutd+noop+isolate ] && extra=(--isolate)
        if [ -n "$audit_opt" ]; then
            rm -rf "$work/audit"
            mkdir -p "$work/audit"
            extra+=("$audit_opt" "$work/audit")
        fi
        ip netns exec "$srv_ns" "$calloutd" serve --reg "$reg" --scopes "$scopes" --interface "$srv_if" \
            --lease-db "$db" "${extra[@]}" "${calloutd_args[@]}" >>"$logfile" 2>&1 &
        srv_pid=$!
        wait_ready "$srv_pid" "$logfile" "serving on" 600
        ;;
    kea)
        rm -f "$work"/kea-leases4.csv*
        kea_conf >"$work/kea.json"
        KEA_PIDFILE_DIR=$work KEA_LOCKFILE_DIR=$work ip netns exec "$srv_ns" kea-dhcp4 -c "$work/kea.json" >>"$logfile" 2>&1 &
        srv_pid=$!
        wait_ready "$srv_pid" "$logfile" - 100
        ;;
    dnsmasq)
        rm -f "$work/dnsmasq.leases"
        ip netns exec "$srv_ns" dnsmasq --keep-in-foreground --no-daemon --conf-file=/dev/null --pid-file= --user=root \
            --port=0 --no-ping --interface="$srv_if" --bind-interfaces \
            --dhcp-range=198.18.20.1,198.18.254.254,255.255.0.0,24h --dhcp-lease-max=100000 \
            --dhcp-leasefile="$work/dnsmasq.leases" --dhcp-authoritative --quiet-dhcp >>"$logfile" 2>&1 &
        srv_pid=$!
        wait_ready "$srv_pid" "$logfile" - 100
        ;;
    esac
}

stop_server() {
    [ -n "$srv_pid" ] || return 0
    kill -TERM "$srv_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$srv_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$srv_pid" 2>/dev/null || true
    wait "$srv_pid" 2>/dev/null || true
    srv_pid=
}

# record KEY=VALUE...: one JSON object (numbers stay numbers) appended to runs.jsonl.
record() {
    python3 - "$@" >>"$work/runs.jsonl" <<'EOF'
import json, sys
run = {}
for arg in sys.argv[1:]:
    key, _, value = arg.partition("=")
    try:
        run[key] = int(value)
    except ValueError:
        try:
            run[key] = float(value)
        except ValueError:
            run[key] = value
print(json.dumps(run))
EOF
}

# measure LOAD SERVER RATE CLIENTS OUTPUT [KEY=VALUE...]: runs the load command in "${load_cmd[@]}"
# in the generator namespace, records the server's CPU and the namespaces' socket overflows, and
# stops the server.
measure() {
    local load=$1 server=$2 rate=$3 clients=$4 output=$5
    shift 5
    local cpu0 cpu1 so0 so1 go0 go1 host0 host1 load1
    load1=$(cut -d' ' -f1 /proc/loadavg)
    cpu0=$(cpu_ticks "$srv_pid")
    host0=$(child_ticks "$srv_pid")
    so0=$(overflows "$srv_ns")
    go0=$(overflows "$gen_ns")
    in_gen timeout -k 2 $((secs + 20)) "${load_cmd[@]}" >"$work/$output" 2>&1 || true
    cpu1=$(cpu_ticks "$srv_pid")
    host1=$(child_ticks "$srv_pid")
    so1=$(overflows "$srv_ns")
    go1=$(overflows "$gen_ns")
    if [ -z "$cpu0" ] || [ -z "$cpu1" ]; then
        log "warning: $server exited during the run (see $work/server-$server.log)"
        record load="$load" server="$server" rate="$rate" clients="$clients" secs="$secs" cpu_ticks=0 \
            clk_tck="$clk_tck" srv_overflows=0 gen_overflows=0 output= error="server exited during the run" "$@"
        return
    fi
    # Stopped before counting, so the audit log is flushed.
    stop_server
    local audit_lines=
    case $server in
    calloutd*) [ -n "$audit_opt" ] && audit_lines=$(cat "$work"/audit/DhcpSrvLog-*.log 2>/dev/null | grep -c '^1[01],' || true) ;;
    esac
    local faults=
    [ "$server" = calloutd+noop+isolate ] && faults=$(grep -c 'event 1031' "$work/server-$server.log" || true)
    record load="$load" server="$server" rate="$rate" clients="$clients" secs="$secs" \
        cpu_ticks=$((cpu1 - cpu0)) clk_tck="$clk_tck" srv_overflows=$((so1 - so0)) \
        gen_overflows=$((go1 - go0)) output="$output" audit_lines="$audit_lines" \
        host_ticks=$((host1 - host0)) load1="$load1" callout_faults="$faults" "$@"
}

perfdhcp_cmd() { load_cmd=(perfdhcp -4 -l "$gen_if" -r "$1" -R "$2" -p "$secs" -W 500000 "$srv_ip"); }

# --- the perfdhcp matrix --------------------------------------------------------------------------
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
if has perfdhcp "${phases[@]}"; then
    for clients in "${client_counts[@]}"; do
        for rate in "${rates[@]}"; do
            for server in "${servers[@]}"; do
                out="perfdhcp-$server-$rate-$clients.txt"
                if over_budget; then
                    log "skipped (time budget): $server $rate/s $clients clients"
                    record load=perfdhcp server="$server" rate="$rate" clients="$clients" secs="$secs" \
                        cpu_ticks=0 clk_tck="$clk_tck" srv_overflows=0 gen_overflows=0 output= error="skipped (time budget)"
                    continue
                fi
                rm -f "$work/leases.sqlite3"*
                if ! start_server "$server"; then
                    log "$server did not start: $(tail -3 "$work/server-$server.log" | tr '\n' ' ')"
                    stop_server
                    record load=perfdhcp server="$server" rate="$rate" clients="$clients" secs="$secs" \
                        cpu_ticks=0 clk_tck="$clk_tck" srv_overflows=0 gen_overflows=0 output= error="server did not start"
                    continue
                fi
                log "perfdhcp $rate/s, $clients clients -> $server"
                perfdhcp_cmd "$rate" "$clients"
                measure perfdhcp "$server" "$rate" "$clients" "$out" audit="${audit%% *}"
                stop_server
            done
        done
    done
fi

# --- the target point again, floor and calloutd+noop alternating ----------------------------------
# One run of each varies by 10-30 % (the floor measured 22.8 and 30.3 µs per exchange at 8 000/s in
# one run): the report takes the median of these runs and the matrix's run.
target_repeats=${BENCH_TARGET_REPEATS:-4}
if has target "${phases[@]}"; then
    for n in $(seq "$target_repeats"); do
        for server in floor calloutd+noop; do
            over_budget && { log "skipped (time budget): target run $n -> $server"; continue; }
            rm -f "$work/leases.sqlite3"*
            start_server "$server" || { log "$server did not start"; stop_server; continue; }
            log "target run $n: perfdhcp 8000/s, 10000 clients -> $server"
            perfdhcp_cmd 8000 10000
            measure "perfdhcp (target)" "$server" 8000 10000 "target-$server-$n.txt" audit="${audit%% *}"
            stop_server
        done
    done
fi

# --- the cost of --isolate (issue 11) -------------------------------------------------------------
# calloutd+noop in-process, calloutd+noop --isolate and Kea at one rate, round after round in a
# rotating order (so none always runs first or last on a machine whose load drifts): the report gives
# each run with the load average it started under, the medians and spreads, and the ratios per round.
isolate_repeats=${BENCH_ISOLATE_REPEATS:-3}
isolate_rate=${BENCH_ISOLATE_RATE:-8000}
isolate_clients=${BENCH_ISOLATE_CLIENTS:-10000}
if has isolate "${phases[@]}"; then
    isolate_servers=(calloutd+noop calloutd+noop+isolate kea)
    for n in $(seq "$isolate_repeats"); do
        for k in 0 1 2; do
            server=${isolate_servers[$(((n - 1 + k) % 3))]}
            over_budget && { log "skipped (time budget): isolate round $n -> $server"; continue; }
            rm -f "$work/leases.sqlite3"*
            start_server "$server" || { log "$server did not start: $(tail -3 "$work/server-$server.log" | tr '\n' ' ')"; stop_server; continue; }
            log "isolate round $n: perfdhcp $isolate_rate/s, $isolate_clients clients -> $server"
            perfdhcp_cmd "$isolate_rate" "$isolate_clients"
            measure isolate "$server" "$isolate_rate" "$isolate_clients" "isolate-$server-$n.txt" round="$n" \
                audit="${audit%% *}"
            stop_server
        done
    done
fi

# --- calloutd bench at its own maximum ------------------------------------------------------------
if has bench "${phases[@]}"; then
    for server in "${servers[@]}"; do
        over_budget && { log "skipped (time budget): calloutd bench -> $server"; continue; }
        rm -f "$work/leases.sqlite3"*
        start_server "$server" || { log "$server did not start"; stop_server; continue; }
        log "calloutd bench --rate 0 -> $server"
        load_cmd=("$calloutd" bench --server "$srv_ip" --giaddr "$gen_ip" --rate 0 --duration "$secs" --json
            --max-outstanding "$bench_outstanding")
        measure "calloutd bench" "$server" 0 1000 "bench-$server.json" max_outstanding="$bench_outstanding"
        stop_server
    done
    # Once with calloutd bench's own default in flight, to show what it measures then.
    if has calloutd+noop "${servers[@]}" && ! over_budget; then
        rm -f "$work/leases.sqlite3"*
        if start_server calloutd+noop; then
            log "calloutd bench --rate 0 (default --max-outstanding) -> calloutd+noop"
            load_cmd=("$calloutd" bench --server "$srv_ip" --giaddr "$gen_ip" --rate 0 --duration "$secs" --json)
            measure "calloutd bench, default in flight" calloutd+noop 0 1000 "bench-default-calloutd+noop.json"
        fi
        stop_server
    fi
fi

# --- lease-count scaling --------------------------------------------------------------------------
# 1 000 000 leases do not fit in 198.18.0.0/15, the only range the benchmark may put on an interface or
# in a packet (its pool here holds 126 974 addresses). So scripts/bench/scopes-scale.txt has two scopes:
#   198.18.0.0/15  pool 198.18.16.1 - 198.19.255.254. perfdhcp's clients are served from it (calloutd
#                  picks the scope by giaddr 198.18.10.2). It holds up to $scale_low_max pre-existing
#                  leases, which leaves 11 974 addresses for the $scale_clients clients.
#   240.0.0.0/12   in the reserved, never-routed 240.0.0.0/4 (pool 240.0.0.1 - 240.15.255.254,
#                  1 048 574 addresses): the pre-existing leases beyond $scale_low_max. They exist only
#                  as rows in the lease database and entries in calloutd's lease table. No 240.x address
#                  is ever put on an interface or in a packet: no client is served from that scope,
#                  conflict detection is off (the scope file does not ask for it), and the load check
#                  below probes a 198.18 lease.
# A run with N leases puts min(N, $scale_low_max) in 198.18 and the rest in 240.0.0.0/12: 200 and 10 000
# are all in 198.18, 1 000 000 is 115 000 + 885 000. scripts/bench/populate.py fills the database
# (python3's sqlite3, executemany in one transaction, 1 KiB pages like calloutd's own databases).
# The run proves the leases were loaded twice over: the last 198.18 lease's client is offered its own
# address (one DISCOVER through the relay address), and GET /v1/leases of the control API (in the
# server's namespace, on its loopback) is counted per scope. Not `calloutd ctl stats`: its per-scope
# free-address count is O(pool x leases) (crates/service/src/backend.rs free_addresses; hours with 1 000 000
# leases, on the server's CPU), and `calloutd ctl leases` refuses a response over 10 MiB. The count runs
# before the load, outside the measured CPU; the RSS figures are read before it.
# calloutd's stop summary counts free addresses the same O(pool x leases) way (~80 s with 1 000 000
# leases), so stop_server kills it after its 10 s wait; the CPU figures are read before the stop.
scale_low_max=115000
scale_high_max=1048574
# count_leases: prints "LEASES_IN_198.18 LEASES_IN_240 ALL" as the running server's control API lists
# them, by the scope each listed lease names. (A regex over the ~230 MB of JSON that 1 000 000 leases
# make takes ~1 s; json.load of it took ~10 s.)
count_leases() {
    in_srv curl -sf --max-time 120 http://127.0.0.1:6780/v1/leases | python3 -c '
import collections, re, sys
scopes = collections.Counter(m.group(1) for m in re.finditer(rb"\"scope\"\s*:\s*\"([^\"]*)\"", sys.stdin.buffer.read()))
print(scopes[b"198.18.0.0"], scopes[b"240.0.0.0"], sum(scopes.values()))'
}
# status_mb PID FIELD: a /proc/PID/status size (VmRSS, VmHWM) in MB.
status_mb() { awk -v f="$2:" '$1 == f {printf "%.0f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || true; }
scale_note="Two scopes (scripts/bench/scopes-scale.txt): 198.18.0.0/15 (pool 198.18.16.1 - 198.19.255.254, 126 974 addresses), from which perfdhcp's $scale_clients clients are served (scope chosen by giaddr), and 240.0.0.0/12 (pool 240.0.0.1 - 240.15.255.254, 1 048 574 addresses) in the reserved, never-routed 240.0.0.0/4. A run with N pre-existing leases puts min(N, $scale_low_max) of them in 198.18.0.0/15 (leaving 11 974 addresses for the clients) and the rest in 240.0.0.0/12, where they exist only as rows in the lease database and entries in calloutd's lease table: no 240.x address is ever put on an interface or in a packet (no client is served from that scope, conflict detection is off). The leases are written with python3's sqlite3 (executemany, one transaction: *populate s*), then calloutd+noop is started on the database (*startup s*: until it logs that it serves; *RSS MB*: VmRSS after startup, in brackets VmHWM, the peak while loading) and runs under perfdhcp at $scale_rate/s with $scale_clients clients. *loaded*: the last 198.18 lease's client was offered its stored address, and the control API's lease list (GET /v1/leases, before the load) counted the leases per scope."
if has scale "${phases[@]}"; then
    for n in "${scale_leases[@]}"; do
        if [ "$n" -gt $((scale_low_max + scale_high_max)) ]; then
            log "scaling: $n leases do not fit, using $((scale_low_max + scale_high_max))"
            n=$((scale_low_max + scale_high_max))
        fi
        over_budget && { log "skipped (time budget): scaling with $n leases"; continue; }
        low=$((n < scale_low_max ? n : scale_low_max))
        high=$((n - low))
        db=$work/scale-$n.sqlite3
        rm -f "$db"*
        read -r probe_mac probe_ip _ populate_s < <(python3 scripts/bench/populate.py "$db" "$low" "$high")
        t0=$(date +%s.%N)
        if ! start_server calloutd+noop scripts/bench/scopes-scale.txt "$db"; then
            log "calloutd did not start with $n leases: $(tail -3 "$work/server-calloutd+noop.log" | tr '\n' ' ')"
            stop_server
            record load=scale server=calloutd+noop rate="$scale_rate" clients="$scale_clients" secs="$secs" \
                cpu_ticks=0 clk_tck="$clk_tck" srv_overflows=0 gen_overflows=0 output= leases="$n" \
                leases_low="$low" leases_high="$high" populate_s="$populate_s" error="server did not start"
            continue
        fi
        startup=$(python3 -c "print(round($(date +%s.%N) - $t0, 2))")
        rss_mb=$(status_mb "$srv_pid" VmRSS)
        hwm_mb=$(status_mb "$srv_pid" VmHWM)
        # The last pre-existing 198.18 lease's client must be offered its own address.
        offered=
        if [ "$low" -gt 0 ]; then
            offered=$(in_gen "$calloutd" client discover --giaddr "$gen_ip" --server "$srv_ip" --mac "$probe_mac" \
                --timeout 2 --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin).get("yiaddr",""))' || true)
        fi
        c0=$(date +%s.%N)
        read -r counted_low counted_high counted_all < <(count_leases || echo "? ? ?")
        count_s=$(python3 -c "print(round($(date +%s.%N) - $c0, 2))")
        problems=()
        [ "$low" -gt 0 ] && [ "$offered" != "$probe_ip" ] && problems+=("$probe_mac offered '$offered', expected $probe_ip")
        [ "$counted_low $counted_high $counted_all" != "$low $high $n" ] &&
            problems+=("control API listed $counted_low + $counted_high of $counted_all, expected $low + $high")
        if [ ${#problems[@]} -eq 0 ]; then
            loaded="yes: $counted_low + $counted_high listed; $probe_mac offered $offered"
        else
            loaded="NO: $(IFS=';'; echo "${problems[*]}")"
        fi
        log "scaling: $n leases ($low + $high), populate ${populate_s}s, startup ${startup}s, RSS ${rss_mb} MB (peak ${hwm_mb} MB), count ${count_s}s, loaded: $loaded; perfdhcp $scale_rate/s, $scale_clients clients"
        perfdhcp_cmd "$scale_rate" "$scale_clients"
        measure scale calloutd+noop "$scale_rate" "$scale_clients" "scale-$n.txt" leases="$n" leases_low="$low" \
            leases_high="$high" populate_s="$populate_s" startup_s="$startup" rss_mb="$rss_mb" hwm_mb="$hwm_mb" \
            count_s="$count_s" loaded="$loaded"
        stop_server
    done
fi

# --- report ---------------------------------------------------------------------------------------
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "secs=$secs"
    echo "nproc=$(nproc)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "kernel=$(uname -r)"
    echo "load_before=$load_before"
    echo "load_after=$load_after"
    echo "calloutd=$(git describe --always --dirty 2>/dev/null || echo unknown)${BENCH_CALLOUTD_ARGS:+, serve $BENCH_CALLOUTD_ARGS}"
    echo "rustc=$(rustc --version | cut -d' ' -f2)"
    echo "kea=$(kea-dhcp4 -v 2>/dev/null | head -1)"
    echo "dnsmasq=$(dnsmasq --version | head -1 | awk '{print $3}')"
    echo "perfdhcp=$(perfdhcp -v 2>&1 | head -1 | sed "s/^VERSION: //")"
    echo "audit=$audit"
    echo "bench_outstanding=$bench_outstanding"
    echo "scale_note=$scale_note"
    echo "noise=${BENCH_NOISE_NOTE:-load average $load_before before and $load_after after the run on $(nproc) CPUs; the server, perfdhcp and anything else running share those CPUs, so rates and drops at 8 000/s and above depend on what else runs and CPU per exchange varies by ±10-20 % between runs.}"
    echo "notes=${BENCH_NOTES:-}"
} >"$work/meta.txt"
if [ -n "${BENCH_NOTES_FILE:-}" ]; then cp "$BENCH_NOTES_FILE" "$work/notes.md"; fi
python3 scripts/bench/report.py "$work" "$results"
log "done in $(($(date +%s) - started_at)) s"
