//! The bounded queue between the receivers and the workers, and the set of datagrams in flight
//! (queued or being processed) that duplicate detection looks at. One mutex guards both, so "is a copy
//! in flight?" and "is there room?" are answered together with the push.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use calloutd_engine::Datagram;

use crate::duplicate::DuplicateKey;

/// One received datagram on its way to a worker.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) datagram: Datagram,
    /// Index of the socket that received it (replies leave through it).
    pub(crate) socket: usize,
    /// The receiving interface, for broadcast replies.
    pub(crate) ifindex: i32,
    pub(crate) received_at: Instant,
    pub(crate) key: DuplicateKey,
}

/// What [`JobQueue::push`] did with a job; a refused job comes back so the caller can still run it
/// through the engine with the drop reason.
#[derive(Debug)]
pub(crate) enum Pushed {
    Queued,
    /// A copy is queued or being processed.
    Duplicate(Box<Job>),
    /// The queue is at capacity.
    Full(Box<Job>),
}

#[derive(Debug, Default)]
struct Inner {
    jobs: VecDeque<Job>,
    in_flight: HashSet<DuplicateKey>,
    /// Workers waiting for a job: a push only signals the condvar when one is (saves a syscall per
    /// packet while every worker is busy).
    idle_workers: usize,
    closed: bool,
}

#[derive(Debug)]
pub(crate) struct JobQueue {
    inner: Mutex<Inner>,
    ready: Condvar,
    capacity: usize,
    /// Mirrors `jobs.len()` for the counters, so reading it takes no lock.
    depth: AtomicUsize,
    /// Jobs taken by a worker and not finished yet.
    in_progress: AtomicUsize,
}

impl JobQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        JobQueue {
            inner: Mutex::new(Inner::default()),
            ready: Condvar::new(),
            capacity,
            depth: AtomicUsize::new(0),
            in_progress: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing in `Inner` can be left half-updated by a panic, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `job` unless a copy is in flight or the queue is full.
    pub(crate) fn push(&self, job: Job) -> Pushed {
        let mut inner = self.lock();
        if inner.in_flight.contains(&job.key) {
            return Pushed::Duplicate(Box::new(job));
        }
        if inner.jobs.len() >= self.capacity {
            return Pushed::Full(Box::new(job));
        }
        inner.in_flight.insert(job.key);
        inner.jobs.push_back(job);
        self.depth.store(inner.jobs.len(), Relaxed);
        let wake = inner.idle_workers > 0;
        drop(inner);
        if wake {
            self.ready.notify_one();
        }
        Pushed::Queued
    }

    /// Marks `finished` (the worker's previous job) done, then takes the next job, waiting for one.
    /// `None` once the queue is closed and empty.
    pub(crate) fn next(&self, finished: Option<DuplicateKey>) -> Option<Job> {
        let mut inner = self.lock();
        if let Some(key) = finished {
            inner.in_flight.remove(&key);
            self.in_progress.fetch_sub(1, Relaxed);
        }
        loop {
            if let Some(job) = inner.jobs.pop_front() {
                self.depth.store(inner.jobs.len(), Relaxed);
                self.in_progress.fetch_add(1, Relaxed);
                return Some(job);
            }
            if inner.closed {
                return None;
            }
            inner.idle_workers += 1;
            inner = self
                .ready
                .wait(inner)
                .unwrap_or_else(PoisonError::into_inner);
            inner.idle_workers -= 1;
        }
    }

    /// No more pushes will come: workers finish what is queued, then [`JobQueue::next`] returns `None`.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    pub(crate) fn depth(&self) -> usize {
        self.depth.load(Relaxed)
    }

    pub(crate) fn in_progress(&self) -> usize {
        self.in_progress.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::sync::Arc;
    use std::time::Duration;

    fn job(bytes: &[u8]) -> Job {
        Job {
            datagram: Datagram {
                bytes: bytes.to_vec(),
                if_addr: Ipv4Addr::LOCALHOST,
                dst_addr: Ipv4Addr::LOCALHOST,
                peer: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 68),
            },
            socket: 0,
            ifindex: 0,
            received_at: Instant::now(),
            key: DuplicateKey::of(bytes),
        }
    }

    #[test]
    fn duplicates_are_refused_while_queued_or_in_progress_only() {
        let queue = JobQueue::new(4);
        assert!(matches!(queue.push(job(b"a")), Pushed::Queued));
        assert!(matches!(queue.push(job(b"a")), Pushed::Duplicate(_)));
        let taken = queue.next(None).unwrap();
        assert_eq!(queue.in_progress(), 1);
        assert!(matches!(queue.push(job(b"a")), Pushed::Duplicate(_)));
        // Finishing it happens on the next take; afterwards a copy is new again.
        assert!(matches!(queue.push(job(b"b")), Pushed::Queued));
        let second = queue.next(Some(taken.key)).unwrap();
        assert_eq!(second.datagram.bytes, b"b");
        assert!(matches!(queue.push(job(b"a")), Pushed::Queued));
    }

    #[test]
    fn full_queue_refuses_and_reports_depth() {
        let queue = JobQueue::new(2);
        assert!(matches!(queue.push(job(b"1")), Pushed::Queued));
        assert!(matches!(queue.push(job(b"2")), Pushed::Queued));
        assert_eq!(queue.depth(), 2);
        match queue.push(job(b"3")) {
            Pushed::Full(refused) => assert_eq!(refused.datagram.bytes, b"3"),
            other => panic!("expected Full, got {other:?}"),
        }
        queue.next(None).unwrap();
        assert_eq!(queue.depth(), 1);
        assert!(matches!(queue.push(job(b"3")), Pushed::Queued));
    }

    #[test]
    fn close_drains_then_ends_waiting_workers() {
        let queue = Arc::new(JobQueue::new(8));
        let worker = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || {
                let mut taken = Vec::new();
                let mut finished = None;
                while let Some(job) = queue.next(finished.take()) {
                    finished = Some(job.key);
                    taken.push(job.datagram.bytes);
                }
                taken
            })
        };
        queue.push(job(b"x"));
        std::thread::sleep(Duration::from_millis(20));
        queue.push(job(b"y"));
        queue.close();
        let taken = worker.join().unwrap();
        assert_eq!(taken, vec![b"x".to_vec(), b"y".to_vec()]);
    }
}
