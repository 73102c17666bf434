//! The cost of `--isolate` per hook call: NewPkt on a 300-byte DISCOVER-sized packet, called
//! through the in-process `Callout` and through the isolated host (the real `calloutd` binary in
//! its host mode), with the `noop` fixture callout; then the same host on the pipe doorbells of PE
//! hosts, and `noop.dll` under wine (calloutd.exe's host mode, when wine and calloutd.exe are
//! there). Prints p50/p99/p99.9 of each in microseconds, and the CPU time per call: this
//! process's, plus the host process's for the isolated calls (on a machine shared with other work,
//! the steadier figure).
//!
//! `cargo bench --bench hook_roundtrip` (or `-- N` for N calls per mode; default 50 000).
//! A benchmark, not a test: the figures depend on the machine and its load (see bench/results.md).

#[cfg(unix)]
use std::net::Ipv4Addr;
#[cfg(unix)]
use std::time::{Duration, Instant};

#[cfg(unix)]
use calloutd_callout::isolate::pe::PeHost;
#[cfg(unix)]
use calloutd_callout::isolate::{IsolateOptions, IsolatedCallout};
#[cfg(unix)]
use calloutd_callout::{load_callout, CalloutConfig, HeldLocks, LoadOrder};

/// CPU time of a process clock (this process's, or the host's from `clock_getcpuclockid`).
#[cfg(unix)]
fn cpu_of(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a writable timespec; `clock` is a valid clock id.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The CPU clocks of this process's children (the isolated host).
#[cfg(unix)]
fn child_clocks() -> Vec<libc::clockid_t> {
    let mut clocks = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return clocks;
    };
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let mut clock: libc::clockid_t = 0;
            // SAFETY: `pid` is our child; `clock` is writable.
            if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } == 0 {
                clocks.push(clock);
            }
        }
    }
    clocks
}

/// CPU time so far of this process and of `children`.
#[cfg(unix)]
fn cpu_now(children: &[libc::clockid_t]) -> Duration {
    cpu_of(libc::CLOCK_PROCESS_CPUTIME_ID) + children.iter().map(|c| cpu_of(*c)).sum::<Duration>()
}

#[cfg(unix)]
fn percentiles(name: &str, mut samples: Vec<Duration>, cpu: Duration) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q) as usize).min(samples.len() - 1);
        samples[i].as_secs_f64() * 1e6
    };
    println!(
        "{name:<12} calls {:>7}  p50 {:>7.2} us  p99 {:>7.2} us  p99.9 {:>8.2} us  cpu/call {:>6.2} us",
        samples.len(),
        at(0.50),
        at(0.99),
        at(0.999),
        cpu.as_secs_f64() * 1e6 / samples.len().max(1) as f64
    );
}

#[cfg(unix)]
fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(50_000);
    let noop = calloutd_fixtures::library("noop").expect("build the noop fixture");
    let config = CalloutConfig {
        dlls: vec![noop.display().to_string()],
        enabled: Some(1),
        base_dir: None,
        order: LoadOrder::Alphabetical,
        strict_permissions: false,
    };
    let packet: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let ip = Ipv4Addr::new(198, 18, 0, 1);

    let in_process = load_callout(&config).callout.expect("noop loads");
    let mut samples = Vec::with_capacity(n);
    let cpu0 = cpu_now(&[]);
    for _ in 0..n {
        let mut p = packet.clone();
        let mut ctx = 0usize;
        let t = Instant::now();
        let _ = in_process.new_pkt(&mut p, ip, &mut ctx, HeldLocks::None);
        samples.push(t.elapsed());
    }
    percentiles("in-process", samples, cpu_now(&[]) - cpu0);

    let calloutd = std::path::PathBuf::from(env!("CARGO_BIN_EXE_calloutd"));
    let options = IsolateOptions::new(calloutd.clone(), vec!["callout-host".into()]);
    isolated("isolated", &config, options, n, &packet, ip);

    // The pipe-doorbell transport of PE hosts, with the native host: its cost without wine.
    let mut options = IsolateOptions::new(calloutd.clone(), vec!["callout-host".into()]);
    options.pe_host = Some(PeHost {
        launcher: Vec::new(),
        program: calloutd.clone(),
        windows_paths: false,
    });
    isolated("pipes", &config, options, n, &packet, ip);

    // noop.dll under wine (calloutd.exe from $CALLOUTD_WINDOWS_HOST or next to calloutd).
    match calloutd_fixtures::build_windows() {
        Ok(Some(dir)) => {
            let config = CalloutConfig {
                dlls: vec![dir.join("noop.dll").display().to_string()],
                ..config
            };
            let options = IsolateOptions::new(calloutd, vec!["callout-host".into()]);
            isolated("wine (PE)", &config, options, n, &packet, ip);
        }
        _ => println!("wine (PE)    skipped: no mingw-w64 to build noop.dll"),
    }
}

/// NewPkt round trips through an isolated host started with `options`.
#[cfg(unix)]
fn isolated(
    name: &str,
    config: &CalloutConfig,
    options: IsolateOptions,
    n: usize,
    packet: &[u8],
    ip: Ipv4Addr,
) {
    let loaded = IsolatedCallout::load(config, options);
    let Some(isolated) = loaded.callout else {
        println!("{name:<12} skipped: {}", loaded.report.summary());
        return;
    };
    let host = child_clocks();
    let mut samples = Vec::with_capacity(n);
    let cpu0 = cpu_now(&host);
    for _ in 0..n {
        let mut p = packet.to_vec();
        let mut ctx = 0usize;
        let t = Instant::now();
        let _ = isolated.new_pkt(&mut p, ip, &mut ctx, HeldLocks::None);
        samples.push(t.elapsed());
        // End the packet, as the engine does (releases its handle; not timed).
        let _ = isolated.pkt_drop(
            &mut p,
            calloutd_callout::DropReason::Processed,
            ip,
            ctx,
            HeldLocks::None,
        );
    }
    // Per call: NewPkt and the untimed PktDrop are two calls each.
    let cpu = (cpu_now(&host) - cpu0) / 2;
    percentiles(name, samples, cpu);
}

/// Unix only: --isolate (the isolated host) is Linux-only.
#[cfg(not(unix))]
fn main() {
    eprintln!("hook_roundtrip: Unix only: --isolate (the isolated host) is Linux-only.");
}
