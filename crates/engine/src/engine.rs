//! [`Engine`]: the packet pipeline in Microsoft's hook order, the DHCP/BOOTP state machine and lease
//! allocation.

use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use calloutd_config::{ClientFacts, PolicyMatch, ScopeType, ServerConfig};
use dhcpssdk::{ClientType, DropReason, GiveCode, ProbCode};

use crate::audit::{AuditEventId, AuditLog, AuditRecord};
use crate::clock::{unix_secs, Clock, SystemClock};
use crate::hooks::{Hooks, LeaseLockHeld, PktContext};
use crate::import::{lease_from_export, ImportReport, NotImported};
use crate::io::{Admission, CommitError, Datagram, HeldReply, Outcome, PacketHandler, Reply};
use crate::packet::{option_wire_len, ReplyHeader, ReplyWriter, Request, DEFAULT_MAX_REPLY_LEN};
use crate::scopes::{kind_serves, OptionSource, ReservationRt, ScopeRt};
use crate::store::{BackupReport, CommitTicket, Lease, LeaseStore, StoreError};
use crate::table::{LeaseTable, SlotState, NEVER};
use crate::ticker::Ticker;
pub use calloutd_hooks::{NoProber, Prober};

/// DHCP message types (option 53).
const DISCOVER: u8 = 1;
const OFFER: u8 = 2;
const REQUEST: u8 = 3;
const DECLINE: u8 = 4;
const ACK: u8 = 5;
const NAK: u8 = 6;
const RELEASE: u8 = 7;
const INFORM: u8 = 8;
/// The highest option-53 value counted (18 = DHCPACTIVELEASEQUERY, RFC 7724).
const MAX_MESSAGE_TYPE: usize = 18;
/// `lease_secs` for an infinite lease.
const INFINITE_LEASE: u32 = 0xFFFF_FFFF;
/// RFC 1542: relays drop requests beyond 16 hops; so do we.
const MAX_HOPS: u8 = 16;
/// Addresses tried per DISCOVER when conflict detection keeps finding them in use.
const MAX_CONFLICT_RETRIES: usize = 8;
const CLIENT_PORT: u16 = 68;
const SERVER_PORT: u16 = 67;
const BROADCAST_FLAG: u16 = 0x8000;

/// Microsoft's grace period for expired leases: 4 hours (KB 261964).
pub const DEFAULT_EXPIRED_GRACE: Duration = Duration::from_secs(4 * 3600);

/// Which removals of a client's lease call DeleteClient ("directly before a client lease is deleted
/// from the active leases database"). The administrative delete and the purge of a lease whose grace
/// period ran out always do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeleteClientOn {
    /// Only the delete and the expiry purge: RELEASE and DECLINE are reported by AddressDel
    /// (`ProbCode` Release / Decline), which is Microsoft's notification for them.
    #[default]
    ExpiryAndDelete,
    /// Also RELEASE and DECLINE, directly before their lease leaves the database (then AddressDel).
    AlsoReleaseAndDecline,
}

/// Engine settings that do not come from the scope configuration.
#[derive(Clone)]
pub struct EngineOptions {
    /// Use this as the server identifier (option 54) instead of the receiving interface's address.
    pub server_id_override: Option<Ipv4Addr>,
    /// Microsoft's `IgnoreBroadcastFlag`: broadcast every reply to a direct client (and set the
    /// broadcast flag in relayed replies) whatever the client's flag says.
    pub ignore_broadcast_flag: bool,
    /// How long an offered address is held for its client.
    pub offer_hold: Duration,
    /// How long a declined or conflicting address (Microsoft's BAD_ADDRESS) is kept out of the pool;
    /// `None` (the default): the scope's lease time, as Microsoft does (never, in a scope with
    /// unlimited leases).
    pub probation: Option<Duration>,
    /// How long an expired lease stays in the database before the purge deletes it (Microsoft's
    /// grace period: 4 hours). Until then it is its client's and is not offered to others.
    pub expired_grace: Duration,
    /// When DeleteClient runs besides the administrative delete and the expiry purge.
    pub delete_client_on: DeleteClientOn,
    /// Options sent even when the client's parameter request list does not ask for them (the admin's
    /// "always send"), when configured.
    pub always_send: Vec<u8>,
    /// Where time comes from.
    pub clock: Arc<dyn Clock>,
    /// Microsoft's audit log (`DhcpSrvLog-<Day>.log`), when on.
    pub audit: Option<Arc<AuditLog>>,
    /// Leave lease commits to the runtime: a packet's changes come back as
    /// [`Outcome::uncommitted`], and the runtime sends the reply after [`PacketHandler::commit`], so
    /// one commit covers the ACKs of many packets. Off: each packet waits for its own commit.
    pub defer_commits: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            server_id_override: None,
            ignore_broadcast_flag: false,
            offer_hold: Duration::from_secs(60),
            probation: None,
            expired_grace: DEFAULT_EXPIRED_GRACE,
            delete_client_on: DeleteClientOn::default(),
            always_send: Vec::new(),
            clock: Arc::new(SystemClock),
            audit: None,
            defer_commits: false,
        }
    }
}

impl std::fmt::Debug for EngineOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineOptions")
            .field("server_id_override", &self.server_id_override)
            .field("ignore_broadcast_flag", &self.ignore_broadcast_flag)
            .field("offer_hold", &self.offer_hold)
            .field("probation", &self.probation)
            .field("expired_grace", &self.expired_grace)
            .field("delete_client_on", &self.delete_client_on)
            .field("always_send", &self.always_send)
            .field("audit", &self.audit)
            .finish_non_exhaustive()
    }
}

/// Why the engine could not start or finish an operation.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The configuration cannot be served (e.g. a pool outside its subnet).
    #[error("configuration: {0}")]
    Config(String),
    /// The lease store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Packet and drop counters (plain atomics, read with [`Engine::stats`]).
#[derive(Debug, Default)]
struct Counters {
    received: [AtomicU64; MAX_MESSAGE_TYPE + 1],
    sent: [AtomicU64; MAX_MESSAGE_TYPE + 1],
    drops: [AtomicU64; 12],
    dropped_by_callout: AtomicU64,
    suppressed_by_callout: AtomicU64,
}

/// A snapshot of the engine's counters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EngineStats {
    /// Requests received, by DHCP message type (index = option 53 value; index 0 = BOOTP).
    pub received: [u64; MAX_MESSAGE_TYPE + 1],
    /// Replies sent, by DHCP message type (index 0 = BOOTREPLY).
    pub sent: [u64; MAX_MESSAGE_TYPE + 1],
    /// Drops by reason (every reason except `Processed`, in code order).
    pub drops: Vec<(DropReason, u64)>,
    /// Packets the callout dropped in NewPkt (`ProcessIt = FALSE`).
    pub dropped_by_callout: u64,
    /// Replies the callout suppressed in PktSend (size 0).
    pub suppressed_by_callout: u64,
}

fn drop_index(reason: DropReason) -> usize {
    DropReason::ALL
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(0)
}

/// Lets a caller see whether the lease lock is held right now (tests and diagnostics; the callout
/// crate's trace uses the [`LeaseLockHeld`] token instead).
#[derive(Clone)]
pub struct LeaseLockProbe(Arc<Mutex<LeaseTable>>);

impl LeaseLockProbe {
    /// True when some thread (possibly the caller) holds the lease lock.
    pub fn is_locked(&self) -> bool {
        matches!(self.0.try_lock(), Err(std::sync::TryLockError::WouldBlock))
    }
}

impl std::fmt::Debug for LeaseLockProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseLockProbe")
            .field("locked", &self.is_locked())
            .finish()
    }
}

/// The DHCP server logic: implements [`PacketHandler`] for the runtime's workers.
pub struct Engine {
    config: ServerConfig,
    scopes: Vec<ScopeRt>,
    options: EngineOptions,
    hooks: Arc<dyn Hooks>,
    store: Box<dyn LeaseStore>,
    prober: Arc<dyn Prober>,
    table: Arc<Mutex<LeaseTable>>,
    counters: Counters,
    last_ticket: AtomicU64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("scopes", &self.scopes.len())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// What the lease transaction of a REQUEST decided.
enum Verdict {
    Ack {
        ip: u32,
        lease_secs: u32,
        renewed: bool,
    },
    Nak {
        alt: Ipv4Addr,
    },
}

/// Everything about one request the handlers need.
#[derive(Clone, Copy)]
struct Exchange<'a> {
    packet: &'a [u8],
    request: &'a Request<'a>,
    key: &'a [u8],
    /// The scope that serves the request (in a superscope, possibly not the one the link selected).
    scope: &'a ScopeRt,
    scope_index: usize,
    /// The scope the relay address or arrival interface selected.
    selected: usize,
    if_addr: Ipv4Addr,
    dst_addr: Ipv4Addr,
    server_id: Ipv4Addr,
    ctx: PktContext,
    now: u64,
    /// The highest ticket of this packet's changes left to the runtime (`defer_commits`).
    uncommitted: &'a Cell<Option<CommitTicket>>,
}

impl<'a> Exchange<'a> {
    /// The same request, served by scope `index` of the superscope.
    fn in_scope(&self, index: usize, scope: &'a ScopeRt) -> Self {
        Exchange {
            scope,
            scope_index: index,
            ..*self
        }
    }
}

/// The option 81 (client FQDN, RFC 4702) a client's option 81 is answered with, as Microsoft's
/// server answers under its default DNS settings ("update only if requested by the client"): the
/// client's S bit kept (S = 1: the server updates A and PTR; S = 0: the client updates A, the server
/// the PTR), O = 0 (nothing overridden), E as the client's, N echoed with S cleared, RCODE1 and RCODE2
/// 255, and the client's name. See docs/dhcp.md section 5 (calloutd itself sends no DNS update).
fn fqdn_answer(sent: &[u8]) -> Option<Vec<u8>> {
    const S: u8 = 0x01;
    const E: u8 = 0x04;
    const N: u8 = 0x08;
    let (&flags, rest) = sent.split_first()?;
    let name = rest.get(2..)?;
    let mut out = Vec::with_capacity(sent.len());
    let answer = if flags & N != 0 {
        N | (flags & E)
    } else {
        flags & (S | E)
    };
    out.extend_from_slice(&[answer, 255, 255]);
    out.extend_from_slice(name);
    Some(out)
}

/// Windows' `DNS_ERROR_NO_DNS_SERVERS` (9852, "no DNS servers configured for local system"): the
/// DnsRegError of the DNS update calloutd cannot send.
const DNS_ERROR_NO_DNS_SERVERS: u32 = 9852;

/// The name a server-side DNS update would register for a client's option 81 (RFC 4702), or `None`
/// when the client asks the server not to update (N = 1) or sends no name. The name is dotted text:
/// the canonical wire encoding (E = 1) is decoded, the deprecated ASCII one taken as it is.
fn fqdn_update_name(sent: &[u8]) -> Option<String> {
    const E: u8 = 0x04;
    const N: u8 = 0x08;
    let (&flags, rest) = sent.split_first()?;
    let raw = rest.get(2..)?;
    if flags & N != 0 {
        return None;
    }
    let name = if flags & E != 0 {
        let mut labels = Vec::new();
        let mut at = 0;
        while let Some(&len) = raw.get(at) {
            if len == 0 {
                break;
            }
            let label = raw.get(at + 1..at + 1 + usize::from(len))?;
            labels.push(String::from_utf8_lossy(label).into_owned());
            at += 1 + usize::from(len);
        }
        labels.join(".")
    } else {
        String::from_utf8_lossy(raw)
            .trim_end_matches(['\0', '.'])
            .to_owned()
    };
    (!name.is_empty()).then_some(name)
}

/// What a client's request tells policies and option resolution about it.
fn client_facts<'r>(request: &Request<'r>) -> ClientFacts<'r> {
    let fqdn_name = request
        .fqdn
        .and_then(|f| f.get(3..))
        .filter(|n| !n.is_empty());
    ClientFacts {
        mac: request.chaddr,
        client_id: request.client_id,
        user_class: request.user_class,
        vendor_class: request.vendor_class,
        relay_agent: request.relay_agent,
        fqdn: fqdn_name.or(request.host_name),
    }
}

/// What an address search needs to know about the client.
struct Want<'w> {
    scope_index: usize,
    key: &'w [u8],
    now: u64,
    /// Option 50, if sent.
    requested: Option<u32>,
    policies: &'w PolicyMatch<'w>,
}

/// A reply before PktSend.
struct Built {
    bytes: Vec<u8>,
    dest: SocketAddrV4,
    delay: Duration,
    message_type: u8,
    /// The audit event of the lease this reply grants, and its address: written once the lease is
    /// durable (at once, or in finish after the runtime's commit), never for a withheld reply.
    grant: Option<(AuditEventId, Ipv4Addr)>,
}

/// The lock token, created only while `guard` (the lease lock) is alive.
fn lock_token<'g>(guard: &'g MutexGuard<'_, LeaseTable>) -> LeaseLockHeld<'g> {
    LeaseLockHeld::new(guard)
}

/// The periodic lease backups of [`Engine::start_backups`]; stopping (or dropping) it waits for a
/// backup under way and ends the thread.
pub struct BackupSchedule(Ticker);

impl BackupSchedule {
    /// Stops the backups (a backup under way finishes first).
    pub fn stop(mut self) {
        self.0.stop();
    }
}

impl std::fmt::Debug for BackupSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackupSchedule")
    }
}

/// Starts each scope's search for a free address past the addresses at its start that stored
/// leases hold. The first new client would otherwise walk past them all under the lease lock: with
/// 1 000 000 stored leases (115 000 of them at the start of the served scope) that walk stalled the
/// server long enough, at 8 000 exchanges/s, to overflow both socket buffers. The result is the one
/// the first search would find: a held lease is never free for another client, and its own client
/// gets it before any search (`choose`).
fn skip_leading_leases(table: &mut LeaseTable, scopes: &[ScopeRt]) {
    for (index, scope) in scopes.iter().enumerate() {
        let mut ip = scope.start;
        while ip < scope.end
            && table
                .slots
                .get(&ip)
                .is_some_and(|slot| slot.state == SlotState::Active)
        {
            ip += 1;
        }
        if let Some(cursor) = table.cursors.get_mut(index) {
            *cursor = ip;
        }
    }
}

impl Engine {
    /// Builds an engine over `config` and restores the leases in `store`.
    pub fn new(
        config: ServerConfig,
        options: EngineOptions,
        hooks: Arc<dyn Hooks>,
        store: Box<dyn LeaseStore>,
        prober: Arc<dyn Prober>,
    ) -> Result<Engine, EngineError> {
        let mut scopes = config
            .scopes
            .iter()
            .map(|scope| ScopeRt::build(&config, scope))
            .collect::<Result<Vec<_>, _>>()
            .map_err(EngineError::Config)?;
        // Superscope (multinet) members: scopes with the same SuperScopeName, compared as Microsoft
        // compares names (case-insensitive).
        for (i, scope) in config.scopes.iter().enumerate() {
            let Some(name) = scope.superscope_name.as_deref().filter(|n| !n.is_empty()) else {
                continue;
            };
            scopes[i].siblings = config
                .scopes
                .iter()
                .enumerate()
                .filter(|(j, other)| {
                    *j != i
                        && other
                            .superscope_name
                            .as_deref()
                            .is_some_and(|n| n.eq_ignore_ascii_case(name))
                })
                .map(|(j, _)| j)
                .collect();
        }
        let mut table = LeaseTable {
            cursors: scopes.iter().map(|s| s.start).collect(),
            exhausted: vec![None; scopes.len()],
            ..LeaseTable::default()
        };
        // Straight from the store's rows into the table (sized once from the row count): no
        // vector of every lease on the way, which at 1 000 000 leases was ~150 MB of the peak.
        store.load_into(&mut table)?;
        skip_leading_leases(&mut table, &scopes);
        Ok(Engine {
            config,
            scopes,
            options,
            hooks,
            store,
            prober,
            table: Arc::new(Mutex::new(table)),
            counters: Counters::default(),
            last_ticket: AtomicU64::new(0),
        })
    }

    /// The configuration being served.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The audit log, when on (the runtime writes 00/01/02 to it: [`AuditLog::started`] …).
    pub fn audit_log(&self) -> Option<&Arc<AuditLog>> {
        self.options.audit.as_ref()
    }

    /// Writes an audit event about the request in `x` (never called under the lease lock).
    fn audit_packet(
        &self,
        x: &Exchange<'_>,
        id: AuditEventId,
        ip: Option<Ipv4Addr>,
        description: Option<&str>,
    ) {
        self.audit_request(x.request, id, ip, description);
    }

    /// Writes an audit event about `request`.
    fn audit_request(
        &self,
        request: &Request<'_>,
        id: AuditEventId,
        ip: Option<Ipv4Addr>,
        description: Option<&str>,
    ) {
        if let Some(audit) = &self.options.audit {
            audit.record(&AuditRecord {
                id,
                description,
                ip,
                host_name: request.host_name,
                mac: request.chaddr,
                transaction_id: Some(request.xid),
                vendor_class: request.vendor_class,
                user_class: request.user_class,
                relay_agent: request.relay_agent,
                dns_reg_error: 0,
            });
        }
    }

    /// The DNS events of an ACK for `ip` (docs/dhcp.md section 5): when the client's option 81 leaves
    /// an update to the server (N = 0: the PTR record, or A and PTR with S = 1), 30 "DNS Update
    /// Request" for its name, then 35 "DNS Update Request Failed" with `DNS_ERROR_NO_DNS_SERVERS`,
    /// since calloutd has no DNS server to send it to. Written as Microsoft's DNS thread writes them:
    /// address and name, no MAC, xid 0, QResult 6.
    fn audit_dns(&self, request: &Request<'_>, ip: Ipv4Addr) {
        let Some(audit) = &self.options.audit else {
            return;
        };
        let Some(name) = request.fqdn.and_then(fqdn_update_name) else {
            return;
        };
        let request = AuditRecord {
            ip: Some(ip),
            host_name: Some(name.as_bytes()),
            ..AuditRecord::new(AuditEventId::DnsUpdateRequest)
        };
        audit.record(&request);
        audit.record(&AuditRecord {
            id: AuditEventId::DnsRequestFailed,
            dns_reg_error: DNS_ERROR_NO_DNS_SERVERS,
            ..request
        });
    }

    /// The audit lines of a durable grant to `request`: event `id` for `ip`, and after an ACK's
    /// (10, 11) the DNS events.
    fn audit_grant(&self, request: &Request<'_>, id: AuditEventId, ip: Ipv4Addr) {
        self.audit_request(request, id, Some(ip), None);
        if matches!(id, AuditEventId::Assign | AuditEventId::Renew) {
            self.audit_dns(request, ip);
        }
    }

    /// [`Engine::audit_grant`] for a held reply whose lease is now durable: the request is parsed
    /// again from the packet's bytes (the ones the reply was built from) and the address is the
    /// reply's yiaddr, as built (before PktSend).
    fn audit_held_grant(&self, packet: &[u8], reply: &[u8], id: AuditEventId) {
        if self.options.audit.is_none() {
            return;
        }
        let Some(yiaddr) = reply.get(16..20).and_then(|b| <[u8; 4]>::try_from(b).ok()) else {
            return;
        };
        match Request::parse(packet) {
            Ok(request) => self.audit_grant(&request, id, Ipv4Addr::from(yiaddr)),
            Err(error) => tracing::warn!("audit event {} not written: {error}", id.code()),
        }
    }

    /// Writes 14 (or 22) as Microsoft does: the scope's subnet address, no client fields, xid 0 and
    /// QResult 6.
    fn audit_scope_full(&self, x: &Exchange<'_>, id: AuditEventId) {
        if let Some(audit) = &self.options.audit {
            audit.record(&AuditRecord {
                ip: Some(x.scope.scope_id),
                ..AuditRecord::new(id)
            });
        }
    }

    /// Writes an audit event about a lease (administrative delete, expiry).
    fn audit_lease(&self, id: AuditEventId, lease: &Lease) {
        if let Some(audit) = &self.options.audit {
            audit.record(&AuditRecord {
                ip: Some(lease.ip),
                host_name: lease.host_name.as_deref().map(str::as_bytes),
                mac: &lease.hw_address,
                ..AuditRecord::new(id)
            });
        }
    }

    /// Where scope `index`'s search for a free address starts (tests).
    #[cfg(test)]
    pub(crate) fn search_cursor(&self, index: usize) -> u32 {
        self.lock().cursors[index]
    }

    /// A handle that tells whether the lease lock is held (for tests and diagnostics).
    pub fn lease_lock_probe(&self) -> LeaseLockProbe {
        LeaseLockProbe(Arc::clone(&self.table))
    }

    fn lock(&self) -> MutexGuard<'_, LeaseTable> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_secs(&self) -> u64 {
        unix_secs(self.options.clock.now())
    }

    fn note_ticket(&self, ticket: CommitTicket) -> CommitTicket {
        self.last_ticket.fetch_max(ticket.0, Ordering::Relaxed);
        ticket
    }

    /// Takes the leases of an `Export-DhcpServer -Leases` file into the lease store and table (see
    /// [`crate::import`]): never over a lease that exists here, for its address or its client.
    pub fn import_leases(
        &self,
        exported: &[calloutd_config::ImportedLease],
    ) -> Result<ImportReport, EngineError> {
        let now = self.options.clock.now();
        let mut report = ImportReport::default();
        let mut last = None;
        {
            let mut table = self.lock();
            for one in exported {
                let lease = match lease_from_export(one, now) {
                    Ok(lease) => lease,
                    Err(NotImported::NotActive) => {
                        report.not_active += 1;
                        continue;
                    }
                    Err(NotImported::Expired) => {
                        report.expired += 1;
                        continue;
                    }
                    Err(NotImported::BadExpiry(text)) => {
                        report.bad_expiry.push((one.ip_address, text));
                        continue;
                    }
                };
                let ip = u32::from(lease.ip);
                if self.scope_for(lease.ip).is_none() {
                    report.outside_scopes += 1;
                    continue;
                }
                let address_taken = table
                    .slots
                    .get(&ip)
                    .is_some_and(|slot| slot.state == SlotState::Active);
                if address_taken || table.client(&lease.client_id).active.is_some() {
                    report.already_leased += 1;
                    continue;
                }
                table.restore(&lease.row());
                last = Some(self.note_ticket(self.store.put(lease)));
                report.imported += 1;
            }
        }
        if let Some(ticket) = last {
            self.store.commit(ticket)?;
        }
        Ok(report)
    }

    /// Every lease (active or expired but not yet purged), by address.
    pub fn leases(&self) -> Vec<Lease> {
        let table = self.lock();
        let mut leases: Vec<Lease> = table
            .slots
            .iter()
            .filter(|(_, slot)| slot.state == SlotState::Active)
            .map(|(&ip, slot)| slot.to_lease(ip, &table.policies))
            .collect();
        drop(table);
        leases.sort_by_key(|l| l.ip);
        leases
    }

    /// Administrative delete: DeleteClient under the lease lock, then the lease is removed and the
    /// removal committed. Returns the deleted lease, or `None` when `ip` has no lease.
    pub fn delete_lease(&self, ip: Ipv4Addr) -> Result<Option<Lease>, EngineError> {
        let key = u32::from(ip);
        let (lease, ticket) = {
            let mut table = self.lock();
            let Some(slot) = table.slots.get(&key) else {
                return Ok(None);
            };
            if slot.state != SlotState::Active {
                return Ok(None);
            }
            let lease = slot.to_lease(key, &table.policies);
            self.hooks
                .delete_client(&lock_token(&table), ip, &lease.hw_address);
            table.free_slot(key);
            (lease, self.note_ticket(self.store.remove(ip)))
        };
        self.audit_lease(AuditEventId::Deleted, &lease);
        self.store.commit(ticket)?;
        Ok(Some(lease))
    }

    /// Removes every lease whose grace period ([`EngineOptions::expired_grace`]) ended at or before
    /// `now` (DeleteClient for each, under the lease lock; the address stays its client's preferred
    /// one) and forgets lapsed offers and probations. Returns how many leases were removed.
    ///
    /// Audit: 24 (cleanup begins), 17 for each removed lease, 25 (the statistics).
    pub fn purge_expired(&self, now: SystemTime) -> Result<usize, EngineError> {
        let now = unix_secs(now);
        let grace = self.options.expired_grace.as_secs();
        let mut last = None;
        let mut purged = Vec::new();
        if let Some(audit) = &self.options.audit {
            audit.record(&AuditRecord::new(AuditEventId::CleanupBegin));
        }
        {
            let mut table = self.lock();
            let mut expired: Vec<(u32, SlotState)> = table
                .slots
                .iter()
                .filter(|(_, s)| match s.state {
                    SlotState::Released => false,
                    SlotState::Active => s.until.saturating_add(grace) <= now,
                    SlotState::Offered | SlotState::Probation => s.until <= now,
                })
                .map(|(&ip, s)| (ip, s.state))
                .collect();
            expired.sort_unstable_by_key(|(ip, _)| *ip);
            for (ip, state) in expired {
                if state == SlotState::Active {
                    let Some(lease) = table.lease(ip) else {
                        continue;
                    };
                    self.hooks
                        .delete_client(&lock_token(&table), lease.ip, &lease.hw_address);
                    table.release(ip);
                    last = Some(self.note_ticket(self.store.remove(lease.ip)));
                    purged.push(lease);
                } else {
                    table.free_slot(ip);
                }
            }
        }
        if let Some(audit) = &self.options.audit {
            for lease in &purged {
                self.audit_lease(AuditEventId::Expired, lease);
            }
            let stats = format!(
                "{n} leases expired and {n} leases deleted",
                n = purged.len()
            );
            audit.record(&AuditRecord {
                description: Some(&stats),
                ..AuditRecord::new(AuditEventId::CleanupStats)
            });
        }
        if let Some(ticket) = last {
            self.store.commit(ticket)?;
        }
        Ok(purged.len())
    }

    /// Waits until every lease change made so far is durable (call before exiting).
    pub fn flush(&self) -> Result<(), EngineError> {
        let ticket = CommitTicket(self.last_ticket.load(Ordering::Relaxed));
        if ticket.0 > 0 {
            self.store.commit(ticket)?;
        }
        Ok(())
    }

    /// Backs the lease database up into the file `dest` (see [`LeaseStore::backup`]), after
    /// committing every change made so far, so the copy holds every lease granted up to now.
    pub fn backup(&self, dest: &Path) -> Result<BackupReport, EngineError> {
        self.flush()?;
        Ok(self.store.backup(dest)?)
    }

    /// Backs the lease database up into `dest` every `every` (the registry's `BackupInterval`), on
    /// a thread of its own, until the returned schedule is stopped or dropped. Each backup is
    /// logged; a failed one is an error in the log, and the next one is tried at its time.
    pub fn start_backups(
        self: &Arc<Self>,
        dest: PathBuf,
        every: Duration,
    ) -> std::io::Result<BackupSchedule> {
        let engine = Arc::clone(self);
        let ticker = Ticker::start("lease-backup", every, move || match engine.backup(&dest) {
            Ok(report) => tracing::info!(
                "lease database backed up to {} ({} leases, {} bytes)",
                report.file.display(),
                report.leases,
                report.bytes
            ),
            Err(error) => tracing::error!("{error}"),
        })?;
        Ok(BackupSchedule(ticker))
    }

    /// The counters so far.
    pub fn stats(&self) -> EngineStats {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut stats = EngineStats {
            dropped_by_callout: load(&self.counters.dropped_by_callout),
            suppressed_by_callout: load(&self.counters.suppressed_by_callout),
            ..EngineStats::default()
        };
        for (i, value) in self.counters.received.iter().enumerate() {
            stats.received[i] = load(value);
        }
        for (i, value) in self.counters.sent.iter().enumerate() {
            stats.sent[i] = load(value);
        }
        stats.drops = DropReason::ALL
            .iter()
            .filter(|r| **r != DropReason::Processed)
            .map(|r| (*r, load(&self.counters.drops[drop_index(*r)])))
            .collect();
        stats
    }

    fn scope_for(&self, link: Ipv4Addr) -> Option<usize> {
        let link = u32::from(link);
        self.scopes.iter().position(|s| s.in_subnet(link))
    }

    /// PktSend for a built reply, with the counters: the bytes to send, `None` when PktSend
    /// suppressed it, a drop reason when PktSend faulted.
    fn send_hook(
        &self,
        bytes: &mut Vec<u8>,
        message_type: u8,
        if_addr: Ipv4Addr,
        ctx: PktContext,
    ) -> Result<bool, DropReason> {
        if let Err(fault) = self.hooks.pkt_send(bytes, if_addr, ctx) {
            tracing::warn!("PktSend fault, reply dropped: {}", fault.0);
            return Err(DropReason::Invalid);
        }
        if bytes.is_empty() {
            self.counters
                .suppressed_by_callout
                .fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        if let Some(counter) = self.counters.sent.get(usize::from(message_type)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        Ok(true)
    }

    /// The packet's last hooks: PktDrop(`reason`) when it was dropped, then PktDrop(PROCESSED).
    fn end_packet(
        &self,
        packet: &mut Vec<u8>,
        dropped: Option<DropReason>,
        if_addr: Ipv4Addr,
        ctx: PktContext,
    ) {
        if let Some(reason) = dropped {
            self.counters.drops[drop_index(reason)].fetch_add(1, Ordering::Relaxed);
            self.hooks.pkt_drop(packet, reason, if_addr, ctx);
        }
        self.hooks
            .pkt_drop(packet, DropReason::Processed, if_addr, ctx);
    }

    /// The active scopes that may serve a request whose link selected scope `selected`: that scope
    /// first (when active), then the other active scopes of its superscope in config order.
    fn members(&self, selected: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(selected)
            .chain(self.scopes[selected].siblings.iter().copied())
            .filter(|&i| self.scopes[i].active)
    }

    /// Which scope serves a request whose link selected `selected`. Outside a superscope that is
    /// `selected`. In one: for a request about an address (REQUEST, INFORM, DECLINE, RELEASE) the
    /// member whose subnet holds it; for a DISCOVER or BOOTP request the member of the client's
    /// reservation, else of its current binding, else the first member (selected first) with an
    /// address for it. Allocation later tries this scope first and the other members after it.
    fn serving_scope(&self, request: &Request<'_>, selected: usize, key: &[u8], now: u64) -> usize {
        if self.scopes[selected].siblings.is_empty() {
            return selected;
        }
        let ciaddr = (!request.ciaddr.is_unspecified()).then_some(request.ciaddr);
        let address = match request.message_type {
            None | Some(DISCOVER) => None,
            _ => request.requested_ip.or(ciaddr),
        };
        if let Some(ip) = address {
            let ip = u32::from(ip);
            return self
                .members(selected)
                .find(|&i| self.scopes[i].in_subnet(ip))
                .unwrap_or(selected);
        }
        let bootp = request.message_type.is_none();
        if let Some(i) = self.members(selected).find(|&i| {
            self.scopes[i]
                .reservation_for(request.client_id, request.htype, request.chaddr)
                .is_some_and(|r| kind_serves(r.kind, bootp))
        }) {
            return i;
        }
        let mut table = self.lock();
        let record = table.client(key);
        for ip in [record.active, record.offer].into_iter().flatten() {
            if let Some(i) = self
                .members(selected)
                .find(|&i| self.scopes[i].is_pool_address(ip))
            {
                return i;
            }
        }
        let requested = request.requested_ip.map(u32::from);
        for i in self.members(selected) {
            let policies = self.policy_match(i, request);
            let want = Want {
                scope_index: i,
                key,
                now,
                requested,
                policies: &policies,
            };
            if self.choose(&mut table, &want, None, true).is_ok() {
                return i;
            }
        }
        selected
    }

    /// The policies the client of `request` matches in scope `scope_index` (none when the scope has
    /// policies off or none exist).
    fn policy_match(&self, scope_index: usize, request: &Request<'_>) -> PolicyMatch<'_> {
        if !self.scopes[scope_index].has_policies {
            return PolicyMatch::default();
        }
        PolicyMatch::of(
            &self.config,
            &self.config.scopes[scope_index],
            &client_facts(request),
        )
    }

    /// Steps 2-7 of the pipeline: everything between NewPkt and the final PktDrop.
    fn process(
        &self,
        packet: &mut Vec<u8>,
        datagram_addrs: (Ipv4Addr, Ipv4Addr),
        ctx: PktContext,
        admission: Admission,
        outcome: &mut Outcome,
    ) -> Result<Option<Reply>, DropReason> {
        let (if_addr, dst_addr) = datagram_addrs;
        let built = {
            let request = Request::parse(packet).map_err(|error| {
                tracing::debug!("dropping datagram for {if_addr}: {error}");
                DropReason::Invalid
            })?;
            let message_type = request.message_type.unwrap_or(0);
            outcome.request_type = Some(message_type);
            if let Some(counter) = self.counters.received.get(usize::from(message_type)) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            // The relay's address selects the scope; a unicast from a client that has an address
            // (a renewal or INFORM sent straight to us, also by a client that was relayed before)
            // is in its own address's scope; else the arrival interface's.
            let link = if !request.giaddr.is_unspecified() {
                request.giaddr
            } else if !request.ciaddr.is_unspecified() && self.scope_for(request.ciaddr).is_some() {
                request.ciaddr
            } else {
                if_addr
            };
            // Identity: option 61, else htype + chaddr (on the stack: no allocation per packet).
            let mut key_buf = [0u8; 17];
            let key: &[u8] = match request.client_id {
                Some(id) if !id.is_empty() => id,
                _ => {
                    key_buf[0] = request.htype;
                    key_buf[1..=request.chaddr.len()].copy_from_slice(request.chaddr);
                    &key_buf[..=request.chaddr.len()]
                }
            };
            let now = self.now_secs();
            let selected = self.scope_for(link);
            // The serving scope is settled before HandleOptions so that its ScopeId is the scope
            // that serves (docs/dhcp.md section 3).
            let scope_index = selected.map(|i| self.serving_scope(&request, i, key, now));
            self.hooks
                .handle_options(packet, ctx, scope_index.map(|i| self.scopes[i].scope_id));
            if let Admission::Drop(reason) = admission {
                return Err(reason);
            }
            if request.hops > MAX_HOPS {
                return Err(DropReason::Invalid);
            }
            let (Some(selected), Some(scope_index)) = (selected, scope_index) else {
                return Err(DropReason::NoSubnets);
            };
            let scope = &self.scopes[scope_index];
            if !scope.active {
                return Err(DropReason::NoSubnets);
            }
            if !self.config.filters.allows(request.chaddr) {
                return Err(DropReason::Unauth);
            }
            if request.chaddr.is_empty() && request.client_id.is_none_or(<[u8]>::is_empty) {
                // Neither chaddr nor option 61: nothing to tell this client from any other.
                return Err(DropReason::Invalid);
            }
            let uncommitted = Cell::new(None);
            let exchange = Exchange {
                packet,
                request: &request,
                key,
                scope,
                scope_index,
                selected,
                if_addr,
                dst_addr,
                server_id: self.options.server_id_override.unwrap_or(if_addr),
                ctx,
                now,
                uncommitted: &uncommitted,
            };
            let built = match request.message_type {
                None => self.bootp(&exchange),
                Some(DISCOVER) => self.discover(&exchange).map(Some),
                Some(REQUEST) => self.request(&exchange),
                Some(DECLINE) => self.decline(&exchange),
                Some(RELEASE) => self.release(&exchange),
                Some(INFORM) => Ok(Some(self.inform(&exchange))),
                Some(_) => Err(DropReason::Invalid),
            };
            // Changes made before a later step failed still have to be committed.
            outcome.uncommitted = uncommitted.get();
            let built = built?;
            if let Some((id, ip)) = built.as_ref().and_then(|b| b.grant) {
                // A lease already durable is logged now; one the runtime still commits, in finish.
                if outcome.uncommitted.is_none() {
                    self.audit_grant(&request, id, ip);
                }
            }
            built
        };
        let Some(mut built) = built else {
            return Ok(None);
        };
        outcome.reply_type = Some(built.message_type);
        if outcome.uncommitted.is_some() {
            // PktSend only once the lease is durable: the runtime commits, then calls finish.
            outcome.held = Some(HeldReply {
                reply: Reply {
                    bytes: built.bytes,
                    dest: built.dest,
                    source: if_addr,
                    delay: built.delay,
                },
                reply_type: built.message_type,
                packet: Vec::new(),
                if_addr,
                ctx,
                grant_event: built.grant.map(|(id, _)| id.code()),
            });
            return Ok(None);
        }
        match self.send_hook(&mut built.bytes, built.message_type, if_addr, ctx) {
            Ok(true) => {}
            Ok(false) => {
                outcome.reply_type = None;
                return Ok(None);
            }
            Err(reason) => {
                outcome.reply_type = None;
                return Err(reason);
            }
        }
        Ok(Some(Reply {
            bytes: built.bytes,
            dest: built.dest,
            source: if_addr,
            delay: built.delay,
        }))
    }

    /// Picks an address for a DISCOVER or BOOTP request and holds it as an offer, probing it first
    /// when conflict detection is on. Returns the address and whether it is the client's current lease.
    fn pick_address(
        &self,
        x: &Exchange<'_>,
        reservation: Option<&ReservationRt>,
        client_type: ClientType,
        policies: &PolicyMatch<'_>,
    ) -> Result<(u32, bool), DropReason> {
        let want = Want {
            scope_index: x.scope_index,
            key: x.key,
            now: x.now,
            requested: x.request.requested_ip.map(u32::from),
            policies,
        };
        let attempts = self.config.settings.conflict_detection_attempts;
        let hold_until = x.now.saturating_add(self.options.offer_hold.as_secs());
        for _ in 0..MAX_CONFLICT_RETRIES {
            let (ip, own_lease) = {
                let mut table = self.lock();
                let ip = self.choose(&mut table, &want, reservation, false)?;
                let own_lease = table.client(x.key).active == Some(ip);
                if !own_lease {
                    if client_type == ClientType::Bootp {
                        self.check_bootp_cap(&table, x)?;
                    }
                    table.claim(
                        ip,
                        x.key,
                        SlotState::Offered,
                        hold_until,
                        x.request.htype,
                        x.request.chaddr,
                        client_type,
                        x.request.host_name,
                    );
                }
                (ip, own_lease)
            };
            let probe = attempts > 0 && !own_lease && reservation.is_none();
            if probe && self.prober.probe(Ipv4Addr::from(ip), attempts) {
                {
                    let mut table = self.lock();
                    table.probation(ip, self.bad_address_until(x));
                    self.hooks.address_del(
                        &lock_token(&table),
                        x.packet,
                        ProbCode::Conflict,
                        x.if_addr,
                        Ipv4Addr::from(ip),
                        x.ctx,
                    );
                }
                self.audit_packet(x, AuditEventId::Conflict, Some(Ipv4Addr::from(ip)), None);
                continue;
            }
            return Ok((ip, own_lease));
        }
        Err(DropReason::NoAddress)
    }

    /// Address choice (RFC 2131 4.3.1) in scope `want.scope_index`: reservation, current binding,
    /// offer, previous address, requested address, then a free address. Policies (docs/dhcp.md section 2):
    /// a client matching scope policies with IP ranges gets a new address only from those ranges,
    /// policy by policy in processing order; any other client only from outside every policy range.
    /// `dry`: find an address without moving the scope's search cursor (serving-scope selection).
    fn choose(
        &self,
        table: &mut LeaseTable,
        want: &Want<'_>,
        reservation: Option<&ReservationRt>,
        dry: bool,
    ) -> Result<u32, DropReason> {
        let (key, now) = (want.key, want.now);
        if let Some(reservation) = reservation {
            return if table.is_free_for(reservation.ip, key, now) {
                Ok(reservation.ip)
            } else {
                Err(DropReason::NoAddress)
            };
        }
        let index = want.scope_index;
        let scope = &self.scopes[index];
        let record = table.client(key);
        // The client's binding and outstanding offer stay its own whatever range they are in.
        for candidate in [record.active, record.offer].into_iter().flatten() {
            if scope.is_pool_address(candidate) && table.is_free_for(candidate, key, now) {
                return Ok(candidate);
            }
        }
        let ranged: Vec<&calloutd_config::Policy> = want.policies.range_policies().collect();
        let allowed = |ip: u32| {
            if ranged.is_empty() {
                !scope.in_policy_range(ip)
            } else {
                ranged.iter().any(|p| {
                    p.ip_ranges
                        .iter()
                        .any(|r| u32::from(r.start_range) <= ip && ip <= u32::from(r.end_range))
                })
            }
        };
        for candidate in [record.previous, want.requested].into_iter().flatten() {
            if scope.is_pool_address(candidate)
                && allowed(candidate)
                && table.is_free_for(candidate, key, now)
            {
                return Ok(candidate);
            }
        }
        if !ranged.is_empty() {
            // Policy ranges, lowest address first; when every matching policy's ranges are full
            // the client gets nothing (it does not fall back to the common pool).
            for policy in &ranged {
                for range in &policy.ip_ranges {
                    let lo = u32::from(range.start_range).max(scope.start);
                    let hi = u32::from(range.end_range).min(scope.end);
                    for ip in lo..=hi {
                        if scope.is_pool_address(ip) && table.is_free_for(ip, key, now) {
                            return Ok(ip);
                        }
                    }
                }
            }
            return Err(DropReason::NoAddress);
        }
        if let Some((freed, retry_at)) = table.exhausted[index] {
            // Nothing was free last time and nothing has been freed since: skip the full scan.
            if freed == table.freed && now < retry_at {
                return Err(DropReason::NoAddress);
            }
        }
        let size = u64::from(scope.end - scope.start) + 1;
        let cursor = table.cursors[index].clamp(scope.start, scope.end);
        let offset = u64::from(cursor - scope.start);
        let mut next_lapse = u64::MAX;
        for step in 0..size {
            let ip = scope.start + ((offset + step) % size) as u32;
            if !scope.is_pool_address(ip) || scope.in_policy_range(ip) {
                continue;
            }
            if table.is_free_for(ip, key, now) {
                if !dry {
                    table.cursors[index] = if ip == scope.end { scope.start } else { ip + 1 };
                }
                table.exhausted[index] = None;
                return Ok(ip);
            }
            if let Some(slot) = table.slots.get(&ip) {
                if matches!(slot.state, SlotState::Offered | SlotState::Probation) {
                    next_lapse = next_lapse.min(slot.until);
                }
            }
        }
        table.exhausted[index] = Some((table.freed, next_lapse));
        Err(DropReason::NoAddress)
    }

    /// The scope's `MaxBootpClients` cap, for a BOOTP client getting a new address.
    fn check_bootp_cap(&self, table: &LeaseTable, x: &Exchange<'_>) -> Result<(), DropReason> {
        let Some(cap) = x.scope.max_bootp_clients else {
            return Ok(());
        };
        let in_use = table
            .slots
            .iter()
            .filter(|(ip, s)| {
                s.client_type() == ClientType::Bootp
                    && s.state == SlotState::Active
                    && x.scope.start <= **ip
                    && **ip <= x.scope.end
            })
            .count();
        if in_use >= cap as usize {
            return Err(DropReason::NoAddress);
        }
        Ok(())
    }

    /// The lease the client gets in `x.scope`: a matching policy's duration, else the scope's.
    fn lease_secs(&self, x: &Exchange<'_>, policies: &PolicyMatch<'_>) -> u32 {
        policies
            .lease_duration()
            .map(|d| {
                u32::try_from(d.as_secs())
                    .unwrap_or(u32::MAX)
                    .min(INFINITE_LEASE - 1)
            })
            .or(x.scope.lease_secs)
            .unwrap_or(INFINITE_LEASE)
    }

    /// A DISCOVER: an offer from the serving scope, else (superscope) from the other active members
    /// in order.
    fn discover(&self, x: &Exchange<'_>) -> Result<Built, DropReason> {
        let order = std::iter::once(x.scope_index)
            .chain(self.members(x.selected).filter(|&i| i != x.scope_index));
        let mut last = DropReason::NoAddress;
        for index in order {
            let xs = x.in_scope(index, &self.scopes[index]);
            if xs.scope.kind == ScopeType::Bootp {
                continue;
            }
            let reservation = self.reservation(&xs, false);
            let policies = self.policy_match(index, xs.request);
            match self.pick_address(&xs, reservation, ClientType::Dhcp, &policies) {
                Ok((ip, _)) => {
                    let lease = self.lease_secs(&xs, &policies);
                    return Ok(self.build_reply(
                        &xs,
                        reservation,
                        &policies,
                        OFFER,
                        Ipv4Addr::from(ip),
                        Some(lease),
                    ));
                }
                Err(DropReason::NoAddress) => {}
                Err(reason) => last = reason,
            }
        }
        if last == DropReason::NoAddress {
            self.audit_scope_full(x, AuditEventId::ScopeFull);
        }
        Err(last)
    }

    fn reservation<'s>(&self, x: &Exchange<'s>, bootp: bool) -> Option<&'s ReservationRt> {
        x.scope
            .reservation_for(x.request.client_id, x.request.htype, x.request.chaddr)
            .filter(|r| kind_serves(r.kind, bootp))
    }

    fn request(&self, x: &Exchange<'_>) -> Result<Option<Built>, DropReason> {
        if x.scope.kind == ScopeType::Bootp {
            return Err(DropReason::NoAddress);
        }
        let reservation = self.reservation(x, false);
        let request = x.request;
        let mut ticket = None;
        let mut policies = self.policy_match(x.scope_index, request);
        let verdict = {
            let mut table = self.lock();
            let record = table.client(x.key);
            let valid = |table: &LeaseTable, ip: u32| {
                let assignable = match reservation {
                    Some(r) => r.ip == ip,
                    None => x.scope.is_pool_address(ip),
                };
                assignable && table.is_free_for(ip, x.key, x.now)
            };
            let ciaddr = (!request.ciaddr.is_unspecified()).then_some(u32::from(request.ciaddr));
            let ok_ip = if let Some(server_id) = request.server_id {
                // SELECTING.
                if server_id != x.server_id {
                    if let Some(offer) = record.offer {
                        table.free_slot(offer);
                    }
                    return Err(DropReason::WrongServer);
                }
                let ip = request
                    .requested_ip
                    .map(u32::from)
                    .or(ciaddr)
                    .ok_or(DropReason::Invalid)?;
                let ours = record.offer == Some(ip)
                    || record.active == Some(ip)
                    || reservation.is_some_and(|r| r.ip == ip);
                (ours && valid(&table, ip)).then_some(ip).ok_or(ip)
            } else if let (Some(requested), None) = (request.requested_ip, ciaddr) {
                // INIT-REBOOT.
                let ip = u32::from(requested);
                if !x.scope.in_subnet(ip) {
                    Err(ip)
                } else if reservation.is_none() && record.is_empty() {
                    // No record of this client: it may be another server's (RFC 2131 4.3.2).
                    return Err(DropReason::WrongServer);
                } else {
                    let known = reservation.is_some_and(|r| r.ip == ip)
                        || (reservation.is_none()
                            && [record.active, record.offer, record.previous].contains(&Some(ip)));
                    (known && valid(&table, ip)).then_some(ip).ok_or(ip)
                }
            } else if let Some(ip) = ciaddr {
                // RENEWING (unicast) or REBINDING (broadcast): only the client's lease is extended.
                let rebinding = x.dst_addr.is_broadcast()
                    || x.dst_addr == Ipv4Addr::from(x.scope.network | !x.scope.mask);
                tracing::trace!(
                    "{} of {}",
                    if rebinding { "REBINDING" } else { "RENEWING" },
                    request.ciaddr
                );
                if rebinding && reservation.is_none() && record.is_empty() {
                    // A broadcast from a client we never served: another server's, stay silent.
                    return Err(DropReason::WrongServer);
                }
                let known = match reservation {
                    Some(r) => r.ip == ip,
                    None => record.active == Some(ip),
                };
                (x.scope.in_subnet(ip) && known && valid(&table, ip))
                    .then_some(ip)
                    .ok_or(ip)
            } else {
                return Err(DropReason::Invalid);
            };
            match ok_ip {
                Ok(ip) => {
                    let granted = table
                        .slots
                        .get(&ip)
                        .filter(|s| s.owner.as_deref() == Some(x.key))
                        .and_then(|s| s.policy)
                        .and_then(|id| table.policies.name(id));
                    if policies.scope.is_empty() && x.scope.has_policies {
                        // Renewals keep the policy the lease was granted under, also when the
                        // renewal no longer shows what matched (e.g. option 82 on a unicast renew).
                        if let Some(name) = granted {
                            policies.scope.extend(
                                self.config.scopes[x.scope_index]
                                    .policies
                                    .iter()
                                    .find(|p| p.enabled && p.name.eq_ignore_ascii_case(name)),
                            );
                        }
                    }
                    let lease_secs = self.lease_secs(x, &policies);
                    let until = if lease_secs == INFINITE_LEASE {
                        NEVER
                    } else {
                        x.now.saturating_add(u64::from(lease_secs))
                    };
                    // A reservation (or any new address) replaces the client's older lease.
                    if let Some(old) = record.active.filter(|old| *old != ip) {
                        table.free_slot(old);
                        self.store.remove(Ipv4Addr::from(old));
                    }
                    let renewed = table.claim(
                        ip,
                        x.key,
                        SlotState::Active,
                        until,
                        request.htype,
                        request.chaddr,
                        ClientType::Dhcp,
                        request.host_name,
                    );
                    if let Some(policy) = policies.scope.first() {
                        table.set_policy(ip, &policy.name);
                    }
                    if let Some(lease) = table.lease(ip) {
                        ticket = Some(self.note_ticket(self.store.put(lease)));
                    }
                    self.hooks.address_offer(
                        &lock_token(&table),
                        x.packet,
                        if renewed {
                            GiveCode::Old
                        } else {
                            GiveCode::New
                        },
                        x.if_addr,
                        Ipv4Addr::from(ip),
                        ClientType::Dhcp,
                        lease_secs,
                        x.ctx,
                    );
                    Verdict::Ack {
                        ip,
                        lease_secs,
                        renewed,
                    }
                }
                Err(ip) => {
                    if let Some(offer) = record.offer {
                        table.free_slot(offer);
                    }
                    self.hooks.address_del(
                        &lock_token(&table),
                        x.packet,
                        ProbCode::Nacked,
                        x.if_addr,
                        Ipv4Addr::from(ip),
                        x.ctx,
                    );
                    Verdict::Nak {
                        alt: Ipv4Addr::from(ip),
                    }
                }
            }
        };
        match verdict {
            Verdict::Ack {
                ip,
                lease_secs,
                renewed,
            } => {
                // Durability outside the lease lock: the ACK goes out only once committed.
                if let Some(ticket) = ticket {
                    self.settle(x, ticket).map_err(|error| {
                        tracing::error!("lease for {} not committed: {error}", Ipv4Addr::from(ip));
                        DropReason::InternalError
                    })?;
                }
                let id = if renewed {
                    AuditEventId::Renew
                } else {
                    AuditEventId::Assign
                };
                let mut built = self.build_reply(
                    x,
                    reservation,
                    &policies,
                    ACK,
                    Ipv4Addr::from(ip),
                    Some(lease_secs),
                );
                built.grant = Some((id, Ipv4Addr::from(ip)));
                Ok(Some(built))
            }
            Verdict::Nak { alt } => {
                tracing::debug!("NAK {alt} to xid {:#x}", request.xid);
                self.audit_packet(x, AuditEventId::Nack, Some(alt), None);
                Ok(Some(self.build_reply(
                    x,
                    None,
                    &PolicyMatch::default(),
                    NAK,
                    Ipv4Addr::UNSPECIFIED,
                    None,
                )))
            }
        }
    }

    /// DeleteClient for the lease on `ip` (under the lease lock), with the lease's own hardware address.
    fn delete_client_before_removal(&self, table: &MutexGuard<'_, LeaseTable>, ip: u32) {
        if let Some(slot) = table.slots.get(&ip) {
            self.hooks
                .delete_client(&lock_token(table), Ipv4Addr::from(ip), slot.hw_address());
        }
    }

    /// When a declined or conflicting address returns to the pool: after the scope's lease time
    /// (Microsoft), or [`EngineOptions::probation`] when set.
    fn bad_address_until(&self, x: &Exchange<'_>) -> u64 {
        let secs = match self.options.probation {
            Some(probation) => probation.as_secs(),
            None => match x.scope.lease_secs {
                Some(secs) if secs != INFINITE_LEASE => u64::from(secs),
                _ => return NEVER,
            },
        };
        x.now.saturating_add(secs)
    }

    /// A REQUEST, DECLINE or RELEASE naming another server is not ours.
    fn check_server_id(&self, x: &Exchange<'_>) -> Result<(), DropReason> {
        match x.request.server_id {
            Some(id) if id != x.server_id => Err(DropReason::WrongServer),
            _ => Ok(()),
        }
    }

    fn decline(&self, x: &Exchange<'_>) -> Result<Option<Built>, DropReason> {
        self.check_server_id(x)?;
        let Some(ip) = x
            .request
            .requested_ip
            .or_else(|| (!x.request.ciaddr.is_unspecified()).then_some(x.request.ciaddr))
        else {
            return Err(DropReason::Invalid);
        };
        let key = u32::from(ip);
        let ticket = {
            let mut table = self.lock();
            let owned = table.slots.get(&key).and_then(|s| {
                (s.owner.as_deref() == Some(x.key)
                    && matches!(s.state, SlotState::Offered | SlotState::Active))
                .then_some(s.state)
            });
            let Some(state) = owned else {
                return Ok(None);
            };
            if state == SlotState::Active
                && self.options.delete_client_on == DeleteClientOn::AlsoReleaseAndDecline
            {
                self.delete_client_before_removal(&table, key);
            }
            table.probation(key, self.bad_address_until(x));
            let ticket =
                (state == SlotState::Active).then(|| self.note_ticket(self.store.remove(ip)));
            self.hooks.address_del(
                &lock_token(&table),
                x.packet,
                ProbCode::Decline,
                x.if_addr,
                ip,
                x.ctx,
            );
            ticket
        };
        // The client found the address in use: Microsoft's event 13.
        self.audit_packet(x, AuditEventId::Conflict, Some(ip), Some("Declined"));
        self.commit_quietly(x, ticket);
        Ok(None)
    }

    /// Commits a change no reply waits for (RELEASE, DECLINE): a failure is logged, not a drop.
    fn commit_quietly(&self, x: &Exchange<'_>, ticket: Option<CommitTicket>) {
        if let Some(ticket) = ticket {
            if let Err(error) = self.settle(x, ticket) {
                tracing::error!("{error}");
            }
        }
    }

    /// Makes the packet's change `ticket` durable now, or leaves it to the runtime
    /// ([`EngineOptions::defer_commits`]) through [`Outcome::uncommitted`].
    fn settle(&self, x: &Exchange<'_>, ticket: CommitTicket) -> Result<(), StoreError> {
        if self.options.defer_commits {
            x.uncommitted
                .set(Some(x.uncommitted.get().map_or(ticket, |t| t.max(ticket))));
            Ok(())
        } else {
            self.store.commit(ticket)
        }
    }

    fn release(&self, x: &Exchange<'_>) -> Result<Option<Built>, DropReason> {
        self.check_server_id(x)?;
        let ip = x.request.ciaddr;
        let key = u32::from(ip);
        let ticket = {
            let mut table = self.lock();
            let owned = table
                .slots
                .get(&key)
                .is_some_and(|s| s.owner.as_deref() == Some(x.key) && s.state == SlotState::Active);
            if !owned {
                return Ok(None);
            }
            if self.options.delete_client_on == DeleteClientOn::AlsoReleaseAndDecline {
                self.delete_client_before_removal(&table, key);
            }
            table.release(key);
            let ticket = self.note_ticket(self.store.remove(ip));
            self.hooks.address_del(
                &lock_token(&table),
                x.packet,
                ProbCode::Release,
                x.if_addr,
                ip,
                x.ctx,
            );
            ticket
        };
        self.audit_packet(x, AuditEventId::Release, Some(ip), None);
        self.commit_quietly(x, Some(ticket));
        Ok(None)
    }

    fn inform(&self, x: &Exchange<'_>) -> Built {
        let reservation = self.reservation(x, false);
        let policies = self.policy_match(x.scope_index, x.request);
        self.build_reply(x, reservation, &policies, ACK, Ipv4Addr::UNSPECIFIED, None)
    }

    fn bootp(&self, x: &Exchange<'_>) -> Result<Option<Built>, DropReason> {
        if x.scope.kind == ScopeType::Dhcp {
            return Err(DropReason::NoAddress);
        }
        let reservation = self.reservation(x, true);
        let policies = self.policy_match(x.scope_index, x.request);
        let (ip, own_lease) = self
            .pick_address(x, reservation, ClientType::Bootp, &policies)
            .inspect_err(|reason| {
                if *reason == DropReason::NoAddress {
                    self.audit_scope_full(x, AuditEventId::BootpScopeFull);
                }
            })?;
        let ticket = {
            let mut table = self.lock();
            table.claim(
                ip,
                x.key,
                SlotState::Active,
                NEVER,
                x.request.htype,
                x.request.chaddr,
                ClientType::Bootp,
                None,
            );
            let ticket = table
                .lease(ip)
                .map(|lease| self.note_ticket(self.store.put(lease)));
            self.hooks.address_offer(
                &lock_token(&table),
                x.packet,
                if own_lease {
                    GiveCode::Old
                } else {
                    GiveCode::New
                },
                x.if_addr,
                Ipv4Addr::from(ip),
                ClientType::Bootp,
                INFINITE_LEASE,
                x.ctx,
            );
            ticket
        };
        if let Some(ticket) = ticket {
            self.settle(x, ticket).map_err(|error| {
                tracing::error!(
                    "BOOTP lease for {} not committed: {error}",
                    Ipv4Addr::from(ip)
                );
                DropReason::InternalError
            })?;
        }
        let id = if reservation.is_some() {
            AuditEventId::BootpAssign
        } else {
            AuditEventId::DynamicBootpAssign
        };
        let mut built = self.build_reply(x, reservation, &policies, 0, Ipv4Addr::from(ip), None);
        built.grant = Some((id, Ipv4Addr::from(ip)));
        Ok(Some(built))
    }

    /// Encodes a reply (`message_type` 0 = BOOTREPLY) and works out where it goes (RFC 2131 4.1).
    fn build_reply(
        &self,
        x: &Exchange<'_>,
        reservation: Option<&ReservationRt>,
        policies: &PolicyMatch<'_>,
        message_type: u8,
        yiaddr: Ipv4Addr,
        lease_secs: Option<u32>,
    ) -> Built {
        let request = x.request;
        let relayed = !request.giaddr.is_unspecified();
        let nak = message_type == NAK;
        let mut flags = request.flags;
        if relayed && (nak || self.options.ignore_broadcast_flag) {
            flags |= BROADCAST_FLAG;
        }
        let ciaddr = match message_type {
            ACK | 0 => request.ciaddr,
            _ => Ipv4Addr::UNSPECIFIED,
        };
        let dest = if relayed {
            SocketAddrV4::new(request.giaddr, SERVER_PORT)
        } else if nak || self.options.ignore_broadcast_flag || request.ciaddr.is_unspecified() {
            // The runtime cannot ARP-inject, so a client without an address gets a broadcast.
            SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT)
        } else {
            SocketAddrV4::new(request.ciaddr, CLIENT_PORT)
        };
        let limit = match request.max_message_size {
            Some(max) => usize::from(max)
                .saturating_sub(28)
                .clamp(DEFAULT_MAX_REPLY_LEN, 1472),
            None => DEFAULT_MAX_REPLY_LEN,
        };
        let vendor = message_type != 0 || request.has_cookie;
        let header = ReplyHeader {
            flags,
            ciaddr,
            yiaddr,
            siaddr: Ipv4Addr::UNSPECIFIED,
        };
        let mut writer = ReplyWriter::new(request, header, vendor, limit);
        // Room kept for the options that must come last (61, 82) and END.
        let reserve = request.client_id.map_or(0, |id| option_wire_len(id.len()))
            + request.relay_agent.map_or(0, |r| option_wire_len(r.len()))
            + 1;
        if message_type != 0 {
            writer.option(53, &[message_type], reserve);
            writer.option(54, &x.server_id.octets(), reserve);
        }
        if let Some(lease) = lease_secs {
            writer.option(51, &lease.to_be_bytes(), reserve);
            if lease != INFINITE_LEASE {
                let t1 = lease / 2;
                let t2 = (u64::from(lease) * 7 / 8) as u32;
                writer.option(58, &t1.to_be_bytes(), reserve);
                writer.option(59, &t2.to_be_bytes(), reserve);
            }
        }
        if !nak {
            let facts = client_facts(request);
            let source = OptionSource::for_client(
                &self.config,
                x.scope_index,
                x.scope,
                reservation,
                &facts,
                policies,
            );
            // Boot server (66) and file (67) also go in sname/file, and a server given as an address
            // in siaddr, for BOOTP and PXE clients that read only the header.
            let boot_server = source.get(66);
            let next_server = boot_server
                .and_then(|s| std::str::from_utf8(s).ok())
                .and_then(|s| s.trim_end_matches('\0').parse::<Ipv4Addr>().ok());
            writer.boot_fields(next_server, boot_server, source.get(67));
            if message_type != 0 {
                writer.allow_overload();
            }
            writer.option(1, &x.scope.mask.to_be_bytes(), reserve);
            let mut written = [false; 256];
            if lease_secs.is_some() {
                if let Some(answer) = request.fqdn.and_then(fqdn_answer) {
                    writer.option(81, &answer, reserve);
                    written[81] = true;
                }
            }
            let mut send = |writer: &mut ReplyWriter, code: u8| {
                if !written[usize::from(code)] {
                    written[usize::from(code)] = true;
                    if let Some(value) = source.get(code) {
                        writer.option(code, value, reserve);
                    }
                }
            };
            match request.parameter_list {
                Some(list) => list.iter().for_each(|&code| send(&mut writer, code)),
                // No list (BOOTP, or a client that asks for nothing in particular): everything set.
                None => (2..=254).for_each(|code| send(&mut writer, code)),
            }
            for &code in &self.options.always_send {
                send(&mut writer, code);
            }
        }
        if let Some(id) = request.client_id {
            writer.option(61, id, 1);
        }
        if let Some(relay_agent) = request.relay_agent {
            writer.option(82, relay_agent, 1);
        }
        Built {
            bytes: writer.finish(),
            dest,
            delay: if message_type == OFFER {
                self.config.scopes[x.scope_index].delay
            } else {
                Duration::ZERO
            },
            message_type,
            grant: None,
        }
    }
}

impl PacketHandler for Engine {
    fn handle(&self, datagram: Datagram, admission: Admission) -> Outcome {
        let Datagram {
            bytes: mut packet,
            if_addr,
            dst_addr,
            peer: _,
        } = datagram;
        let mut ctx: PktContext = 0;
        let mut outcome = Outcome::default();
        let dropped = match self.hooks.new_pkt(&mut packet, if_addr, &mut ctx) {
            Ok(true) => {
                match self.process(
                    &mut packet,
                    (if_addr, dst_addr),
                    ctx,
                    admission,
                    &mut outcome,
                ) {
                    Ok(reply) => {
                        outcome.reply = reply;
                        None
                    }
                    Err(reason) => Some(reason),
                }
            }
            Ok(false) => {
                self.counters
                    .dropped_by_callout
                    .fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(fault) => {
                tracing::warn!("NewPkt fault, packet dropped: {}", fault.0);
                Some(DropReason::Invalid)
            }
        };
        if let Some(held) = outcome.held.as_mut() {
            // The packet ends in finish, after the commit.
            held.packet = packet;
            return outcome;
        }
        outcome.dropped = dropped;
        self.end_packet(&mut packet, dropped, if_addr, ctx);
        outcome
    }

    fn commit(&self, ticket: CommitTicket) -> Result<(), CommitError> {
        self.store
            .commit(ticket)
            .map_err(|e| CommitError(e.to_string()))
    }

    /// After the commit: PktSend and PktDrop(PROCESSED); a failed commit withholds the reply with
    /// PktDrop(`DHCP_DROP_INTERNAL_ERROR`) first.
    fn finish(&self, held: HeldReply, committed: bool) -> Option<Reply> {
        let HeldReply {
            mut reply,
            reply_type,
            mut packet,
            if_addr,
            ctx,
            grant_event,
        } = held;
        if committed {
            if let Some(id) = grant_event.and_then(AuditEventId::from_code) {
                self.audit_held_grant(&packet, &reply.bytes, id);
            }
        }
        let sent = if committed {
            self.send_hook(&mut reply.bytes, reply_type, if_addr, ctx)
        } else {
            Err(DropReason::InternalError)
        };
        let (reply, dropped) = match sent {
            Ok(true) => (Some(reply), None),
            Ok(false) => (None, None),
            Err(reason) => (None, Some(reason)),
        };
        self.end_packet(&mut packet, dropped, if_addr, ctx);
        reply
    }
}
