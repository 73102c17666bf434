//! Delayed replies (a scope's offer `Delay`): one timer thread holds them in deadline order and sends
//! each when it is due, so no worker ever sleeps.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use calloutd_engine::Reply;

/// A reply waiting for its time.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) due: Instant,
    /// Order of scheduling: equal deadlines go out first come, first served.
    seq: u64,
    pub(crate) reply: Reply,
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

    /// Schedules `reply` for `now + reply.delay`.
    pub(crate) fn schedule(&self, reply: Reply, socket: usize, ifindex: i32) {
        let due = Instant::now() + reply.delay;
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let earliest = inner.heap.peek().is_none_or(|first| due < first.due);
        inner.heap.push(Pending {
            due,
            seq,
            reply,
            socket,
            ifindex,
        });
        drop(inner);
        // Only a new earliest deadline changes how long the timer thread must sleep.
        if earliest {
            self.changed.notify_one();
        }
    }

    /// The timer thread's loop: waits for each reply's deadline and hands it to `send`. After
    /// [`DelayedReplies::close`] it still sends everything scheduled, each at its time, then returns.
    pub(crate) fn run(&self, mut send: impl FnMut(Pending)) {
        let mut inner = self.lock();
        loop {
            let now = Instant::now();
            match inner.heap.peek().map(|first| first.due) {
                Some(due) if due <= now => {
                    if let Some(pending) = inner.heap.pop() {
                        drop(inner);
                        send(pending);
                        inner = self.lock();
                    }
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

    fn reply(tag: u8, delay_ms: u64) -> Reply {
        Reply {
            bytes: vec![tag],
            dest: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 68),
            source: Ipv4Addr::LOCALHOST,
            delay: Duration::from_millis(delay_ms),
        }
    }

    #[test]
    fn replies_go_out_in_deadline_order_not_before_their_time_and_all_before_close_returns() {
        let delayed = Arc::new(DelayedReplies::default());
        let start = Instant::now();
        let timer = {
            let delayed = Arc::clone(&delayed);
            std::thread::spawn(move || {
                let mut sent = Vec::new();
                delayed.run(|pending| {
                    assert!(Instant::now() >= pending.due);
                    sent.push((pending.reply.bytes[0], start.elapsed()));
                });
                sent
            })
        };
        delayed.schedule(reply(3, 60), 0, 0);
        delayed.schedule(reply(1, 10), 0, 0);
        delayed.schedule(reply(2, 30), 0, 0);
        delayed.close();
        let sent = timer.join().unwrap();
        let order: Vec<u8> = sent.iter().map(|(tag, _)| *tag).collect();
        assert_eq!(order, vec![1, 2, 3]);
        assert!(sent[2].1 >= Duration::from_millis(60));
    }
}
