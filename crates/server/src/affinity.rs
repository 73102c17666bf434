//! Worker CPU pinning ([`crate::ServerConfig::pin_workers`]): Linux only; elsewhere, and when the
//! system refuses, workers run unpinned (a pin is an optimisation, never a condition to serve).

/// The CPUs this process may run on, in ascending order (empty where pinning is not supported).
#[cfg(target_os = "linux")]
pub(crate) fn allowed_cpus() -> Vec<usize> {
    use nix::sched::{sched_getaffinity, CpuSet};
    use nix::unistd::Pid;
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
            .collect(),
        Err(error) => {
            tracing::warn!("workers run unpinned: sched_getaffinity failed: {error}");
            Vec::new()
        }
    }
}

/// See the Linux version: no pinning here.
#[cfg(not(target_os = "linux"))]
pub(crate) fn allowed_cpus() -> Vec<usize> {
    Vec::new()
}

/// Pins the calling thread to `cpu`; a failure is logged and the thread runs unpinned.
#[cfg(target_os = "linux")]
pub(crate) fn pin_current_thread(cpu: usize) {
    use nix::sched::{sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let mut set = CpuSet::new();
    let pinned = set
        .set(cpu)
        .and_then(|()| sched_setaffinity(Pid::from_raw(0), &set));
    if let Err(error) = pinned {
        tracing::warn!("a worker runs unpinned: cannot pin it to CPU {cpu}: {error}");
    }
}

/// See the Linux version: no pinning here.
#[cfg(not(target_os = "linux"))]
pub(crate) fn pin_current_thread(_cpu: usize) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_pinned_to_the_cpu_it_is_given() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty(), "this process may run on some CPU");
        let last = *cpus.last().unwrap_or(&0);
        let pinned = std::thread::spawn(move || {
            pin_current_thread(last);
            allowed_cpus()
        })
        .join()
        .unwrap();
        assert_eq!(pinned, vec![last]);
    }
}
