//! The hook-call trace (JSON Lines) and per-hook statistics.
//!
//! Trace schema (one JSON object per line, one line per hook call that reached the DLL; stable):
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `seq` | number | 1, 2, 3... in the order lines were written |
//! | `hook` | string | `Control`, `NewPkt`, `HandleOptions`, `PktDrop`, `PktSend`, `AddressDel`, `AddressOffer`, `DeleteClient` |
//! | `code` | number or null | the control / drop / prob / give code passed, where the hook has one (`PktSend`: `DHCP_SEND_PACKET`) |
//! | `ip` | string or null | the `IpAddress` argument as a dotted quad |
//! | `alt` | string or null | the `AltAddress` argument (AddressDel, AddressOffer) |
//! | `xid` | number or null | the DHCP transaction id (packet bytes 4..8, big-endian) of the packet passed in |
//! | `locks` | array of strings | server locks held during the call: `[]`, `["lease"]` or `["service"]` |
//! | `thread` | number | a small stable id of the calling thread (1, 2, ...) |
//! | `ret` | number | the DWORD the hook returned (recorded, otherwise ignored) |
//! | `dur_us` | number | wall time of the call in microseconds |
//! | `ts_us` | number | when the call started, in microseconds since the process's first hook call (monotonic clock): with `dur_us` it shows which calls overlapped |
//! | `fault` | string | only when calloutd detected a DLL fault during the call |
//! | `misbehaviour` | array of objects | only when the call showed misbehaviour: each has `kind` (`slow-hook`, `wrote-past-buffer`, `bad-size`, `wrote-read-only-packet`, `leaked-context`, `crash`, `hang`), `hook`, `xid`, `chaddr` and a one-line `explanation` |

use crate::misbehaviour::Misbehaviour;
use crate::{HeldLocks, HookName};
use serde::{Deserialize, Serialize};
use std::io::{self, BufWriter, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

/// One line of the trace (see the module doc for the schema).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceRecord {
    /// Position in the trace, assigned by the sink.
    pub seq: u64,
    /// Which hook was called.
    pub hook: HookName,
    /// The numeric code argument, where the hook has one.
    pub code: Option<u32>,
    /// The `IpAddress` argument.
    pub ip: Option<Ipv4Addr>,
    /// The `AltAddress` argument.
    pub alt: Option<Ipv4Addr>,
    /// The transaction id of the packet passed in.
    pub xid: Option<u32>,
    /// Server locks held during the call.
    pub locks: HeldLocks,
    /// Small stable id of the calling thread.
    pub thread: u32,
    /// The hook's return value.
    pub ret: u32,
    /// Duration of the call in microseconds.
    pub dur_us: u64,
    /// Start of the call, microseconds since [`trace_epoch`] (monotonic).
    pub ts_us: u64,
    /// A DLL fault calloutd detected during this call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// Misbehaviour calloutd saw in this call (none on most lines).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub misbehaviour: Vec<Misbehaviour>,
}

/// The instant trace timestamps count from: the first time any caller asks (the first hook call).
pub fn trace_epoch() -> std::time::Instant {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

/// A small stable id for the current thread (1 for the first thread that asks, then 2, ...).
pub fn thread_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    thread_local! {
        static ID: u32 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    ID.with(|id| *id)
}

struct SinkState {
    out: Option<BufWriter<Box<dyn Write + Send>>>,
    seq: u64,
    /// Records kept in memory for [`TraceSink::take_kept`] (`calloutd test`, replay), if asked.
    kept: Option<Vec<TraceRecord>>,
}

/// Writes [`TraceRecord`]s as JSON Lines through a buffered writer behind a mutex; flushed by
/// [`TraceSink::flush`] and on drop. Write errors are logged once and otherwise ignored (a full disk
/// must not stop the DHCP service).
pub struct TraceSink {
    state: Mutex<SinkState>,
    write_failed: AtomicBool,
}

impl std::fmt::Debug for TraceSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceSink").finish_non_exhaustive()
    }
}

impl TraceSink {
    /// Creates (truncates) `path` and traces into it (`--trace FILE`).
    pub fn create(path: &Path) -> io::Result<TraceSink> {
        let file = std::fs::File::create(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create trace file {}: {e}", path.display()),
            )
        })?;
        Ok(TraceSink::to_writer(file))
    }

    /// Traces into any writer (tests, stdout).
    pub fn to_writer(writer: impl Write + Send + 'static) -> TraceSink {
        TraceSink::build(Some(Box::new(writer)), false)
    }

    /// Keeps every record in memory until [`TraceSink::take_kept`], and also writes it to
    /// `writer` when there is one (the harness checks hook calls and still honours `--trace`).
    pub fn keeping(writer: Option<Box<dyn Write + Send>>) -> TraceSink {
        TraceSink::build(writer, true)
    }

    fn build(writer: Option<Box<dyn Write + Send>>, keep: bool) -> TraceSink {
        TraceSink {
            state: Mutex::new(SinkState {
                out: writer.map(|w| BufWriter::with_capacity(64 * 1024, w)),
                seq: 0,
                kept: keep.then(Vec::new),
            }),
            write_failed: AtomicBool::new(false),
        }
    }

    /// The records kept since the last call (empty unless made by [`TraceSink::keeping`]).
    pub fn take_kept(&self) -> Vec<TraceRecord> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.kept.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Assigns the next `seq` to `record` and appends it as one line.
    pub fn record(&self, record: &mut TraceRecord) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.seq += 1;
        record.seq = state.seq;
        if let Some(kept) = &mut state.kept {
            kept.push(record.clone());
        }
        if let Some(out) = &mut state.out {
            let result = serde_json::to_writer(&mut *out, record)
                .map_err(io::Error::from)
                .and_then(|()| out.write_all(b"\n"));
            if let Err(e) = result {
                self.note_failure(&e);
            }
        }
    }

    /// Writes buffered lines to the underlying writer.
    pub fn flush(&self) -> io::Result<()> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match &mut state.out {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }

    fn note_failure(&self, error: &io::Error) {
        if !self.write_failed.swap(true, Ordering::Relaxed) {
            tracing::error!(
                "cannot write the hook trace: {error}; further trace errors are not logged"
            );
        }
    }
}

impl Drop for TraceSink {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            self.note_failure(&e);
        }
    }
}

#[derive(Debug, Default)]
struct HookCounter {
    calls: AtomicU64,
    total_us: AtomicU64,
    max_us: AtomicU64,
    faults: AtomicU64,
}

/// Per-hook call statistics in atomics: updated on every call without a lock, read at any time
/// (e.g. by the stats endpoint).
#[derive(Debug, Default)]
pub struct HookStats {
    counters: [HookCounter; 8],
}

/// A snapshot of one hook's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookStat {
    /// The hook.
    pub hook: HookName,
    /// Calls that reached the DLL.
    pub calls: u64,
    /// Sum of call durations, microseconds.
    pub total_us: u64,
    /// Longest call, microseconds.
    pub max_us: u64,
    /// Calls in which calloutd detected a DLL fault.
    pub faults: u64,
}

impl HookStats {
    /// Counts one call of `hook` that took `dur_us`.
    pub fn record(&self, hook: HookName, dur_us: u64, fault: bool) {
        let c = &self.counters[hook.index()];
        c.calls.fetch_add(1, Ordering::Relaxed);
        c.total_us.fetch_add(dur_us, Ordering::Relaxed);
        c.max_us.fetch_max(dur_us, Ordering::Relaxed);
        if fault {
            c.faults.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The current numbers of one hook.
    pub fn get(&self, hook: HookName) -> HookStat {
        let c = &self.counters[hook.index()];
        HookStat {
            hook,
            calls: c.calls.load(Ordering::Relaxed),
            total_us: c.total_us.load(Ordering::Relaxed),
            max_us: c.max_us.load(Ordering::Relaxed),
            faults: c.faults.load(Ordering::Relaxed),
        }
    }

    /// The current numbers of all eight hooks, in callout-table order.
    pub fn snapshot(&self) -> Vec<HookStat> {
        HookName::ALL.iter().map(|h| self.get(*h)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A writer whose bytes the test can read after the sink is gone.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn sample(hook: HookName) -> TraceRecord {
        TraceRecord {
            seq: 0,
            hook,
            code: Some(0xB),
            ip: Some(Ipv4Addr::new(192, 168, 0, 1)),
            alt: None,
            xid: Some(0x1234_5678),
            locks: HeldLocks::Lease,
            thread: 3,
            ret: 0,
            dur_us: 17,
            ts_us: 0,
            fault: None,
            misbehaviour: Vec::new(),
        }
    }

    #[test]
    fn records_are_json_lines_with_the_documented_fields_and_sequence() {
        let out = Shared::default();
        let sink = TraceSink::to_writer(out.clone());
        sink.record(&mut sample(HookName::PktDrop));
        sink.record(&mut sample(HookName::AddressOffer));
        drop(sink);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(
            first,
            serde_json::json!({"seq":1,"hook":"PktDrop","code":11,"ip":"192.168.0.1","alt":null,
                "xid":0x1234_5678u32,"locks":["lease"],"thread":3,"ret":0,"dur_us":17,"ts_us":0})
        );
        let second: TraceRecord = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(second.seq, 2);
        assert_eq!(second.hook, HookName::AddressOffer);
    }

    #[test]
    fn stats_count_calls_total_and_max() {
        let stats = HookStats::default();
        stats.record(HookName::NewPkt, 5, false);
        stats.record(HookName::NewPkt, 9, true);
        let s = stats.get(HookName::NewPkt);
        assert_eq!((s.calls, s.total_us, s.max_us, s.faults), (2, 14, 9, 1));
        assert_eq!(stats.get(HookName::Control).calls, 0);
        assert_eq!(stats.snapshot().len(), 8);
    }

    #[test]
    fn thread_ids_are_stable_per_thread_and_distinct_across_threads() {
        let here = thread_id();
        assert_eq!(here, thread_id());
        let other = std::thread::spawn(thread_id).join().unwrap();
        assert_ne!(here, other);
    }
}
