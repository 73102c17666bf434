//! Raw records: what a reader found, with positions, before validation. Values whose meaning depends on
//! an option definition (option values, defaults) stay text here; validation types them.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::diag::Pos;
use crate::model::{
    Class, Filter, ImportedLease, OptionType, PolicyCondition, PolicyCriterion, ScopeState,
    ScopeType, ServerSettings,
};

/// A record and where it was found.
#[derive(Debug, Clone)]
pub(crate) struct At<T> {
    pub pos: Pos,
    pub item: T,
}

impl<T> At<T> {
    pub fn new(pos: Pos, item: T) -> Self {
        At { pos, item }
    }
}

#[derive(Debug, Default)]
pub(crate) struct RawConfig {
    pub settings: ServerSettings,
    pub classes: Vec<At<Class>>,
    pub definitions: Vec<At<RawDefinition>>,
    pub option_values: Vec<At<RawOptionValue>>,
    pub filters_allow: bool,
    pub filters_deny: bool,
    pub filters: Vec<At<Filter>>,
    pub policies: Vec<At<RawPolicy>>,
    pub scopes: Vec<At<RawScope>>,
}

#[derive(Debug, Clone)]
pub(crate) struct RawDefinition {
    /// Unchecked id (validation wants 1-254).
    pub option_id: i64,
    pub name: String,
    pub kind: OptionType,
    pub multi_valued: bool,
    pub vendor_class: Option<String>,
    pub description: String,
    pub default_value: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct RawOptionValue {
    pub option_id: i64,
    /// The type the source states (netsh does; XML does not).
    pub declared_type: Option<OptionType>,
    pub values: Vec<String>,
    pub vendor_class: Option<String>,
    pub user_class: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct RawRange {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
}

#[derive(Debug, Clone)]
pub(crate) struct RawPolicy {
    pub name: String,
    pub processing_order: u32,
    pub enabled: bool,
    pub condition: PolicyCondition,
    pub criteria: Vec<At<PolicyCriterion>>,
    pub ip_ranges: Vec<At<RawRange>>,
    pub option_values: Vec<At<RawOptionValue>>,
    pub lease_duration: Option<Option<Duration>>,
    pub description: String,
}

#[derive(Debug, Clone)]
pub(crate) struct RawReservation {
    pub name: String,
    pub ip_address: Ipv4Addr,
    pub client_id: Vec<u8>,
    pub kind: ScopeType,
    pub description: String,
    pub option_values: Vec<At<RawOptionValue>>,
}

#[derive(Debug, Clone)]
pub(crate) struct RawScope {
    pub scope_id: Ipv4Addr,
    pub subnet_mask: Ipv4Addr,
    pub name: String,
    pub description: String,
    /// The pool; `None` when the source never gave one (an error).
    pub range: Option<At<RawRange>>,
    /// `None` = not stated (netsh: taken from option 51); `Some(None)` = unlimited.
    pub lease_duration: Option<Option<Duration>>,
    pub lease_pos: Pos,
    pub state: ScopeState,
    pub kind: ScopeType,
    pub max_bootp_clients: Option<u32>,
    pub delay: Duration,
    pub superscope_name: Option<String>,
    pub activate_policies: bool,
    pub exclusions: Vec<At<RawRange>>,
    pub reservations: Vec<At<RawReservation>>,
    pub option_values: Vec<At<RawOptionValue>>,
    pub policies: Vec<At<RawPolicy>>,
    pub leases: Vec<At<ImportedLease>>,
}

impl RawScope {
    pub fn new(scope_id: Ipv4Addr, subnet_mask: Ipv4Addr) -> Self {
        RawScope {
            scope_id,
            subnet_mask,
            name: String::new(),
            description: String::new(),
            range: None,
            lease_duration: None,
            lease_pos: Pos::default(),
            state: ScopeState::Active,
            kind: ScopeType::Dhcp,
            max_bootp_clients: None,
            delay: Duration::ZERO,
            superscope_name: None,
            activate_policies: true,
            exclusions: Vec::new(),
            reservations: Vec::new(),
            option_values: Vec::new(),
            policies: Vec::new(),
            leases: Vec::new(),
        }
    }
}
