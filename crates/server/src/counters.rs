//! The runtime's counters: lock-free atomics bumped on the packet path, read as a [`CountersSnapshot`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use calloutd_hooks::{Admission, Outcome};
use dhcpssdk::DropReason;

/// Message types counted one by one: 0 (BOOTP) to 18 (the highest DHCP message type assigned).
pub const MESSAGE_TYPE_SLOTS: usize = 19;

/// Number of `DHCP_DROP_*` reasons, in [`DropReason::ALL`] order.
const DROP_REASONS: usize = DropReason::ALL.len();

/// The live counters. Everything is `Relaxed`: each counter is exact, the set is not one atomic
/// picture (a snapshot taken while packets flow may see a datagram received but not yet answered).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    received: AtomicU64,
    sent: AtomicU64,
    send_errors: AtomicU64,
    replies_withheld: AtomicU64,
    handler_panics: AtomicU64,
    runtime_drops: [AtomicU64; DROP_REASONS],
    requests_by_type: [AtomicU64; MESSAGE_TYPE_SLOTS],
    requests_other_type: AtomicU64,
    requests_unparsed: AtomicU64,
    replies_by_type: [AtomicU64; MESSAGE_TYPE_SLOTS],
    replies_other_type: AtomicU64,
    drops: [AtomicU64; DROP_REASONS],
}

/// Index of `reason` in [`DropReason::ALL`].
fn drop_slot(reason: DropReason) -> usize {
    DropReason::ALL
        .iter()
        .position(|known| *known == reason)
        .unwrap_or(0)
}

impl Counters {
    pub(crate) fn received(&self) {
        self.received.fetch_add(1, Relaxed);
    }

    pub(crate) fn sent(&self) {
        self.sent.fetch_add(1, Relaxed);
    }

    pub(crate) fn send_error(&self) {
        self.send_errors.fetch_add(1, Relaxed);
    }

    /// A reply not sent because its lease change could not be committed.
    pub(crate) fn reply_withheld(&self) {
        self.replies_withheld.fetch_add(1, Relaxed);
    }

    /// Counts a reply of type `reply_type` released to be sent: its lease change, if any, is
    /// durable.
    pub(crate) fn released(&self, reply_type: Option<u8>) {
        if let Some(kind) = reply_type {
            match self.replies_by_type.get(usize::from(kind)) {
                Some(slot) => slot.fetch_add(1, Relaxed),
                None => self.replies_other_type.fetch_add(1, Relaxed),
            };
        }
    }

    pub(crate) fn handler_panic(&self) {
        self.handler_panics.fetch_add(1, Relaxed);
    }

    /// Counts a drop the runtime decided (NOMEM, DUPLICATE, TIMEOUT, PAUSED).
    pub(crate) fn admitted(&self, admission: Admission) {
        if let Admission::Drop(reason) = admission {
            self.runtime_drops[drop_slot(reason)].fetch_add(1, Relaxed);
        }
    }

    /// Counts what the engine reported for one datagram: its request type and drop. Its reply is
    /// counted by [`Counters::released`], or as withheld, and its send by the sender.
    pub(crate) fn outcome(&self, outcome: &Outcome) {
        match outcome.request_type {
            None => self.requests_unparsed.fetch_add(1, Relaxed),
            Some(kind) => match self.requests_by_type.get(usize::from(kind)) {
                Some(slot) => slot.fetch_add(1, Relaxed),
                None => self.requests_other_type.fetch_add(1, Relaxed),
            },
        };
        if let Some(reason) = outcome.dropped {
            self.drops[drop_slot(reason)].fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn snapshot(
        &self,
        queue_depth: usize,
        in_progress: usize,
        kernel_drops: u64,
    ) -> CountersSnapshot {
        let load = |counters: &[AtomicU64]| -> Vec<u64> {
            counters.iter().map(|c| c.load(Relaxed)).collect()
        };
        let pairs = |counters: &[AtomicU64; DROP_REASONS]| -> Vec<(DropReason, u64)> {
            DropReason::ALL
                .iter()
                .zip(counters.iter())
                .map(|(reason, count)| (*reason, count.load(Relaxed)))
                .collect()
        };
        let mut requests_by_type = [0; MESSAGE_TYPE_SLOTS];
        requests_by_type.copy_from_slice(&load(&self.requests_by_type));
        let mut replies_by_type = [0; MESSAGE_TYPE_SLOTS];
        replies_by_type.copy_from_slice(&load(&self.replies_by_type));
        CountersSnapshot {
            received: self.received.load(Relaxed),
            sent: self.sent.load(Relaxed),
            send_errors: self.send_errors.load(Relaxed),
            replies_withheld: self.replies_withheld.load(Relaxed),
            handler_panics: self.handler_panics.load(Relaxed),
            runtime_drops: pairs(&self.runtime_drops),
            kernel_drops,
            queue_depth: queue_depth as u64,
            in_progress: in_progress as u64,
            requests_by_type,
            requests_other_type: self.requests_other_type.load(Relaxed),
            requests_unparsed: self.requests_unparsed.load(Relaxed),
            replies_by_type,
            replies_other_type: self.replies_other_type.load(Relaxed),
            drops: pairs(&self.drops),
        }
    }
}

/// A copy of the runtime's counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// Datagrams read from the server sockets.
    pub received: u64,
    /// Replies handed to the kernel without error.
    pub sent: u64,
    /// Replies whose send failed.
    pub send_errors: u64,
    /// Replies not sent because their lease change could not be committed.
    pub replies_withheld: u64,
    /// Datagrams whose handler panicked (an engine bug; the packet is lost).
    pub handler_panics: u64,
    /// Drops the runtime decided, per reason in [`DropReason::ALL`] order (only `NoMem`, `Duplicate`,
    /// `Timeout` and `Paused` can be non-zero).
    pub runtime_drops: Vec<(DropReason, u64)>,
    /// Datagrams the kernel dropped because a socket's receive buffer was full (SO_RXQ_OVFL): they
    /// never reached the engine. As last reported with a received datagram.
    pub kernel_drops: u64,
    /// Datagrams waiting in the queue now.
    pub queue_depth: u64,
    /// Datagrams a worker is processing now.
    pub in_progress: u64,
    /// Requests per DHCP message type as the engine read it (index 0 = BOOTP).
    pub requests_by_type: [u64; MESSAGE_TYPE_SLOTS],
    /// Requests of a message type above 18.
    pub requests_other_type: u64,
    /// Datagrams the engine could not parse (or never parsed: dropped before decoding).
    pub requests_unparsed: u64,
    /// Replies per DHCP message type (index 0 = BOOTREPLY), counted when released to be sent (an
    /// ACK once its lease is durable); a withheld reply is counted in `replies_withheld` only.
    pub replies_by_type: [u64; MESSAGE_TYPE_SLOTS],
    /// Replies of a message type above 18.
    pub replies_other_type: u64,
    /// Every drop the engine reported, whoever decided it, per reason in [`DropReason::ALL`] order.
    pub drops: Vec<(DropReason, u64)>,
}

impl CountersSnapshot {
    /// How many drops of `reason` the runtime decided.
    pub fn runtime_dropped(&self, reason: DropReason) -> u64 {
        lookup(&self.runtime_drops, reason)
    }

    /// How many drops of `reason` the engine reported in total.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        lookup(&self.drops, reason)
    }
}

fn lookup(pairs: &[(DropReason, u64)], reason: DropReason) -> u64 {
    pairs
        .iter()
        .find(|(known, _)| *known == reason)
        .map_or(0, |(_, count)| *count)
}

/// DHCP message type names for the summary (RFC 2132 9.6 and later assignments).
const MESSAGE_TYPE_NAMES: [&str; MESSAGE_TYPE_SLOTS] = [
    "BOOTP",
    "DISCOVER",
    "OFFER",
    "REQUEST",
    "DECLINE",
    "ACK",
    "NAK",
    "RELEASE",
    "INFORM",
    "FORCERENEW",
    "LEASEQUERY",
    "LEASEUNASSIGNED",
    "LEASEUNKNOWN",
    "LEASEACTIVE",
    "BULKLEASEQUERY",
    "LEASEQUERYDONE",
    "ACTIVELEASEQUERY",
    "LEASEQUERYSTATUS",
    "TLS",
];

/// The name of message type slot `index` (`BOOTP`, `DISCOVER` …), `other` past the known ones.
pub(crate) fn message_type_name(index: usize) -> &'static str {
    MESSAGE_TYPE_NAMES.get(index).copied().unwrap_or("other")
}

/// The one-screen summary logged on SIGUSR1 when the caller provides no summary function.
impl fmt::Display for CountersSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "received {}  sent {}  send errors {}  kernel drops {}  queue {}  in progress {}  handler panics {}",
            self.received,
            self.sent,
            self.send_errors,
            self.kernel_drops,
            self.queue_depth,
            self.in_progress,
            self.handler_panics
        )?;
        let by_type = |counts: &[u64; MESSAGE_TYPE_SLOTS], other: u64| {
            let mut parts: Vec<String> = MESSAGE_TYPE_NAMES
                .iter()
                .zip(counts.iter())
                .filter(|(_, count)| **count > 0)
                .map(|(name, count)| format!("{name} {count}"))
                .collect();
            if other > 0 {
                parts.push(format!("other {other}"));
            }
            if parts.is_empty() {
                "none".to_string()
            } else {
                parts.join(", ")
            }
        };
        writeln!(
            f,
            "requests: {}; unparsed {}",
            by_type(&self.requests_by_type, self.requests_other_type),
            self.requests_unparsed
        )?;
        writeln!(
            f,
            "replies: {}",
            by_type(&self.replies_by_type, self.replies_other_type)
        )?;
        let drops: Vec<String> = self
            .drops
            .iter()
            .filter(|(_, count)| *count > 0)
            .map(|(reason, count)| {
                let by_runtime = self.runtime_dropped(*reason);
                if by_runtime > 0 {
                    format!("{reason} {count} (runtime {by_runtime})")
                } else {
                    format!("{reason} {count}")
                }
            })
            .collect();
        write!(
            f,
            "drops: {}",
            if drops.is_empty() {
                "none".to_string()
            } else {
                drops.join(", ")
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_and_admissions_land_in_their_slots() {
        let counters = Counters::default();
        counters.received();
        counters.received();
        counters.sent();
        counters.admitted(Admission::Drop(DropReason::Paused));
        counters.admitted(Admission::Process);
        counters.outcome(&Outcome {
            reply: None,
            dropped: Some(DropReason::Paused),
            request_type: Some(1),
            reply_type: None,
            ..Outcome::default()
        });
        counters.outcome(&Outcome {
            reply: None,
            dropped: None,
            request_type: Some(3),
            reply_type: Some(5),
            ..Outcome::default()
        });
        counters.outcome(&Outcome {
            reply: None,
            dropped: Some(DropReason::Invalid),
            request_type: None,
            reply_type: None,
            ..Outcome::default()
        });
        counters.outcome(&Outcome {
            request_type: Some(200),
            reply_type: Some(201),
            ..Outcome::default()
        });
        // Replies count once released; a withheld one only as withheld.
        counters.released(Some(5));
        counters.released(Some(201));
        counters.reply_withheld();
        let snapshot = counters.snapshot(3, 1, 0);
        assert_eq!((snapshot.received, snapshot.sent), (2, 1));
        assert_eq!(snapshot.replies_withheld, 1);
        assert_eq!((snapshot.queue_depth, snapshot.in_progress), (3, 1));
        assert_eq!(snapshot.runtime_dropped(DropReason::Paused), 1);
        assert_eq!(snapshot.runtime_dropped(DropReason::Invalid), 0);
        assert_eq!(snapshot.dropped(DropReason::Paused), 1);
        assert_eq!(snapshot.dropped(DropReason::Invalid), 1);
        assert_eq!(snapshot.requests_by_type[1], 1);
        assert_eq!(snapshot.requests_by_type[3], 1);
        assert_eq!(snapshot.replies_by_type[5], 1);
        assert_eq!(snapshot.requests_unparsed, 1);
        assert_eq!(
            (snapshot.requests_other_type, snapshot.replies_other_type),
            (1, 1)
        );
        let text = snapshot.to_string();
        assert!(text.contains("DISCOVER 1, REQUEST 1"), "{text}");
        assert!(text.contains("DHCP_DROP_PAUSED 1 (runtime 1)"), "{text}");
        assert!(text.lines().count() <= 24, "{text}");
    }
}
