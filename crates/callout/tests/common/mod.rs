//! Shared helpers of the integration tests: fixture copies, env-var serialization, DHCP packets,
//! trace-file reading.
#![allow(dead_code)]

use calloutd_callout::{load_callout, CalloutConfig, LoadOrder, LoadResult};
use calloutd_fixtures as fixtures;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Env vars are process-wide and the C callouts read them in their entry point: every load that
/// depends on env vars holds this lock while setting them and loading.
static ENV_LOCK: Mutex<()> = Mutex::new(());

/// Every env var a fixture reads; cleared before each load so tests don't leak into each other.
const FIXTURE_VARS: &[&str] = &[
    "CALLOUT_TRACE_FILE",
    "CALLOUT_MACFILTER_PREFIX",
    "CALLOUT_FAULTY_ENTRY",
    "CALLOUT_FAULTY_SLEEP_HOOK",
    "CALLOUT_FAULTY_SLEEP_MS",
    "CALLOUT_FAULTY_OVERRUN_HOOK",
    "CALLOUT_FAULTY_OVERSIZE_HOOK",
    "CALLOUT_FAULTY_SCRIBBLE_HOOK",
    "CALLOUT_FAULTY_LEAK_CONTEXT",
];

/// Copies fixture `name` into `dir` as `file_name` (a distinct file is a distinct loaded
/// instance with its own globals) and returns the copy's path.
pub fn copy_fixture(dir: &Path, name: &str, file_name: &str) -> PathBuf {
    let source = fixtures::library(name).unwrap_or_else(|e| panic!("building fixtures: {e}"));
    let target = dir.join(file_name);
    std::fs::copy(&source, &target).unwrap();
    target
}

/// Copies each `(fixture, file name)` pair into `dir` with [`copy_fixture`]; the copies' paths in
/// the same order.
pub fn copy_fixtures<const N: usize>(dir: &Path, fixtures: [(&str, &str); N]) -> [PathBuf; N] {
    fixtures.map(|(name, file_name)| copy_fixture(dir, name, file_name))
}

/// Loads with `vars` set (and every other fixture var unset) for the duration of the load.
pub fn load_with_env(config: &CalloutConfig, vars: &[(&str, &str)]) -> LoadResult {
    let _guard = ENV_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    for var in FIXTURE_VARS {
        std::env::remove_var(var);
    }
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
    let result = load_callout(config);
    for (k, _) in vars {
        std::env::remove_var(k);
    }
    result
}

/// A config with CalloutEnabled = 1.
pub fn enabled(dlls: &[&Path], order: LoadOrder) -> CalloutConfig {
    CalloutConfig {
        dlls: dlls.iter().map(|p| p.display().to_string()).collect(),
        enabled: Some(1),
        base_dir: None,
        order,
        strict_permissions: false,
    }
}

/// The JSON lines of a trace file.
pub fn read_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// Lines of `path` whose "dll" is `dll` and "hook" is `hook`.
pub fn lines_for(path: &Path, dll: &str, hook: &str) -> Vec<serde_json::Value> {
    read_lines(path)
        .into_iter()
        .filter(|v| v["dll"] == dll && v["hook"] == hook)
        .collect()
}

/// Transaction id used by [`Packet`] unless changed.
pub const XID: u32 = 0x3903_F326;

/// A BOOTP/DHCP message builder (no IP/UDP headers).
pub struct Packet {
    pub bytes: Vec<u8>,
}

impl Packet {
    /// A BOOTREQUEST with `chaddr`, the magic cookie and message type `msg_type`.
    pub fn request(msg_type: u8, chaddr: [u8; 6]) -> Packet {
        let mut bytes = vec![0u8; 236];
        bytes[0] = 1; // BOOTREQUEST
        bytes[1] = 1; // Ethernet
        bytes[2] = 6;
        bytes[4..8].copy_from_slice(&XID.to_be_bytes());
        bytes[28..34].copy_from_slice(&chaddr);
        bytes.extend_from_slice(&[99, 130, 83, 99]);
        let mut p = Packet { bytes };
        p.option(53, &[msg_type]);
        p
    }

    /// Appends an option.
    pub fn option(&mut self, code: u8, data: &[u8]) -> &mut Packet {
        self.bytes.push(code);
        self.bytes.push(data.len() as u8);
        self.bytes.extend_from_slice(data);
        self
    }

    /// Appends END and returns the bytes.
    pub fn finish(&mut self) -> Vec<u8> {
        self.bytes.push(255);
        self.bytes.clone()
    }
}

/// Options of a finished packet as (code, data) pairs, in order.
pub fn options_of(packet: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 240;
    while i < packet.len() {
        match packet[i] {
            0 => i += 1,
            255 => {
                out.push((255, Vec::new()));
                break;
            }
            code => {
                let len = packet[i + 1] as usize;
                out.push((code, packet[i + 2..i + 2 + len].to_vec()));
                i += 2 + len;
            }
        }
    }
    out
}
