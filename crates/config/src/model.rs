//! The validated server model, named after Microsoft DHCP Server's concepts.
//!
//! Readers produce raw records with file positions; validation turns them into these types. The engine
//! only ever sees values of these types.

use std::net::Ipv4Addr;
use std::time::Duration;

/// The whole DHCPv4 configuration of one server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerConfig {
    /// Server-wide settings (conflict detection, audit log, database).
    pub settings: ServerSettings,
    /// User and vendor classes.
    pub classes: Vec<Class>,
    /// Option definitions from the file; the standard ones are built in (see [`crate::options`]).
    pub option_definitions: Vec<OptionDefinition>,
    /// Server-level option values.
    pub option_values: Vec<OptionValue>,
    /// Server-level MAC filters.
    pub filters: Filters,
    /// Server-level policies.
    pub policies: Vec<Policy>,
    /// The scopes, in file order.
    pub scopes: Vec<Scope>,
}

/// Server-wide settings that come with the scope configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerSettings {
    /// Ping attempts before an offer (0-5, 0 = off).
    pub conflict_detection_attempts: u8,
    /// Audit log settings, when the source states them (netsh `Set AuditLog`).
    pub audit_log: Option<AuditLogSettings>,
    /// `DatabaseCleanupInterval` in minutes, when the source states it.
    pub database_cleanup_interval_min: Option<u32>,
    /// `BackupInterval` in minutes, when the source states it.
    pub database_backup_interval_min: Option<u32>,
    /// Database file name, when the source states it.
    pub database_name: Option<String>,
    /// Database folder, when the source states it.
    pub database_path: Option<String>,
    /// Backup folder, when the source states it.
    pub database_backup_path: Option<String>,
}

/// The audit log settings of netsh `Set AuditLog`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditLogSettings {
    /// Log folder.
    pub path: String,
    /// Cap over all log files, MB.
    pub max_size_mb: u32,
    /// Minimum free disk space, MB.
    pub min_size_mb: u32,
    /// Disk check interval (number of log writes).
    pub interval: u32,
    /// Logging on or off.
    pub enabled: bool,
}

/// A user or vendor class (matched against option 77 or option 60).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    /// The class name, referenced by option values.
    pub name: String,
    /// User (option 77) or vendor (option 60).
    pub kind: ClassKind,
    /// The bytes the client sends.
    pub data: Vec<u8>,
    /// Free text.
    pub description: String,
}

/// Whether a class matches the user class (77) or the vendor class (60).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClassKind {
    /// Matched against option 77.
    User,
    /// Matched against option 60.
    Vendor,
}

/// The value type of an option definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OptionType {
    /// One byte.
    Byte,
    /// Two bytes, network order.
    Word,
    /// Four bytes, network order.
    DWord,
    /// Eight bytes, network order.
    DWordDWord,
    /// An IPv4 address.
    IPv4Address,
    /// An IPv6 address.
    IPv6Address,
    /// Text.
    String,
    /// Raw bytes.
    BinaryData,
    /// Raw bytes holding sub-options.
    EncapsulatedData,
}

/// An option definition: id, name, type and whether it holds an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionDefinition {
    /// Option code, 1-254.
    pub option_id: u8,
    /// Display name.
    pub name: String,
    /// Element type.
    pub kind: OptionType,
    /// True when the option holds several elements.
    pub multi_valued: bool,
    /// Vendor class for vendor-specific definitions; `None` = standard.
    pub vendor_class: Option<String>,
    /// Free text.
    pub description: String,
    /// Default elements, if any.
    pub default_value: Vec<OptionElement>,
}

/// One typed element of an option value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionElement {
    /// A byte.
    Byte(u8),
    /// A 16-bit word.
    Word(u16),
    /// A 32-bit word.
    DWord(u32),
    /// A 64-bit word.
    DWordDWord(u64),
    /// An IPv4 address.
    IPv4Address(Ipv4Addr),
    /// An IPv6 address.
    IPv6Address(std::net::Ipv6Addr),
    /// Text.
    String(String),
    /// Raw bytes.
    Binary(Vec<u8>),
    /// Raw bytes holding sub-options.
    Encapsulated(Vec<u8>),
}

/// An option value set at some level, optionally for a user and/or vendor class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionValue {
    /// Option code, 1-254.
    pub option_id: u8,
    /// The elements, in order.
    pub value: Vec<OptionElement>,
    /// Applies only to clients of this vendor class; `None` = standard options.
    pub vendor_class: Option<String>,
    /// Applies only to clients of this user class; `None` = the default user class.
    pub user_class: Option<String>,
}

/// A scope: one subnet with its pool, exclusions, reservations, options and policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The subnet address.
    pub scope_id: Ipv4Addr,
    /// The subnet mask.
    pub subnet_mask: Ipv4Addr,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// First address of the pool.
    pub start_range: Ipv4Addr,
    /// Last address of the pool (inclusive).
    pub end_range: Ipv4Addr,
    /// Lease duration; `None` = unlimited.
    pub lease_duration: Option<Duration>,
    /// Active scopes serve clients, inactive ones serve nobody.
    pub state: ScopeState,
    /// Which protocols the scope serves.
    pub kind: ScopeType,
    /// Cap on BOOTP clients (Bootp/Both scopes).
    pub max_bootp_clients: Option<u32>,
    /// Offer delay.
    pub delay: Duration,
    /// Superscope this scope belongs to, if any.
    pub superscope_name: Option<String>,
    /// Whether policies are evaluated for this scope.
    pub activate_policies: bool,
    /// Addresses never offered.
    pub exclusion_ranges: Vec<ExclusionRange>,
    /// Fixed addresses for known clients.
    pub reservations: Vec<Reservation>,
    /// Scope-level option values.
    pub option_values: Vec<OptionValue>,
    /// Scope-level policies.
    pub policies: Vec<Policy>,
    /// Leases imported from an export made with `-Leases`.
    pub leases: Vec<ImportedLease>,
}

impl Scope {
    /// An active DHCP scope `scope_id`/`subnet_mask` whose pool is `start_range`-`end_range`, and
    /// nothing else: no name, lease limit, delay, exclusions, reservations, options or policies.
    pub fn new(
        scope_id: Ipv4Addr,
        subnet_mask: Ipv4Addr,
        start_range: Ipv4Addr,
        end_range: Ipv4Addr,
    ) -> Scope {
        Scope {
            scope_id,
            subnet_mask,
            name: String::new(),
            description: String::new(),
            start_range,
            end_range,
            lease_duration: None,
            state: ScopeState::Active,
            kind: ScopeType::Dhcp,
            max_bootp_clients: None,
            delay: Duration::ZERO,
            superscope_name: None,
            activate_policies: false,
            exclusion_ranges: Vec::new(),
            reservations: Vec::new(),
            option_values: Vec::new(),
            policies: Vec::new(),
            leases: Vec::new(),
        }
    }
}

/// Whether a scope serves clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeState {
    /// Serves clients.
    Active,
    /// Serves nobody.
    Inactive,
}

/// Which protocols a scope (or reservation) serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeType {
    /// DHCP clients only.
    Dhcp,
    /// BOOTP clients only.
    Bootp,
    /// DHCP and BOOTP clients.
    Both,
}

/// An inclusive range of excluded addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExclusionRange {
    /// First excluded address.
    pub start_range: Ipv4Addr,
    /// Last excluded address (inclusive).
    pub end_range: Ipv4Addr,
}

/// A reservation: a fixed address for a client identified by its client id (or MAC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Display name.
    pub name: String,
    /// The reserved address.
    pub ip_address: Ipv4Addr,
    /// Client identifier bytes: a MAC address, or option 61's bytes.
    pub client_id: Vec<u8>,
    /// Which protocols may use it.
    pub kind: ScopeType,
    /// Free text.
    pub description: String,
    /// Reservation-level option values.
    pub option_values: Vec<OptionValue>,
}

/// MAC allow/deny filters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filters {
    /// The allow list is enforced: only listed clients are served.
    pub allow_enabled: bool,
    /// The deny list is enforced: listed clients are not served.
    pub deny_enabled: bool,
    /// The filter entries.
    pub filters: Vec<Filter>,
}

/// One filter entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Which list the entry is on.
    pub list: FilterList,
    /// The MAC pattern.
    pub mac: MacPattern,
    /// Free text.
    pub description: String,
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FilterList {
    /// The allow list.
    Allow,
    /// The deny list.
    Deny,
}

/// A MAC pattern such as `AA-BB-CC-DD-EE-FF` or `AA-BB-CC-*`: leading bytes, then an optional wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacPattern {
    /// The fixed leading bytes.
    pub prefix: Vec<u8>,
    /// True when the pattern ends in `*` (any remaining bytes).
    pub wildcard: bool,
}

/// A policy: conditions on the client, and what applies when they match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Display name.
    pub name: String,
    /// Lower numbers are evaluated first.
    pub processing_order: u32,
    /// Disabled policies never match.
    pub enabled: bool,
    /// How the criteria combine.
    pub condition: PolicyCondition,
    /// The criteria.
    pub criteria: Vec<PolicyCriterion>,
    /// Address ranges handed out to matching clients (scope policies).
    pub ip_ranges: Vec<ExclusionRange>,
    /// Option values for matching clients.
    pub option_values: Vec<OptionValue>,
    /// Lease duration for matching clients, when set.
    pub lease_duration: Option<Duration>,
    /// Free text.
    pub description: String,
}

/// How a policy's criteria combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyCondition {
    /// Every criterion must match.
    And,
    /// Any criterion may match.
    Or,
}

/// One policy criterion: a field of the client, an operator and values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyCriterion {
    /// What is compared.
    pub field: PolicyField,
    /// Equal (EQ) or not equal (NE).
    pub equal: bool,
    /// The values; a trailing `*` in a value is a prefix match.
    pub values: Vec<String>,
}

/// The client field a policy criterion looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyField {
    /// Vendor class (option 60), by class name.
    VendorClass,
    /// User class (option 77), by class name.
    UserClass,
    /// The MAC address (hex, wildcards allowed).
    MacAddress,
    /// The client identifier (option 61, hex).
    ClientId,
    /// Relay agent information (option 82, hex).
    RelayAgent,
    /// Option 82 circuit id (hex).
    CircuitId,
    /// Option 82 remote id (hex).
    RemoteId,
    /// Option 82 subscriber id (hex).
    SubscriberId,
    /// The client's FQDN (option 81).
    Fqdn,
}

impl PolicyField {
    /// Every field, in the order Export-DhcpServer lists them.
    pub(crate) const ALL: [PolicyField; 9] = [
        PolicyField::VendorClass,
        PolicyField::UserClass,
        PolicyField::MacAddress,
        PolicyField::ClientId,
        PolicyField::RelayAgent,
        PolicyField::CircuitId,
        PolicyField::RemoteId,
        PolicyField::SubscriberId,
        PolicyField::Fqdn,
    ];

    /// The criterion's element name in Export-DhcpServer XML.
    pub(crate) fn export_name(self) -> &'static str {
        match self {
            PolicyField::VendorClass => "VendorClass",
            PolicyField::UserClass => "UserClass",
            PolicyField::MacAddress => "MacAddress",
            PolicyField::ClientId => "ClientId",
            PolicyField::RelayAgent => "RelayAgent",
            PolicyField::CircuitId => "CircuitId",
            PolicyField::RemoteId => "RemoteId",
            PolicyField::SubscriberId => "SubscriberId",
            PolicyField::Fqdn => "Fqdn",
        }
    }
}

/// A lease carried in an export made with `Export-DhcpServer -Leases`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedLease {
    /// The leased address.
    pub ip_address: Ipv4Addr,
    /// The client identifier bytes.
    pub client_id: Vec<u8>,
    /// Host name, if known.
    pub host_name: Option<String>,
    /// Microsoft's AddressState text (e.g. `Active`).
    pub address_state: String,
    /// Expiry as the export wrote it (ISO 8601 text); `None` = no expiry.
    pub lease_expiry_time: Option<String>,
}
