//! The hook seam: the few types that the engine, the runtime and the callout share, so that none of
//! them depends on another's internals.
//!
//! - [`Hooks`]: one method per callout hook, as the engine calls them (docs/hooks.md). Implemented
//!   by the in-process and the isolated callout (`calloutd-callout`) and by [`NoHooks`].
//! - [`PacketHandler`] with [`Datagram`], [`Admission`], [`Outcome`], [`Reply`], [`CommitTicket`] and
//!   [`CommitError`]: what the runtime (`calloutd-server`) hands the engine and gets back, including
//!   the group-commit interface.
//! - [`Prober`] (conflict detection, implemented by the runtime) and [`ServiceEvents`] (service
//!   start/pause/continue/stop, implemented by the engine's audit log).
//!
//! Not for: logic. Every item here is a type or a trait.
//!
//! ```
//! use calloutd_hooks::{Hooks, NoHooks, PktContext};
//! use std::net::Ipv4Addr;
//!
//! let hooks: &dyn Hooks = &NoHooks;
//! let mut packet = vec![1u8; 300];
//! let mut ctx: PktContext = 0;
//! assert_eq!(hooks.new_pkt(&mut packet, Ipv4Addr::LOCALHOST, &mut ctx), Ok(true));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod hooks;
pub mod io;

pub use hooks::{
    ClientType, ControlCode, DropReason, GiveCode, HookFault, Hooks, LeaseLockHeld, NoHooks,
    PktContext, ProbCode,
};
pub use io::{
    Admission, CommitError, CommitTicket, Datagram, HeldReply, NoProber, Outcome, PacketHandler,
    Prober, Reply, ServiceEvents,
};
