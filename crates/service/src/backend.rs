//! The control API's view of the engine and the callout ([`ControlBackend`] over [`Engine`] and the
//! callout's hook statistics).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use calloutd_callout::isolate::LoadedCallout;
use calloutd_config::{dashed_hex, Scope};
use calloutd_engine::{Engine, Lease};
use calloutd_registry::Parameters;
use calloutd_server::{ControlBackend, HookView, LeaseView, MisbehaviourView, ScopeView};
use serde_json::{json, Value};

/// The engine, the callout (if loaded) and the effective settings, for the control API.
pub(crate) struct EngineBackend {
    /// The engine serving.
    pub engine: Arc<Engine>,
    /// The loaded callout, whose hook statistics are reported.
    pub callout: Option<LoadedCallout>,
    /// The registry Parameters in effect.
    pub params: Parameters,
    /// Other effective settings shown by `GET /v1/config` (paths, intervals), never secrets.
    pub settings: Value,
    /// Where `POST /v1/backup` backs the lease database up (inside the data directory), if anywhere.
    pub backup_file: Option<std::path::PathBuf>,
}

fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl EngineBackend {
    fn scope_of(&self, ip: Ipv4Addr) -> Option<&Scope> {
        self.engine.config().scopes.iter().find(|s| s.contains(ip))
    }

    fn view(&self, lease: &Lease, now: SystemTime) -> LeaseView {
        let expired = lease.expires.is_some_and(|e| e <= now);
        LeaseView {
            ip: lease.ip,
            client_id: dashed_hex(&lease.client_id),
            mac: dashed_hex(&lease.hw_address),
            hostname: lease.host_name.clone(),
            expires: lease.expires.map(unix_secs),
            state: if expired { "expired" } else { "active" }.into(),
            client_type: format!("{:?}", lease.client_type).to_lowercase(),
            scope: self.scope_of(lease.ip).map(|s| s.scope_id),
        }
    }
}

/// Pool addresses of `scope` neither excluded, reserved nor in `leased`: the scope's own count of
/// its dynamic pool ([`Scope::pool_counts`]) less the leases inside that pool.
fn free_addresses(scope: &Scope, leased: &[Ipv4Addr]) -> u64 {
    let reserved: std::collections::HashSet<Ipv4Addr> =
        scope.reservations.iter().map(|r| r.ip_address).collect();
    let in_pool = leased
        .iter()
        .filter(|ip| {
            (scope.start_range..=scope.end_range).contains(*ip)
                && !scope.is_excluded(**ip)
                && !reserved.contains(*ip)
        })
        .count() as u64;
    scope.pool_counts().free.saturating_sub(in_pool)
}

impl ControlBackend for EngineBackend {
    fn leases(&self, scope: Option<Ipv4Addr>) -> Result<Vec<LeaseView>, String> {
        let wanted = match scope {
            Some(id) => Some(
                self.engine
                    .config()
                    .scopes
                    .iter()
                    .find(|s| s.scope_id == id)
                    .ok_or_else(|| format!("no scope {id}"))?,
            ),
            None => None,
        };
        let now = SystemTime::now();
        Ok(self
            .engine
            .leases()
            .iter()
            .filter(|l| wanted.is_none_or(|s| s.contains(l.ip)))
            .map(|l| self.view(l, now))
            .collect())
    }

    fn delete_lease(&self, ip: Ipv4Addr) -> Result<Option<LeaseView>, String> {
        let deleted = self.engine.delete_lease(ip).map_err(|e| e.to_string())?;
        Ok(deleted.map(|l| self.view(&l, SystemTime::now())))
    }

    fn hooks(&self) -> Vec<HookView> {
        let Some(callout) = &self.callout else {
            return Vec::new();
        };
        callout
            .stats()
            .snapshot()
            .into_iter()
            .map(|s| HookView {
                hook: s.hook.trace_name().into(),
                calls: s.calls,
                total_us: s.total_us,
                max_us: s.max_us,
                faults: s.faults,
            })
            .collect()
    }

    fn scopes(&self) -> Vec<ScopeView> {
        let leases = self.engine.leases();
        self.engine
            .config()
            .scopes
            .iter()
            .map(|scope| {
                let leased: Vec<Ipv4Addr> = leases
                    .iter()
                    .map(|l| l.ip)
                    .filter(|ip| scope.contains(*ip))
                    .collect();
                ScopeView {
                    scope: scope.scope_id,
                    name: scope.name.clone(),
                    leases: leased.len() as u64,
                    free: free_addresses(scope, &leased),
                }
            })
            .collect()
    }

    fn engine_counters(&self) -> BTreeMap<String, u64> {
        let stats = self.engine.stats();
        let mut counters = BTreeMap::from([
            ("dropped_by_callout".to_string(), stats.dropped_by_callout),
            (
                "suppressed_by_callout".to_string(),
                stats.suppressed_by_callout,
            ),
        ]);
        // `--isolate`: crashes, hangs, restarts... of the callout host.
        if let Some(callout) = &self.callout {
            counters.extend(callout.counters());
            // Callout misbehaviour per kind (`misbehaviour_slow-hook` ...); each report, with its
            // hook, packet and explanation, is in the log and the trace.
            let log = callout.misbehaviour();
            for kind in calloutd_callout::MisbehaviourKind::ALL {
                counters.insert(format!("misbehaviour_{}", kind.name()), log.count(kind));
            }
        }
        counters
    }

    fn misbehaviour(&self) -> Vec<MisbehaviourView> {
        let Some(callout) = &self.callout else {
            return Vec::new();
        };
        callout
            .misbehaviour()
            .summary()
            .recent
            .into_iter()
            .map(|m| MisbehaviourView {
                kind: m.kind.name().to_string(),
                hook: m.hook.trace_name().to_string(),
                xid: m.xid,
                chaddr: m.chaddr,
                explanation: m.explanation,
            })
            .collect()
    }

    fn backup(&self) -> Result<Value, String> {
        let Some(file) = &self.backup_file else {
            return Err(
                "no lease backups here: the backup folder (BackupDatabasePath) is not inside the \
                 data directory, or could not be created"
                    .into(),
            );
        };
        let report = self.engine.backup(file).map_err(|e| e.to_string())?;
        Ok(serde_json::json!({
            "file": report.file,
            "leases": report.leases,
            "bytes": report.bytes,
        }))
    }

    fn config(&self) -> Value {
        let config = self.engine.config();
        let options = |values: &[calloutd_config::OptionValue]| -> Vec<Value> {
            values
                .iter()
                .map(|o| {
                    json!({
                        "option": o.option_id,
                        "value": o.value.iter().map(|e| format!("{e:?}")).collect::<Vec<_>>(),
                        "vendor_class": o.vendor_class,
                        "user_class": o.user_class,
                    })
                })
                .collect()
        };
        let scopes: Vec<Value> = config
            .scopes
            .iter()
            .map(|s| {
                json!({
                    "scope": s.scope_id,
                    "mask": s.subnet_mask,
                    "name": s.name,
                    "description": s.description,
                    "start": s.start_range,
                    "end": s.end_range,
                    "lease_secs": s.lease_duration.map(|d| d.as_secs()),
                    "state": format!("{:?}", s.state),
                    "type": format!("{:?}", s.kind),
                    "exclusions": s.exclusion_ranges.iter()
                        .map(|r| json!({"start": r.start_range, "end": r.end_range}))
                        .collect::<Vec<_>>(),
                    "reservations": s.reservations.iter()
                        .map(|r| json!({
                            "ip": r.ip_address,
                            "name": r.name,
                            "client_id": dashed_hex(&r.client_id),
                            "type": format!("{:?}", r.kind),
                        }))
                        .collect::<Vec<_>>(),
                    "options": options(&s.option_values),
                })
            })
            .collect();
        let p = &self.params;
        json!({
            "registry": {
                "CalloutDlls": p.callout_dlls.as_ref().map(|v| v.value.clone()),
                "CalloutEnabled": p.callout_enabled.as_ref().map(|v| v.value),
                "callouts_enabled": p.callouts_enabled(),
                "DatabasePath": p.database_path_or_default(),
                "DatabaseName": p.database_name_or_default(),
                "DatabaseCleanupInterval": p.database_cleanup_interval_minutes(),
                "DhcpLogFilePath": p.dhcp_log_file_path_or_default(),
                "ActivityLogFlag": p.activity_log_enabled(),
                "DhcpLogFilesMaxSize": p.dhcp_log_files_max_size_mb(),
                "IgnoreBroadcastFlag": p.ignore_broadcast(),
            },
            "callout": self.callout.as_ref().map(|c| json!({
                "path": c.path(),
                "entry": c.entry(),
                "isolated": c.is_isolated(),
                "hooks": c.hooks_set().iter().map(|h| h.trace_name()).collect::<Vec<_>>(),
            })),
            "server": {
                "conflict_detection_attempts": config.settings.conflict_detection_attempts,
                "options": options(&config.option_values),
            },
            "scopes": scopes,
            "settings": self.settings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calloutd_config::{ExclusionRange, ScopeType};

    #[test]
    fn free_addresses_leave_out_exclusions_reservations_and_leases() {
        let scope = Scope {
            exclusion_ranges: vec![ExclusionRange {
                start_range: Ipv4Addr::new(198, 18, 0, 10),
                end_range: Ipv4Addr::new(198, 18, 0, 11),
            }],
            ..Scope::new(
                Ipv4Addr::new(198, 18, 0, 0),
                Ipv4Addr::new(255, 255, 255, 0),
                Ipv4Addr::new(198, 18, 0, 10),
                Ipv4Addr::new(198, 18, 0, 19),
            )
        };
        assert_eq!(free_addresses(&scope, &[]), 8);
        assert_eq!(free_addresses(&scope, &[Ipv4Addr::new(198, 18, 0, 12)]), 7);
        // Leases on an excluded address or outside the range take nothing from the pool.
        let outside = [Ipv4Addr::new(198, 18, 0, 10), Ipv4Addr::new(198, 18, 0, 30)];
        assert_eq!(free_addresses(&scope, &outside), 8);
        // A reserved address is not in the dynamic pool, leased or not.
        let mut reserved = scope.clone();
        reserved.reservations.push(calloutd_config::Reservation {
            name: "r".into(),
            ip_address: Ipv4Addr::new(198, 18, 0, 13),
            client_id: vec![2, 0, 0, 0, 0, 1],
            kind: ScopeType::Dhcp,
            description: String::new(),
            option_values: Vec::new(),
        });
        let on_reservation = [Ipv4Addr::new(198, 18, 0, 13), Ipv4Addr::new(198, 18, 0, 12)];
        assert_eq!(free_addresses(&reserved, &on_reservation), 6);
    }
}
