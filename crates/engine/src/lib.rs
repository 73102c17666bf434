//! The DHCP server logic without sockets: the packet pipeline in Microsoft's hook order, scope
//! selection, allocation, reservations, options by precedence, BOOTP, relays, conflict detection,
//! the lease store and the audit log.
//!
//! Not for: opening sockets (the runtime does that and hands datagrams in), or calling a DLL except
//! through the [`Hooks`] trait.

pub mod hooks;
pub mod io;

pub use hooks::{HookFault, Hooks, LeaseLockHeld, NoHooks, PktContext};
pub use io::{Admission, Datagram, Outcome, PacketHandler, Reply};
