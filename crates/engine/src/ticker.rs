//! A thread that runs a task at a fixed interval until it is stopped: the audit log's flusher and
//! the lease store's checkpointer.

use std::io;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// A running ticker thread; stopping (or dropping) it wakes the thread and waits for it to end.
pub(crate) struct Ticker {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Runs `task` every `interval` (the first run one interval from now) on a thread named `name`.
    pub(crate) fn start(
        name: &str,
        interval: Duration,
        mut task: impl FnMut() + Send + 'static,
    ) -> io::Result<Ticker> {
        let stop: Arc<(Mutex<bool>, Condvar)> = Arc::default();
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    let (stopped, wake) = &*stop;
                    let mut guard = stopped.lock().unwrap_or_else(PoisonError::into_inner);
                    while !*guard {
                        guard = wake
                            .wait_timeout(guard, interval)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                        if !*guard {
                            task();
                        }
                    }
                })?
        };
        Ok(Ticker {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it; the task does not run again.
    pub(crate) fn stop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn runs_every_interval_and_never_after_stop() {
        let runs = Arc::new(AtomicUsize::new(0));
        let mut ticker = {
            let runs = Arc::clone(&runs);
            Ticker::start("test-ticker", Duration::from_millis(10), move || {
                runs.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap()
        };
        std::thread::sleep(Duration::from_millis(200));
        ticker.stop();
        let seen = runs.load(Ordering::SeqCst);
        assert!(seen >= 3, "ran {seen} times in 200 ms at 10 ms");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(runs.load(Ordering::SeqCst), seen, "ran after stop");
    }
}
