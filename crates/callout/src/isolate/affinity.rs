//! The host thread of a slot runs on the CPU its caller is pinned to (a server worker with
//! `pin_workers`): a hook call is then a switch between two threads on one CPU, with no wake-up
//! of another CPU, which on an idle virtual machine costs the most of a round trip
//! (docs/hooks.md section 8.4, "One CPU per call"). Linux only; elsewhere nothing is pinned.

use super::shm::NOT_PINNED;
#[cfg(unix)]
use std::cell::Cell;

#[cfg(unix)]
thread_local! {
    /// [`caller_cpu`]'s answer for this thread, once known.
    static CALLER_CPU: Cell<Option<u32>> = const { Cell::new(None) };
}

/// The CPU the calling thread is pinned to (its affinity is exactly one CPU), or [`NOT_PINNED`].
/// Read once per thread (the server pins a worker before its first hook call) and kept up to
/// date by [`pin_caller_here`]. (Only the Unix server calls an isolated host.)
#[cfg(unix)]
pub(crate) fn caller_cpu() -> u32 {
    CALLER_CPU.with(|known| {
        known.get().unwrap_or_else(|| {
            let cpu = pinned_cpu();
            known.set(Some(cpu));
            cpu
        })
    })
}

/// Pins the calling thread to the CPU it runs on until the guard is dropped, so that the host
/// thread serving its hook calls moves there too (docs/hooks.md section 8.4): for a single thread
/// that calls an isolated callout, such as `calloutd test`'s runner. Linux only; elsewhere, or if
/// the system refuses, nothing changes.
pub fn pin_caller_here() -> CallerPin {
    #[cfg(target_os = "linux")]
    {
        use nix::sched::{sched_getaffinity, sched_getcpu, sched_setaffinity, CpuSet};
        use nix::unistd::Pid;
        let me = Pid::from_raw(0);
        let (Ok(previous), Ok(cpu)) = (sched_getaffinity(me), sched_getcpu()) else {
            return CallerPin { previous: None };
        };
        let mut set = CpuSet::new();
        if set.set(cpu).is_err() || sched_setaffinity(me, &set).is_err() {
            return CallerPin { previous: None };
        }
        CALLER_CPU.with(|known| known.set(u32::try_from(cpu).ok()));
        CallerPin {
            previous: Some(previous),
        }
    }
    #[cfg(not(target_os = "linux"))]
    CallerPin {}
}

/// The pin of [`pin_caller_here`]: dropping it gives the thread back the CPUs it had.
#[must_use = "the thread is unpinned when this is dropped"]
#[derive(Debug)]
pub struct CallerPin {
    #[cfg(target_os = "linux")]
    previous: Option<nix::sched::CpuSet>,
}

impl Drop for CallerPin {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(previous) = self.previous.take() {
            let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &previous);
            CALLER_CPU.with(|known| known.set(None));
        }
    }
}

#[cfg(target_os = "linux")]
fn pinned_cpu() -> u32 {
    use nix::sched::{sched_getaffinity, CpuSet};
    use nix::unistd::Pid;
    let Ok(set) = sched_getaffinity(Pid::from_raw(0)) else {
        return NOT_PINNED;
    };
    let mut cpus = (0..CpuSet::count()).filter(|&cpu| set.is_set(cpu).unwrap_or(false));
    match (cpus.next(), cpus.next()) {
        (Some(cpu), None) => u32::try_from(cpu).unwrap_or(NOT_PINNED),
        _ => NOT_PINNED,
    }
}

#[cfg(all(unix, not(target_os = "linux")))]
fn pinned_cpu() -> u32 {
    NOT_PINNED
}

/// A host thread's side: moves the thread to its caller's CPU when that changes.
#[derive(Debug, Default)]
pub(crate) struct Follower {
    /// The CPU this thread is pinned to now, if any.
    on: Option<u32>,
    /// The affinity the thread started with, to return to when a caller is not pinned.
    #[cfg(target_os = "linux")]
    start: Option<nix::sched::CpuSet>,
}

impl Follower {
    /// Runs this thread on `cpu` (a [`caller_cpu`] value) from now on; [`NOT_PINNED`] lets it run
    /// anywhere it could at the start. A refusal is not retried for the same CPU.
    pub(crate) fn follow(&mut self, cpu: u32) {
        let wanted = (cpu != NOT_PINNED).then_some(cpu);
        if wanted == self.on {
            return;
        }
        self.on = wanted;
        #[cfg(target_os = "linux")]
        self.apply(wanted);
    }

    /// Whether this thread runs on its caller's CPU now.
    pub(crate) fn following(&self) -> bool {
        self.on.is_some()
    }

    #[cfg(target_os = "linux")]
    fn apply(&mut self, wanted: Option<u32>) {
        use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
        use nix::unistd::Pid;
        let me = Pid::from_raw(0);
        if self.start.is_none() {
            self.start = sched_getaffinity(me).ok();
        }
        let set = match wanted {
            Some(cpu) => {
                let mut set = CpuSet::new();
                if set.set(cpu as usize).is_err() {
                    return;
                }
                set
            }
            None => match self.start {
                Some(set) => set,
                None => return,
            },
        };
        // Not fatal: the call is served on whatever CPU this thread runs on.
        let _ = sched_setaffinity(me, &set);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;

    fn allowed() -> Vec<usize> {
        let set = sched_getaffinity(Pid::from_raw(0)).unwrap();
        (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap())
            .collect()
    }

    #[test]
    fn a_thread_pinned_to_one_cpu_reports_it_and_others_report_not_pinned() {
        let cpus = allowed();
        let last = *cpus.last().unwrap();
        let pinned = std::thread::spawn(move || {
            let mut set = CpuSet::new();
            set.set(last).unwrap();
            sched_setaffinity(Pid::from_raw(0), &set).unwrap();
            caller_cpu()
        });
        assert_eq!(pinned.join().unwrap(), last as u32);
        let free = std::thread::spawn(caller_cpu).join().unwrap();
        let expected = if cpus.len() == 1 {
            last as u32
        } else {
            NOT_PINNED
        };
        assert_eq!(free, expected);
    }

    #[test]
    fn a_caller_pin_holds_the_thread_on_one_cpu_until_dropped() {
        std::thread::spawn(|| {
            let start = allowed();
            let pin = pin_caller_here();
            let here = allowed();
            assert_eq!(here.len(), 1, "pinned to one CPU: {here:?}");
            assert_eq!(caller_cpu(), here[0] as u32);
            drop(pin);
            assert_eq!(allowed(), start);
            let expected = if start.len() == 1 {
                start[0] as u32
            } else {
                NOT_PINNED
            };
            assert_eq!(caller_cpu(), expected);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_follower_moves_to_its_callers_cpu_and_back() {
        std::thread::spawn(|| {
            let start = allowed();
            let last = *start.last().unwrap();
            let mut follower = Follower::default();
            follower.follow(last as u32);
            assert_eq!(allowed(), vec![last]);
            follower.follow(NOT_PINNED);
            assert_eq!(allowed(), start);
        })
        .join()
        .unwrap();
    }
}
