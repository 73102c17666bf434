//! Validation: raw records in, the model out, or errors naming the position and the rule.
//!
//! Every rule runs over the whole file; errors are collected, not returned one at a time.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::diag::{Diags, Pos};
use crate::model::{
    Class, ClassKind, ExclusionRange, Filters, OptionDefinition, OptionElement, OptionType,
    OptionValue, Policy, PolicyField, Reservation, Scope, ServerConfig,
};
use crate::raw::{At, RawConfig, RawOptionValue, RawPolicy, RawRange, RawScope};
use crate::resolve::encode_elements;
use crate::text::{parse_hex, parse_u64, same_class_name, UNLIMITED_SECS};

/// Longest encoded standard option value accepted: more cannot fit a DHCP message on Ethernet.
pub(crate) const MAX_OPTION_BYTES: usize = 1200;
/// A vendor sub-option's length is one byte.
const MAX_VENDOR_OPTION_BYTES: usize = 255;
/// Windows accepts offer delays of 0-1000 ms.
const MAX_DELAY: Duration = Duration::from_millis(1000);
/// Lease used when a netsh scope gives no option 51 (Windows' default for a new scope).
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(8 * 86_400);

/// The subnet of a scope as an inclusive u32 interval, when the mask is usable.
#[derive(Debug, Clone, Copy)]
struct Subnet {
    first: u32,
    last: u32,
}

impl Subnet {
    fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        self.first <= ip && ip <= self.last
    }
}

/// Parses one option value's text as an element of `kind`.
fn parse_element(kind: OptionType, text: &str) -> Result<OptionElement, String> {
    let t = text.trim();
    let int = |max: u64| -> Result<u64, String> {
        if let Some(neg) = t.strip_prefix('-') {
            // Windows shows a negative Time Offset (option 2) as a signed number.
            let n: u64 = neg.parse().map_err(|_| format!("`{t}` is not a number"))?;
            if n == 0 || n > max / 2 + 1 {
                return Err(format!("{t} is out of range"));
            }
            return Ok(max - n + 1);
        }
        let n = parse_u64(t).ok_or(format!("`{t}` is not a number"))?;
        if n > max {
            return Err(format!("{n} is larger than {max}"));
        }
        Ok(n)
    };
    Ok(match kind {
        OptionType::Byte => OptionElement::Byte(int(u8::MAX.into())? as u8),
        OptionType::Word => OptionElement::Word(int(u16::MAX.into())? as u16),
        OptionType::DWord => OptionElement::DWord(int(u32::MAX.into())? as u32),
        OptionType::DWordDWord => OptionElement::DWordDWord(int(u64::MAX)?),
        OptionType::IPv4Address => OptionElement::IPv4Address(
            t.parse::<Ipv4Addr>()
                .map_err(|_| format!("`{t}` is not an IPv4 address"))?,
        ),
        OptionType::IPv6Address => OptionElement::IPv6Address(
            t.parse::<Ipv6Addr>()
                .map_err(|_| format!("`{t}` is not an IPv6 address"))?,
        ),
        OptionType::String => OptionElement::String(text.to_string()),
        OptionType::BinaryData => {
            OptionElement::Binary(parse_hex(t).ok_or(format!("`{}` is not hex", short(t)))?)
        }
        OptionType::EncapsulatedData => {
            OptionElement::Encapsulated(parse_hex(t).ok_or(format!("`{}` is not hex", short(t)))?)
        }
    })
}

/// The first characters of a long value, for messages.
fn short(t: &str) -> String {
    if t.chars().count() > 40 {
        format!("{}...", t.chars().take(40).collect::<String>())
    } else {
        t.to_string()
    }
}

/// Parses a list of texts; binary kinds join into one element (exports may split bytes over `Value`s).
fn parse_elements(kind: OptionType, values: &[String]) -> Result<Vec<OptionElement>, String> {
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        out.push(parse_element(kind, v)?);
    }
    match kind {
        OptionType::BinaryData if out.len() > 1 => {
            Ok(vec![OptionElement::Binary(encode_elements(&out))])
        }
        OptionType::EncapsulatedData if out.len() > 1 => {
            Ok(vec![OptionElement::Encapsulated(encode_elements(&out))])
        }
        _ => Ok(out),
    }
}

/// An option id as the model holds it: 1-254 (0 and 255 are pad and end).
fn option_code(id: i64) -> Option<u8> {
    u8::try_from(id).ok().filter(|id| (1..=254).contains(id))
}

struct Validator<'d> {
    diags: &'d mut Diags,
    config: ServerConfig,
}

impl Validator<'_> {
    fn class_check(&mut self, pos: &Pos, name: &str, kind: ClassKind, what: &str) -> bool {
        match self.config.find_class(name) {
            Some(c) if c.kind == kind => true,
            Some(_) => {
                let k = if kind == ClassKind::User {
                    "user"
                } else {
                    "vendor"
                };
                self.diags.error(
                    pos,
                    "class-kind",
                    format!("{what} names class `{name}`, which is not a {k} class"),
                );
                false
            }
            None => {
                self.diags.error(
                    pos,
                    "unknown-class",
                    format!("{what} names class `{name}`, which does not exist"),
                );
                false
            }
        }
    }

    /// Option value: id range, classes, definition, type, arity, size.
    fn option_value(&mut self, at: &At<RawOptionValue>) -> Option<OptionValue> {
        let (pos, raw) = (&at.pos, &at.item);
        let Some(id) = option_code(raw.option_id) else {
            self.diags.error(
                pos,
                "option-id-range",
                format!("option id {} is not 1-254", raw.option_id),
            );
            return None;
        };
        let mut ok = true;
        if let Some(user) = &raw.user_class {
            ok &= self.class_check(pos, user, ClassKind::User, &format!("option {id}"));
        }
        if let Some(vendor) = &raw.vendor_class {
            ok &= self.class_check(pos, vendor, ClassKind::Vendor, &format!("option {id}"));
        }
        let Some(def) = self.config.find_definition(id, raw.vendor_class.as_deref()) else {
            let scope = raw
                .vendor_class
                .as_deref()
                .map(|v| format!(" for vendor class `{v}`"))
                .unwrap_or_default();
            self.diags.error(
                pos,
                "unknown-option",
                format!("option {id}{scope} has no definition"),
            );
            return None;
        };
        if let Some(declared) = raw.declared_type {
            if declared != def.kind {
                self.diags.error(
                    pos,
                    "option-type",
                    format!(
                        "option {id} ({}) is defined as {:?}, the value says {:?}",
                        def.name, def.kind, declared
                    ),
                );
                return None;
            }
        }
        let value = match parse_elements(def.kind, &raw.values) {
            Ok(v) => v,
            Err(e) => {
                self.diags.error(
                    pos,
                    "option-value",
                    format!("option {id} ({}): {e}", def.name),
                );
                return None;
            }
        };
        if value.is_empty() {
            self.diags.error(
                pos,
                "option-arity",
                format!("option {id} ({}) has no value", def.name),
            );
            return None;
        }
        if !def.multi_valued && value.len() > 1 {
            self.diags.error(
                pos,
                "option-arity",
                format!(
                    "option {id} ({}) takes one value, {} given",
                    def.name,
                    value.len()
                ),
            );
            return None;
        }
        let size: usize = encode_elements(&value).len();
        let max = if raw.vendor_class.is_some() {
            MAX_VENDOR_OPTION_BYTES
        } else {
            MAX_OPTION_BYTES
        };
        if size > max {
            self.diags.error(
                pos,
                "option-too-long",
                format!(
                    "option {id} ({}) encodes to {size} bytes; at most {max} fit",
                    def.name
                ),
            );
            return None;
        }
        ok.then(|| OptionValue {
            option_id: id,
            value,
            vendor_class: raw.vendor_class.clone(),
            user_class: raw.user_class.clone(),
        })
    }

    /// A level's option values; a repeated (id, user, vendor) keeps the later one with a warning.
    fn option_values(&mut self, raws: &[At<RawOptionValue>]) -> Vec<OptionValue> {
        let mut out: Vec<OptionValue> = Vec::new();
        for at in raws {
            let Some(v) = self.option_value(at) else {
                continue;
            };
            if let Some(prev) = out.iter_mut().find(|p| {
                p.option_id == v.option_id
                    && same_class_name(p.user_class.as_deref(), v.user_class.as_deref())
                    && same_class_name(p.vendor_class.as_deref(), v.vendor_class.as_deref())
            }) {
                self.diags.warning(
                    &at.pos,
                    "duplicate-option",
                    format!(
                        "option {} is set twice at this level; the later value is used",
                        v.option_id
                    ),
                );
                *prev = v;
            } else {
                out.push(v);
            }
        }
        out
    }

    /// Each item checked by `check`; one that fails (reported by `check`) is left out and clears `ok`.
    fn each_valid<R, T>(
        &mut self,
        items: &[R],
        ok: &mut bool,
        mut check: impl FnMut(&mut Self, &R) -> Option<T>,
    ) -> Vec<T> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match check(self, item) {
                Some(valid) => out.push(valid),
                None => *ok = false,
            }
        }
        out
    }

    fn range(
        &mut self,
        at: &At<RawRange>,
        subnet: Option<Subnet>,
        what: &str,
    ) -> Option<ExclusionRange> {
        let (s, e) = (at.item.start, at.item.end);
        if u32::from(s) > u32::from(e) {
            self.diags.error(
                &at.pos,
                "range-order",
                format!("{what} {s}-{e}: start is after end"),
            );
            return None;
        }
        if let Some(net) = subnet {
            if !net.contains(s) || !net.contains(e) {
                self.diags.error(
                    &at.pos,
                    "outside-subnet",
                    format!(
                        "{what} {s}-{e} is not inside the subnet {}-{}",
                        Ipv4Addr::from(net.first),
                        Ipv4Addr::from(net.last)
                    ),
                );
                return None;
            }
        }
        Some(ExclusionRange {
            start_range: s,
            end_range: e,
        })
    }

    fn policy(&mut self, at: &At<RawPolicy>, subnet: Option<Subnet>) -> Option<Policy> {
        let raw = &at.item;
        let mut ok = true;
        for c in &raw.criteria {
            let kind = match c.item.field {
                PolicyField::VendorClass => ClassKind::Vendor,
                PolicyField::UserClass => ClassKind::User,
                _ => continue,
            };
            for v in &c.item.values {
                let name = v.trim().trim_end_matches('*');
                ok &= self.class_check(&c.pos, name, kind, &format!("policy `{}`", raw.name));
            }
        }
        let what = format!("policy `{}` range", raw.name);
        let ip_ranges = self.each_valid(&raw.ip_ranges, &mut ok, |v, r| v.range(r, subnet, &what));
        let option_values = self.option_values(&raw.option_values);
        ok.then(|| Policy {
            name: raw.name.clone(),
            processing_order: raw.processing_order,
            enabled: raw.enabled,
            condition: raw.condition,
            criteria: raw.criteria.iter().map(|c| c.item.clone()).collect(),
            ip_ranges,
            option_values,
            // The model has no "unlimited" policy lease: it is kept as 0xFFFFFFFF seconds.
            lease_duration: raw
                .lease_duration
                .map(|d| d.unwrap_or(Duration::from_secs(UNLIMITED_SECS))),
            description: raw.description.clone(),
        })
    }

    fn subnet_of(&mut self, at: &At<RawScope>) -> Option<Subnet> {
        let s = &at.item;
        let mask = u32::from(s.subnet_mask);
        if mask.leading_ones() + mask.trailing_zeros() != 32 {
            self.diags.error(
                &at.pos,
                "bad-mask",
                format!(
                    "scope {}: subnet mask {} is not contiguous",
                    s.scope_id, s.subnet_mask
                ),
            );
            return None;
        }
        if mask == 0 {
            self.diags.error(
                &at.pos,
                "bad-mask",
                format!("scope {}: a /0 mask would cover every address", s.scope_id),
            );
            return None;
        }
        let id = u32::from(s.scope_id);
        if id & mask != id {
            self.diags.error(
                &at.pos,
                "scope-id",
                format!(
                    "scope id {} is not the subnet address ({} with mask {})",
                    s.scope_id,
                    Ipv4Addr::from(id & mask),
                    s.subnet_mask
                ),
            );
            return None;
        }
        Some(Subnet {
            first: id,
            last: id | !mask,
        })
    }

    fn scope(&mut self, at: &At<RawScope>) -> (Option<Scope>, Option<Subnet>) {
        let raw = &at.item;
        let subnet = self.subnet_of(at);
        let mut ok = subnet.is_some();
        let label = format!("scope {}", raw.scope_id);
        let (start, end) = match &raw.range {
            None => {
                self.diags
                    .error(&at.pos, "no-range", format!("{label} has no address range"));
                ok = false;
                (raw.scope_id, raw.scope_id)
            }
            Some(r) => {
                if self.range(r, subnet, &format!("{label} range")).is_none() {
                    ok = false;
                } else if let Some(net) = subnet {
                    // Below /31 the subnet and broadcast addresses are never leased (Windows refuses them).
                    let (s, e) = (u32::from(r.item.start), u32::from(r.item.end));
                    if net.last - net.first > 1 && (s == net.first || e == net.last) {
                        self.diags.error(
                            &r.pos,
                            "range-network-broadcast",
                            format!(
                                "{label} range {}-{} includes the subnet or broadcast address",
                                r.item.start, r.item.end
                            ),
                        );
                        ok = false;
                    }
                }
                (r.item.start, r.item.end)
            }
        };
        if raw.delay > MAX_DELAY {
            self.diags.error(
                &at.pos,
                "bad-delay",
                format!(
                    "{label}: offer delay {} ms is not 0-1000",
                    raw.delay.as_millis()
                ),
            );
            ok = false;
        }
        let what = format!("{label} exclusion");
        let exclusion_ranges =
            self.each_valid(&raw.exclusions, &mut ok, |v, e| v.range(e, subnet, &what));
        let mut reservations: Vec<Reservation> = Vec::new();
        for r in &raw.reservations {
            let item = &r.item;
            if let Some(net) = subnet {
                if !net.contains(item.ip_address) {
                    self.diags.error(
                        &r.pos,
                        "outside-subnet",
                        format!(
                            "{label}: reservation {} is not inside the subnet",
                            item.ip_address
                        ),
                    );
                    ok = false;
                }
            }
            if reservations.iter().any(|p| p.ip_address == item.ip_address) {
                self.diags.error(
                    &r.pos,
                    "duplicate-reservation",
                    format!("{label}: {} is reserved twice", item.ip_address),
                );
                ok = false;
            }
            if reservations.iter().any(|p| p.client_id == item.client_id) {
                self.diags.error(
                    &r.pos,
                    "duplicate-reservation",
                    format!(
                        "{label}: client id {} has two reservations",
                        crate::text::dashed_hex(&item.client_id)
                    ),
                );
                ok = false;
            }
            let option_values = self.option_values(&item.option_values);
            reservations.push(Reservation {
                name: item.name.clone(),
                ip_address: item.ip_address,
                client_id: item.client_id.clone(),
                kind: item.kind,
                description: item.description.clone(),
                option_values,
            });
        }
        let option_values = self.option_values(&raw.option_values);
        let option_51 = option_values.iter().find_map(|v| {
            match (
                v.option_id,
                &v.user_class,
                &v.vendor_class,
                v.value.as_slice(),
            ) {
                (51, None, None, [OptionElement::DWord(secs)]) => Some(*secs),
                _ => None,
            }
        });
        let from_51 = option_51.map(|secs| {
            (u64::from(secs) < UNLIMITED_SECS).then(|| Duration::from_secs(secs.into()))
        });
        let lease_duration = match (raw.lease_duration, from_51) {
            (Some(stated), Some(opt)) => {
                if stated.map(|d| d.as_secs()) != opt.map(|d| d.as_secs()) {
                    self.diags.error(
                        &raw.lease_pos,
                        "lease-mismatch",
                        format!(
                            "{label}: LeaseDuration {} disagrees with option 51 ({} s)",
                            crate::text::format_timespan(stated),
                            option_51.unwrap_or_default()
                        ),
                    );
                    ok = false;
                }
                stated
            }
            (Some(stated), None) => stated,
            (None, Some(opt)) => opt,
            (None, None) => Some(DEFAULT_LEASE),
        };
        let policies = self.each_valid(&raw.policies, &mut ok, |v, p| v.policy(p, subnet));
        let mut leases = Vec::new();
        for l in &raw.leases {
            if let Some(net) = subnet {
                if !net.contains(l.item.ip_address) {
                    self.diags.error(
                        &l.pos,
                        "outside-subnet",
                        format!(
                            "{label}: lease {} is not inside the subnet",
                            l.item.ip_address
                        ),
                    );
                    ok = false;
                    continue;
                }
            }
            leases.push(l.item.clone());
        }
        let scope = Scope {
            scope_id: raw.scope_id,
            subnet_mask: raw.subnet_mask,
            name: raw.name.clone(),
            description: raw.description.clone(),
            start_range: start,
            end_range: end,
            lease_duration,
            state: raw.state,
            kind: raw.kind,
            max_bootp_clients: raw.max_bootp_clients,
            delay: raw.delay,
            superscope_name: raw.superscope_name.clone(),
            activate_policies: raw.activate_policies,
            exclusion_ranges,
            reservations,
            option_values,
            policies,
            leases,
        };
        (ok.then_some(scope), subnet)
    }
}

/// Turns raw records into the model; every rule violation goes to `diags.errors`.
pub(crate) fn validate(raw: RawConfig, diags: &mut Diags) -> ServerConfig {
    let mut v = Validator {
        diags,
        config: ServerConfig {
            settings: raw.settings.clone(),
            ..ServerConfig::default()
        },
    };
    for c in &raw.classes {
        if v.config
            .classes
            .iter()
            .any(|p: &Class| p.name.eq_ignore_ascii_case(&c.item.name))
        {
            v.diags.error(
                &c.pos,
                "duplicate-class",
                format!("class `{}` is defined twice", c.item.name),
            );
            continue;
        }
        if c.item.name.is_empty() {
            v.diags
                .error(&c.pos, "class-name", "a class has an empty name");
            continue;
        }
        if c.item.data.is_empty() {
            v.diags.error(
                &c.pos,
                "class-data",
                format!("class `{}` has no data", c.item.name),
            );
        }
        v.config.classes.push(c.item.clone());
    }
    for d in &raw.definitions {
        let raw_def = &d.item;
        let Some(id) = option_code(raw_def.option_id) else {
            v.diags.error(
                &d.pos,
                "option-id-range",
                format!("option definition id {} is not 1-254", raw_def.option_id),
            );
            continue;
        };
        if let Some(vendor) = &raw_def.vendor_class {
            v.class_check(
                &d.pos,
                vendor,
                ClassKind::Vendor,
                &format!("option definition {id}"),
            );
        }
        if v.config
            .option_definitions
            .iter()
            .any(|p: &OptionDefinition| {
                p.option_id == id
                    && same_class_name(p.vendor_class.as_deref(), raw_def.vendor_class.as_deref())
            })
        {
            v.diags.error(
                &d.pos,
                "duplicate-definition",
                format!("option {id} is defined twice"),
            );
            continue;
        }
        // Windows writes a placeholder default (`0.0.0.0`, `""`) for every definition; keep what parses.
        let default_value = match parse_elements(raw_def.kind, &raw_def.default_value) {
            Ok(val) => val,
            Err(e) => {
                v.diags
                    .error(&d.pos, "option-value", format!("option {id} default: {e}"));
                Vec::new()
            }
        };
        v.config.option_definitions.push(OptionDefinition {
            option_id: id,
            name: raw_def.name.clone(),
            kind: raw_def.kind,
            multi_valued: raw_def.multi_valued,
            vendor_class: raw_def.vendor_class.clone(),
            description: raw_def.description.clone(),
            default_value,
        });
    }
    v.config.option_values = v.option_values(&raw.option_values);
    v.config.filters = Filters {
        allow_enabled: raw.filters_allow,
        deny_enabled: raw.filters_deny,
        filters: raw.filters.iter().map(|f| f.item.clone()).collect(),
    };
    // A server policy that fails was reported; the others still apply.
    let policies = raw
        .policies
        .iter()
        .filter_map(|p| v.policy(p, None))
        .collect();
    v.config.policies = policies;
    // Overlaps are checked over every scope with a usable subnet, valid or not otherwise.
    let mut spans: Vec<(u32, u32, usize)> = Vec::new();
    for (index, at) in raw.scopes.iter().enumerate() {
        let (scope, subnet) = v.scope(at);
        if let Some(net) = subnet {
            spans.push((net.first, net.last, index));
        }
        v.config.scopes.extend(scope);
    }
    // O(n log n): sort by first address, compare with the furthest end seen so far.
    spans.sort_unstable();
    let mut widest: Option<(u32, usize)> = None;
    for &(first, last, index) in &spans {
        if let Some((end, other)) = widest {
            if first <= end {
                let (a, b) = (&raw.scopes[other].item, &raw.scopes[index]);
                v.diags.error(
                    &b.pos,
                    "overlapping-scopes",
                    format!(
                        "scope {}/{} overlaps scope {}/{}",
                        b.item.scope_id, b.item.subnet_mask, a.scope_id, a.subnet_mask
                    ),
                );
            }
        }
        if widest.is_none_or(|(end, _)| last > end) {
            widest = Some((last, index));
        }
    }
    v.config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements() {
        assert_eq!(
            parse_element(OptionType::Byte, "0x10"),
            Ok(OptionElement::Byte(16))
        );
        assert!(parse_element(OptionType::Byte, "256").is_err());
        assert_eq!(
            parse_element(OptionType::DWord, "-1"),
            Ok(OptionElement::DWord(u32::MAX))
        );
        assert_eq!(
            parse_element(OptionType::DWord, "-3600"),
            Ok(OptionElement::DWord(0u32.wrapping_sub(3600)))
        );
        assert!(parse_element(OptionType::IPv4Address, "1.2.3").is_err());
        assert_eq!(
            parse_elements(OptionType::BinaryData, &["0x1".into(), "0x02".into()]),
            Ok(vec![OptionElement::Binary(vec![1, 2])])
        );
        assert_eq!(
            parse_element(OptionType::String, " a b "),
            Ok(OptionElement::String(" a b ".into()))
        );
    }
}
