//! The scenario file (TOML, documented in docs/scenarios.md): reading it with spans, and checking
//! every rule so that a bad file is reported as `file:line: rule` before anything runs.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use calloutd_callout::{HeldLocks, HookName, MisbehaviourKind};
use calloutd_client::RawOption;
use dhcpssdk::{ControlCode, DropReason, GiveCode, ProbCode, DHCP_SEND_PACKET};
use serde::Deserialize;
use toml::Spanned;

/// One rule a scenario file breaks, with where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// The scenario file.
    pub file: PathBuf,
    /// 1-based line (0 when the file could not be read).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        }
    }
}

/// A checked scenario, ready to run.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Its name (`name =`, else the file stem).
    pub name: String,
    /// The file it came from.
    pub path: PathBuf,
    /// `.reg` files, resolved against the scenario's folder.
    pub reg: Vec<PathBuf>,
    /// The scope file, resolved against the scenario's folder.
    pub scopes: PathBuf,
    /// The server's interface address, if set.
    pub server: Option<Ipv4Addr>,
    /// Slow-hook thresholds (under a lock, without one), if set.
    pub slow: Option<(Duration, Duration)>,
    /// Environment variables for the callout's entry point.
    pub env: Vec<(String, String)>,
    /// A hook call not back within this is a hang (isolated mode), if set.
    pub hook_timeout: Option<Duration>,
    /// The callout crashes or hangs on purpose: run only isolated (skipped in-process).
    pub isolated_only: bool,
    /// The clients, by name.
    pub clients: Vec<Client>,
    /// The steps in order.
    pub steps: Vec<Step>,
}

/// A scripted client.
#[derive(Debug, Clone)]
pub struct Client {
    /// Its name in the scenario.
    pub name: String,
    /// chaddr.
    pub mac: [u8; 6],
    /// Option 61.
    pub client_id: Option<Vec<u8>>,
    /// Option 12.
    pub hostname: Option<String>,
    /// Option 60.
    pub vendor_class: Option<Vec<u8>>,
    /// Option 77.
    pub user_class: Option<Vec<u8>>,
    /// Option 55.
    pub request_list: Vec<u8>,
    /// Option 82 and any `CODE = HEX` option.
    pub options: Vec<RawOption>,
    /// Relayed through this giaddr (unicast to the server from port 67).
    pub relay: Option<Ipv4Addr>,
    /// `hops` of relayed messages.
    pub hops: u8,
    /// Sets the BROADCAST flag.
    pub broadcast_flag: bool,
}

/// What a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// DHCPDISCOVER.
    Discover,
    /// DHCPREQUEST in SELECTING (server id and requested address of the last offer).
    Request,
    /// DHCPREQUEST in INIT-REBOOT (requested address, no server id), broadcast.
    InitReboot,
    /// DHCPREQUEST in RENEWING (ciaddr, unicast).
    Renew,
    /// DHCPREQUEST in REBINDING (ciaddr, broadcast).
    Rebind,
    /// DHCPRELEASE (unicast).
    Release,
    /// DHCPDECLINE.
    Decline,
    /// DHCPINFORM (ciaddr).
    Inform,
    /// A BOOTP BOOTREQUEST.
    Bootp,
}

impl Message {
    const NAMES: [(&'static str, Message); 9] = [
        ("discover", Message::Discover),
        ("request", Message::Request),
        ("init-reboot", Message::InitReboot),
        ("renew", Message::Renew),
        ("rebind", Message::Rebind),
        ("release", Message::Release),
        ("decline", Message::Decline),
        ("inform", Message::Inform),
        ("bootp", Message::Bootp),
    ];

    /// The name used in scenarios.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, m)| *m == self)
            .map_or("?", |(n, _)| n)
    }
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum Action {
    /// A client sends a message.
    Send {
        /// Index into [`Scenario::clients`].
        client: usize,
        /// Which message.
        message: Message,
        /// Option 50 instead of the client's own choice.
        requested_ip: Option<Ipv4Addr>,
        /// Option 54 instead of the client's own choice.
        server_id: Option<Ipv4Addr>,
        /// ciaddr instead of the client's own choice.
        ciaddr: Option<Ipv4Addr>,
        /// The transaction id instead of a fresh one.
        xid: Option<u32>,
        /// A drop the runtime decides before the engine (`arrive`).
        runtime_drop: Option<DropReason>,
    },
    /// Raw bytes, as a client would send them (broadcast to the server).
    Raw(Vec<u8>),
    /// Pause the service.
    Pause,
    /// Continue it.
    Continue,
    /// Move the clock and purge expired leases.
    Advance(Duration),
    /// Delete the lease on this address.
    Delete(Ipv4Addr),
    /// Make lease commits fail, or work again.
    StoreFailing(bool),
    /// Nothing: only check the expectations.
    Check,
}

/// One step.
#[derive(Debug, Clone)]
pub struct Step {
    /// Its line in the file.
    pub line: usize,
    /// What it does.
    pub action: Action,
    /// What must be true afterwards.
    pub expect: Expect,
}

/// The reply a step expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyExpect {
    /// No reply at all.
    None,
    /// A reply of this DHCP message type (0: a BOOTREPLY without option 53).
    Type(u8),
}

/// The drop a step expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropExpect {
    /// Not dropped.
    None,
    /// Dropped for this reason (PktDrop with it).
    Reason(DropReason),
    /// Dropped by the callout (NewPkt set ProcessIt = FALSE).
    Callout,
}

/// An expectation about one reply option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionExpect {
    /// Present, any value.
    Present,
    /// Absent.
    Absent,
    /// Exactly these bytes.
    Bytes(Vec<u8>),
    /// This number, big-endian in however many bytes the option has.
    Number(u64),
}

/// An expected lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseExpect {
    /// The address.
    pub ip: Ipv4Addr,
    /// The hardware address, if given.
    pub mac: Option<Vec<u8>>,
    /// The host name, if given.
    pub hostname: Option<String>,
}

/// A hook call to look for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSpec {
    /// The hook.
    pub hook: HookName,
    /// Its code argument.
    pub code: Option<u32>,
    /// Its `IpAddress` argument.
    pub ip: Option<Ipv4Addr>,
    /// Its `AltAddress` argument.
    pub alt: Option<Ipv4Addr>,
    /// The locks held.
    pub lock: Option<HeldLocks>,
}

/// What must be true after a step.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// The reply's type, or no reply.
    pub reply: Option<ReplyExpect>,
    /// The reply's yiaddr.
    pub yiaddr: Option<Ipv4Addr>,
    /// Dropped (and why) or not.
    pub drop: Option<DropExpect>,
    /// Reply options.
    pub options: Vec<(u8, OptionExpect)>,
    /// The whole lease table, by address.
    pub leases: Option<Vec<LeaseExpect>>,
    /// How many leases there are.
    pub lease_count: Option<usize>,
    /// Hook calls that happened, in this order.
    pub hooks: Vec<HookSpec>,
    /// `hooks` is every call of the step, not a subsequence.
    pub hooks_exact: bool,
    /// Hook calls that did not happen.
    pub not_hooks: Vec<HookSpec>,
    /// The misbehaviour expected (empty: none); `None`: none is allowed either.
    pub misbehaviour: Vec<MisbehaviourKind>,
}

// ---- the file as TOML ----

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    #[allow(dead_code)]
    description: Option<String>,
    reg: Option<Spanned<OneOrMany>>,
    scopes: Option<Spanned<String>>,
    server: Option<Spanned<String>>,
    slow_hook_ms: Option<Spanned<u64>>,
    slow_unlocked_hook_ms: Option<Spanned<u64>>,
    hook_timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    isolated_only: bool,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    clients: BTreeMap<String, Spanned<RawClient>>,
    #[serde(default)]
    step: Vec<Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    mac: Spanned<String>,
    client_id: Option<Spanned<String>>,
    hostname: Option<String>,
    vendor_class: Option<String>,
    user_class: Option<String>,
    relay_agent: Option<Spanned<String>>,
    #[serde(default)]
    request_list: Vec<u8>,
    #[serde(default)]
    options: BTreeMap<String, Spanned<String>>,
    relay: Option<Spanned<String>>,
    hops: Option<u8>,
    #[serde(default)]
    broadcast_flag: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    client: Option<Spanned<String>>,
    send: Option<Spanned<String>>,
    action: Option<Spanned<String>>,
    by: Option<Spanned<String>>,
    ip: Option<Spanned<String>>,
    raw: Option<Spanned<String>>,
    requested_ip: Option<Spanned<String>>,
    server_id: Option<Spanned<String>>,
    ciaddr: Option<Spanned<String>>,
    xid: Option<u32>,
    arrive: Option<Spanned<String>>,
    #[allow(dead_code)]
    note: Option<String>,
    expect: Option<Spanned<RawExpect>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    reply: Option<Spanned<String>>,
    yiaddr: Option<Spanned<String>>,
    drop: Option<Spanned<String>>,
    #[serde(default)]
    options: BTreeMap<String, Spanned<toml::Value>>,
    leases: Option<Vec<Spanned<RawLease>>>,
    lease_count: Option<usize>,
    #[serde(default)]
    hooks: Vec<Spanned<RawHook>>,
    #[serde(default)]
    hooks_exact: bool,
    #[serde(default)]
    not_hooks: Vec<Spanned<RawHook>>,
    #[serde(default)]
    misbehaviour: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLease {
    ip: String,
    mac: Option<String>,
    hostname: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawHook {
    Short(String),
    Full(RawHookTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHookTable {
    hook: String,
    code: Option<toml::Value>,
    ip: Option<String>,
    alt: Option<String>,
    lock: Option<String>,
}

/// Reads and checks a scenario file. All rule violations found are returned together.
pub fn load(path: &Path) -> Result<Scenario, Vec<ScenarioError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ScenarioError {
            file: path.to_path_buf(),
            line: 0,
            message: format!("cannot read: {e}"),
        }]
    })?;
    parse(path, &text)
}

/// Checks scenario `text` as if read from `path` (relative files resolve against its folder).
pub fn parse(path: &Path, text: &str) -> Result<Scenario, Vec<ScenarioError>> {
    let mut cx = Cx {
        path,
        text,
        line_starts: std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect(),
        errors: Vec::new(),
    };
    let raw: RawScenario = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let line = e.span().map_or(0, |s| cx.line(&s));
            return Err(vec![ScenarioError {
                file: path.to_path_buf(),
                line: line.max(1),
                message: e.message().trim().to_string(),
            }]);
        }
    };
    let scenario = cx.check(raw);
    if cx.errors.is_empty() {
        Ok(scenario)
    } else {
        Err(cx.errors)
    }
}

struct Cx<'a> {
    path: &'a Path,
    text: &'a str,
    /// Where each line starts (a step's line is looked up for every step: scenarios with tens of
    /// thousands of steps must not rescan the text each time).
    line_starts: Vec<usize>,
    errors: Vec<ScenarioError>,
}

impl Cx<'_> {
    fn line(&self, span: &Range<usize>) -> usize {
        let at = span.start.min(self.text.len());
        self.line_starts.partition_point(|start| *start <= at)
    }

    fn error(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let line = self.line(span);
        self.errors.push(ScenarioError {
            file: self.path.to_path_buf(),
            line,
            message: message.into(),
        });
    }

    fn resolve(&self, file: &str) -> PathBuf {
        let folder = self.path.parent().unwrap_or_else(|| Path::new("."));
        folder.join(file)
    }

    fn ip(&mut self, value: &Spanned<String>, what: &str) -> Option<Ipv4Addr> {
        match value.get_ref().parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.error(
                    &value.span(),
                    format!("{what} must be an IPv4 address, not {:?}", value.get_ref()),
                );
                None
            }
        }
    }

    fn hex(&mut self, value: &Spanned<String>, what: &str) -> Option<Vec<u8>> {
        match calloutd_client::parse_hex(value.get_ref()) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                self.error(&value.span(), format!("{what} must be hex bytes: {e}"));
                None
            }
        }
    }

    fn check(&mut self, raw: RawScenario) -> Scenario {
        let whole = 0..0;
        let reg = match &raw.reg {
            Some(reg) => match reg.get_ref() {
                OneOrMany::One(one) => vec![self.resolve(one)],
                OneOrMany::Many(many) => many.iter().map(|f| self.resolve(f)).collect(),
            },
            None => Vec::new(),
        };
        let scopes = match &raw.scopes {
            Some(scopes) => self.resolve(scopes.get_ref()),
            None => {
                self.error(&whole, "`scopes` is required: the scope file (netsh dump or Export-DhcpServer XML), relative to this file");
                PathBuf::new()
            }
        };
        let server = raw.server.as_ref().and_then(|s| self.ip(s, "`server`"));
        let slow = match (&raw.slow_hook_ms, &raw.slow_unlocked_hook_ms) {
            (None, None) => None,
            (locked, unlocked) => {
                let locked = locked
                    .as_ref()
                    .map_or(calloutd_callout::DEFAULT_SLOW_THRESHOLD, |ms| {
                        Duration::from_millis(*ms.get_ref())
                    });
                let unlocked = unlocked.as_ref().map_or(locked.saturating_mul(10), |ms| {
                    Duration::from_millis(*ms.get_ref())
                });
                Some((locked, unlocked))
            }
        };
        let hook_timeout = match &raw.hook_timeout_ms {
            Some(ms) if *ms.get_ref() == 0 => {
                self.error(&ms.span(), "`hook_timeout_ms` must be at least 1");
                None
            }
            Some(ms) => Some(Duration::from_millis(*ms.get_ref())),
            None => None,
        };
        let mut clients = Vec::new();
        let mut names = Vec::new();
        for (name, client) in &raw.clients {
            names.push(name.clone());
            if let Some(client) = self.client(name, client) {
                clients.push(client);
            }
        }
        let mut steps = Vec::new();
        if raw.step.is_empty() {
            self.error(&whole, "a scenario needs at least one [[step]]");
        }
        for step in &raw.step {
            if let Some(step) = self.step(step, &names) {
                steps.push(step);
            }
        }
        let name = raw.name.clone().unwrap_or_else(|| {
            self.path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        Scenario {
            name,
            path: self.path.to_path_buf(),
            reg,
            scopes,
            server,
            slow,
            env: raw.env.into_iter().collect(),
            hook_timeout,
            isolated_only: raw.isolated_only,
            clients,
            steps,
        }
    }

    fn client(&mut self, name: &str, spanned: &Spanned<RawClient>) -> Option<Client> {
        let raw = spanned.get_ref();
        let mac = match calloutd_client::parse_mac(raw.mac.get_ref()) {
            Ok(mac) => Some(mac),
            Err(e) => {
                self.error(&raw.mac.span(), format!("client {name}: `mac`: {e}"));
                None
            }
        };
        let client_id = raw
            .client_id
            .as_ref()
            .and_then(|v| self.hex(v, "`client_id`"));
        let mut options = Vec::new();
        if let Some(agent) = &raw.relay_agent {
            if let Some(data) = self.hex(agent, "`relay_agent` (option 82)") {
                options.push(RawOption { code: 82, data });
            }
        }
        for (code, value) in &raw.options {
            let Ok(code) = code.parse::<u8>() else {
                self.error(
                    &value.span(),
                    format!("client {name}: option code {code:?} must be a number 1-254"),
                );
                continue;
            };
            if let Some(data) = self.hex(value, &format!("option {code}")) {
                options.push(RawOption { code, data });
            }
        }
        let relay = raw.relay.as_ref().and_then(|r| self.ip(r, "`relay`"));
        Some(Client {
            name: name.to_string(),
            mac: mac?,
            client_id,
            hostname: raw.hostname.clone(),
            vendor_class: raw.vendor_class.as_ref().map(|v| v.as_bytes().to_vec()),
            user_class: raw.user_class.as_ref().map(|v| v.as_bytes().to_vec()),
            request_list: raw.request_list.clone(),
            options,
            relay,
            hops: raw.hops.unwrap_or(u8::from(relay.is_some())),
            broadcast_flag: raw.broadcast_flag,
        })
    }

    fn step(&mut self, spanned: &Spanned<RawStep>, clients: &[String]) -> Option<Step> {
        let span = spanned.span();
        let raw = spanned.get_ref();
        let line = self.line(&span);
        let opt_ip = |cx: &mut Self, v: &Option<Spanned<String>>, what: &str| {
            v.as_ref().and_then(|v| cx.ip(v, what))
        };
        let action = match (&raw.send, &raw.action, &raw.raw) {
            (Some(send), None, None) => {
                let Some(client_name) = &raw.client else {
                    self.error(&span, "a `send` step needs `client = NAME`");
                    return None;
                };
                // `clients` is in [clients] table order, which is sorted (a BTreeMap).
                let found = clients.binary_search_by(|c| c.as_str().cmp(client_name.get_ref()));
                let Ok(client) = found else {
                    self.error(
                        &client_name.span(),
                        format!(
                            "no client {:?} in [clients] (known: {})",
                            client_name.get_ref(),
                            clients.join(", ")
                        ),
                    );
                    return None;
                };
                let Some(message) = Message::NAMES
                    .iter()
                    .find(|(n, _)| n == send.get_ref())
                    .map(|(_, m)| *m)
                else {
                    let known: Vec<&str> = Message::NAMES.iter().map(|(n, _)| *n).collect();
                    self.error(
                        &send.span(),
                        format!(
                            "unknown message {:?}: one of {}",
                            send.get_ref(),
                            known.join(", ")
                        ),
                    );
                    return None;
                };
                let runtime_drop = match &raw.arrive {
                    None => None,
                    Some(arrive) => match arrive.get_ref().as_str() {
                        "duplicate" => Some(DropReason::Duplicate),
                        "queue-full" => Some(DropReason::NoMem),
                        "late" => Some(DropReason::Timeout),
                        other => {
                            self.error(
                                &arrive.span(),
                                format!(
                                    "unknown `arrive` {other:?}: duplicate, queue-full or late"
                                ),
                            );
                            return None;
                        }
                    },
                };
                Action::Send {
                    client,
                    message,
                    requested_ip: opt_ip(self, &raw.requested_ip, "`requested_ip`"),
                    server_id: opt_ip(self, &raw.server_id, "`server_id`"),
                    ciaddr: opt_ip(self, &raw.ciaddr, "`ciaddr`"),
                    xid: raw.xid,
                    runtime_drop,
                }
            }
            (None, None, Some(bytes)) => Action::Raw(self.hex(bytes, "`raw`")?),
            (None, Some(action), None) => match action.get_ref().as_str() {
                "pause" => Action::Pause,
                "continue" => Action::Continue,
                "check" => Action::Check,
                "store-fails" => Action::StoreFailing(true),
                "store-recovers" => Action::StoreFailing(false),
                "advance" => {
                    let Some(by) = &raw.by else {
                        self.error(
                            &span,
                            "`advance` needs `by = DURATION` (e.g. \"90s\", \"2h\")",
                        );
                        return None;
                    };
                    match parse_duration(by.get_ref()) {
                        Some(d) => Action::Advance(d),
                        None => {
                            self.error(
                                &by.span(),
                                format!(
                                    "`by` must be a duration like 30s, 15m, 2h or 1d, not {:?}",
                                    by.get_ref()
                                ),
                            );
                            return None;
                        }
                    }
                }
                "delete" => {
                    let Some(ip) = &raw.ip else {
                        self.error(&span, "`delete` needs `ip = ADDRESS`");
                        return None;
                    };
                    Action::Delete(self.ip(ip, "`ip`")?)
                }
                other => {
                    self.error(&action.span(), format!("unknown action {other:?}: pause, continue, advance, delete, check, store-fails or store-recovers"));
                    return None;
                }
            },
            _ => {
                self.error(
                    &span,
                    "a step has exactly one of `send` (with `client`), `raw` or `action`",
                );
                return None;
            }
        };
        let expect = match &raw.expect {
            Some(expect) => self.expect(expect)?,
            None => Expect::default(),
        };
        Some(Step {
            line,
            action,
            expect,
        })
    }

    fn expect(&mut self, spanned: &Spanned<RawExpect>) -> Option<Expect> {
        let raw = spanned.get_ref();
        let before = self.errors.len();
        let mut expect = Expect {
            hooks_exact: raw.hooks_exact,
            lease_count: raw.lease_count,
            ..Expect::default()
        };
        if let Some(reply) = &raw.reply {
            expect.reply = match reply_type(reply.get_ref()) {
                Some(r) => Some(r),
                None => {
                    self.error(
                        &reply.span(),
                        format!(
                            "unknown reply {:?}: none, offer, ack, nak or bootreply",
                            reply.get_ref()
                        ),
                    );
                    None
                }
            };
        }
        expect.yiaddr = raw.yiaddr.as_ref().and_then(|y| self.ip(y, "`yiaddr`"));
        if let Some(drop) = &raw.drop {
            let text = drop.get_ref().as_str();
            expect.drop = match text {
                "none" => Some(DropExpect::None),
                "callout" => Some(DropExpect::Callout),
                _ => match parse_code(HookName::PktDrop, text)
                    .and_then(DropReason::from_code)
                    .filter(|r| *r != DropReason::Processed)
                {
                    Some(reason) => Some(DropExpect::Reason(reason)),
                    None => {
                        self.error(&drop.span(), format!("unknown drop {text:?}: none, callout, or a DHCP_DROP_ reason (NOADDRESS, PAUSED...)"));
                        None
                    }
                },
            };
        }
        for (code, value) in &raw.options {
            let Ok(code) = code.parse::<u8>() else {
                self.error(
                    &value.span(),
                    format!("option code {code:?} must be a number"),
                );
                continue;
            };
            let wanted = match value.get_ref() {
                toml::Value::Boolean(true) => OptionExpect::Present,
                toml::Value::Boolean(false) => OptionExpect::Absent,
                toml::Value::Integer(n) if *n >= 0 => OptionExpect::Number(*n as u64),
                toml::Value::String(s) => {
                    if let Ok(ip) = s.parse::<Ipv4Addr>() {
                        OptionExpect::Bytes(ip.octets().to_vec())
                    } else if let Ok(bytes) = calloutd_client::parse_hex(s) {
                        OptionExpect::Bytes(bytes)
                    } else {
                        self.error(&value.span(), format!("option {code}: a string value is hex bytes or an IPv4 address, not {s:?}"));
                        continue;
                    }
                }
                _ => {
                    self.error(&value.span(), format!("option {code}: expected true (present), false (absent), a number, hex bytes or an IPv4 address"));
                    continue;
                }
            };
            expect.options.push((code, wanted));
        }
        if let Some(leases) = &raw.leases {
            let mut wanted = Vec::new();
            for lease in leases {
                let l = lease.get_ref();
                let Ok(ip) = l.ip.parse() else {
                    self.error(
                        &lease.span(),
                        format!("lease ip {:?} is not an IPv4 address", l.ip),
                    );
                    continue;
                };
                let mac = match &l.mac {
                    None => None,
                    Some(m) => match calloutd_client::parse_hex(m) {
                        Ok(b) => Some(b),
                        Err(e) => {
                            self.error(&lease.span(), format!("lease mac: {e}"));
                            continue;
                        }
                    },
                };
                wanted.push(LeaseExpect {
                    ip,
                    mac,
                    hostname: l.hostname.clone(),
                });
            }
            wanted.sort_by_key(|l| l.ip);
            expect.leases = Some(wanted);
        }
        for (list, out) in [
            (&raw.hooks, &mut expect.hooks),
            (&raw.not_hooks, &mut expect.not_hooks),
        ] {
            for hook in list {
                match hook_spec(hook.get_ref()) {
                    Ok(spec) => out.push(spec),
                    Err(e) => self.error(&hook.span(), e),
                }
            }
        }
        for kind in &raw.misbehaviour {
            match MisbehaviourKind::from_name(kind.get_ref()) {
                Some(k) => expect.misbehaviour.push(k),
                None => {
                    let known: Vec<&str> = MisbehaviourKind::ALL.iter().map(|k| k.name()).collect();
                    self.error(
                        &kind.span(),
                        format!(
                            "unknown misbehaviour {:?}: one of {}",
                            kind.get_ref(),
                            known.join(", ")
                        ),
                    );
                }
            }
        }
        (self.errors.len() == before).then_some(expect)
    }
}

/// `offer`, `ack`, `nak`, `bootreply`, `none`.
fn reply_type(name: &str) -> Option<ReplyExpect> {
    Some(match name {
        "none" => ReplyExpect::None,
        "offer" => ReplyExpect::Type(2),
        "ack" => ReplyExpect::Type(5),
        "nak" => ReplyExpect::Type(6),
        "bootreply" => ReplyExpect::Type(0),
        _ => return None,
    })
}

/// `30s`, `15m`, `2h`, `1d`, or plain seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = number.parse().ok()?;
    let secs = match unit.trim() {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// The short name of a hook's code (`NOADDRESS`, `NEW`, `RELEASE`, `PAUSE`, `SEND`).
pub fn code_name(hook: HookName, code: u32) -> Option<&'static str> {
    let full = match hook {
        HookName::Control => ControlCode::from_code(code)?.constant_name(),
        HookName::PktDrop => DropReason::from_code(code)?.constant_name(),
        HookName::AddressDel => ProbCode::from_code(code)?.constant_name(),
        HookName::AddressOffer => GiveCode::from_code(code)?.constant_name(),
        HookName::PktSend if code == DHCP_SEND_PACKET => return Some("SEND"),
        _ => return None,
    };
    Some(
        [
            "DHCP_CONTROL_",
            "DHCP_DROP_",
            "DHCP_PROB_",
            "DHCP_GIVE_ADDRESS_",
        ]
        .iter()
        .find_map(|p| full.strip_prefix(p))
        .unwrap_or(full),
    )
}

/// A code by its short or full name, or a number.
fn parse_code(hook: HookName, text: &str) -> Option<u32> {
    let text = text.trim();
    if let Ok(n) = text.parse::<u32>() {
        return Some(n);
    }
    if let Some(hex) = text.strip_prefix("0x") {
        return u32::from_str_radix(hex, 16).ok();
    }
    let all: Vec<u32> = match hook {
        HookName::Control => ControlCode::ALL.iter().map(|c| c.code()).collect(),
        HookName::PktDrop => DropReason::ALL.iter().map(|c| c.code()).collect(),
        HookName::AddressDel => ProbCode::ALL.iter().map(|c| c.code()).collect(),
        HookName::AddressOffer => GiveCode::ALL.iter().map(|c| c.code()).collect(),
        HookName::PktSend => vec![DHCP_SEND_PACKET],
        _ => Vec::new(),
    };
    all.into_iter().find(|&code| {
        code_name(hook, code).is_some_and(|short| {
            short.eq_ignore_ascii_case(text)
                || short
                    .replace('_', "")
                    .eq_ignore_ascii_case(&text.replace(['_', '-'], ""))
        })
    })
}

fn hook_name(text: &str) -> Result<HookName, String> {
    HookName::ALL
        .into_iter()
        .find(|h| h.trace_name().eq_ignore_ascii_case(text.trim()))
        .ok_or_else(|| {
            let known: Vec<&str> = HookName::ALL.iter().map(|h| h.trace_name()).collect();
            format!("unknown hook {text:?}: one of {}", known.join(", "))
        })
}

fn hook_spec(raw: &RawHook) -> Result<HookSpec, String> {
    let ip = |v: &Option<String>, what: &str| -> Result<Option<Ipv4Addr>, String> {
        v.as_ref()
            .map(|s| {
                s.parse()
                    .map_err(|_| format!("hook `{what}` must be an IPv4 address, not {s:?}"))
            })
            .transpose()
    };
    match raw {
        RawHook::Short(text) => {
            // `Hook` or `Hook(CODE)`.
            let (name, code) = match text.split_once('(') {
                Some((name, rest)) => (name, Some(rest.trim_end_matches(')'))),
                None => (text.as_str(), None),
            };
            let hook = hook_name(name)?;
            let code = code
                .map(|c| parse_code(hook, c).ok_or_else(|| format!("unknown {hook} code {c:?}")))
                .transpose()?;
            Ok(HookSpec {
                hook,
                code,
                ip: None,
                alt: None,
                lock: None,
            })
        }
        RawHook::Full(table) => {
            let hook = hook_name(&table.hook)?;
            let code = match &table.code {
                None => None,
                Some(toml::Value::Integer(n)) => {
                    Some(u32::try_from(*n).map_err(|_| format!("code {n} is out of range"))?)
                }
                Some(toml::Value::String(s)) => {
                    Some(parse_code(hook, s).ok_or_else(|| format!("unknown {hook} code {s:?}"))?)
                }
                Some(other) => return Err(format!("code must be a name or a number, not {other}")),
            };
            let lock = match table.lock.as_deref() {
                None => None,
                Some("none") => Some(HeldLocks::None),
                Some("lease") => Some(HeldLocks::Lease),
                Some("service") => Some(HeldLocks::Service),
                Some(other) => {
                    return Err(format!("unknown lock {other:?}: none, lease or service"))
                }
            };
            Ok(HookSpec {
                hook,
                code,
                ip: ip(&table.ip, "ip")?,
                alt: ip(&table.alt, "alt")?,
                lock,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match parse(Path::new("/s/x.toml"), text) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn a_valid_scenario_resolves_files_and_reads_every_part() {
        let text = r#"
name = "t"
reg = "a.reg"
scopes = "s.txt"
slow_hook_ms = 5
[env]
X = "1"
[clients.pc]
mac = "02:00:00:00:00:01"
client_id = "01020000000001"
hostname = "pc"
relay = "198.18.1.1"
relay_agent = "0104aabbccdd"
options = { 81 = "000000" }
[[step]]
client = "pc"
send = "discover"
expect = { reply = "offer", yiaddr = "198.18.1.10", options = { 51 = 3600, 3 = "198.18.1.1", 6 = false }, hooks = ["NewPkt", "PktDrop(PROCESSED)", { hook = "AddressOffer", code = "NEW", lock = "lease" }] }
[[step]]
action = "advance"
by = "2h"
expect = { lease_count = 0, misbehaviour = ["slow-hook"] }
"#;
        let s = parse(Path::new("/s/x.toml"), text).unwrap();
        assert_eq!(s.reg, vec![PathBuf::from("/s/a.reg")]);
        assert_eq!(s.scopes, PathBuf::from("/s/s.txt"));
        assert_eq!(s.slow.unwrap().0, Duration::from_millis(5));
        assert_eq!(s.clients[0].hops, 1);
        assert_eq!(s.clients[0].options.len(), 2);
        assert_eq!(s.steps.len(), 2);
        assert_eq!(s.steps[0].line, 15);
        let e = &s.steps[0].expect;
        assert_eq!(e.reply, Some(ReplyExpect::Type(2)));
        assert_eq!(e.hooks[1].code, Some(DropReason::Processed.code()));
        assert_eq!(e.hooks[2].lock, Some(HeldLocks::Lease));
        assert_eq!(e.options[0], (3, OptionExpect::Bytes(vec![198, 18, 1, 1])));
        assert!(matches!(s.steps[1].action, Action::Advance(d) if d == Duration::from_secs(7200)));
    }

    #[test]
    fn rule_violations_name_the_line() {
        let text = "scopes = \"s.txt\"\n[clients.pc]\nmac = \"zz\"\n[[step]]\nclient = \"other\"\nsend = \"discover\"\n[[step]]\naction = \"jump\"\n";
        let found = errors(text);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].starts_with("/s/x.toml:3: client pc: `mac`"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("/s/x.toml:5: no client \"other\""),
            "{found:?}"
        );
        assert!(
            found[2].starts_with("/s/x.toml:8: unknown action \"jump\""),
            "{found:?}"
        );
    }

    #[test]
    fn toml_syntax_errors_and_unknown_keys_name_the_line() {
        let found = errors("scopes = \"s\"\n[[step]]\naction = \"check\"\nexpect = { reply = \"ack\", colour = 1 }\n");
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("/s/x.toml:4:"), "{found:?}");
        assert!(found[0].contains("colour"), "{found:?}");
        let found = errors("scopes = \n");
        assert!(found[0].starts_with("/s/x.toml:1:"), "{found:?}");
    }

    #[test]
    fn durations_and_codes_parse_by_name() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("3600"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2 weeks"), None);
        assert_eq!(
            parse_code(HookName::PktDrop, "noaddress"),
            Some(DropReason::NoAddress.code())
        );
        assert_eq!(
            parse_code(HookName::PktDrop, "NO_SUBNETS"),
            Some(DropReason::NoSubnets.code())
        );
        assert_eq!(
            parse_code(HookName::AddressOffer, "OLD"),
            Some(GiveCode::Old.code())
        );
        assert_eq!(
            code_name(HookName::Control, ControlCode::Pause.code()),
            Some("PAUSE")
        );
        assert_eq!(code_name(HookName::PktSend, DHCP_SEND_PACKET), Some("SEND"));
    }
}

#[cfg(test)]
mod doc_tests {
    /// The complete example of docs/scenarios.md is a valid scenario.
    #[test]
    fn the_documented_example_is_valid() {
        let doc = include_str!("../../../docs/scenarios.md");
        let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let end = start + doc[start..].find("```").expect("its end");
        let scenario = super::parse(std::path::Path::new("/d/example.toml"), &doc[start..end])
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(scenario.steps.len(), 3);
        assert_eq!(scenario.clients[0].options.len(), 2);
    }
}
