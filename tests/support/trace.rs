//! Reading the trace callout's log and the server's `--trace` file: packets grouped by context, and
//! the invariants every run must show.

/// How many `PktDrop(DHCP_DROP_PROCESSED)` calls the trace callout has logged (one per finished packet).
pub fn processed_count(records: &[serde_json::Value]) -> usize {
    records
        .iter()
        .filter(|r| r["hook"] == "PktDrop" && r["code"] == 11)
        .count()
}

/// One packet's hook calls in the trace callout's log, grouped by the PktContext NewPkt stored.
#[derive(Debug, Clone)]
pub struct PacketCalls {
    /// The packet's xid as NewPkt saw it (null for datagrams shorter than 8 bytes).
    pub xid: serde_json::Value,
    /// The context pointer NewPkt stored.
    pub ctx: u64,
    /// The calls, NewPkt first, in log order.
    pub calls: Vec<serde_json::Value>,
}

impl PacketCalls {
    /// The hook signatures: `Hook` or `Hook(0xCODE)` for hooks with a code.
    pub fn signature(&self) -> Vec<String> {
        self.calls.iter().map(hook_signature).collect()
    }

    /// The first call of `hook`.
    pub fn call(&self, hook: &str) -> &serde_json::Value {
        self.calls
            .iter()
            .find(|c| c["hook"] == hook)
            .unwrap_or_else(|| {
                panic!(
                    "no {hook} call in packet {:?}: {:?}",
                    self.xid,
                    self.signature()
                )
            })
    }
}

/// `Hook` or `Hook(0xCODE)`.
pub fn hook_signature(call: &serde_json::Value) -> String {
    let hook = call["hook"].as_str().unwrap_or("?");
    match call["code"].as_u64() {
        Some(code) => format!("{hook}({code:#x})"),
        None => hook.to_string(),
    }
}

/// Groups the packet hooks of a trace callout log (lines whose `dll` is `dll`) by PktContext: a
/// NewPkt opens a packet under the context it stored, later calls with that `ctx` join it, and
/// `PktDrop(DHCP_DROP_PROCESSED)` closes it (the callout frees the context there, so the pointer may
/// be reused afterwards). Panics on a call whose context belongs to no open packet, and on packets
/// never closed. Packets come in the order of their NewPkt.
pub fn callout_packets(records: &[serde_json::Value], dll: &str) -> Vec<PacketCalls> {
    let mut done: Vec<(usize, PacketCalls)> = Vec::new();
    let mut open: Vec<(usize, PacketCalls)> = Vec::new();
    let mut opened = 0;
    for r in records.iter().filter(|r| r["dll"] == dll) {
        match r["hook"].as_str() {
            Some("NewPkt") => {
                let ctx = r["ctx_out"].as_u64().expect("ctx_out");
                assert!(ctx != 0, "NewPkt stored no context: {r}");
                assert!(
                    !open.iter().any(|(_, p)| p.ctx == ctx),
                    "context {ctx:#x} of an open packet reused: {r}"
                );
                open.push((
                    opened,
                    PacketCalls {
                        xid: r["xid"].clone(),
                        ctx,
                        calls: vec![r.clone()],
                    },
                ));
                opened += 1;
            }
            Some("HandleOptions" | "PktSend" | "PktDrop" | "AddressDel" | "AddressOffer") => {
                let ctx = r["ctx"].as_u64().expect("ctx");
                let at = open
                    .iter()
                    .position(|(_, p)| p.ctx == ctx)
                    .unwrap_or_else(|| panic!("hook call with a context of no open packet: {r}"));
                open[at].1.calls.push(r.clone());
                if r["hook"] == "PktDrop" && r["code"] == 11 {
                    done.push(open.remove(at));
                }
            }
            _ => {}
        }
    }
    assert!(
        open.is_empty(),
        "packets without PktDrop(PROCESSED): {:?}",
        open.iter().map(|(_, p)| p.signature()).collect::<Vec<_>>()
    );
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, p)| p).collect()
}

/// What must hold for every packet in the trace callout's log: one xid and one valid context
/// throughout, `ip` = the receiving address, Reserved NULL, and exactly one
/// `PktDrop(DHCP_DROP_PROCESSED)`, as the last call.
pub fn check_packet(p: &PacketCalls, receiving_ip: &str) {
    let sig = p.signature();
    assert_eq!(p.calls[0]["hook"], "NewPkt", "{sig:?}");
    assert_eq!(
        p.calls[0]["ctx_in"], 0,
        "NewPkt gets a NULL context: {:?}",
        p.calls[0]
    );
    assert_eq!(
        sig.iter().filter(|s| *s == "PktDrop(0xb)").count(),
        1,
        "one PROCESSED per packet: {sig:?}"
    );
    assert_eq!(
        sig.last().map(String::as_str),
        Some("PktDrop(0xb)"),
        "PROCESSED is last: {sig:?}"
    );
    for c in &p.calls {
        assert_eq!(c["xid"], p.xid, "xid of the packet throughout: {c}");
        assert_eq!(c["reserved_null"], true, "Reserved is NULL: {c}");
        if c["hook"] != "NewPkt" {
            assert_eq!(c["ctx"], p.ctx, "PktContext from NewPkt: {c}");
            assert_eq!(
                c["ctx_valid"], true,
                "the context is the one NewPkt allocated: {c}"
            );
        }
        if !c["ip"].is_null() || c["hook"] != "HandleOptions" {
            assert_eq!(
                c["ip"], receiving_ip,
                "IpAddress = the receiving address: {c}"
            );
        }
    }
}

/// Checks the server's `--trace` file after a clean stop: Control START first and STOP last (under
/// the service lock), AddressOffer/AddressDel/DeleteClient under `["lease"]`, packet hooks under no
/// lock, no faults, every return 0, `seq` 1, 2, 3...
pub fn check_server_trace(trace: &[serde_json::Value]) {
    assert!(trace.len() >= 2, "trace too short: {trace:?}");
    let first = &trace[0];
    let last = &trace[trace.len() - 1];
    assert!(
        first["hook"] == "Control" && first["code"] == 1,
        "Control START first: {first}"
    );
    assert!(
        last["hook"] == "Control" && last["code"] == 2,
        "Control STOP last: {last}"
    );
    for (i, r) in trace.iter().enumerate() {
        assert_eq!(r["seq"], i as u64 + 1, "seq: {r}");
        let locks: Vec<&str> = r["locks"]
            .as_array()
            .expect("locks")
            .iter()
            .filter_map(|l| l.as_str())
            .collect();
        let expected: &[&str] = match r["hook"].as_str() {
            Some("AddressOffer" | "AddressDel" | "DeleteClient") => &["lease"],
            Some("Control") => &["service"],
            _ => &[],
        };
        assert_eq!(locks, expected, "locks of {r}");
        assert!(r.get("fault").is_none(), "no DLL fault: {r}");
        assert_eq!(r["ret"], 0, "{r}");
        assert!(
            r["thread"].as_u64().is_some() && r["dur_us"].as_u64().is_some(),
            "{r}"
        );
        if r["hook"] == "Control" {
            assert!(
                i == 0 || i == trace.len() - 1,
                "Control only at start and stop: {r}"
            );
        }
    }
}

/// The (hook, code, xid, alt) of each hook call: what the server's trace and the trace callout's
/// log must agree on (the callout's own Entry line left out).
pub fn call_projection(records: &[serde_json::Value], dll: Option<&str>) -> Vec<String> {
    records
        .iter()
        .filter(|r| dll.is_none_or(|d| r["dll"] == d) && r["hook"] != "Entry")
        .map(|r| {
            let xid = if r["hook"] == "Control" {
                serde_json::Value::Null
            } else {
                r["xid"].clone()
            };
            let alt = if r["hook"] == "AddressOffer" || r["hook"] == "AddressDel" {
                r["alt"].clone()
            } else {
                serde_json::Value::Null
            };
            format!("{} xid={xid} alt={alt}", hook_signature(r))
        })
        .collect()
}

/// Checks the server's trace ([`check_server_trace`]) and that it shows the same hook calls in the
/// same order as the trace callout `dll`'s log (for runs that send one packet at a time).
pub fn check_traces_agree(log: &[serde_json::Value], trace: &[serde_json::Value], dll: &str) {
    check_server_trace(trace);
    assert_eq!(
        call_projection(trace, None),
        call_projection(log, Some(dll)),
        "the server's trace and the trace callout's log agree"
    );
}

// ---- One exchange as the trace callout saw it ----

/// `PacketCalls::signature` of NewPkt.
pub const NEW_PKT: &str = "NewPkt";
/// `PacketCalls::signature` of HandleOptions.
pub const HANDLE_OPTIONS: &str = "HandleOptions";
/// `PacketCalls::signature` of PktSend(DHCP_SEND_PACKET).
pub const PKT_SEND: &str = "PktSend(0x10000000)";
/// `PacketCalls::signature` of PktDrop(DHCP_DROP_PROCESSED), every packet's last call.
pub const PROCESSED: &str = "PktDrop(0xb)";
/// `PacketCalls::signature` of AddressOffer(DHCP_GIVE_ADDRESS_NEW).
pub const OFFER_NEW: &str = "AddressOffer(0x30000001)";
/// `PacketCalls::signature` of AddressOffer(DHCP_GIVE_ADDRESS_OLD).
pub const OFFER_OLD: &str = "AddressOffer(0x30000002)";
/// `PacketCalls::signature` of AddressDel(DHCP_PROB_DECLINE).
pub const DEL_DECLINE: &str = "AddressDel(0x20000002)";
/// `PacketCalls::signature` of AddressDel(DHCP_PROB_RELEASE).
pub const DEL_RELEASE: &str = "AddressDel(0x20000003)";
/// `PacketCalls::signature` of AddressDel(DHCP_PROB_NACKED).
pub const DEL_NACKED: &str = "AddressDel(0x20000004)";
/// The AddressOffer code DHCP_GIVE_ADDRESS_NEW.
pub const GIVE_NEW: u64 = 0x3000_0001;
/// The AddressOffer code DHCP_GIVE_ADDRESS_OLD.
pub const GIVE_OLD: u64 = 0x3000_0002;
/// The AddressOffer address type DHCP_CLIENT_BOOTP.
pub const CLIENT_BOOTP: u64 = 0x3000_0003;
/// The AddressOffer address type DHCP_CLIENT_DHCP.
pub const CLIENT_DHCP: u64 = 0x3000_0004;

/// Owned hook signatures, to compare with `PacketCalls::signature`.
pub fn sig(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The signature of a packet the server handled: NewPkt, HandleOptions, `middle`..., PROCESSED.
pub fn handled(middle: &[&str]) -> Vec<String> {
    let mut all = vec![NEW_PKT, HANDLE_OPTIONS];
    all.extend_from_slice(middle);
    all.push(PROCESSED);
    sig(&all)
}

/// Checks a DISCOVER that got an OFFER: NewPkt, HandleOptions (DISCOVER from `mac`, an Ethernet
/// address, in scope `scope_id`), PktSend of a reply padded to 300 bytes, PROCESSED.
pub fn check_discover(p: &PacketCalls, mac: &str, scope_id: &str) {
    assert_eq!(p.signature(), handled(&[PKT_SEND]), "DISCOVER");
    let opts = p.call("HandleOptions");
    assert_eq!(opts["message_type"], 1);
    assert_eq!(opts["hw_address"], mac);
    assert_eq!(opts["hw_type"], 1);
    assert_eq!(opts["hw_len"], 6);
    assert_eq!(opts["scope_id"], scope_id);
    assert!(
        p.call("PktSend")["size"].as_u64().unwrap() >= 300,
        "replies are padded to 300 bytes"
    );
}

/// Checks a REQUEST that got an ACK: NewPkt, HandleOptions (REQUEST), AddressOffer(`code`, alt =
/// `ip`, DHCP, `lease`, the client's request), PktSend, PROCESSED.
pub fn check_acked_request(p: &PacketCalls, code: u64, ip: &str, lease: u64) {
    let offer = if code == GIVE_NEW {
        OFFER_NEW
    } else {
        OFFER_OLD
    };
    assert_eq!(p.signature(), handled(&[offer, PKT_SEND]), "acked REQUEST");
    assert_eq!(p.call("HandleOptions")["message_type"], 3);
    let give = p.call("AddressOffer");
    assert_eq!(give["alt"], ip, "AddressOffer alt = the address");
    assert_eq!(give["addr_type"], CLIENT_DHCP);
    assert_eq!(give["lease"], lease);
    assert_eq!(
        give["size"], p.calls[0]["size"],
        "AddressOffer gets the client's request"
    );
}

/// Checks a RELEASE of `ip`: NewPkt, HandleOptions (RELEASE), AddressDel(RELEASE, alt = `ip`),
/// PROCESSED (no reply).
pub fn check_release(p: &PacketCalls, ip: &str) {
    assert_eq!(
        p.signature(),
        handled(&[DEL_RELEASE]),
        "no reply to a RELEASE"
    );
    assert_eq!(p.call("HandleOptions")["message_type"], 7);
    assert_eq!(p.call("AddressDel")["alt"], ip);
}

/// Checks an ACK as `calloutd client --json` printed it: `ip` leased by `server_id` for `lease`
/// seconds (T1 and T2 at 1/2 and 7/8 of it), through the relay `giaddr` (0.0.0.0: not relayed).
pub fn check_ack(reply: &serde_json::Value, ip: &str, server_id: &str, lease: u64, giaddr: &str) {
    assert_eq!(reply["message_type"], "ACK", "{reply}");
    assert_eq!(reply["yiaddr"], ip);
    assert_eq!(reply["server_id"], server_id);
    assert_eq!(reply["lease_time"], lease);
    assert_eq!(reply["t1"], lease / 2);
    assert_eq!(reply["t2"], lease * 7 / 8);
    assert_eq!(reply["giaddr"], giaddr, "giaddr (0.0.0.0: not relayed)");
}
