//! Finds and loads the callout DLL as Microsoft DHCP Server does, and calls its hooks safely.
//!
//! What this crate is for:
//! - [`load_callout`]: the loading procedure of docs/hooks.md section 2:
//!   `CalloutEnabled`, alphabetical (or listed) order, `ChainDlls` as a UTF-16 multi-sz,
//!   `CalloutVersion` 0, fallback to the next DLL, and a [`LoadReport`] of every attempt (Windows
//!   events 1033/1034).
//! - [`Callout`]: one safe method per hook (docs/hooks.md section 4), `Send + Sync`, called
//!   concurrently from worker threads: guarded ≥ 4096-byte per-thread buffers, swapped-buffer
//!   copy-out, fault reports ([`HookFault`]), `DHCP_SERVER_OPTIONS` built from the packet, timing,
//!   the lock annotation ([`HeldLocks`]) with misbehaviour reports (a slow hook, stricter under a
//!   lock), the JSON Lines trace ([`TraceSink`], schema in [`trace`]) and per-hook statistics
//!   ([`HookStats`]).
//!
//! - [`Callout`] implements the hook seam (`calloutd_hooks::Hooks`), so the engine and the runtime
//!   call it directly.
//!
//! What it is not for: the DHCP state machine (the engine decides when each hook runs), and
//! protecting the process from a DLL that crashes (a callout runs in-process, as on Windows).
//!
//! ```no_run
//! use calloutd_callout::{load_callout, CalloutConfig, HeldLocks, LoadOrder};
//! use std::net::Ipv4Addr;
//!
//! let config = CalloutConfig {
//!     dlls: vec!["/opt/callouts/trace.so".into()],
//!     enabled: Some(1),
//!     base_dir: None,
//!     order: LoadOrder::Alphabetical,
//!     strict_permissions: false,
//! };
//! let loaded = load_callout(&config);
//! println!("{}", loaded.report.summary());
//! if let Some(callout) = loaded.callout {
//!     let mut packet = vec![0u8; 300];
//!     let mut ctx = 0usize;
//!     let process = callout
//!         .new_pkt(&mut packet, Ipv4Addr::new(192, 168, 0, 1), &mut ctx, HeldLocks::None)
//!         .unwrap_or(false);
//!     println!("process it: {process}");
//! }
//! ```
#![warn(missing_docs)]

mod buffer;
mod callout;
mod cpu_wait;
pub mod isolate;
mod load;
mod misbehaviour;
mod options;
mod seam;
#[cfg(windows)]
mod seh;
pub mod trace;
pub mod trust;

pub use buffer::{GuardZone, MIN_BUFFER};
pub use callout::{Callout, DEFAULT_SLOW_THRESHOLD, DEFAULT_SLOW_UNLOCKED_THRESHOLD};
pub use dhcpssdk::{ClientType, ControlCode, DropReason, GiveCode, ProbCode};
pub use load::{
    load_callout, AttemptOutcome, CalloutConfig, LoadAttempt, LoadOrder, LoadReport, LoadResult,
    LoadStatus, LoadedDll,
};
pub use misbehaviour::{Misbehaviour, MisbehaviourKind, MisbehaviourLog, MisbehaviourSummary};
pub use options::{OptionSpans, Span};
pub use trace::{trace_epoch, HookStat, HookStats, TraceRecord, TraceSink};
pub use trust::{DllTrust, PermissionWarning};

use serde::{Deserialize, Serialize};

/// The eight hooks of a `DHCP_CALLOUT_TABLE`. Serialized as the trace name (`NewPkt`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum HookName {
    /// `DhcpControlHook`
    Control,
    /// `DhcpNewPktHook`
    NewPkt,
    /// `DhcpPktDropHook`
    PktDrop,
    /// `DhcpPktSendHook`
    PktSend,
    /// `DhcpAddressDelHook`
    AddressDel,
    /// `DhcpAddressOfferHook`
    AddressOffer,
    /// `DhcpHandleOptionsHook`
    HandleOptions,
    /// `DhcpDeleteClientHook`
    DeleteClient,
}

impl HookName {
    /// All hooks in callout-table slot order.
    pub const ALL: [HookName; 8] = [
        HookName::Control,
        HookName::NewPkt,
        HookName::PktDrop,
        HookName::PktSend,
        HookName::AddressDel,
        HookName::AddressOffer,
        HookName::HandleOptions,
        HookName::DeleteClient,
    ];

    /// The name used in the trace and stats (`NewPkt`).
    pub const fn trace_name(self) -> &'static str {
        match self {
            HookName::Control => "Control",
            HookName::NewPkt => "NewPkt",
            HookName::PktDrop => "PktDrop",
            HookName::PktSend => "PktSend",
            HookName::AddressDel => "AddressDel",
            HookName::AddressOffer => "AddressOffer",
            HookName::HandleOptions => "HandleOptions",
            HookName::DeleteClient => "DeleteClient",
        }
    }

    /// The `DHCP_CALLOUT_TABLE` field name (`DhcpNewPktHook`).
    pub const fn table_slot(self) -> &'static str {
        match self {
            HookName::Control => "DhcpControlHook",
            HookName::NewPkt => "DhcpNewPktHook",
            HookName::PktDrop => "DhcpPktDropHook",
            HookName::PktSend => "DhcpPktSendHook",
            HookName::AddressDel => "DhcpAddressDelHook",
            HookName::AddressOffer => "DhcpAddressOfferHook",
            HookName::HandleOptions => "DhcpHandleOptionsHook",
            HookName::DeleteClient => "DhcpDeleteClientHook",
        }
    }

    /// Position in [`HookName::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for HookName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.trace_name())
    }
}

/// The server locks held while a hook runs (the emulated lock model of docs/hooks.md section 5:
/// AddressOffer, AddressDel and DeleteClient under the lease lock, Control under the service state
/// lock, the packet hooks under none). Recorded in the trace and used for the slow-hook warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HeldLocks {
    /// No server lock.
    #[default]
    None,
    /// The lease database lock.
    Lease,
    /// The service state lock.
    Service,
}

impl HeldLocks {
    /// The lock names as written in the trace (`[]`, `["lease"]`, `["service"]`).
    pub const fn names(self) -> &'static [&'static str] {
        match self {
            HeldLocks::None => &[],
            HeldLocks::Lease => &["lease"],
            HeldLocks::Service => &["service"],
        }
    }

    /// Whether any lock is held.
    pub const fn any(self) -> bool {
        !matches!(self, HeldLocks::None)
    }
}

impl Serialize for HeldLocks {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for HeldLocks {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(deserializer)?;
        match names
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            [] => Ok(HeldLocks::None),
            ["lease"] => Ok(HeldLocks::Lease),
            ["service"] => Ok(HeldLocks::Service),
            other => Err(serde::de::Error::custom(format!(
                "unknown lock set {other:?}"
            ))),
        }
    }
}

/// A DLL fault observed during a hook call. For NewPkt the engine drops the packet with
/// `DHCP_DROP_INVALID`; for PktSend it sends nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookFault {
    /// `*PacketSize` grew beyond the capacity of calloutd's buffer (the pointer was not swapped).
    #[error(
        "{hook}: the callout set PacketSize to {size}, larger than the {capacity}-byte buffer"
    )]
    SizeAboveCapacity {
        /// The hook.
        hook: HookName,
        /// The size it reported.
        size: u32,
        /// The buffer's capacity.
        capacity: usize,
    },
    /// A guard zone around calloutd's buffer was overwritten.
    #[error("{hook}: the callout wrote past the buffer ({zone:?} guard zone damaged)")]
    WrotePastBuffer {
        /// The hook.
        hook: HookName,
        /// Which end.
        zone: GuardZone,
    },
    /// The callout swapped in a NULL buffer with a non-zero size.
    #[error("{hook}: the callout swapped in a NULL buffer with PacketSize {size}")]
    NullBuffer {
        /// The hook.
        hook: HookName,
        /// The size it reported.
        size: u32,
    },
    /// The callout swapped in a buffer larger than any UDP payload.
    #[error(
        "{hook}: the callout swapped in a buffer of {size} bytes, more than a UDP payload can hold"
    )]
    SwappedTooLarge {
        /// The hook.
        hook: HookName,
        /// The size it reported.
        size: u32,
    },
    /// The hook raised an exception it did not handle (Windows; event 1031): the call was ended,
    /// the server and the callout carry on.
    #[error(
        "{hook}: the callout raised exception 0x{code:08X} at 0x{address:x} (event 1031: the \
         server has ignored this exception)"
    )]
    Exception {
        /// The hook.
        hook: HookName,
        /// The exception code (0xC0000005: access violation).
        code: u32,
        /// Where it was raised.
        address: usize,
    },
    /// A fault of the isolated callout host (`--isolate`): a crash or a hang in the hook, a call
    /// not delivered because the host that saw the packet died, or a fault the host detected and
    /// described (then `message` is its text, so traces read the same in both modes).
    #[error("{message}")]
    Host {
        /// The hook.
        hook: HookName,
        /// What happened, starting with the hook's name.
        message: String,
    },
    /// The packet handed to the hook is larger than a DWORD can describe.
    #[error("{hook}: packet of {len} bytes is too large to pass to the callout")]
    PacketTooLarge {
        /// The hook.
        hook: HookName,
        /// The packet length.
        len: usize,
    },
}

impl HookFault {
    /// The hook in which the fault happened.
    pub fn hook(&self) -> HookName {
        match self {
            HookFault::SizeAboveCapacity { hook, .. }
            | HookFault::WrotePastBuffer { hook, .. }
            | HookFault::NullBuffer { hook, .. }
            | HookFault::SwappedTooLarge { hook, .. }
            | HookFault::PacketTooLarge { hook, .. }
            | HookFault::Exception { hook, .. }
            | HookFault::Host { hook, .. } => *hook,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_names_follow_table_order_and_serialize_as_trace_names() {
        for (i, h) in HookName::ALL.iter().enumerate() {
            assert_eq!(h.index(), i);
        }
        assert_eq!(
            serde_json::to_string(&HookName::HandleOptions).unwrap(),
            "\"HandleOptions\""
        );
        assert_eq!(HookName::PktSend.table_slot(), "DhcpPktSendHook");
    }

    #[test]
    fn held_locks_round_trip_as_name_arrays() {
        for locks in [HeldLocks::None, HeldLocks::Lease, HeldLocks::Service] {
            let json = serde_json::to_string(&locks).unwrap();
            assert_eq!(serde_json::from_str::<HeldLocks>(&json).unwrap(), locks);
        }
        assert_eq!(
            serde_json::to_string(&HeldLocks::Lease).unwrap(),
            "[\"lease\"]"
        );
        assert!(serde_json::from_str::<HeldLocks>("[\"x\"]").is_err());
    }
}
