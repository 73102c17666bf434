//! The DHCP server model (Scope, ExclusionRange, Reservation, OptionDefinition, OptionValue, Class,
//! Filters, Policy) and the readers that fill it from Export-DhcpServer XML and `netsh dhcp server dump`.
//!
//! Not for: any I/O beyond reading its inputs, or DHCP protocol logic.

pub mod model;

pub use model::*;
