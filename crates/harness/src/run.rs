//! Running a scenario on the virtual network: each step's action, then its expectations, into
//! a report of one line per step.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use calloutd_callout::{HookName, MisbehaviourKind, TraceRecord};
use calloutd_client::{encode_request, Identity, MessageType, Outgoing};
use dhcpssdk::DropReason;

use crate::net::{Delivery, HostMode, NetConfig, SharedWriter, VirtualNet};
use crate::scenario::{
    code_name, Action, Client, DropExpect, Expect, HookSpec, Message, OptionExpect, ReplyExpect,
    Scenario, Step,
};

/// How to run scenarios.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Relative CalloutDlls entries resolve here.
    pub callout_dir: Option<std::path::PathBuf>,
    /// Every hook call also goes here.
    pub trace: Option<SharedWriter>,
    /// In-process or isolated.
    pub mode: HostMode,
}

/// The result of one step.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// 1-based step number.
    pub number: usize,
    /// Its line in the scenario file.
    pub line: usize,
    /// What it did, e.g. `alice discover -> OFFER 198.18.0.10`.
    pub summary: String,
    /// The hook calls, short (`NewPkt HandleOptions PktSend PktDrop(PROCESSED)`).
    pub hooks: String,
    /// The hook calls in full.
    pub calls: Vec<TraceRecord>,
    /// The first expectation that failed: what was expected, what happened.
    pub failure: Option<String>,
}

/// The result of one scenario.
#[derive(Debug, Clone)]
pub struct ScenarioReport {
    /// The scenario's name.
    pub name: String,
    /// Its file.
    pub path: std::path::PathBuf,
    /// What was loaded.
    pub loaded: String,
    /// The hook calls of the service start (Control START).
    pub start_calls: Vec<TraceRecord>,
    /// One per step run (a run stops at a setup error only).
    pub steps: Vec<StepReport>,
    /// A setup error (configuration, callout), which fails the scenario.
    pub setup_error: Option<String>,
    /// Why the scenario was not run (an `isolated_only` scenario in-process).
    pub skipped: Option<String>,
    /// Misbehaviour in Control START or STOP (no step can expect it), which fails the scenario.
    pub service_failure: Option<String>,
    /// Wall time.
    pub elapsed: Duration,
}

impl ScenarioReport {
    /// Whether every expectation held (a skipped scenario has none that failed).
    pub fn passed(&self) -> bool {
        self.setup_error.is_none()
            && self.service_failure.is_none()
            && self.steps.iter().all(|s| s.failure.is_none())
    }

    /// Whether it was skipped rather than run.
    pub fn is_skipped(&self) -> bool {
        self.skipped.is_some()
    }

    /// The first failure, as text.
    pub fn first_failure(&self) -> Option<String> {
        if let Some(e) = &self.setup_error {
            return Some(e.clone());
        }
        if let Some(e) = &self.service_failure {
            return Some(format!("{}: {e}", self.path.display()));
        }
        self.steps.iter().find_map(|s| {
            s.failure.as_ref().map(|f| {
                format!(
                    "step {} ({}:{}): {}\n{f}",
                    s.number,
                    self.path.display(),
                    s.line,
                    s.summary
                )
            })
        })
    }
}

/// A client's memory between steps.
#[derive(Debug, Clone, Default)]
struct ClientState {
    /// The address and server of the last OFFER.
    offered: Option<(Ipv4Addr, Option<Ipv4Addr>)>,
    /// The address and server of the last ACK.
    bound: Option<(Ipv4Addr, Option<Ipv4Addr>)>,
    /// Messages sent so far (for fresh xids).
    sent: u32,
}

/// Runs one checked scenario.
pub fn run_scenario(scenario: &Scenario, options: &RunOptions) -> ScenarioReport {
    let started = Instant::now();
    let mut report = ScenarioReport {
        name: scenario.name.clone(),
        path: scenario.path.clone(),
        loaded: String::new(),
        start_calls: Vec::new(),
        steps: Vec::new(),
        setup_error: None,
        skipped: None,
        service_failure: None,
        elapsed: Duration::ZERO,
    };
    if scenario.isolated_only && !options.mode.is_isolated() {
        report.skipped = Some(
            "isolated_only: its callout crashes or hangs on purpose, which would end an \
             in-process run (run it with --isolate)"
                .into(),
        );
        return report;
    }
    // The runner is the one thread calling an isolated callout: on one CPU with the host's
    // thread, a hook call is a switch there, not a wake-up of another CPU (docs/hooks.md 8.4).
    let _pinned = options
        .mode
        .is_isolated()
        .then(calloutd_callout::isolate::pin_caller_here);
    let mut mode = options.mode.clone();
    if let (HostMode::Isolated(isolate), Some(timeout)) = (&mut mode, scenario.hook_timeout) {
        isolate.hook_timeout = timeout;
    }
    let mut config = NetConfig {
        reg: scenario.reg.clone(),
        scopes: scenario.scopes.clone(),
        callout_dir: options.callout_dir.clone(),
        env: scenario.env.clone(),
        server: scenario.server,
        trace: options
            .trace
            .clone()
            .map(|w| Box::new(w) as Box<dyn std::io::Write + Send>),
        mode,
        ..NetConfig::default()
    };
    if let Some(slow) = scenario.slow {
        config.slow = slow;
    }
    let mut net = match VirtualNet::open(config) {
        Ok(net) => net,
        Err(e) => {
            report.setup_error = Some(format!("{}: {e}", scenario.path.display()));
            report.elapsed = started.elapsed();
            return report;
        }
    };
    report.loaded = net.loaded().to_string();
    report.start_calls = net.start_calls().to_vec();
    let mut states = vec![ClientState::default(); scenario.clients.len()];
    for (i, step) in scenario.steps.iter().enumerate() {
        let mut step_report = run_step(&mut net, scenario, step, &mut states);
        step_report.number = i + 1;
        report.steps.push(step_report);
    }
    let stop_calls = net.stop();
    report.service_failure = service_misbehaviour("START", &report.start_calls)
        .or_else(|| service_misbehaviour("STOP", &stop_calls));
    report.elapsed = started.elapsed();
    report
}

/// Misbehaviour in the service's Control START (before the first step) or STOP (after the last),
/// which no step can expect: a crash or a hang there, a buffer or context fault. A slow START or
/// STOP is in the trace but does not fail the scenario: the first call into a DLL also resolves
/// its symbols, and on a busy machine that alone can pass the threshold.
fn service_misbehaviour(control: &str, calls: &[TraceRecord]) -> Option<String> {
    calls
        .iter()
        .flat_map(|c| c.misbehaviour.iter())
        .find(|m| m.kind != MisbehaviourKind::SlowHook)
        .map(|m| format!("at Control {control}: unexpected misbehaviour: {m}"))
}

fn run_step(
    net: &mut VirtualNet,
    scenario: &Scenario,
    step: &Step,
    states: &mut [ClientState],
) -> StepReport {
    let mut failure = None;
    let (summary, calls, delivery) = match &step.action {
        Action::Send { client, .. } => {
            let c = &scenario.clients[*client];
            let (datagram, described) = build(net, c, &mut states[*client], &step.action);
            let runtime_drop = match &step.action {
                Action::Send { runtime_drop, .. } => *runtime_drop,
                _ => None,
            };
            let mut delivery = net.deliver(datagram, runtime_drop);
            remember(&mut states[*client], &delivery);
            let summary = format!("{} {described} -> {}", c.name, outcome_text(&delivery));
            // The step report keeps the calls; the delivery need not keep a copy.
            let calls = std::mem::take(&mut delivery.calls);
            (summary, calls, Some(delivery))
        }
        Action::Raw(bytes) => {
            let datagram = net.datagram(
                bytes.clone(),
                SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
                true,
            );
            let mut delivery = net.deliver(datagram, None);
            let summary = format!("raw {} bytes -> {}", bytes.len(), outcome_text(&delivery));
            let calls = std::mem::take(&mut delivery.calls);
            (summary, calls, Some(delivery))
        }
        Action::Pause => ("pause".to_string(), net.pause(), None),
        Action::Continue => ("continue".to_string(), net.resume(), None),
        Action::Advance(by) => {
            let (purged, calls) = net.advance(*by);
            let text = match purged {
                Ok(n) => format!("advance {}s: {n} expired lease(s) purged", by.as_secs()),
                Err(e) => {
                    failure = Some(format!("purging expired leases failed: {e}"));
                    format!("advance {}s", by.as_secs())
                }
            };
            (text, calls, None)
        }
        Action::Delete(ip) => {
            let (deleted, calls) = net.delete(*ip);
            let text = match deleted {
                Ok(Some(_)) => format!("delete {ip}: deleted"),
                Ok(None) => format!("delete {ip}: no lease there"),
                Err(e) => {
                    failure = Some(format!("deleting {ip} failed: {e}"));
                    format!("delete {ip}")
                }
            };
            (text, calls, None)
        }
        Action::StoreFailing(failing) => {
            net.set_store_failing(*failing);
            let text = if *failing {
                "lease store fails"
            } else {
                "lease store recovers"
            };
            (text.to_string(), Vec::new(), None)
        }
        Action::Check => ("check".to_string(), Vec::new(), None),
    };
    if failure.is_none() {
        failure = check(net, &step.expect, delivery.as_ref(), &calls);
    }
    StepReport {
        number: 0,
        line: step.line,
        summary,
        hooks: hooks_text(&calls),
        calls,
        failure,
    }
}

/// The datagram a client sends for a `send` step, and a short description.
fn build(
    net: &VirtualNet,
    client: &Client,
    state: &mut ClientState,
    action: &Action,
) -> (calloutd_engine::Datagram, String) {
    let Action::Send {
        message,
        requested_ip,
        server_id,
        ciaddr,
        xid,
        ..
    } = action
    else {
        unreachable!("build is called for send steps only")
    };
    state.sent += 1;
    let xid = xid.unwrap_or_else(|| {
        let mac = u32::from_be_bytes([client.mac[2], client.mac[3], client.mac[4], client.mac[5]]);
        mac.rotate_left(8) ^ state.sent.wrapping_mul(0x9E37_79B9)
    });
    let server = net.server();
    let bound_ip = state.bound.map(|(ip, _)| ip);
    let bound_server = state.bound.and_then(|(_, s)| s).or(Some(server));
    let offered_ip = state.offered.map(|(ip, _)| ip);
    let offered_server = state.offered.and_then(|(_, s)| s).or(Some(server));
    let zero = Ipv4Addr::UNSPECIFIED;
    // (kind, ciaddr, requested, server id, broadcast)
    let (kind, ci, req, sid, broadcast) = match message {
        Message::Discover => (Some(MessageType::Discover), zero, None, None, true),
        Message::Request => (
            Some(MessageType::Request),
            zero,
            offered_ip,
            offered_server,
            true,
        ),
        Message::InitReboot => (
            Some(MessageType::Request),
            zero,
            bound_ip.or(offered_ip),
            None,
            true,
        ),
        Message::Renew => (
            Some(MessageType::Request),
            bound_ip.unwrap_or(zero),
            None,
            None,
            false,
        ),
        Message::Rebind => (
            Some(MessageType::Request),
            bound_ip.unwrap_or(zero),
            None,
            None,
            true,
        ),
        Message::Release => (
            Some(MessageType::Release),
            bound_ip.unwrap_or(zero),
            None,
            bound_server,
            false,
        ),
        Message::Decline => (
            Some(MessageType::Decline),
            zero,
            bound_ip.or(offered_ip),
            bound_server,
            true,
        ),
        Message::Inform => (
            Some(MessageType::Inform),
            bound_ip.unwrap_or(zero),
            None,
            None,
            false,
        ),
        Message::Bootp => (None, zero, None, None, true),
    };
    let ci = ciaddr.unwrap_or(ci);
    let out = Outgoing {
        kind,
        xid,
        ciaddr: ci,
        giaddr: client.relay.unwrap_or(zero),
        hops: if client.relay.is_some() {
            client.hops
        } else {
            0
        },
        broadcast_flag: client.broadcast_flag,
        requested_ip: requested_ip.or(req),
        server_id: server_id.or(sid),
        magic_cookie: true,
    };
    let identity = Identity {
        mac: client.mac,
        client_id: client.client_id.as_deref(),
        hostname: client.hostname.as_deref(),
        vendor_class: client.vendor_class.as_deref(),
        user_class: client.user_class.as_deref(),
        parameter_request_list: &client.request_list,
        extra_options: &client.options,
    };
    // The client library only fails on options dhcproto cannot encode; the scenario checked them.
    let bytes = encode_request(&identity, &out).unwrap_or_default();
    let (peer, broadcast) = match client.relay {
        // A relay agent unicasts to the server from port 67.
        Some(giaddr) => (SocketAddrV4::new(giaddr, 67), false),
        None => (SocketAddrV4::new(ci, 68), broadcast),
    };
    let described = format!(
        "{}{} xid 0x{xid:08x}",
        message.name(),
        if client.relay.is_some() {
            " (relayed)"
        } else {
            ""
        }
    );
    (net.datagram(bytes, peer, broadcast), described)
}

/// Remembers what a reply gave the client.
fn remember(state: &mut ClientState, delivery: &Delivery) {
    let Some(reply) = &delivery.reply else {
        return;
    };
    let server = reply.server_id;
    match reply.message_type {
        Some(MessageType::Offer) => state.offered = Some((reply.yiaddr, server)),
        Some(MessageType::Ack) if !reply.yiaddr.is_unspecified() => {
            state.bound = Some((reply.yiaddr, server))
        }
        Some(MessageType::Nak) => state.bound = None,
        None => state.bound = Some((reply.yiaddr, server)),
        _ => {}
    }
}

/// `OFFER 198.18.0.10`, `no reply (dropped: NOADDRESS)`, `no reply (dropped by the callout)`.
pub fn outcome_text(delivery: &Delivery) -> String {
    if let Some(reply) = &delivery.reply {
        let name = match reply.message_type {
            Some(_) => reply.type_name(),
            None => "BOOTREPLY".to_string(),
        };
        return if reply.yiaddr.is_unspecified() {
            name
        } else {
            format!("{name} {}", reply.yiaddr)
        };
    }
    if let Some(reason) = delivery.outcome.dropped {
        return format!("no reply (dropped: {})", short_drop(reason));
    }
    if delivery.dropped_by_callout() {
        return "no reply (dropped by the callout: ProcessIt = FALSE)".into();
    }
    "no reply".into()
}

fn short_drop(reason: DropReason) -> &'static str {
    code_name(HookName::PktDrop, reason.code()).unwrap_or("?")
}

/// One hook call, short: `AddressOffer(NEW)`.
pub fn call_text(record: &TraceRecord) -> String {
    let mut text = String::new();
    push_call_text(&mut text, record);
    text
}

/// Appends [`call_text`] to `text` (one string per step, not one per call: every step makes it).
fn push_call_text(text: &mut String, record: &TraceRecord) {
    text.push_str(record.hook.trace_name());
    if record.hook != HookName::PktSend {
        if let Some(code) = record.code {
            text.push('(');
            match code_name(record.hook, code) {
                Some(name) => text.push_str(name),
                None => text.push_str(&code.to_string()),
            }
            text.push(')');
        }
    }
    // A fault (a broken buffer rule, a crash, a call not delivered) or misbehaviour: look here.
    if !record.misbehaviour.is_empty() || record.fault.is_some() {
        text.push('!');
    }
}

fn hooks_text(calls: &[TraceRecord]) -> String {
    let mut text = String::with_capacity(calls.len() * 24);
    for (i, call) in calls.iter().enumerate() {
        if i > 0 {
            text.push(' ');
        }
        push_call_text(&mut text, call);
    }
    text
}

fn spec_text(spec: &HookSpec) -> String {
    let mut text = spec.hook.trace_name().to_string();
    let mut args = Vec::new();
    if let Some(code) = spec.code {
        args.push(code_name(spec.hook, code).map_or(code.to_string(), str::to_string));
    }
    if let Some(ip) = spec.ip {
        args.push(format!("ip={ip}"));
    }
    if let Some(alt) = spec.alt {
        args.push(format!("alt={alt}"));
    }
    if let Some(lock) = spec.lock {
        args.push(format!(
            "lock={}",
            lock.names().first().copied().unwrap_or("none")
        ));
    }
    if !args.is_empty() {
        text.push_str(&format!("({})", args.join(", ")));
    }
    text
}

fn matches(spec: &HookSpec, call: &TraceRecord) -> bool {
    spec.hook == call.hook
        && spec.code.is_none_or(|c| call.code == Some(c))
        && spec.ip.is_none_or(|ip| call.ip == Some(ip))
        && spec.alt.is_none_or(|alt| call.alt == Some(alt))
        && spec.lock.is_none_or(|lock| call.locks == lock)
}

/// The first expectation of `expect` that does not hold, as "expected ..., got ...".
fn check(
    net: &VirtualNet,
    expect: &Expect,
    delivery: Option<&Delivery>,
    calls: &[TraceRecord],
) -> Option<String> {
    if let Some(delivery) = delivery {
        if let Some(wanted) = expect.reply {
            let got = match &delivery.reply {
                None => ReplyExpect::None,
                Some(r) => ReplyExpect::Type(r.message_type.map_or(0, u8::from)),
            };
            if got != wanted {
                return Some(format!(
                    "  expected reply: {}\n  got:            {}",
                    reply_text(wanted),
                    outcome_text(delivery)
                ));
            }
        }
        if let Some(ip) = expect.yiaddr {
            let got = delivery.reply.as_ref().map(|r| r.yiaddr);
            if got != Some(ip) {
                return Some(format!(
                    "  expected yiaddr {ip}\n  got:            {}",
                    outcome_text(delivery)
                ));
            }
        }
        if let Some(wanted) = expect.drop {
            let got = match delivery.outcome.dropped {
                Some(reason) => DropExpect::Reason(reason),
                None if delivery.dropped_by_callout() => DropExpect::Callout,
                None => DropExpect::None,
            };
            if got != wanted {
                return Some(format!(
                    "  expected drop: {}\n  got:           {}",
                    drop_text(wanted),
                    drop_text(got)
                ));
            }
        }
        for (code, wanted) in &expect.options {
            let got = delivery.reply.as_ref().and_then(|r| r.option(*code));
            let ok = match (wanted, got) {
                (OptionExpect::Absent, None) => true,
                (OptionExpect::Absent, Some(_)) | (_, None) => false,
                (OptionExpect::Present, Some(_)) => true,
                (OptionExpect::Bytes(b), Some(o)) => &o.data == b,
                (OptionExpect::Number(n), Some(o)) => {
                    o.data.len() <= 8
                        && o.data.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b)) == *n
                }
            };
            if !ok {
                let got = match got {
                    None => "absent".to_string(),
                    Some(o) => format!("{} ({})", calloutd_client::to_hex(&o.data), o.value()),
                };
                let wanted = match wanted {
                    OptionExpect::Present => "present".to_string(),
                    OptionExpect::Absent => "absent".to_string(),
                    OptionExpect::Bytes(b) => calloutd_client::to_hex(b),
                    OptionExpect::Number(n) => n.to_string(),
                };
                return Some(format!(
                    "  expected option {code}: {wanted}\n  got:              {got}"
                ));
            }
        }
    } else if expect.reply.is_some()
        || expect.yiaddr.is_some()
        || expect.drop.is_some()
        || !expect.options.is_empty()
    {
        return Some(
            "  reply, yiaddr, drop and options can only be expected of a step that sends".into(),
        );
    }
    if let Some(failure) = check_hooks(expect, calls) {
        return Some(failure);
    }
    let found: Vec<MisbehaviourKind> = calls
        .iter()
        .flat_map(|c| c.misbehaviour.iter().map(|m| m.kind))
        .collect();
    let mut unexpected = calls
        .iter()
        .flat_map(|c| c.misbehaviour.iter())
        .filter(|m| !expect.misbehaviour.contains(&m.kind));
    if let Some(m) = unexpected.next() {
        return Some(format!("  unexpected misbehaviour: {m}"));
    }
    if let Some(missing) = expect.misbehaviour.iter().find(|k| !found.contains(k)) {
        return Some(format!(
            "  expected misbehaviour: {missing}\n  got:                   {}",
            if found.is_empty() {
                "none".to_string()
            } else {
                found
                    .iter()
                    .map(|k| k.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ));
    }
    check_leases(net, expect)
}

fn check_hooks(expect: &Expect, calls: &[TraceRecord]) -> Option<String> {
    let actual = || {
        format!(
            "  got:      {}",
            if calls.is_empty() {
                "no hook calls".to_string()
            } else {
                hooks_text(calls)
            }
        )
    };
    if expect.hooks_exact {
        let same = expect.hooks.len() == calls.len()
            && expect.hooks.iter().zip(calls).all(|(s, c)| matches(s, c));
        if !same {
            let wanted: Vec<String> = expect.hooks.iter().map(spec_text).collect();
            return Some(format!(
                "  expected exactly these hook calls: {}\n{}",
                wanted.join(" "),
                actual()
            ));
        }
    } else {
        let mut rest = calls.iter();
        for spec in &expect.hooks {
            if !rest.any(|c| matches(spec, c)) {
                let wanted: Vec<String> = expect.hooks.iter().map(spec_text).collect();
                return Some(format!(
                    "  expected hook calls in this order: {}\n  missing:  {}\n{}",
                    wanted.join(" "),
                    spec_text(spec),
                    actual()
                ));
            }
        }
    }
    for spec in &expect.not_hooks {
        if let Some(call) = calls.iter().find(|c| matches(spec, c)) {
            return Some(format!(
                "  expected no {} call\n  got:      {} (ip {:?}, alt {:?}, locks {:?})",
                spec_text(spec),
                call_text(call),
                call.ip,
                call.alt,
                call.locks.names()
            ));
        }
    }
    None
}

fn check_leases(net: &VirtualNet, expect: &Expect) -> Option<String> {
    if expect.leases.is_none() && expect.lease_count.is_none() {
        return None;
    }
    let leases = net.leases();
    let table = || {
        if leases.is_empty() {
            "  got:      no leases".to_string()
        } else {
            let rows: Vec<String> = leases
                .iter()
                .map(|l| {
                    format!(
                        "{} {}{}",
                        l.ip,
                        calloutd_client::to_colon_hex(&l.hw_address),
                        l.host_name
                            .as_ref()
                            .map(|h| format!(" {h}"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            format!("  got:      {}", rows.join("; "))
        }
    };
    if let Some(count) = expect.lease_count {
        if leases.len() != count {
            return Some(format!("  expected {count} lease(s)\n{}", table()));
        }
    }
    if let Some(wanted) = &expect.leases {
        let same = wanted.len() == leases.len()
            && wanted.iter().zip(&leases).all(|(w, l)| {
                w.ip == l.ip
                    && w.mac.as_ref().is_none_or(|m| *m == l.hw_address)
                    && w.hostname
                        .as_ref()
                        .is_none_or(|h| Some(h) == l.host_name.as_ref())
            });
        if !same {
            let rows: Vec<String> = wanted
                .iter()
                .map(|w| {
                    format!(
                        "{}{}{}",
                        w.ip,
                        w.mac
                            .as_ref()
                            .map(|m| format!(" {}", calloutd_client::to_colon_hex(m)))
                            .unwrap_or_default(),
                        w.hostname
                            .as_ref()
                            .map(|h| format!(" {h}"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            let wanted = if rows.is_empty() {
                "no leases".to_string()
            } else {
                rows.join("; ")
            };
            return Some(format!("  expected leases: {wanted}\n{}", table()));
        }
    }
    None
}

fn reply_text(r: ReplyExpect) -> String {
    match r {
        ReplyExpect::None => "none".into(),
        ReplyExpect::Type(0) => "BOOTREPLY".into(),
        ReplyExpect::Type(t) => calloutd_client::message_type_name(MessageType::from(t)),
    }
}

fn drop_text(d: DropExpect) -> String {
    match d {
        DropExpect::None => "not dropped".into(),
        DropExpect::Callout => "by the callout (ProcessIt = FALSE)".into(),
        DropExpect::Reason(r) => short_drop(r).into(),
    }
}
