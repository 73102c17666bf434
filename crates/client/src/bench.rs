//! `calloutd bench`: a DHCPv4 load generator in the spirit of Kea's perfdhcp.
//!
//! It acts as a relay (binds giaddr, sends to the server's unicast address), so it runs on loopback,
//! and performs 4-way exchanges DISCOVER → OFFER → REQUEST → ACK with `clients` distinct MACs at a
//! fixed start rate, or as fast as the server takes them (`rate` 0): then the number in flight
//! adapts as TCP's congestion window does (slow start from 4, halved on a presumed loss, at most
//! `max_outstanding`), and DISCOVERs go out at most 32 in a row, so that the generator does not
//! overflow the server's socket buffer and then wait on timeouts (see `Congestion` in the source).
//!
//! Design, so that the generator is not the bottleneck (≥ 30 000 exchanges/s on two cores): one
//! socket; the calling thread sends DISCOVERs on schedule and expires late exchanges, one receiver
//! thread answers each OFFER with a REQUEST and records ACKs. Both patch pre-built packet templates
//! in place (xid, chaddr, options 50 and 54). Exchange `n` uses xid `base + n` and slot
//! `n mod slots` in a fixed table of atomics, so a reply finds its exchange with one index and one
//! compare-and-swap; nothing is allocated or hashed per packet. Latencies go to log-linear
//! histograms (1.6 % resolution).

use std::io::{IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use dhcproto::v4::MessageType;
use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};

use crate::cli::parse_socket_addr;
use crate::client::random_u64;
use crate::message::{
    encode_request, Identity, Outgoing, CHADDR_OFFSET, OPTIONS_OFFSET, XID_OFFSET,
};
use crate::SERVER_PORT;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The server's unicast address.
    pub server: SocketAddrV4,
    /// Local relay address; its IP goes in giaddr and selects the server's scope.
    pub giaddr: SocketAddrV4,
    /// Exchanges started per second; 0 starts them as fast as `max_outstanding` allows.
    pub rate: u32,
    /// Distinct client MACs, used round-robin.
    pub clients: u32,
    /// How long to start exchanges; outstanding ones then get `timeout` to finish.
    pub duration: Duration,
    /// Stop early when drops exceed this.
    pub max_drop: Option<MaxDrop>,
    /// An exchange without its OFFER or ACK after this long is a drop.
    pub timeout: Duration,
    /// Most exchanges in flight at once; `None`: rate × timeout + 1024 (64 when `rate` is 0).
    /// With `rate` 0 this is the ceiling of the adaptive window, not a fixed count.
    pub max_outstanding: Option<u32>,
}

/// A drop limit, as perfdhcp's `-D`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxDrop {
    /// More than this many dropped exchanges.
    Count(u64),
    /// More than this percentage of started exchanges dropped.
    Percent(f64),
}

impl std::str::FromStr for MaxDrop {
    type Err = String;

    /// `N` or `N%`.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("max drop {text:?}: expected a count N or a percentage N%");
        match text.trim().strip_suffix('%') {
            Some(pct) => pct
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|p| (0.0..=100.0).contains(p))
                .map(MaxDrop::Percent)
                .ok_or_else(bad),
            None => text.trim().parse().map(MaxDrop::Count).map_err(|_| bad()),
        }
    }
}

/// Counters so far, passed to the progress callback about once a second.
#[derive(Debug, Clone, Copy)]
pub struct BenchProgress {
    /// Time since the start.
    pub elapsed: Duration,
    /// DISCOVERs sent.
    pub started: u64,
    /// ACKs received.
    pub acks: u64,
    /// NAKs received.
    pub naks: u64,
    /// Exchanges without OFFER or ACK in time.
    pub drops: u64,
    /// ACKs per second over the last interval.
    pub recent_rate: f64,
}

/// Latency summary in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Smallest.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub avg: f64,
}

/// Drops by stage.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Drops {
    /// DISCOVER got no OFFER in time.
    pub no_offer: u64,
    /// REQUEST got no ACK (nor NAK) in time.
    pub no_ack: u64,
    /// REQUEST answered with NAK.
    pub nak: u64,
}

/// The result of a run (also the `--json` output).
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Server address.
    pub server: String,
    /// Relay address.
    pub giaddr: String,
    /// Target start rate (0: unlimited).
    pub rate: u32,
    /// Distinct clients.
    pub clients: u32,
    /// Configured duration in seconds.
    pub duration_s: f64,
    /// Time spent starting exchanges, in seconds (shorter than `duration_s` if stopped early).
    pub send_phase_s: f64,
    /// DISCOVERs sent.
    pub discovers: u64,
    /// OFFERs matched to an exchange.
    pub offers: u64,
    /// REQUESTs sent.
    pub requests: u64,
    /// ACKs matched to an exchange: completed 4-way exchanges.
    pub acks: u64,
    /// Completed exchanges per second of the send phase.
    pub exchanges_per_s: f64,
    /// Drops by stage.
    pub drops: Drops,
    /// Replies that matched no waiting exchange (late, duplicate, or not ours).
    pub unexpected: u64,
    /// Sends that failed.
    pub send_errors: u64,
    /// DISCOVER → ACK.
    pub latency_us: Latency,
    /// DISCOVER → OFFER.
    pub discover_offer_us: Latency,
    /// REQUEST → ACK.
    pub request_ack_us: Latency,
    /// Whether the run stopped because drops exceeded `max_drop`.
    pub max_drop_exceeded: bool,
    /// With `rate` 0: the adaptive in-flight window at the end of the send phase.
    pub final_window: Option<u32>,
    /// CPU seconds the generator's own two threads used (Linux; `None` elsewhere), to show it
    /// was not the bottleneck.
    pub generator_cpu_s: Option<f64>,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The configuration is unusable.
    #[error("{0}")]
    Invalid(String),
}

const STAGE_FREE: u64 = 0;
const STAGE_AWAIT_OFFER: u64 = 1;
const STAGE_AWAIT_ACK: u64 = 2;
const STAGE_DONE: u64 = 3;
const STAGE_EXPIRED: u64 = 4;
/// The stage bits of a slot's state.
const STAGE_MASK: u64 = 0x0f;
/// Set by the sender on an exchange still unanswered well past the usual latency (see
/// [`Congestion`]): presumed lost, it no longer counts as in flight, but a late reply still
/// completes it and it is a drop only after the full timeout.
const PRESUMED_LOST: u64 = 0x80;

/// One exchange in flight. `state` packs xid (high 32 bits) and stage (low 8 bits) so that one
/// compare-and-swap both matches a reply to its exchange and advances it.
#[derive(Default)]
struct Slot {
    state: AtomicU64,
    started_ns: AtomicU64,
    requested_ns: AtomicU64,
}

fn pack(xid: u32, stage: u64) -> u64 {
    (u64::from(xid) << 8) | stage
}

/// Counters written by the receiver thread only.
#[derive(Default)]
struct ReceiverCounters {
    offers: AtomicU64,
    requests: AtomicU64,
    acks: AtomicU64,
    naks: AtomicU64,
    unexpected: AtomicU64,
    send_errors: AtomicU64,
    /// Exchanges presumed lost that were answered after all (ACK or NAK).
    late_finished: AtomicU64,
    /// Smoothed DISCOVER → ACK/NAK time and its mean deviation (ns), as TCP's SRTT and RTTVAR.
    smoothed_ns: AtomicU64,
    deviation_ns: AtomicU64,
}

impl ReceiverCounters {
    /// Folds one completed exchange's time into the smoothed estimates (receiver thread only).
    fn observe_exchange(&self, sample_ns: u64) {
        let smoothed = self.smoothed_ns.load(Ordering::Relaxed);
        let (smoothed, deviation) = if smoothed == 0 {
            (sample_ns.max(1), sample_ns / 2)
        } else {
            let deviation = self.deviation_ns.load(Ordering::Relaxed);
            (
                smoothed - smoothed / 8 + sample_ns / 8,
                deviation - deviation / 4 + smoothed.abs_diff(sample_ns) / 4,
            )
        };
        self.deviation_ns.store(deviation, Ordering::Relaxed);
        self.smoothed_ns.store(smoothed.max(1), Ordering::Relaxed);
    }
}

struct Shared {
    socket: UdpSocket,
    server: SocketAddrV4,
    slots: Vec<Slot>,
    mask: u64,
    xid_base: u32,
    clients: u32,
    epoch: Instant,
    stop: AtomicBool,
    counters: ReceiverCounters,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn slot_of(&self, xid: u32) -> &Slot {
        &self.slots[(u64::from(xid.wrapping_sub(self.xid_base)) & self.mask) as usize]
    }

    fn mac_of(&self, xid: u32) -> [u8; 6] {
        let client = xid.wrapping_sub(self.xid_base) % self.clients;
        let c = client.to_be_bytes();
        // Locally administered unicast MACs, one per client index.
        [0x02, 0xcd, c[0], c[1], c[2], c[3]]
    }
}

/// A packet template with the offsets to patch.
struct Template {
    bytes: Vec<u8>,
    requested_ip_at: Option<usize>,
    server_id_at: Option<usize>,
}

impl Template {
    fn new(kind: MessageType, giaddr: Ipv4Addr) -> Result<Template, BenchError> {
        let identity = Identity {
            mac: [0; 6],
            parameter_request_list: &[1, 3, 6, 51, 54],
            ..Identity::default()
        };
        let request = kind == MessageType::Request;
        let out = Outgoing {
            kind: Some(kind),
            xid: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            giaddr,
            hops: 1,
            broadcast_flag: false,
            requested_ip: request.then_some(Ipv4Addr::UNSPECIFIED),
            server_id: request.then_some(Ipv4Addr::UNSPECIFIED),
            magic_cookie: true,
        };
        let bytes = encode_request(&identity, &out)
            .map_err(|e| BenchError::Invalid(format!("cannot build the {kind:?} template: {e}")))?;
        let requested_ip_at = option_data_offset(&bytes, 50);
        let server_id_at = option_data_offset(&bytes, 54);
        Ok(Template {
            bytes,
            requested_ip_at,
            server_id_at,
        })
    }

    fn patch(&mut self, xid: u32, mac: &[u8; 6]) {
        self.bytes[XID_OFFSET..XID_OFFSET + 4].copy_from_slice(&xid.to_be_bytes());
        self.bytes[CHADDR_OFFSET..CHADDR_OFFSET + 6].copy_from_slice(mac);
    }

    fn patch_request(&mut self, yiaddr: [u8; 4], server_id: [u8; 4]) {
        if let Some(at) = self.requested_ip_at {
            self.bytes[at..at + 4].copy_from_slice(&yiaddr);
        }
        if let Some(at) = self.server_id_at {
            self.bytes[at..at + 4].copy_from_slice(&server_id);
        }
    }
}

/// Offset of the payload of option `code` in a packet we built (options area only).
fn option_data_offset(packet: &[u8], code: u8) -> Option<usize> {
    let mut at = OPTIONS_OFFSET;
    while at + 1 < packet.len() {
        match packet[at] {
            0 => at += 1,
            255 => return None,
            c => {
                if c == code {
                    return Some(at + 2);
                }
                at += 2 + usize::from(packet[at + 1]);
            }
        }
    }
    None
}

/// What the receiver needs from a reply, found without allocating.
struct ReplySummary {
    xid: u32,
    message_type: u8,
    yiaddr: [u8; 4],
    server_id: Option<[u8; 4]>,
}

fn scan_reply(packet: &[u8]) -> Option<ReplySummary> {
    if packet.len() < OPTIONS_OFFSET || packet[0] != 2 || packet[236..240] != dhcproto::v4::MAGIC {
        return None;
    }
    let xid = u32::from_be_bytes(packet[4..8].try_into().ok()?);
    let yiaddr: [u8; 4] = packet[16..20].try_into().ok()?;
    let mut message_type = 0;
    let mut server_id = None;
    let mut at = OPTIONS_OFFSET;
    while at < packet.len() {
        let code = packet[at];
        if code == 0 {
            at += 1;
            continue;
        }
        if code == 255 {
            break;
        }
        let len = usize::from(*packet.get(at + 1)?);
        let data = packet.get(at + 2..at + 2 + len)?;
        match (code, len) {
            (53, 1) => message_type = data[0],
            (54, 4) => server_id = data.try_into().ok(),
            _ => {}
        }
        at += 2 + len;
    }
    Some(ReplySummary {
        xid,
        message_type,
        yiaddr,
        server_id,
    })
}

/// Log-linear histogram of nanoseconds: exact below 64, then 64 buckets per power of two.
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum: u128,
    min: u64,
    max: u64,
}

const SUB_BITS: u32 = 6;
const SUB_BUCKETS: u64 = 1 << SUB_BITS;

impl Histogram {
    fn new() -> Self {
        Histogram {
            counts: vec![0; 64 * 59],
            total: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    fn index(value: u64) -> usize {
        if value < SUB_BUCKETS {
            return value as usize;
        }
        let msb = 63 - value.leading_zeros();
        let group = u64::from(msb - SUB_BITS + 1);
        let sub = (value >> (msb - SUB_BITS)) - SUB_BUCKETS;
        (group * SUB_BUCKETS + sub) as usize
    }

    /// Middle of the bucket's range.
    fn value_at(index: usize) -> u64 {
        let index = index as u64;
        if index < SUB_BUCKETS {
            return index;
        }
        let group = index / SUB_BUCKETS;
        let sub = index % SUB_BUCKETS;
        let shift = group - 1;
        ((SUB_BUCKETS + sub) << shift) + ((1u64 << shift) >> 1)
    }

    fn record(&mut self, value: u64) {
        if let Some(count) = self.counts.get_mut(Self::index(value)) {
            *count += 1;
        }
        self.total += 1;
        self.sum += u128::from(value);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    fn percentile(&self, fraction: f64) -> u64 {
        let rank = ((self.total as f64 * fraction).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Self::value_at(index).clamp(self.min, self.max);
            }
        }
        self.max
    }

    fn summary_us(&self) -> Latency {
        if self.total == 0 {
            return Latency::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            count: self.total,
            min: us(self.min),
            p50: us(self.percentile(0.50)),
            p99: us(self.percentile(0.99)),
            max: us(self.max),
            avg: self.sum as f64 / self.total as f64 / 1000.0,
        }
    }
}

struct Latencies {
    exchange: Histogram,
    discover_offer: Histogram,
    request_ack: Histogram,
}

fn open_socket(giaddr: SocketAddrV4) -> Result<UdpSocket, BenchError> {
    let io = |context: String| move |source| BenchError::Io { context, source };
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(io("create UDP socket".into()))?;
    socket
        .set_reuse_address(true)
        .map_err(io("SO_REUSEADDR".into()))?;
    // Large buffers absorb bursts; the kernel caps them at rmem_max/wmem_max.
    let _ = socket.set_recv_buffer_size(8 << 20);
    let _ = socket.set_send_buffer_size(8 << 20);
    socket
        .bind(&SocketAddr::V4(giaddr).into())
        .map_err(io(format!("bind {giaddr}")))?;
    let socket: UdpSocket = socket.into();
    // Lets the receiver notice the end of the run.
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(io("set read timeout".into()))?;
    Ok(socket)
}

/// Runs the benchmark; `progress` is called about once a second from the calling thread.
pub fn run(
    config: &BenchConfig,
    progress: &mut dyn FnMut(&BenchProgress),
) -> Result<BenchReport, BenchError> {
    if config.clients == 0 {
        return Err(BenchError::Invalid("clients must be at least 1".into()));
    }
    if config.timeout.is_zero() {
        return Err(BenchError::Invalid("timeout must be positive".into()));
    }
    let window = u64::from(config.max_outstanding.unwrap_or_else(|| {
        if config.rate == 0 {
            // Closed loop: the ceiling of the adaptive window. Enough to keep a server busy (64 in
            // flight drove a stateless responder at 50 000+/s), few enough not to measure
            // queueing, and it fits a default 212 992-byte socket buffer, so that slow start
            // does not overshoot into a burst of losses against an ordinary server.
            return 64;
        }
        let in_flight = f64::from(config.rate) * config.timeout.as_secs_f64();
        (in_flight.min(f64::from(1u32 << 20)) as u32).saturating_add(1024)
    }))
    .clamp(1, 1 << 22);
    // With `rate` 0 a lost exchange keeps its slot for the timeout while the others flow past it,
    // so the table holds far more exchanges than the window (2^17 slots: 3 MiB).
    let slot_count = if config.rate == 0 {
        window.max(1 << 17).next_power_of_two()
    } else {
        window.next_power_of_two()
    };
    let shared = Shared {
        socket: open_socket(config.giaddr)?,
        server: config.server,
        slots: (0..slot_count).map(|_| Slot::default()).collect(),
        mask: slot_count - 1,
        xid_base: random_u64() as u32,
        clients: config.clients,
        epoch: Instant::now(),
        stop: AtomicBool::new(false),
        counters: ReceiverCounters::default(),
    };
    let giaddr = *config.giaddr.ip();
    let discover = Template::new(MessageType::Discover, giaddr)?;
    let request = Template::new(MessageType::Request, giaddr)?;

    let sender_cpu_before = thread_cpu_seconds();
    let (sender, received) = std::thread::scope(|scope| {
        let receiver = std::thread::Builder::new()
            .name("bench-receiver".into())
            .spawn_scoped(scope, || {
                let latencies = receive_loop(&shared, request);
                (latencies, thread_cpu_seconds())
            })
            .map_err(|source| BenchError::Io {
                context: "start the receiver thread".into(),
                source,
            })?;
        let sender = send_loop(&shared, config, window, discover, progress);
        shared.stop.store(true, Ordering::Release);
        let received = receiver
            .join()
            .map_err(|_| BenchError::Invalid("the receiver thread panicked".into()))?;
        Ok::<_, BenchError>((sender, received))
    })?;
    let (latencies, receiver_cpu) = received;
    let generator_cpu_s = match (sender_cpu_before, thread_cpu_seconds(), receiver_cpu) {
        (Some(before), Some(after), Some(receiver)) => Some(after - before + receiver),
        _ => None,
    };
    let c = &shared.counters;
    let acks = c.acks.load(Ordering::Acquire);
    let send_phase_s = sender.send_phase.as_secs_f64();
    Ok(BenchReport {
        server: config.server.to_string(),
        giaddr: config.giaddr.to_string(),
        rate: config.rate,
        clients: config.clients,
        duration_s: config.duration.as_secs_f64(),
        send_phase_s,
        discovers: sender.started,
        offers: c.offers.load(Ordering::Acquire),
        requests: c.requests.load(Ordering::Acquire),
        acks,
        exchanges_per_s: if send_phase_s > 0.0 {
            acks as f64 / send_phase_s
        } else {
            0.0
        },
        drops: Drops {
            no_offer: sender.no_offer,
            no_ack: sender.no_ack,
            nak: c.naks.load(Ordering::Acquire),
        },
        unexpected: c.unexpected.load(Ordering::Acquire),
        send_errors: sender.send_errors + c.send_errors.load(Ordering::Acquire),
        latency_us: latencies.exchange.summary_us(),
        discover_offer_us: latencies.discover_offer.summary_us(),
        request_ack_us: latencies.request_ack.summary_us(),
        max_drop_exceeded: sender.max_drop_exceeded,
        final_window: sender.final_window,
        generator_cpu_s,
    })
}

struct SenderTotals {
    started: u64,
    no_offer: u64,
    no_ack: u64,
    /// Of `no_offer + no_ack`, those that had been presumed lost.
    late_expired: u64,
    send_errors: u64,
    send_phase: Duration,
    max_drop_exceeded: bool,
    /// The adaptive window at the end of the send phase (`rate` 0 only).
    final_window: Option<u32>,
}

/// Sends no more than this many DISCOVERs in a row with `rate` 0, so that a refill never arrives
/// at the server as one large burst.
const MAX_RATE_BURST: u32 = 32;
/// The adaptive window's smallest size (unless `max_outstanding` is smaller).
const MIN_WINDOW: f64 = 4.0;
/// An exchange is presumed lost no sooner than this, whatever the usual latency.
const MIN_LOSS_AFTER: Duration = Duration::from_millis(5);

/// The in-flight window of `rate` 0, adapted as TCP's congestion window is: it starts at
/// [`MIN_WINDOW`], grows by one per completed exchange up to a threshold (slow start) and by
/// 1/window per completed exchange beyond it, up to `max_outstanding`; a loss halves it, once per
/// window of exchanges. A fixed window larger than the server's socket buffer holds loses part of
/// every refill and, with losses seen only at the timeout, runs at the timeout's pace.
///
/// A loss is presumed when an exchange is still unanswered after `smoothed + 4 × deviation` of the
/// exchange time (at least twice the smoothed time and [`MIN_LOSS_AFTER`], at most the timeout).
/// It then stops counting as in flight, so a lost exchange does not pin a place in the window for
/// the whole timeout; a late reply still completes it, and it is counted as a drop only when the
/// timeout passes, as in the fixed-rate mode.
struct Congestion {
    window: f64,
    slow_start_until: f64,
    floor: f64,
    ceiling: f64,
    /// Losses among exchanges started before this index belong to a loss already answered.
    recover_from: u64,
    /// Completed exchanges (ACK or NAK) already counted into the window.
    finished_seen: u64,
    /// The next exchange to look at for a presumed loss.
    cursor: u64,
    /// Exchanges flagged [`PRESUMED_LOST`] so far.
    presumed: u64,
}

impl Congestion {
    fn new(ceiling: u64) -> Self {
        let ceiling = ceiling as f64;
        let floor = MIN_WINDOW.min(ceiling);
        Congestion {
            window: floor,
            slow_start_until: ceiling,
            floor,
            ceiling,
            recover_from: 0,
            finished_seen: 0,
            cursor: 0,
            presumed: 0,
        }
    }

    /// How long an exchange may stay unanswered before it is presumed lost.
    fn loss_after_ns(counters: &ReceiverCounters, timeout_ns: u64) -> u64 {
        let smoothed = counters.smoothed_ns.load(Ordering::Relaxed);
        if smoothed == 0 {
            return timeout_ns;
        }
        let deviation = counters.deviation_ns.load(Ordering::Relaxed);
        let min_ns = MIN_LOSS_AFTER.as_nanos() as u64;
        smoothed
            .saturating_add(deviation.saturating_mul(4))
            .max(smoothed.saturating_mul(2))
            .max(min_ns)
            .min(timeout_ns)
    }

    /// Grows the window by the exchanges completed since the last call.
    fn grow(&mut self, finished: u64) {
        let completed = finished.saturating_sub(self.finished_seen) as f64;
        self.finished_seen = self.finished_seen.max(finished);
        if self.window < self.slow_start_until {
            self.window += completed;
        } else {
            self.window += completed / self.window;
        }
        self.window = self.window.min(self.ceiling);
    }

    /// Flags the exchanges in `[oldest, next)` unanswered for longer than `loss_after_ns` and
    /// halves the window for the first of them after the last halving.
    fn presume_losses(
        &mut self,
        shared: &Shared,
        oldest: u64,
        next: u64,
        now_ns: u64,
        loss_after_ns: u64,
    ) {
        self.cursor = self.cursor.max(oldest);
        while self.cursor < next {
            let slot = &shared.slots[(self.cursor & shared.mask) as usize];
            let state = slot.state.load(Ordering::Acquire);
            let stage = state & STAGE_MASK;
            let waiting = stage == STAGE_AWAIT_OFFER || stage == STAGE_AWAIT_ACK;
            if !waiting || state & PRESUMED_LOST != 0 {
                self.cursor += 1;
                continue;
            }
            // Exchanges start in index order, so the first young one ends the scan.
            if now_ns.saturating_sub(slot.started_ns.load(Ordering::Acquire)) < loss_after_ns {
                break;
            }
            if slot
                .state
                .compare_exchange(
                    state,
                    state | PRESUMED_LOST,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                self.presumed += 1;
                if self.cursor >= self.recover_from {
                    self.slow_start_until = (self.window / 2.0).max(self.floor);
                    self.window = self.slow_start_until;
                    self.recover_from = next;
                }
                self.cursor += 1;
            }
            // On failure the receiver just advanced it: look again.
        }
    }
}

fn send_loop(
    shared: &Shared,
    config: &BenchConfig,
    window: u64,
    mut discover: Template,
    progress: &mut dyn FnMut(&BenchProgress),
) -> SenderTotals {
    // `rate` 0 adapts its window below `window`; a fixed rate keeps `window` as a hard cap.
    let mut congestion = (config.rate == 0).then(|| Congestion::new(window));
    let slot_count = shared.mask + 1;
    let timeout_ns = u64::try_from(config.timeout.as_nanos()).unwrap_or(u64::MAX);
    let mut totals = SenderTotals {
        started: 0,
        no_offer: 0,
        no_ack: 0,
        late_expired: 0,
        send_errors: 0,
        send_phase: Duration::ZERO,
        max_drop_exceeded: false,
        final_window: None,
    };
    // Exchanges [oldest, next) may still be in flight.
    let mut next: u64 = 0;
    let mut oldest: u64 = 0;
    let mut last_report = Duration::ZERO;
    let mut acks_at_last_report = 0;
    let idle = if config.rate == 0 {
        Duration::from_micros(100)
    } else {
        Duration::from_secs_f64(8.0 / f64::from(config.rate))
            .clamp(Duration::from_micros(100), Duration::from_millis(1))
    };
    let sweep = |oldest: &mut u64, next: u64, totals: &mut SenderTotals, now_ns: u64| {
        while *oldest < next {
            let slot = &shared.slots[(*oldest & shared.mask) as usize];
            let state = slot.state.load(Ordering::Acquire);
            let stage = state & STAGE_MASK;
            if stage == STAGE_DONE || stage == STAGE_EXPIRED || stage == STAGE_FREE {
                *oldest += 1;
                continue;
            }
            if now_ns.saturating_sub(slot.started_ns.load(Ordering::Acquire)) < timeout_ns {
                break;
            }
            let expired = (state & !0xff) | STAGE_EXPIRED;
            if slot
                .state
                .compare_exchange(state, expired, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                if stage == STAGE_AWAIT_OFFER {
                    totals.no_offer += 1;
                } else {
                    totals.no_ack += 1;
                }
                if state & PRESUMED_LOST != 0 {
                    totals.late_expired += 1;
                }
                *oldest += 1;
            }
            // On failure the receiver just advanced it: look again.
        }
    };
    loop {
        let elapsed = shared.epoch.elapsed();
        if elapsed >= config.duration {
            break;
        }
        let now_ns = shared.now_ns();
        if let Some(congestion) = congestion.as_mut() {
            let loss_after_ns = Congestion::loss_after_ns(&shared.counters, timeout_ns);
            congestion.presume_losses(shared, oldest, next, now_ns, loss_after_ns);
        }
        sweep(&mut oldest, next, &mut totals, now_ns);
        if let Some(limit) = config.max_drop {
            let drops = totals.no_offer + totals.no_ack;
            let exceeded = match limit {
                MaxDrop::Count(n) => drops > n,
                MaxDrop::Percent(p) => next > 0 && drops as f64 * 100.0 / next as f64 > p,
            };
            if exceeded {
                totals.max_drop_exceeded = true;
                break;
            }
        }
        let due = if config.rate == 0 {
            u64::MAX
        } else {
            (elapsed.as_secs_f64() * f64::from(config.rate)) as u64
        };
        // Room in the window: with `rate` 0, exchanges neither finished nor presumed lost are in
        // flight; with a fixed rate, every exchange since the oldest unfinished one.
        let (room, burst_cap) = match congestion.as_mut() {
            Some(congestion) => {
                let counters = &shared.counters;
                let finished =
                    counters.acks.load(Ordering::Acquire) + counters.naks.load(Ordering::Acquire);
                let late_finished = counters.late_finished.load(Ordering::Acquire);
                congestion.grow(finished);
                let presumed_pending = congestion
                    .presumed
                    .saturating_sub(late_finished + totals.late_expired);
                let in_flight = next
                    .saturating_sub(finished + totals.no_offer + totals.no_ack + presumed_pending);
                let room = (congestion.window as u64).saturating_sub(in_flight);
                // A lost exchange keeps its slot until its timeout.
                (room.min(slot_count - (next - oldest)), MAX_RATE_BURST)
            }
            None => (window - (next - oldest).min(window), 256),
        };
        let mut burst: u32 = 0;
        while next < due && u64::from(burst) < room && burst < burst_cap {
            let xid = shared.xid_base.wrapping_add(next as u32);
            let slot = shared.slot_of(xid);
            // The slot's previous exchange is older than `oldest`, hence finished or expired.
            slot.state.store(pack(xid, STAGE_FREE), Ordering::Release);
            slot.started_ns.store(shared.now_ns(), Ordering::Release);
            slot.state
                .store(pack(xid, STAGE_AWAIT_OFFER), Ordering::Release);
            discover.patch(xid, &shared.mac_of(xid));
            if shared
                .socket
                .send_to(&discover.bytes, shared.server)
                .is_err()
            {
                totals.send_errors += 1;
            }
            next += 1;
            burst += 1;
        }
        totals.started = next;
        if elapsed - last_report >= Duration::from_secs(1) {
            let acks = shared.counters.acks.load(Ordering::Relaxed);
            let interval = (elapsed - last_report).as_secs_f64();
            progress(&BenchProgress {
                elapsed,
                started: next,
                acks,
                naks: shared.counters.naks.load(Ordering::Relaxed),
                drops: totals.no_offer + totals.no_ack,
                recent_rate: (acks - acks_at_last_report) as f64 / interval,
            });
            last_report = elapsed;
            acks_at_last_report = acks;
        }
        if burst < burst_cap {
            // Nothing more is due (or the window is full): yield the core to the server. At high
            // rates sleep for about eight packets' worth, so each wake-up sends a small batch.
            std::thread::sleep(idle);
        }
    }
    totals.send_phase = shared.epoch.elapsed().min(config.duration);
    totals.final_window = congestion.map(|c| c.window as u32);
    // Drain: give every outstanding exchange its full timeout.
    let drain_end = Instant::now() + config.timeout + Duration::from_millis(10);
    while oldest < next && Instant::now() < drain_end {
        sweep(&mut oldest, next, &mut totals, shared.now_ns());
        std::thread::sleep(Duration::from_millis(1));
    }
    sweep(&mut oldest, next, &mut totals, u64::MAX);
    totals
}

/// CPU seconds (user + system) the calling thread has used, from /proc (Linux, USER_HZ = 100).
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn receive_loop(shared: &Shared, mut request: Template) -> Latencies {
    let mut latencies = Latencies {
        exchange: Histogram::new(),
        discover_offer: Histogram::new(),
        request_ack: Histogram::new(),
    };
    let counters = &shared.counters;
    let bump =
        |counter: &AtomicU64| counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Release);
    let mut buffer = [0u8; 1500];
    while !shared.stop.load(Ordering::Acquire) {
        let (len, from) = match shared.socket.recv_from(&mut buffer) {
            Ok(got) => got,
            Err(_) => continue, // read timeout (checks `stop`) or an ICMP error from a send
        };
        let Some(reply) = scan_reply(&buffer[..len]) else {
            bump(&counters.unexpected);
            continue;
        };
        let slot = shared.slot_of(reply.xid);
        let state = slot.state.load(Ordering::Acquire);
        // A reply to an exchange presumed lost still completes it.
        let presumed_lost = state & PRESUMED_LOST;
        let unflagged = state & !PRESUMED_LOST;
        let now = shared.now_ns();
        let offer = u8::from(MessageType::Offer);
        let (ack, nak) = (u8::from(MessageType::Ack), u8::from(MessageType::Nak));
        if unflagged == pack(reply.xid, STAGE_AWAIT_OFFER) && reply.message_type == offer {
            let started = slot.started_ns.load(Ordering::Acquire);
            if slot
                .state
                .compare_exchange(
                    state,
                    pack(reply.xid, STAGE_AWAIT_ACK) | presumed_lost,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_err()
            {
                bump(&counters.unexpected);
                continue;
            }
            bump(&counters.offers);
            latencies.discover_offer.record(now.saturating_sub(started));
            let server_id = reply.server_id.unwrap_or(match from {
                SocketAddr::V4(v4) => v4.ip().octets(),
                SocketAddr::V6(_) => [0; 4],
            });
            request.patch(reply.xid, &shared.mac_of(reply.xid));
            request.patch_request(reply.yiaddr, server_id);
            slot.requested_ns.store(shared.now_ns(), Ordering::Release);
            if shared.socket.send_to(&request.bytes, shared.server).is_ok() {
                bump(&counters.requests);
            } else {
                bump(&counters.send_errors);
            }
        } else if unflagged == pack(reply.xid, STAGE_AWAIT_ACK)
            && (reply.message_type == ack || reply.message_type == nak)
        {
            if slot
                .state
                .compare_exchange(
                    state,
                    pack(reply.xid, STAGE_DONE),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_err()
            {
                bump(&counters.unexpected);
                continue;
            }
            let exchange_ns = now.saturating_sub(slot.started_ns.load(Ordering::Acquire));
            counters.observe_exchange(exchange_ns);
            if presumed_lost != 0 {
                // Before acks/naks, so that a sender that sees the completion sees this too.
                bump(&counters.late_finished);
            }
            if reply.message_type == ack {
                latencies.exchange.record(exchange_ns);
                latencies
                    .request_ack
                    .record(now.saturating_sub(slot.requested_ns.load(Ordering::Acquire)));
                bump(&counters.acks);
            } else {
                bump(&counters.naks);
            }
        } else {
            bump(&counters.unexpected);
        }
    }
    latencies
}

/// calloutd bench: 4-way exchanges against a server, as a relay on loopback.
#[derive(Debug, Clone, Args)]
pub struct BenchCommand {
    /// The server's address (port 67 unless given).
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub server: String,
    /// Local relay address to bind and put in giaddr (port 67 unless given), e.g. 127.0.0.2.
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub giaddr: String,
    /// Exchanges started per second (0: as fast as --max-outstanding allows).
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// Distinct clients (MACs 02:cd:..), used round-robin.
    #[arg(long, default_value_t = 1000)]
    pub clients: u32,
    /// Seconds to start exchanges for.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Stop when more than N exchanges (or N% of those started) were dropped; exit 1.
    #[arg(long, value_name = "N|N%")]
    pub max_drop: Option<String>,
    /// Seconds after which an unanswered exchange counts as dropped.
    #[arg(long, default_value_t = 1.0)]
    pub timeout: f64,
    /// Most exchanges in flight (default: rate × timeout + 1024, or 64 with --rate 0). With
    /// --rate 0 the window adapts (starts at 4, grows while replies flow, halves on a loss) up to
    /// this; an exchange unanswered well past the usual latency stops counting as in flight but
    /// is a drop only after --timeout.
    #[arg(long, value_name = "N")]
    pub max_outstanding: Option<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `calloutd bench`: exit 0 done, 1 stopped by --max-drop, 3 bad arguments or socket error.
pub fn run_bench(cmd: BenchCommand) -> ExitCode {
    let tty = std::io::stderr().is_terminal();
    let code = run_bench_with(
        &cmd,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr(),
        tty,
    );
    ExitCode::from(code)
}

/// [`run_bench`] with its outputs given; the progress line goes to `err` only when `live`.
pub fn run_bench_with(
    cmd: &BenchCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
    live: bool,
) -> u8 {
    let config = match config_from(cmd) {
        Ok(config) => config,
        Err(reason) => {
            let _ = writeln!(err, "error: {reason}");
            return crate::cli::EXIT_ERROR;
        }
    };
    let mut progress_line = |p: &BenchProgress| {
        if live {
            let _ = write!(
                err,
                "\r{:>5.1}s  started {}  acks {}  naks {}  drops {}  {:.0}/s   ",
                p.elapsed.as_secs_f64(),
                p.started,
                p.acks,
                p.naks,
                p.drops,
                p.recent_rate
            );
            let _ = err.flush();
        }
    };
    let report = run(&config, &mut progress_line);
    if live {
        let _ = writeln!(err);
    }
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return crate::cli::EXIT_ERROR;
        }
    };
    if cmd.json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string(&report).unwrap_or_default()
        );
    } else {
        let _ = writeln!(out, "{}", render(&report));
    }
    if report.max_drop_exceeded {
        let _ = writeln!(err, "stopped: drops exceeded --max-drop");
        return 1;
    }
    crate::cli::EXIT_OK
}

fn config_from(cmd: &BenchCommand) -> Result<BenchConfig, String> {
    let seconds = |value: f64, what: &str| {
        (value.is_finite() && value > 0.0 && value <= 86_400.0)
            .then(|| Duration::from_secs_f64(value))
            .ok_or_else(|| format!("--{what}: {value} is not a number of seconds in (0, 86400]"))
    };
    Ok(BenchConfig {
        server: parse_socket_addr(&cmd.server, SERVER_PORT, "--server")
            .map_err(|e| e.to_string())?,
        giaddr: parse_socket_addr(&cmd.giaddr, SERVER_PORT, "--giaddr")
            .map_err(|e| e.to_string())?,
        rate: cmd.rate,
        clients: cmd.clients,
        duration: seconds(cmd.duration, "duration")?,
        max_drop: cmd.max_drop.as_deref().map(str::parse).transpose()?,
        timeout: seconds(cmd.timeout, "timeout")?,
        max_outstanding: cmd.max_outstanding,
    })
}

fn render(r: &BenchReport) -> String {
    let latency = |name: &str, l: &Latency| {
        format!(
            "{name:<16} min {:.1}  p50 {:.1}  p99 {:.1}  max {:.1}  avg {:.1} µs ({} samples)",
            l.min, l.p50, l.p99, l.max, l.avg, l.count
        )
    };
    [
        format!(
            "bench {} -> {}: rate {} clients {} for {:.1}s",
            r.giaddr,
            r.server,
            if r.rate == 0 { "max".to_string() } else { format!("{}/s", r.rate) },
            r.clients,
            r.send_phase_s
        ),
        format!("exchanges        {} ({:.0}/s)", r.acks, r.exchanges_per_s),
        format!("sent             {} DISCOVER, {} REQUEST", r.discovers, r.requests),
        format!("received         {} OFFER, {} ACK, {} NAK", r.offers, r.acks, r.drops.nak),
        format!(
            "drops            {} no OFFER, {} no ACK, {} NAK; {} unexpected replies, {} send errors",
            r.drops.no_offer, r.drops.no_ack, r.drops.nak, r.unexpected, r.send_errors
        ),
        match r.final_window {
            Some(window) => format!("window           {window} in flight at the end (adaptive)"),
            None => "window           fixed".into(),
        },
        latency("latency", &r.latency_us),
        latency("discover-offer", &r.discover_offer_us),
        latency("request-ack", &r.request_ack_us),
        match r.generator_cpu_s {
            Some(cpu) if r.acks > 0 => format!(
                "generator CPU    {cpu:.2}s ({:.1} µs per exchange)",
                cpu * 1e6 / r.acks as f64
            ),
            Some(cpu) => format!("generator CPU    {cpu:.2}s"),
            None => "generator CPU    unknown".into(),
        },
    ]
    .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_monotonic_and_tight() {
        let mut previous = 0;
        for value in (0..1_000_000u64)
            .step_by(37)
            .chain([u64::MAX / 2, u64::MAX])
        {
            let index = Histogram::index(value);
            assert!(index >= previous, "{value}");
            previous = index;
            let mid = Histogram::value_at(index);
            let error = (mid as f64 - value as f64).abs() / (value.max(1) as f64);
            assert!(error <= 1.0 / 64.0 + 1e-9, "{value} -> {mid}");
        }
        assert!(Histogram::index(u64::MAX) < Histogram::new().counts.len());
    }

    #[test]
    fn histogram_percentiles() {
        let mut h = Histogram::new();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let s = h.summary_us();
        assert_eq!(s.count, 1000);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 1000.0);
        assert!((s.p50 - 500.0).abs() < 10.0, "{}", s.p50);
        assert!((s.p99 - 990.0).abs() < 16.0, "{}", s.p99);
        assert!((s.avg - 500.5).abs() < 1e-6);
    }

    #[test]
    fn max_drop_parsing() {
        assert_eq!("10".parse::<MaxDrop>(), Ok(MaxDrop::Count(10)));
        assert_eq!("2.5%".parse::<MaxDrop>(), Ok(MaxDrop::Percent(2.5)));
        assert!("101%".parse::<MaxDrop>().is_err());
        assert!("x".parse::<MaxDrop>().is_err());
    }

    #[test]
    fn templates_patch_in_place() {
        let mut t = Template::new(MessageType::Request, Ipv4Addr::new(127, 0, 0, 2)).unwrap();
        t.patch(0xaabbccdd, &[2, 0xcd, 0, 0, 0, 7]);
        t.patch_request([10, 0, 0, 9], [10, 0, 0, 1]);
        let reply = crate::Reply::decode(
            &{
                let mut b = t.bytes.clone();
                b[0] = 2; // decode as if it were a reply, to read the fields back
                b
            },
            None,
        )
        .unwrap();
        assert_eq!(reply.xid, 0xaabbccdd);
        assert_eq!(reply.chaddr, vec![2, 0xcd, 0, 0, 0, 7]);
        assert_eq!(reply.giaddr, Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(reply.option(50).unwrap().value(), "10.0.0.9");
        assert_eq!(reply.server_id, Some(Ipv4Addr::new(10, 0, 0, 1)));
        let summary = scan_reply(&reply.raw).unwrap();
        assert_eq!(summary.message_type, 3);
        assert_eq!(summary.server_id, Some([10, 0, 0, 1]));
    }
}
