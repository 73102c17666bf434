//! How long a thread waited for a CPU: so that a hook call that was only slow because the machine
//! was busy (the calling thread runnable but not running) is not reported as a slow hook
//! (docs/hooks.md section 8.2). Linux's schedstat gives each thread's total time on a run queue;
//! reading it costs a file read, so it is read at most every [`REFRESH`] per thread and on a slow
//! call, and the wait counted against a slow call is all the waiting since the last reading: at
//! most [`REFRESH`] of the time before the call besides the call itself.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// How old a thread's last reading may get before it is read again after a call.
const REFRESH: Duration = Duration::from_millis(10);

thread_local! {
    /// When this thread's run-queue time was last read, and its value.
    static LAST: Cell<Option<(Instant, Duration)>> = const { Cell::new(None) };
}

/// The calling thread's total time runnable but waiting for a CPU, where the system says.
#[cfg(target_os = "linux")]
fn run_queue_time() -> Option<Duration> {
    // "<ns on a CPU> <ns waiting on a run queue> <timeslices>"
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let waiting = text.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    Some(Duration::from_nanos(waiting))
}

#[cfg(not(target_os = "linux"))]
fn run_queue_time() -> Option<Duration> {
    None
}

/// After a call that ended at `now` and took `elapsed`: how long this thread waited for a CPU since
/// its last reading (so during the call, and at most [`REFRESH`] before it), when the call took
/// longer than `threshold`; `None` when it did not or nothing is known. Refreshes the reading when
/// it is older than [`REFRESH`]. (`now` is the caller's: no second clock read per hook call.)
pub(crate) fn waited_for_cpu(
    now: Instant,
    elapsed: Duration,
    threshold: Duration,
) -> Option<Duration> {
    LAST.with(|last| {
        let before = last.get();
        let stale = before.is_none_or(|(at, _)| now.duration_since(at) > REFRESH);
        if elapsed <= threshold && !stale {
            return None;
        }
        let current = run_queue_time()?;
        last.set(Some((now, current)));
        if elapsed <= threshold {
            return None;
        }
        before.map(|(_, then)| current.saturating_sub(then))
    })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_quick_call_reads_nothing_once_a_fresh_reading_exists() {
        std::thread::spawn(|| {
            // The first call reads (no reading yet) but reports nothing for a quick call.
            assert_eq!(
                waited_for_cpu(Instant::now(), Duration::ZERO, Duration::from_millis(1)),
                None
            );
            let first = LAST.with(Cell::get).expect("a reading");
            assert_eq!(
                waited_for_cpu(Instant::now(), Duration::ZERO, Duration::from_millis(1)),
                None
            );
            assert_eq!(
                LAST.with(Cell::get),
                Some(first),
                "not read again while fresh"
            );
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_slow_call_gets_the_run_queue_time_since_the_last_reading() {
        std::thread::spawn(|| {
            // Slow, but with no earlier reading: nothing known to subtract.
            assert_eq!(
                waited_for_cpu(Instant::now(), Duration::from_secs(1), Duration::ZERO),
                None
            );
            // Two busy threads pinned to this thread's CPU make it wait for the CPU while it
            // spins for 30 ms of wall time.
            let cpu = nix::sched::sched_getcpu().unwrap();
            let mut one = nix::sched::CpuSet::new();
            one.set(cpu).unwrap();
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &one).unwrap();
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let hogs: Vec<_> = (0..2)
                .map(|_| {
                    let stop = stop.clone();
                    std::thread::spawn(move || {
                        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &one).unwrap();
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            std::hint::spin_loop();
                        }
                    })
                })
                .collect();
            let started = Instant::now();
            while started.elapsed() < Duration::from_millis(30) {
                std::hint::spin_loop();
            }
            let elapsed = started.elapsed();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            for hog in hogs {
                hog.join().unwrap();
            }
            let waited = waited_for_cpu(Instant::now(), elapsed, Duration::ZERO)
                .expect("a reading to compare");
            // Sharing one CPU three ways, this thread ran about a third of the time.
            assert!(
                waited >= elapsed / 4,
                "waited {waited:?} of {elapsed:?} for the CPU"
            );
        })
        .join()
        .unwrap();
    }
}
