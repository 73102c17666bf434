//! The DHCP server logic without sockets: the packet pipeline in Microsoft's hook order, scope
//! selection, allocation, reservations, options, BOOTP, relays, conflict detection and the lease store.
//!
//! Per datagram, [`Engine`] (the runtime's [`PacketHandler`]) runs, in Microsoft's order: NewPkt on the
//! raw bytes; parse (bad → PktDrop INVALID); scope pre-selection by giaddr or the receiving address;
//! HandleOptions; the runtime's admission verdict; the DHCP/BOOTP state machine, whose lease changes
//! call AddressOffer / AddressDel under the lease lock ([`LeaseLockHeld`]); the reply, after its lease
//! is committed to the [`LeaseStore`]; PktSend; PktDrop(reason) for a drop; and always
//! PktDrop(PROCESSED) last. Lease events also go to Microsoft's audit log ([`AuditLog`]) when
//! [`EngineOptions::audit`] has one, written after the lease lock is released. NewPkt, HandleOptions, PktSend and PktDrop run with no engine lock held,
//! and no lock is held across disk I/O or conflict-detection probes ([`Prober`]).
//!
//! Not for: opening sockets (the runtime does that and hands datagrams in), or calling a DLL except
//! through the [`Hooks`] trait.
//!
//! ```no_run
//! use std::sync::Arc;
//! use calloutd_engine::{Engine, EngineOptions, NoHooks, NoProber, SqliteLeaseStore};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = calloutd_config::ServerConfig::default();
//! let store = SqliteLeaseStore::open("/var/lib/calloutd/leases.db")?;
//! let engine = Engine::new(config, EngineOptions::default(), Arc::new(NoHooks),
//!                          Box::new(store), Arc::new(NoProber))?;
//! // The runtime calls `PacketHandler::handle(&engine, datagram, admission)` from its workers.
//! # let _ = engine; Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod clock;
mod engine;
pub mod hooks;
pub mod import;
pub mod io;
mod packet;
mod scopes;
pub mod store;
mod table;
mod ticker;

#[cfg(test)]
mod tests;

pub use audit::{
    disk_free_bytes, parse_audit_line, parse_audit_log, AuditError, AuditEvent, AuditEventId,
    AuditLimits, AuditLog, AuditOptions, AuditParseError, AuditRecord, AuditZone,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use engine::{
    BackupSchedule, DeleteClientOn, Engine, EngineError, EngineOptions, EngineStats,
    LeaseLockProbe, NoProber, Prober, DEFAULT_EXPIRED_GRACE,
};
pub use hooks::{HookFault, Hooks, LeaseLockHeld, NoHooks, PktContext};
pub use import::ImportReport;
pub use io::{Admission, CommitError, Datagram, Outcome, PacketHandler, Reply};
pub use store::{
    BackupReport, CommitTicket, Lease, LeaseRow, LeaseSink, LeaseStore, MemoryLeaseStore,
    SqliteLeaseStore, StoreError,
};
