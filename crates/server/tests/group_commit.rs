//! Replies whose lease change is not durable yet (`Outcome::uncommitted`): a worker holds them until
//! its round ends (its socket is empty), commits once for the round, and only then sends; a failed
//! commit withholds them.

// Unix only: network namespaces, Unix signals and SO_TIMESTAMPNS (nix).
#![cfg(unix)]

mod support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use calloutd_hooks::{
    Admission, CommitError, CommitTicket, Datagram, Outcome, PacketHandler, Reply,
};
use calloutd_server::{Server, ServerConfig};
use dhcpssdk::ControlCode;
use support::*;

/// Answers every datagram with "re:<datagram>" and a fresh ticket (1, 2, …), or with no reply when
/// the datagram starts with `-`; takes [`SLOW`] over a datagram that starts with `~`; logs every
/// commit; fails commits of tickets up to `fail_up_to`. Commits run one at a time, like the SQLite
/// store's; the commit of `slow_commit`'s ticket takes [`SLOW`] and then sets its flag.
struct TicketHandler {
    log: Log,
    issued: AtomicU64,
    fail_up_to: u64,
    serial: Mutex<()>,
    slow_commit: Option<(u64, Arc<AtomicBool>)>,
}

impl TicketHandler {
    fn new(log: &Log, fail_up_to: u64) -> Self {
        TicketHandler {
            log: log.clone(),
            issued: AtomicU64::new(0),
            fail_up_to,
            serial: Mutex::new(()),
            slow_commit: None,
        }
    }
}

impl PacketHandler for TicketHandler {
    fn handle(&self, datagram: Datagram, admission: Admission) -> Outcome {
        self.log.push(Event::Handled {
            datagram: datagram.clone(),
            admission,
        });
        let ticket = CommitTicket(self.issued.fetch_add(1, Ordering::SeqCst) + 1);
        let mut bytes = datagram.bytes.as_slice();
        if let Some(rest) = bytes.strip_prefix(b"~") {
            std::thread::sleep(SLOW);
            bytes = rest;
        }
        let reply = (bytes.first() != Some(&b'-')).then(|| Reply {
            bytes: [b"re:".as_slice(), &datagram.bytes].concat(),
            dest: datagram.peer,
            source: datagram.if_addr,
            delay: Duration::ZERO,
        });
        Outcome {
            // Reported as an ACK (type 5) when there is a reply.
            reply_type: reply.as_ref().map(|_| 5),
            reply,
            uncommitted: Some(ticket),
            ..Outcome::default()
        }
    }

    fn commit(&self, ticket: CommitTicket) -> Result<(), CommitError> {
        let _one_at_a_time = self.serial.lock().unwrap();
        self.log.push(Event::Committed(ticket.0));
        if let Some((slow, done)) = &self.slow_commit {
            if ticket.0 == *slow {
                std::thread::sleep(SLOW);
                done.store(true, Ordering::SeqCst);
            }
        }
        if ticket.0 <= self.fail_up_to {
            return Err(CommitError("test.sqlite3: disk full (test)".into()));
        }
        Ok(())
    }
}

/// Long enough for the datagrams a test sends meanwhile to be in the socket when it is over.
const SLOW: Duration = Duration::from_millis(150);

fn start(handler: TicketHandler, log: &Log, workers: usize) -> (Server, SocketAddrV4) {
    let config = ServerConfig {
        listen: vec![SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)],
        workers,
        ..ServerConfig::default()
    };
    start_recorded(config, handler, log)
}

fn commits(log: &Log) -> Vec<u64> {
    log.events()
        .into_iter()
        .filter_map(|event| match event {
            Event::Committed(ticket) => Some(ticket),
            _ => None,
        })
        .collect()
}

#[test]
fn one_commit_covers_the_round_and_every_reply_leaves_after_it() {
    let log = Log::default();
    let (server, addr) = start(TicketHandler::new(&log, 0), &log, 1);
    let client = client();
    // The one worker is slow over the first, so the other four wait in the socket: one round.
    client.send_to(b"~1", addr).unwrap();
    for n in 2..=5u8 {
        client.send_to(&[b'0' + n], addr).unwrap();
    }
    let mut replies = Vec::new();
    for _ in 0..5 {
        let (reply, _) = recv(&client);
        // When a reply arrives, the commit of the whole batch has already been asked for.
        assert_eq!(
            commits(&log).first(),
            Some(&5),
            "the first commit is for the round's highest ticket"
        );
        replies.push(reply);
    }
    replies.sort();
    let mut expected: Vec<Vec<u8>> = (2..=5u8)
        .map(|n| vec![b'r', b'e', b':', b'0' + n])
        .collect();
    expected.push(b"re:~1".to_vec());
    assert_eq!(replies, expected);
    let counters = stop_server(server);
    assert_eq!((counters.sent, counters.replies_withheld), (5, 0));
    // After the round's commit(5), each reply's own ticket is only checked (the store returns at
    // once for a ticket already committed).
    let mut checked = commits(&log)[1..].to_vec();
    checked.sort_unstable();
    assert_eq!(checked, vec![1, 2, 3, 4, 5]);
}

#[test]
fn a_failed_commit_withholds_the_reply_and_counts_it() {
    let log = Log::default();
    let (server, addr) = start(TicketHandler::new(&log, 1), &log, 2);
    let client = client();
    client.send_to(b"lost", addr).unwrap();
    log.wait_for("the commit of ticket 1", |events| {
        events.contains(&Event::Committed(1))
    });
    client.send_to(b"kept", addr).unwrap();
    // The first datagram's reply never comes: the next one to arrive is the second's.
    assert_eq!(recv(&client).0, b"re:kept");
    let counters = stop_server(server);
    assert_eq!((counters.sent, counters.replies_withheld), (1, 1));
    // The withheld reply is counted as withheld only, not as an ACK.
    assert_eq!(counters.replies_by_type[5], 1);
}

#[test]
fn a_lone_datagram_is_a_round_of_its_own_committed_before_its_reply_leaves() {
    let log = Log::default();
    let (server, addr) = start(TicketHandler::new(&log, 0), &log, 2);
    let client = client();
    // The round's commit, then the reply's own check (which the store answers at once).
    client.send_to(b"a", addr).unwrap();
    assert_eq!(recv(&client).0, b"re:a");
    assert_eq!(commits(&log), vec![1, 1]);
    client.send_to(b"b", addr).unwrap();
    assert_eq!(recv(&client).0, b"re:b");
    assert_eq!(commits(&log), vec![1, 1, 2, 2]);
    stop_server(server);
}

#[test]
fn a_change_without_a_reply_is_committed_and_held_replies_are_sent_before_control_stop() {
    let log = Log::default();
    let (server, addr) = start(TicketHandler::new(&log, 0), &log, 1);
    let client = client();
    // One round: the release arrives while the worker is slow over the ACK.
    client.send_to(b"~ack", addr).unwrap();
    client.send_to(b"~-release", addr).unwrap();
    log.wait_for("both datagrams handled", |events| {
        events
            .iter()
            .filter(|e| matches!(e, Event::Handled { .. }))
            .count()
            == 2
    });
    // Stop inside the round: its changes are still committed and its ACK sent, before Control(STOP).
    let counters = stop_server(server);
    assert_eq!(recv(&client).0, b"re:~ack");
    assert_eq!(counters.sent, 1);
    let events = log.events();
    let stop_at = events
        .iter()
        .position(|e| *e == Event::Control(ControlCode::Stop))
        .expect("Control(STOP)");
    let committed: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, Event::Committed(_)))
        .map(|(i, _)| i)
        .collect();
    assert!(!committed.is_empty() && committed.iter().all(|i| *i < stop_at));
    assert_eq!(
        commits(&log).first(),
        Some(&2),
        "one commit for both tickets"
    );
}

#[test]
fn a_worker_goes_on_while_another_commits_and_the_committer_sends_its_replies() {
    let log = Log::default();
    let slow_done = Arc::new(AtomicBool::new(false));
    let handler = TicketHandler {
        slow_commit: Some((1, Arc::clone(&slow_done))),
        ..TicketHandler::new(&log, 0)
    };
    let (server, addr) = start(handler, &log, 2);
    let client = client();
    client.send_to(b"a", addr).unwrap();
    log.wait_for("the slow commit of ticket 1", |events| {
        events.contains(&Event::Committed(1))
    });
    client.send_to(b"b", addr).unwrap();
    log.wait_for("b handled", |events| {
        events
            .iter()
            .any(|e| matches!(e, Event::Handled { datagram, .. } if datagram.bytes == b"b"))
    });
    // Time for b's worker to end its round; c comes after that.
    std::thread::sleep(SLOW / 5);
    client.send_to(b"c", addr).unwrap();
    log.wait_for("c handled", |events| {
        events
            .iter()
            .any(|e| matches!(e, Event::Handled { datagram, .. } if datagram.bytes == b"c"))
    });
    assert!(
        !slow_done.load(Ordering::SeqCst),
        "c was handled only after the slow commit: the other worker waited for it"
    );
    // b's and c's replies were left to the committing worker, which sent them after its commit.
    let mut replies: Vec<Vec<u8>> = (0..3).map(|_| recv(&client).0).collect();
    replies.sort();
    assert_eq!(
        replies,
        [b"re:a".to_vec(), b"re:b".to_vec(), b"re:c".to_vec()]
    );
    let counters = stop_server(server);
    assert_eq!((counters.sent, counters.replies_withheld), (3, 0));
}
