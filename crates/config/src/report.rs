//! The scope report printed by `calloutd check --scopes`.
//!
//! Address counts are arithmetic over ranges (never one entry per address), so a /8 costs the same as a
//! /24.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::model::{OptionElement, OptionValue, Scope, ScopeState, ServerConfig};
use crate::text::{dashed_hex, format_timespan};
use crate::writer::element_text;

/// Address counts of one scope's pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolCounts {
    /// Addresses from StartRange to EndRange.
    pub range: u64,
    /// Range addresses inside an exclusion (overlapping exclusions counted once).
    pub excluded: u64,
    /// Reserved addresses inside the range and not excluded.
    pub reserved: u64,
    /// What remains to hand out dynamically: range - excluded - reserved.
    pub free: u64,
}

impl Scope {
    /// Counts the pool: range size, exclusions (merged, clipped to the range), reservations, free.
    pub fn pool_counts(&self) -> PoolCounts {
        let (start, end) = (
            u64::from(u32::from(self.start_range)),
            u64::from(u32::from(self.end_range)),
        );
        if start > end {
            return PoolCounts {
                range: 0,
                excluded: 0,
                reserved: 0,
                free: 0,
            };
        }
        let range = end - start + 1;
        let mut spans: Vec<(u64, u64)> = self
            .exclusion_ranges
            .iter()
            .map(|r| {
                (
                    u64::from(u32::from(r.start_range)).max(start),
                    u64::from(u32::from(r.end_range)).min(end),
                )
            })
            .filter(|(s, e)| s <= e)
            .collect();
        spans.sort_unstable();
        let mut excluded = 0;
        let mut covered_to: Option<u64> = None;
        for (s, e) in spans {
            let s = match covered_to {
                Some(c) if s <= c => c + 1,
                _ => s,
            };
            if s <= e {
                excluded += e - s + 1;
            }
            covered_to = Some(covered_to.map_or(e, |c| c.max(e)));
        }
        let mut reserved_ips: Vec<u32> = self
            .reservations
            .iter()
            .map(|r| u32::from(r.ip_address))
            .filter(|ip| {
                (start..=end).contains(&u64::from(*ip)) && !self.is_excluded(Ipv4Addr::from(*ip))
            })
            .collect();
        reserved_ips.sort_unstable();
        reserved_ips.dedup();
        let reserved = reserved_ips.len() as u64;
        PoolCounts {
            range,
            excluded,
            reserved,
            free: range.saturating_sub(excluded).saturating_sub(reserved),
        }
    }
}

fn option_line(config: &ServerConfig, v: &OptionValue) -> String {
    let name = config
        .find_definition(v.option_id, v.vendor_class.as_deref())
        .map(|d| d.name)
        .unwrap_or_default();
    let texts: Vec<String> = v
        .value
        .iter()
        .map(|e| match e {
            OptionElement::String(s) => format!("\"{s}\""),
            other => element_text(other),
        })
        .collect();
    let mut line = format!("{} {} = {}", v.option_id, name.trim(), texts.join(", "));
    if let Some(u) = &v.user_class {
        let _ = write!(line, " [user class: {u}]");
    }
    if let Some(vc) = &v.vendor_class {
        let _ = write!(line, " [vendor class: {vc}]");
    }
    line
}

/// A text report of every scope: id, mask, range, free addresses, reservations, options.
pub fn scope_report(config: &ServerConfig) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} scope(s), {} class(es), {} option definition(s) in the file, {} server option value(s), {} server policy(ies)",
        config.scopes.len(),
        config.classes.len(),
        config.option_definitions.len(),
        config.option_values.len(),
        config.policies.len()
    );
    for v in &config.option_values {
        let _ = writeln!(out, "  server option {}", option_line(config, v));
    }
    for s in &config.scopes {
        let prefix = u32::from(s.subnet_mask).leading_ones();
        let counts = s.pool_counts();
        let state = if s.state == ScopeState::Active {
            "active"
        } else {
            "inactive"
        };
        let _ = writeln!(
            out,
            "scope {}/{prefix} (mask {}) \"{}\" {state} {:?}",
            s.scope_id, s.subnet_mask, s.name, s.kind
        );
        let _ = writeln!(
            out,
            "  range {}-{}: {} addresses, {} excluded, {} reserved, {} free",
            s.start_range, s.end_range, counts.range, counts.excluded, counts.reserved, counts.free
        );
        let _ = writeln!(
            out,
            "  lease {}",
            format_timespan(s.lease_duration).replace(crate::text::TIMESPAN_MAX, "unlimited")
        );
        for e in &s.exclusion_ranges {
            let _ = writeln!(out, "  exclusion {}-{}", e.start_range, e.end_range);
        }
        for r in &s.reservations {
            let _ = writeln!(
                out,
                "  reservation {} {} \"{}\" {:?}",
                r.ip_address,
                dashed_hex(&r.client_id),
                r.name,
                r.kind
            );
            for v in &r.option_values {
                let _ = writeln!(out, "    option {}", option_line(config, v));
            }
        }
        for v in &s.option_values {
            let _ = writeln!(out, "  option {}", option_line(config, v));
        }
        for p in &s.policies {
            let _ = writeln!(
                out,
                "  policy \"{}\" order {}{}",
                p.name,
                p.processing_order,
                if p.enabled { "" } else { " (disabled)" }
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    fn scope(start: &str, end: &str) -> Scope {
        Scope {
            name: "big".into(),
            activate_policies: true,
            ..Scope::new(
                Ipv4Addr::new(10, 0, 0, 0),
                Ipv4Addr::new(255, 0, 0, 0),
                start.parse().unwrap(),
                end.parse().unwrap(),
            )
        }
    }

    fn excl(s: &str, e: &str) -> ExclusionRange {
        ExclusionRange {
            start_range: s.parse().unwrap(),
            end_range: e.parse().unwrap(),
        }
    }

    #[test]
    fn counts_are_arithmetic_and_merge_overlaps() {
        let mut s = scope("10.0.0.1", "10.255.255.254");
        assert_eq!(s.pool_counts().range, (1 << 24) - 2);
        s.exclusion_ranges = vec![
            excl("10.0.0.1", "10.0.0.10"),
            excl("10.0.0.5", "10.0.0.20"),
            excl("9.0.0.0", "10.0.0.1"),
        ];
        s.reservations = vec![
            Reservation {
                name: "a".into(),
                ip_address: "10.0.0.15".parse().unwrap(),
                client_id: vec![1],
                kind: ScopeType::Both,
                description: String::new(),
                option_values: vec![],
            },
            Reservation {
                name: "b".into(),
                ip_address: "10.0.1.1".parse().unwrap(),
                client_id: vec![2],
                kind: ScopeType::Both,
                description: String::new(),
                option_values: vec![],
            },
        ];
        let c = s.pool_counts();
        assert_eq!((c.excluded, c.reserved), (20, 1));
        assert_eq!(c.free, (1 << 24) - 2 - 21);
        let whole = scope("0.0.0.0", "255.255.255.255");
        assert_eq!(whole.pool_counts().range, 1 << 32);
        let report = scope_report(&ServerConfig {
            scopes: vec![s],
            ..ServerConfig::default()
        });
        assert!(
            report.contains("16777214 addresses, 20 excluded, 1 reserved, 16777193 free"),
            "{report}"
        );
        assert!(report.contains("lease unlimited"), "{report}");
    }
}
