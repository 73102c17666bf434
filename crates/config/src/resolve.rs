//! Option resolution as Microsoft DHCP Server does it, plus the small lookups the engine needs per
//! packet (scope membership, exclusions, reservations, MAC filters, policy matching).
//!
//! Precedence, most specific first: reservation > scope policy > scope > server policy > server. Within
//! one level a value set for the client's user class beats the default-class value. A class-specific value
//! applies only when the client sent that class's bytes.
//!
//! Vendor-class option values (`vendor_class: Some`) are not standard options: as Microsoft does, they are
//! resolved per sub-option id with the same precedence and sent together as option 43 (each as
//! sub-option `id, len, bytes`) to clients of that vendor class. When a client's option 60 matches several
//! vendor classes (`MSFT` and `MSFT 5.0` both match `MSFT 5.0`), the class with the longest data wins.
//! Sub-options from a vendor class replace any standard option 43 value for that client.
//!
//! Policies (server and scope level) apply only when the scope's `activate_policies` is set.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::model::{
    ClassKind, Filter, FilterList, Filters, MacPattern, OptionElement, OptionValue, Policy,
    PolicyCondition, PolicyCriterion, PolicyField, Reservation, Scope, ServerConfig,
};

/// What the engine knows about a client when resolving options (raw option bytes as received).
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientFacts<'a> {
    /// The hardware address: `chaddr[..hlen]`.
    pub mac: &'a [u8],
    /// Option 61 (client identifier).
    pub client_id: Option<&'a [u8]>,
    /// Option 77 (user class).
    pub user_class: Option<&'a [u8]>,
    /// Option 60 (vendor class identifier).
    pub vendor_class: Option<&'a [u8]>,
    /// Option 82 (relay agent information), sub-options included.
    pub relay_agent: Option<&'a [u8]>,
    /// The name part of option 81, or option 12.
    pub fqdn: Option<&'a [u8]>,
}

/// Where an effective option value came from, least specific first (so `Ord` ranks specificity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OptionLevel {
    /// Server-level option values.
    Server,
    /// A matching server-level policy.
    ServerPolicy,
    /// Scope-level option values.
    Scope,
    /// A matching scope-level policy.
    ScopePolicy,
    /// The client's reservation.
    Reservation,
}

/// One option as it will be sent to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveOption {
    /// Option code.
    pub option_id: u8,
    /// The elements (for option 43 built from vendor options: one `Encapsulated` element).
    pub value: Vec<OptionElement>,
    /// The level the value came from.
    pub level: OptionLevel,
    /// The user class (standard options) or vendor class (option 43 from vendor options) that selected
    /// it; `None` = the default class.
    pub class: Option<String>,
}

/// The effective option set for one client, keyed by option id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EffectiveOptions {
    by_id: BTreeMap<u8, EffectiveOption>,
}

impl EffectiveOptions {
    /// The effective option `option_id`, if any level sets it for this client.
    pub fn get(&self, option_id: u8) -> Option<&EffectiveOption> {
        self.by_id.get(&option_id)
    }

    /// All effective options, ascending option id.
    pub fn iter(&self) -> impl Iterator<Item = &EffectiveOption> {
        self.by_id.values()
    }

    /// Wire bytes of option `option_id`'s value (no code/length prefix).
    pub fn encoded(&self, option_id: u8) -> Option<Vec<u8>> {
        self.by_id
            .get(&option_id)
            .map(|o| encode_elements(&o.value))
    }

    /// Number of effective options.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when no option applies.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// Encodes option elements as DHCP wire bytes: integers in network order, strings as their bytes.
pub fn encode_elements(elements: &[OptionElement]) -> Vec<u8> {
    let mut out = Vec::new();
    for element in elements {
        match element {
            OptionElement::Byte(b) => out.push(*b),
            OptionElement::Word(w) => out.extend_from_slice(&w.to_be_bytes()),
            OptionElement::DWord(d) => out.extend_from_slice(&d.to_be_bytes()),
            OptionElement::DWordDWord(q) => out.extend_from_slice(&q.to_be_bytes()),
            OptionElement::IPv4Address(a) => out.extend_from_slice(&a.octets()),
            OptionElement::IPv6Address(a) => out.extend_from_slice(&a.octets()),
            OptionElement::String(s) => out.extend_from_slice(s.as_bytes()),
            OptionElement::Binary(b) | OptionElement::Encapsulated(b) => out.extend_from_slice(b),
        }
    }
    out
}

/// The client's class memberships, worked out once per resolution.
struct ClientClasses<'c> {
    /// Names of the user classes whose data the client sent in option 77.
    user: Vec<&'c str>,
    /// The vendor class whose data is the longest prefix of the client's option 60.
    vendor: Option<&'c str>,
}

impl<'c> ClientClasses<'c> {
    fn of(config: &'c ServerConfig, client: &ClientFacts<'_>) -> Self {
        let mut user: Vec<&'c str> = Vec::new();
        let mut vendor: Option<(usize, &'c str)> = None;
        // File classes first so a file class shadows a built-in one of the same name.
        let file = config.classes.iter().map(
            |c: &'c crate::model::Class| -> (&'c str, ClassKind, &'c [u8]) {
                (c.name.as_str(), c.kind, c.data.as_slice())
            },
        );
        let builtin = crate::options::builtin_class_refs()
            .map(|(n, k, d)| -> (&'c str, ClassKind, &'c [u8]) { (n, k, d) });
        for (name, kind, data) in file.chain(builtin) {
            match kind {
                ClassKind::User => {
                    if let Some(sent) = client.user_class {
                        if user_class_matches(sent, data)
                            && !user.iter().any(|n| n.eq_ignore_ascii_case(name))
                        {
                            user.push(name);
                        }
                    }
                }
                ClassKind::Vendor => {
                    if let Some(sent) = client.vendor_class {
                        let longer = vendor.is_none_or(|(len, _)| data.len() > len);
                        if vendor_class_matches(sent, data) && longer {
                            vendor = Some((data.len(), name));
                        }
                    }
                }
            }
        }
        ClientClasses {
            user,
            vendor: vendor.map(|(_, name)| name),
        }
    }

    fn has_user(&self, name: &str) -> bool {
        self.user.iter().any(|n| n.eq_ignore_ascii_case(name))
    }
}

/// Option 77 as Windows clients send it (the raw class bytes) or as RFC 3004 defines it (a list of
/// length-prefixed classes): either form matches.
fn user_class_matches(sent: &[u8], data: &[u8]) -> bool {
    if data.is_empty() {
        return false;
    }
    if sent == data {
        return true;
    }
    let mut rest = sent;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len);
        if len == 0 || len > tail.len() {
            return false;
        }
        let (item, next) = tail.split_at(len);
        if item == data {
            return true;
        }
        rest = next;
    }
    false
}

/// Vendor classes match by prefix (`PXEClient` matches `PXEClient:Arch:00007:...`), as Windows does.
fn vendor_class_matches(sent: &[u8], data: &[u8]) -> bool {
    !data.is_empty() && sent.starts_with(data)
}

/// The policies that apply to one client in one scope: the matching scope policies, then the matching
/// server policies, each by processing order. Empty when the scope's `activate_policies` is off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyMatch<'c> {
    /// Matching enabled scope-level policies, lowest processing order first.
    pub scope: Vec<&'c Policy>,
    /// Matching enabled server-level policies, lowest processing order first.
    pub server: Vec<&'c Policy>,
}

impl<'c> PolicyMatch<'c> {
    /// The policies `client` matches in `scope` (Microsoft evaluates both levels; scope policies
    /// are more specific). Nothing when the scope has policies turned off.
    pub fn of(config: &'c ServerConfig, scope: &'c Scope, client: &ClientFacts<'_>) -> Self {
        if !scope.activate_policies {
            return PolicyMatch::default();
        }
        PolicyMatch {
            scope: matching_policies(&scope.policies, config, client),
            server: matching_policies(&config.policies, config, client),
        }
    }

    /// True when no policy applies.
    pub fn is_empty(&self) -> bool {
        self.scope.is_empty() && self.server.is_empty()
    }

    /// The lease duration the policies set: the first scope policy with one, else the first server
    /// policy with one.
    pub fn lease_duration(&self) -> Option<std::time::Duration> {
        self.scope
            .iter()
            .chain(&self.server)
            .find_map(|p| p.lease_duration)
    }

    /// The scope policies with IP ranges, by processing order: where the client's address comes from.
    pub fn range_policies(&self) -> impl Iterator<Item = &'c Policy> + '_ {
        self.scope
            .iter()
            .copied()
            .filter(|p| !p.ip_ranges.is_empty())
    }
}

/// The option sources for one client, most specific first.
fn sources<'c>(
    config: &'c ServerConfig,
    scope: &'c Scope,
    reservation: Option<&'c Reservation>,
    policies: &PolicyMatch<'c>,
) -> Vec<(OptionLevel, &'c [OptionValue])> {
    let mut out: Vec<(OptionLevel, &'c [OptionValue])> = Vec::new();
    if let Some(r) = reservation {
        out.push((OptionLevel::Reservation, &r.option_values));
    }
    for p in &policies.scope {
        out.push((OptionLevel::ScopePolicy, &p.option_values));
    }
    out.push((OptionLevel::Scope, &scope.option_values));
    for p in &policies.server {
        out.push((OptionLevel::ServerPolicy, &p.option_values));
    }
    out.push((OptionLevel::Server, &config.option_values));
    out
}

/// Within one source: the value for option `id` the client gets (its user class first, then default).
fn pick_in_source<'v>(
    values: &'v [OptionValue],
    classes: &ClientClasses<'_>,
    vendor: Option<&str>,
) -> BTreeMap<u8, &'v OptionValue> {
    let mut best: BTreeMap<u8, &'v OptionValue> = BTreeMap::new();
    for v in values {
        if !crate::text::same_class_name(v.vendor_class.as_deref(), vendor) {
            continue;
        }
        let class_specific = match &v.user_class {
            None => false,
            Some(name) if classes.has_user(name) => true,
            Some(_) => continue,
        };
        match best.get(&v.option_id) {
            // A default-class value never displaces a class value; the first of equals stays.
            Some(prev) if prev.user_class.is_some() || !class_specific => {}
            _ => {
                best.insert(v.option_id, v);
            }
        }
    }
    best
}

/// The options a client gets in `scope` (and its `reservation`, if any), by Microsoft's precedence.
pub fn effective_options(
    config: &ServerConfig,
    scope: &Scope,
    reservation: Option<&Reservation>,
    client: &ClientFacts<'_>,
) -> EffectiveOptions {
    let policies = PolicyMatch::of(config, scope, client);
    effective_options_with(config, scope, reservation, client, &policies)
}

/// [`effective_options`] with the policies decided by the caller (e.g. the policy a lease was
/// granted under, kept for its renewals).
pub fn effective_options_with<'c>(
    config: &'c ServerConfig,
    scope: &'c Scope,
    reservation: Option<&'c Reservation>,
    client: &ClientFacts<'_>,
    policies: &PolicyMatch<'c>,
) -> EffectiveOptions {
    let classes = ClientClasses::of(config, client);
    let sources = sources(config, scope, reservation, policies);
    let mut by_id: BTreeMap<u8, EffectiveOption> = BTreeMap::new();
    for (level, values) in &sources {
        for (id, v) in pick_in_source(values, &classes, None) {
            by_id.entry(id).or_insert_with(|| EffectiveOption {
                option_id: id,
                value: v.value.clone(),
                level: *level,
                class: v.user_class.clone(),
            });
        }
    }
    if let Some(vendor) = classes.vendor {
        let mut subs: BTreeMap<u8, (OptionLevel, Vec<u8>)> = BTreeMap::new();
        for (level, values) in &sources {
            for (id, v) in pick_in_source(values, &classes, Some(vendor)) {
                subs.entry(id)
                    .or_insert_with(|| (*level, encode_elements(&v.value)));
            }
        }
        let mut payload = Vec::new();
        let mut top = OptionLevel::Server;
        for (id, (level, bytes)) in &subs {
            // A sub-option length is one byte; validation rejects longer vendor values.
            let Ok(len) = u8::try_from(bytes.len()) else {
                continue;
            };
            payload.push(*id);
            payload.push(len);
            payload.extend_from_slice(bytes);
            top = top.max(*level);
        }
        if !payload.is_empty() {
            by_id.insert(
                43,
                EffectiveOption {
                    option_id: 43,
                    value: vec![OptionElement::Encapsulated(payload)],
                    level: top,
                    class: Some(vendor.to_string()),
                },
            );
        }
    }
    EffectiveOptions { by_id }
}

/// The enabled policies among `policies` whose conditions the client meets, by processing order.
pub fn matching_policies<'c>(
    policies: &'c [Policy],
    config: &ServerConfig,
    client: &ClientFacts<'_>,
) -> Vec<&'c Policy> {
    let mut out: Vec<&'c Policy> = policies
        .iter()
        .filter(|p| p.enabled && policy_matches(p, config, client))
        .collect();
    out.sort_by_key(|p| p.processing_order);
    out
}

fn policy_matches(policy: &Policy, config: &ServerConfig, client: &ClientFacts<'_>) -> bool {
    if policy.criteria.is_empty() {
        return false;
    }
    let mut results = policy
        .criteria
        .iter()
        .map(|c| criterion_matches(c, config, client));
    match policy.condition {
        PolicyCondition::And => results.all(|m| m),
        PolicyCondition::Or => results.any(|m| m),
    }
}

fn criterion_matches(c: &PolicyCriterion, config: &ServerConfig, client: &ClientFacts<'_>) -> bool {
    let any = c
        .values
        .iter()
        .any(|v| value_matches(c.field, v, config, client));
    if c.equal {
        any
    } else {
        !any
    }
}

/// Splits a trailing `*` (prefix match) off a criterion value.
fn split_wildcard(value: &str) -> (&str, bool) {
    let v = value.trim();
    match v.strip_suffix('*') {
        Some(head) => (head, true),
        None => (v, false),
    }
}

/// Hex text (`00-15-5D-...`, `00:15:...`, `0x0015...`, `00155d...`) to bytes; `None` if not hex.
fn parse_hex_loose(text: &str) -> Option<Vec<u8>> {
    let t = crate::text::strip_hex_prefix(text);
    let digits: Vec<u8> = t
        .bytes()
        .filter(|b| !matches!(b, b'-' | b':' | b' ' | b'.'))
        .collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

fn bytes_match(pattern: &str, sent: Option<&[u8]>) -> bool {
    let Some(sent) = sent else { return false };
    let (head, prefix) = split_wildcard(pattern);
    let Some(want) = parse_hex_loose(head) else {
        return false;
    };
    prefix_or_exact(sent, &want, prefix)
}

/// `sent` starts with `want` (a `*` pattern) or, without `prefix`, equals it.
fn prefix_or_exact(sent: &[u8], want: &[u8], prefix: bool) -> bool {
    if prefix {
        sent.starts_with(want)
    } else {
        sent == want
    }
}

/// Sub-option `code` of option 82, if present and well formed.
fn relay_sub_option(relay: Option<&[u8]>, code: u8) -> Option<&[u8]> {
    let mut rest = relay?;
    while let Some((&c, tail)) = rest.split_first() {
        let (&len, tail) = tail.split_first()?;
        let len = usize::from(len);
        if len > tail.len() {
            return None;
        }
        let (data, next) = tail.split_at(len);
        if c == code {
            return Some(data);
        }
        rest = next;
    }
    None
}

fn fqdn_matches(pattern: &str, sent: Option<&[u8]>) -> bool {
    let Some(sent) = sent else { return false };
    let name = String::from_utf8_lossy(sent)
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let p = pattern.trim().trim_end_matches('.').to_ascii_lowercase();
    if let Some(suffix) = p.strip_prefix('*') {
        name.ends_with(suffix)
    } else if let Some(prefix) = p.strip_suffix('*') {
        name.starts_with(prefix)
    } else {
        name == p
    }
}

fn class_value_matches(
    kind: ClassKind,
    pattern: &str,
    config: &ServerConfig,
    sent: Option<&[u8]>,
) -> bool {
    let Some(sent) = sent else { return false };
    let (name, prefix) = split_wildcard(pattern);
    let Some(class) = config.find_class(name) else {
        return false;
    };
    if class.kind != kind {
        return false;
    }
    match kind {
        ClassKind::Vendor => vendor_class_matches(sent, &class.data),
        ClassKind::User if prefix => !class.data.is_empty() && sent.starts_with(&class.data),
        ClassKind::User => user_class_matches(sent, &class.data),
    }
}

fn value_matches(
    field: PolicyField,
    value: &str,
    config: &ServerConfig,
    client: &ClientFacts<'_>,
) -> bool {
    match field {
        PolicyField::VendorClass => {
            class_value_matches(ClassKind::Vendor, value, config, client.vendor_class)
        }
        PolicyField::UserClass => {
            class_value_matches(ClassKind::User, value, config, client.user_class)
        }
        PolicyField::MacAddress => bytes_match(value, Some(client.mac)),
        PolicyField::ClientId => bytes_match(value, client.client_id),
        PolicyField::RelayAgent => bytes_match(value, client.relay_agent),
        PolicyField::CircuitId => bytes_match(value, relay_sub_option(client.relay_agent, 1)),
        PolicyField::RemoteId => bytes_match(value, relay_sub_option(client.relay_agent, 2)),
        PolicyField::SubscriberId => bytes_match(value, relay_sub_option(client.relay_agent, 6)),
        PolicyField::Fqdn => fqdn_matches(value, client.fqdn),
    }
}

impl MacPattern {
    /// True when `mac` starts with the prefix and, without a wildcard, has exactly its length.
    pub fn matches(&self, mac: &[u8]) -> bool {
        prefix_or_exact(mac, &self.prefix, self.wildcard)
    }
}

impl Filters {
    /// Whether a client with this MAC may be served: the deny list wins when enabled; the allow list is
    /// enforced only when enabled.
    pub fn allows(&self, mac: &[u8]) -> bool {
        let listed = |list: FilterList| {
            self.filters
                .iter()
                .any(|f: &Filter| f.list == list && f.mac.matches(mac))
        };
        if self.deny_enabled && listed(FilterList::Deny) {
            return false;
        }
        if self.allow_enabled {
            return listed(FilterList::Allow);
        }
        true
    }
}

impl Scope {
    /// True when `ip` is in this scope's subnet (`ip & mask == scope_id & mask`).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::from(self.subnet_mask);
        u32::from(ip) & mask == u32::from(self.scope_id) & mask
    }

    /// True when `ip` falls in one of the scope's exclusion ranges.
    pub fn is_excluded(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        self.exclusion_ranges
            .iter()
            .any(|r| u32::from(r.start_range) <= ip && ip <= u32::from(r.end_range))
    }

    /// The reservation for a client: its client id (option 61) matches the reservation's bytes, either
    /// whole or after the leading hardware-type byte (Windows clients send `01` + MAC), or its MAC does.
    pub fn reservation_for(&self, client_id: Option<&[u8]>, mac: &[u8]) -> Option<&Reservation> {
        let by_id = client_id.and_then(|id| {
            self.reservations.iter().find(|r| {
                !r.client_id.is_empty()
                    && (id == r.client_id.as_slice()
                        || id
                            .split_first()
                            .is_some_and(|(_, rest)| rest == r.client_id.as_slice()))
            })
        });
        by_id
            .or_else(|| {
                self.reservations
                    .iter()
                    .find(|r| !mac.is_empty() && r.client_id.as_slice() == mac)
            })
            .or_else(|| {
                // A UID written as hardware type + MAC ("01" + MAC for Ethernet), as Windows shows
                // it: the client's identity when it sends no option 61.
                self.reservations.iter().find(|r| {
                    !mac.is_empty()
                        && r.client_id.len() == mac.len() + 1
                        && r.client_id[1..] == *mac
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;
    use std::time::Duration;

    fn ov(id: u8, v: Vec<OptionElement>, user: Option<&str>, vendor: Option<&str>) -> OptionValue {
        OptionValue {
            option_id: id,
            value: v,
            vendor_class: vendor.map(str::to_string),
            user_class: user.map(str::to_string),
        }
    }

    fn ip(s: &str) -> OptionElement {
        OptionElement::IPv4Address(s.parse().unwrap())
    }

    fn policy(name: &str, order: u32, mac_prefix: &str, values: Vec<OptionValue>) -> Policy {
        Policy {
            name: name.into(),
            processing_order: order,
            enabled: true,
            condition: PolicyCondition::Or,
            criteria: vec![PolicyCriterion {
                field: PolicyField::MacAddress,
                equal: true,
                values: vec![format!("{mac_prefix}*")],
            }],
            ip_ranges: vec![],
            option_values: values,
            lease_duration: None,
            description: String::new(),
        }
    }

    fn scope() -> Scope {
        Scope {
            scope_id: "198.18.0.0".parse().unwrap(),
            subnet_mask: "255.255.255.0".parse().unwrap(),
            name: "lab".into(),
            description: String::new(),
            start_range: "198.18.0.10".parse().unwrap(),
            end_range: "198.18.0.200".parse().unwrap(),
            lease_duration: Some(Duration::from_secs(3600)),
            state: ScopeState::Active,
            kind: ScopeType::Dhcp,
            max_bootp_clients: None,
            delay: Duration::ZERO,
            superscope_name: None,
            activate_policies: true,
            exclusion_ranges: vec![ExclusionRange {
                start_range: "198.18.0.10".parse().unwrap(),
                end_range: "198.18.0.19".parse().unwrap(),
            }],
            reservations: vec![Reservation {
                name: "printer".into(),
                ip_address: "198.18.0.50".parse().unwrap(),
                client_id: vec![0, 0x15, 0x5d, 1, 2, 3],
                kind: ScopeType::Both,
                description: String::new(),
                option_values: vec![ov(3, vec![ip("198.18.0.5")], None, None)],
            }],
            option_values: vec![
                ov(3, vec![ip("198.18.0.1")], None, None),
                ov(3, vec![ip("198.18.0.2")], Some("Lab Users"), None),
                ov(
                    15,
                    vec![OptionElement::String("scope.lab".into())],
                    None,
                    None,
                ),
                ov(
                    1,
                    vec![OptionElement::DWord(0)],
                    None,
                    Some("Microsoft Windows 2000 Options"),
                ),
            ],
            policies: vec![
                policy(
                    "late",
                    2,
                    "AA",
                    vec![ov(
                        15,
                        vec![OptionElement::String("late".into())],
                        None,
                        None,
                    )],
                ),
                policy(
                    "early",
                    1,
                    "AA-BB",
                    vec![ov(
                        15,
                        vec![OptionElement::String("early".into())],
                        None,
                        None,
                    )],
                ),
            ],
            leases: vec![],
        }
    }

    fn config() -> ServerConfig {
        ServerConfig {
            classes: vec![
                Class {
                    name: "Lab Users".into(),
                    kind: ClassKind::User,
                    data: b"lab".to_vec(),
                    description: String::new(),
                },
                Class {
                    name: "PXE".into(),
                    kind: ClassKind::Vendor,
                    data: b"PXEClient".to_vec(),
                    description: String::new(),
                },
            ],
            option_values: vec![
                ov(6, vec![ip("198.18.0.53"), ip("198.18.1.53")], None, None),
                ov(
                    15,
                    vec![OptionElement::String("server.lab".into())],
                    None,
                    None,
                ),
                ov(6, vec![ip("198.18.9.9")], Some("Lab Users"), None),
                ov(
                    2,
                    vec![OptionElement::DWord(1)],
                    None,
                    Some("Microsoft Options"),
                ),
                ov(
                    1,
                    vec![OptionElement::DWord(2)],
                    None,
                    Some("Microsoft Options"),
                ),
                ov(
                    66,
                    vec![OptionElement::String("tftp".into())],
                    None,
                    Some("PXE"),
                ),
            ],
            policies: vec![policy(
                "server-cc",
                1,
                "CC",
                vec![
                    ov(42, vec![ip("198.18.0.123")], None, None),
                    ov(
                        15,
                        vec![OptionElement::String("policy.server".into())],
                        None,
                        None,
                    ),
                ],
            )],
            ..ServerConfig::default()
        }
    }

    fn sub_options(pairs: &[(u8, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (id, bytes) in pairs {
            out.push(*id);
            out.push(bytes.len() as u8);
            out.extend_from_slice(bytes);
        }
        out
    }

    #[test]
    fn precedence_table() {
        let config = config();
        let scope = scope();
        let mac_plain = [0x00, 0x11, 0x22, 0x33, 0x44, 0x55];
        let mac_aabb = [0xaa, 0xbb, 0, 0, 0, 1];
        let mac_aa = [0xaa, 0x01, 0, 0, 0, 1];
        let mac_cc = [0xcc, 0x01, 0, 0, 0, 1];
        let res_mac = [0, 0x15, 0x5d, 1, 2, 3];
        struct Case<'a> {
            name: &'a str,
            facts: ClientFacts<'a>,
            reserved: bool,
            option: u8,
            want: Option<(Vec<u8>, OptionLevel, Option<&'a str>)>,
        }
        let plain = ClientFacts {
            mac: &mac_plain,
            ..Default::default()
        };
        let lab_user = ClientFacts {
            mac: &mac_plain,
            user_class: Some(b"lab"),
            ..Default::default()
        };
        let rfc3004_user = ClientFacts {
            mac: &mac_plain,
            user_class: Some(b"\x03lab"),
            ..Default::default()
        };
        let other_user = ClientFacts {
            mac: &mac_plain,
            user_class: Some(b"other"),
            ..Default::default()
        };
        let cases = vec![
            Case {
                name: "scope default beats server",
                facts: plain,
                reserved: false,
                option: 15,
                want: Some((b"scope.lab".to_vec(), OptionLevel::Scope, None)),
            },
            Case {
                name: "server only",
                facts: plain,
                reserved: false,
                option: 6,
                want: Some((
                    vec![198, 18, 0, 53, 198, 18, 1, 53],
                    OptionLevel::Server,
                    None,
                )),
            },
            Case {
                name: "server user class beats server default",
                facts: lab_user,
                reserved: false,
                option: 6,
                want: Some((vec![198, 18, 9, 9], OptionLevel::Server, Some("Lab Users"))),
            },
            Case {
                name: "RFC 3004 user class form matches",
                facts: rfc3004_user,
                reserved: false,
                option: 6,
                want: Some((vec![198, 18, 9, 9], OptionLevel::Server, Some("Lab Users"))),
            },
            Case {
                name: "unknown user class gets default",
                facts: other_user,
                reserved: false,
                option: 3,
                want: Some((vec![198, 18, 0, 1], OptionLevel::Scope, None)),
            },
            Case {
                name: "scope user class beats scope default",
                facts: lab_user,
                reserved: false,
                option: 3,
                want: Some((vec![198, 18, 0, 2], OptionLevel::Scope, Some("Lab Users"))),
            },
            Case {
                name: "reservation beats scope class value",
                facts: ClientFacts {
                    mac: &res_mac,
                    user_class: Some(b"lab"),
                    ..Default::default()
                },
                reserved: true,
                option: 3,
                want: Some((vec![198, 18, 0, 5], OptionLevel::Reservation, None)),
            },
            Case {
                name: "scope policy by processing order",
                facts: ClientFacts {
                    mac: &mac_aabb,
                    ..Default::default()
                },
                reserved: false,
                option: 15,
                want: Some((b"early".to_vec(), OptionLevel::ScopePolicy, None)),
            },
            Case {
                name: "only the second scope policy matches",
                facts: ClientFacts {
                    mac: &mac_aa,
                    ..Default::default()
                },
                reserved: false,
                option: 15,
                want: Some((b"late".to_vec(), OptionLevel::ScopePolicy, None)),
            },
            Case {
                name: "scope beats server policy",
                facts: ClientFacts {
                    mac: &mac_cc,
                    ..Default::default()
                },
                reserved: false,
                option: 15,
                want: Some((b"scope.lab".to_vec(), OptionLevel::Scope, None)),
            },
            Case {
                name: "server policy beats nothing",
                facts: ClientFacts {
                    mac: &mac_cc,
                    ..Default::default()
                },
                reserved: false,
                option: 42,
                want: Some((vec![198, 18, 0, 123], OptionLevel::ServerPolicy, None)),
            },
            Case {
                name: "no policy, no option 42",
                facts: plain,
                reserved: false,
                option: 42,
                want: None,
            },
            Case {
                name: "vendor options only for that vendor",
                facts: plain,
                reserved: false,
                option: 43,
                want: None,
            },
            Case {
                name: "MSFT 5.0 picks the longest vendor class",
                facts: ClientFacts {
                    mac: &mac_plain,
                    vendor_class: Some(b"MSFT 5.0"),
                    ..Default::default()
                },
                reserved: false,
                option: 43,
                want: Some((
                    sub_options(&[(1, &[0, 0, 0, 0])]),
                    OptionLevel::Scope,
                    Some("Microsoft Windows 2000 Options"),
                )),
            },
            Case {
                name: "MSFT gets Microsoft Options sub-options",
                facts: ClientFacts {
                    mac: &mac_plain,
                    vendor_class: Some(b"MSFT"),
                    ..Default::default()
                },
                reserved: false,
                option: 43,
                want: Some((
                    sub_options(&[(1, &[0, 0, 0, 2]), (2, &[0, 0, 0, 1])]),
                    OptionLevel::Server,
                    Some("Microsoft Options"),
                )),
            },
            Case {
                name: "PXE vendor prefix match",
                facts: ClientFacts {
                    mac: &mac_plain,
                    vendor_class: Some(b"PXEClient:Arch:00007"),
                    ..Default::default()
                },
                reserved: false,
                option: 43,
                want: Some((
                    sub_options(&[(66, b"tftp")]),
                    OptionLevel::Server,
                    Some("PXE"),
                )),
            },
            Case {
                name: "vendor values stay out of standard option 66",
                facts: ClientFacts {
                    mac: &mac_plain,
                    vendor_class: Some(b"PXEClient"),
                    ..Default::default()
                },
                reserved: false,
                option: 66,
                want: None,
            },
        ];
        for case in cases {
            let reservation = if case.reserved {
                scope.reservation_for(case.facts.client_id, case.facts.mac)
            } else {
                None
            };
            assert_eq!(reservation.is_some(), case.reserved, "{}", case.name);
            let eff = effective_options(&config, &scope, reservation, &case.facts);
            let got = eff
                .get(case.option)
                .map(|o| (encode_elements(&o.value), o.level, o.class.as_deref()));
            assert_eq!(got, case.want, "{}", case.name);
            if let Some(o) = eff.get(case.option) {
                assert_eq!(eff.encoded(case.option), Some(encode_elements(&o.value)));
            }
            let ids: Vec<u8> = eff.iter().map(|o| o.option_id).collect();
            assert!(
                ids.windows(2).all(|w| w[0] < w[1]),
                "{}: ascending",
                case.name
            );
        }
    }

    #[test]
    fn inactive_policies_are_ignored() {
        let config = config();
        let mut scope = scope();
        scope.activate_policies = false;
        let mac = [0xaa, 0xbb, 0, 0, 0, 1];
        let facts = ClientFacts {
            mac: &mac,
            ..Default::default()
        };
        let eff = effective_options(&config, &scope, None, &facts);
        assert_eq!(eff.get(15).unwrap().level, OptionLevel::Scope);
        let mut disabled = self::scope();
        for p in &mut disabled.policies {
            p.enabled = false;
        }
        assert!(matching_policies(&disabled.policies, &config, &facts).is_empty());
    }

    #[test]
    fn encode_is_network_order() {
        let bytes = encode_elements(&[
            OptionElement::Byte(1),
            OptionElement::Word(0x0203),
            OptionElement::DWord(0x04050607),
            OptionElement::DWordDWord(0x08090a0b0c0d0e0f),
            OptionElement::IPv4Address(Ipv4Addr::new(10, 0, 0, 1)),
            OptionElement::String("ab".into()),
            OptionElement::Binary(vec![0xff]),
        ]);
        assert_eq!(
            bytes,
            vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 10, 0, 0, 1, b'a', b'b', 0xff]
        );
    }

    #[test]
    fn policy_fields() {
        let config = config();
        let relay = [1, 3, b'c', b'i', b'd', 2, 2, 0xab, 0xcd];
        let facts = ClientFacts {
            mac: &[0, 1, 2, 3, 4, 5],
            client_id: Some(&[1, 0, 1, 2, 3, 4, 5]),
            user_class: Some(b"lab"),
            vendor_class: Some(b"PXEClient:Arch"),
            relay_agent: Some(&relay),
            fqdn: Some(b"host1.lab.example."),
        };
        let cases: &[(PolicyField, bool, &str, bool)] = &[
            (PolicyField::MacAddress, true, "00-01-02-03-04-05", true),
            (PolicyField::MacAddress, true, "000102*", true),
            (PolicyField::MacAddress, true, "000103*", false),
            (PolicyField::MacAddress, false, "000103*", true),
            (PolicyField::ClientId, true, "01000102030405", true),
            (PolicyField::CircuitId, true, "636964", true),
            (PolicyField::RemoteId, true, "abcd", true),
            (PolicyField::SubscriberId, true, "abcd", false),
            (PolicyField::RelayAgent, true, "0103*", true),
            (PolicyField::UserClass, true, "Lab Users", true),
            (PolicyField::UserClass, true, "Default BOOTP Class", false),
            (PolicyField::VendorClass, true, "PXE", true),
            (PolicyField::VendorClass, true, "Lab Users", false),
            (PolicyField::Fqdn, true, "*.lab.example", true),
            (PolicyField::Fqdn, true, "HOST1*", true),
            (PolicyField::Fqdn, true, "host2.lab.example", false),
            (PolicyField::MacAddress, true, "zz", false),
        ];
        for (field, equal, value, want) in cases {
            let p = Policy {
                criteria: vec![PolicyCriterion {
                    field: *field,
                    equal: *equal,
                    values: vec![value.to_string()],
                }],
                ..policy("p", 1, "", vec![])
            };
            assert_eq!(
                matching_policies(std::slice::from_ref(&p), &config, &facts).len() == 1,
                *want,
                "{field:?} {equal} {value}"
            );
        }
    }

    #[test]
    fn filters_and_mac_patterns() {
        let allow = Filter {
            list: FilterList::Allow,
            mac: MacPattern {
                prefix: vec![0xaa, 0xbb],
                wildcard: true,
            },
            description: String::new(),
        };
        let deny = Filter {
            list: FilterList::Deny,
            mac: MacPattern {
                prefix: vec![0xaa, 0xbb, 0, 0, 0, 1],
                wildcard: false,
            },
            description: String::new(),
        };
        let mut f = Filters {
            allow_enabled: false,
            deny_enabled: false,
            filters: vec![allow, deny],
        };
        let listed_deny = [0xaa, 0xbb, 0, 0, 0, 1];
        let allowed = [0xaa, 0xbb, 0, 0, 0, 2];
        let stranger = [0x11, 0xbb, 0, 0, 0, 2];
        assert!(f.allows(&listed_deny) && f.allows(&stranger));
        f.deny_enabled = true;
        assert!(!f.allows(&listed_deny) && f.allows(&stranger));
        f.allow_enabled = true;
        assert!(!f.allows(&listed_deny) && f.allows(&allowed) && !f.allows(&stranger));
        let exact = MacPattern {
            prefix: vec![1, 2],
            wildcard: false,
        };
        assert!(exact.matches(&[1, 2]) && !exact.matches(&[1, 2, 3]));
    }

    #[test]
    fn scope_lookups() {
        let s = scope();
        assert!(s.contains("198.18.0.255".parse().unwrap()));
        assert!(!s.contains("198.18.1.0".parse().unwrap()));
        assert!(s.is_excluded("198.18.0.15".parse().unwrap()));
        assert!(!s.is_excluded("198.18.0.20".parse().unwrap()));
        let mac = [0, 0x15, 0x5d, 1, 2, 3];
        assert!(s.reservation_for(None, &mac).is_some());
        assert!(s
            .reservation_for(Some(&[1, 0, 0x15, 0x5d, 1, 2, 3]), &[9; 6])
            .is_some());
        assert!(s.reservation_for(Some(&[1, 2, 3]), &[9; 6]).is_none());
        // A UID of htype + MAC matches a client that sends no option 61.
        let mut by_uid = s.clone();
        by_uid.reservations[0].client_id = [&[1u8][..], &mac[..]].concat();
        assert!(by_uid.reservation_for(None, &mac).is_some());
        assert!(by_uid.reservation_for(None, &[9; 6]).is_none());
    }
}
