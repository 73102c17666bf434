//! The runtime with the real engine: a broadcast DORA from a client that has no address yet, over a
//! veth link inside a network namespace the test creates (198.18.0.0/24 only), with the hook calls
//! in order from Control(START) to Control(STOP).

// Unix only: network namespaces, Unix signals and SO_TIMESTAMPNS (nix).
#![cfg(unix)]

mod support;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::{Arc, Mutex};

use calloutd_engine::{
    Engine, EngineOptions, HookFault, Hooks, LeaseLockHeld, MemoryLeaseStore, NoProber, PktContext,
};
use calloutd_server::{Server, ServerConfig};
use dhcproto::v4::{DhcpOption, Flags, Message, MessageType};
use dhcproto::{Decodable, Encodable};
use dhcpssdk::{ClientType, ControlCode, DropReason, GiveCode, ProbCode};
use support::{is_root, Namespace, PATIENCE};

const SCOPES: &str = r#"Dhcp Server \\test add scope 198.18.0.0 255.255.255.0 "veth" ""
Dhcp Server \\test Scope 198.18.0.0 set state 1
Dhcp Server \\test Scope 198.18.0.0 Add iprange 198.18.0.10 198.18.0.20
Dhcp Server \\test Scope 198.18.0.0 set optionvalue 51 DWORD "3600"
"#;
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const MAC: [u8; 6] = [0x02, 0, 0, 0, 0x18, 0x01];

/// Hook calls by name and code.
#[derive(Default)]
struct Trace(Mutex<Vec<String>>);

impl Trace {
    fn push(&self, call: String) {
        self.0.lock().unwrap().push(call);
    }
}

impl Hooks for Trace {
    fn control(&self, code: ControlCode) {
        self.push(format!("Control({code})"));
    }
    fn new_pkt(
        &self,
        _: &mut Vec<u8>,
        ip: Ipv4Addr,
        _: &mut PktContext,
    ) -> Result<bool, HookFault> {
        self.push(format!("NewPkt({ip})"));
        Ok(true)
    }
    fn handle_options(&self, _: &[u8], _: PktContext, _: Option<Ipv4Addr>) {
        self.push("HandleOptions".into());
    }
    fn pkt_drop(&self, _: &mut Vec<u8>, reason: DropReason, _: Ipv4Addr, _: PktContext) {
        self.push(format!("PktDrop({reason})"));
    }
    fn pkt_send(&self, _: &mut Vec<u8>, _: Ipv4Addr, _: PktContext) -> Result<(), HookFault> {
        self.push("PktSend".into());
        Ok(())
    }
    fn address_del(
        &self,
        _: &LeaseLockHeld<'_>,
        _: &[u8],
        code: ProbCode,
        _: Ipv4Addr,
        alt: Ipv4Addr,
        _: PktContext,
    ) {
        self.push(format!("AddressDel({code}, {alt})"));
    }
    fn address_offer(
        &self,
        _: &LeaseLockHeld<'_>,
        _: &[u8],
        code: GiveCode,
        _: Ipv4Addr,
        alt: Ipv4Addr,
        _: ClientType,
        _: u32,
        _: PktContext,
    ) {
        self.push(format!("AddressOffer({code}, {alt})"));
    }
    fn delete_client(&self, _: &LeaseLockHeld<'_>, ip: Ipv4Addr, _: &[u8]) {
        self.push(format!("DeleteClient({ip})"));
    }
}

/// A client socket on 0.0.0.0:68 of `device`, which has no address.
fn client_on(device: &str) -> UdpSocket {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.set_broadcast(true).unwrap();
    socket.bind_device(Some(device.as_bytes())).unwrap();
    socket
        .bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68).into())
        .unwrap();
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    socket
}

fn request(kind: MessageType, extra: &[DhcpOption]) -> Vec<u8> {
    let mut message = Message::new_with_id(
        0x5EED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &MAC,
    );
    message.set_flags(Flags::default().set_broadcast());
    message.opts_mut().insert(DhcpOption::MessageType(kind));
    for option in extra {
        message.opts_mut().insert(option.clone());
    }
    message.to_vec().unwrap()
}

fn answer(socket: &UdpSocket) -> Message {
    let mut buf = [0u8; 1500];
    let (len, _) = socket.recv_from(&mut buf).expect("no answer in time");
    Message::from_bytes(&buf[..len]).unwrap()
}

#[test]
fn broadcast_dora_through_the_runtime_and_the_engine() {
    if !is_root() {
        eprintln!("skipped: needs root for a network namespace");
        return;
    }
    let trace = Arc::new(Trace::default());
    let (server_side, client_side) = Namespace::pair();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let server_thread = {
        let hooks = Arc::clone(&trace);
        server_side.spawn(move || {
            let config = calloutd_config::read_netsh(SCOPES.as_bytes(), "scopes.txt")
                .unwrap()
                .config;
            let engine = Engine::new(
                config,
                EngineOptions::default(),
                hooks.clone(),
                Box::new(MemoryLeaseStore::new()),
                Arc::new(NoProber),
            )
            .unwrap();
            let server_config = ServerConfig {
                interfaces: vec!["probe0".into()],
                workers: 2,
                ..ServerConfig::default()
            };
            let server = Server::start(server_config, Arc::new(engine), hooks).unwrap();
            started_tx.send(()).unwrap();
            let _ = stop_rx.recv_timeout(PATIENCE * 2);
            server.handle().stop();
            server.wait()
        })
    };
    started_rx
        .recv_timeout(PATIENCE)
        .expect("server did not start");
    let (offer, ack) = client_side.run(|| {
        // The client end of the link has no address: it broadcasts from 0.0.0.0:68.
        let client = client_on("probe1");
        let to_servers = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
        client
            .send_to(&request(MessageType::Discover, &[]), to_servers)
            .unwrap();
        let offer = answer(&client);
        client
            .send_to(
                &request(
                    MessageType::Request,
                    &[
                        DhcpOption::ServerIdentifier(SERVER),
                        DhcpOption::RequestedIpAddress(offer.yiaddr()),
                    ],
                ),
                to_servers,
            )
            .unwrap();
        (offer, answer(&client))
    });
    stop_tx.send(()).unwrap();
    let counters = server_thread.join().unwrap();
    assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    let leased = ack.yiaddr();
    assert_eq!(leased, offer.yiaddr());
    assert!(
        (10..=20).contains(&leased.octets()[3]) && leased.octets()[..3] == [198, 18, 0],
        "{leased}"
    );
    assert_eq!(
        (counters.received, counters.sent, counters.send_errors),
        (2, 2, 0)
    );
    let calls = trace.0.lock().unwrap().clone();
    let expected = vec![
        "Control(DHCP_CONTROL_START)".to_string(),
        format!("NewPkt({SERVER})"),
        "HandleOptions".into(),
        "PktSend".into(),
        "PktDrop(DHCP_DROP_PROCESSED)".into(),
        format!("NewPkt({SERVER})"),
        "HandleOptions".into(),
        format!("AddressOffer(DHCP_GIVE_ADDRESS_NEW, {leased})"),
        "PktSend".into(),
        "PktDrop(DHCP_DROP_PROCESSED)".into(),
        "Control(DHCP_CONTROL_STOP)".into(),
    ];
    assert_eq!(calls, expected);
}
