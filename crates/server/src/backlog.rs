//! The bounded queue of datagrams waiting for a worker, and the record of datagrams in flight that
//! duplicate detection looks at. One mutex guards both, so "is a copy in flight?" and "is there room?"
//! are answered together with the push.
//!
//! Workers receive datagrams themselves, so the queue only fills when every worker was busy and a
//! backlog built up in the socket (see the crate doc). A datagram is in flight from the moment a worker
//! takes it (or queues it) until its processing finished; a copy that *arrived* (kernel receive time)
//! before the earlier copy finished is a duplicate even if it is read later, which keeps the
//! semantics independent of where the datagram waited.
//!
//! A finished key needs remembering only while a copy that arrived before it finished may still be
//! unread. A socket's queue is first in, first out, so once every socket has been read past a time
//! (a datagram that arrived later was read from it, or a read found it empty), nothing that arrived
//! before that time is left: a finished key is forgotten once every socket is read
//! [`HORIZON_MARGIN`] past its finish. That keeps the record at about the datagrams of the margin
//! instead of those of `memory`, small enough to stay in the CPU's caches.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use calloutd_hooks::Datagram;
// foldhash (randomly seeded per process) instead of SipHash: a claim per datagram hashes its key.
use foldhash::HashMap;

use crate::duplicate::DuplicateKey;

/// One received datagram.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) datagram: Datagram,
    /// Index of the socket that received it (replies leave through it).
    pub(crate) socket: usize,
    /// The receiving interface, for broadcast replies.
    pub(crate) ifindex: i32,
    /// When the kernel received it.
    pub(crate) arrived: Instant,
    pub(crate) key: DuplicateKey,
}

/// What [`Backlog::push`] did with a job; a refused job comes back so the caller can still run it
/// through the engine with the drop reason.
#[derive(Debug)]
pub(crate) enum Pushed {
    Queued,
    /// A copy is in flight.
    Duplicate(Box<Job>),
    /// The queue is at capacity.
    Full(Box<Job>),
}

/// Slack on the read horizon: covers the time between the kernel's receive timestamp and the
/// datagram being in the socket's queue, and a worker that read a datagram but has not claimed it
/// yet.
pub(crate) const HORIZON_MARGIN: Duration = Duration::from_millis(50);

/// The state of a datagram key.
#[derive(Debug, Clone, Copy)]
enum Flight {
    /// Queued or being processed.
    Active,
    /// Finished at this time: copies that arrived earlier are still duplicates.
    Finished(Instant),
}

#[derive(Debug)]
struct Inner {
    jobs: VecDeque<Job>,
    flights: HashMap<DuplicateKey, Flight>,
    /// `flights.len()` after the last prune: pruning again only once it doubled keeps it O(1)
    /// amortized.
    pruned_len: usize,
    /// Per socket: every datagram that arrived before this time has been read from it.
    read_up_to: Vec<Instant>,
}

#[derive(Debug)]
pub(crate) struct Backlog {
    inner: Mutex<Inner>,
    capacity: usize,
    /// How long a finished key is remembered: a copy read later than this is dropped as TIMEOUT anyway.
    memory: Duration,
    /// Mirrors `jobs.len()`, so the workers' "anything queued?" check and the counters take no lock.
    depth: AtomicUsize,
    /// Datagrams being processed now.
    in_progress: AtomicUsize,
}

impl Backlog {
    /// A queue of `capacity` for `sockets` sockets; finished keys are kept at most `memory`.
    pub(crate) fn new(capacity: usize, memory: Duration, sockets: usize) -> Self {
        let started = Instant::now();
        Backlog {
            inner: Mutex::new(Inner {
                jobs: VecDeque::new(),
                flights: HashMap::default(),
                pruned_len: 0,
                read_up_to: vec![started; sockets.max(1)],
            }),
            capacity,
            memory,
            depth: AtomicUsize::new(0),
            in_progress: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing in `Inner` is left half-updated by a panic, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Marks a datagram a worker read from `socket` and is about to process itself as in flight;
    /// `false` if it is a duplicate (then nothing is recorded, and it must not be
    /// [`Backlog::finish`]ed).
    pub(crate) fn claim(&self, key: DuplicateKey, arrived: Instant, socket: usize) -> bool {
        let mut inner = self.lock();
        inner.read_past(socket, arrived);
        if is_duplicate(&inner, &key, arrived) {
            return false;
        }
        inner.flights.insert(key, Flight::Active);
        self.in_progress.fetch_add(1, Relaxed);
        true
    }

    /// Queues a datagram read from a backlog, unless it is a duplicate or the queue is full.
    pub(crate) fn push(&self, job: Job) -> Pushed {
        let mut inner = self.lock();
        inner.read_past(job.socket, job.arrived);
        if is_duplicate(&inner, &job.key, job.arrived) {
            return Pushed::Duplicate(Box::new(job));
        }
        if inner.jobs.len() >= self.capacity {
            return Pushed::Full(Box::new(job));
        }
        inner.flights.insert(job.key, Flight::Active);
        inner.jobs.push_back(job);
        self.depth.store(inner.jobs.len(), Relaxed);
        Pushed::Queued
    }

    /// The oldest queued datagram, now in progress (it stays in flight until [`Backlog::finish`]).
    pub(crate) fn pop(&self) -> Option<Job> {
        if self.depth.load(Relaxed) == 0 {
            return None;
        }
        let mut inner = self.lock();
        let job = inner.jobs.pop_front()?;
        self.depth.store(inner.jobs.len(), Relaxed);
        self.in_progress.fetch_add(1, Relaxed);
        Some(job)
    }

    /// A read found `socket` empty at `at`: everything that arrived before has been read.
    pub(crate) fn emptied(&self, socket: usize, at: Instant) {
        self.lock().read_past(socket, at);
    }

    /// A claimed or popped datagram has been processed.
    pub(crate) fn finish(&self, key: DuplicateKey) {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.flights.insert(key, Flight::Finished(now));
        self.in_progress.fetch_sub(1, Relaxed);
        if inner.flights.len() > 2 * inner.pruned_len + 64 {
            prune(&mut inner, now, self.memory);
        }
    }

    pub(crate) fn depth(&self) -> usize {
        self.depth.load(Relaxed)
    }

    pub(crate) fn in_progress(&self) -> usize {
        self.in_progress.load(Relaxed)
    }
}

impl Inner {
    fn read_past(&mut self, socket: usize, at: Instant) {
        if let Some(read_up_to) = self.read_up_to.get_mut(socket) {
            *read_up_to = (*read_up_to).max(at);
        }
    }
}

/// Forgets keys that finished more than `memory` before `now`, or [`HORIZON_MARGIN`] before every
/// socket was read past.
fn prune(inner: &mut Inner, now: Instant, memory: Duration) {
    let horizon = inner.read_up_to.iter().min().copied();
    let forget_before = horizon
        .and_then(|h| h.checked_sub(HORIZON_MARGIN))
        .into_iter()
        .chain(now.checked_sub(memory))
        .max();
    inner
        .flights
        .retain(|_, flight| match (flight, forget_before) {
            (Flight::Finished(at), Some(before)) => *at >= before,
            _ => true,
        });
    inner.pruned_len = inner.flights.len();
}

fn is_duplicate(inner: &Inner, key: &DuplicateKey, arrived: Instant) -> bool {
    match inner.flights.get(key) {
        Some(Flight::Active) => true,
        Some(Flight::Finished(at)) => arrived < *at,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};

    fn job(bytes: &[u8], arrived: Instant) -> Job {
        Job {
            datagram: Datagram {
                bytes: bytes.to_vec(),
                if_addr: Ipv4Addr::LOCALHOST,
                dst_addr: Ipv4Addr::LOCALHOST,
                peer: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 68),
            },
            socket: 0,
            ifindex: 0,
            arrived,
            key: DuplicateKey::of(bytes),
        }
    }

    #[test]
    fn copies_are_duplicates_while_in_flight_and_if_they_arrived_before_it_finished() {
        let backlog = Backlog::new(4, Duration::from_secs(2), 1);
        let a = DuplicateKey::of(b"a");
        let early = Instant::now();
        assert!(backlog.claim(a, early, 0));
        assert!(!backlog.claim(a, Instant::now(), 0));
        assert!(matches!(
            backlog.push(job(b"a", early)),
            Pushed::Duplicate(_)
        ));
        assert_eq!(backlog.in_progress(), 1);
        backlog.finish(a);
        assert_eq!(backlog.in_progress(), 0);
        // Arrived while the first was in progress, read afterwards: still a duplicate.
        assert!(!backlog.claim(a, early, 0));
        // Arrived after it finished: new.
        assert!(backlog.claim(a, Instant::now(), 0));
    }

    #[test]
    fn full_queue_refuses_and_reports_depth() {
        let backlog = Backlog::new(2, Duration::from_secs(2), 1);
        let now = Instant::now();
        assert!(matches!(backlog.push(job(b"1", now)), Pushed::Queued));
        assert!(matches!(backlog.push(job(b"2", now)), Pushed::Queued));
        assert!(matches!(backlog.push(job(b"2", now)), Pushed::Duplicate(_)));
        assert_eq!(backlog.depth(), 2);
        match backlog.push(job(b"3", now)) {
            Pushed::Full(refused) => assert_eq!(refused.datagram.bytes, b"3"),
            other => panic!("expected Full, got {other:?}"),
        }
        let first = backlog.pop().unwrap();
        assert_eq!(first.datagram.bytes, b"1");
        assert_eq!((backlog.depth(), backlog.in_progress()), (1, 1));
        assert!(matches!(backlog.push(job(b"3", now)), Pushed::Queued));
        // A refused datagram was never in flight.
        backlog.finish(first.key);
        assert!(backlog.claim(DuplicateKey::of(b"4"), now, 0));
    }

    #[test]
    fn finished_keys_are_forgotten_after_the_memory_span() {
        let backlog = Backlog::new(2, Duration::ZERO, 1);
        let long_ago = Instant::now();
        let keys: Vec<DuplicateKey> = (0..200u32)
            .map(|n| DuplicateKey::of(&n.to_be_bytes()))
            .collect();
        for key in &keys {
            assert!(backlog.claim(*key, Instant::now(), 0));
            backlog.finish(*key);
        }
        // Pruning ran along the way, so the record stays small.
        assert!(backlog.lock().flights.len() < keys.len());
        std::thread::sleep(Duration::from_millis(2));
        prune(&mut backlog.lock(), Instant::now(), Duration::ZERO);
        assert_eq!(backlog.lock().flights.len(), 0);
        // A forgotten key is new again, even for a copy that arrived long ago.
        assert!(backlog.claim(keys[0], long_ago, 0));
    }

    #[test]
    fn finished_keys_are_forgotten_once_every_socket_is_read_past_their_finish() {
        let backlog = Backlog::new(2, Duration::from_secs(3600), 2);
        let a = DuplicateKey::of(b"a");
        let early = Instant::now();
        assert!(backlog.claim(a, early, 0));
        backlog.finish(a);
        let later = Instant::now() + HORIZON_MARGIN * 2;
        // Socket 0 has been read far past the finish, socket 1 not: a copy may wait in socket 1.
        backlog.emptied(0, later);
        prune(
            &mut backlog.lock(),
            Instant::now(),
            Duration::from_secs(3600),
        );
        assert!(!backlog.claim(a, early, 1), "still remembered");
        // Socket 1 read past it too (a later datagram came from it): nothing older is left.
        assert!(backlog.claim(DuplicateKey::of(b"b"), later, 1));
        prune(
            &mut backlog.lock(),
            Instant::now(),
            Duration::from_secs(3600),
        );
        assert!(!backlog.lock().flights.contains_key(&a), "forgotten");
        assert!(backlog.claim(a, early, 0));
    }
}
