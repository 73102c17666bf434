//! The runtime over real UDP on loopback: addressing, replies, the drops it decides, service state and
//! the Control hook order.

// Unix only: network namespaces, Unix signals and SO_TIMESTAMPNS (nix).
#![cfg(unix)]

mod support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use calloutd_hooks::Admission;
use calloutd_server::{parse_listen, Server, ServerConfig, ServerError, ServiceState};
use dhcpssdk::{ControlCode, DropReason};
use support::*;

const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const DISCOVER: u8 = 1;
const REQUEST: u8 = 3;

fn loopback_config(workers: usize) -> ServerConfig {
    ServerConfig {
        listen: vec![SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)],
        workers,
        ..ServerConfig::default()
    }
}

#[test]
fn datagram_reaches_the_handler_with_its_addressing_and_the_reply_returns() {
    let log = Log::default();
    let (server, addr) = start_recorded(loopback_config(2), EchoHandler::new(log.clone()), &log);
    let client = client();
    client.send_to(b"hello", addr).unwrap();
    let (reply, from) = recv(&client);
    assert_eq!(reply, b"re:hello");
    assert_eq!(
        from,
        std::net::SocketAddr::V4(addr),
        "reply must come from the listen socket"
    );
    let Event::Handled {
        datagram,
        admission,
    } = log.events()[1].clone()
    else {
        panic!("{:?}", log.events());
    };
    assert_eq!(admission, Admission::Process);
    assert_eq!(datagram.if_addr, Ipv4Addr::LOCALHOST);
    assert_eq!(datagram.dst_addr, Ipv4Addr::LOCALHOST);
    assert_eq!(datagram.peer, local_v4(&client));
    let counters = stop_server(server);
    assert_eq!(
        (counters.received, counters.sent, counters.send_errors),
        (1, 1, 0)
    );
    assert_eq!(log.controls(), vec![ControlCode::Start, ControlCode::Stop]);
}

#[test]
fn interface_socket_learns_interface_and_destination_addresses_from_pktinfo() {
    let log = Log::default();
    let config = ServerConfig {
        interfaces: vec!["lo".into()],
        interface_port: 0,
        workers: 1,
        ..ServerConfig::default()
    };
    let server = match Server::start(
        config,
        Arc::new(EchoHandler::new(log.clone())),
        Arc::new(RecordingHooks(log.clone())),
    ) {
        Ok(server) => server,
        Err(ServerError::Socket {
            step: "SO_BINDTODEVICE",
            ..
        }) if !is_root() => {
            eprintln!("skipped: SO_BINDTODEVICE needs privileges");
            return;
        }
        Err(err) => panic!("{err}"),
    };
    let port = server.local_addrs()[0].port();
    assert_eq!(*server.local_addrs()[0].ip(), Ipv4Addr::UNSPECIFIED);
    let client = client();
    // 127.0.0.3 is on lo (127/8) without being the address the client or the socket is bound to.
    client
        .send_to(
            b"via-lo",
            SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 3), port),
        )
        .unwrap();
    let (reply, from) = recv(&client);
    assert_eq!(reply, b"re:via-lo");
    assert_eq!(
        from,
        std::net::SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 3), port)),
        "the reply must come from the receiving interface address"
    );
    let (datagram, _) = log.admissions()[0].clone();
    assert_eq!(datagram, b"via-lo");
    let Event::Handled { datagram, .. } = log.events()[1].clone() else {
        panic!()
    };
    assert_eq!(datagram.if_addr, Ipv4Addr::new(127, 0, 0, 3));
    assert_eq!(datagram.dst_addr, Ipv4Addr::new(127, 0, 0, 3));
    drop(server);
}

#[test]
fn full_queue_drops_with_nomem_after_running_the_packet_through_the_handler() {
    keep_kernel_timestamps_on();
    let log = Log::default();
    let gate = Gate::closed();
    let handler = EchoHandler {
        gate: Some(Arc::clone(&gate)),
        ..EchoHandler::new(log.clone())
    };
    let config = ServerConfig {
        queue_capacity: 2,
        ..loopback_config(1)
    };
    let (server, addr) = start_recorded(config, handler, &log);
    let client = client();
    client.send_to(b"p1", addr).unwrap();
    gate.wait_waiting(1);
    // The only worker is busy: these wait in the socket. The worker reads p2 next, sees it waited,
    // and reads the backlog: p3 and p4 fill the queue, p5 and p6 find it full.
    for payload in [b"p2", b"p3", b"p4", b"p5", b"p6"] {
        client.send_to(payload, addr).unwrap();
    }
    let_backlog_age();
    gate.open();
    for _ in 0..4 {
        recv(&client);
    }
    let counters = stop_server(server);
    let mut admissions = log.admissions();
    admissions.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        admissions,
        vec![
            (b"p1".to_vec(), Admission::Process),
            (b"p2".to_vec(), Admission::Process),
            (b"p3".to_vec(), Admission::Process),
            (b"p4".to_vec(), Admission::Process),
            (b"p5".to_vec(), Admission::Drop(DropReason::NoMem)),
            (b"p6".to_vec(), Admission::Drop(DropReason::NoMem)),
        ]
    );
    assert_eq!(counters.runtime_dropped(DropReason::NoMem), 2);
    assert_eq!((counters.received, counters.sent), (6, 4));
    assert_eq!((counters.queue_depth, counters.in_progress), (0, 0));
}

#[test]
fn copy_arriving_while_in_flight_is_a_duplicate_but_request_with_the_same_xid_is_not() {
    keep_kernel_timestamps_on();
    let log = Log::default();
    let gate = Gate::closed();
    let handler = EchoHandler {
        gate: Some(Arc::clone(&gate)),
        ..EchoHandler::new(log.clone())
    };
    let (server, addr) = start_recorded(loopback_config(1), handler, &log);
    let client = client();
    let discover = dhcp_message(7, MAC, DISCOVER);
    let request = dhcp_message(7, MAC, REQUEST);
    let garbage = b"garbage".to_vec();
    client.send_to(&discover, addr).unwrap();
    gate.wait_waiting(1);
    // All of these arrive while the DISCOVER is in progress; the only worker reads them afterwards.
    client.send_to(&discover, addr).unwrap(); // copy of the one in progress: duplicate
    client.send_to(&request, addr).unwrap(); // same xid, other message type: queued
    client.send_to(&request, addr).unwrap(); // copy of a queued one: duplicate
    client.send_to(&garbage, addr).unwrap(); // queued
    client.send_to(&garbage, addr).unwrap(); // identical bytes: duplicate
    let_backlog_age();
    gate.open();
    for _ in 0..3 {
        recv(&client);
    }
    // Arriving after the earlier copy finished, the same datagram is new again.
    client.send_to(&discover, addr).unwrap();
    recv(&client);
    let counters = stop_server(server);
    let duplicate = Admission::Drop(DropReason::Duplicate);
    assert_eq!(
        log.admissions(),
        vec![
            (discover.clone(), Admission::Process),
            (request.clone(), duplicate),
            (garbage.clone(), duplicate),
            (discover.clone(), duplicate),
            (request, Admission::Process),
            (garbage, Admission::Process),
            (discover, Admission::Process),
        ]
    );
    assert_eq!(counters.runtime_dropped(DropReason::Duplicate), 3);
    assert_eq!(counters.dropped(DropReason::Duplicate), 3);
    assert_eq!((counters.received, counters.sent), (7, 4));
}

#[test]
fn copy_read_by_an_idle_worker_while_the_first_is_in_progress_is_a_duplicate() {
    let log = Log::default();
    let gate = Gate::closed();
    let handler = EchoHandler {
        gate: Some(Arc::clone(&gate)),
        ..EchoHandler::new(log.clone())
    };
    let (server, addr) = start_recorded(loopback_config(2), handler, &log);
    let client = client();
    let discover = dhcp_message(9, MAC, DISCOVER);
    let request = dhcp_message(9, MAC, REQUEST);
    client.send_to(&discover, addr).unwrap();
    gate.wait_waiting(1);
    client.send_to(&discover, addr).unwrap();
    log.wait_for("the duplicate", |events| Log::handled_count(events) == 2);
    client.send_to(&request, addr).unwrap();
    gate.wait_waiting(2);
    gate.open();
    recv(&client);
    recv(&client);
    let counters = stop_server(server);
    assert_eq!(
        log.admissions(),
        vec![
            (discover.clone(), Admission::Process),
            (discover, Admission::Drop(DropReason::Duplicate)),
            (request, Admission::Process),
        ]
    );
    assert_eq!((counters.received, counters.sent), (3, 2));
}

#[test]
fn datagram_that_waited_too_long_is_dropped_with_timeout() {
    keep_kernel_timestamps_on();
    let log = Log::default();
    let gate = Gate::closed();
    let handler = EchoHandler {
        gate: Some(Arc::clone(&gate)),
        ..EchoHandler::new(log.clone())
    };
    let config = ServerConfig {
        queue_timeout: Duration::from_millis(500),
        ..loopback_config(1)
    };
    let (server, addr) = start_recorded(config, handler, &log);
    let client = client();
    client.send_to(b"first", addr).unwrap();
    gate.wait_waiting(1);
    client.send_to(b"late", addr).unwrap();
    // Well past the limit before the worker gets to it.
    std::thread::sleep(Duration::from_millis(800));
    gate.open();
    recv(&client);
    log.wait_for("the late datagram", |events| {
        Log::handled_count(events) == 2
    });
    let counters = stop_server(server);
    assert_eq!(
        log.admissions(),
        vec![
            (b"first".to_vec(), Admission::Process),
            (b"late".to_vec(), Admission::Drop(DropReason::Timeout)),
        ]
    );
    assert_eq!(counters.runtime_dropped(DropReason::Timeout), 1);
    assert_eq!(counters.sent, 1);
}

#[test]
fn paused_service_drops_with_paused_between_control_pause_and_continue() {
    let log = Log::default();
    let (server, addr) = start_recorded(loopback_config(2), EchoHandler::new(log.clone()), &log);
    let handle = server.handle();
    let client = client();
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert_eq!(handle.pause().unwrap(), ServiceState::Paused);
    // Already paused: no second hook call.
    assert_eq!(handle.pause().unwrap(), ServiceState::Paused);
    assert_eq!(handle.state(), ServiceState::Paused);
    client.send_to(b"while-paused", addr).unwrap();
    log.wait_for("the paused drop", |events| Log::handled_count(events) == 1);
    let mut buf = [0u8; 64];
    assert!(
        client.recv_from(&mut buf).is_err(),
        "a paused server sent a reply"
    );
    assert_eq!(handle.resume().unwrap(), ServiceState::Running);
    assert_eq!(handle.state(), ServiceState::Running);
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.send_to(b"after", addr).unwrap();
    assert_eq!(recv(&client).0, b"re:after");
    let counters = handle.counters();
    assert_eq!(counters.runtime_dropped(DropReason::Paused), 1);
    // A stop answers with the state it left, even though the stop finishes on another thread.
    assert_eq!(handle.stop(), ServiceState::Stopping);
    server.wait();
    assert_eq!(handle.stop(), ServiceState::Stopped);
    let events = log.events();
    let summary: Vec<String> = events
        .iter()
        .map(|event| match event {
            Event::Control(code) => format!("Control({code})"),
            Event::Handled {
                datagram,
                admission,
            } => format!("{}:{admission:?}", String::from_utf8_lossy(&datagram.bytes)),
            Event::Committed(ticket) => format!("Committed({ticket})"),
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            "Control(DHCP_CONTROL_START)",
            "Control(DHCP_CONTROL_PAUSE)",
            "while-paused:Drop(Paused)",
            "Control(DHCP_CONTROL_CONTINUE)",
            "after:Process",
            "Control(DHCP_CONTROL_STOP)",
        ]
    );
    assert!(matches!(
        handle.pause(),
        Err(ServerError::State {
            state: ServiceState::Stopped,
            ..
        })
    ));
}

#[test]
fn stop_drains_queued_and_in_progress_datagrams_then_calls_control_stop_last() {
    keep_kernel_timestamps_on();
    let log = Log::default();
    let gate = Gate::closed();
    let handler = EchoHandler {
        gate: Some(Arc::clone(&gate)),
        delay: Duration::from_millis(100),
        ..EchoHandler::new(log.clone())
    };
    let (server, addr) = start_recorded(loopback_config(1), handler, &log);
    let handle = server.handle();
    let client = client();
    client.send_to(b"p1", addr).unwrap();
    gate.wait_waiting(1);
    client.send_to(b"p2", addr).unwrap();
    client.send_to(b"p3", addr).unwrap();
    let_backlog_age();
    // p1 passes; the worker reads p2, queues p3 from the backlog, and is held with p2.
    gate.allow(1);
    log.wait_for("p2 in progress", |events| Log::handled_count(events) == 2);
    gate.wait_waiting(1);
    assert_eq!(handle.counters().queue_depth, 1);
    let waiter = std::thread::spawn(move || server.wait());
    handle.stop();
    assert_eq!(handle.state(), ServiceState::Stopping);
    client.send_to(b"after-stop", addr).unwrap();
    // Nothing is finished while a worker is still busy.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(log.controls(), vec![ControlCode::Start]);
    gate.open();
    let counters = waiter.join().unwrap();
    assert_eq!(handle.state(), ServiceState::Stopped);
    // Every delayed reply went out before wait returned.
    assert_eq!((counters.received, counters.sent), (3, 3));
    let events = log.events();
    assert_eq!(events.last(), Some(&Event::Control(ControlCode::Stop)));
    assert_eq!(
        log.admissions(),
        vec![
            (b"p1".to_vec(), Admission::Process),
            (b"p2".to_vec(), Admission::Process),
            (b"p3".to_vec(), Admission::Process),
        ]
    );
    for expected in [b"re:p1", b"re:p2", b"re:p3"] {
        assert_eq!(recv(&client).0, expected);
    }
    handle.stop(); // again: nothing happens
    assert_eq!(log.events().len(), events.len());
}

#[test]
fn delayed_reply_arrives_after_its_delay_without_holding_the_worker() {
    let log = Log::default();
    let handler = EchoHandler {
        delay: Duration::from_millis(300),
        ..EchoHandler::new(log.clone())
    };
    let (server, addr) = start_recorded(loopback_config(1), handler, &log);
    let client = client();
    let sent_at = Instant::now();
    client.send_to(b"slow", addr).unwrap();
    client.send_to(b"next", addr).unwrap();
    // The single worker handled both right away: the delay is the timer's, not the worker's.
    log.wait_for("both handled", |events| Log::handled_count(events) == 2);
    assert_eq!(recv(&client).0, b"re:slow");
    assert!(sent_at.elapsed() >= Duration::from_millis(300));
    assert_eq!(recv(&client).0, b"re:next");
    drop(server);
}

#[test]
fn broadcast_reply_on_an_interface_socket_is_sent() {
    if !is_root() {
        eprintln!("skipped: SO_BINDTODEVICE needs root");
        return;
    }
    // The receiver of the broadcast: bound to lo only, so nothing leaves the machine.
    let listener = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .unwrap();
    listener.set_reuse_address(true).unwrap();
    listener.bind_device(Some(b"lo")).unwrap();
    listener
        .bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0).into())
        .unwrap();
    let listener: std::net::UdpSocket = listener.into();
    listener.set_read_timeout(Some(PATIENCE)).unwrap();
    let broadcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, local_v4(&listener).port());

    let log = Log::default();
    let handler = EchoHandler {
        reply_to: Some(broadcast),
        ..EchoHandler::new(log.clone())
    };
    let config = ServerConfig {
        interfaces: vec!["lo".into()],
        interface_port: 0,
        workers: 1,
        ..ServerConfig::default()
    };
    let (server, addr) = start_recorded(config, handler, &log);
    let client = client();
    client
        .send_to(
            b"bcast",
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, addr.port()),
        )
        .unwrap();
    assert_eq!(recv(&listener).0, b"re:bcast");
    let counters = stop_server(server);
    assert_eq!((counters.sent, counters.send_errors), (1, 0));
}

#[test]
fn a_panicking_handler_loses_the_datagram_but_not_the_server() {
    let log = Log::default();
    let handler = EchoHandler {
        panic_on: Some(b'!'),
        ..EchoHandler::new(log.clone())
    };
    let (server, addr) = start_recorded(loopback_config(1), handler, &log);
    let client = client();
    client.send_to(b"!boom", addr).unwrap();
    client.send_to(b"fine", addr).unwrap();
    assert_eq!(recv(&client).0, b"re:fine");
    let counters = stop_server(server);
    assert_eq!(counters.handler_panics, 1);
    assert_eq!(log.controls().last(), Some(&ControlCode::Stop));
}

#[test]
fn several_listen_sockets_each_answer_from_their_own_address() {
    let log = Log::default();
    let config = ServerConfig {
        listen: vec![
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
            SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 0),
        ],
        workers: 2,
        ..ServerConfig::default()
    };
    let (server, _) = start_recorded(config, EchoHandler::new(log.clone()), &log);
    let client = client();
    for addr in server.local_addrs() {
        client.send_to(b"x", addr).unwrap();
        let (reply, from) = recv(&client);
        assert_eq!(reply, b"re:x");
        assert_eq!(from, std::net::SocketAddr::V4(addr));
    }
    let if_addrs: Vec<Ipv4Addr> = log
        .events()
        .into_iter()
        .filter_map(|event| match event {
            Event::Handled { datagram, .. } => Some(datagram.if_addr),
            Event::Control(_) | Event::Committed(_) => None,
        })
        .collect();
    assert_eq!(
        if_addrs,
        vec![Ipv4Addr::LOCALHOST, Ipv4Addr::new(127, 0, 0, 2)]
    );
    drop(server);
}

#[test]
fn start_refuses_an_empty_configuration_and_reports_bind_errors() {
    let log = Log::default();
    let hooks = Arc::new(RecordingHooks(log.clone()));
    let handler = Arc::new(EchoHandler::new(log.clone()));
    assert!(matches!(
        Server::start(ServerConfig::default(), Arc::clone(&handler), hooks.clone()),
        Err(ServerError::NoListeners)
    ));
    // 203.0.113.0/24 (TEST-NET-3) is no address of this machine: bind fails.
    let config = ServerConfig {
        listen: vec![parse_listen("203.0.113.77:6767").unwrap()],
        ..ServerConfig::default()
    };
    let err = Server::start(config, handler, hooks).unwrap_err();
    assert!(
        matches!(err, ServerError::Socket { step: "bind", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("203.0.113.77:6767"), "{err}");
    assert!(log.events().is_empty(), "no Control(START) without sockets");
}

#[test]
fn port_67_on_loopback_when_root() {
    if !is_root() {
        eprintln!("skipped: binding port 67 needs root");
        return;
    }
    let log = Log::default();
    let config = ServerConfig {
        listen: vec![parse_listen("127.0.0.1").unwrap()],
        workers: 1,
        ..ServerConfig::default()
    };
    let (server, addr) = start_recorded(config, EchoHandler::new(log.clone()), &log);
    assert_eq!(addr.port(), 67);
    let client = client();
    client.send_to(b"sixty-seven", addr).unwrap();
    assert_eq!(recv(&client).0, b"re:sixty-seven");
    drop(server);
}

/// A UDP socket on 0.0.0.0:`port` that only hears `device`.
fn device_listener(device: &str, port: u16) -> std::net::UdpSocket {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.bind_device(Some(device.as_bytes())).unwrap();
    socket
        .bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())
        .unwrap();
    let socket: std::net::UdpSocket = socket.into();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    socket
}

#[test]
fn broadcast_reply_leaves_through_the_interface_the_request_came_in_on() {
    if !is_root() {
        eprintln!("skipped: needs root for a network namespace");
        return;
    }
    // In a namespace of its own with a second link (probe0 <-> probe1), so a broadcast that took the
    // wrong way stays inside the test.
    let namespace = Namespace::create();
    let (on_lo, on_other_link, counters) = namespace.run(|| {
        let listener_lo = device_listener("lo", 0);
        let port = local_v4(&listener_lo).port();
        let listener_other = device_listener("probe1", port);
        listener_other
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let log = Log::default();
        // No source address to go by, and a socket bound to neither an address nor a device: only
        // the receiving interface remembered from the request's packet info steers the broadcast.
        let handler = EchoHandler {
            reply_to: Some(SocketAddrV4::new(Ipv4Addr::BROADCAST, port)),
            source: Some(Ipv4Addr::UNSPECIFIED),
            ..EchoHandler::new(log.clone())
        };
        let config = ServerConfig {
            listen: vec![SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)],
            workers: 1,
            ..ServerConfig::default()
        };
        let (server, addr) = start_recorded(config, handler, &log);
        client()
            .send_to(
                b"which-way",
                SocketAddrV4::new(Ipv4Addr::LOCALHOST, addr.port()),
            )
            .unwrap();
        let on_lo = recv(&listener_lo).0;
        let mut buf = [0u8; 64];
        let on_other_link = listener_other.recv_from(&mut buf).is_ok();
        (on_lo, on_other_link, stop_server(server))
    });
    assert_eq!(on_lo, b"re:which-way");
    assert!(
        !on_other_link,
        "the broadcast also left through another link"
    );
    assert_eq!((counters.sent, counters.send_errors), (1, 0));
}

#[test]
fn datagrams_without_a_backlog_are_answered_without_lingering() {
    // A linger far longer than the client's patience: a worker that lingered after a round would
    // leave the next datagram unanswered until the client gives up. Datagrams 20 ms apart, each
    // sent after the previous reply, are no backlog (pace.rs): each is answered as it comes.
    let log = Log::default();
    let config = ServerConfig {
        coalesce: PATIENCE * 4,
        ..loopback_config(1)
    };
    let (server, addr) = start_recorded(config, EchoHandler::new(log.clone()), &log);
    let client = client();
    for n in 0..5 {
        let payload = format!("lone {n}");
        client.send_to(payload.as_bytes(), addr).unwrap();
        let (reply, _) = recv(&client);
        assert_eq!(reply, format!("re:{payload}").into_bytes());
        std::thread::sleep(Duration::from_millis(20));
    }
    let counters = stop_server(server);
    assert_eq!((counters.received, counters.sent), (5, 5));
}
