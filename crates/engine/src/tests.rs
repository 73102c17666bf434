//! Pipeline tests: real DHCP packets (built with dhcproto) through `Engine::handle`, with a hook
//! implementation that records every call, and a temporary SQLite lease database.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use calloutd_config::{
    ExclusionRange, Filter, FilterList, Filters, MacPattern, OptionElement, OptionValue,
    Reservation, Scope, ScopeState, ScopeType, ServerConfig,
};
use dhcproto::v4::{
    relay::{RelayAgentInformation, RelayInfo},
    DhcpOption, Flags, Message, MessageType, OptionCode,
};
use dhcproto::{Decodable, Encodable};
use dhcpssdk::{ClientType, ControlCode, DropReason, GiveCode, ProbCode};

use crate::*;

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const RELAY: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, last)
}

/// One recorded hook call.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    NewPkt,
    HandleOptions(Option<Ipv4Addr>),
    PktDrop(DropReason),
    PktSend,
    AddressDel(ProbCode, Ipv4Addr, Ipv4Addr),
    AddressOffer(GiveCode, Ipv4Addr, Ipv4Addr, ClientType, u32),
    DeleteClient(Ipv4Addr, Vec<u8>),
}

/// What PktSend does (0 = pass the reply on).
const SEND_SUPPRESS: u8 = 1;
const SEND_FAULT: u8 = 2;

/// Records every hook call with whether the lease lock was held and the packet context it saw.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<(Call, bool, PktContext)>>,
    lock_probe: OnceLock<LeaseLockProbe>,
    refuse: AtomicBool,
    send_mode: AtomicU8,
    next_ctx: AtomicUsize,
}

impl Recorder {
    fn record(&self, call: Call, ctx: PktContext) {
        let locked = self.lock_probe.get().is_some_and(LeaseLockProbe::is_locked);
        self.calls.lock().unwrap().push((call, locked, ctx));
    }

    /// The calls so far with the lease lock state seen (cleared), unchecked.
    fn take_raw(&self) -> Vec<(Call, bool, PktContext)> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    /// The calls so far (cleared), after checking the lock model and the context hand-over. Only for
    /// single-threaded use: another worker holding the lock would look like this one holding it.
    fn take(&self) -> Vec<Call> {
        let calls = std::mem::take(&mut *self.calls.lock().unwrap());
        let mut ctx = None;
        for (call, locked, seen) in &calls {
            let under_lock = matches!(
                call,
                Call::AddressDel(..) | Call::AddressOffer(..) | Call::DeleteClient(..)
            );
            assert_eq!(*locked, under_lock, "lease lock state during {call:?}");
            match call {
                Call::NewPkt => ctx = Some(*seen),
                Call::DeleteClient(..) => {}
                _ => assert_eq!(Some(*seen), ctx, "PktContext of {call:?}"),
            }
        }
        calls.into_iter().map(|(call, _, _)| call).collect()
    }
}

impl Hooks for Recorder {
    fn control(&self, _: ControlCode) {}
    fn new_pkt(
        &self,
        _: &mut Vec<u8>,
        _: Ipv4Addr,
        ctx: &mut PktContext,
    ) -> Result<bool, HookFault> {
        *ctx = 1000 + self.next_ctx.fetch_add(1, Ordering::Relaxed);
        self.record(Call::NewPkt, *ctx);
        Ok(!self.refuse.load(Ordering::Relaxed))
    }
    fn handle_options(&self, _: &[u8], ctx: PktContext, scope_id: Option<Ipv4Addr>) {
        self.record(Call::HandleOptions(scope_id), ctx);
    }
    fn pkt_drop(&self, _: &mut Vec<u8>, reason: DropReason, _: Ipv4Addr, ctx: PktContext) {
        self.record(Call::PktDrop(reason), ctx);
    }
    fn pkt_send(&self, reply: &mut Vec<u8>, _: Ipv4Addr, ctx: PktContext) -> Result<(), HookFault> {
        self.record(Call::PktSend, ctx);
        match self.send_mode.load(Ordering::Relaxed) {
            SEND_SUPPRESS => {
                reply.clear();
                Ok(())
            }
            SEND_FAULT => Err(HookFault("size above the buffer".into())),
            _ => Ok(()),
        }
    }
    fn address_del(
        &self,
        _: &LeaseLockHeld<'_>,
        _: &[u8],
        code: ProbCode,
        ip: Ipv4Addr,
        alt: Ipv4Addr,
        ctx: PktContext,
    ) {
        self.record(Call::AddressDel(code, ip, alt), ctx);
    }
    fn address_offer(
        &self,
        _: &LeaseLockHeld<'_>,
        _: &[u8],
        code: GiveCode,
        ip: Ipv4Addr,
        alt: Ipv4Addr,
        client_type: ClientType,
        lease_secs: u32,
        ctx: PktContext,
    ) {
        self.record(
            Call::AddressOffer(code, ip, alt, client_type, lease_secs),
            ctx,
        );
    }
    fn delete_client(&self, _: &LeaseLockHeld<'_>, ip: Ipv4Addr, hw: &[u8]) {
        self.record(Call::DeleteClient(ip, hw.to_vec()), 0);
    }
}

/// Says "in use" for the listed addresses.
struct BusyProber(Vec<Ipv4Addr>);

impl Prober for BusyProber {
    fn probe(&self, ip: Ipv4Addr, attempts: u8) -> bool {
        assert!(attempts > 0);
        self.0.contains(&ip)
    }
}

fn scope(third: u8, first: u8, last: u8) -> Scope {
    Scope {
        name: format!("net{third}"),
        lease_duration: Some(Duration::from_secs(3600)),
        option_values: vec![
            OptionValue {
                option_id: 3,
                value: vec![OptionElement::IPv4Address(Ipv4Addr::new(198, third, 0, 1))],
                vendor_class: None,
                user_class: None,
            },
            OptionValue {
                option_id: 6,
                value: vec![OptionElement::IPv4Address(Ipv4Addr::new(198, third, 0, 2))],
                vendor_class: None,
                user_class: None,
            },
        ],
        ..Scope::new(
            Ipv4Addr::new(198, third, 0, 0),
            Ipv4Addr::new(255, 255, 255, 0),
            Ipv4Addr::new(198, third, 0, first),
            Ipv4Addr::new(198, third, 0, last),
        )
    }
}

/// 198.18.0.0/24 with pool .10-.50 and .10-.12 excluded; 198.19.0.0/24 for relayed clients.
fn config() -> ServerConfig {
    let mut main = scope(18, 10, 50);
    main.exclusion_ranges.push(ExclusionRange {
        start_range: ip(10),
        end_range: ip(12),
    });
    ServerConfig {
        scopes: vec![main, scope(19, 10, 50)],
        ..ServerConfig::default()
    }
}

struct Harness {
    engine: Engine,
    hooks: Arc<Recorder>,
    clock: Arc<ManualClock>,
}

fn start() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn harness_with(
    config: ServerConfig,
    db: &Path,
    prober: Arc<dyn Prober>,
    clock: Arc<ManualClock>,
) -> Harness {
    harness_audited(config, db, prober, clock, None)
}

fn harness_audited(
    config: ServerConfig,
    db: &Path,
    prober: Arc<dyn Prober>,
    clock: Arc<ManualClock>,
    audit: Option<Arc<AuditLog>>,
) -> Harness {
    harness_options(
        config,
        db,
        prober,
        EngineOptions {
            clock: clock.clone(),
            audit,
            ..EngineOptions::default()
        },
        clock,
    )
}

fn harness_options(
    config: ServerConfig,
    db: &Path,
    prober: Arc<dyn Prober>,
    options: EngineOptions,
    clock: Arc<ManualClock>,
) -> Harness {
    let hooks = Arc::new(Recorder::default());
    let store = crate::store::testing::open_store(db).unwrap();
    let engine = Engine::new(config, options, hooks.clone(), Box::new(store), prober).unwrap();
    let _ = hooks.lock_probe.set(engine.lease_lock_probe());
    Harness {
        engine,
        hooks,
        clock,
    }
}

fn harness(config: ServerConfig, db: &Path) -> Harness {
    harness_with(
        config,
        db,
        Arc::new(NoProber),
        Arc::new(ManualClock::new(start())),
    )
}

/// A harness on [`config`] over a database in a fresh directory (dropping the directory removes it).
fn fresh_harness() -> (tempfile::TempDir, Harness) {
    fresh_harness_with(config())
}

/// A harness on `config` over a database in a fresh directory.
fn fresh_harness_with(config: ServerConfig) -> (tempfile::TempDir, Harness) {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(config, &dir.path().join("leases.db"));
    (dir, h)
}

fn mac(n: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, n]
}

/// A request from client `n` (broadcast flag set, asking for mask and router).
fn message(kind: MessageType, n: u8) -> Message {
    let mut m = Message::new_with_id(
        0x1000 + u32::from(n),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac(n),
    );
    m.set_flags(Flags::default().set_broadcast());
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    m.opts_mut().insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
    ]));
    m
}

fn datagram(m: &Message, dst: Ipv4Addr) -> Datagram {
    datagram_bytes(m.to_vec().unwrap(), dst)
}

fn datagram_bytes(bytes: Vec<u8>, dst: Ipv4Addr) -> Datagram {
    Datagram {
        bytes,
        if_addr: SERVER,
        dst_addr: dst,
        peer: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
    }
}

/// `m` with `options` added (replacing any of the same code).
fn with(mut m: Message, options: impl IntoIterator<Item = DhcpOption>) -> Message {
    for option in options {
        m.opts_mut().insert(option);
    }
    m
}

/// `engine` processes `m` sent to `dst`.
fn handle(engine: &Engine, m: &Message, dst: Ipv4Addr) -> Outcome {
    engine.handle(datagram(m, dst), Admission::Process)
}

/// The scope of the directly attached clients.
const MAIN_SCOPE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);

/// The hook calls of one packet selected into `scope`: NewPkt, HandleOptions, `middle`, then the
/// final PktDrop(Processed).
fn calls_in(scope: Option<Ipv4Addr>, middle: impl IntoIterator<Item = Call>) -> Vec<Call> {
    let mut calls = vec![Call::NewPkt, Call::HandleOptions(scope)];
    calls.extend(middle);
    calls.push(Call::PktDrop(DropReason::Processed));
    calls
}

/// [`calls_in`] the main scope.
fn main_calls(middle: impl IntoIterator<Item = Call>) -> Vec<Call> {
    calls_in(Some(MAIN_SCOPE), middle)
}

/// The AddressOffer of a renewed one-hour lease on `leased`.
fn renewed(leased: Ipv4Addr) -> Call {
    Call::AddressOffer(GiveCode::Old, SERVER, leased, ClientType::Dhcp, 3600)
}

impl Harness {
    fn send(&self, m: &Message) -> Outcome {
        self.send_to(m, Ipv4Addr::BROADCAST)
    }

    fn send_to(&self, m: &Message, dst: Ipv4Addr) -> Outcome {
        handle(&self.engine, m, dst)
    }

    fn send_bytes(&self, bytes: Vec<u8>, dst: Ipv4Addr) -> Outcome {
        self.engine
            .handle(datagram_bytes(bytes, dst), Admission::Process)
    }

    /// Asserts that `outcome` was dropped for `reason` without a reply, and that the hooks saw a
    /// packet of the main scope dropped for that reason.
    fn assert_dropped(&self, outcome: &Outcome, reason: DropReason) {
        assert!(
            outcome.reply.is_none(),
            "no reply when dropped for {reason:?}"
        );
        assert_eq!(outcome.dropped, Some(reason));
        assert_eq!(self.hooks.take(), main_calls([Call::PktDrop(reason)]));
    }

    /// The address offered to client `n`'s DISCOVER.
    fn offered(&self, n: u8) -> Ipv4Addr {
        decode(&self.send(&message(MessageType::Discover, n))).yiaddr()
    }

    /// DISCOVER and REQUEST for client `n`; returns the leased address (hook calls cleared).
    fn dora(&self, n: u8) -> Ipv4Addr {
        let leased = self.dora_quiet(n);
        self.hooks.take();
        leased
    }

    /// Like `dora`, without touching the shared call log (for concurrent use).
    fn dora_quiet(&self, n: u8) -> Ipv4Addr {
        let ack = self.send(&request_for(n, self.offered(n)));
        assert_eq!(ack.reply_type, Some(5), "ACK for client {n}");
        decode(&ack).yiaddr()
    }
}

fn decode(outcome: &Outcome) -> Message {
    let reply = outcome.reply.as_ref().expect("a reply");
    Message::from_bytes(&reply.bytes).unwrap()
}

/// Option codes of a reply in wire order.
fn option_order(bytes: &[u8]) -> Vec<u8> {
    let mut codes = Vec::new();
    let mut at = 240;
    while at < bytes.len() {
        match bytes[at] {
            0 => at += 1,
            255 => break,
            code => {
                codes.push(code);
                at += 2 + usize::from(bytes[at + 1]);
            }
        }
    }
    codes
}

fn u32_option(m: &Message, code: OptionCode) -> Option<u32> {
    match m.opts().get(code)? {
        DhcpOption::AddressLeaseTime(v) | DhcpOption::Renewal(v) | DhcpOption::Rebinding(v) => {
            Some(*v)
        }
        _ => None,
    }
}

#[test]
fn dora_hook_sequence_and_reply_encoding() {
    let (_dir, h) = fresh_harness();

    let discover = with(
        message(MessageType::Discover, 1),
        [DhcpOption::ClientIdentifier(vec![1, 2, 0, 0, 0, 0, 1])],
    );
    let offer = h.send(&discover);
    assert_eq!(h.hooks.take(), main_calls([Call::PktSend]));
    assert_eq!((offer.request_type, offer.reply_type), (Some(1), Some(2)));
    let reply = offer.reply.as_ref().unwrap();
    assert_eq!(reply.dest, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));
    assert_eq!(reply.source, SERVER);
    let offered = decode(&offer);
    assert_eq!(
        offered.yiaddr(),
        ip(13),
        "first address after the exclusion"
    );
    assert_eq!(offered.xid(), discover.xid());

    let request = with(
        request_for(1, ip(13)),
        [DhcpOption::ClientIdentifier(vec![1, 2, 0, 0, 0, 0, 1])],
    );
    let ack = h.send(&request);
    assert_eq!(
        h.hooks.take(),
        main_calls([
            Call::AddressOffer(GiveCode::New, SERVER, ip(13), ClientType::Dhcp, 3600),
            Call::PktSend,
        ])
    );
    let bytes = &ack.reply.as_ref().unwrap().bytes;
    assert!(bytes.len() >= 300, "padded to the BOOTP minimum");
    let order = option_order(bytes);
    assert_eq!(&order[..2], &[53, 54], "53 first, then the server id");
    assert_eq!(
        order.last(),
        Some(&61),
        "client id echoed last (no option 82)"
    );
    assert!(!order.contains(&6), "DNS was not asked for");
    let acked = decode(&ack);
    assert_eq!(acked.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(acked.yiaddr(), ip(13));
    assert_eq!(u32_option(&acked, OptionCode::AddressLeaseTime), Some(3600));
    assert_eq!(u32_option(&acked, OptionCode::Renewal), Some(1800));
    assert_eq!(u32_option(&acked, OptionCode::Rebinding), Some(3150));
    assert_eq!(
        acked.opts().get(OptionCode::SubnetMask),
        Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
    );
    assert_eq!(
        acked.opts().get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![ip(1)]))
    );
    assert_eq!(
        acked.opts().get(OptionCode::ClientIdentifier),
        Some(&DhcpOption::ClientIdentifier(vec![1, 2, 0, 0, 0, 0, 1]))
    );
    let leases = h.engine.leases();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].ip, ip(13));
    assert_eq!(leases[0].client_id, vec![1, 2, 0, 0, 0, 0, 1]);
    assert_eq!(leases[0].hw_address, mac(1).to_vec());
    let stats = h.engine.stats();
    assert_eq!((stats.received[1], stats.received[3]), (1, 1));
    assert_eq!((stats.sent[2], stats.sent[5]), (1, 1));
}

fn renewal(n: u8, ciaddr: Ipv4Addr) -> Message {
    let mut m = message(MessageType::Request, n);
    m.set_flags(Flags::default());
    m.set_ciaddr(ciaddr);
    m
}

/// Option 82 with just the agent circuit id `id`.
fn agent_circuit(id: &[u8]) -> DhcpOption {
    let mut relay_info = RelayAgentInformation::default();
    relay_info.insert(RelayInfo::AgentCircuitId(id.to_vec()));
    DhcpOption::RelayAgentInformation(relay_info)
}

/// A RELEASE of `leased` by client `n` (no server identifier).
fn release(n: u8, leased: Ipv4Addr) -> Message {
    with(
        renewal(n, leased),
        [DhcpOption::MessageType(MessageType::Release)],
    )
}

/// An INFORM from client `n` configured with `ciaddr`.
fn inform(n: u8, ciaddr: Ipv4Addr) -> Message {
    with(
        renewal(n, ciaddr),
        [DhcpOption::MessageType(MessageType::Inform)],
    )
}

/// A DECLINE of `declined` by client `n` (no server identifier).
fn decline(n: u8, declined: Ipv4Addr) -> Message {
    with(
        message(MessageType::Decline, n),
        [DhcpOption::RequestedIpAddress(declined)],
    )
}

/// A SELECTING REQUEST of client `n` for `offered` from us.
fn request_for(n: u8, offered: Ipv4Addr) -> Message {
    with(
        message(MessageType::Request, n),
        [
            DhcpOption::ServerIdentifier(SERVER),
            DhcpOption::RequestedIpAddress(offered),
        ],
    )
}

#[test]
fn renew_and_rebind_extend_the_lease() {
    let (_dir, h) = fresh_harness();
    let leased = h.dora(1);
    h.clock.advance(Duration::from_secs(1800));

    // RENEWING: unicast to us.
    let renew = h.send_to(&renewal(1, leased), SERVER);
    assert_eq!(renew.reply_type, Some(5));
    let reply = renew.reply.as_ref().unwrap();
    assert_eq!(reply.dest, SocketAddrV4::new(leased, 68));
    assert_eq!(decode(&renew).ciaddr(), leased);
    assert!(h.hooks.take().contains(&renewed(leased)));
    let expiry = h.engine.leases()[0].expires.unwrap();
    assert_eq!(expiry, start() + Duration::from_secs(1800 + 3600));

    // REBINDING: broadcast.
    h.clock.advance(Duration::from_secs(3200));
    let rebind = h.send(&renewal(1, leased));
    assert_eq!(rebind.reply_type, Some(5));
    assert!(h.hooks.take().contains(&renewed(leased)));

    // Someone else renewing this address gets a NAK.
    let stranger = h.send_to(&renewal(2, leased), SERVER);
    assert_eq!(stranger.reply_type, Some(6));
    assert!(h
        .hooks
        .take()
        .contains(&Call::AddressDel(ProbCode::Nacked, SERVER, leased)));
}

fn init_reboot(n: u8, requested: Ipv4Addr) -> Message {
    with(
        message(MessageType::Request, n),
        [DhcpOption::RequestedIpAddress(requested)],
    )
}

#[test]
fn init_reboot_wrong_address_is_nacked_and_unknown_client_ignored() {
    let (_dir, h) = fresh_harness();
    let leased = h.dora(1);

    // The client's own address: ACK.
    let own = h.send(&init_reboot(1, leased));
    assert_eq!(own.reply_type, Some(5));
    h.hooks.take();

    // Wrong address for a known client.
    let wrong = h.send(&init_reboot(1, ip(40)));
    assert_eq!(
        h.hooks.take(),
        main_calls([
            Call::AddressDel(ProbCode::Nacked, SERVER, ip(40)),
            Call::PktSend,
        ])
    );
    let nak = decode(&wrong);
    assert_eq!(nak.opts().msg_type(), Some(MessageType::Nak));
    assert_eq!(nak.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(
        wrong.reply.as_ref().unwrap().dest,
        SocketAddrV4::new(Ipv4Addr::BROADCAST, 68)
    );
    assert_eq!(u32_option(&nak, OptionCode::AddressLeaseTime), None);

    // Wrong network, even for an unknown client.
    let foreign = h.send(&init_reboot(9, Ipv4Addr::new(10, 1, 2, 3)));
    assert_eq!(foreign.reply_type, Some(6));
    h.hooks.take();

    // No record of the client at all: silent.
    let unknown = h.send(&init_reboot(7, ip(30)));
    h.assert_dropped(&unknown, DropReason::WrongServer);
}

#[test]
fn decline_puts_the_address_on_probation() {
    // BAD_ADDRESS lasts the scope's lease time (here two hours), as on Microsoft's server.
    let mut cfg = config();
    cfg.scopes[0].lease_duration = Some(Duration::from_secs(7200));
    let (_dir, h) = fresh_harness_with(cfg);
    let leased = h.dora(1);
    let decline = with(decline(1, leased), [DhcpOption::ServerIdentifier(SERVER)]);
    let outcome = h.send(&decline);
    assert!(outcome.reply.is_none() && outcome.dropped.is_none());
    assert_eq!(
        h.hooks.take(),
        main_calls([Call::AddressDel(ProbCode::Decline, SERVER, leased)])
    );
    assert!(h.engine.leases().is_empty());
    // Neither the same client nor another is offered the declined address while on probation.
    for n in [1, 2] {
        let offer = h.send(&message(MessageType::Discover, n));
        assert_ne!(decode(&offer).yiaddr(), leased);
    }
    // An hour later (the old fixed probation) it is still out of the pool.
    h.clock.advance(Duration::from_secs(3601));
    let ask = with(
        message(MessageType::Discover, 3),
        [DhcpOption::RequestedIpAddress(leased)],
    );
    assert_ne!(decode(&h.send(&ask)).yiaddr(), leased);
    // After the scope's lease time (and the offers' hold) it is offered again.
    h.clock.advance(Duration::from_secs(3600));
    let ask = with(
        message(MessageType::Discover, 4),
        [DhcpOption::RequestedIpAddress(leased)],
    );
    assert_eq!(decode(&h.send(&ask)).yiaddr(), leased);
}

#[test]
fn release_and_decline_call_delete_client_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start()));
    let h = harness_options(
        config(),
        &dir.path().join("leases.db"),
        Arc::new(NoProber),
        EngineOptions {
            clock: clock.clone(),
            delete_client_on: DeleteClientOn::AlsoReleaseAndDecline,
            ..EngineOptions::default()
        },
        clock,
    );
    let first = h.dora(1);
    let release = with(release(1, first), [DhcpOption::ServerIdentifier(SERVER)]);
    h.send_to(&release, SERVER);
    // DeleteClient directly before the lease leaves the database, then AddressDel.
    assert_eq!(
        h.hooks.take(),
        main_calls([
            Call::DeleteClient(first, mac(1).to_vec()),
            Call::AddressDel(ProbCode::Release, SERVER, first)
        ])
    );
    let second = h.dora(2);
    h.send(&with(
        decline(2, second),
        [DhcpOption::ServerIdentifier(SERVER)],
    ));
    assert_eq!(
        h.hooks.take(),
        main_calls([
            Call::DeleteClient(second, mac(2).to_vec()),
            Call::AddressDel(ProbCode::Decline, SERVER, second)
        ])
    );
    // A declined offer (no lease yet) has nothing to delete.
    let ip = h.offered(3);
    h.hooks.take();
    h.send(&with(
        decline(3, ip),
        [DhcpOption::ServerIdentifier(SERVER)],
    ));
    assert_eq!(
        h.hooks.take(),
        main_calls([Call::AddressDel(ProbCode::Decline, SERVER, ip)])
    );
}

#[test]
fn release_frees_the_binding_but_keeps_it_preferred() {
    let (_dir, h) = fresh_harness();
    let leased = h.dora(1);
    let release = with(release(1, leased), [DhcpOption::ServerIdentifier(SERVER)]);
    let outcome = h.send_to(&release, SERVER);
    assert!(outcome.reply.is_none() && outcome.dropped.is_none());
    assert_eq!(
        h.hooks.take(),
        main_calls([Call::AddressDel(ProbCode::Release, SERVER, leased)])
    );
    assert!(h.engine.leases().is_empty());
    // A second client takes the next address; the releasing client gets its old one back.
    assert_ne!(h.dora(2), leased);
    assert_eq!(h.dora(1), leased);
}

#[test]
fn inform_gets_an_ack_without_lease() {
    let (_dir, h) = fresh_harness();
    let outcome = h.send_to(&inform(1, ip(200)), SERVER);
    assert_eq!(h.hooks.take(), main_calls([Call::PktSend]));
    let reply = outcome.reply.as_ref().unwrap();
    assert_eq!(reply.dest, SocketAddrV4::new(ip(200), 68));
    let ack = decode(&outcome);
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(ack.ciaddr(), ip(200));
    assert!(ack.opts().get(OptionCode::AddressLeaseTime).is_none());
    assert!(ack.opts().get(OptionCode::Renewal).is_none());
    assert!(ack.opts().get(OptionCode::Router).is_some());
    assert!(h.engine.leases().is_empty());
}

/// A BOOTP request (no option 53), with or without the magic cookie.
fn bootp_request(n: u8, cookie: bool) -> Vec<u8> {
    let mut bytes = vec![0u8; 300];
    bytes[0] = 1;
    bytes[1] = 1;
    bytes[2] = 6;
    bytes[4..8].copy_from_slice(&(0x2000 + u32::from(n)).to_be_bytes());
    bytes[28..34].copy_from_slice(&mac(n));
    if cookie {
        bytes[236..240].copy_from_slice(&dhcproto::v4::MAGIC);
        bytes[240] = 255;
    }
    bytes
}

#[test]
fn bootp_clients_get_permanent_addresses_in_bootp_scopes_only() {
    let mut cfg = config();
    cfg.scopes[0].kind = ScopeType::Both;
    let (_dir, h) = fresh_harness_with(cfg);

    let plain = h.send_bytes(bootp_request(1, false), Ipv4Addr::BROADCAST);
    assert_eq!(
        h.hooks.take(),
        main_calls([
            Call::AddressOffer(
                GiveCode::New,
                SERVER,
                ip(13),
                ClientType::Bootp,
                0xFFFF_FFFF
            ),
            Call::PktSend,
        ])
    );
    assert_eq!((plain.request_type, plain.reply_type), (Some(0), Some(0)));
    let reply = plain.reply.as_ref().unwrap();
    assert_eq!(reply.bytes.len(), 300);
    assert_eq!(reply.bytes[0], 2, "BOOTREPLY");
    assert_eq!(&reply.bytes[16..20], &ip(13).octets());
    assert_eq!(
        &reply.bytes[236..240],
        &[0, 0, 0, 0],
        "no vendor extensions"
    );
    assert_eq!(reply.dest, SocketAddrV4::new(Ipv4Addr::BROADCAST, 68));

    let with_cookie = h.send_bytes(bootp_request(2, true), Ipv4Addr::BROADCAST);
    let bytes = &with_cookie.reply.as_ref().unwrap().bytes;
    assert_eq!(&bytes[236..240], &dhcproto::v4::MAGIC);
    let order = option_order(bytes);
    assert!(!order.contains(&53) && order.contains(&1) && order.contains(&3));
    let leases = h.engine.leases();
    assert_eq!(leases.len(), 2);
    assert!(leases
        .iter()
        .all(|l| l.expires.is_none() && l.client_type == ClientType::Bootp));
    h.hooks.take();

    // A DHCP-only scope does not serve BOOTP.
    let relayed = {
        let mut bytes = bootp_request(3, false);
        bytes[24..28].copy_from_slice(&RELAY.octets());
        bytes
    };
    let refused = h.send_bytes(relayed, SERVER);
    assert_eq!(refused.dropped, Some(DropReason::NoAddress));
}

fn reservation(address: Ipv4Addr, client_id: &[u8]) -> Reservation {
    Reservation {
        name: "pinned".into(),
        ip_address: address,
        client_id: client_id.to_vec(),
        kind: ScopeType::Both,
        description: String::new(),
        option_values: vec![OptionValue {
            option_id: 3,
            value: vec![OptionElement::IPv4Address(ip(254))],
            vendor_class: None,
            user_class: None,
        }],
    }
}

#[test]
fn reservations_match_by_mac_and_by_client_id() {
    let mut cfg = config();
    cfg.scopes[0].reservations = vec![
        reservation(ip(40), &mac(1)),
        reservation(ip(41), b"\x00host-two"),
    ];
    let (_dir, h) = fresh_harness_with(cfg);
    let offer = decode(&h.send(&message(MessageType::Discover, 1)));
    assert_eq!(offer.yiaddr(), ip(40));
    assert_eq!(
        offer.opts().get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![ip(254)])),
        "reservation options win"
    );
    let by_id = with(
        message(MessageType::Discover, 2),
        [DhcpOption::ClientIdentifier(b"\x00host-two".to_vec())],
    );
    assert_eq!(decode(&h.send(&by_id)).yiaddr(), ip(41));
    // Nobody else is offered a reserved address, even when asking for it.
    let other = with(
        message(MessageType::Discover, 3),
        [DhcpOption::RequestedIpAddress(ip(40))],
    );
    let got = decode(&h.send(&other)).yiaddr();
    assert!(got != ip(40) && got != ip(41));
    assert_eq!(h.dora(1), ip(40));
}

#[test]
fn a_reservation_uid_of_htype_and_mac_matches_a_client_without_option_61() {
    let mut cfg = config();
    let uid = [&[1u8][..], &mac(5)[..]].concat();
    cfg.scopes[0].reservations = vec![reservation(ip(42), &uid)];
    let (_dir, h) = fresh_harness_with(cfg);
    assert_eq!(h.offered(5), ip(42));
    let stranger = h.offered(6);
    assert_ne!(stranger, ip(42));
}

#[test]
fn reservation_beats_an_older_dynamic_lease_and_restart_restores_leases() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leases.db");
    let (first, second) = {
        let h = harness(config(), &db);
        (h.dora(1), h.dora(2))
    };
    assert_eq!((first, second), (ip(13), ip(14)));

    // Restart with the same database: both leases are back and still owned.
    let mut cfg = config();
    cfg.scopes[0].reservations = vec![reservation(ip(45), &mac(1))];
    let h = harness(cfg, &db);
    let leases = h.engine.leases();
    assert_eq!(
        leases.iter().map(|l| l.ip).collect::<Vec<_>>(),
        vec![first, second]
    );
    assert_eq!(leases[1].hw_address, mac(2).to_vec());
    let renew = h.send_to(&renewal(2, second), SERVER);
    assert_eq!(renew.reply_type, Some(5));
    assert!(h.hooks.take().contains(&renewed(second)));
    let newcomer = h.dora(3);
    assert!(newcomer != first && newcomer != second);

    // Client 1 now has a reservation: it is offered and granted the reserved address, and its old
    // dynamic lease goes away; renewing the old address is refused.
    assert_eq!(h.dora(1), ip(45));
    let ips: Vec<_> = h.engine.leases().iter().map(|l| l.ip).collect();
    assert!(ips.contains(&ip(45)) && !ips.contains(&first));
    let old = h.send_to(&renewal(1, first), SERVER);
    assert_eq!(old.reply_type, Some(6));
}

#[test]
fn requested_excluded_address_is_not_offered() {
    let (_dir, h) = fresh_harness();
    let discover = with(
        message(MessageType::Discover, 1),
        [DhcpOption::RequestedIpAddress(ip(11))],
    );
    assert_eq!(decode(&h.send(&discover)).yiaddr(), ip(13));
    let free = with(
        message(MessageType::Discover, 2),
        [DhcpOption::RequestedIpAddress(ip(33))],
    );
    assert_eq!(
        decode(&h.send(&free)).yiaddr(),
        ip(33),
        "a free requested address"
    );
}

#[test]
fn pool_exhaustion_drops_noaddress() {
    let mut cfg = config();
    cfg.scopes[0].end_range = ip(14);
    let (_dir, h) = fresh_harness_with(cfg);
    assert_eq!(h.dora(1), ip(13));
    // Client 2 holds .14 by an offer; client 3 finds nothing.
    assert_eq!(h.offered(2), ip(14));
    h.hooks.take();
    let outcome = h.send(&message(MessageType::Discover, 3));
    h.assert_dropped(&outcome, DropReason::NoAddress);
    // Once the offer hold runs out, the address is free again.
    h.clock.advance(Duration::from_secs(61));
    assert_eq!(h.offered(3), ip(14));
    assert_eq!(
        h.engine
            .stats()
            .drops
            .iter()
            .find(|d| d.0 == DropReason::NoAddress)
            .unwrap()
            .1,
        1
    );
}

#[test]
fn garbage_and_hops_are_invalid() {
    let (_dir, h) = fresh_harness();
    let outcome = h.send_bytes(b"not a dhcp packet".to_vec(), SERVER);
    assert_eq!(outcome.dropped, Some(DropReason::Invalid));
    assert_eq!(outcome.request_type, None);
    assert_eq!(
        h.hooks.take(),
        vec![
            Call::NewPkt,
            Call::PktDrop(DropReason::Invalid),
            Call::PktDrop(DropReason::Processed),
        ]
    );
    let mut far = message(MessageType::Discover, 1);
    far.set_giaddr(RELAY);
    far.set_hops(17);
    assert_eq!(h.send(&far).dropped, Some(DropReason::Invalid));
    let mut offer = message(MessageType::Offer, 1);
    offer.set_hops(0);
    assert_eq!(h.send(&offer).dropped, Some(DropReason::Invalid));
}

#[test]
fn request_for_another_server_frees_our_offer() {
    let mut cfg = config();
    cfg.scopes[0].end_range = ip(13);
    let (_dir, h) = fresh_harness_with(cfg);
    assert_eq!(h.offered(1), ip(13));
    h.hooks.take();
    let request = with(
        message(MessageType::Request, 1),
        [
            DhcpOption::ServerIdentifier(Ipv4Addr::new(198, 18, 0, 99)),
            DhcpOption::RequestedIpAddress(Ipv4Addr::new(198, 18, 0, 77)),
        ],
    );
    let outcome = h.send(&request);
    h.assert_dropped(&outcome, DropReason::WrongServer);
    // The only address is free again at once.
    assert_eq!(h.offered(2), ip(13));
}

#[test]
fn selecting_request_for_an_address_not_offered_is_nacked() {
    let (_dir, h) = fresh_harness();
    h.send(&message(MessageType::Discover, 1));
    h.hooks.take();
    assert_eq!(h.send(&request_for(1, ip(30))).reply_type, Some(6));
    assert!(h
        .hooks
        .take()
        .contains(&Call::AddressDel(ProbCode::Nacked, SERVER, ip(30))));
    assert!(h.engine.leases().is_empty());
}

#[test]
fn process_it_false_and_paused_admission() {
    let (_dir, h) = fresh_harness();
    h.hooks.refuse.store(true, Ordering::Relaxed);
    let refused = h.send(&message(MessageType::Discover, 1));
    assert!(refused.reply.is_none() && refused.dropped.is_none());
    assert_eq!(
        h.hooks.take(),
        vec![Call::NewPkt, Call::PktDrop(DropReason::Processed)]
    );
    assert_eq!(h.engine.stats().dropped_by_callout, 1);
    h.hooks.refuse.store(false, Ordering::Relaxed);

    let paused = h.engine.handle(
        datagram(&message(MessageType::Discover, 1), Ipv4Addr::BROADCAST),
        Admission::Drop(DropReason::Paused),
    );
    h.assert_dropped(&paused, DropReason::Paused);
}

#[test]
fn pkt_send_can_suppress_or_fault() {
    let (_dir, h) = fresh_harness();
    h.hooks.send_mode.store(SEND_SUPPRESS, Ordering::Relaxed);
    let suppressed = h.send(&message(MessageType::Discover, 1));
    assert!(suppressed.reply.is_none() && suppressed.dropped.is_none());
    assert_eq!(h.engine.stats().suppressed_by_callout, 1);
    h.hooks.take();
    h.hooks.send_mode.store(SEND_FAULT, Ordering::Relaxed);
    let faulted = h.send(&message(MessageType::Discover, 1));
    assert_eq!(faulted.dropped, Some(DropReason::Invalid));
    assert_eq!(
        h.hooks.take(),
        main_calls([Call::PktSend, Call::PktDrop(DropReason::Invalid)])
    );
}

#[test]
fn relayed_requests_use_giaddr_and_echo_option_82_last() {
    let (_dir, h) = fresh_harness();
    let mut discover = with(
        message(MessageType::Discover, 1),
        [agent_circuit(b"port-7")],
    );
    discover.set_giaddr(RELAY);
    discover.set_hops(1);
    let request_bytes = discover.to_vec().unwrap();
    let sent_82 = {
        let at = request_bytes.windows(2).position(|w| w == [82, 8]).unwrap();
        request_bytes[at..at + 10].to_vec()
    };
    let offer = h.send_bytes(request_bytes, SERVER);
    assert_eq!(
        h.hooks.take()[1],
        Call::HandleOptions(Some(Ipv4Addr::new(198, 19, 0, 0)))
    );
    let reply = offer.reply.as_ref().unwrap();
    assert_eq!(reply.dest, SocketAddrV4::new(RELAY, 67));
    let decoded = decode(&offer);
    assert_eq!(decoded.yiaddr(), Ipv4Addr::new(198, 19, 0, 10));
    assert_eq!(decoded.giaddr(), RELAY);
    assert_eq!(option_order(&reply.bytes).last(), Some(&82));
    let end = reply.bytes.iter().rposition(|b| *b == 255).unwrap();
    assert_eq!(
        &reply.bytes[end - sent_82.len()..end],
        &sent_82[..],
        "82 unchanged, right before END"
    );

    // A NAK through the relay carries the broadcast flag.
    let mut nak = init_reboot(1, Ipv4Addr::new(198, 20, 0, 5));
    nak.set_flags(Flags::default());
    nak.set_giaddr(RELAY);
    let outcome = h.send(&nak);
    assert_eq!(outcome.reply_type, Some(6));
    assert!(decode(&outcome).flags().broadcast());
    assert_eq!(outcome.reply.unwrap().dest, SocketAddrV4::new(RELAY, 67));
}

#[test]
fn scope_selection_filters_state_and_delay() {
    let mut cfg = config();
    cfg.scopes[0].delay = Duration::from_millis(250);
    cfg.scopes[1].state = ScopeState::Inactive;
    cfg.filters = Filters {
        allow_enabled: false,
        deny_enabled: true,
        filters: vec![Filter {
            list: FilterList::Deny,
            mac: MacPattern {
                prefix: mac(9).to_vec(),
                wildcard: false,
            },
            description: String::new(),
        }],
    };
    let (_dir, h) = fresh_harness_with(cfg);
    let offer = h.send(&message(MessageType::Discover, 1));
    assert_eq!(offer.reply.unwrap().delay, Duration::from_millis(250));
    assert_eq!(
        h.send(&message(MessageType::Discover, 9)).dropped,
        Some(DropReason::Unauth),
        "deny filter"
    );
    let mut relayed = message(MessageType::Discover, 1);
    relayed.set_giaddr(RELAY);
    assert_eq!(
        h.send(&relayed).dropped,
        Some(DropReason::NoSubnets),
        "inactive scope"
    );
    let mut elsewhere = message(MessageType::Discover, 1);
    elsewhere.set_giaddr(Ipv4Addr::new(10, 0, 0, 1));
    h.hooks.take();
    assert_eq!(h.send(&elsewhere).dropped, Some(DropReason::NoSubnets));
    assert_eq!(
        h.hooks.take(),
        calls_in(None, [Call::PktDrop(DropReason::NoSubnets)])
    );
}

#[test]
fn conflict_detection_skips_an_address_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.settings.conflict_detection_attempts = 2;
    let h = harness_with(
        cfg,
        &dir.path().join("leases.db"),
        Arc::new(BusyProber(vec![ip(13)])),
        Arc::new(ManualClock::new(start())),
    );
    let offer = h.send(&message(MessageType::Discover, 1));
    assert_eq!(decode(&offer).yiaddr(), ip(14));
    assert_eq!(
        h.hooks.take(),
        main_calls([
            Call::AddressDel(ProbCode::Conflict, SERVER, ip(13)),
            Call::PktSend,
        ])
    );
    // The bad address stays out of the pool for others too.
    assert_eq!(h.offered(2), ip(15));
}

#[test]
fn delete_and_purge_call_delete_client() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leases.db");
    {
        let h = harness(config(), &db);
        let first = h.dora(1);
        let second = h.dora(2);
        let deleted = h.engine.delete_lease(first).unwrap().unwrap();
        assert_eq!(deleted.ip, first);
        assert_eq!(
            h.hooks.take(),
            vec![Call::DeleteClient(first, mac(1).to_vec())]
        );
        assert!(h.engine.delete_lease(first).unwrap().is_none());

        assert_eq!(h.engine.purge_expired(start()).unwrap(), 0);
        // Expired, but within Microsoft's four-hour grace period: kept, still its client's.
        h.clock.advance(Duration::from_secs(3601));
        assert_eq!(h.engine.purge_expired(h.clock.now()).unwrap(), 0);
        assert!(h.hooks.take().is_empty());
        assert_eq!(h.engine.leases().len(), 1);
        h.clock.advance(DEFAULT_EXPIRED_GRACE);
        assert_eq!(h.engine.purge_expired(h.clock.now()).unwrap(), 1);
        assert_eq!(
            h.hooks.take(),
            vec![Call::DeleteClient(second, mac(2).to_vec())]
        );
        assert!(h.engine.leases().is_empty());
        h.engine.flush().unwrap();
    }
    let h = harness(config(), &db);
    assert!(h.engine.leases().is_empty(), "deletions were committed");
}

#[test]
fn ignore_broadcast_flag_broadcasts_renewals() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = Arc::new(Recorder::default());
    let engine = Engine::new(
        config(),
        EngineOptions {
            ignore_broadcast_flag: true,
            server_id_override: Some(Ipv4Addr::new(198, 18, 0, 250)),
            ..EngineOptions::default()
        },
        hooks,
        Box::new(crate::store::testing::open_store(dir.path().join("leases.db")).unwrap()),
        Arc::new(NoProber),
    )
    .unwrap();
    let offer = handle(
        &engine,
        &message(MessageType::Discover, 1),
        Ipv4Addr::BROADCAST,
    );
    let decoded = decode(&offer);
    assert_eq!(
        decoded.opts().get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(Ipv4Addr::new(
            198, 18, 0, 250
        )))
    );
    let outcome = handle(&engine, &inform(1, ip(200)), SERVER);
    assert_eq!(
        outcome.reply.unwrap().dest,
        SocketAddrV4::new(Ipv4Addr::BROADCAST, 68)
    );
}

#[test]
fn concurrent_workers_never_share_an_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.scopes[0].end_range = ip(250);
    let h = Arc::new(harness(cfg, &dir.path().join("leases.db")));
    let workers: Vec<_> = (0..4u8)
        .map(|w| {
            let h = Arc::clone(&h);
            std::thread::spawn(move || {
                (0..40u8)
                    .map(|i| h.dora_quiet(w * 40 + i + 1))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<Ipv4Addr> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 160);
    assert_eq!(h.engine.leases().len(), 160);
    // Every AddressOffer ran under the lease lock.
    let offers: Vec<bool> = h
        .hooks
        .take_raw()
        .into_iter()
        .filter(|(c, _, _)| matches!(c, Call::AddressOffer(GiveCode::New, ..)))
        .map(|(_, locked, _)| locked)
        .collect();
    assert_eq!(offers.len(), 160);
    assert!(offers.iter().all(|locked| *locked));
}

#[test]
fn user_class_options_are_resolved_per_client() {
    let mut cfg = config();
    cfg.classes.push(calloutd_config::Class {
        name: "Lab".into(),
        kind: calloutd_config::ClassKind::User,
        data: b"lab".to_vec(),
        description: String::new(),
    });
    cfg.scopes[0].option_values.push(OptionValue {
        option_id: 6,
        value: vec![OptionElement::IPv4Address(ip(99))],
        vendor_class: None,
        user_class: Some("Lab".into()),
    });
    let (_dir, h) = fresh_harness_with(cfg);
    let dns = |user_class: Option<&[u8]>, n: u8| {
        let mut options = vec![DhcpOption::ParameterRequestList(vec![
            OptionCode::DomainNameServer,
        ])];
        options.extend(user_class.map(|class| DhcpOption::UserClass(class.to_vec())));
        decode(&h.send(&with(message(MessageType::Discover, n), options)))
            .opts()
            .get(OptionCode::DomainNameServer)
            .cloned()
    };
    assert_eq!(
        dns(Some(b"lab"), 1),
        Some(DhcpOption::DomainNameServer(vec![ip(99)]))
    );
    assert_eq!(
        dns(None, 2),
        Some(DhcpOption::DomainNameServer(vec![ip(2)]))
    );
}

#[test]
fn precomputed_options_equal_effective_options() {
    let mut cfg = config();
    cfg.option_values = vec![
        OptionValue {
            option_id: 15,
            value: vec![OptionElement::String("example.test".into())],
            vendor_class: None,
            user_class: None,
        },
        OptionValue {
            option_id: 3,
            value: vec![OptionElement::IPv4Address(ip(77))],
            vendor_class: None,
            user_class: None,
        },
    ];
    cfg.scopes[0].reservations = vec![reservation(ip(40), &mac(1))];
    let scope = crate::scopes::ScopeRt::build(&cfg, &cfg.scopes[0]).unwrap();
    assert!(scope.simple_options);
    for n in [1u8, 2] {
        let facts = calloutd_config::ClientFacts {
            mac: &mac(n),
            ..Default::default()
        };
        let reservation = scope.reservation_for(None, 1, &mac(n));
        assert_eq!(reservation.is_some(), n == 1);
        let effective = calloutd_config::effective_options(
            &cfg,
            &cfg.scopes[0],
            reservation.map(|r| &cfg.scopes[0].reservations[r.index]),
            &facts,
        );
        for code in 2..=254u8 {
            if [51, 58, 59, 61, 82].contains(&code) {
                continue;
            }
            assert_eq!(
                scope.option(reservation, code).map(<[u8]>::to_vec),
                effective.encoded(code),
                "option {code} for client {n}"
            );
        }
    }
}

#[test]
fn boot_options_fill_the_header_fields() {
    let mut cfg = config();
    cfg.scopes[0].kind = ScopeType::Both;
    for (id, text) in [(66, "198.18.0.5"), (67, "pxelinux.0")] {
        cfg.scopes[0].option_values.push(OptionValue {
            option_id: id,
            value: vec![OptionElement::String(text.into())],
            vendor_class: None,
            user_class: None,
        });
    }
    let (_dir, h) = fresh_harness_with(cfg);
    let outcome = h.send_bytes(bootp_request(1, false), Ipv4Addr::BROADCAST);
    let bytes = outcome.reply.unwrap().bytes;
    assert_eq!(&bytes[20..24], &ip(5).octets(), "siaddr");
    assert_eq!(&bytes[44..55], b"198.18.0.5\0", "sname");
    assert_eq!(&bytes[108..119], b"pxelinux.0\0", "file");
}

#[test]
fn rebinding_from_an_unknown_client_is_ignored_renewing_is_nacked() {
    let (_dir, h) = fresh_harness();
    let rebind = h.send(&renewal(5, ip(30)));
    assert!(rebind.reply.is_none());
    assert_eq!(rebind.dropped, Some(DropReason::WrongServer));
    let renew = h.send_to(&renewal(5, ip(30)), SERVER);
    assert_eq!(renew.reply_type, Some(6));
}

#[test]
fn memory_store_restores_too() {
    let store = MemoryLeaseStore::new();
    let lease = Lease {
        ip: ip(20),
        client_id: vec![1, 2, 0, 0, 0, 0, 1],
        hw_type: 1,
        hw_address: mac(1).to_vec(),
        host_name: None,
        expires: None,
        client_type: ClientType::Dhcp,
        policy_name: None,
    };
    store.put(lease.clone());
    let engine = Engine::new(
        config(),
        EngineOptions::default(),
        Arc::new(NoHooks),
        Box::new(MemoryLeaseStore::with_leases(store.load_all().unwrap())),
        Arc::new(NoProber),
    )
    .unwrap();
    assert_eq!(engine.leases(), vec![lease]);
    // The restored client's INIT-REBOOT for its address is acknowledged with an infinite lease.
    let outcome = handle(&engine, &init_reboot(1, ip(20)), Ipv4Addr::BROADCAST);
    assert_eq!(outcome.reply_type, Some(5));
}

#[test]
fn overloaded_request_and_anonymous_client() {
    let (_dir, h) = fresh_harness();
    let leased = h.dora(1);
    // INIT-REBOOT whose option 50 sits in the overloaded file field.
    let m = with(
        message(MessageType::Request, 1),
        [DhcpOption::OptionOverload(1)],
    );
    let mut bytes = m.to_vec().unwrap();
    bytes[108..115].copy_from_slice(&[50, 4, 198, 18, 0, leased.octets()[3], 255]);
    let outcome = h.send_bytes(bytes, Ipv4Addr::BROADCAST);
    assert_eq!(outcome.reply_type, Some(5));
    assert_eq!(decode(&outcome).yiaddr(), leased);

    // hlen 0 and no client identifier: nobody to serve.
    let mut anonymous = message(MessageType::Discover, 2).to_vec().unwrap();
    anonymous[2] = 0;
    let outcome = h.send_bytes(anonymous, Ipv4Addr::BROADCAST);
    assert_eq!(outcome.dropped, Some(DropReason::Invalid));
}

#[test]
fn exhausted_pool_recovers_when_an_address_is_freed() {
    let mut cfg = config();
    cfg.scopes[0].end_range = ip(14);
    let (_dir, h) = fresh_harness_with(cfg);
    let first = h.dora(1);
    h.dora(2);
    for _ in 0..3 {
        assert_eq!(
            h.send(&message(MessageType::Discover, 3)).dropped,
            Some(DropReason::NoAddress)
        );
    }
    h.send_to(&release(1, first), SERVER);
    assert_eq!(h.offered(3), first);
}

/// `ManualClock` time for the audit log, noting whether the lease lock is held when a line is written
/// (the audit log reads the clock once per line).
struct LockWatchingClock {
    time: Arc<ManualClock>,
    probe: OnceLock<LeaseLockProbe>,
    reads: AtomicUsize,
    reads_under_lock: AtomicUsize,
}

impl Clock for LockWatchingClock {
    fn now(&self) -> SystemTime {
        self.reads.fetch_add(1, Ordering::Relaxed);
        if self.probe.get().is_some_and(LeaseLockProbe::is_locked) {
            self.reads_under_lock.fetch_add(1, Ordering::Relaxed);
        }
        self.time.now()
    }
}

/// An audit log in `dir` on `clock`'s time (UTC faces, flushed only on demand).
fn audit_log(dir: &Path, clock: Arc<dyn Clock>) -> Arc<AuditLog> {
    let options = AuditOptions {
        clock,
        zone: AuditZone::FixedOffset(0),
        flush_interval: Duration::ZERO,
        ..AuditOptions::default()
    };
    Arc::new(AuditLog::open(dir, options).unwrap())
}

/// The events of the day file for `clock`'s time, after a flush.
fn audit_events(audit: &AuditLog, clock: &ManualClock) -> Vec<AuditEvent> {
    audit.flush();
    let text = std::fs::read_to_string(audit.file_for(clock.now())).unwrap();
    parse_audit_log(&text).unwrap()
}

fn mac_hex(n: u8) -> String {
    mac(n).iter().map(|b| format!("{b:02X}")).collect()
}

#[test]
fn audit_log_records_a_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start()));
    let watch = Arc::new(LockWatchingClock {
        time: clock.clone(),
        probe: OnceLock::new(),
        reads: AtomicUsize::new(0),
        reads_under_lock: AtomicUsize::new(0),
    });
    let audit = audit_log(&dir.path().join("audit"), watch.clone());
    let h = harness_audited(
        config(),
        &dir.path().join("leases.db"),
        Arc::new(NoProber),
        clock.clone(),
        Some(audit.clone()),
    );
    let _ = watch.probe.set(h.engine.lease_lock_probe());
    h.engine.audit_log().unwrap().started();

    // DORA with a host name and vendor class, then a renewal and a release.
    let offered = h.offered(1);
    let request = with(
        request_for(1, offered),
        [
            DhcpOption::Hostname("pc-one".into()),
            DhcpOption::ClassIdentifier(b"MSFT 5.0".to_vec()),
        ],
    );
    assert_eq!(h.send(&request).reply_type, Some(5));
    let first = offered;
    let renew = h.send_to(&renewal(1, first), SERVER);
    assert_eq!(renew.reply_type, Some(5));
    h.send_to(&release(1, first), SERVER);

    // A decline, an administrative delete and a NAK.
    let second = h.dora(2);
    h.send(&decline(2, second));
    let third = h.dora(3);
    h.engine.delete_lease(third).unwrap().unwrap();
    let fourth = h.dora(4);
    assert_eq!(h.send(&init_reboot(4, ip(49))).reply_type, Some(6));

    // Expiry: a purge once the clock passes the leases' end and the grace period.
    let fifth = h.dora(5);
    clock.advance(Duration::from_secs(3601) + DEFAULT_EXPIRED_GRACE);
    assert_eq!(h.engine.purge_expired(clock.now()).unwrap(), 2);
    h.engine.audit_log().unwrap().stopped();

    let events = audit_events(&audit, &clock);
    let summary: Vec<(u8, Option<Ipv4Addr>, String)> =
        events.iter().map(|e| (e.id, e.ip, e.mac.clone())).collect();
    let none = String::new;
    assert_eq!(
        summary,
        vec![
            (0, None, none()),
            (10, Some(first), mac_hex(1)),
            (11, Some(first), mac_hex(1)),
            (12, Some(first), mac_hex(1)),
            (10, Some(second), mac_hex(2)),
            (13, Some(second), mac_hex(2)),
            (10, Some(third), mac_hex(3)),
            (16, Some(third), mac_hex(3)),
            (10, Some(fourth), mac_hex(4)),
            (15, Some(ip(49)), mac_hex(4)),
            (10, Some(fifth), mac_hex(5)),
            (24, None, none()),
            (17, Some(fourth), mac_hex(4)),
            (17, Some(fifth), mac_hex(5)),
            (25, None, none()),
            (1, None, none()),
        ]
    );
    let assign = &events[1];
    assert_eq!(assign.description, "Assign");
    assert_eq!(assign.host_name, "pc-one");
    assert_eq!(assign.transaction_id, Some(0x1001));
    assert_eq!(assign.qresult, Some(0));
    assert_eq!(assign.vendor_class_ascii, "MSFT 5.0");
    assert_eq!(assign.vendor_class_hex, "0x4D53465420352E30");
    assert_eq!(assign.date, "01/15/27");
    assert_eq!(assign.time, "08:00:00");
    assert_eq!(events[5].description, "Declined");
    assert_eq!(
        events[7].transaction_id,
        Some(0),
        "an admin delete has no xid"
    );
    assert_eq!(events[7].qresult, Some(6));
    assert_eq!(
        events[14].description,
        "2 leases expired and 2 leases deleted"
    );
    assert_eq!(events[13].time, "13:00:01");
    // Every line was written with the lease lock free.
    assert_eq!(watch.reads.load(Ordering::Relaxed), events.len());
    assert_eq!(watch.reads_under_lock.load(Ordering::Relaxed), 0);
}

#[test]
fn audit_log_records_conflicts_exhaustion_bootp_and_relay_info() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start()));
    let audit = audit_log(&dir.path().join("audit"), clock.clone());
    let mut cfg = config();
    // Pool .13-.14 (.10-.12 excluded); .13 answers pings.
    cfg.scopes[0].end_range = ip(14);
    cfg.scopes[0].kind = ScopeType::Both;
    cfg.settings.conflict_detection_attempts = 1;
    let h = harness_audited(
        cfg,
        &dir.path().join("leases.db"),
        Arc::new(BusyProber(vec![ip(13)])),
        clock.clone(),
        Some(audit.clone()),
    );
    let bootp = h.send_bytes(bootp_request(1, false), Ipv4Addr::BROADCAST);
    assert_eq!(bootp.reply_type, Some(0));
    // The pool is now used up (.13 on probation, .14 to the BOOTP client).
    let discover = with(
        message(MessageType::Discover, 2),
        [
            DhcpOption::UserClass(b"lab".to_vec()),
            agent_circuit(b"port-7"),
        ],
    );
    assert_eq!(h.send(&discover).dropped, Some(DropReason::NoAddress));
    let again = h.send_bytes(bootp_request(3, false), Ipv4Addr::BROADCAST);
    assert_eq!(again.dropped, Some(DropReason::NoAddress));

    let events = audit_events(&audit, &clock);
    let ids: Vec<u8> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids, [13, 21, 14, 22]);
    assert_eq!(events[0].ip, Some(ip(13)));
    assert_eq!(events[0].description, "Conflict");
    assert_eq!(events[1].ip, Some(ip(14)));
    assert_eq!(events[1].mac, mac_hex(1));
    assert_eq!(events[1].transaction_id, Some(0x2001));
    // Scope full (14, and 22 for BOOTP) as Microsoft writes it: the scope's subnet address, no
    // client fields, xid 0, QResult 6.
    for full in &events[2..] {
        assert_eq!(full.ip, Some(Ipv4Addr::new(198, 18, 0, 0)));
        assert_eq!(full.mac, "");
        assert_eq!((full.transaction_id, full.qresult), (Some(0), Some(6)));
        assert_eq!(full.user_class_hex, "");
        assert_eq!(full.relay_agent, "");
    }
}

/// A memory store that logs every `commit` call (the ticket asked for), and fails them on demand.
#[derive(Default)]
struct CommitLog {
    leases: MemoryLeaseStore,
    commits: Arc<Mutex<Vec<u64>>>,
    failing: Arc<AtomicBool>,
}

impl LeaseStore for CommitLog {
    fn load_all(&self) -> Result<Vec<Lease>, StoreError> {
        self.leases.load_all()
    }
    fn put(&self, lease: Lease) -> CommitTicket {
        self.leases.put(lease)
    }
    fn remove(&self, ip: Ipv4Addr) -> CommitTicket {
        self.leases.remove(ip)
    }
    fn commit(&self, ticket: CommitTicket) -> Result<(), StoreError> {
        self.commits.lock().unwrap().push(ticket.0);
        if self.failing.load(Ordering::Relaxed) {
            return Err(StoreError::CommitFailed {
                path: "(test store)".into(),
                message: "disk full".into(),
            });
        }
        self.leases.commit(ticket)
    }
}

/// An engine over a [`CommitLog`] store with recorded hooks.
struct Committing {
    engine: Engine,
    hooks: Arc<Recorder>,
    commits: Arc<Mutex<Vec<u64>>>,
    failing: Arc<AtomicBool>,
}

fn engine_over_commit_log(defer_commits: bool) -> Committing {
    engine_over_commit_log_audited(defer_commits, Arc::new(ManualClock::new(start())), None)
}

/// [`engine_over_commit_log`] on `clock`'s time, with an audit log.
fn engine_over_commit_log_audited(
    defer_commits: bool,
    clock: Arc<ManualClock>,
    audit: Option<Arc<AuditLog>>,
) -> Committing {
    let store = CommitLog::default();
    let commits = Arc::clone(&store.commits);
    let failing = Arc::clone(&store.failing);
    let options = EngineOptions {
        clock,
        defer_commits,
        audit,
        ..EngineOptions::default()
    };
    let hooks = Arc::new(Recorder::default());
    let engine = Engine::new(
        config(),
        options,
        hooks.clone(),
        Box::new(store),
        Arc::new(NoProber),
    )
    .unwrap();
    let _ = hooks.lock_probe.set(engine.lease_lock_probe());
    Committing {
        engine,
        hooks,
        commits,
        failing,
    }
}

/// The held reply's message, decoded.
fn decode_held(outcome: &Outcome) -> Message {
    let held = outcome.held.as_ref().expect("a held reply");
    Message::from_bytes(&held.reply.bytes).unwrap()
}

#[test]
fn deferred_commits_leave_the_ack_and_release_changes_to_the_runtime() {
    let Committing {
        engine, commits, ..
    } = engine_over_commit_log(true);
    let send = |m: &Message| handle(&engine, m, Ipv4Addr::BROADCAST);
    let offer = send(&message(MessageType::Discover, 1));
    assert_eq!(offer.uncommitted, None, "an offer changes no stored lease");
    assert!(offer.held.is_none() && offer.reply.is_some());
    let mut ack = send(&request_for(1, decode(&offer).yiaddr()));
    assert_eq!(ack.reply_type, Some(5));
    assert!(ack.reply.is_none(), "the ACK waits for its commit");
    let ticket = ack
        .uncommitted
        .expect("the ACK's lease is left to the runtime");
    assert!(
        commits.lock().unwrap().is_empty(),
        "the engine did not wait"
    );
    engine.commit(ticket).unwrap();
    assert_eq!(*commits.lock().unwrap(), vec![ticket.0]);
    let leased = decode_held(&ack).yiaddr();
    let sent = engine.finish(ack.held.take().unwrap(), true);
    assert!(sent.is_some());

    let release = with(release(1, leased), [DhcpOption::ServerIdentifier(SERVER)]);
    let released = handle(&engine, &release, SERVER);
    assert!(released.reply.is_none() && released.held.is_none());
    let removal = released.uncommitted.expect("the release's removal too");
    assert!(removal > ticket);
    assert_eq!(commits.lock().unwrap().len(), 1);
}

#[test]
fn a_deferred_ack_runs_pkt_send_only_in_finish_after_its_commit() {
    let c = engine_over_commit_log(true);
    let offer = handle(
        &c.engine,
        &message(MessageType::Discover, 1),
        Ipv4Addr::BROADCAST,
    );
    let leased = decode(&offer).yiaddr();
    c.hooks.take();
    let mut ack = handle(&c.engine, &request_for(1, leased), Ipv4Addr::BROADCAST);
    // The packet is not finished: no PktSend, no PktDrop(PROCESSED) before the commit.
    let so_far: Vec<Call> = c
        .hooks
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|(call, ..)| call.clone())
        .collect();
    assert_eq!(
        so_far,
        vec![
            Call::NewPkt,
            Call::HandleOptions(Some(MAIN_SCOPE)),
            Call::AddressOffer(GiveCode::New, SERVER, leased, ClientType::Dhcp, 3600),
        ]
    );
    c.engine.commit(ack.uncommitted.unwrap()).unwrap();
    let reply = c
        .engine
        .finish(ack.held.take().unwrap(), true)
        .expect("sent");
    assert_eq!(Message::from_bytes(&reply.bytes).unwrap().yiaddr(), leased);
    assert_eq!(
        c.hooks.take(),
        main_calls([
            Call::AddressOffer(GiveCode::New, SERVER, leased, ClientType::Dhcp, 3600),
            Call::PktSend,
        ])
    );
    assert_eq!(c.engine.stats().sent[5], 1);
}

#[test]
fn a_deferred_ack_whose_commit_failed_is_withheld_with_an_internal_error_drop() {
    let c = engine_over_commit_log(true);
    let offer = handle(
        &c.engine,
        &message(MessageType::Discover, 1),
        Ipv4Addr::BROADCAST,
    );
    let leased = decode(&offer).yiaddr();
    c.hooks.take();
    let mut ack = handle(&c.engine, &request_for(1, leased), Ipv4Addr::BROADCAST);
    c.failing.store(true, Ordering::Relaxed);
    assert!(c.engine.commit(ack.uncommitted.unwrap()).is_err());
    assert_eq!(c.engine.finish(ack.held.take().unwrap(), false), None);
    assert_eq!(
        c.hooks.take(),
        vec![
            Call::NewPkt,
            Call::HandleOptions(Some(MAIN_SCOPE)),
            Call::AddressOffer(GiveCode::New, SERVER, leased, ClientType::Dhcp, 3600),
            Call::PktDrop(DropReason::InternalError),
            Call::PktDrop(DropReason::Processed),
        ],
        "no PktSend for a reply that never leaves"
    );
    assert_eq!(c.engine.stats().sent[5], 0);
}

/// The grant and DNS events (IDs 10 and up) written so far, as (ID, address).
fn grant_events(audit: &AuditLog, clock: &ManualClock) -> Vec<(u8, Option<Ipv4Addr>)> {
    audit_events(audit, clock)
        .iter()
        .filter(|e| e.id >= 10)
        .map(|e| (e.id, e.ip))
        .collect()
}

/// A REQUEST for `offered` whose option 81 (S = 1) leaves the A and PTR updates to the server.
fn request_with_fqdn(n: u8, offered: Ipv4Addr) -> Message {
    with(
        request_for(n, offered),
        [DhcpOption::Unknown(dhcproto::v4::UnknownOption::new(
            OptionCode::ClientFQDN,
            [&[1, 0, 0][..], b"pc2.lab.example"].concat(),
        ))],
    )
}

#[test]
fn a_held_acks_audit_lines_are_written_after_its_commit_and_never_when_withheld() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start()));
    let audit = audit_log(&dir.path().join("audit"), clock.clone());
    audit.started();
    let c = engine_over_commit_log_audited(true, clock.clone(), Some(audit.clone()));
    let send = |m: &Message| handle(&c.engine, m, Ipv4Addr::BROADCAST);
    // Client 1: the commit fails, the ACK is withheld: no Assign line (and no DNS lines).
    let first = decode(&send(&message(MessageType::Discover, 1))).yiaddr();
    let mut ack = send(&request_with_fqdn(1, first));
    assert_eq!(grant_events(&audit, &clock), [], "a line before the commit");
    c.failing.store(true, Ordering::Relaxed);
    assert!(c.engine.commit(ack.uncommitted.unwrap()).is_err());
    assert_eq!(c.engine.finish(ack.held.take().unwrap(), false), None);
    assert_eq!(
        grant_events(&audit, &clock),
        [],
        "a line for a lease never stored"
    );
    // Client 2: committed: Assign and its DNS events, once finish runs.
    c.failing.store(false, Ordering::Relaxed);
    let second = decode(&send(&message(MessageType::Discover, 2))).yiaddr();
    let mut ack = send(&request_with_fqdn(2, second));
    assert_eq!(grant_events(&audit, &clock), []);
    c.engine.commit(ack.uncommitted.unwrap()).unwrap();
    assert!(c.engine.finish(ack.held.take().unwrap(), true).is_some());
    let assigned = [(10, Some(second)), (30, Some(second)), (35, Some(second))];
    assert_eq!(grant_events(&audit, &clock), assigned);
    let events = audit_events(&audit, &clock);
    let assign = events.iter().find(|e| e.id == 10).unwrap();
    // The request's fields, parsed again from the held packet.
    assert_eq!(
        (assign.mac.as_str(), assign.transaction_id),
        (mac_hex(2).as_str(), Some(0x1002))
    );
    let dns = events.iter().find(|e| e.id == 30).unwrap();
    assert_eq!(dns.host_name, "pc2.lab.example");
    // Its renewal: Renew, again only after the commit.
    let mut renew = send(&request_for(2, second));
    c.engine.commit(renew.uncommitted.unwrap()).unwrap();
    assert!(c.engine.finish(renew.held.take().unwrap(), true).is_some());
    assert_eq!(grant_events(&audit, &clock)[3..], [(11, Some(second))]);
}

#[test]
fn without_deferral_an_ack_is_logged_only_when_its_commit_succeeded() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start()));
    let audit = audit_log(&dir.path().join("audit"), clock.clone());
    audit.started();
    let c = engine_over_commit_log_audited(false, clock.clone(), Some(audit.clone()));
    let send = |m: &Message| handle(&c.engine, m, Ipv4Addr::BROADCAST);
    let first = decode(&send(&message(MessageType::Discover, 1))).yiaddr();
    c.failing.store(true, Ordering::Relaxed);
    assert_eq!(send(&request_for(1, first)).reply, None);
    assert_eq!(grant_events(&audit, &clock), []);
    c.failing.store(false, Ordering::Relaxed);
    let second = decode(&send(&message(MessageType::Discover, 2))).yiaddr();
    assert!(send(&request_for(2, second)).reply.is_some());
    assert_eq!(grant_events(&audit, &clock), [(10, Some(second))]);
}

#[test]
fn a_deferred_ack_suppressed_by_pkt_send_is_not_sent() {
    let c = engine_over_commit_log(true);
    let offer = handle(
        &c.engine,
        &message(MessageType::Discover, 1),
        Ipv4Addr::BROADCAST,
    );
    let mut ack = handle(
        &c.engine,
        &request_for(1, decode(&offer).yiaddr()),
        Ipv4Addr::BROADCAST,
    );
    c.hooks.send_mode.store(SEND_SUPPRESS, Ordering::Relaxed);
    c.engine.commit(ack.uncommitted.unwrap()).unwrap();
    assert_eq!(c.engine.finish(ack.held.take().unwrap(), true), None);
    let calls = c.hooks.take();
    assert_eq!(
        calls[calls.len() - 2..],
        [Call::PktSend, Call::PktDrop(DropReason::Processed)]
    );
    assert_eq!(c.engine.stats().suppressed_by_callout, 1);
}

#[test]
fn without_deferral_the_engine_commits_before_the_ack() {
    let c = engine_over_commit_log(false);
    let send = |m: &Message| handle(&c.engine, m, Ipv4Addr::BROADCAST);
    let offer = send(&message(MessageType::Discover, 1));
    let ack = send(&request_for(1, decode(&offer).yiaddr()));
    assert_eq!(ack.reply_type, Some(5));
    assert_eq!(ack.uncommitted, None);
    assert!(ack.held.is_none() && ack.reply.is_some());
    assert_eq!(c.commits.lock().unwrap().len(), 1);
}

#[test]
fn without_deferral_a_failed_commit_drops_the_ack_before_pkt_send() {
    let c = engine_over_commit_log(false);
    let offer = handle(
        &c.engine,
        &message(MessageType::Discover, 1),
        Ipv4Addr::BROADCAST,
    );
    let leased = decode(&offer).yiaddr();
    c.hooks.take();
    c.failing.store(true, Ordering::Relaxed);
    let ack = handle(&c.engine, &request_for(1, leased), Ipv4Addr::BROADCAST);
    assert!(ack.reply.is_none() && ack.held.is_none());
    assert_eq!(ack.dropped, Some(DropReason::InternalError));
    assert_eq!(
        c.hooks.take(),
        main_calls([
            Call::AddressOffer(GiveCode::New, SERVER, leased, ClientType::Dhcp, 3600),
            Call::PktDrop(DropReason::InternalError)
        ])
    );
}

fn exported_lease(ip: Ipv4Addr, id: &[u8], state: &str) -> calloutd_config::ImportedLease {
    calloutd_config::ImportedLease {
        ip_address: ip,
        client_id: id.to_vec(),
        host_name: Some("migrated".into()),
        address_state: state.into(),
        lease_expiry_time: Some("2030-01-01T00:00:00Z".into()),
    }
}

#[test]
fn exported_leases_are_imported_without_overwriting_and_their_clients_keep_their_address() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("leases.db");
    let h = harness(config(), &db);
    let leased = h.dora(1);
    let report = h
        .engine
        .import_leases(&[
            exported_lease(ip(40), &mac(7), "Active"),
            // The address of client 1's lease: the database wins.
            exported_lease(leased, &mac(8), "Active"),
            // Client 1 itself, elsewhere: it already has a lease.
            exported_lease(ip(41), &mac(1), "Active"),
            exported_lease(ip(42), &mac(9), "Declined"),
            exported_lease(Ipv4Addr::new(198, 20, 0, 5), &mac(10), "Active"),
        ])
        .unwrap();
    assert_eq!(
        report,
        ImportReport {
            imported: 1,
            already_leased: 2,
            not_active: 1,
            outside_scopes: 1,
            ..ImportReport::default()
        }
    );
    let imported = h
        .engine
        .leases()
        .into_iter()
        .find(|l| l.ip == ip(40))
        .expect("the imported lease");
    assert_eq!(imported.hw_address, mac(7));
    assert_eq!(imported.host_name.as_deref(), Some("migrated"));
    // The migrated client asks again and gets its address back.
    let offer = h.send(&message(MessageType::Discover, 7));
    assert_eq!(decode(&offer).yiaddr(), ip(40));
    // It is in the database too: a restart keeps it.
    drop(h);
    let h = harness(config(), &db);
    assert!(h.engine.leases().iter().any(|l| l.ip == ip(40)));
}

/// Policies, superscopes, option overload and option 81 (issue 15).
mod policy;

/// Infinite leases on `addresses` (last octets), the one on .N held by client mac(100 + N).
fn other_clients_leases(addresses: std::ops::RangeInclusive<u8>) -> Vec<Lease> {
    addresses
        .map(|last| Lease {
            ip: ip(last),
            client_id: vec![1, 2, 0, 0, 0, 0, 100 + last],
            hw_type: 1,
            hw_address: mac(100 + last).to_vec(),
            host_name: None,
            expires: None,
            client_type: ClientType::Dhcp,
            policy_name: None,
        })
        .collect()
}

#[test]
fn the_address_search_starts_past_the_leases_stored_at_the_start_of_a_scope() {
    // Five stored leases on the scope's first pool addresses (.13-.17: .10-.12 are excluded; the
    // search starts at the range's first address, .10), each another client's.
    let leases = other_clients_leases(13..=17);
    let engine = Engine::new(
        config(),
        EngineOptions::default(),
        Arc::new(NoHooks),
        Box::new(MemoryLeaseStore::with_leases(leases)),
        Arc::new(NoProber),
    )
    .unwrap();
    // The excluded .10-.12 hold no lease: the search starts at the first of them, not past .17.
    assert_eq!(engine.search_cursor(0), u32::from(ip(10)));
    let outcome = handle(
        &engine,
        &message(MessageType::Discover, 1),
        Ipv4Addr::BROADCAST,
    );
    assert_eq!(decode(&outcome).yiaddr(), ip(18));

    // Without the exclusion the leases are the scope's first addresses: the search starts after
    // them, and a new client is offered the same address as a search from the start would give.
    let mut cfg = config();
    cfg.scopes[0].exclusion_ranges.clear();
    let leases = other_clients_leases(10..=14);
    let engine = Engine::new(
        cfg,
        EngineOptions::default(),
        Arc::new(NoHooks),
        Box::new(MemoryLeaseStore::with_leases(leases)),
        Arc::new(NoProber),
    )
    .unwrap();
    assert_eq!(engine.search_cursor(0), u32::from(ip(15)));
    let outcome = handle(
        &engine,
        &message(MessageType::Discover, 1),
        Ipv4Addr::BROADCAST,
    );
    assert_eq!(decode(&outcome).yiaddr(), ip(15));
    // A stored client still gets its own address back.
    let outcome = handle(
        &engine,
        &message(MessageType::Discover, 111),
        Ipv4Addr::BROADCAST,
    );
    assert_eq!(decode(&outcome).yiaddr(), ip(11));
}
