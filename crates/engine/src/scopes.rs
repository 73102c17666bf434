//! Scope data precomputed from the configuration at start: ranges as numbers, exclusions, the
//! reservation index and, for scopes without classes or policies, the merged option values.
//!
//! Option precedence is `calloutd_config::effective_options`'s; it allocates per call, so scopes whose
//! options cannot depend on the client's classes or policies get that same result precomputed here
//! (reservation > scope > server, first value of an id within a level), and only the others call it
//! per reply.

// foldhash (randomly seeded per process) instead of SipHash: these are looked up for every packet.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::net::Ipv4Addr;

use calloutd_config::{
    effective_options_with, encode_elements, ClientFacts, OptionValue, PolicyMatch, Scope,
    ScopeState, ScopeType, ServerConfig,
};

/// Options the engine writes itself; configured values for them are ignored.
const ENGINE_OPTIONS: &[u8] = &[1, 50, 51, 52, 53, 54, 55, 57, 58, 59, 61, 82];

/// Option values by code (index = option code).
pub(crate) type OptionMap = Vec<Option<Box<[u8]>>>;

/// One reservation, ready for lookups.
#[derive(Debug)]
pub(crate) struct ReservationRt {
    /// Index into the config scope's `reservations`.
    pub index: usize,
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
    /// Server-level values overridden by scope-level ones (default class only).
    pub options: OptionMap,
    /// True when no class-specific value or active policy can change a client's options, so
    /// `options` plus the reservation's values are the effective options.
    pub simple_options: bool,
    /// Lease seconds; `None` = infinite.
    pub lease_secs: Option<u32>,
    pub max_bootp_clients: Option<u32>,
    /// Policies are on here (`ActivatePolicies`) and some scope or server policy exists.
    pub has_policies: bool,
    /// The IP ranges of the scope's enabled policies (policies on): clients that match no policy
    /// with a range get addresses outside them.
    pub policy_ranges: Vec<(u32, u32)>,
    /// The other scopes of this scope's superscope (config indices, config order); filled by the
    /// engine once every scope is built.
    pub siblings: Vec<usize>,
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
        // Most specific level first; within a level the first value of an id stays.
        for value in scope.option_values.iter().chain(&config.option_values) {
            let slot = &mut options[usize::from(value.option_id)];
            if slot.is_none() {
                *slot = standard_value(value);
            }
        }
        let class_specific = |values: &[OptionValue]| {
            values
                .iter()
                .any(|v| v.vendor_class.is_some() || v.user_class.is_some())
        };
        let simple_options = !class_specific(&config.option_values)
            && !class_specific(&scope.option_values)
            && !scope
                .reservations
                .iter()
                .any(|r| class_specific(&r.option_values))
            && !(scope.activate_policies
                && (!scope.policies.is_empty() || !config.policies.is_empty()));
        let mut reservations = Vec::new();
        let mut reservation_by_id = HashMap::new();
        let mut reserved = HashSet::new();
        for (index, reservation) in scope.reservations.iter().enumerate() {
            reserved.insert(u32::from(reservation.ip_address));
            if !reservation.client_id.is_empty() {
                reservation_by_id
                    .entry(reservation.client_id.clone().into_boxed_slice())
                    .or_insert(index);
            }
            reservations.push(ReservationRt {
                index,
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
            simple_options,
            lease_secs: scope.lease_duration.map(|d| {
                u32::try_from(d.as_secs())
                    .unwrap_or(u32::MAX)
                    .min(u32::MAX - 1)
            }),
            max_bootp_clients: scope.max_bootp_clients,
            has_policies: scope.activate_policies
                && (!scope.policies.is_empty() || !config.policies.is_empty()),
            policy_ranges: if scope.activate_policies {
                scope
                    .policies
                    .iter()
                    .filter(|p| p.enabled)
                    .flat_map(|p| &p.ip_ranges)
                    .map(|r| (u32::from(r.start_range), u32::from(r.end_range)))
                    .collect()
            } else {
                Vec::new()
            },
            siblings: Vec::new(),
        })
    }

    /// True when `ip` lies in one of the scope's policy IP ranges.
    pub fn in_policy_range(&self, ip: u32) -> bool {
        self.policy_ranges
            .iter()
            .any(|&(lo, hi)| lo <= ip && ip <= hi)
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

    /// The reservation of a client, matched as `calloutd_config::Scope::reservation_for` does (option
    /// 61 whole or less its hardware-type byte, then the MAC, then htype+chaddr: the client identity
    /// when option 61 is absent), through a hash index.
    pub fn reservation_for(
        &self,
        client_id: Option<&[u8]>,
        htype: u8,
        chaddr: &[u8],
    ) -> Option<&ReservationRt> {
        let by = |id: &[u8]| {
            self.reservation_by_id
                .get(id)
                .map(|&i| &self.reservations[i])
        };
        client_id
            .and_then(by)
            .or_else(|| client_id.and_then(|id| id.get(1..)).and_then(by))
            .or_else(|| by(chaddr))
            .or_else(|| {
                // A UID written as "01" + MAC (what Windows shows for Ethernet clients).
                let mut identity = [0u8; 17];
                let len = chaddr.len().min(16);
                identity[0] = htype;
                identity[1..=len].copy_from_slice(&chaddr[..len]);
                by(&identity[..=len])
            })
    }

    /// The precomputed value of option `code` for a client with `reservation` (simple scopes).
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

/// Where a reply's configured option values come from.
pub(crate) enum OptionSource<'s> {
    /// The precomputed maps.
    Precomputed(&'s ScopeRt, Option<&'s ReservationRt>),
    /// `effective_options` for this client, encoded (index = option code).
    Resolved(OptionMap),
}

impl<'s> OptionSource<'s> {
    /// The options for one client of `scope`.
    pub fn for_client(
        config: &ServerConfig,
        scope_index: usize,
        scope: &'s ScopeRt,
        reservation: Option<&'s ReservationRt>,
        client: &ClientFacts<'_>,
        policies: &PolicyMatch<'_>,
    ) -> Self {
        if scope.simple_options {
            return OptionSource::Precomputed(scope, reservation);
        }
        let config_scope = &config.scopes[scope_index];
        let config_reservation = reservation.map(|r| &config_scope.reservations[r.index]);
        let effective =
            effective_options_with(config, config_scope, config_reservation, client, policies);
        let mut map: OptionMap = vec![None; 256];
        for option in effective.iter() {
            if !ENGINE_OPTIONS.contains(&option.option_id) {
                map[usize::from(option.option_id)] =
                    Some(encode_elements(&option.value).into_boxed_slice());
            }
        }
        OptionSource::Resolved(map)
    }

    /// The wire bytes of option `code`, if the client gets it.
    pub fn get(&self, code: u8) -> Option<&[u8]> {
        match self {
            OptionSource::Precomputed(scope, reservation) => scope.option(*reservation, code),
            OptionSource::Resolved(map) => map[usize::from(code)].as_deref(),
        }
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

/// Whether a reservation of `kind` serves a client speaking DHCP (`bootp = false`) or BOOTP.
pub(crate) fn kind_serves(kind: ScopeType, bootp: bool) -> bool {
    matches!(
        (kind, bootp),
        (ScopeType::Both, _) | (ScopeType::Dhcp, false) | (ScopeType::Bootp, true)
    )
}
