#!/usr/bin/env python3
"""Turns the raw records of scripts/bench.sh into one table, the ratios, and bench/results.md.

Usage: report.py WORK_DIR RESULTS_MD
WORK_DIR holds runs.jsonl (one JSON object per run, written by bench.sh), the perfdhcp / calloutd bench
outputs it names, meta.txt (key=value lines: date, machine, versions) and optionally notes.md (text for
the Notes section). Prints the tables and writes
RESULTS_MD. Numbers are only reported, never judged against a threshold.
"""

import json
import re
import sys
from pathlib import Path

SERVERS = ["floor", "calloutd+noop", "calloutd+noop+isolate", "calloutd", "kea", "dnsmasq"]
# The load name of bench.sh's target phase: the target point run again, floor and calloutd+noop.
TARGET_LOAD = "perfdhcp (target)"
# The load name of bench.sh's isolate phase: in-process, --isolate and Kea, round after round.
ISOLATE_LOAD = "isolate"
ISOLATED = "calloutd+noop+isolate"


def parse_perfdhcp(text):
    """Sent/received/drops/avg delay per stage and the rate line of a perfdhcp report."""
    stages = {}
    current = None
    result = {"rate_line": None}
    for line in text.splitlines():
        m = re.match(r"\*\*\*Statistics for: (\S+)\*\*\*", line)
        if m:
            current = stages.setdefault(m.group(1), {})
            continue
        m = re.match(r"Rate: ([0-9.]+) 4-way", line)
        if m:
            result["rate_line"] = float(m.group(1))
        if current is None:
            continue
        for key, pattern in (
            ("sent", r"sent packets: (\d+)"),
            ("received", r"received packets: (\d+)"),
            ("drops", r"drops: (\d+)"),
            ("avg_ms", r"avg delay: ([0-9.]+) ms"),
        ):
            m = re.match(pattern, line.strip())
            if m and key not in current:
                current[key] = float(m.group(1))
    do = stages.get("DISCOVER-OFFER")
    ra = stages.get("REQUEST-ACK")
    if not do or not ra or "sent" not in do or "received" not in ra:
        return None
    return {
        "started": int(do["sent"]),
        "completed": int(ra["received"]),
        "drops": int(do.get("drops", 0) + ra.get("drops", 0)),
        "avg_ms": do.get("avg_ms", 0.0) + ra.get("avg_ms", 0.0),
        "perfdhcp_rate": result["rate_line"],
    }


def parse_bench(text):
    """The fields of `calloutd bench --json` this report uses."""
    try:
        report = json.loads(text.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    drops = report.get("drops", {})
    return {
        "started": int(report.get("discovers", 0)),
        "completed": int(report.get("acks", 0)),
        "drops": int(drops.get("no_offer", 0) + drops.get("no_ack", 0) + drops.get("nak", 0)),
        "avg_ms": float(report.get("latency_us", {}).get("avg", 0.0)) / 1000.0,
        "bench_rate": float(report.get("exchanges_per_s", 0.0)),
        "generator_cpu_s": report.get("generator_cpu_s"),
    }


def load_runs(work):
    runs = []
    path = work / "runs.jsonl"
    if not path.exists():
        return runs
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        run = json.loads(line)
        out = work / run["output"] if run.get("output") else None
        text = out.read_text(errors="replace") if out and out.exists() else ""
        parsed = parse_bench(text) if run["load"].startswith("calloutd bench") else parse_perfdhcp(text)
        run["ok"] = parsed is not None
        if parsed:
            run.update(parsed)
            if "bench_rate" in parsed:
                run["rate_achieved"] = parsed["bench_rate"]
            else:
                run["rate_achieved"] = parsed["completed"] / run["secs"] if run["secs"] else 0.0
            cpu_s = run["cpu_ticks"] / run["clk_tck"]
            run["cpu_s"] = cpu_s
            run["cpu_per_1000"] = cpu_s * 1000.0 / run["completed"] if run["completed"] else None
        runs.append(run)
    return runs


def fmt(value, spec):
    return "–" if value is None else format(value, spec)


def main_table(runs):
    head = ("| load | server | rate/s | clients | achieved/s | drops | avg delay ms | server CPU s "
            "| CPU s / 1000 exch | µs / exch | server socket overflows | generator socket overflows "
            "| audit lines |")
    lines = [head, "|" + "---|" * 13]
    for r in runs:
        if r["load"] in ("scale", TARGET_LOAD, ISOLATE_LOAD):
            continue
        rate = "max" if r["rate"] == 0 else str(r["rate"])
        if not r["ok"]:
            lines.append(f"| {r['load']} | {r['server']} | {rate} | {r['clients']} | failed: "
                         f"{r.get('error', 'no report')} |  |  |  |  |  |  |  |  |")
            continue
        started = r["started"] or 1
        per = r["cpu_per_1000"]
        lines.append(
            f"| {r['load']} | {r['server']} | {rate} | {r['clients']} | {r['rate_achieved']:.0f} "
            f"| {r['drops']} ({100.0 * r['drops'] / started:.1f} %) | {r['avg_ms']:.3f} "
            f"| {r['cpu_s']:.2f} | {fmt(per, '.4f')} | {fmt(per * 1000 if per else None, '.1f')} "
            f"| {r['srv_overflows']} | {r['gen_overflows']} | {audit_cell(r)} |")
    return "\n".join(lines)


def audit_cell(run):
    """Lines the audit log got (events 10 and 11: one per ACK), for calloutd with the log on."""
    lines = run.get("audit_lines")
    return "–" if lines in (None, "") else str(lines)


def ratio(a, b):
    if a is None or b is None:
        return "–"
    if b == 0:
        return "–" if a == 0 else "∞"
    return f"{a / b:.2f}"


def drop_ratio(a, b):
    """calloutd's drops over the other server's; both counts shown, as 0 over 0 is common."""
    return f"{ratio(a, b)} ({a}/{b})"


def ratio_table(runs):
    by_key = {}
    for r in runs:
        if r["load"] == "perfdhcp" and r["ok"]:
            by_key.setdefault((r["rate"], r["clients"]), {})[r["server"]] = r
    lines = [
        "| rate/s | clients | calloutd | CPU ÷ floor | CPU ÷ Kea | CPU ÷ dnsmasq "
        "| drops ÷ floor | drops ÷ Kea | drops ÷ dnsmasq |",
        "|" + "---|" * 9,
    ]
    for (rate, clients), servers in sorted(by_key.items()):
        for variant in ("calloutd+noop", "calloutd"):
            c = servers.get(variant)
            if not c:
                continue
            cells = []
            for other in ("floor", "kea", "dnsmasq"):
                o = servers.get(other)
                cells.append(ratio(c["cpu_per_1000"], o["cpu_per_1000"] if o else None))
            for other in ("floor", "kea", "dnsmasq"):
                o = servers.get(other)
                cells.append(drop_ratio(c["drops"], o["drops"]) if o else "–")
            lines.append(f"| {rate} | {clients} | {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bench_ratio_lines(runs):
    bench = {r["server"]: r for r in runs if r["load"] == "calloutd bench" and r["ok"]}
    lines = []
    for variant in ("calloutd+noop", "calloutd"):
        c = bench.get(variant)
        if not c:
            continue
        parts = []
        for other in ("floor", "kea", "dnsmasq"):
            o = bench.get(other)
            if o:
                parts.append(f"CPU ÷ {other} {ratio(c['cpu_per_1000'], o['cpu_per_1000'])}, "
                             f"rate ÷ {other} {ratio(c['rate_achieved'], o['rate_achieved'])}")
        lines.append(f"- calloutd bench at its maximum, {variant}: " + "; ".join(parts))
    return lines


def seconds_cell(value):
    """A duration the script measured, to 0.01 s (bench.sh's record() turns "0.00" into 0)."""
    return format(value, ".2f") if isinstance(value, (int, float)) else "–"


def scale_table(runs):
    lines = [
        "| pre-existing leases | in 198.18.0.0/15 + 240.0.0.0/12 | loaded | populate s | startup s "
        "| RSS MB (peak) | rate/s | clients | achieved/s | drops | avg delay ms | CPU s / 1000 exch "
        "| µs / exch | vs fewest leases |",
        "|" + "---|" * 14,
    ]
    scale = [r for r in runs if r["load"] == "scale"]
    base = None
    for r in scale:
        split = (f"{r['leases_low']} + {r['leases_high']}" if "leases_low" in r and "leases_high" in r
                 else "–")
        rss = f"{r['rss_mb']} ({r.get('hwm_mb', '–')})" if r.get("rss_mb") not in (None, "") else "–"
        head = (f"| {r['leases']} | {split} | {r.get('loaded', '?')} | {seconds_cell(r.get('populate_s'))} "
                f"| {seconds_cell(r.get('startup_s'))} | {rss} | {r['rate']} | {r['clients']} ")
        if not r["ok"]:
            lines.append(head + f"| failed: {r.get('error', 'no report')} |  |  |  |  |  |")
            continue
        per = r["cpu_per_1000"]
        if base is None:
            base = per
        lines.append(
            head + f"| {r['rate_achieved']:.0f} | {r['drops']} ({100.0 * r['drops'] / (r['started'] or 1):.1f} %) "
            f"| {r['avg_ms']:.3f} "
            f"| {fmt(per, '.4f')} | {fmt(per * 1000 if per else None, '.1f')} | {ratio(per, base)} |")
    return "\n".join(lines)


def target_runs(runs, server):
    """Every completed run of `server` at the target point (8 000/s, 10 000 clients): the matrix's
    run first, then the target phase's."""
    return [r for r in runs
            if r["ok"] and r["server"] == server and r["rate"] == 8000 and r["clients"] == 10000
            and r["load"] in ("perfdhcp", TARGET_LOAD) and r["cpu_per_1000"]]


def median(values):
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return None
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2.0


def target_table(runs):
    """The target point's runs side by side, pair by pair, and the medians."""
    floors, callouts = target_runs(runs, "floor"), target_runs(runs, "calloutd+noop")
    if not floors or not callouts:
        return ""
    lines = ["| run | floor µs / exch | calloutd+noop µs / exch | ratio | calloutd+noop drops |",
             "|---|---|---|---|---|"]

    def run_name(r):
        # bench.sh names a target run's output target-SERVER-N.txt.
        return "matrix" if r["load"] == "perfdhcp" else "target " + r["output"].rsplit("-", 1)[-1][:-4]

    floor_by_name = {run_name(r): r for r in floors}
    for c in callouts:
        f = floor_by_name.get(run_name(c))
        if f:
            lines.append(f"| {run_name(c)} | {f['cpu_per_1000'] * 1000:.1f} | {c['cpu_per_1000'] * 1000:.1f} "
                         f"| {ratio(c['cpu_per_1000'], f['cpu_per_1000'])} | {c['drops']} |")
    mf = median([r["cpu_per_1000"] for r in floors])
    mc = median([r["cpu_per_1000"] for r in callouts])
    lines.append(f"| **median** | **{mf * 1000:.1f}** | **{mc * 1000:.1f}** | **{ratio(mc, mf)}** "
                 f"| {sum(r['drops'] for r in callouts)} in all |")
    return "\n".join(lines)


def targets(runs):
    """The issue's targets, restated next to what was measured (reported, not judged by a test)."""
    pd = {(r["server"], r["rate"], r["clients"]): r for r in runs if r["load"] == "perfdhcp" and r["ok"]}
    out = []
    floors, callouts = target_runs(runs, "floor"), target_runs(runs, "calloutd+noop")
    if floors and callouts:
        mf = median([r["cpu_per_1000"] for r in floors])
        mc = median([r["cpu_per_1000"] for r in callouts])
        drops = [r["drops"] for r in callouts]
        out.append(f"- 8 000/s, 10 000 clients, median of {len(callouts)} runs of calloutd+noop and "
                   f"{len(floors)} of the floor: calloutd+noop {mc * 1000:.1f} µs per exchange, floor "
                   f"{mf * 1000:.1f} µs: ratio {ratio(mc, mf)} (target ≤ 1.3); calloutd+noop drops per run "
                   f"{', '.join(str(d) for d in drops)} (target 0)")
    for clients in (200, 10000):
        c, k = pd.get(("calloutd+noop", 12000, clients)), pd.get(("kea", 12000, clients))
        if c and k:
            out.append(f"- 12 000/s, {clients} clients: drops calloutd+noop {c['drops']}, Kea {k['drops']} "
                       f"(target: fewer than Kea)")
    scale = [r for r in runs if r["load"] == "scale" and r["ok"] and r["cpu_per_1000"]]
    if len(scale) >= 2:
        values = [r["cpu_per_1000"] for r in scale]
        spread = (max(values) - min(values)) / min(values) * 100.0
        out.append(f"- CPU per exchange from {scale[0]['leases']} to {scale[-1]['leases']} pre-existing "
                   f"leases: spread {spread:.0f} % (target: within 20 %)")
    return out


def isolate_section(runs):
    """The isolate phase: every run with its load average, then per server the median and the
    spread of CPU per exchange, and the ratios of --isolate to its peers, round by round."""
    runs = [r for r in runs if r["load"] == ISOLATE_LOAD]
    if not runs:
        return []
    rate, clients = runs[0]["rate"], runs[0]["clients"]
    lines = [
        f"perfdhcp at {rate}/s with {clients} clients (DORA, relay mode), {runs[0]['secs']} s per run; "
        "each round runs calloutd+noop in-process, calloutd+noop with `--isolate` and Kea, in an order "
        "that rotates from round to round. *CPU* is the server's utime + stime with its children's "
        "(for `--isolate` the callout host's, shown apart in *host µs*), from /proc; *load* is the "
        "1-minute load average as the run started (2 CPUs).",
        "",
        "| round | server | load | achieved/s | drops | avg delay ms | µs / exch | host µs / exch "
        "| server socket overflows | generator socket overflows | callout faults (event 1031) |",
        "|" + "---|" * 11,
    ]
    for r in runs:
        if not r["ok"]:
            lines.append(f"| {r.get('round', '?')} | {r['server']} | {r.get('load1', '?')} | failed: "
                         f"{r.get('error', 'no report')} |  |  |  |  |  |  |  |")
            continue
        host = r.get("host_ticks")
        host_us = (f"{host / r['clk_tck'] * 1e6 / r['completed']:.1f}"
                   if r["server"] == ISOLATED and isinstance(host, int) and r["completed"] else "–")
        faults = r.get("callout_faults")
        lines.append(
            f"| {r.get('round', '?')} | {r['server']} | {r.get('load1', '?')} | {r['rate_achieved']:.0f} "
            f"| {r['drops']} ({100.0 * r['drops'] / (r['started'] or 1):.1f} %) | {r['avg_ms']:.3f} "
            f"| {fmt(r['cpu_per_1000'] * 1000 if r['cpu_per_1000'] else None, '.1f')} | {host_us} "
            f"| {r['srv_overflows']} | {r['gen_overflows']} | {'–' if faults in (None, '') else faults} |")
    lines += ["", "| server | runs | median µs / exch | spread (min – max) | drops per run |", "|---|---|---|---|---|"]
    medians = {}
    for server in ("calloutd+noop", ISOLATED, "kea"):
        ok = [r for r in runs if r["server"] == server and r["ok"] and r["cpu_per_1000"]]
        if not ok:
            continue
        values = [r["cpu_per_1000"] * 1000 for r in ok]
        medians[server] = median(values)
        lines.append(f"| {server} | {len(ok)} | {medians[server]:.1f} | {min(values):.1f} – {max(values):.1f} "
                     f"| {', '.join(str(r['drops']) for r in ok)} |")
    # Ratios within each round: the peers measured minutes apart under the same load.
    rounds = {}
    for r in runs:
        if r["ok"] and r["cpu_per_1000"]:
            rounds.setdefault(r.get("round"), {})[r["server"]] = r["cpu_per_1000"]
    in_proc = [v[ISOLATED] / v["calloutd+noop"] for v in rounds.values() if ISOLATED in v and "calloutd+noop" in v]
    kea = [v[ISOLATED] / v["kea"] for v in rounds.values() if ISOLATED in v and "kea" in v]
    lines.append("")
    if in_proc:
        lines.append(f"- `--isolate` ÷ in-process, CPU per exchange, per round: "
                     f"{', '.join(f'{x:.2f}' for x in in_proc)}; median {median(in_proc):.2f}")
    if kea:
        lines.append(f"- `--isolate` ÷ Kea, CPU per exchange, per round: "
                     f"{', '.join(f'{x:.2f}' for x in kea)}; median {median(kea):.2f} (goal: below 1)")
    iso = [r for r in runs if r["server"] == ISOLATED and r["ok"]]
    if iso:
        lines.append(f"- `--isolate` drops per run: {', '.join(str(r['drops']) for r in iso)} (goal: 0)")
    return lines


def main():
    work, results = Path(sys.argv[1]), Path(sys.argv[2])
    meta = {}
    meta_path = work / "meta.txt"
    if meta_path.exists():
        for line in meta_path.read_text().splitlines():
            key, _, value = line.partition("=")
            meta[key.strip()] = value.strip()
    runs = load_runs(work)
    table, ratios, scale = main_table(runs), ratio_table(runs), scale_table(runs)
    target = target_table(runs)
    isolate = isolate_section(runs)
    bench_lines, target_lines = bench_ratio_lines(runs), targets(runs)

    print(table)
    print()
    print("Ratios (CPU per 1 000 exchanges; drops as calloutd's over the other's, counts in brackets):")
    print(ratios)
    for line in bench_lines:
        print(line)
    if target:
        print()
        print("The target point (8 000/s, 10 000 clients), run again:")
        print(target)
    print()
    print("Lease-count scaling (calloutd+noop):")
    print(scale)
    print()
    for line in target_lines:
        print(line)
    if isolate:
        print()
        print("The cost of --isolate:")
        print("\n".join(isolate))

    notes = meta.get("notes", "")
    notes_file = work / "notes.md"
    if notes_file.exists():
        notes = (notes + "\n\n" + notes_file.read_text().strip()).strip()
    doc = [
        "# calloutd benchmark results",
        "",
        f"Written by `scripts/bench.sh` on {meta.get('date', '?')}. Each run: the server freshly started "
        f"with an empty lease store, {meta.get('secs', '?')} s of load over a veth pair between two network "
        "namespaces (198.18.0.0/15 addresses only).",
        "",
        "## Machine and tools",
        "",
        f"- machine: {meta.get('nproc', '?')} CPUs, {meta.get('cpu', '?')}, kernel {meta.get('kernel', '?')}",
        f"- load average before the run: {meta.get('load_before', '?')}; after: {meta.get('load_after', '?')}",
        f"- calloutd: {meta.get('calloutd', '?')} (release build); rustc {meta.get('rustc', '?')}",
        f"- Kea: kea-dhcp4 {meta.get('kea', '?')} (memfile, persist on, lfc off, single-threaded = Kea 2.2's "
        "default, logging at WARN so it writes no line per lease), UDP sockets",
        f"- dnsmasq: {meta.get('dnsmasq', '?')} (`--no-ping --port=0 --dhcp-authoritative --quiet-dhcp`, "
        "lease file in bench/work; it fsyncs the lease file on every change)",
        f"- load generator: perfdhcp {meta.get('perfdhcp', '?')} (DORA, relay mode: giaddr = its address, "
        "replies to giaddr:67) and `calloutd bench --rate 0`",
        f"- calloutd audit log: {meta.get('audit', '?')}",
        "",
        "**Noise:** " + meta.get("noise", "the machine may have been shared with other work."),
        "",
        "## How the figures are made",
        "",
        "- *achieved/s*: 4-way exchanges completed (ACKs perfdhcp received) divided by the load period "
        "(perfdhcp's own `Rate:` line also divides by its exit wait); for `calloutd bench` its "
        "`exchanges_per_s`.",
        "- *drops*: perfdhcp's DISCOVER-OFFER drops plus REQUEST-ACK drops (exchanges started but not "
        "completed; % of DISCOVERs sent); for `calloutd bench` no_offer + no_ack + nak.",
        "- *avg delay*: perfdhcp's average DISCOVER→OFFER delay plus average REQUEST→ACK delay; for "
        "`calloutd bench` its average DISCOVER→ACK latency.",
        "- *server CPU*: utime + stime of the server process (/proc/PID/stat, all threads) after the run "
        "minus before it (10 ms ticks: at 1 000/s a 5 s run is ~5 000 exchanges, so ±1 tick is ±2 µs per "
        "exchange).",
        f"- *calloutd bench*: `--rate 0 --max-outstanding {meta.get('bench_outstanding', '?')}` (1 000 "
        "clients); its default of 256 in flight, refilled in bursts, overflows the default 212 992-byte "
        "receive buffer of every server here (the floor included) and then runs at the pace of its 1 s "
        "timeouts (the row *calloutd bench, default in flight* shows it).",
        "- *audit lines*: lines of events 10/11 (lease granted or renewed) in calloutd's audit log "
        "(`--audit-log`, a fresh folder per run) after the run: one per ACK when the log is on.",
        "- *socket overflows*: UDP RcvbufErrors in the server's / generator's namespace during the run "
        "(datagrams the kernel dropped because a socket's receive buffer was full).",
        "- *floor*: `examples/bench_floor.rs`, one thread answering DISCOVER/REQUEST with fixed OFFER/ACK, "
        "no state.",
        "- *calloutd+noop*: the noop callout (fixtures/callouts/noop.c, all eight hooks, each does nothing), "
        "SQLite leases; *calloutd*: the same with CalloutEnabled = 0 (no callout).",
        "",
        "## Results",
        "",
        table,
        "",
        "## Ratios",
        "",
        ratios,
        "",
        *bench_lines,
        "",
        *(["## The target point, run again", "",
           "8 000/s with 10 000 clients, the point issue 6 sets its CPU target at: the matrix's run and "
           "the target phase's runs (floor and calloutd+noop alternating), and their medians. One run "
           "of either server varies by 10-30 %, so the target is judged on the medians.", "", target, ""]
          if target else []),
        "## Lease-count scaling",
        "",
        meta.get("scale_note", ""),
        "",
        scale,
        "",
        "## Against the targets of issue 6 (reported, not asserted anywhere)",
        "",
        *(target_lines or ["- (not enough runs completed to compare)"]),
        "",
    ]
    if isolate:
        doc += ["## The cost of `--isolate` (issue 11)", "", *isolate, ""]
    if runs and all(r["load"] == ISOLATE_LOAD for r in runs):
        # Only the isolate phase ran: its section and the machine, not empty tables.
        doc = [
            "# calloutd benchmark results: the cost of `--isolate`",
            "",
            f"Written by `scripts/bench.sh` (BENCH_PHASES=isolate) on {meta.get('date', '?')}.",
            "",
            f"- machine: {meta.get('nproc', '?')} CPUs, {meta.get('cpu', '?')}, kernel {meta.get('kernel', '?')}",
            f"- load average before the run: {meta.get('load_before', '?')}; after: {meta.get('load_after', '?')}",
            f"- calloutd: {meta.get('calloutd', '?')} (release build); Kea {meta.get('kea', '?')}; "
            f"perfdhcp {meta.get('perfdhcp', '?')}; calloutd audit log: {meta.get('audit', '?')}",
            "",
            *isolate,
            "",
        ]
    if notes:
        doc += ["## Notes", "", notes, ""]
    results.write_text("\n".join(doc))
    print(f"\nwritten: {results}")


if __name__ == "__main__":
    main()
