//! Every hook through the safe API against the real built callouts.

// Unix only: loads the fixture callouts as .so files built by the host C compiler.
#![cfg(unix)]

mod common;

use calloutd_callout::{
    Callout, ClientType, ControlCode, DropReason, GiveCode, GuardZone, HeldLocks, HookFault,
    HookName, LoadOrder, LoadResult, MisbehaviourKind, ProbCode, TraceRecord, TraceSink,
    MIN_BUFFER,
};
use common::*;
use serde_json::json;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30];
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
/// The address the hooks are told about (the one [`full_request`] asks for).
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 50);

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Loads fixture `name` from its own temp copy with `vars`.
fn load_one(dir: &Path, name: &str, vars: &[(&str, &str)]) -> Callout {
    let dll = copy_fixture(dir, name, &format!("{name}.so"));
    let result = load_with_env(&enabled(&[&dll], LoadOrder::Alphabetical), vars);
    result
        .callout
        .unwrap_or_else(|| panic!("{name} did not load: {:?}", result.report))
}

/// Loads `dlls` in alphabetical order with the trace fixtures among them writing to `trace`, and
/// `vars` set too.
fn load_tracing(dlls: &[&Path], trace: &Path, vars: &[(&str, &str)]) -> LoadResult {
    let trace = s(trace);
    let mut all = vec![("CALLOUT_TRACE_FILE", trace.as_str())];
    all.extend_from_slice(vars);
    load_with_env(&enabled(dlls, LoadOrder::Alphabetical), &all)
}

/// Loads the trace fixture writing its lines to `dll_trace`.
fn load_trace(dir: &Path, dll_trace: &Path) -> Callout {
    load_one(dir, "trace", &[("CALLOUT_TRACE_FILE", &s(dll_trace))])
}

/// NewPkt on `packet` from [`SERVER_IP`] with no lock held.
fn new_pkt(callout: &Callout, packet: &mut Vec<u8>, ctx: &mut usize) -> Result<bool, HookFault> {
    callout.new_pkt(packet, SERVER_IP, ctx, HeldLocks::None)
}

/// PktSend of `reply` on [`SERVER_IP`] with no lock held.
fn send_reply(callout: &Callout, reply: &mut Vec<u8>, ctx: usize) -> Result<(), HookFault> {
    callout.pkt_send(reply, SERVER_IP, ctx, HeldLocks::None)
}

/// PktDrop of `packet` for `reason` with no lock held; the hook must not fault.
fn drop_packet(callout: &Callout, packet: &mut Vec<u8>, reason: DropReason, ctx: usize) {
    callout
        .pkt_drop(packet, reason, SERVER_IP, ctx, HeldLocks::None)
        .unwrap();
}

/// AddressOffer of [`CLIENT_IP`] to a DHCP client for `lease_secs`; the hook must not fault.
fn offer(
    callout: &Callout,
    packet: &[u8],
    code: GiveCode,
    lease_secs: u32,
    ctx: usize,
    locks: HeldLocks,
) {
    callout
        .address_offer(
            packet,
            code,
            SERVER_IP,
            CLIENT_IP,
            ClientType::Dhcp,
            lease_secs,
            ctx,
            locks,
        )
        .unwrap();
}

/// AddressDel of [`CLIENT_IP`] under the lease lock; the hook must not fault.
fn delete_address(callout: &Callout, packet: &[u8], code: ProbCode, ctx: usize) {
    callout
        .address_del(packet, code, SERVER_IP, CLIENT_IP, ctx, HeldLocks::Lease)
        .unwrap();
}

/// The records `sink` wrote to `path`, after a flush.
fn flushed_records(sink: &TraceSink, path: &Path) -> Vec<TraceRecord> {
    sink.flush().unwrap();
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A REQUEST carrying every option DHCP_SERVER_OPTIONS maps.
fn full_request() -> Vec<u8> {
    Packet::request(3, MAC)
        .option(50, &[192, 168, 0, 50])
        .option(54, &[192, 168, 0, 1])
        .option(12, b"pc-test")
        .option(55, &[1, 3, 6, 15, 51])
        .option(60, b"MSFT 5.0")
        .option(77, b"userclass")
        .option(81, b"\x01\x00\x00pc-test.example.com")
        .option(1, &[255, 255, 255, 0])
        .option(3, &[192, 168, 0, 254, 192, 168, 0, 253])
        .option(51, &3600u32.to_be_bytes())
        .option(52, &[1])
        .option(61, &[1, 2, 0, 0x5e, 0x10, 0x20, 0x30])
        .finish()
}

/// Subset check: every key of `expected` has that value in `actual`.
fn assert_fields(actual: &serde_json::Value, expected: serde_json::Value) {
    for (key, value) in expected.as_object().unwrap() {
        assert_eq!(&actual[key], value, "field {key} of {actual}");
    }
}

#[test]
fn every_hook_reaches_the_trace_callout_with_every_argument() {
    let dir = tempfile::tempdir().unwrap();
    let dll_trace = dir.path().join("dll.jsonl");
    let our_trace = dir.path().join("calloutd.jsonl");
    let sink = Arc::new(TraceSink::create(&our_trace).unwrap());
    let callout = load_trace(dir.path(), &dll_trace).with_trace(Some(sink.clone()));

    let request = full_request();
    let mut packet = request.clone();
    let mut ctx = 0usize;
    let scope = Ipv4Addr::new(192, 168, 0, 0);

    assert_eq!(
        callout.control(ControlCode::Start, HeldLocks::Service),
        Some(0)
    );
    assert_eq!(new_pkt(&callout, &mut packet, &mut ctx), Ok(true));
    assert_ne!(ctx, 0, "NewPkt stored a context");
    assert_eq!(packet, request, "trace does not change the packet");
    callout
        .handle_options(&packet, ctx, Some(scope), HeldLocks::None)
        .unwrap();
    offer(
        &callout,
        &packet,
        GiveCode::New,
        3600,
        ctx,
        HeldLocks::Lease,
    );
    let mut reply = Packet::request(5, MAC).finish();
    reply[0] = 2;
    let reply_len = reply.len();
    send_reply(&callout, &mut reply, ctx).unwrap();
    assert_eq!(reply.len(), reply_len);
    delete_address(&callout, &packet, ProbCode::Release, ctx);
    drop_packet(&callout, &mut packet, DropReason::NoAddress, ctx);
    drop_packet(&callout, &mut packet, DropReason::Processed, ctx);
    callout
        .delete_client(CLIENT_IP, &MAC, HeldLocks::Lease)
        .unwrap();
    callout.control(ControlCode::Stop, HeldLocks::Service);

    // What the DLL saw.
    let lines = read_lines(&dll_trace);
    let hooks: Vec<&str> = lines.iter().map(|l| l["hook"].as_str().unwrap()).collect();
    assert_eq!(
        hooks,
        [
            "Entry",
            "Control",
            "NewPkt",
            "HandleOptions",
            "AddressOffer",
            "PktSend",
            "AddressDel",
            "PktDrop",
            "PktDrop",
            "DeleteClient",
            "Control"
        ]
    );
    let ctx_json = json!(ctx as u64);
    let size = request.len() as u64;
    assert_fields(&lines[1], json!({"code": 1, "reserved_null": true}));
    assert_fields(
        &lines[2],
        json!({"ip": "192.168.0.1", "size": size, "xid": XID, "reserved_null": true,
               "ctx_in": 0, "process_it_in": 1, "ctx_out": ctx_json}),
    );
    assert_fields(
        &lines[3],
        json!({"size": size, "xid": XID, "reserved_null": true, "ctx": ctx_json, "ctx_valid": true,
               "message_type": 3, "subnet_mask": "255.255.255.0",
               "requested_address": "192.168.0.50", "request_lease_time": 3600,
               "overlay_fields": 1, "router_address": "192.168.0.254", "server": "192.168.0.1",
               "prl": [1, 3, 6, 15, 51], "machine_name": "pc-test", "hw_type": 1, "hw_len": 6,
               "hw_address": "02:00:5e:10:20:30", "class_id": "userclass",
               "vendor_class": "MSFT 5.0", "dns_flags": 1, "dns_name": "pc-test.example.com",
               "ds_domain_name_requested": false, "ds_domain_name_null": true,
               "ds_domain_name_len": 0, "scope_id": "192.168.0.0"}),
    );
    assert_fields(
        &lines[4],
        json!({"code": 0x3000_0001u32, "ip": "192.168.0.1", "alt": "192.168.0.50",
               "addr_type": 0x3000_0004u32, "lease": 3600, "size": size, "xid": XID,
               "reserved_null": true, "ctx": ctx_json, "ctx_valid": true}),
    );
    assert_fields(
        &lines[5],
        json!({"code": 0x1000_0000u32, "ip": "192.168.0.1", "size": reply_len, "xid": XID,
               "ctx": ctx_json, "ctx_valid": true}),
    );
    assert_fields(
        &lines[6],
        json!({"code": 0x2000_0003u32, "ip": "192.168.0.1", "alt": "192.168.0.50", "size": size,
               "ctx": ctx_json, "ctx_valid": true}),
    );
    assert_fields(
        &lines[7],
        json!({"code": 0xA, "ctx": ctx_json, "ctx_valid": true}),
    );
    assert_fields(
        &lines[8],
        json!({"code": 0xB, "ctx": ctx_json, "ctx_valid": true}),
    );
    assert_fields(
        &lines[9],
        json!({"ip": "192.168.0.50", "hw_address": "02:00:5e:10:20:30", "hw_len": 6,
               "reserved": 0, "client_type": 0}),
    );
    assert_fields(&lines[10], json!({"code": 2}));

    // What calloutd recorded.
    let ours = flushed_records(&sink, &our_trace);
    let summary: Vec<(u64, HookName, Option<u32>, HeldLocks)> = ours
        .iter()
        .map(|r| (r.seq, r.hook, r.code, r.locks))
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, HookName::Control, Some(1), HeldLocks::Service),
            (2, HookName::NewPkt, None, HeldLocks::None),
            (3, HookName::HandleOptions, None, HeldLocks::None),
            (
                4,
                HookName::AddressOffer,
                Some(0x3000_0001),
                HeldLocks::Lease
            ),
            (5, HookName::PktSend, Some(0x1000_0000), HeldLocks::None),
            (6, HookName::AddressDel, Some(0x2000_0003), HeldLocks::Lease),
            (7, HookName::PktDrop, Some(0xA), HeldLocks::None),
            (8, HookName::PktDrop, Some(0xB), HeldLocks::None),
            (9, HookName::DeleteClient, None, HeldLocks::Lease),
            (10, HookName::Control, Some(2), HeldLocks::Service),
        ]
    );
    assert!(ours.iter().all(|r| r.ret == 0 && r.fault.is_none()));
    assert_eq!(ours[3].alt, Some(CLIENT_IP));
    assert_eq!(ours[3].ip, Some(SERVER_IP));
    assert_eq!(ours[1].xid, Some(XID));
    assert_eq!(ours[8].xid, None);
    let stats = callout.stats();
    assert_eq!(stats.get(HookName::PktDrop).calls, 2);
    assert_eq!(stats.get(HookName::Control).calls, 2);
    assert_eq!(stats.get(HookName::NewPkt).calls, 1);
}

#[test]
fn handle_options_without_options_or_scope_passes_nulls() {
    let dir = tempfile::tempdir().unwrap();
    let dll_trace = dir.path().join("dll.jsonl");
    let callout = load_trace(dir.path(), &dll_trace);
    // Truncated after the message type: option 50 claims 4 bytes but only 2 follow.
    let mut packet = Packet::request(1, MAC).bytes;
    packet.extend_from_slice(&[50, 4, 10, 0]);
    callout
        .handle_options(&packet, 0, None, HeldLocks::None)
        .unwrap();
    let line = &lines_for(&dll_trace, "trace", "HandleOptions")[0];
    assert_fields(
        line,
        json!({"message_type": 1, "requested_address": null, "server": null, "prl": null,
               "machine_name": null, "class_id": null, "vendor_class": null, "dns_name": null,
               "dns_flags": 0, "scope_id": null, "ctx": 0, "ctx_valid": false,
               "hw_address": "02:00:5e:10:20:30"}),
    );
}

#[test]
fn the_chain_callout_forwards_every_hook_to_both_chained_dlls() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.jsonl");
    let [chain, t2, t3] = copy_fixtures(
        dir.path(),
        [
            ("chain", "a_chain.so"),
            ("trace2", "b_trace2.so"),
            ("trace3", "c_trace3.so"),
        ],
    );
    let result = load_tracing(&[&t3, &chain, &t2], &trace, &[]);
    let loaded = result.report.loaded.clone().unwrap();
    assert_eq!(loaded.entry, s(&chain));
    assert_eq!(loaded.chain_dlls, vec![s(&t2), s(&t3)]);
    assert_eq!(loaded.hooks, HookName::ALL.to_vec());
    let callout = result.callout.unwrap();

    // The chain DLL called each entry with the rest of the chain after it.
    let chain_entry = &lines_for(&trace, "chain", "Entry")[0];
    assert_eq!(
        chain_entry["children"],
        json!([{"name": s(&t2), "result": 0}, {"name": s(&t3), "result": 0}])
    );
    assert_eq!(
        lines_for(&trace, "trace2", "Entry")[0]["chain"],
        json!([s(&t3)])
    );
    assert_eq!(lines_for(&trace, "trace3", "Entry")[0]["chain"], json!([]));

    let mut packet = full_request();
    let mut ctx = 0usize;
    callout.control(ControlCode::Start, HeldLocks::Service);
    assert_eq!(new_pkt(&callout, &mut packet, &mut ctx), Ok(true));
    callout
        .handle_options(&packet, ctx, None, HeldLocks::None)
        .unwrap();
    offer(&callout, &packet, GiveCode::Old, 60, ctx, HeldLocks::Lease);
    delete_address(&callout, &packet, ProbCode::Decline, ctx);
    let mut reply = packet.clone();
    send_reply(&callout, &mut reply, ctx).unwrap();
    drop_packet(&callout, &mut packet, DropReason::Processed, ctx);
    callout
        .delete_client(CLIENT_IP, &MAC, HeldLocks::Lease)
        .unwrap();

    for dll in ["trace2", "trace3"] {
        for hook in [
            "Control",
            "NewPkt",
            "HandleOptions",
            "AddressOffer",
            "AddressDel",
            "PktSend",
            "PktDrop",
            "DeleteClient",
        ] {
            let lines = lines_for(&trace, dll, hook);
            assert_eq!(lines.len(), 1, "{dll} saw {hook} {} times", lines.len());
            if lines[0].get("ctx_valid").is_some() {
                assert_eq!(
                    lines[0]["ctx_valid"], true,
                    "{dll} {hook} got its own context"
                );
            }
        }
        // Each child gets its own context, not the chain's.
        let own = &lines_for(&trace, dll, "NewPkt")[0]["ctx_out"];
        assert_eq!(&lines_for(&trace, dll, "PktDrop")[0]["ctx"], own);
        assert_ne!(own, &json!(ctx as u64));
    }
}

#[test]
fn the_rewrite_callout_swaps_in_a_grown_packet_and_grows_the_reply_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let callout = load_one(dir.path(), "rewrite", &[]);
    let original = Packet::request(1, MAC).finish();
    let mut packet = original.clone();
    let mut ctx = 0;
    assert_eq!(new_pkt(&callout, &mut packet, &mut ctx), Ok(true));
    assert_eq!(packet.len(), original.len() + 2 + 16);
    assert_eq!(&packet[..240], &original[..240]);
    assert_eq!(
        options_of(&packet),
        vec![
            (53, vec![1]),
            (224, b"calloutd-rewrite".to_vec()),
            (255, vec![])
        ]
    );

    let mut reply = Packet::request(2, MAC).finish();
    let before = reply.len();
    send_reply(&callout, &mut reply, ctx).unwrap();
    assert_eq!(reply.len(), before + 2 + 15);
    assert_eq!(
        options_of(&reply),
        vec![
            (53, vec![2]),
            (225, b"sent-by-rewrite".to_vec()),
            (255, vec![])
        ]
    );
}

#[test]
fn a_size_larger_than_the_buffer_is_a_fault_and_leaves_the_packet_alone() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("ours.jsonl");
    let sink = Arc::new(TraceSink::create(&trace).unwrap());
    let callout = load_one(
        dir.path(),
        "faulty",
        &[("CALLOUT_FAULTY_OVERSIZE_HOOK", "NewPkt")],
    )
    .with_trace(Some(sink.clone()));
    let original = Packet::request(1, MAC).finish();
    let mut packet = original.clone();
    let mut ctx = 0;
    let fault = new_pkt(&callout, &mut packet, &mut ctx).unwrap_err();
    assert_eq!(
        fault,
        HookFault::SizeAboveCapacity {
            hook: HookName::NewPkt,
            size: 4096 + 512,
            capacity: MIN_BUFFER
        }
    );
    assert_eq!(packet, original);
    assert_eq!(callout.stats().get(HookName::NewPkt).faults, 1);
    let record = &flushed_records(&sink, &trace)[0];
    assert!(record
        .fault
        .as_deref()
        .unwrap()
        .contains("larger than the 4096-byte buffer"));
    // Hooks not configured to misbehave still work.
    assert_eq!(send_reply(&callout, &mut packet, ctx), Ok(()));
}

#[test]
fn writing_past_the_buffer_is_reported_and_the_buffer_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let callout = load_one(
        dir.path(),
        "faulty",
        &[("CALLOUT_FAULTY_OVERRUN_HOOK", "PktSend")],
    );
    let mut reply = Packet::request(5, MAC).finish();
    let fault = send_reply(&callout, &mut reply, 0).unwrap_err();
    assert_eq!(
        fault,
        HookFault::WrotePastBuffer {
            hook: HookName::PktSend,
            zone: GuardZone::After
        }
    );
    assert!(fault.to_string().contains("wrote past the buffer"));
    // The same thread's buffer is repaired: a well-behaved hook on it succeeds.
    let mut packet = reply.clone();
    let mut ctx = 0;
    assert_eq!(new_pkt(&callout, &mut packet, &mut ctx), Ok(true));
    assert_eq!(packet, reply);
}

#[test]
fn the_macfilter_callout_drops_discover_and_request_from_the_prefix_only() {
    let dir = tempfile::tempdir().unwrap();
    let callout = load_one(
        dir.path(),
        "macfilter",
        &[("CALLOUT_MACFILTER_PREFIX", "02:00:5E")],
    );
    assert_eq!(callout.hooks_set(), vec![HookName::NewPkt]);
    let other = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55];
    let cases = [
        (1, MAC, false),
        (3, MAC, false),
        (8, MAC, true),
        (1, other, true),
        (3, other, true),
    ];
    for (msg_type, mac, expected) in cases {
        let mut packet = Packet::request(msg_type, mac).finish();
        let mut ctx = 0;
        assert_eq!(
            new_pkt(&callout, &mut packet, &mut ctx),
            Ok(expected),
            "type {msg_type} mac {mac:02x?}"
        );
    }
    // Hooks the DLL did not set are skipped.
    assert_eq!(
        callout.control(ControlCode::Start, HeldLocks::Service),
        None
    );
    assert_eq!(callout.stats().get(HookName::Control).calls, 0);
}

#[test]
fn a_slow_hook_under_the_lease_lock_is_misbehaviour() {
    let dir = tempfile::tempdir().unwrap();
    let callout = load_one(
        dir.path(),
        "faulty",
        &[
            ("CALLOUT_FAULTY_SLEEP_HOOK", "AddressOffer"),
            ("CALLOUT_FAULTY_SLEEP_MS", "20"),
        ],
    )
    .with_slow_thresholds(Duration::from_millis(1), Duration::from_secs(5));
    let packet = full_request();
    offer(&callout, &packet, GiveCode::New, 60, 0, HeldLocks::None);
    assert!(
        callout.misbehaviour().summary().recent.is_empty(),
        "no lock held: below the looser threshold"
    );
    offer(&callout, &packet, GiveCode::New, 60, 0, HeldLocks::Lease);
    assert!(callout.stats().get(HookName::AddressOffer).max_us >= 20_000);
    let summary = callout.misbehaviour().summary();
    assert_eq!(summary.counts, vec![(MisbehaviourKind::SlowHook, 1)]);
    let slow = &summary.recent[0];
    assert_eq!(slow.hook, HookName::AddressOffer);
    assert!(
        slow.explanation.contains("slow under the lease lock"),
        "{slow}"
    );
}

/// Loads fixture `name` with `vars`, tracing into `dir/ours.jsonl`; the callout and the sink.
fn load_traced(dir: &Path, name: &str, vars: &[(&str, &str)]) -> (Callout, Arc<TraceSink>) {
    let sink = Arc::new(TraceSink::create(&dir.join("ours.jsonl")).unwrap());
    let callout = load_one(dir, name, vars).with_trace(Some(sink.clone()));
    (callout, sink)
}

/// The misbehaviour kinds of each traced call, by hook.
fn misbehaviour_by_hook(records: &[TraceRecord]) -> Vec<(HookName, Vec<MisbehaviourKind>)> {
    records
        .iter()
        .map(|r| (r.hook, r.misbehaviour.iter().map(|m| m.kind).collect()))
        .collect()
}

#[test]
fn a_slow_hook_without_a_lock_has_a_looser_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let (callout, sink) = load_traced(
        dir.path(),
        "faulty",
        &[
            ("CALLOUT_FAULTY_SLEEP_HOOK", "NewPkt"),
            ("CALLOUT_FAULTY_SLEEP_MS", "30"),
        ],
    );
    let callout = callout.with_slow_thresholds(Duration::from_millis(1), Duration::from_millis(5));
    let mut packet = full_request();
    let mut ctx = 0;
    new_pkt(&callout, &mut packet, &mut ctx).unwrap();
    drop_packet(&callout, &mut packet, DropReason::Processed, ctx);
    let records = flushed_records(&sink, &dir.path().join("ours.jsonl"));
    let slow = &records[0].misbehaviour[0];
    assert_eq!(slow.kind, MisbehaviourKind::SlowHook);
    assert_eq!(slow.hook, HookName::NewPkt);
    assert_eq!(slow.xid, Some(XID));
    assert_eq!(slow.chaddr.as_deref(), Some("02:00:5e:10:20:30"));
    assert!(slow.explanation.contains("without a lock"), "{slow:?}");
    assert!(records[1].misbehaviour.is_empty());
}

#[test]
fn writes_into_a_by_value_packet_are_found_in_each_by_value_hook() {
    for hook in ["HandleOptions", "AddressDel", "AddressOffer"] {
        let dir = tempfile::tempdir().unwrap();
        let (callout, sink) = load_traced(
            dir.path(),
            "faulty",
            &[("CALLOUT_FAULTY_SCRIBBLE_HOOK", hook)],
        );
        let packet = full_request();
        callout
            .handle_options(&packet, 0, None, HeldLocks::None)
            .unwrap();
        delete_address(&callout, &packet, ProbCode::Release, 0);
        offer(&callout, &packet, GiveCode::New, 60, 0, HeldLocks::Lease);
        assert_eq!(packet, full_request(), "our packet is never changed");
        let records = flushed_records(&sink, &dir.path().join("ours.jsonl"));
        let found: Vec<_> = misbehaviour_by_hook(&records)
            .into_iter()
            .filter(|(_, kinds)| !kinds.is_empty())
            .collect();
        assert_eq!(
            found,
            vec![(
                hook.parse_hook(),
                vec![MisbehaviourKind::WroteReadOnlyPacket]
            )],
            "{hook}"
        );
        assert_eq!(
            callout
                .misbehaviour()
                .count(MisbehaviourKind::WroteReadOnlyPacket),
            1
        );
    }
}

/// Hook names as written in env vars.
trait ParseHook {
    fn parse_hook(&self) -> HookName;
}
impl ParseHook for &str {
    fn parse_hook(&self) -> HookName {
        HookName::ALL
            .into_iter()
            .find(|h| h.trace_name() == *self)
            .unwrap()
    }
}

#[test]
fn a_context_with_no_pkt_drop_hook_to_free_it_is_a_leak() {
    let dir = tempfile::tempdir().unwrap();
    let (callout, sink) = load_traced(
        dir.path(),
        "faulty",
        &[("CALLOUT_FAULTY_LEAK_CONTEXT", "1")],
    );
    assert!(!callout.has_hook(HookName::PktDrop));
    let mut packet = full_request();
    let mut ctx = 0;
    new_pkt(&callout, &mut packet, &mut ctx).unwrap();
    assert_ne!(ctx, 0);
    let records = flushed_records(&sink, &dir.path().join("ours.jsonl"));
    assert_eq!(
        misbehaviour_by_hook(&records),
        vec![(HookName::NewPkt, vec![MisbehaviourKind::LeakedContext])]
    );
    assert!(records[0].misbehaviour[0]
        .explanation
        .contains("no PktDrop hook"));
}

#[test]
fn a_context_that_changed_or_never_ended_is_a_leak() {
    let dir = tempfile::tempdir().unwrap();
    let dll_trace = dir.path().join("dll.jsonl");
    let (callout, sink) = load_traced(
        dir.path(),
        "trace",
        &[("CALLOUT_TRACE_FILE", &s(&dll_trace))],
    );
    // A well-behaved packet first: nothing found.
    let mut packet = full_request();
    let mut ctx = 0;
    new_pkt(&callout, &mut packet, &mut ctx).unwrap();
    drop_packet(&callout, &mut packet, DropReason::Processed, ctx);
    // PktDrop(PROCESSED) with another context than NewPkt stored (NULL: the trace DLL frees it).
    new_pkt(&callout, &mut packet, &mut ctx).unwrap();
    assert_ne!(ctx, 0);
    drop_packet(&callout, &mut packet, DropReason::Processed, 0);
    // A packet that never ends: found at the next NewPkt on this thread.
    let mut first = Packet::request(7, [2, 0, 0, 0, 0, 9]).finish();
    let mut ctx_first = 0;
    new_pkt(&callout, &mut first, &mut ctx_first).unwrap();
    let mut second = full_request();
    let mut ctx_second = 0;
    new_pkt(&callout, &mut second, &mut ctx_second).unwrap();
    drop_packet(&callout, &mut second, DropReason::Processed, ctx_second);
    let records = flushed_records(&sink, &dir.path().join("ours.jsonl"));
    let kinds = misbehaviour_by_hook(&records);
    let leak = vec![MisbehaviourKind::LeakedContext];
    assert_eq!(
        kinds,
        vec![
            (HookName::NewPkt, vec![]),
            (HookName::PktDrop, vec![]),
            (HookName::NewPkt, vec![]),
            (HookName::PktDrop, leak.clone()),
            (HookName::NewPkt, vec![]),
            (HookName::NewPkt, leak),
            (HookName::PktDrop, vec![]),
        ]
    );
    let never_ended = &records[5].misbehaviour[0];
    assert_eq!(never_ended.xid, Some(XID));
    assert_eq!(never_ended.chaddr.as_deref(), Some("02:00:00:00:00:09"));
    assert!(never_ended.explanation.contains("never reached PktDrop"));
}

#[test]
fn concurrent_hook_calls_from_many_threads_are_all_traced() {
    let dir = tempfile::tempdir().unwrap();
    let dll_trace = dir.path().join("dll.jsonl");
    let our_trace = dir.path().join("ours.jsonl");
    let sink = Arc::new(TraceSink::create(&our_trace).unwrap());
    let callout = Arc::new(load_trace(dir.path(), &dll_trace).with_trace(Some(sink.clone())));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let callout = callout.clone();
            std::thread::spawn(move || {
                for _ in 0..25 {
                    let mut packet = full_request();
                    let mut ctx = 0;
                    assert_eq!(new_pkt(&callout, &mut packet, &mut ctx), Ok(true));
                    drop_packet(&callout, &mut packet, DropReason::Processed, ctx);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let ours = flushed_records(&sink, &our_trace);
    assert_eq!(ours.len(), 200);
    let mut seqs: Vec<u64> = ours.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    let threads: std::collections::HashSet<u32> = ours.iter().map(|r| r.thread).collect();
    assert_eq!(threads.len(), 4);
    assert_eq!(lines_for(&dll_trace, "trace", "PktDrop").len(), 100);
    assert!(lines_for(&dll_trace, "trace", "PktDrop")
        .iter()
        .all(|l| l["ctx_valid"] == true));
    assert_eq!(callout.stats().get(HookName::NewPkt).calls, 100);
}

#[test]
fn a_context_stored_before_a_fault_still_reaches_pkt_drop() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.jsonl");
    let [chain, faulty, t2] = copy_fixtures(
        dir.path(),
        [
            ("chain", "a_chain.so"),
            ("faulty", "b_faulty.so"),
            ("trace2", "c_trace2.so"),
        ],
    );
    let result = load_tracing(
        &[&chain, &faulty, &t2],
        &trace,
        &[("CALLOUT_FAULTY_OVERSIZE_HOOK", "NewPkt")],
    );
    let callout = result.callout.unwrap();
    let original = full_request();
    let mut packet = original.clone();
    let mut ctx = 0;
    let fault = new_pkt(&callout, &mut packet, &mut ctx);
    assert!(
        matches!(fault, Err(HookFault::SizeAboveCapacity { .. })),
        "{fault:?}"
    );
    assert_eq!(packet, original);
    assert_ne!(
        ctx, 0,
        "the chain's context is handed back despite the fault"
    );
    drop_packet(&callout, &mut packet, DropReason::Invalid, ctx);
    drop_packet(&callout, &mut packet, DropReason::Processed, ctx);
    let drops = lines_for(&trace, "trace2", "PktDrop");
    assert_eq!(drops.len(), 2);
    assert_eq!(drops[0]["code"], 8);
    assert!(drops.iter().all(|d| d["ctx_valid"] == true));
}
