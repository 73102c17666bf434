//! `calloutd replay CAPTURE`: the client messages of a capture through the engine and the
//! callout, in order, on the virtual network; what calloutd would have answered and every hook
//! call, then a summary.
//!
//! Formats: pcap and pcapng (pcap-file); Ethernet, Linux cooked (SLL, SLL2) and raw IP frames
//! (etherparse). Client messages are BOOTREQUESTs to UDP port 67 (broadcast, unicast or from a
//! relay); BOOTREPLYs from port 67 (the capture's server) are skipped and counted, as is every
//! frame that is not DHCP. A truncated or corrupt capture is reported with its frame number after
//! everything before it was replayed.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use calloutd_callout::TraceRecord;
use calloutd_engine::Datagram;
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;
use serde_json::json;

use crate::net::{HostMode, NetConfig, SharedWriter, VirtualNet};
use crate::run::{call_text, outcome_text};
use crate::scenario::code_name;

/// `calloutd replay` options.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// The capture file.
    pub capture: PathBuf,
    /// `.reg` files.
    pub reg: Vec<PathBuf>,
    /// The scope file.
    pub scopes: PathBuf,
    /// The server address messages arrive on.
    pub server: Option<Ipv4Addr>,
    /// One JSON object per client message.
    pub json: bool,
    /// Keep the capture's timing.
    pub realtime: bool,
    /// Also write every hook call here.
    pub trace: Option<PathBuf>,
    /// In-process or isolated.
    pub mode: HostMode,
}

/// One frame of a capture.
#[derive(Debug, Clone)]
pub struct Frame {
    /// 1-based number in the capture.
    pub number: u64,
    /// Capture timestamp (since the Unix epoch).
    pub timestamp: Duration,
    /// Link type.
    pub link: DataLink,
    /// The bytes captured.
    pub data: Vec<u8>,
}

/// Reads every frame of a pcap or pcapng file. The error, if any, names the frame at which
/// reading stopped; the frames before it are returned with it.
pub fn read_frames(bytes: &[u8]) -> (Vec<Frame>, Option<String>) {
    let mut frames = Vec::new();
    if bytes.len() >= 4 && bytes[..4] == [0x0A, 0x0D, 0x0D, 0x0A] {
        let mut reader = match PcapNgReader::new(bytes) {
            Ok(r) => r,
            Err(e) => return (frames, Some(format!("not a readable pcapng file: {e}"))),
        };
        let mut links: Vec<DataLink> = Vec::new();
        let mut number = 0u64;
        while let Some(block) = reader.next_block() {
            let block = match block {
                Ok(b) => b,
                Err(e) => {
                    return (
                        frames,
                        Some(format!("frame {}: truncated or corrupt: {e}", number + 1)),
                    )
                }
            };
            match block {
                Block::InterfaceDescription(idb) => links.push(idb.linktype),
                Block::EnhancedPacket(epb) => {
                    number += 1;
                    let link = links
                        .get(epb.interface_id as usize)
                        .copied()
                        .unwrap_or(DataLink::ETHERNET);
                    frames.push(Frame {
                        number,
                        timestamp: epb.timestamp,
                        link,
                        data: epb.data.into_owned(),
                    });
                }
                Block::SimplePacket(spb) => {
                    number += 1;
                    frames.push(Frame {
                        number,
                        timestamp: frames.last().map_or(Duration::ZERO, |f| f.timestamp),
                        link: links.first().copied().unwrap_or(DataLink::ETHERNET),
                        data: spb.data.into_owned(),
                    });
                }
                _ => {}
            }
        }
        return (frames, None);
    }
    let mut reader = match PcapReader::new(bytes) {
        Ok(r) => r,
        Err(e) => return (frames, Some(format!("not a pcap or pcapng file: {e}"))),
    };
    let link = reader.header().datalink;
    let mut number = 0u64;
    while let Some(packet) = reader.next_packet() {
        number += 1;
        match packet {
            Ok(p) => frames.push(Frame {
                number,
                timestamp: p.timestamp,
                link,
                data: p.data.into_owned(),
            }),
            Err(e) => {
                return (
                    frames,
                    Some(format!("frame {number}: truncated or corrupt: {e}")),
                )
            }
        }
    }
    (frames, None)
}

/// What a frame holds, as far as replay cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameKind {
    /// A BOOTREQUEST to port 67: replayed.
    Client {
        /// Source address and port.
        src: SocketAddrV4,
        /// Destination address.
        dst: Ipv4Addr,
        /// The UDP payload.
        payload: Vec<u8>,
    },
    /// A BOOTREPLY from port 67: the capture's server answering.
    ServerReply,
    /// Anything else.
    Other,
}

/// Classifies one frame.
pub fn classify(frame: &Frame) -> FrameKind {
    let data = frame.data.as_slice();
    let sliced = match frame.link {
        DataLink::ETHERNET => SlicedPacket::from_ethernet(data),
        DataLink::LINUX_SLL => SlicedPacket::from_linux_sll(data),
        // SLL2 has a fixed 20-byte header before the network layer.
        DataLink::LINUX_SLL2 => match data.get(20..) {
            Some(ip) => SlicedPacket::from_ip(ip),
            None => return FrameKind::Other,
        },
        DataLink::RAW | DataLink::IPV4 => SlicedPacket::from_ip(data),
        _ => return FrameKind::Other,
    };
    let Ok(sliced) = sliced else {
        return FrameKind::Other;
    };
    let (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Udp(udp))) =
        (&sliced.net, &sliced.transport)
    else {
        return FrameKind::Other;
    };
    let payload = udp.payload();
    let header = ip.header();
    match (udp.destination_port(), udp.source_port(), payload.first()) {
        (67, _, Some(1)) => FrameKind::Client {
            src: SocketAddrV4::new(header.source_addr(), udp.source_port()),
            dst: header.destination_addr(),
            payload: payload.to_vec(),
        },
        (_, 67, Some(2)) => FrameKind::ServerReply,
        _ => FrameKind::Other,
    }
}

/// The replay's counts.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Frames read.
    pub frames: u64,
    /// Client messages replayed, by request name.
    pub requests: BTreeMap<String, u64>,
    /// Replies calloutd sent, by name.
    pub replies: BTreeMap<String, u64>,
    /// Drops, by reason.
    pub drops: BTreeMap<String, u64>,
    /// Dropped by the callout's NewPkt.
    pub dropped_by_callout: u64,
    /// The capture's own server replies, skipped.
    pub server_replies: u64,
    /// Frames that are not DHCP.
    pub not_dhcp: u64,
    /// Misbehaviour reports.
    pub misbehaviour: u64,
    /// Expired leases purged as time went by.
    pub purged: u64,
    /// Why reading stopped early.
    pub error: Option<String>,
}

fn call_json(call: &TraceRecord) -> serde_json::Value {
    json!({
        "hook": call.hook,
        "code": call.code,
        "code_name": call.code.and_then(|c| code_name(call.hook, c)),
        "ip": call.ip,
        "alt": call.alt,
        "locks": call.locks,
        "ret": call.ret,
        "dur_us": call.dur_us,
        "misbehaviour": call.misbehaviour,
    })
}

/// Request and reply names as DHCP calls them (`DISCOVER`, `BOOTREQUEST` for BOOTP).
fn request_name(payload: &[u8], request_type: Option<u8>) -> String {
    match request_type {
        Some(0) => "BOOTREQUEST".into(),
        Some(t) => calloutd_client::message_type_name(calloutd_client::MessageType::from(t)),
        None => match calloutd_client::Reply::decode(payload, None) {
            Ok(r) => r.type_name(),
            Err(_) => "UNPARSED".into(),
        },
    }
}

/// Replays a capture and prints to stdout. Exit status: 0 when the whole capture was read, 1
/// when it was truncated or corrupt (after replaying what came before), 2 when it could not be
/// started (no file, bad configuration).
pub fn run(options: &ReplayOptions) -> u8 {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let bytes = match std::fs::read(&options.capture) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{}: cannot read: {e}", options.capture.display());
            return 2;
        }
    };
    let (frames, read_error) = read_frames(&bytes);
    let trace = match &options.trace {
        None => None,
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Some(SharedWriter(std::sync::Arc::new(std::sync::Mutex::new(
                Box::new(f),
            )))),
            Err(e) => {
                eprintln!("{}: cannot create the trace file: {e}", path.display());
                return 2;
            }
        },
    };
    let config = NetConfig {
        reg: options.reg.clone(),
        scopes: options.scopes.clone(),
        server: options.server,
        trace: trace.clone().map(|w| Box::new(w) as Box<dyn Write + Send>),
        mode: options.mode.clone(),
        ..NetConfig::default()
    };
    // As in `calloutd test`: the one calling thread shares a CPU with the host's (docs/hooks.md 8.4).
    let _pinned = options
        .mode
        .is_isolated()
        .then(calloutd_callout::isolate::pin_caller_here);
    let net = match VirtualNet::open(config) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("calloutd replay: {e}");
            return 2;
        }
    };
    if !options.json {
        let _ = writeln!(
            out,
            "replaying {} ({} frames) on {}: {}",
            options.capture.display(),
            frames.len(),
            net.server(),
            net.loaded()
        );
    }
    let progress = progress_bar(frames.len() as u64, options.realtime, &frames);
    let summary = replay_frames(&net, &frames, options, &mut out, &progress);
    progress.finish_and_clear();
    let mut summary = summary;
    summary.error = read_error;
    drop(net.stop());
    if let Some(mut t) = trace {
        let _ = t.flush();
    }
    print_summary(&mut out, &summary, options.json);
    if let Some(e) = &summary.error {
        eprintln!("{}: {e}", options.capture.display());
        return 1;
    }
    0
}

/// A progress bar on stderr for captures that take a while (off when stderr is no terminal).
fn progress_bar(len: u64, realtime: bool, frames: &[Frame]) -> indicatif::ProgressBar {
    let span = match (frames.first(), frames.last()) {
        (Some(a), Some(b)) => b.timestamp.saturating_sub(a.timestamp),
        _ => Duration::ZERO,
    };
    let slow = (realtime && span > Duration::from_secs(3)) || len > 50_000;
    if !slow || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr_with_hz(4),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} frames {elapsed_precise}")
    {
        bar.set_style(style);
    }
    bar
}

fn replay_frames(
    net: &VirtualNet,
    frames: &[Frame],
    options: &ReplayOptions,
    out: &mut impl Write,
    progress: &indicatif::ProgressBar,
) -> Summary {
    let mut summary = Summary::default();
    let start = net.now();
    let first = frames.first().map_or(Duration::ZERO, |f| f.timestamp);
    let mut last_purge = start;
    let mut previous = first;
    for frame in frames {
        summary.frames += 1;
        progress.inc(1);
        let offset = frame.timestamp.saturating_sub(first);
        if options.realtime {
            std::thread::sleep(frame.timestamp.saturating_sub(previous));
        }
        previous = previous.max(frame.timestamp);
        let now = start + offset;
        net.set_clock(now);
        // The runtime's cleanup runs once a minute of capture time.
        if now.duration_since(last_purge).unwrap_or_default() >= Duration::from_secs(60) {
            last_purge = now;
            let (purged, calls) = net.advance(Duration::ZERO);
            let purged = purged.unwrap_or(0);
            summary.purged += purged as u64;
            if purged > 0 && !options.json {
                let hooks: Vec<String> = calls.iter().map(call_text).collect();
                let _ = writeln!(
                    out,
                    "  (purge: {purged} expired lease(s) [{}])",
                    hooks.join(" ")
                );
            }
        }
        match classify(frame) {
            FrameKind::Other => summary.not_dhcp += 1,
            FrameKind::ServerReply => summary.server_replies += 1,
            FrameKind::Client { src, dst, payload } => {
                replay_one(
                    net,
                    frame,
                    src,
                    dst,
                    payload,
                    options.json,
                    out,
                    &mut summary,
                    at(now),
                );
            }
        }
    }
    summary
}

fn at(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[allow(clippy::too_many_arguments)]
fn replay_one(
    net: &VirtualNet,
    frame: &Frame,
    src: SocketAddrV4,
    dst: Ipv4Addr,
    payload: Vec<u8>,
    json: bool,
    out: &mut impl Write,
    summary: &mut Summary,
    _time: f64,
) {
    let xid = payload
        .get(4..8)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes);
    let chaddr = payload
        .get(28..34)
        .map(calloutd_client::to_colon_hex)
        .unwrap_or_default();
    let giaddr = payload
        .get(24..28)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(Ipv4Addr::from)
        .filter(|ip| !ip.is_unspecified());
    let broadcast = dst == Ipv4Addr::BROADCAST;
    let datagram = Datagram {
        bytes: payload.clone(),
        if_addr: net.server(),
        dst_addr: if broadcast {
            Ipv4Addr::BROADCAST
        } else {
            net.server()
        },
        peer: src,
    };
    let delivery = net.deliver(datagram, None);
    let request = request_name(&payload, delivery.outcome.request_type);
    *summary.requests.entry(request.clone()).or_default() += 1;
    let reply_name = delivery.reply.as_ref().map(|r| match r.message_type {
        Some(_) => r.type_name(),
        None => "BOOTREPLY".to_string(),
    });
    if let Some(name) = &reply_name {
        *summary.replies.entry(name.clone()).or_default() += 1;
    }
    if let Some(reason) = delivery.outcome.dropped {
        let name = code_name(calloutd_callout::HookName::PktDrop, reason.code()).unwrap_or("?");
        *summary.drops.entry(name.to_string()).or_default() += 1;
    } else if delivery.dropped_by_callout() {
        summary.dropped_by_callout += 1;
    }
    let misbehaviour: Vec<_> = delivery
        .calls
        .iter()
        .flat_map(|c| c.misbehaviour.iter())
        .collect();
    summary.misbehaviour += misbehaviour.len() as u64;
    if json {
        let line = json!({
            "frame": frame.number,
            "xid": xid,
            "chaddr": chaddr,
            "relay": giaddr,
            "request": request,
            "reply": reply_name,
            "yiaddr": delivery.reply.as_ref().map(|r| r.yiaddr),
            "dropped": delivery.outcome.dropped.and_then(|r| code_name(calloutd_callout::HookName::PktDrop, r.code())),
            "dropped_by_callout": delivery.dropped_by_callout(),
            "hooks": delivery.calls.iter().map(call_json).collect::<Vec<_>>(),
        });
        let _ = writeln!(out, "{line}");
    } else {
        let hooks: Vec<String> = delivery.calls.iter().map(call_text).collect();
        let _ = writeln!(
            out,
            "frame {:>5}  xid 0x{:08x}  {chaddr}  {request}{} -> {}  [{}]",
            frame.number,
            xid.unwrap_or(0),
            giaddr.map(|g| format!(" (relay {g})")).unwrap_or_default(),
            outcome_text(&delivery),
            hooks.join(" ")
        );
        for m in misbehaviour {
            let _ = writeln!(out, "    misbehaviour: {m}");
        }
    }
}

fn print_summary(out: &mut impl Write, s: &Summary, json: bool) {
    let requests: u64 = s.requests.values().sum();
    if json {
        let line = json!({"summary": {
            "frames": s.frames,
            "client_messages": requests,
            "requests": s.requests,
            "replies": s.replies,
            "drops": s.drops,
            "dropped_by_callout": s.dropped_by_callout,
            "server_replies_skipped": s.server_replies,
            "not_dhcp": s.not_dhcp,
            "misbehaviour": s.misbehaviour,
            "purged": s.purged,
            "error": s.error,
        }});
        let _ = writeln!(out, "{line}");
        return;
    }
    let list = |m: &BTreeMap<String, u64>| {
        if m.is_empty() {
            "none".to_string()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let _ = writeln!(
        out,
        "summary: {} frames, {requests} client messages ({})",
        s.frames,
        list(&s.requests)
    );
    let _ = writeln!(out, "  replies: {}", list(&s.replies));
    let _ = writeln!(
        out,
        "  dropped: {}; by the callout: {}",
        list(&s.drops),
        s.dropped_by_callout
    );
    let _ = writeln!(
        out,
        "  skipped: {} server replies, {} frames that are not DHCP; {} expired leases purged; {} misbehaviour reports",
        s.server_replies, s.not_dhcp, s.purged, s.misbehaviour
    );
    if let Some(e) = &s.error {
        let _ = writeln!(out, "  capture incomplete: {e}");
    }
}
