//! Microsoft DHCP Server's audit log: `DhcpSrvLog-<Day>.log` files, one per weekday (Mon … Sun), each
//! beginning with Microsoft's banner, event ID legend and CSV column line, then one CSV line per event
//! (`ID,Date,Time,Description,IP Address,Host Name,MAC Address,…`).
//!
//! Rotation is Microsoft's: when the local date changes the next weekday's file is opened; a file last
//! written more than a day ago (last week's) is truncated, otherwise appended to. The header is written
//! at every service start ([`AuditLog::started`]) and at the top of every new day, each followed by
//! event 00, as Microsoft's logs show.
//!
//! Disk checks are Microsoft's (KB 188027): every `disk_check_interval` events
//! (`DhcpLogDiskSpaceCheckInterval`) and at the first event of a day, the log pauses when the day's
//! file has passed its seventh of `max_total_bytes` (`DhcpLogFilesMaxSize`) or the disk has less than
//! `min_free_bytes` (`DhcpLogMinSpaceOnDisk`) free. Pausing writes event 02 ("the log was temporarily
//! paused due to low disk space") and drops lines until a later check finds space again (a new day's
//! file, or a disk with room). An administrator's PAUSE writes no 02: it is not a disk event.
//!
//! Writing is cheap: a line is formatted without any lock, then appended to a buffered file behind the
//! log's own mutex (never the lease lock). The buffer is flushed every `flush_lines` lines, by a
//! background thread every `flush_interval`, by [`AuditLog::flush`], by [`AuditLog::stopped`] and on
//! drop; there is no fsync. An I/O error is reported once through `tracing` and the log carries on.
//!
//! Dates and times are local time (`MM/DD/YY`, `HH:MM:SS`) as Microsoft writes them, from the system's
//! time zone (`TZ`, else `/etc/localtime`; UTC when neither can be read) unless
//! [`AuditOptions::zone`] fixes an offset.
//!
//! DNS events: 30 (a DNS update request for a client's name) and 35 (the request failed) are written
//! when an ACK's option 81 asks for a server update, and the other DNS IDs (31, 32, 34) and 33 (NAP)
//! never, because calloutd has no DNS server to send updates to (docs/dhcp.md section 5). Not for:
//! failover (36) or rogue detection (50+) events, which calloutd never has.
//!
//! ```no_run
//! use calloutd_engine::{parse_audit_log, AuditLimits, AuditLog, EngineOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // ActivityLogFlag, DhcpLogFilePath, DhcpLogFilesMaxSize / DhcpLogMinSpaceOnDisk (MB) and
//! // DhcpLogDiskSpaceCheckInterval.
//! let audit = AuditLog::from_settings(true, "/var/log/calloutd", AuditLimits::default())?;
//! let options = EngineOptions { audit: audit.clone(), ..EngineOptions::default() };
//! if let Some(audit) = &audit {
//!     audit.started(); // and `stopped()` at shutdown
//!     audit.flush();
//!     let text = std::fs::read_to_string(audit.file_for(std::time::SystemTime::now()))?;
//!     for event in parse_audit_log(&text)? {
//!         println!("{} {} {:?}", event.id, event.description, event.ip);
//!     }
//! }
//! # let _ = options; Ok(()) }
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Datelike, FixedOffset, Local, NaiveDate, Offset, Timelike, Utc};

use crate::clock::{Clock, SystemClock};
use crate::ticker::Ticker;

/// The block every `DhcpSrvLog-<Day>.log` file begins with (CRLF line ends, as on Windows), ending with
/// the column line [`COLUMNS`].
pub const HEADER: &str = "\t\tMicrosoft DHCP Service Activity Log\r\n\
\r\n\
\r\n\
Event ID  Meaning\r\n\
00\tThe log was started.\r\n\
01\tThe log was stopped.\r\n\
02\tThe log was temporarily paused due to low disk space.\r\n\
10\tA new IP address was leased to a client.\r\n\
11\tA lease was renewed by a client.\r\n\
12\tA lease was released by a client.\r\n\
13\tAn IP address was found to be in use on the network.\r\n\
14\tA lease request could not be satisfied because the scope's address pool was exhausted.\r\n\
15\tA lease was denied.\r\n\
16\tA lease was deleted.\r\n\
17\tA lease was expired and DNS records for an expired leases have not been deleted.\r\n\
18\tA lease was expired and DNS records were deleted.\r\n\
20\tA BOOTP address was leased to a client.\r\n\
21\tA dynamic BOOTP address was leased to a client.\r\n\
22\tA BOOTP request could not be satisfied because the scope's address pool for BOOTP was exhausted.\r\n\
23\tA BOOTP IP address was deleted after checking to see it was not in use.\r\n\
24\tIP address cleanup operation has began.\r\n\
25\tIP address cleanup statistics.\r\n\
30\tDNS update request to the named DNS server.\r\n\
31\tDNS update failed.\r\n\
32\tDNS update successful.\r\n\
33\tPacket dropped due to NAP policy.\r\n\
34\tDNS update request failed.as the DNS update request queue limit exceeded.\r\n\
35\tDNS update request failed.\r\n\
36\tPacket dropped because the server is in failover standby role or the hash of the client ID does not match.\r\n\
50+\tCodes above 50 are used for Rogue Server Detection information.\r\n\
\r\n\
QResult: 0: NoQuarantine, 1:Quarantine, 2:Drop Packet, 3:Probation,6:No Quarantine Information ProbationTime:Year-Month-Day Hour:Minute:Second:MilliSecond.\r\n\
\r\n\
ID,Date,Time,Description,IP Address,Host Name,MAC Address,User Name, TransactionID, QResult,Probationtime, CorrelationID,Dhcid,VendorClass(Hex),VendorClass(ASCII),UserClass(Hex),UserClass(ASCII),RelayAgentInformation,DnsRegError.\r\n";

/// The CSV column line (the last line of [`HEADER`]), without its line end.
pub const COLUMNS: &str = "ID,Date,Time,Description,IP Address,Host Name,MAC Address,User Name, TransactionID, QResult,Probationtime, CorrelationID,Dhcid,VendorClass(Hex),VendorClass(ASCII),UserClass(Hex),UserClass(ASCII),RelayAgentInformation,DnsRegError.";

/// Columns per event line.
const FIELDS: usize = 19;

/// File name day parts, Monday first.
pub const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Microsoft's default `DhcpLogFilesMaxSize`: 70 MB over all seven files.
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 70 * 1024 * 1024;

/// The audit event IDs calloutd knows (Microsoft's numbering; of the DNS IDs only 30 and 35 are
/// produced, rogue-detection IDs not at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditEventId {
    /// 00: the log (service) was started.
    Started,
    /// 01: the log (service) was stopped.
    Stopped,
    /// 02: the log was paused for low disk space (the day's share used up, or the disk nearly full).
    Paused,
    /// 10: a new address was leased (ACK of a new binding).
    Assign,
    /// 11: a lease was renewed (ACK extending the client's lease).
    Renew,
    /// 12: a lease was released by its client.
    Release,
    /// 13: an address was found in use on the network (conflict detection or DECLINE).
    Conflict,
    /// 14: the scope's pool was exhausted.
    ScopeFull,
    /// 15: a lease was denied (NAK).
    Nack,
    /// 16: a lease was deleted (administrative delete).
    Deleted,
    /// 17: a lease expired (no DNS records were deleted: calloutd registers none).
    Expired,
    /// 18: a lease expired and its DNS records were deleted (never produced: no DNS).
    ExpiredDnsDeleted,
    /// 20: a reserved BOOTP address was leased.
    BootpAssign,
    /// 21: a dynamic BOOTP address was leased.
    DynamicBootpAssign,
    /// 22: the scope's BOOTP pool was exhausted.
    BootpScopeFull,
    /// 23: a BOOTP address was deleted.
    BootpDeleted,
    /// 24: a database cleanup began.
    CleanupBegin,
    /// 25: database cleanup statistics.
    CleanupStats,
    /// 30: a DNS update request (for the client's name, to the DNS server).
    DnsUpdateRequest,
    /// 31: a DNS update failed (never produced: no DNS server answers).
    DnsUpdateFailed,
    /// 32: a DNS update succeeded (never produced).
    DnsUpdateSuccessful,
    /// 33: a packet dropped by NAP policy (never produced: no NAP).
    NapDrop,
    /// 34: a DNS update request failed for a full request queue (never produced).
    DnsQueueFull,
    /// 35: a DNS update request failed (calloutd: no DNS server is configured to send it to).
    DnsRequestFailed,
}

impl AuditEventId {
    /// Every ID, in code order.
    pub const ALL: [AuditEventId; 24] = [
        Self::Started,
        Self::Stopped,
        Self::Paused,
        Self::Assign,
        Self::Renew,
        Self::Release,
        Self::Conflict,
        Self::ScopeFull,
        Self::Nack,
        Self::Deleted,
        Self::Expired,
        Self::ExpiredDnsDeleted,
        Self::BootpAssign,
        Self::DynamicBootpAssign,
        Self::BootpScopeFull,
        Self::BootpDeleted,
        Self::CleanupBegin,
        Self::CleanupStats,
        Self::DnsUpdateRequest,
        Self::DnsUpdateFailed,
        Self::DnsUpdateSuccessful,
        Self::NapDrop,
        Self::DnsQueueFull,
        Self::DnsRequestFailed,
    ];

    /// Microsoft's numeric event ID.
    pub fn code(self) -> u8 {
        match self {
            Self::Started => 0,
            Self::Stopped => 1,
            Self::Paused => 2,
            Self::Assign => 10,
            Self::Renew => 11,
            Self::Release => 12,
            Self::Conflict => 13,
            Self::ScopeFull => 14,
            Self::Nack => 15,
            Self::Deleted => 16,
            Self::Expired => 17,
            Self::ExpiredDnsDeleted => 18,
            Self::BootpAssign => 20,
            Self::DynamicBootpAssign => 21,
            Self::BootpScopeFull => 22,
            Self::BootpDeleted => 23,
            Self::CleanupBegin => 24,
            Self::CleanupStats => 25,
            Self::DnsUpdateRequest => 30,
            Self::DnsUpdateFailed => 31,
            Self::DnsUpdateSuccessful => 32,
            Self::NapDrop => 33,
            Self::DnsQueueFull => 34,
            Self::DnsRequestFailed => 35,
        }
    }

    /// The ID with numeric code `code`, if calloutd knows it.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|id| id.code() == code)
    }

    /// The Description column's default text (Microsoft's words where public samples show them:
    /// Started, Stopped, Assign, Renew, Release, Database Cleanup Begin; short equivalents otherwise).
    pub fn description(self) -> &'static str {
        match self {
            Self::Started => "Started",
            Self::Stopped => "Stopped",
            Self::Paused => "Paused",
            Self::Assign => "Assign",
            Self::Renew => "Renew",
            Self::Release => "Release",
            Self::Conflict => "Conflict",
            Self::ScopeFull => "Scope Full",
            Self::Nack => "NACK",
            Self::Deleted => "Deleted",
            Self::Expired => "Expired",
            Self::ExpiredDnsDeleted => "Expired and DNS records deleted",
            Self::BootpAssign => "BOOTP Assign",
            Self::DynamicBootpAssign => "Dynamic BOOTP Assign",
            Self::BootpScopeFull => "BOOTP Scope Full",
            Self::BootpDeleted => "BOOTP Deleted",
            Self::CleanupBegin => "Database Cleanup Begin",
            Self::CleanupStats => "Database Cleanup Statistics",
            Self::DnsUpdateRequest => "DNS Update Request",
            Self::DnsUpdateFailed => "DNS Update Failed",
            Self::DnsUpdateSuccessful => "DNS Update Successful",
            Self::NapDrop => "Packet dropped due to NAP policy",
            Self::DnsQueueFull => "DNS update request queue limit exceeded",
            Self::DnsRequestFailed => "DNS Update Request Failed",
        }
    }
}

/// One event to write; byte fields borrow from the packet or lease they describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditRecord<'a> {
    /// The event ID.
    pub id: AuditEventId,
    /// Replaces the ID's default description (e.g. the cleanup statistics sentence).
    pub description: Option<&'a str>,
    /// The address concerned.
    pub ip: Option<Ipv4Addr>,
    /// The client's host name (option 12 or the lease's).
    pub host_name: Option<&'a [u8]>,
    /// The client hardware address (chaddr); written as hex digits without separators.
    pub mac: &'a [u8],
    /// The request's xid; `None` for events not caused by a packet (QResult is then 6).
    pub transaction_id: Option<u32>,
    /// Option 60.
    pub vendor_class: Option<&'a [u8]>,
    /// Option 77.
    pub user_class: Option<&'a [u8]>,
    /// Option 82.
    pub relay_agent: Option<&'a [u8]>,
    /// The DnsRegError column: the Windows error of a failed DNS update, 0 otherwise.
    pub dns_reg_error: u32,
}

impl AuditRecord<'_> {
    /// A record with only its ID set.
    pub fn new(id: AuditEventId) -> Self {
        AuditRecord {
            id,
            description: None,
            ip: None,
            host_name: None,
            mac: &[],
            transaction_id: None,
            vendor_class: None,
            user_class: None,
            relay_agent: None,
            dns_reg_error: 0,
        }
    }
}

/// Which clock face the Date and Time columns show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuditZone {
    /// The system's local time zone (UTC when it cannot be determined).
    #[default]
    Local,
    /// A fixed offset east of UTC, in seconds (tests, or a deliberate choice).
    FixedOffset(i32),
}

impl AuditZone {
    fn local_time(self, time: SystemTime) -> DateTime<FixedOffset> {
        let utc = DateTime::<Utc>::from(time);
        match self {
            AuditZone::Local => utc.with_timezone(&Local).fixed_offset(),
            AuditZone::FixedOffset(secs) => {
                // An offset beyond ±24 h is no zone at all: UTC.
                let offset = FixedOffset::east_opt(secs).unwrap_or_else(|| Utc.fix());
                utc.with_timezone(&offset)
            }
        }
    }
}

/// How an [`AuditLog`] behaves.
#[derive(Clone)]
pub struct AuditOptions {
    /// `DhcpLogFilesMaxSize` in bytes, over all seven files (each may use a seventh).
    pub max_total_bytes: u64,
    /// Where time comes from (day changes, the Date and Time columns).
    pub clock: Arc<dyn Clock>,
    /// Local time zone or a fixed offset.
    pub zone: AuditZone,
    /// Flush after this many buffered lines.
    pub flush_lines: usize,
    /// Flush buffered lines at least this often (background thread); zero = no thread.
    pub flush_interval: Duration,
    /// `DhcpLogMinSpaceOnDisk` in bytes: below this much free disk the log pauses.
    pub min_free_bytes: u64,
    /// `DhcpLogDiskSpaceCheckInterval`: events between two disk checks (0 counts as 1).
    pub disk_check_interval: u32,
    /// How free disk space is measured (bytes available in the folder's file system; `None` when it
    /// cannot be told, which never pauses the log). Default: `statvfs`.
    pub free_space: FreeSpace,
}

/// Measures the bytes free in the file system of a folder (`None`: unknown).
pub type FreeSpace = Arc<dyn Fn(&Path) -> Option<u64> + Send + Sync>;

/// The registry's audit log limits, for [`AuditLog::from_settings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditLimits {
    /// `DhcpLogFilesMaxSize`, MB over all seven files.
    pub max_megabytes: u32,
    /// `DhcpLogMinSpaceOnDisk`, MB.
    pub min_free_megabytes: u32,
    /// `DhcpLogDiskSpaceCheckInterval`, events.
    pub disk_check_interval: u32,
}

impl Default for AuditLimits {
    /// Microsoft's defaults: 70 MB, 20 MB, 50 events.
    fn default() -> Self {
        AuditLimits {
            max_megabytes: 70,
            min_free_megabytes: 20,
            disk_check_interval: DEFAULT_DISK_CHECK_INTERVAL,
        }
    }
}

/// Microsoft's default `DhcpLogMinSpaceOnDisk`: 20 MB.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 20 * 1024 * 1024;
/// Microsoft's default `DhcpLogDiskSpaceCheckInterval`: 50 events.
pub const DEFAULT_DISK_CHECK_INTERVAL: u32 = 50;

/// Bytes available to this process in the file system holding `dir`.
#[cfg(unix)]
pub fn disk_free_bytes(dir: &Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(dir).ok()?;
    #[allow(clippy::useless_conversion)] // the field widths differ between platforms
    let (avail, frsize) = (
        u64::from(stat.blocks_available()),
        u64::from(stat.fragment_size()),
    );
    Some(avail.saturating_mul(frsize))
}

/// Bytes available in the file system holding `dir` (not known on this platform).
#[cfg(not(unix))]
pub fn disk_free_bytes(_dir: &Path) -> Option<u64> {
    None
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
            clock: Arc::new(SystemClock),
            zone: AuditZone::Local,
            flush_lines: 64,
            flush_interval: Duration::from_secs(1),
            min_free_bytes: DEFAULT_MIN_FREE_BYTES,
            disk_check_interval: DEFAULT_DISK_CHECK_INTERVAL,
            free_space: Arc::new(disk_free_bytes),
        }
    }
}

impl std::fmt::Debug for AuditOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditOptions")
            .field("max_total_bytes", &self.max_total_bytes)
            .field("zone", &self.zone)
            .field("flush_lines", &self.flush_lines)
            .field("flush_interval", &self.flush_interval)
            .field("min_free_bytes", &self.min_free_bytes)
            .field("disk_check_interval", &self.disk_check_interval)
            .finish_non_exhaustive()
    }
}

/// The audit log folder cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("audit log folder {dir}: {source}")]
pub struct AuditError {
    /// The folder.
    pub dir: PathBuf,
    /// What failed.
    pub source: io::Error,
}

/// The file being written and what is known about it.
#[derive(Default)]
struct Current {
    /// The local date the file belongs to.
    day: Option<NaiveDate>,
    file: Option<BufWriter<File>>,
    path: PathBuf,
    /// Bytes in the file (written or buffered).
    size: u64,
    /// A disk check paused the log (event 02 written); lines are dropped until a check finds room.
    paused: bool,
    /// Events since the last disk check.
    since_check: u32,
    unflushed: usize,
    /// An I/O error was already reported (report once, not per line).
    reported: bool,
}

struct Inner {
    dir: PathBuf,
    file_cap: u64,
    options: AuditOptions,
    current: Mutex<Current>,
}

/// Microsoft's DHCP audit log (`DhcpSrvLog-<Day>.log`), safe to share between threads.
pub struct AuditLog {
    inner: Arc<Inner>,
    flusher: Option<Ticker>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.inner.dir)
            .field("file_cap", &self.inner.file_cap)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens the audit log in `dir` (created when missing). No file is opened before the first event.
    pub fn open(dir: impl Into<PathBuf>, options: AuditOptions) -> Result<AuditLog, AuditError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| AuditError {
            dir: dir.clone(),
            source,
        })?;
        let interval = options.flush_interval;
        let inner = Arc::new(Inner {
            file_cap: options.max_total_bytes / 7,
            dir,
            options,
            current: Mutex::new(Current::default()),
        });
        let flusher = if interval.is_zero() {
            None
        } else {
            let inner = Arc::clone(&inner);
            match Ticker::start("audit-flush", interval, move || inner.flush()) {
                Ok(ticker) => Some(ticker),
                Err(error) => {
                    tracing::warn!("audit log: no flush thread ({error}); flushing by line count");
                    None
                }
            }
        };
        Ok(AuditLog { inner, flusher })
    }

    /// What the server's command line builds from `ActivityLogFlag` (`enabled`), `DhcpLogFilePath`
    /// (`dir`), `DhcpLogFilesMaxSize` (`limits.max_megabytes`), `DhcpLogMinSpaceOnDisk` and
    /// `DhcpLogDiskSpaceCheckInterval`: `None` when the log is off.
    pub fn from_settings(
        enabled: bool,
        dir: impl Into<PathBuf>,
        limits: AuditLimits,
    ) -> Result<Option<Arc<AuditLog>>, AuditError> {
        if !enabled {
            return Ok(None);
        }
        let options = AuditOptions {
            max_total_bytes: u64::from(limits.max_megabytes) * 1024 * 1024,
            min_free_bytes: u64::from(limits.min_free_megabytes) * 1024 * 1024,
            disk_check_interval: limits.disk_check_interval,
            ..AuditOptions::default()
        };
        Ok(Some(Arc::new(AuditLog::open(dir, options)?)))
    }

    /// The folder the files are written to.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The byte share of each day's file (`max_total_bytes / 7`).
    pub fn file_cap(&self) -> u64 {
        self.inner.file_cap
    }

    /// The file events at `time` go to (`<dir>/DhcpSrvLog-<Day>.log`, Day in the log's time zone).
    pub fn file_for(&self, time: SystemTime) -> PathBuf {
        let local = self.inner.options.zone.local_time(time);
        self.inner.dir.join(day_file_name(local.date_naive()))
    }

    /// Writes the header block and event 00 (the service started), as at every service start.
    pub fn started(&self) {
        self.inner
            .record_with(&AuditRecord::new(AuditEventId::Started), true);
    }

    /// Writes event 01 (the service stopped) and flushes.
    pub fn stopped(&self) {
        self.record(&AuditRecord::new(AuditEventId::Stopped));
        self.flush();
    }

    /// The service was paused by its administrator: the buffered lines are flushed and no event is
    /// written (02 means low disk space, not an administrative pause).
    pub fn paused(&self) {
        self.flush();
    }

    /// Whether a disk check paused the log (event 02 written, lines dropped until space returns).
    pub fn is_paused(&self) -> bool {
        self.inner.lock().paused
    }

    /// Writes one event line (dropped while a disk check keeps the log paused).
    pub fn record(&self, record: &AuditRecord<'_>) {
        self.inner.record_with(record, false);
    }

    /// Writes the buffered lines to the file (no fsync).
    pub fn flush(&self) {
        self.inner.flush();
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        // Stopped first, so the last flush below is the last.
        drop(self.flusher.take());
        self.inner.flush();
    }
}

fn day_file_name(date: NaiveDate) -> String {
    let day = DAY_NAMES[date.weekday().num_days_from_monday() as usize % 7];
    format!("DhcpSrvLog-{day}.log")
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `record`; with `header`, the header block first (a service start).
    fn record_with(&self, record: &AuditRecord<'_>, header: bool) {
        let now = self.options.clock.now();
        let local = self.options.zone.local_time(now);
        let mut line = String::with_capacity(160);
        format_line(&mut line, &local, record);
        let mut current = self.lock();
        let day = local.date_naive();
        let mut header_written = false;
        if current.day != Some(day) {
            let rotated = current.day.is_some();
            header_written = self.open_day(&mut current, day, now, rotated || header);
            // The first event of a day is a disk check (Microsoft checks at every date change).
            self.check_disk(&mut current, &local);
            if rotated {
                // The new day's file starts like a fresh log.
                let mut started = String::with_capacity(64);
                format_line(
                    &mut started,
                    &local,
                    &AuditRecord::new(AuditEventId::Started),
                );
                self.append(&mut current, &started);
            }
        } else {
            current.since_check += 1;
            if current.since_check >= self.options.disk_check_interval.max(1) {
                self.check_disk(&mut current, &local);
            }
        }
        if header && !header_written {
            write_header(&mut current);
        }
        self.append(&mut current, &line);
    }

    /// Microsoft's disk check: pause (event 02) when the day's file passed its share or the disk is
    /// short of `min_free_bytes`; resume when neither holds any more.
    fn check_disk(&self, current: &mut Current, local: &DateTime<FixedOffset>) {
        current.since_check = 0;
        let over_share = current.size > self.file_cap;
        let free = (self.options.free_space)(&self.dir);
        let low_disk = free.is_some_and(|free| free < self.options.min_free_bytes);
        let full = over_share || low_disk;
        if full && !current.paused {
            if over_share {
                tracing::warn!(
                    "audit log {} passed its share of DhcpLogFilesMaxSize ({} bytes): paused until the next day",
                    current.path.display(),
                    self.file_cap
                );
            } else {
                tracing::warn!(
                    "audit log {}: {} bytes free, below DhcpLogMinSpaceOnDisk ({} bytes): paused",
                    current.path.display(),
                    free.unwrap_or_default(),
                    self.options.min_free_bytes
                );
            }
            let mut paused = String::with_capacity(64);
            format_line(&mut paused, local, &AuditRecord::new(AuditEventId::Paused));
            self.append(current, &paused);
            current.paused = true;
        } else if !full && current.paused {
            tracing::info!("audit log {}: space again, resumed", current.path.display());
            current.paused = false;
        }
    }

    /// Appends one line to the current file unless the log is paused.
    fn append(&self, current: &mut Current, line: &str) {
        if current.paused {
            return;
        }
        let Some(file) = current.file.as_mut() else {
            return;
        };
        match file.write_all(line.as_bytes()) {
            Ok(()) => {
                current.size += line.len() as u64;
                current.unflushed += 1;
                if current.unflushed >= self.options.flush_lines.max(1) {
                    flush_current(current);
                }
            }
            Err(error) => report(current, &error),
        }
    }

    /// Closes the current file and opens `day`'s: truncated when last written more than a day before
    /// `now` (last week's file), else appended to. The header goes into an empty file, and with
    /// `header` into any; returns whether it was written.
    fn open_day(
        &self,
        current: &mut Current,
        day: NaiveDate,
        now: SystemTime,
        header: bool,
    ) -> bool {
        flush_current(current);
        current.file = None;
        current.day = Some(day);
        current.paused = false;
        current.since_check = 0;
        current.unflushed = 0;
        current.reported = false;
        current.path = self.dir.join(day_file_name(day));
        let fresh = fs::metadata(&current.path).ok().and_then(|meta| {
            let modified = meta.modified().ok()?;
            // A file "from the future" (clock moved back) counts as recent.
            let age = now.duration_since(modified).unwrap_or(Duration::ZERO);
            (age <= Duration::from_secs(24 * 3600)).then_some(meta.len())
        });
        let opened = match fresh {
            Some(len) => OpenOptions::new()
                .append(true)
                .open(&current.path)
                .map(|file| (file, len)),
            None => File::create(&current.path).map(|file| (file, 0)),
        };
        match opened {
            Ok((file, len)) => {
                current.file = Some(BufWriter::with_capacity(64 * 1024, file));
                current.size = len;
                if len == 0 || header {
                    write_header(current);
                    return true;
                }
            }
            Err(error) => report(current, &error),
        }
        false
    }

    fn flush(&self) {
        flush_current(&mut self.lock());
    }
}

/// The header block, written whatever the disk check says (it is the file's format).
fn write_header(current: &mut Current) {
    if let Some(file) = current.file.as_mut() {
        match file.write_all(HEADER.as_bytes()) {
            Ok(()) => current.size += HEADER.len() as u64,
            Err(error) => report(current, &error),
        }
    }
}

fn flush_current(current: &mut Current) {
    if let Some(file) = current.file.as_mut() {
        if let Err(error) = file.flush() {
            report(current, &error);
        }
    }
    current.unflushed = 0;
}

fn report(current: &mut Current, error: &io::Error) {
    if !current.reported {
        current.reported = true;
        tracing::error!("audit log {}: {error}", current.path.display());
    }
}

/// Appends one CSV line (with CRLF) for `record` at `time`. Written digit by digit rather than with
/// `write!`: one line per ACK, and the formatting machinery cost more than the rest of the line.
fn format_line(out: &mut String, time: &DateTime<FixedOffset>, record: &AuditRecord<'_>) {
    push_two_digits(out, u32::from(record.id.code()));
    out.push(',');
    push_two_digits(out, time.month());
    out.push('/');
    push_two_digits(out, time.day());
    out.push('/');
    push_two_digits(out, time.year().rem_euclid(100).unsigned_abs());
    out.push(',');
    push_two_digits(out, time.hour());
    out.push(':');
    push_two_digits(out, time.minute());
    out.push(':');
    push_two_digits(out, time.second());
    out.push(',');
    push_text(
        out,
        record
            .description
            .unwrap_or(record.id.description())
            .as_bytes(),
    );
    out.push(',');
    if let Some(ip) = record.ip {
        let mut digits = itoa::Buffer::new();
        for (i, octet) in ip.octets().into_iter().enumerate() {
            if i > 0 {
                out.push('.');
            }
            out.push_str(digits.format(octet));
        }
    }
    out.push(',');
    if let Some(host) = record.host_name {
        push_text(out, host.strip_suffix(&[0]).unwrap_or(host));
    }
    out.push(',');
    push_hex_digits(out, record.mac);
    // User Name is empty; a packet event has its xid and QResult 0 (NoQuarantine), any other event
    // 0 and 6 (No Quarantine Information), as Microsoft writes them.
    match record.transaction_id {
        Some(xid) => {
            out.push_str(",,");
            out.push_str(itoa::Buffer::new().format(xid));
            out.push_str(",0");
        }
        None => out.push_str(",,0,6"),
    }
    // Probationtime, CorrelationID, Dhcid: empty.
    out.push_str(",,,");
    for class in [record.vendor_class, record.user_class] {
        out.push(',');
        push_hex(out, class);
        out.push(',');
        if let Some(bytes) = class {
            push_text(out, bytes);
        }
    }
    out.push(',');
    push_hex(out, record.relay_agent);
    out.push(',');
    out.push_str(itoa::Buffer::new().format(record.dns_reg_error));
    out.push_str("\r\n");
}

/// `n % 100` as two decimal digits.
fn push_two_digits(out: &mut String, n: u32) {
    let n = n % 100;
    out.push(char::from(b'0' + (n / 10) as u8));
    out.push(char::from(b'0' + (n % 10) as u8));
}

/// Each byte as two upper-case hex digits.
fn push_hex_digits(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in bytes {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
}

fn push_hex(out: &mut String, bytes: Option<&[u8]>) {
    if let Some(bytes) = bytes.filter(|b| !b.is_empty()) {
        out.push_str("0x");
        push_hex_digits(out, bytes);
    }
}

/// Client-supplied text, made safe for one CSV field: anything but printable ASCII (and the comma)
/// becomes `.`.
fn push_text(out: &mut String, bytes: &[u8]) {
    out.extend(bytes.iter().map(|&b| {
        if b.is_ascii_graphic() && b != b',' || b == b' ' {
            char::from(b)
        } else {
            '.'
        }
    }));
}

/// One parsed event line of a `DhcpSrvLog-<Day>.log` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// The numeric event ID.
    pub id: u8,
    /// `MM/DD/YY`.
    pub date: String,
    /// `HH:MM:SS`.
    pub time: String,
    /// The Description column.
    pub description: String,
    /// The IP Address column, when set.
    pub ip: Option<Ipv4Addr>,
    /// The Host Name column.
    pub host_name: String,
    /// The MAC Address column (hex digits).
    pub mac: String,
    /// The User Name column.
    pub user_name: String,
    /// The TransactionID column, when set.
    pub transaction_id: Option<u32>,
    /// The QResult column, when set.
    pub qresult: Option<u8>,
    /// VendorClass(Hex).
    pub vendor_class_hex: String,
    /// VendorClass(ASCII).
    pub vendor_class_ascii: String,
    /// UserClass(Hex).
    pub user_class_hex: String,
    /// UserClass(ASCII).
    pub user_class_ascii: String,
    /// RelayAgentInformation.
    pub relay_agent: String,
    /// DnsRegError.
    pub dns_reg_error: String,
}

/// A line that is not an audit event line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit log line {line}: {message}")]
pub struct AuditParseError {
    /// The 1-based line number (1 for [`parse_audit_line`]).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses one event line (with or without its line end). Older files' shorter lines (at least ID
/// through MAC Address) are accepted; missing columns are empty.
pub fn parse_audit_line(line: &str) -> Result<AuditEvent, AuditParseError> {
    let error = |message: String| AuditParseError { line: 1, message };
    let line = line.trim_end_matches(['\r', '\n']);
    let fields: Vec<&str> = line.split(',').collect();
    if fields.len() < 7 || fields.len() > FIELDS {
        return Err(error(format!(
            "{} columns, expected 7 to {FIELDS}",
            fields.len()
        )));
    }
    let field = |i: usize| fields.get(i).copied().unwrap_or_default();
    let id = field(0)
        .parse::<u8>()
        .map_err(|_| error(format!("event ID `{}` is not a number", field(0))))?;
    let ip = match field(4) {
        "" => None,
        text => Some(
            text.parse::<Ipv4Addr>()
                .map_err(|_| error(format!("IP address `{text}` is not IPv4")))?,
        ),
    };
    let number = |i: usize, name: &str| -> Result<Option<u32>, AuditParseError> {
        match field(i).trim() {
            "" => Ok(None),
            text => text
                .parse::<u32>()
                .map(Some)
                .map_err(|_| error(format!("{name} `{text}` is not a number"))),
        }
    };
    let transaction_id = number(8, "TransactionID")?;
    let qresult = number(9, "QResult")?
        .map(|q| u8::try_from(q).map_err(|_| error(format!("QResult {q} out of range"))))
        .transpose()?;
    Ok(AuditEvent {
        id,
        date: field(1).to_owned(),
        time: field(2).to_owned(),
        description: field(3).to_owned(),
        ip,
        host_name: field(5).to_owned(),
        mac: field(6).to_owned(),
        user_name: field(7).to_owned(),
        transaction_id,
        qresult,
        vendor_class_hex: field(13).to_owned(),
        vendor_class_ascii: field(14).to_owned(),
        user_class_hex: field(15).to_owned(),
        user_class_ascii: field(16).to_owned(),
        relay_agent: field(17).to_owned(),
        dns_reg_error: field(18).to_owned(),
    })
}

/// Parses a whole file's text: the header block up to and including the column line is skipped
/// (a text without one is taken as event lines only), blank lines are ignored.
pub fn parse_audit_log(text: &str) -> Result<Vec<AuditEvent>, AuditParseError> {
    let lines: Vec<&str> = text.lines().collect();
    let first = lines
        .iter()
        .position(|l| l.trim_end() == COLUMNS)
        .map_or(0, |i| i + 1);
    lines
        .iter()
        .enumerate()
        .skip(first)
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            parse_audit_line(l).map_err(|e| AuditParseError {
                line: i + 1,
                message: e.message,
            })
        })
        .collect()
}

/// The runtime's service events, as audit lines.
impl calloutd_hooks::ServiceEvents for AuditLog {
    fn started(&self) {
        AuditLog::started(self);
    }
    fn paused(&self) {
        AuditLog::paused(self);
    }
    fn continued(&self) {}
    fn stopped(&self) {
        AuditLog::stopped(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    /// Monday 2026-11-23 23:59:58 UTC.
    fn monday_night() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_478_398)
    }

    fn log_with(dir: &Path, clock: &Arc<ManualClock>, max_total_bytes: u64) -> AuditLog {
        let options = AuditOptions {
            max_total_bytes,
            clock: clock.clone(),
            zone: AuditZone::FixedOffset(0),
            flush_lines: 1000,
            flush_interval: Duration::ZERO,
            ..AuditOptions::default()
        };
        AuditLog::open(dir, options).unwrap()
    }

    fn assign<'a>(mac: &'a [u8], host: &'a [u8]) -> AuditRecord<'a> {
        AuditRecord {
            ip: Some(Ipv4Addr::new(198, 18, 0, 20)),
            host_name: Some(host),
            mac,
            transaction_id: Some(3_096_562_285),
            vendor_class: Some(b"MSFT 5.0"),
            ..AuditRecord::new(AuditEventId::Assign)
        }
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap()
    }

    #[test]
    fn monday_night_is_a_monday() {
        let local = AuditZone::FixedOffset(0).local_time(monday_night());
        assert_eq!(local.weekday(), chrono::Weekday::Mon);
        assert_eq!(local.format("%H:%M:%S").to_string(), "23:59:58");
    }

    #[test]
    fn header_and_line_format() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(monday_night()));
        let log = log_with(dir.path(), &clock, DEFAULT_MAX_TOTAL_BYTES);
        let mac = [0x00, 0x50, 0x56, 0x83, 0x90, 0x1b];
        log.started();
        log.record(&assign(&mac, b"host,one"));
        log.record(&AuditRecord {
            user_class: Some(&[0x01, b'a']),
            relay_agent: Some(&[1, 2, 0xab, 0xcd]),
            transaction_id: Some(7),
            ip: Some(Ipv4Addr::new(198, 18, 0, 21)),
            mac: &mac,
            ..AuditRecord::new(AuditEventId::Nack)
        });
        log.flush();
        let path = dir.path().join("DhcpSrvLog-Mon.log");
        assert_eq!(log.file_for(monday_night()), path);
        let text = read(&path);
        let body = text
            .strip_prefix(HEADER)
            .expect("file starts with the header");
        assert!(HEADER.starts_with("\t\tMicrosoft DHCP Service Activity Log\r\n"));
        assert!(HEADER.ends_with(&format!("{COLUMNS}\r\n")));
        assert_eq!(HEADER.lines().count(), 34);
        assert_eq!(
            body,
            "00,11/23/26,23:59:58,Started,,,,,0,6,,,,,,,,,0\r\n\
             10,11/23/26,23:59:58,Assign,198.18.0.20,host.one,00505683901B,,3096562285,0,,,,\
             0x4D53465420352E30,MSFT 5.0,,,,0\r\n\
             15,11/23/26,23:59:58,NACK,198.18.0.21,,00505683901B,,7,0,,,,,,0x0161,.a,0x0102ABCD,0\r\n"
        );
        for line in body.lines() {
            assert_eq!(line.split(',').count(), FIELDS, "{line}");
        }
    }

    #[test]
    fn parse_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(monday_night()));
        let log = log_with(dir.path(), &clock, DEFAULT_MAX_TOTAL_BYTES);
        let mac = [2, 0, 0, 0, 0, 1];
        log.record(&assign(&mac, b"pc1"));
        log.record(&AuditRecord {
            description: Some("3 leases expired and 3 leases deleted"),
            ..AuditRecord::new(AuditEventId::CleanupStats)
        });
        log.flush();
        let events = parse_audit_log(&read(&log.file_for(monday_night()))).unwrap();
        assert_eq!(events.len(), 2);
        let first = &events[0];
        assert_eq!(first.id, 10);
        assert_eq!(
            (first.date.as_str(), first.time.as_str()),
            ("11/23/26", "23:59:58")
        );
        assert_eq!(first.ip, Some(Ipv4Addr::new(198, 18, 0, 20)));
        assert_eq!(first.host_name, "pc1");
        assert_eq!(first.mac, "020000000001");
        assert_eq!(first.transaction_id, Some(3_096_562_285));
        assert_eq!(first.qresult, Some(0));
        assert_eq!(first.vendor_class_hex, "0x4D53465420352E30");
        assert_eq!(first.vendor_class_ascii, "MSFT 5.0");
        assert_eq!(first.dns_reg_error, "0");
        assert_eq!(events[1].id, 25);
        assert_eq!(
            events[1].description,
            "3 leases expired and 3 leases deleted"
        );
        assert_eq!(
            (events[1].transaction_id, events[1].qresult),
            (Some(0), Some(6))
        );
        // An older server's short line parses; garbage does not.
        let short = parse_audit_line("01,04/19/20,13:11:13,Stopped,,,").unwrap();
        assert_eq!((short.id, short.description.as_str()), (1, "Stopped"));
        assert!(parse_audit_line("x,1,2,3,4,5,6").is_err());
        assert!(parse_audit_line("10,1,2,3,not-an-ip,5,6").is_err());
        let bad = parse_audit_log(&format!("{HEADER}10,a,b\r\n")).unwrap_err();
        assert_eq!(bad.line, 35);
    }

    #[test]
    fn day_change_opens_the_next_days_file() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(monday_night()));
        let log = log_with(dir.path(), &clock, DEFAULT_MAX_TOTAL_BYTES);
        log.started();
        let mac = [2, 0, 0, 0, 0, 1];
        log.record(&assign(&mac, b"pc1"));
        clock.advance(Duration::from_secs(3));
        log.record(&assign(&mac, b"pc2"));
        log.flush();
        let monday = parse_audit_log(&read(&dir.path().join("DhcpSrvLog-Mon.log"))).unwrap();
        assert_eq!(monday.iter().map(|e| e.id).collect::<Vec<_>>(), [0, 10]);
        let tuesday_text = read(&dir.path().join("DhcpSrvLog-Tue.log"));
        assert!(tuesday_text.starts_with(HEADER));
        let tuesday = parse_audit_log(&tuesday_text).unwrap();
        assert_eq!(tuesday.iter().map(|e| e.id).collect::<Vec<_>>(), [0, 10]);
        assert_eq!(tuesday[1].host_name, "pc2");
        assert_eq!(tuesday[1].date, "11/24/26");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn same_day_appends_and_last_weeks_file_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(monday_night() - Duration::from_secs(3600)));
        let path = dir.path().join("DhcpSrvLog-Mon.log");
        let mac = [2, 0, 0, 0, 0, 1];
        let set_mtime = |time: SystemTime| {
            File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(time)
                .unwrap();
        };
        {
            let log = log_with(dir.path(), &clock, DEFAULT_MAX_TOTAL_BYTES);
            log.record(&assign(&mac, b"first"));
        }
        set_mtime(clock.now());
        // A restart the same day appends after the existing lines, without a second header.
        clock.advance(Duration::from_secs(60));
        {
            let log = log_with(dir.path(), &clock, DEFAULT_MAX_TOTAL_BYTES);
            log.record(&assign(&mac, b"second"));
        }
        let text = read(&path);
        assert_eq!(text.matches(COLUMNS).count(), 1);
        let names: Vec<String> = parse_audit_log(&text)
            .unwrap()
            .into_iter()
            .map(|e| e.host_name)
            .collect();
        assert_eq!(names, ["first", "second"]);
        set_mtime(clock.now());
        // Next Monday: last week's file is overwritten.
        clock.advance(Duration::from_secs(7 * 24 * 3600));
        {
            let log = log_with(dir.path(), &clock, DEFAULT_MAX_TOTAL_BYTES);
            log.record(&assign(&mac, b"next-week"));
        }
        let text = read(&path);
        assert!(text.starts_with(HEADER));
        let events = parse_audit_log(&text).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].host_name, "next-week");
        assert_eq!(events[0].date, "11/30/26");
    }

    #[test]
    fn a_file_past_its_seventh_pauses_with_02_until_the_next_day() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(monday_night() - Duration::from_secs(60)));
        let mac = [2, 0, 0, 0, 0, 1];
        let mut line = String::new();
        format_line(
            &mut line,
            &AuditZone::FixedOffset(0).local_time(clock.now()),
            &assign(&mac, b"pc"),
        );
        let per_file = HEADER.len() as u64 + 3 * line.len() as u64;
        let log = AuditLog::open(
            dir.path(),
            AuditOptions {
                max_total_bytes: per_file * 7,
                clock: clock.clone(),
                zone: AuditZone::FixedOffset(0),
                flush_lines: 1000,
                flush_interval: Duration::ZERO,
                disk_check_interval: 2,
                free_space: Arc::new(|_: &Path| Some(u64::MAX)),
                ..AuditOptions::default()
            },
        )
        .unwrap();
        assert_eq!(log.file_cap(), per_file);
        for _ in 0..8 {
            log.record(&assign(&mac, b"pc"));
        }
        log.flush();
        assert!(log.is_paused());
        let monday = dir.path().join("DhcpSrvLog-Mon.log");
        // Checked every second event, before it is written: the fourth line passed the share, the
        // check at the fifth paused the log with 02, the rest were dropped.
        let ids: Vec<u8> = parse_audit_log(&read(&monday))
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, [10, 10, 10, 10, 2]);
        let paused = &parse_audit_log(&read(&monday)).unwrap()[4];
        assert_eq!((paused.transaction_id, paused.qresult), (Some(0), Some(6)));
        // Tuesday's file takes lines again (header, its own 00 Started, then the event).
        clock.advance(Duration::from_secs(120));
        log.record(&assign(&mac, b"pc"));
        log.flush();
        assert!(!log.is_paused());
        let tuesday = read(&dir.path().join("DhcpSrvLog-Tue.log"));
        assert!(tuesday.starts_with(HEADER));
        let ids: Vec<u8> = parse_audit_log(&tuesday)
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, [0, 10]);
        assert_eq!(parse_audit_log(&read(&monday)).unwrap().len(), 5);
    }

    #[test]
    fn low_disk_pauses_with_02_and_resumes_when_space_returns() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(monday_night() - Duration::from_secs(3600)));
        let free = Arc::new(std::sync::atomic::AtomicU64::new(100 << 20));
        let log = AuditLog::open(
            dir.path(),
            AuditOptions {
                clock: clock.clone(),
                zone: AuditZone::FixedOffset(0),
                flush_lines: 1000,
                flush_interval: Duration::ZERO,
                disk_check_interval: 3,
                min_free_bytes: 20 << 20,
                free_space: Arc::new({
                    let free = free.clone();
                    move |_: &Path| Some(free.load(std::sync::atomic::Ordering::SeqCst))
                }),
                ..AuditOptions::default()
            },
        )
        .unwrap();
        let mac = [2, 0, 0, 0, 0, 1];
        log.started();
        log.record(&assign(&mac, b"a"));
        free.store(19 << 20, std::sync::atomic::Ordering::SeqCst);
        // Not checked before the third event after the last check.
        log.record(&assign(&mac, b"b"));
        assert!(!log.is_paused());
        log.record(&assign(&mac, b"c"));
        assert!(log.is_paused());
        log.record(&assign(&mac, b"d"));
        log.record(&assign(&mac, b"e"));
        free.store(21 << 20, std::sync::atomic::Ordering::SeqCst);
        // The third event after the pause is checked again: space is back, it is written.
        log.record(&assign(&mac, b"f"));
        assert!(!log.is_paused());
        log.flush();
        let events = parse_audit_log(&read(&log.file_for(clock.now()))).unwrap();
        let seen: Vec<(u8, String)> = events.into_iter().map(|e| (e.id, e.host_name)).collect();
        let expected: Vec<(u8, String)> = [(0, ""), (10, "a"), (10, "b"), (2, ""), (10, "f")]
            .iter()
            .map(|(id, h)| (*id, h.to_string()))
            .collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn every_service_start_writes_the_header_and_00() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(monday_night() - Duration::from_secs(3600)));
        let mac = [2, 0, 0, 0, 0, 1];
        for host in [&b"first"[..], b"second"] {
            let log = log_with(dir.path(), &clock, DEFAULT_MAX_TOTAL_BYTES);
            log.started();
            log.record(&assign(&mac, host));
            log.paused();
            log.stopped();
            clock.advance(Duration::from_secs(60));
        }
        let text = read(&dir.path().join("DhcpSrvLog-Mon.log"));
        assert!(text.starts_with(HEADER));
        assert_eq!(text.matches(COLUMNS).count(), 2);
        let second = &text[HEADER.len()..];
        let at = second.find(HEADER).expect("a second header");
        // Each start: header, then 00; an admin pause writes no 02.
        let ids =
            |t: &str| -> Vec<u8> { parse_audit_log(t).unwrap().iter().map(|e| e.id).collect() };
        assert_eq!(ids(&second[..at]), [0, 10, 1]);
        assert_eq!(ids(&second[at..]), [0, 10, 1]);
    }

    #[test]
    fn lines_reach_the_file_by_count_and_by_timer() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(monday_night()));
        let by_count = AuditLog::open(
            dir.path().join("count"),
            AuditOptions {
                clock: clock.clone(),
                zone: AuditZone::FixedOffset(0),
                flush_lines: 2,
                flush_interval: Duration::ZERO,
                ..AuditOptions::default()
            },
        )
        .unwrap();
        let mac = [2, 0, 0, 0, 0, 1];
        let path = by_count.file_for(clock.now());
        by_count.record(&assign(&mac, b"a"));
        // One line: still buffered (the header was written to the buffer too).
        assert!(fs::metadata(&path).unwrap().len() < HEADER.len() as u64);
        by_count.record(&assign(&mac, b"b"));
        assert_eq!(parse_audit_log(&read(&path)).unwrap().len(), 2);

        let by_timer = AuditLog::open(
            dir.path().join("timer"),
            AuditOptions {
                clock: clock.clone(),
                zone: AuditZone::FixedOffset(0),
                flush_lines: 1000,
                flush_interval: Duration::from_millis(20),
                ..AuditOptions::default()
            },
        )
        .unwrap();
        let path = by_timer.file_for(clock.now());
        by_timer.record(&assign(&mac, b"a"));
        // The flush thread writes it out without any further call (bounded wait).
        let mut flushed = false;
        for _ in 0..500 {
            if fs::read_to_string(&path)
                .is_ok_and(|t| parse_audit_log(&t).is_ok_and(|e| e.len() == 1))
            {
                flushed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(flushed, "the flush thread never wrote the line");
        by_timer.stopped();
        let ids: Vec<u8> = parse_audit_log(&read(&path))
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, [10, 1]);
    }

    #[test]
    fn from_settings_honours_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            AuditLog::from_settings(false, dir.path().join("off"), AuditLimits::default())
                .unwrap()
                .is_none()
        );
        assert!(!dir.path().join("off").exists());
        let limits = AuditLimits {
            max_megabytes: 7,
            ..AuditLimits::default()
        };
        let log = AuditLog::from_settings(true, dir.path().join("on"), limits)
            .unwrap()
            .unwrap();
        assert_eq!(log.file_cap(), 1024 * 1024);
        assert!(dir.path().join("on").is_dir());
    }

    #[test]
    fn ids_and_codes_agree() {
        for id in AuditEventId::ALL {
            assert_eq!(AuditEventId::from_code(id.code()), Some(id));
            assert!(HEADER.contains(&format!("\r\n{:02}\t", id.code())));
        }
        assert_eq!(
            AuditEventId::from_code(30),
            Some(AuditEventId::DnsUpdateRequest)
        );
        assert_eq!(AuditEventId::from_code(36), None);
    }
}
