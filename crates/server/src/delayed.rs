//! Delayed replies: one timer thread holds the replies with a scope's offer `Delay` in deadline order
//! and sends each when it is due, so no worker ever sleeps for a reply. A delayed reply whose lease
//! change is not committed yet gets it committed right before it leaves.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use calloutd_hooks::{CommitTicket, HeldReply, Reply};

/// A reply (or a bare lease change) that leaves once its change is durable: held by a worker for
/// the rest of its round, or by the timer thread until its time.
#[derive(Debug)]
pub(crate) struct Pending {
    /// A reply already through PktSend (no lease change waits, or the engine committed it itself).
    /// `None` with no [`Pending::held`] for a change no reply waits for (RELEASE, DECLINE), which
    /// still gets committed.
    pub(crate) reply: Option<Reply>,
    /// A reply that waits for the commit before PktSend: the engine's `finish` ends it afterwards.
    pub(crate) held: Option<HeldReply>,
    /// The lease change that must be durable before the reply leaves.
    pub(crate) commit: Option<CommitTicket>,
    /// The reply's DHCP message type (0 for BOOTP), counted once the reply is released.
    pub(crate) reply_type: Option<u8>,
    pub(crate) socket: usize,
    pub(crate) ifindex: i32,
}

/// A [`Pending`] reply with its time.
#[derive(Debug)]
struct Scheduled {
    due: Instant,
    /// Order of scheduling: equal deadlines go out first come, first served.
    seq: u64,
    pending: Pending,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed, so the max-heap pops the earliest deadline.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

#[derive(Debug, Default)]
struct Inner {
    heap: BinaryHeap<Scheduled>,
    next_seq: u64,
    closed: bool,
}

/// The schedule shared by the workers (who add) and the timer thread (who sends).
#[derive(Debug, Default)]
pub(crate) struct DelayedReplies {
    inner: Mutex<Inner>,
    changed: Condvar,
}

impl DelayedReplies {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Schedules `pending` (its reply, and the commit of its change) for `now + after`.
    pub(crate) fn schedule(&self, pending: Pending, after: Duration) {
        let due = Instant::now() + after;
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let earliest = inner.heap.peek().is_none_or(|first| due < first.due);
        inner.heap.push(Scheduled { due, seq, pending });
        drop(inner);
        // Only a new earliest deadline changes how long the timer thread must sleep.
        if earliest {
            self.changed.notify_one();
        }
    }

    /// The timer thread's loop: waits for the earliest deadline and hands everything due by then to
    /// `send`, in deadline order. After [`DelayedReplies::close`] it still sends everything
    /// scheduled, each at its time, then returns.
    pub(crate) fn run(&self, mut send: impl FnMut(Vec<Pending>)) {
        let mut inner = self.lock();
        loop {
            let now = Instant::now();
            match inner.heap.peek().map(|first| first.due) {
                Some(due) if due <= now => {
                    let mut batch = Vec::new();
                    while inner.heap.peek().is_some_and(|first| first.due <= now) {
                        batch.extend(inner.heap.pop().map(|scheduled| scheduled.pending));
                    }
                    drop(inner);
                    send(batch);
                    inner = self.lock();
                }
                Some(due) => {
                    inner = self
                        .changed
                        .wait_timeout(inner, due - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                None if inner.closed => return,
                None => {
                    inner = self
                        .changed
                        .wait(inner)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
    }

    /// No more schedules will come (stop).
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::sync::Arc;

    fn reply(tag: u8) -> Option<Reply> {
        Some(Reply {
            bytes: vec![tag],
            dest: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 68),
            source: Ipv4Addr::LOCALHOST,
            delay: Duration::ZERO,
        })
    }

    fn pending(tag: u8) -> Pending {
        Pending {
            reply: reply(tag),
            held: None,
            commit: None,
            reply_type: Some(2),
            socket: 0,
            ifindex: 0,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn replies_go_out_in_deadline_order_not_before_their_time_and_all_before_close_returns() {
        let delayed = Arc::new(DelayedReplies::default());
        let start = Instant::now();
        let timer = {
            let delayed = Arc::clone(&delayed);
            std::thread::spawn(move || {
                let mut sent = Vec::new();
                delayed.run(|due| {
                    for pending in due {
                        sent.push((pending.reply.unwrap().bytes[0], start.elapsed()));
                    }
                });
                sent
            })
        };
        delayed.schedule(pending(3), ms(60));
        delayed.schedule(pending(1), ms(10));
        delayed.schedule(pending(2), ms(30));
        delayed.close();
        let sent = timer.join().unwrap();
        let order: Vec<u8> = sent.iter().map(|(tag, _)| *tag).collect();
        assert_eq!(order, vec![1, 2, 3]);
        for ((_, at), delay) in sent.iter().zip([10, 30, 60]) {
            assert!(*at >= ms(delay), "sent after {at:?}, before its {delay} ms");
        }
    }
}
