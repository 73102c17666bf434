//! Replies whose lease change is not durable yet (`Outcome::uncommitted`): the runtime holds them for
//! the commit delay, commits once for the batch, and only then sends; a failed commit withholds them.

mod support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use calloutd_engine::{
    Admission, CommitTicket, Datagram, Outcome, PacketHandler, Reply, StoreError,
};
use calloutd_server::{Server, ServerConfig};
use dhcpssdk::ControlCode;
use support::*;

/// Answers every datagram with "re:<datagram>" and a fresh ticket (1, 2, …), or with no reply when
/// the datagram starts with `-`; logs every commit; fails commits of tickets up to `fail_up_to`.
struct TicketHandler {
    log: Log,
    issued: AtomicU64,
    fail_up_to: u64,
}

impl TicketHandler {
    fn new(log: &Log, fail_up_to: u64) -> Self {
        TicketHandler {
            log: log.clone(),
            issued: AtomicU64::new(0),
            fail_up_to,
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
        let reply = (datagram.bytes.first() != Some(&b'-')).then(|| Reply {
            bytes: [b"re:".as_slice(), &datagram.bytes].concat(),
            dest: datagram.peer,
            source: datagram.if_addr,
            delay: Duration::ZERO,
        });
        Outcome {
            reply,
            uncommitted: Some(ticket),
            ..Outcome::default()
        }
    }

    fn commit(&self, ticket: CommitTicket) -> Result<(), StoreError> {
        self.log.push(Event::Committed(ticket.0));
        if ticket.0 <= self.fail_up_to {
            return Err(StoreError::CommitFailed {
                path: "test.sqlite3".into(),
                message: "disk full (test)".into(),
            });
        }
        Ok(())
    }
}

fn start(handler: TicketHandler, log: &Log, commit_delay: Duration) -> (Server, SocketAddrV4) {
    let config = ServerConfig {
        listen: vec![SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)],
        workers: 2,
        commit_delay,
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
fn one_commit_covers_the_batch_and_every_reply_leaves_after_it() {
    let log = Log::default();
    // A long window, so the five datagrams surely land in one batch.
    let (server, addr) = start(
        TicketHandler::new(&log, 0),
        &log,
        Duration::from_millis(400),
    );
    let client = client();
    for n in 1..=5u8 {
        client.send_to(&[b'0' + n], addr).unwrap();
    }
    let mut replies = Vec::new();
    for _ in 0..5 {
        let (reply, _) = recv(&client);
        // When a reply arrives, the commit of the whole batch has already been asked for.
        assert_eq!(
            commits(&log).first(),
            Some(&5),
            "the first commit is for the batch's highest ticket"
        );
        replies.push(reply);
    }
    replies.sort();
    let expected: Vec<Vec<u8>> = (1..=5u8)
        .map(|n| vec![b'r', b'e', b':', b'0' + n])
        .collect();
    assert_eq!(replies, expected);
    let counters = stop_server(server);
    assert_eq!((counters.sent, counters.replies_withheld), (5, 0));
    // After the batch's commit(5), each reply's own ticket is only checked (the store returns at
    // once for a ticket already committed).
    let mut checked = commits(&log)[1..].to_vec();
    checked.sort_unstable();
    assert_eq!(checked, vec![1, 2, 3, 4, 5]);
}

#[test]
fn a_failed_commit_withholds_the_reply_and_counts_it() {
    let log = Log::default();
    let (server, addr) = start(TicketHandler::new(&log, 1), &log, Duration::from_millis(20));
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
}

#[test]
fn with_no_commit_delay_each_worker_commits_its_own_change_before_sending() {
    let log = Log::default();
    let (server, addr) = start(TicketHandler::new(&log, 0), &log, Duration::ZERO);
    let client = client();
    client.send_to(b"a", addr).unwrap();
    assert_eq!(recv(&client).0, b"re:a");
    assert_eq!(commits(&log), vec![1]);
    client.send_to(b"b", addr).unwrap();
    assert_eq!(recv(&client).0, b"re:b");
    assert_eq!(commits(&log), vec![1, 2]);
    stop_server(server);
}

#[test]
fn a_change_without_a_reply_is_committed_and_pending_ones_are_sent_before_control_stop() {
    let log = Log::default();
    let (server, addr) = start(
        TicketHandler::new(&log, 0),
        &log,
        Duration::from_millis(300),
    );
    let client = client();
    client.send_to(b"-release", addr).unwrap();
    client.send_to(b"ack", addr).unwrap();
    log.wait_for("both datagrams handled", |events| {
        events
            .iter()
            .filter(|e| matches!(e, Event::Handled { .. }))
            .count()
            == 2
    });
    // Stop inside the commit window: the batch is still committed and sent, before Control(STOP).
    let counters = stop_server(server);
    assert_eq!(recv(&client).0, b"re:ack");
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
