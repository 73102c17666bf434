//! `calloutd demo`: the whole idea in one command, with no arguments, no root and no network.
//!
//! The build compiled three test callouts (fixtures/callouts: chain, trace, macfilter) and they
//! are embedded in the binary. The demo writes them to a temporary folder with a `.reg` file
//! (CalloutDlls = chain, macfilter, trace: chain loads the other two, as chaining callouts do), a
//! one-scope netsh dump and a scenario, runs the scenario on the virtual network and prints the
//! hook timeline with arguments and locks, then where to go next.

use std::fmt::Write as _;
use std::path::Path;

use calloutd_callout::TraceRecord;

use crate::run::{call_text, run_scenario, RunOptions, ScenarioReport};

const CHAIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/chain.so"));
const TRACE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/trace.so"));
const MACFILTER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/macfilter.so"));

const SCOPES: &str = r#"# The demo's scope: 198.18.0.0/24, ten addresses, one-hour leases.
Dhcp Server \\demo add scope 198.18.0.0 255.255.255.0 "demo" "calloutd demo"
Dhcp Server \\demo Scope 198.18.0.0 set state 1
Dhcp Server \\demo Scope 198.18.0.0 Add iprange 198.18.0.10 198.18.0.19
Dhcp Server \\demo Scope 198.18.0.0 set optionvalue 3 IPADDRESS "198.18.0.1"
Dhcp Server \\demo Scope 198.18.0.0 set optionvalue 51 DWORD "3600"
"#;

const SCENARIO: &str = r#"name = "calloutd demo"
reg = "demo.reg"
scopes = "demo-scope.txt"

[env]
CALLOUT_MACFILTER_PREFIX = "02:00:5e"
CALLOUT_TRACE_FILE = "@DLL_TRACE@"

[clients.laptop]
mac = "02:00:00:00:00:01"
hostname = "laptop"

[clients.blocked]
mac = "02:00:5e:00:00:99"
hostname = "blocked"

[[step]]
client = "laptop"
send = "discover"
expect = { reply = "offer", yiaddr = "198.18.0.10" }

[[step]]
client = "laptop"
send = "request"
expect = { reply = "ack", yiaddr = "198.18.0.10", hooks = [{ hook = "AddressOffer", code = "NEW", lock = "lease" }] }

[[step]]
client = "laptop"
send = "renew"
expect = { reply = "ack", hooks = [{ hook = "AddressOffer", code = "OLD", lock = "lease" }] }

[[step]]
client = "laptop"
send = "release"
expect = { reply = "none", hooks = ["AddressDel(RELEASE)"], lease_count = 0 }

[[step]]
client = "blocked"
send = "discover"
expect = { drop = "callout", not_hooks = ["HandleOptions", "PktSend"] }
"#;

/// Writes the demo's files into `dir` and returns the scenario's path.
fn write_files(dir: &Path) -> std::io::Result<std::path::PathBuf> {
    for (name, bytes) in [
        ("chain.so", CHAIN),
        ("trace.so", TRACE),
        ("macfilter.so", MACFILTER),
    ] {
        std::fs::write(dir.join(name), bytes)?;
    }
    let dlls: Vec<String> = ["chain.so", "macfilter.so", "trace.so"]
        .iter()
        .map(|n| dir.join(n).display().to_string())
        .collect();
    std::fs::write(
        dir.join("demo.reg"),
        calloutd_registry::write_parameters_reg(&dlls, Some(1)),
    )?;
    std::fs::write(dir.join("demo-scope.txt"), SCOPES)?;
    let trace_file = dir.join("dll-trace.jsonl").display().to_string();
    let scenario = dir.join("demo.toml");
    std::fs::write(&scenario, SCENARIO.replace("@DLL_TRACE@", &trace_file))?;
    Ok(scenario)
}

/// One call with its arguments: `AddressOffer(NEW)  ip 198.18.0.1  alt 198.18.0.10  xid ...`.
fn call_line(call: &TraceRecord) -> String {
    let mut line = format!("      {:<22}", call_text(call));
    let ip = call.ip.map(|ip| format!("ip {ip}")).unwrap_or_default();
    let alt = call.alt.map(|alt| format!("alt {alt}")).unwrap_or_default();
    let _ = write!(line, " {ip:<16} {alt:<17}");
    if let Some(xid) = call.xid {
        let _ = write!(line, " xid 0x{xid:08x}");
    }
    let locks = call.locks.names();
    let _ = write!(
        line,
        "  lock: {:<7}  {} us",
        if locks.is_empty() { "none" } else { locks[0] },
        call.dur_us
    );
    for m in &call.misbehaviour {
        let _ = write!(line, "\n        misbehaviour: {m}");
    }
    line
}

/// The timeline: every step and its hook calls.
pub fn timeline(report: &ScenarioReport, start: &[TraceRecord]) -> String {
    let mut out = String::new();
    if !start.is_empty() {
        let _ = writeln!(out, "  0. the service starts");
        for call in start {
            let _ = writeln!(out, "{}", call_line(call));
        }
    }
    for step in &report.steps {
        let mark = if step.failure.is_some() {
            "  FAILED"
        } else {
            ""
        };
        let _ = writeln!(out, "  {}. {}{mark}", step.number, step.summary);
        for call in &step.calls {
            let _ = writeln!(out, "{}", call_line(call));
        }
        if let Some(failure) = &step.failure {
            let _ = writeln!(out, "{failure}");
        }
    }
    out
}

const NEXT: &str = "Where to go next:
  calloutd test SCENARIO.toml...   script clients, admin actions and expectations for your own
                                   callout; exit 0/1/2 and --junit for CI (docs/scenarios.md;
                                   examples in fixtures/scenarios/)
  calloutd replay CAPTURE --reg FILE --scopes FILE
                                   feed a pcap/pcapng from your network through your callout
  calloutd serve --reg FILE --scopes FILE
                                   serve real DHCP with the callout in the loop
                                   (scripts/demo.sh shows it on a real network, as root)";

/// Runs the demo, printing to stdout; exit status 0, or 1 if it went wrong.
pub fn run() -> u8 {
    let dir = match tempfile::Builder::new().prefix("calloutd-demo-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("calloutd demo: cannot create a temporary folder: {e}");
            return 1;
        }
    };
    let scenario = match write_files(dir.path()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "calloutd demo: cannot write to {}: {e}",
                dir.path().display()
            );
            return 1;
        }
    };
    let scenario = match crate::scenario::load(&scenario) {
        Ok(s) => s,
        Err(errors) => {
            eprint!("{}", crate::report::invalid(&errors));
            return 1;
        }
    };
    println!("calloutd demo: the real DHCP engine and real callout DLLs on a virtual network");
    println!("(no root, no sockets, a clock that moves only when told).");
    println!();
    println!("Loaded: chain.so (CalloutDlls), which chains macfilter.so (drops DISCOVER/REQUEST");
    println!("from MACs 02:00:5e:*) and trace.so (sets all eight hooks). Every hook call below is");
    println!("one call into the DLL, with its arguments and the server lock held during it.");
    println!();
    let report = run_scenario(&scenario, &RunOptions::default());
    print!("{}", timeline(&report, &report.start_calls));
    if let Some(e) = &report.setup_error {
        eprintln!("calloutd demo: {e}");
        return 1;
    }
    let dll_lines = std::fs::read_to_string(dir.path().join("dll-trace.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0);
    println!();
    println!("The trace callout also logged {dll_lines} calls to its own file, as a DLL under test would.");
    println!(
        "Locks: AddressOffer, AddressDel and DeleteClient run under the lease lock, Control under"
    );
    println!("the service lock; a slow hook there stalls every worker, and calloutd reports it.");
    println!();
    println!("{NEXT}");
    if report.passed() {
        0
    } else {
        1
    }
}
