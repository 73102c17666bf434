//! Scope data precomputed from the configuration at start: ranges as numbers, exclusions, the
//! reservation index and the merged option values. Private stand-ins for `calloutd_config`'s
//! resolve API (option precedence, filters, reservation matching) until that lands.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use calloutd_config::{
    FilterList, Filters, MacPattern, OptionElement, OptionValue, Scope, ScopeState, ScopeType,
    ServerConfig,
};

/// Options the engine writes itself; configured values for them are ignored.
const ENGINE_OPTIONS: &[u8] = &[1, 50, 51, 52, 53, 54, 55, 57, 58, 59, 61, 82];

/// Option values by code (index = option code).
pub(crate) type OptionMap = Vec<Option<Box<[u8]>>>;

/// One reservation, ready for lookups.
#[derive(Debug)]
pub(crate) struct ReservationRt {
    pub ip: u32,
    pub kind: ScopeType,
    /// Reservation-level options only (the scope's map covers the rest).
    pub options: Vec<(u8, Box<[u8]>)>,
}

/// One scope, ready for the hot path.
#[derive(Debug)]
pub(crate) struct ScopeRt {
    pub scope_id: Ipv4Addr,
    pub network: u32,
    pub mask: u32,
    pub start: u32,
    pub end: u32,
    pub active: bool,
    pub kind: ScopeType,
    pub exclusions: Vec<(u32, u32)>,
    pub reserved: HashSet<u32>,
    pub reservations: Vec<ReservationRt>,
    /// Reservation index by its client id bytes.
    pub reservation_by_id: HashMap<Box<[u8]>, usize>,
    /// Server-level values overridden by scope-level ones.
    pub options: OptionMap,
    /// Lease seconds; `None` = infinite.
    pub lease_secs: Option<u32>,
    pub max_bootp_clients: Option<u32>,
}

impl ScopeRt {
    pub fn build(config: &ServerConfig, scope: &Scope) -> Result<Self, String> {
        let network = u32::from(scope.scope_id);
        let mask = u32::from(scope.subnet_mask);
        let start = u32::from(scope.start_range);
        let end = u32::from(scope.end_range);
        if start > end {
            return Err(format!(
                "scope {}: start {} is after end {}",
                scope.scope_id, scope.start_range, scope.end_range
            ));
        }
        if start & mask != network & mask || end & mask != network & mask {
            return Err(format!(
                "scope {}: range {}-{} is outside the subnet",
                scope.scope_id, scope.start_range, scope.end_range
            ));
        }
        let mut options: OptionMap = vec![None; 256];
        for value in config.option_values.iter().chain(&scope.option_values) {
            if let Some(bytes) = standard_value(value) {
                options[usize::from(value.option_id)] = Some(bytes);
            }
        }
        let mut reservations = Vec::new();
        let mut reservation_by_id = HashMap::new();
        let mut reserved = HashSet::new();
        for reservation in &scope.reservations {
            reserved.insert(u32::from(reservation.ip_address));
            reservation_by_id.insert(
                reservation.client_id.clone().into_boxed_slice(),
                reservations.len(),
            );
            reservations.push(ReservationRt {
                ip: u32::from(reservation.ip_address),
                kind: reservation.kind,
                options: reservation
                    .option_values
                    .iter()
                    .filter_map(|v| standard_value(v).map(|b| (v.option_id, b)))
                    .collect(),
            });
        }
        Ok(Self {
            scope_id: scope.scope_id,
            network,
            mask,
            start,
            end,
            active: scope.state == ScopeState::Active,
            kind: scope.kind,
            exclusions: scope
                .exclusion_ranges
                .iter()
                .map(|r| (u32::from(r.start_range), u32::from(r.end_range)))
                .collect(),
            reserved,
            reservations,
            reservation_by_id,
            options,
            lease_secs: scope.lease_duration.map(|d| {
                u32::try_from(d.as_secs())
                    .unwrap_or(u32::MAX)
                    .min(u32::MAX - 1)
            }),
            max_bootp_clients: scope.max_bootp_clients,
        })
    }

    pub fn in_subnet(&self, ip: u32) -> bool {
        ip & self.mask == self.network & self.mask
    }

    pub fn is_excluded(&self, ip: u32) -> bool {
        self.exclusions.iter().any(|&(lo, hi)| lo <= ip && ip <= hi)
    }

    /// May the pool hand out `ip` dynamically (range, exclusions, reservations, network/broadcast)?
    pub fn is_pool_address(&self, ip: u32) -> bool {
        self.start <= ip
            && ip <= self.end
            && !self.is_excluded(ip)
            && !self.reserved.contains(&ip)
            && ip != self.network & self.mask
            && ip != self.network | !self.mask
    }

    /// The reservation of a client, matched by option 61, by chaddr, or by option 61 less its
    /// hardware-type byte.
    pub fn reservation_for(
        &self,
        client_id: Option<&[u8]>,
        chaddr: &[u8],
    ) -> Option<&ReservationRt> {
        let by = |id: &[u8]| {
            self.reservation_by_id
                .get(id)
                .map(|&i| &self.reservations[i])
        };
        client_id
            .and_then(by)
            .or_else(|| by(chaddr))
            .or_else(|| client_id.and_then(|id| id.get(1..)).and_then(by))
    }

    /// The value of option `code` for a client with `reservation`.
    pub fn option<'s>(
        &'s self,
        reservation: Option<&'s ReservationRt>,
        code: u8,
    ) -> Option<&'s [u8]> {
        reservation
            .and_then(|r| r.options.iter().find(|(c, _)| *c == code))
            .map(|(_, v)| &v[..])
            .or_else(|| self.options[usize::from(code)].as_deref())
    }
}

/// Wire bytes of an option value for the default user and vendor class; `None` for class-specific or
/// engine-written options.
fn standard_value(value: &OptionValue) -> Option<Box<[u8]>> {
    if value.vendor_class.is_some()
        || value.user_class.is_some()
        || value.option_id == 0
        || value.option_id == 255
        || ENGINE_OPTIONS.contains(&value.option_id)
    {
        return None;
    }
    Some(encode_elements(&value.value).into_boxed_slice())
}

/// Concatenates typed elements into option data (network byte order).
pub(crate) fn encode_elements(elements: &[OptionElement]) -> Vec<u8> {
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

/// Whether the MAC filters let `mac` be served: a listed deny wins; with the allow list enforced only
/// listed clients pass.
pub(crate) fn filters_allow(filters: &Filters, mac: &[u8]) -> bool {
    let listed = |list: FilterList| {
        filters
            .filters
            .iter()
            .any(|f| f.list == list && pattern_matches(&f.mac, mac))
    };
    if filters.deny_enabled && listed(FilterList::Deny) {
        return false;
    }
    !filters.allow_enabled || listed(FilterList::Allow)
}

fn pattern_matches(pattern: &MacPattern, mac: &[u8]) -> bool {
    if pattern.wildcard {
        mac.starts_with(&pattern.prefix)
    } else {
        mac == &pattern.prefix[..]
    }
}

/// Whether a reservation of `kind` serves a client speaking DHCP (`bootp = false`) or BOOTP.
pub(crate) fn kind_serves(kind: ScopeType, bootp: bool) -> bool {
    matches!(
        (kind, bootp),
        (ScopeType::Both, _) | (ScopeType::Dhcp, false) | (ScopeType::Bootp, true)
    )
}
