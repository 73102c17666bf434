//! The DHCP server model (Scope, ExclusionRange, Reservation, OptionDefinition, OptionValue, Class,
//! Filters, Policy) and the readers that fill it from Export-DhcpServer XML and `netsh dhcp server dump`.
//!
//! Not for: any I/O beyond reading its inputs, or DHCP protocol logic.

#![warn(missing_docs)]

pub mod model;
pub mod options;
pub mod resolve;

pub use model::*;
pub use resolve::{
    effective_options, encode_elements, matching_policies, ClientFacts, EffectiveOption,
    EffectiveOptions, OptionLevel,
};
