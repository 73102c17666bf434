//! The client and its CLI against a small DHCP responder on loopback.

// Unix only: runs inside network namespaces (SO_BINDTODEVICE).
#![cfg(unix)]

mod support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use calloutd_client::cli::{
    self, ClientCommand, ClientVerb, EXIT_ERROR, EXIT_NAK, EXIT_OK, EXIT_TIMEOUT,
};
use calloutd_client::{Client, ClientSettings, MessageType, Transport};
use clap::Parser;
use serde_json::Value;
use support::{raw_codes, raw_option, Policy, Responder, FORBIDDEN, LEASE, SERVER_ID};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    verb: ClientVerb,
}

/// Runs `calloutd client ARGS...`; returns (exit code, stdout, stderr).
fn run_cli(args: &[&str]) -> (u8, String, String) {
    let verb = Cli::try_parse_from(std::iter::once("client").chain(args.iter().copied()))
        .unwrap()
        .verb;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = cli::run_with(&ClientCommand { verb }, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn settings(mac_last: u8) -> ClientSettings {
    ClientSettings {
        mac: [2, 0, 0, 0, 0, mac_last],
        timeout: Duration::from_secs(2),
        ..ClientSettings::default()
    }
}

fn relay(server: &Responder, giaddr: &str) -> Transport {
    Transport::Relay {
        giaddr: giaddr.parse().unwrap(),
        server: server.addr(),
    }
}

#[test]
fn dora_in_relay_mode_sets_giaddr_and_receives_on_it() {
    let server = Responder::start(Policy::Serve);
    let mut settings = settings(7);
    settings.client_id = Some(vec![1, 2, 0, 0, 0, 0, 7]);
    settings.hostname = Some("pc7".into());
    settings.vendor_class = Some(b"MSFT 5.0".to_vec());
    settings.user_class = Some(b"lab".to_vec());
    let mut client = Client::new(relay(&server, "127.0.0.2:0"), settings).unwrap();
    let local = client.local_addr().unwrap();
    assert_eq!(local.ip(), Ipv4Addr::new(127, 0, 0, 2));

    let dora = client.dora().unwrap();
    assert_eq!(dora.offer.message_type, Some(MessageType::Offer));
    assert_eq!(dora.reply.message_type, Some(MessageType::Ack));
    assert_eq!(dora.reply.xid, dora.offer.xid);
    assert_eq!(dora.reply.yiaddr, Ipv4Addr::new(198, 18, 0, 17));
    assert_eq!(dora.reply.server_id, Some(SERVER_ID));
    assert_eq!(
        (dora.reply.lease_time, dora.reply.t1, dora.reply.t2),
        (Some(LEASE), Some(LEASE / 2), Some(LEASE * 7 / 8))
    );
    assert_eq!(dora.reply.option(1).unwrap().value(), "255.255.255.0");
    assert_eq!(
        dora.reply.option(61).unwrap().data,
        vec![1, 2, 0, 0, 0, 0, 7]
    );
    assert_eq!(dora.reply.giaddr, Ipv4Addr::new(127, 0, 0, 2));
    assert_eq!(dora.reply.from, Some(server.addr().into()));

    let received = server.received();
    assert_eq!(received.len(), 2);
    for r in &received {
        assert_eq!(r.message.giaddr(), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(r.message.hops(), 1);
        assert_eq!(r.from, local);
        assert_eq!(r.replied_to, Some(local));
        assert_eq!(r.raw.len(), 300);
        assert_eq!(r.message.chaddr(), &[2, 0, 0, 0, 0, 7]);
    }
    let (discover, request) = (&received[0].raw, &received[1].raw);
    assert_eq!(raw_codes(discover), vec![53, 61, 12, 60, 77, 55]);
    assert_eq!(raw_option(discover, 12).unwrap(), b"pc7");
    assert_eq!(raw_option(discover, 60).unwrap(), b"MSFT 5.0");
    assert_eq!(raw_option(discover, 77).unwrap(), b"lab");
    assert_eq!(raw_codes(request), vec![53, 61, 50, 54, 12, 60, 77, 55]);
    assert_eq!(raw_option(request, 50).unwrap(), vec![198, 18, 0, 17]);
    assert_eq!(raw_option(request, 54).unwrap(), SERVER_ID.octets());
    assert_eq!(received[1].message.ciaddr(), Ipv4Addr::UNSPECIFIED);
}

#[test]
fn nak_exits_1_with_one_line_reason() {
    let server = Responder::start(Policy::Serve);
    let addr = server.addr().to_string();
    let (code, out, err) = run_cli(&[
        "request",
        "--giaddr",
        "127.0.0.3:0",
        "--server",
        &addr,
        "--requested-ip",
        &FORBIDDEN.to_string(),
        "--server-id",
        "198.18.0.1",
        "--json",
    ]);
    assert_eq!(code, EXIT_NAK, "{err}");
    assert_eq!(err.lines().count(), 1);
    assert!(err.starts_with("NAK from 198.18.0.1"), "{err}");
    assert!(err.contains("address not available"), "{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["message_type"], "NAK");
    // SELECTING: both 50 and 54.
    let request = &server.received_of(MessageType::Request)[0].raw;
    assert_eq!(raw_option(request, 54).unwrap(), SERVER_ID.octets());
}

#[test]
fn timeout_exits_2_after_bounded_retransmissions() {
    let server = Responder::start(Policy::Silent);
    let addr = server.addr().to_string();
    let started = std::time::Instant::now();
    let (code, out, err) = run_cli(&[
        "dora",
        "--server",
        &addr,
        "--bind",
        "127.0.0.1:0",
        "--timeout",
        "0.3",
        "--retries",
        "2",
    ]);
    assert_eq!(code, EXIT_TIMEOUT, "{err}");
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1);
    assert!(err.starts_with("timeout: no reply to DISCOVER"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let sent = server.received();
    assert_eq!(sent.len(), 3);
    assert!(sent
        .iter()
        .all(|r| r.message.xid() == sent[0].message.xid()));
}

#[test]
fn release_and_decline_carry_the_right_fields() {
    let server = Responder::start(Policy::Serve);
    let addr = server.addr().to_string();
    let (code, out, err) = run_cli(&[
        "release",
        "--server",
        &addr,
        "--bind",
        "127.0.0.1:0",
        "--ciaddr",
        "198.18.0.20",
        "--client-id",
        "01:02:00:00:00:00:20",
        "--mac",
        "02:00:00:00:00:20",
        "--hostname",
        "ignored",
    ]);
    assert_eq!(code, EXIT_OK, "{err}");
    assert!(out.starts_with("RELEASE sent to"), "{out}");
    let (code, out, err) = run_cli(&[
        "decline",
        "--server",
        &addr,
        "--bind",
        "127.0.0.1:0",
        "--requested-ip",
        "198.18.0.21",
        "--server-id",
        "198.18.0.9",
        "--json",
    ]);
    assert_eq!(code, EXIT_OK, "{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["sent"], "DECLINE");

    server.wait_received(2);
    let release = &server.received_of(MessageType::Release)[0];
    assert_eq!(release.message.ciaddr(), Ipv4Addr::new(198, 18, 0, 20));
    assert_eq!(raw_codes(&release.raw), vec![53, 61, 54]);
    // Server id defaults to the --server address.
    assert_eq!(raw_option(&release.raw, 54).unwrap(), [127, 0, 0, 1]);
    assert_eq!(release.message.chaddr(), &[2, 0, 0, 0, 0, 0x20]);
    let decline = &server.received_of(MessageType::Decline)[0];
    assert_eq!(decline.message.ciaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(raw_codes(&decline.raw), vec![53, 50, 54]);
    assert_eq!(raw_option(&decline.raw, 50).unwrap(), [198, 18, 0, 21]);
    assert_eq!(raw_option(&decline.raw, 54).unwrap(), [198, 18, 0, 9]);
    assert!(decline.replied_to.is_none() && release.replied_to.is_none());
}

#[test]
fn bootp_with_and_without_cookie() {
    let server = Responder::start(Policy::Serve);
    let mut client = Client::new(relay(&server, "127.0.0.4:0"), settings(3)).unwrap();
    let with = client.bootp(true).unwrap();
    assert_eq!(with.message_type, None);
    assert_eq!(with.type_name(), "BOOTREPLY");
    assert!(with.magic_cookie);
    assert_eq!(with.option(1).unwrap().value(), "255.255.255.0");
    assert_eq!(with.yiaddr, Ipv4Addr::new(198, 18, 0, 13));
    let without = client.bootp(false).unwrap();
    assert!(!without.magic_cookie);
    assert!(without.options.is_empty());
    assert_eq!(without.yiaddr, Ipv4Addr::new(198, 18, 0, 13));

    let received = server.received();
    assert_eq!(&received[0].raw[236..240], &[99, 130, 83, 99]);
    assert!(raw_option(&received[0].raw, 53).is_none());
    assert!(received[1].raw[236..].iter().all(|&b| b == 0));
    assert_eq!(received[1].raw.len(), 300);

    let (code, out, _) = run_cli(&[
        "bootp",
        "--no-cookie",
        "--giaddr",
        "127.0.0.4:0",
        "--server",
        &server.addr().to_string(),
        "--json",
    ]);
    assert_eq!(code, EXIT_OK);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["message_type"], "BOOTREPLY");
    assert_eq!(json["magic_cookie"], false);
}

#[test]
fn option_flags_reach_the_wire() {
    let server = Responder::start(Policy::Serve);
    let addr = server.addr().to_string();
    let (code, _, err) = run_cli(&[
        "discover",
        "--giaddr",
        "127.0.0.5:0",
        "--server",
        &addr,
        "--option",
        "82=0104deadbeef",
        "--option",
        "224=",
        "--option",
        "60=41:42",
        "--vendor-class",
        "replaced",
        "--prl",
        "1,3,252",
        "--requested-ip",
        "198.18.0.77",
    ]);
    assert_eq!(code, EXIT_OK, "{err}");
    let discover = &server.received()[0].raw;
    assert_eq!(
        raw_option(discover, 82).unwrap(),
        vec![1, 4, 0xde, 0xad, 0xbe, 0xef]
    );
    assert_eq!(raw_option(discover, 224).unwrap(), Vec::<u8>::new());
    assert_eq!(raw_option(discover, 60).unwrap(), b"AB");
    assert_eq!(raw_option(discover, 55).unwrap(), vec![1, 3, 252]);
    assert_eq!(raw_option(discover, 50).unwrap(), vec![198, 18, 0, 77]);
    assert_eq!(raw_codes(discover), vec![53, 50, 60, 55, 82, 224]);

    let (code, _, err) = run_cli(&["discover", "--server", &addr, "--option", "82=xyz"]);
    assert_eq!(code, EXIT_ERROR);
    assert!(err.starts_with("error: --option"), "{err}");
}

#[test]
fn json_output_shape() {
    let server = Responder::start(Policy::Serve);
    let addr = server.addr().to_string();
    let (code, out, err) = run_cli(&[
        "dora",
        "--giaddr",
        "127.0.0.6:0",
        "--server",
        &addr,
        "--mac",
        "02:00:00:00:00:09",
        "--json",
    ]);
    assert_eq!(code, EXIT_OK, "{err}");
    assert!(err.is_empty());
    assert_eq!(out.lines().count(), 1);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["message_type"], "ACK");
    assert_eq!(json["yiaddr"], "198.18.0.19");
    assert_eq!(json["server_id"], "198.18.0.1");
    assert_eq!(json["lease_time"], LEASE);
    assert_eq!(json["t1"], LEASE / 2);
    assert_eq!(json["t2"], LEASE * 7 / 8);
    assert_eq!(json["chaddr"], "02:00:00:00:00:09");
    assert_eq!(json["giaddr"], "127.0.0.6");
    assert_eq!(json["offer"]["message_type"], "OFFER");
    let options = json["options"].as_array().unwrap();
    let by_code = |code: u64| options.iter().find(|o| o["code"] == code).unwrap();
    assert_eq!(by_code(53)["value"], "ACK");
    assert_eq!(by_code(53)["name"], "MessageType");
    assert_eq!(by_code(51)["hex"], "00000e10");
    assert_eq!(by_code(3)["value"], "198.18.0.1");
    assert_eq!(
        json["raw"].as_str().unwrap().len(),
        2 * json["length"].as_u64().unwrap() as usize
    );

    let (code, out, _) = run_cli(&[
        "dora",
        "--giaddr",
        "127.0.0.6:0",
        "--server",
        &addr,
        "--mac",
        "02:00:00:00:00:09",
    ]);
    assert_eq!(code, EXIT_OK);
    assert!(
        out.lines()
            .nth(1)
            .unwrap()
            .starts_with("ACK 198.18.0.19 server 198.18.0.1 lease 3600s"),
        "{out}"
    );
}

#[test]
fn renew_rebind_inform_and_init_reboot() {
    let server = Responder::start(Policy::Serve);
    let unicast = Transport::Unicast {
        local: "127.0.0.1:0".parse().unwrap(),
        server: server.addr(),
    };
    let mut client = Client::new(unicast, settings(30)).unwrap();
    let ciaddr = Ipv4Addr::new(198, 18, 0, 30);

    let renew = client.renew(ciaddr).unwrap();
    assert_eq!(
        (renew.message_type, renew.yiaddr),
        (Some(MessageType::Ack), ciaddr)
    );
    let rebind = client.rebind(ciaddr).unwrap();
    assert_eq!(rebind.message_type, Some(MessageType::Ack));
    let inform = client.inform(ciaddr).unwrap();
    assert_eq!(inform.message_type, Some(MessageType::Ack));
    assert_eq!(inform.lease_time, None);
    let reboot = client.init_reboot(Ipv4Addr::new(198, 18, 0, 31)).unwrap();
    assert_eq!(reboot.yiaddr, Ipv4Addr::new(198, 18, 0, 31));
    let wrong_net = client.init_reboot(Ipv4Addr::new(192, 0, 2, 1)).unwrap();
    assert!(wrong_net.is_nak());

    let requests = server.received_of(MessageType::Request);
    for r in &requests[..2] {
        assert_eq!(r.message.ciaddr(), ciaddr);
        assert_eq!(r.message.giaddr(), Ipv4Addr::UNSPECIFIED);
        assert!(raw_option(&r.raw, 50).is_none() && raw_option(&r.raw, 54).is_none());
    }
    assert_eq!(requests[2].message.ciaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(raw_option(&requests[2].raw, 50).unwrap(), [198, 18, 0, 31]);
    assert!(raw_option(&requests[2].raw, 54).is_none());
    let inform = &server.received_of(MessageType::Inform)[0];
    assert_eq!(inform.message.ciaddr(), ciaddr);
    assert!(raw_option(&inform.raw, 50).is_none());

    // The CLI verbs map to the same messages.
    let addr = server.addr().to_string();
    let (code, out, err) = run_cli(&[
        "renew",
        "--server",
        &addr,
        "--bind",
        "127.0.0.1:0",
        "--ciaddr",
        "198.18.0.40",
    ]);
    assert_eq!(code, EXIT_OK, "{err}");
    assert!(out.starts_with("ACK 198.18.0.40"), "{out}");
    let (code, _, err) = run_cli(&["rebind", "--server", &addr, "--bind", "127.0.0.1:0"]);
    assert_eq!(code, EXIT_ERROR);
    assert_eq!(err.trim(), "error: rebind needs --ciaddr");
}

#[test]
fn fixed_xid_and_broadcast_flag() {
    let server = Responder::start(Policy::Serve);
    let (code, out, err) = run_cli(&[
        "discover",
        "--giaddr",
        "127.0.0.7:0",
        "--server",
        &server.addr().to_string(),
        "--xid",
        "0xdeadbeef",
        "--broadcast",
        "--json",
    ]);
    assert_eq!(code, EXIT_OK, "{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["xid"], "0xdeadbeef");
    assert_eq!(json["broadcast_flag"], true);
    let discover = &server.received()[0];
    assert_eq!(discover.message.xid(), 0xdeadbeef);
    assert!(discover.message.flags().broadcast());
}

#[test]
fn unreachable_relay_address_is_an_error_not_a_timeout() {
    // 192.0.2.1 (TEST-NET-1) is not a local address: bind fails at once.
    let server: SocketAddrV4 = "127.0.0.1:9".parse().unwrap();
    let error = Client::new(
        Transport::Relay {
            giaddr: "192.0.2.1:0".parse().unwrap(),
            server,
        },
        settings(1),
    )
    .unwrap_err();
    assert!(error.to_string().starts_with("bind 192.0.2.1:0"), "{error}");
}
