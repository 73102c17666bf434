//! Delayed replies: one timer thread holds them in deadline order and sends each when it is due, so
//! no worker ever sleeps. Two kinds wait here: replies with a scope's offer `Delay`, and replies
//! whose lease change is not committed yet (the commit delay), which the timer thread commits
//! together, once for all that are due.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use calloutd_engine::{CommitTicket, Reply};

/// A reply (or a bare lease change) waiting for its time.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) due: Instant,
    /// Order of scheduling: equal deadlines go out first come, first served.
    seq: u64,
    /// `None` for a change no reply waits for (RELEASE, DECLINE), which still gets committed.
    pub(crate) reply: Option<Reply>,
    /// The lease change that must be durable before the reply leaves.
    pub(crate) commit: Option<CommitTicket>,
    pub(crate) socket: usize,
    pub(crate) ifindex: i32,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    /// Reversed, so the max-heap pops the earliest deadline.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

#[derive(Debug, Default)]
struct Inner {
    heap: BinaryHeap<Pending>,
    next_seq: u64,
    closed: bool,
    /// The deadline of the open commit batch, which replies with a commit join.
    commit_batch_due: Option<Instant>,
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

    /// Schedules `reply` (and the commit of `commit`) for `now + after`. A reply with a commit and
    /// no delay of its own joins the open commit batch instead, if that is due within `after`: every
    /// reply of a batch shares one deadline, so the timer thread commits them together, and none
    /// waits longer than `after`.
    pub(crate) fn schedule(
        &self,
        reply: Option<Reply>,
        commit: Option<CommitTicket>,
        after: std::time::Duration,
        socket: usize,
        ifindex: i32,
    ) {
        let now = Instant::now();
        // A reply with its own delay (a scope's offer Delay) keeps its exact time.
        let batchable = commit.is_some() && reply.as_ref().is_none_or(|r| r.delay.is_zero());
        let mut inner = self.lock();
        let due = match inner.commit_batch_due {
            Some(batch_due) if batchable && batch_due > now && batch_due <= now + after => {
                batch_due
            }
            _ if batchable => {
                let due = now + after;
                inner.commit_batch_due = Some(due);
                due
            }
            _ => now + after,
        };
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let earliest = inner.heap.peek().is_none_or(|first| due < first.due);
        inner.heap.push(Pending {
            due,
            seq,
            reply,
            commit,
            socket,
            ifindex,
        });
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
                        batch.extend(inner.heap.pop());
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
    use std::time::Duration;

    fn reply(tag: u8) -> Option<Reply> {
        Some(Reply {
            bytes: vec![tag],
            dest: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 68),
            source: Ipv4Addr::LOCALHOST,
            delay: Duration::ZERO,
        })
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn replies_with_a_commit_share_the_open_batch_and_a_delayed_reply_keeps_its_time() {
        let delayed = DelayedReplies::default();
        let ticket = Some(CommitTicket(1));
        delayed.schedule(reply(1), ticket, ms(50), 0, 0);
        delayed.schedule(None, Some(CommitTicket(2)), ms(50), 0, 0);
        let mut offer = reply(3);
        if let Some(offer) = &mut offer {
            offer.delay = ms(200);
        }
        delayed.schedule(offer, Some(CommitTicket(3)), ms(200), 0, 0);
        delayed.schedule(reply(4), None, ms(10), 0, 0);
        let mut pending = std::mem::take(&mut delayed.lock().heap).into_sorted_vec();
        // into_sorted_vec is ascending by Ord, which is reversed: latest first.
        pending.reverse();
        let tags: Vec<u8> = pending
            .iter()
            .map(|p| p.reply.as_ref().map_or(0, |r| r.bytes[0]))
            .collect();
        assert_eq!(tags, vec![4, 1, 0, 3]);
        assert_eq!(pending[1].due, pending[2].due, "one batch, one deadline");
        assert!(
            pending[3].due >= pending[1].due + ms(100),
            "the offer delay is kept"
        );
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
                        assert!(Instant::now() >= pending.due);
                        sent.push((pending.reply.unwrap().bytes[0], start.elapsed()));
                    }
                });
                sent
            })
        };
        delayed.schedule(reply(3), None, ms(60), 0, 0);
        delayed.schedule(reply(1), None, ms(10), 0, 0);
        delayed.schedule(reply(2), None, ms(30), 0, 0);
        delayed.close();
        let sent = timer.join().unwrap();
        let order: Vec<u8> = sent.iter().map(|(tag, _)| *tag).collect();
        assert_eq!(order, vec![1, 2, 3]);
        assert!(sent[2].1 >= Duration::from_millis(60));
    }
}
