//! Callout misbehaviour: what calloutd can see a DLL do wrong from outside, reported with the hook,
//! the packet (xid, chaddr) and a one-line explanation, in the trace, in the statistics and to
//! `calloutd test`.

use crate::HookName;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// How many recent reports [`MisbehaviourLog`] keeps.
const RECENT: usize = 32;

/// The kinds of misbehaviour calloutd detects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MisbehaviourKind {
    /// A hook call took longer than the threshold (stricter while a server lock is held).
    SlowHook,
    /// The DLL wrote past the end (or before the start) of the packet buffer.
    WrotePastBuffer,
    /// The DLL set a packet size larger than the buffer, or swapped in an unusable buffer.
    BadSize,
    /// The DLL wrote into a packet it was given by value (HandleOptions, AddressDel,
    /// AddressOffer, DeleteClient's hardware address).
    WroteReadOnlyPacket,
    /// A packet context NewPkt stored can never be freed: PktDrop(PROCESSED) got another one, the
    /// packet never ended, or the DLL set no PktDrop hook to free it in.
    LeakedContext,
    /// The callout crashed (isolated mode).
    Crash,
    /// A hook call did not return (isolated mode).
    Hang,
}

impl MisbehaviourKind {
    /// Every kind, in declaration order.
    pub const ALL: [MisbehaviourKind; 7] = [
        MisbehaviourKind::SlowHook,
        MisbehaviourKind::WrotePastBuffer,
        MisbehaviourKind::BadSize,
        MisbehaviourKind::WroteReadOnlyPacket,
        MisbehaviourKind::LeakedContext,
        MisbehaviourKind::Crash,
        MisbehaviourKind::Hang,
    ];

    /// The name used in the trace, the statistics and scenarios (`slow-hook`).
    pub const fn name(self) -> &'static str {
        match self {
            MisbehaviourKind::SlowHook => "slow-hook",
            MisbehaviourKind::WrotePastBuffer => "wrote-past-buffer",
            MisbehaviourKind::BadSize => "bad-size",
            MisbehaviourKind::WroteReadOnlyPacket => "wrote-read-only-packet",
            MisbehaviourKind::LeakedContext => "leaked-context",
            MisbehaviourKind::Crash => "crash",
            MisbehaviourKind::Hang => "hang",
        }
    }

    /// The kind named `name` (as [`MisbehaviourKind::name`] writes it).
    pub fn from_name(name: &str) -> Option<MisbehaviourKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl std::fmt::Display for MisbehaviourKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One detected misbehaviour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Misbehaviour {
    /// What kind.
    pub kind: MisbehaviourKind,
    /// The hook in which it was seen.
    pub hook: HookName,
    /// The transaction id of the packet concerned, when there is one.
    pub xid: Option<u32>,
    /// The client hardware address of the packet concerned (`aa:bb:...`), when there is one.
    pub chaddr: Option<String>,
    /// One line saying what happened.
    pub explanation: String,
}

impl std::fmt::Display for Misbehaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} in {}", self.kind, self.hook)?;
        if let Some(xid) = self.xid {
            write!(f, " (xid 0x{xid:08x}")?;
            if let Some(chaddr) = &self.chaddr {
                write!(f, ", chaddr {chaddr}")?;
            }
            f.write_str(")")?;
        } else if let Some(chaddr) = &self.chaddr {
            write!(f, " (chaddr {chaddr})")?;
        }
        write!(f, ": {}", self.explanation)
    }
}

/// The client hardware address of a packet (bytes 28.., `hlen` of them, at most 16), kept without
/// allocating until it is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Chaddr {
    len: u8,
    bytes: [u8; 16],
}

impl Chaddr {
    /// The chaddr of a BOOTP/DHCP packet, if it is long enough to have one.
    pub(crate) fn of_packet(packet: &[u8]) -> Option<Chaddr> {
        let hlen = usize::from(*packet.get(2)?).min(16);
        Chaddr::of_bytes(packet.get(28..28 + hlen)?)
    }

    /// A hardware address given as such (DeleteClient).
    pub(crate) fn of_bytes(hw: &[u8]) -> Option<Chaddr> {
        let hw = hw.get(..hw.len().min(16))?;
        let mut bytes = [0u8; 16];
        bytes[..hw.len()].copy_from_slice(hw);
        Some(Chaddr {
            len: u8::try_from(hw.len()).ok()?,
            bytes,
        })
    }

    /// `aa:bb:cc:...`.
    pub(crate) fn text(&self) -> String {
        self.bytes[..usize::from(self.len)]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// Counts per kind and the most recent reports (shareable with a stats endpoint).
#[derive(Debug, Default)]
pub struct MisbehaviourLog {
    counts: [AtomicU64; MisbehaviourKind::ALL.len()],
    recent: Mutex<VecDeque<Misbehaviour>>,
}

/// A snapshot of a [`MisbehaviourLog`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MisbehaviourSummary {
    /// How many of each kind were seen (only kinds seen at least once).
    pub counts: Vec<(MisbehaviourKind, u64)>,
    /// The most recent reports, oldest first.
    pub recent: Vec<Misbehaviour>,
}

impl MisbehaviourLog {
    /// Counts `report`, keeps it among the recent ones and logs it as a warning.
    pub fn record(&self, report: &Misbehaviour) {
        self.counts[report.kind as usize].fetch_add(1, Ordering::Relaxed);
        tracing::warn!("callout misbehaviour: {report}");
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(report.clone());
    }

    /// How many of `kind` were seen.
    pub fn count(&self, kind: MisbehaviourKind) -> u64 {
        self.counts[kind as usize].load(Ordering::Relaxed)
    }

    /// Counts and recent reports.
    pub fn summary(&self) -> MisbehaviourSummary {
        MisbehaviourSummary {
            counts: MisbehaviourKind::ALL
                .into_iter()
                .map(|k| (k, self.count(k)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            recent: self
                .recent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_by_name_and_serialize_as_it() {
        for kind in MisbehaviourKind::ALL {
            assert_eq!(MisbehaviourKind::from_name(kind.name()), Some(kind));
            assert_eq!(
                serde_json::to_string(&kind).unwrap(),
                format!("\"{}\"", kind.name())
            );
        }
        assert_eq!(MisbehaviourKind::from_name("slow"), None);
    }

    #[test]
    fn chaddr_is_read_from_hlen_bytes_at_offset_28() {
        let mut packet = vec![0u8; 300];
        packet[2] = 6;
        packet[28..34].copy_from_slice(&[2, 0, 0x5e, 1, 2, 3]);
        assert_eq!(
            Chaddr::of_packet(&packet).unwrap().text(),
            "02:00:5e:01:02:03"
        );
        assert!(Chaddr::of_packet(&packet[..20]).is_none());
    }

    #[test]
    fn the_log_counts_per_kind_and_keeps_the_latest_reports() {
        let log = MisbehaviourLog::default();
        for i in 0..40u32 {
            log.record(&Misbehaviour {
                kind: MisbehaviourKind::SlowHook,
                hook: HookName::AddressOffer,
                xid: Some(i),
                chaddr: None,
                explanation: "slow".into(),
            });
        }
        let summary = log.summary();
        assert_eq!(summary.counts, vec![(MisbehaviourKind::SlowHook, 40)]);
        assert_eq!(summary.recent.len(), RECENT);
        assert_eq!(summary.recent[0].xid, Some(40 - RECENT as u32));
        assert_eq!(log.count(MisbehaviourKind::Crash), 0);
    }
}
