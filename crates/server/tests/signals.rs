//! Signals are process-wide, so this binary holds a single test: SIGUSR1 logs the summary through the
//! caller's function, SIGTERM stops the server with Control(STOP) last.

// Unix only: network namespaces, Unix signals and SO_TIMESTAMPNS (nix).
#![cfg(unix)]

mod support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{mpsc, Arc};

use calloutd_server::{Server, ServerConfig, ServiceState};
use dhcpssdk::ControlCode;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::*;

#[test]
fn sigusr1_logs_the_summary_and_sigterm_stops_cleanly() {
    let log = Log::default();
    let (summaries, summary_rx) = mpsc::channel();
    let config = ServerConfig {
        listen: vec![SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)],
        workers: 1,
        handle_signals: true,
        summary: Some(Arc::new(
            move |snapshot: &calloutd_server::CountersSnapshot| {
                let _ = summaries.send(snapshot.clone());
            },
        )),
        ..ServerConfig::default()
    };
    let server = Server::start(
        config,
        Arc::new(EchoHandler::new(log.clone())),
        Arc::new(RecordingHooks(log.clone())),
    )
    .unwrap();
    let handle = server.handle();
    let addr = server.local_addrs()[0];
    let client = client();
    client.send_to(b"one", addr).unwrap();
    assert_eq!(recv(&client).0, b"re:one");

    kill(Pid::this(), Signal::SIGUSR1).unwrap();
    let snapshot = summary_rx.recv_timeout(PATIENCE).expect("no summary");
    assert_eq!(snapshot.received, 1);

    kill(Pid::this(), Signal::SIGTERM).unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(server.wait());
    });
    let counters = done_rx
        .recv_timeout(PATIENCE)
        .expect("SIGTERM did not stop the server");
    assert_eq!((counters.received, counters.sent), (1, 1));
    assert_eq!(handle.state(), ServiceState::Stopped);
    assert_eq!(log.controls(), vec![ControlCode::Start, ControlCode::Stop]);
    assert_eq!(
        log.events().last(),
        Some(&Event::Control(ControlCode::Stop))
    );
}
