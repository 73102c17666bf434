//! Policies (IP ranges, lease durations, wildcards, renewals), superscopes, option overload into
//! `file`/`sname` and the option 81 answer, through `Engine::handle` as the other pipeline tests.

use super::*;
use calloutd_config::{Policy, PolicyCondition, PolicyCriterion, PolicyField};

/// A MAC of the policy's prefix `02-00-00-0b`.
fn policy_mac(n: u8) -> [u8; 6] {
    [0x02, 0, 0, 0x0b, 0, n]
}

/// [`message`] from a client whose MAC starts with `02-00-00-0b` (client id none: chaddr is its
/// identity).
fn from_policy_client(kind: MessageType, n: u8) -> Message {
    let mut m = message(kind, n);
    m.set_chaddr(&policy_mac(n));
    m
}

fn policy(name: &str, order: u32, criteria: Vec<PolicyCriterion>, first: u8, last: u8) -> Policy {
    Policy {
        name: name.into(),
        processing_order: order,
        enabled: true,
        condition: PolicyCondition::And,
        criteria,
        ip_ranges: vec![ExclusionRange {
            start_range: ip(first),
            end_range: ip(last),
        }],
        option_values: vec![],
        lease_duration: Some(Duration::from_secs(600)),
        description: String::new(),
    }
}

fn mac_prefix() -> PolicyCriterion {
    PolicyCriterion {
        field: PolicyField::MacAddress,
        equal: true,
        values: vec!["02-00-00-0b-*".into()],
    }
}

/// [`config`] with `policies` on the main scope (policies on).
fn config_with(policies: Vec<Policy>) -> ServerConfig {
    let mut cfg = config();
    cfg.scopes[0].activate_policies = true;
    cfg.scopes[0].policies = policies;
    cfg
}

/// DISCOVER + REQUEST for a policy client; the ACK.
fn policy_dora(h: &Harness, n: u8) -> Message {
    let offer = h.send(&from_policy_client(MessageType::Discover, n));
    let offered = decode(&offer).yiaddr();
    let request = with(
        from_policy_client(MessageType::Request, n),
        [
            DhcpOption::ServerIdentifier(SERVER),
            DhcpOption::RequestedIpAddress(offered),
        ],
    );
    let ack = h.send(&request);
    assert_eq!(ack.reply_type, Some(5), "ACK for policy client {n}");
    decode(&ack)
}

#[test]
fn a_mac_wildcard_policy_sets_range_lease_and_t1_t2() {
    let (_dir, h) = fresh_harness_with(config_with(vec![policy(
        "lab-macs",
        1,
        vec![mac_prefix()],
        40,
        42,
    )]));
    let offer = decode(&h.send(&from_policy_client(MessageType::Discover, 1)));
    assert_eq!(offer.yiaddr(), ip(40));
    assert_eq!(u32_option(&offer, OptionCode::AddressLeaseTime), Some(600));
    h.hooks.take();
    let ack = policy_dora(&h, 1);
    assert_eq!(ack.yiaddr(), ip(40));
    assert_eq!(u32_option(&ack, OptionCode::AddressLeaseTime), Some(600));
    assert_eq!(u32_option(&ack, OptionCode::Renewal), Some(300));
    assert_eq!(u32_option(&ack, OptionCode::Rebinding), Some(525));
    let calls = h.hooks.take();
    assert!(
        calls.contains(&Call::AddressOffer(
            GiveCode::New,
            SERVER,
            ip(40),
            ClientType::Dhcp,
            600
        )),
        "AddressOffer's LeaseTime is the policy's: {calls:?}"
    );
    // A client outside the wildcard gets the scope's lease from outside every policy range.
    let other = h.dora(1);
    assert_eq!(other, ip(13));
    let mut leases = h.engine.leases();
    leases.sort_by_key(|l| l.ip);
    assert_eq!(
        leases[0].expires,
        Some(start() + Duration::from_secs(3600)),
        "the non-policy client keeps the scope's hour"
    );
    // The same wildcard with NE: the policy now takes every client except the 02-00-00-0b ones.
    let mut ne = mac_prefix();
    ne.equal = false;
    let (_dir2, h2) = fresh_harness_with(config_with(vec![policy("others", 1, vec![ne], 40, 42)]));
    assert_eq!(h2.offered(1), ip(40));
    assert_eq!(
        decode(&h2.send(&from_policy_client(MessageType::Discover, 2))).yiaddr(),
        ip(13)
    );
}

#[test]
fn an_exhausted_policy_range_moves_to_the_next_policy_then_gives_nothing() {
    let (_dir, h) = fresh_harness_with(config_with(vec![
        policy("second", 2, vec![mac_prefix()], 45, 45),
        policy("first", 1, vec![mac_prefix()], 40, 41),
    ]));
    assert_eq!(policy_dora(&h, 1).yiaddr(), ip(40));
    assert_eq!(policy_dora(&h, 2).yiaddr(), ip(41));
    assert_eq!(policy_dora(&h, 3).yiaddr(), ip(45), "next policy's range");
    h.hooks.take();
    // Every matching policy's range is full: no address, although the common pool has plenty.
    let outcome = h.send(&from_policy_client(MessageType::Discover, 4));
    h.assert_dropped(&outcome, DropReason::NoAddress);
    // Policies off for the scope (ActivatePolicies=false): the same client is an ordinary one.
    let mut cfg = config_with(vec![policy("first", 1, vec![mac_prefix()], 40, 41)]);
    cfg.scopes[0].activate_policies = false;
    let (_dir2, h2) = fresh_harness_with(cfg);
    let ack = policy_dora(&h2, 1);
    assert_eq!(ack.yiaddr(), ip(13));
    assert_eq!(u32_option(&ack, OptionCode::AddressLeaseTime), Some(3600));
}

fn relay_ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 0, last)
}

/// [`config`] whose relayed scope 198.19.0.0/24 has the policy "ports": circuit id `port-*` OR
/// remote id 01 02, range .30-.31, 600 s leases, domain name `ports.lab`.
fn ports_config() -> ServerConfig {
    let mut cfg = config();
    cfg.scopes[1].activate_policies = true;
    cfg.scopes[1].policies = vec![Policy {
        condition: PolicyCondition::Or,
        ip_ranges: vec![ExclusionRange {
            start_range: relay_ip(30),
            end_range: relay_ip(31),
        }],
        option_values: vec![OptionValue {
            option_id: 15,
            value: vec![OptionElement::String("ports.lab".into())],
            vendor_class: None,
            user_class: None,
        }],
        ..policy(
            "ports",
            1,
            vec![
                PolicyCriterion {
                    field: PolicyField::CircuitId,
                    equal: true,
                    values: vec!["706f72742d*".into()], // "port-*"
                },
                PolicyCriterion {
                    field: PolicyField::RemoteId,
                    equal: true,
                    values: vec!["0102".into()],
                },
            ],
            0,
            0,
        )
    }];
    cfg
}

/// `m` asking for the subnet mask and the domain name.
fn ask_domain(m: Message) -> Message {
    with(
        m,
        [DhcpOption::ParameterRequestList(vec![
            OptionCode::SubnetMask,
            OptionCode::DomainName,
        ])],
    )
}

/// Client 1's DORA through the relay with circuit id `port-7` (policy "ports").
fn ports_dora(h: &Harness) {
    let mut discover = ask_domain(with(
        message(MessageType::Discover, 1),
        [agent_circuit(b"port-7")],
    ));
    discover.set_giaddr(RELAY);
    let offer = decode(&h.send(&discover));
    assert_eq!(offer.yiaddr(), relay_ip(30));
    let mut request = with(
        discover.clone(),
        [
            DhcpOption::MessageType(MessageType::Request),
            DhcpOption::ServerIdentifier(SERVER),
            DhcpOption::RequestedIpAddress(relay_ip(30)),
        ],
    );
    request.set_giaddr(RELAY);
    let ack = h.send(&request);
    assert_eq!(ack.reply_type, Some(5));
    assert_eq!(
        decode(&ack).opts().get(OptionCode::DomainName),
        Some(&DhcpOption::DomainName("ports.lab".into()))
    );
}

/// Client 1's renewal of relay_ip(30) straight to the server (no relay, no option 82) must keep the
/// policy's lease and options.
fn assert_renewal_keeps_ports_policy(h: &Harness) {
    h.hooks.take();
    let renew = h.send_to(&ask_domain(renewal(1, relay_ip(30))), SERVER);
    assert_eq!(renew.reply_type, Some(5), "renewal ACKed");
    let renewed_ack = decode(&renew);
    assert_eq!(
        u32_option(&renewed_ack, OptionCode::AddressLeaseTime),
        Some(600)
    );
    assert_eq!(
        renewed_ack.opts().get(OptionCode::DomainName),
        Some(&DhcpOption::DomainName("ports.lab".into()))
    );
    assert_eq!(
        h.hooks.take()[1],
        Call::HandleOptions(Some(Ipv4Addr::new(198, 19, 0, 0)))
    );
}

#[test]
fn or_conditions_over_relay_criteria_and_renewals_keep_the_policy() {
    let (_dir, h) = fresh_harness_with(ports_config());
    ports_dora(&h);
    // The renewal goes straight to us: no relay, no option 82. It keeps the policy's lease and
    // options, and is served in its own address's scope.
    h.clock.advance(Duration::from_secs(300));
    assert_renewal_keeps_ports_policy(&h);
}

#[test]
fn a_restart_keeps_the_policy_a_lease_was_granted_under() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leases.db");
    let clock = Arc::new(ManualClock::new(start()));
    let h = harness_with(ports_config(), &db, Arc::new(NoProber), clock.clone());
    ports_dora(&h);
    drop(h);
    // The lease database holds the policy's name.
    let stored = crate::store::testing::open_store(&db)
        .unwrap()
        .load_all()
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].policy_name.as_deref(), Some("ports"));
    // After the restart, the renewal that shows nothing of what matched still gets the policy's
    // decisions, and the renewed lease keeps the name.
    clock.advance(Duration::from_secs(300));
    let h = harness_with(ports_config(), &db, Arc::new(NoProber), clock);
    assert_renewal_keeps_ports_policy(&h);
    let kept = h.engine.leases();
    assert_eq!(kept[0].policy_name.as_deref(), Some("ports"));
}

/// Scopes 198.19 (pool .10 only), 198.20 (inactive) and 198.21 in superscope "lab"; 198.18 alone.
fn superscope_config() -> ServerConfig {
    let mut cfg = config();
    cfg.scopes[1].end_range = Ipv4Addr::new(198, 19, 0, 10);
    let mut inactive = scope(20, 10, 50);
    inactive.state = ScopeState::Inactive;
    cfg.scopes.push(inactive);
    cfg.scopes.push(scope(21, 10, 50));
    for s in &mut cfg.scopes[1..] {
        s.superscope_name = Some("Lab".into());
    }
    cfg.scopes[3].superscope_name = Some("lab".into());
    cfg
}

fn relayed(mut m: Message) -> Message {
    m.set_giaddr(RELAY);
    m.set_hops(1);
    m
}

#[test]
fn a_superscope_serves_from_its_other_active_scopes() {
    let (_dir, h) = fresh_harness_with(superscope_config());
    let net = |third, last| Ipv4Addr::new(198, third, 0, last);
    // Client 1 takes the relay scope's only address.
    let offer1 = h.send(&relayed(message(MessageType::Discover, 1)));
    assert_eq!(decode(&offer1).yiaddr(), net(19, 10));
    assert_eq!(
        h.hooks.take()[1],
        Call::HandleOptions(Some(net(19, 0))),
        "the relay's scope serves first"
    );
    // Client 2 is served from 198.21 (198.20 is inactive), and HandleOptions names that scope.
    let offer2 = h.send(&relayed(message(MessageType::Discover, 2)));
    let offered = decode(&offer2);
    assert_eq!(offered.yiaddr(), net(21, 10));
    assert_eq!(
        offered.opts().get(OptionCode::SubnetMask),
        Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
    );
    assert_eq!(
        offered.opts().get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![net(21, 1)])),
        "the serving scope's options"
    );
    assert_eq!(h.hooks.take()[1], Call::HandleOptions(Some(net(21, 0))));
    let ack = h.send(&relayed(request_for(2, net(21, 10))));
    assert_eq!(ack.reply_type, Some(5));
    assert_eq!(h.hooks.take()[1], Call::HandleOptions(Some(net(21, 0))));
    // INIT-REBOOT through the relay for the address in the other member: valid, not wrong-subnet.
    let reboot = h.send(&relayed(init_reboot(2, net(21, 10))));
    assert_eq!(reboot.reply_type, Some(5), "INIT-REBOOT in a sibling scope");
    // An address of the inactive member is not ours to confirm.
    let wrong = h.send(&relayed(init_reboot(2, net(20, 10))));
    assert_eq!(wrong.reply_type, Some(6));
    // A renewal straight to us.
    let renew = h.send_to(&renewal(2, net(21, 10)), SERVER);
    assert_eq!(renew.reply_type, Some(5));
    // A relay in the inactive member still reaches the active ones.
    let mut via_inactive = message(MessageType::Discover, 3);
    via_inactive.set_giaddr(net(20, 1));
    h.hooks.take();
    let offer3 = h.send(&via_inactive);
    assert_eq!(decode(&offer3).yiaddr(), net(21, 11));
    // A scope outside the superscope is not a fallback: 198.18 stays apart.
    let mut cfg = superscope_config();
    cfg.scopes[3].state = ScopeState::Inactive;
    let (_dir2, h2) = fresh_harness_with(cfg);
    assert_eq!(
        decode(&h2.send(&relayed(message(MessageType::Discover, 1)))).yiaddr(),
        net(19, 10)
    );
    let full = h2.send(&relayed(message(MessageType::Discover, 2)));
    assert_eq!(full.dropped, Some(DropReason::NoAddress));
}

/// Options of one options area (`area` from its first byte), as (code, data), up to END.
fn area_options(area: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < area.len() {
        match area[at] {
            0 => at += 1,
            255 => break,
            code => {
                let len = usize::from(area[at + 1]);
                out.push((code, area[at + 2..at + 2 + len].to_vec()));
                at += 2 + len;
            }
        }
    }
    out
}

fn text_option(id: u8, len: usize) -> OptionValue {
    OptionValue {
        option_id: id,
        value: vec![OptionElement::String("x".repeat(len))],
        vendor_class: None,
        user_class: None,
    }
}

#[test]
fn an_overload_uses_file_then_sname_and_drops_what_fits_nowhere() {
    let mut cfg = config();
    // 252 bytes of option 15 fill most of the 308-byte options field of a 576-byte reply; 17 then
    // goes to `file`, 40 to `sname`; 64 (too big for anything left) is dropped.
    cfg.scopes[0].option_values.extend([
        text_option(15, 250),
        text_option(17, 120),
        text_option(40, 50),
        text_option(64, 100),
    ]);
    let (_dir, h) = fresh_harness_with(cfg);
    let discover = with(
        message(MessageType::Discover, 1),
        [DhcpOption::ParameterRequestList(vec![
            OptionCode::SubnetMask,
            OptionCode::Router,
            OptionCode::DomainName,
            OptionCode::RootPath,
            OptionCode::NisDomain,
            OptionCode::NispServiceDomain,
        ])],
    );
    let offer = h.send(&discover);
    let bytes = &offer.reply.as_ref().unwrap().bytes;
    assert!(
        bytes.len() <= 548,
        "{} bytes in a 576-byte datagram",
        bytes.len()
    );
    let main = area_options(&bytes[240..]);
    let codes: Vec<u8> = main.iter().map(|(c, _)| *c).collect();
    assert_eq!(codes, [53, 54, 51, 58, 59, 1, 3, 15, 52]);
    assert_eq!(main[8].1, [3], "option 52: file and sname");
    let file = area_options(&bytes[108..236]);
    assert_eq!(file.len(), 1);
    assert_eq!((file[0].0, file[0].1.len()), (17, 120));
    let sname = area_options(&bytes[44..108]);
    assert_eq!(sname.len(), 1);
    assert_eq!((sname[0].0, sname[0].1.len()), (40, 50));
    // Our own parser (which follows option 52) sees the message type; a larger option 57 room
    // takes everything in the options field.
    let big = with(discover, [DhcpOption::MaxMessageSize(1500)]);
    let offer = h.send(&big);
    let bytes = &offer.reply.as_ref().unwrap().bytes;
    let codes: Vec<u8> = area_options(&bytes[240..])
        .iter()
        .map(|(c, _)| *c)
        .collect();
    assert_eq!(codes, [53, 54, 51, 58, 59, 1, 3, 15, 17, 40, 64]);
    assert!(bytes[44..236].iter().all(|b| *b == 0), "no overload needed");
}

#[test]
fn option_81_is_answered_with_microsofts_default_flags() {
    let (_dir, h) = fresh_harness();
    let fqdn = |flags: u8| {
        let mut m = message(MessageType::Discover, 1);
        m.opts_mut()
            .insert(DhcpOption::Unknown(dhcproto::v4::UnknownOption::new(
                OptionCode::ClientFQDN,
                [&[flags, 0, 0][..], b"pc1.lab.example"].concat(),
            )));
        m
    };
    let answer = |flags: u8| {
        let offer = h.send(&fqdn(flags));
        let bytes = offer.reply.unwrap().bytes;
        area_options(&bytes[240..])
            .into_iter()
            .find(|(c, _)| *c == 81)
            .map(|(_, d)| d)
    };
    let expect = |flags: u8| Some([&[flags, 255, 255][..], b"pc1.lab.example"].concat());
    // S = 0 (the client updates its A record): S = 0 back; S = 1: kept; N: S cleared, N echoed.
    assert_eq!(answer(0x00), expect(0x00));
    assert_eq!(answer(0x01), expect(0x01));
    assert_eq!(answer(0x05), expect(0x05));
    assert_eq!(answer(0x09), expect(0x08));
    // No option 81, no answer.
    let plain = h.send(&message(MessageType::Discover, 1));
    assert!(!option_order(&plain.reply.unwrap().bytes).contains(&81));
}

#[test]
fn an_acks_option_81_writes_dns_events_30_and_35_when_the_server_would_update() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start()));
    let audit = audit_log(&dir.path().join("audit"), clock.clone());
    let h = harness_audited(
        config(),
        &dir.path().join("leases.db"),
        Arc::new(NoProber),
        clock.clone(),
        Some(audit.clone()),
    );
    let fqdn = |flags: u8, name: &[u8]| {
        DhcpOption::Unknown(dhcproto::v4::UnknownOption::new(
            OptionCode::ClientFQDN,
            [&[flags, 0, 0][..], name].concat(),
        ))
    };
    // DORA, the client asking the server to update A and PTR (S = 1, canonical wire name).
    let wire_name = b"\x03pc1\x03lab\x07example\x00";
    let offered = decode(&h.send(&with(
        message(MessageType::Discover, 1),
        [fqdn(0x05, wire_name)],
    )))
    .yiaddr();
    let ack = h.send(&with(request_for(1, offered), [fqdn(0x05, wire_name)]));
    assert_eq!(ack.reply_type, Some(5));
    // A renewal with N = 1 (no server update): no DNS events.
    let renew = h.send_to(
        &with(renewal(1, offered), [fqdn(0x08, b"pc1.lab.example")]),
        SERVER,
    );
    assert_eq!(renew.reply_type, Some(5));
    // Another client with S = 0 (the client updates A, the server the PTR) in the old ASCII form;
    // one without option 81 gets nothing either.
    let offered2 = h.offered(2);
    let ack2 = h.send(&with(
        request_for(2, offered2),
        [fqdn(0x00, b"pc2.lab.example.")],
    ));
    assert_eq!(ack2.reply_type, Some(5));
    h.dora(3);

    let events = audit_events(&audit, &clock);
    let ids: Vec<u8> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids, [10, 30, 35, 11, 10, 30, 35, 10]);
    let (request, failed) = (&events[1], &events[2]);
    assert_eq!(request.description, "DNS Update Request");
    assert_eq!(
        (request.ip, request.host_name.as_str()),
        (Some(offered), "pc1.lab.example")
    );
    assert_eq!(failed.description, "DNS Update Request Failed");
    assert_eq!(
        (failed.ip, failed.host_name.as_str()),
        (Some(offered), "pc1.lab.example")
    );
    // Written as Microsoft's DNS thread writes them: no MAC, xid 0, QResult 6; the failure's
    // DnsRegError is DNS_ERROR_NO_DNS_SERVERS.
    for dns in [request, failed] {
        assert_eq!(dns.mac, "");
        assert_eq!((dns.transaction_id, dns.qresult), (Some(0), Some(6)));
    }
    assert_eq!(request.dns_reg_error, "0");
    assert_eq!(failed.dns_reg_error, "9852");
    assert_eq!(events[5].host_name, "pc2.lab.example");
    assert_eq!(events[5].ip, Some(offered2));
}
