//! The typed view of `HKLM\SYSTEM\CurrentControlSet\Services\DHCPServer\Parameters`
//! (docs/config.md section 2).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::expand::{place_setting, ExpandedPath};
use crate::tree::{RegValue, RegistryTree};
use crate::value::{
    kind_name, RegValueData, REG_DWORD, REG_DWORD_BIG_ENDIAN, REG_EXPAND_SZ, REG_MULTI_SZ,
    REG_QWORD, REG_SZ,
};
use crate::write::DHCP_PARAMETERS_KEY;

/// Default `DatabasePath`.
pub const DEFAULT_DATABASE_PATH: &str = r"%SystemRoot%\System32\dhcp";
/// Default `DatabaseName`.
pub const DEFAULT_DATABASE_NAME: &str = "dhcp.mdb";
/// Default `BackupDatabasePath`.
pub const DEFAULT_BACKUP_DATABASE_PATH: &str = r"%SystemRoot%\System32\dhcp\backup";
/// Default `BackupInterval`, minutes.
pub const DEFAULT_BACKUP_INTERVAL_MINUTES: u32 = 60;
/// Default `DatabaseCleanupInterval`, minutes.
pub const DEFAULT_DATABASE_CLEANUP_INTERVAL_MINUTES: u32 = 60;
/// `DhcpLogFilePath` as Microsoft documents it (`%windir%\System32\Dhcp`, the default
/// `DatabasePath` folder). An absent `DhcpLogFilePath` follows `DatabasePath` instead
/// ([`Parameters::dhcp_log_file_path_or_default`]).
pub const DEFAULT_DHCP_LOG_FILE_PATH: &str = r"%windir%\System32\Dhcp";
/// Default `ActivityLogFlag` (audit log on).
pub const DEFAULT_ACTIVITY_LOG_FLAG: u32 = 1;
/// Default `DhcpLogFilesMaxSize`, MB over all audit logs.
pub const DEFAULT_DHCP_LOG_FILES_MAX_SIZE_MB: u32 = 70;
/// Default `DhcpLogMinSpaceOnDisk`, MB: audit logging pauses when less is free.
pub const DEFAULT_DHCP_LOG_MIN_SPACE_ON_DISK_MB: u32 = 20;
/// Default `DhcpLogDiskSpaceCheckInterval`: events written between two disk checks.
pub const DEFAULT_DHCP_LOG_DISK_SPACE_CHECK_INTERVAL: u32 = 50;
/// Default `IgnoreBroadcastFlag`: 1, every reply is broadcast whatever the client's flag says
/// (Microsoft's documented default).
pub const DEFAULT_IGNORE_BROADCAST_FLAG: u32 = 1;

/// A value together with where it was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// The `.reg` file that set it last (empty when it did not come from a file).
    pub file: PathBuf,
    /// 1-based line of that assignment (0 when it did not come from a file).
    pub line: usize,
}

impl<T> Located<T> {
    /// The folder of the file that set the value: relative `CalloutDlls` entries resolve against it.
    pub fn dir(&self) -> Option<&Path> {
        // A value read from the live registry (its origin is `HKEY_...\Key\Value`) has no folder.
        if self.file.as_os_str().is_empty() || self.file.to_string_lossy().starts_with("HKEY_") {
            return None;
        }
        Some(self.file.parent().unwrap_or_else(|| Path::new("")))
    }

    /// `file:line`, for diagnostics; `KEY\Value` for a value read from the live registry.
    pub fn location(&self) -> String {
        if self.line == 0 {
            return self.file.display().to_string();
        }
        format!("{}:{}", self.file.display(), self.line)
    }
}

/// The DHCPServer `Parameters` values calloutd uses; `None` = absent (see the `*_or_default` /
/// flag methods for the effective values).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parameters {
    /// `CalloutDlls` (REG_MULTI_SZ), the list ended at its first empty string.
    pub callout_dlls: Option<Located<Vec<String>>>,
    /// `CalloutEnabled` (REG_DWORD).
    pub callout_enabled: Option<Located<u32>>,
    /// `DatabasePath` (REG_EXPAND_SZ or REG_SZ), unexpanded.
    pub database_path: Option<Located<String>>,
    /// `DatabaseName` (REG_SZ or REG_EXPAND_SZ).
    pub database_name: Option<Located<String>>,
    /// `BackupDatabasePath` (REG_EXPAND_SZ or REG_SZ), unexpanded.
    pub backup_database_path: Option<Located<String>>,
    /// `BackupInterval` (REG_DWORD, minutes).
    pub backup_interval: Option<Located<u32>>,
    /// `DatabaseCleanupInterval` (REG_DWORD, minutes).
    pub database_cleanup_interval: Option<Located<u32>>,
    /// `DhcpLogFilePath` (REG_SZ or REG_EXPAND_SZ), unexpanded.
    pub dhcp_log_file_path: Option<Located<String>>,
    /// `ActivityLogFlag` (REG_DWORD, 0/1).
    pub activity_log_flag: Option<Located<u32>>,
    /// `DhcpLogFilesMaxSize` (REG_DWORD, MB).
    pub dhcp_log_files_max_size: Option<Located<u32>>,
    /// `DhcpLogMinSpaceOnDisk` (REG_DWORD, MB).
    pub dhcp_log_min_space_on_disk: Option<Located<u32>>,
    /// `DhcpLogDiskSpaceCheckInterval` (REG_DWORD, events).
    pub dhcp_log_disk_space_check_interval: Option<Located<u32>>,
    /// `IgnoreBroadcastFlag` (REG_DWORD, 0/1).
    pub ignore_broadcast_flag: Option<Located<u32>>,
    /// `DisableRogueDetection` (REG_DWORD). Read for the control API's settings view only: calloutd
    /// has no Active Directory authorisation, so the value changes nothing.
    pub disable_rogue_detection: Option<Located<u32>>,
}

/// A known value set with a type it cannot have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueTypeError {
    /// The value's name as Microsoft spells it, e.g. `CalloutDlls`.
    pub value: &'static str,
    /// The type(s) it must have, e.g. `REG_MULTI_SZ`.
    pub expected: &'static str,
    /// What it was, e.g. `REG_SZ`.
    pub found: String,
    /// The file that set it (empty when not from a file).
    pub file: PathBuf,
    /// The line that set it (0 when not from a file).
    pub line: usize,
}

impl fmt::Display for ValueTypeError {
    /// `file:line: CalloutDlls is REG_SZ, expected REG_MULTI_SZ`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {} is {}, expected {}",
            self.file.display(),
            self.line,
            self.value,
            self.found,
            self.expected
        )
    }
}

/// Every known value in `Parameters` that has the wrong type (one line each when displayed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParametersError {
    /// The values with the wrong type, in table order.
    pub errors: Vec<ValueTypeError>,
}

impl fmt::Display for ParametersError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ParametersError {}

impl Parameters {
    /// Reads the view from `tree` (`CurrentControlSet` or an offline `ControlSetNNN` export).
    /// A known value with the wrong type is an error naming the value and where it was set; unknown
    /// values in the key are ignored.
    pub fn from_tree(tree: &RegistryTree) -> Result<Parameters, ParametersError> {
        let mut reader = ViewReader {
            tree,
            errors: Vec::new(),
        };
        let params = Parameters {
            callout_dlls: reader.multi_sz("CalloutDlls"),
            callout_enabled: reader.dword("CalloutEnabled"),
            database_path: reader.string("DatabasePath"),
            database_name: reader.string("DatabaseName"),
            backup_database_path: reader.string("BackupDatabasePath"),
            backup_interval: reader.dword("BackupInterval"),
            database_cleanup_interval: reader.dword("DatabaseCleanupInterval"),
            dhcp_log_file_path: reader.string("DhcpLogFilePath"),
            activity_log_flag: reader.dword("ActivityLogFlag"),
            dhcp_log_files_max_size: reader.dword("DhcpLogFilesMaxSize"),
            dhcp_log_min_space_on_disk: reader.dword("DhcpLogMinSpaceOnDisk"),
            dhcp_log_disk_space_check_interval: reader.dword("DhcpLogDiskSpaceCheckInterval"),
            ignore_broadcast_flag: reader.dword("IgnoreBroadcastFlag"),
            disable_rogue_detection: reader.dword("DisableRogueDetection"),
        };
        if reader.errors.is_empty() {
            Ok(params)
        } else {
            Err(ParametersError {
                errors: reader.errors,
            })
        }
    }

    /// Callouts are on when `CalloutEnabled` is present and non-zero and `CalloutDlls` is present
    /// (Microsoft: both values must be present).
    pub fn callouts_enabled(&self) -> bool {
        self.callout_enabled.as_ref().is_some_and(|v| v.value != 0) && self.callout_dlls.is_some()
    }

    /// `DatabasePath`, or [`DEFAULT_DATABASE_PATH`].
    pub fn database_path_or_default(&self) -> &str {
        string_or(&self.database_path, DEFAULT_DATABASE_PATH)
    }

    /// `DatabaseName`, or [`DEFAULT_DATABASE_NAME`].
    pub fn database_name_or_default(&self) -> &str {
        string_or(&self.database_name, DEFAULT_DATABASE_NAME)
    }

    /// `BackupDatabasePath`, or [`DEFAULT_BACKUP_DATABASE_PATH`].
    pub fn backup_database_path_or_default(&self) -> &str {
        string_or(&self.backup_database_path, DEFAULT_BACKUP_DATABASE_PATH)
    }

    /// `BackupInterval` in minutes, or [`DEFAULT_BACKUP_INTERVAL_MINUTES`].
    pub fn backup_interval_minutes(&self) -> u32 {
        dword_or(&self.backup_interval, DEFAULT_BACKUP_INTERVAL_MINUTES)
    }

    /// `DatabaseCleanupInterval` in minutes, or [`DEFAULT_DATABASE_CLEANUP_INTERVAL_MINUTES`].
    pub fn database_cleanup_interval_minutes(&self) -> u32 {
        dword_or(
            &self.database_cleanup_interval,
            DEFAULT_DATABASE_CLEANUP_INTERVAL_MINUTES,
        )
    }

    /// `DhcpLogFilePath`, or else the folder of `DatabasePath` (Microsoft: the audit log defaults to
    /// the database folder), which is [`DEFAULT_DHCP_LOG_FILE_PATH`] when neither is set.
    pub fn dhcp_log_file_path_or_default(&self) -> &str {
        match (&self.dhcp_log_file_path, &self.database_path) {
            (Some(path), _) => &path.value,
            (None, Some(db)) => &db.value,
            (None, None) => DEFAULT_DHCP_LOG_FILE_PATH,
        }
    }

    /// The lease database folder on this host: `DatabasePath` placed by [`place_setting`] (an absent
    /// value is mapped under `data_dir` on every OS; a set one is honoured on Windows).
    pub fn database_folder(&self, data_dir: &Path) -> ExpandedPath {
        place_setting(
            self.database_path.as_ref().map(|v| v.value.as_str()),
            DEFAULT_DATABASE_PATH,
            data_dir,
        )
    }

    /// The backup folder on this host: `BackupDatabasePath` placed by [`place_setting`].
    pub fn backup_folder(&self, data_dir: &Path) -> ExpandedPath {
        place_setting(
            self.backup_database_path.as_ref().map(|v| v.value.as_str()),
            DEFAULT_BACKUP_DATABASE_PATH,
            data_dir,
        )
    }

    /// The audit log folder on this host: `DhcpLogFilePath`, else a set `DatabasePath`, placed by
    /// [`place_setting`] (so the default is under `data_dir` on every OS).
    pub fn dhcp_log_folder(&self, data_dir: &Path) -> ExpandedPath {
        let set = self
            .dhcp_log_file_path
            .as_ref()
            .or(self.database_path.as_ref());
        place_setting(
            set.map(|v| v.value.as_str()),
            DEFAULT_DHCP_LOG_FILE_PATH,
            data_dir,
        )
    }

    /// Whether the audit log is on (`ActivityLogFlag` non-zero; on when absent).
    pub fn activity_log_enabled(&self) -> bool {
        dword_or(&self.activity_log_flag, DEFAULT_ACTIVITY_LOG_FLAG) != 0
    }

    /// `DhcpLogFilesMaxSize` in MB, or [`DEFAULT_DHCP_LOG_FILES_MAX_SIZE_MB`].
    pub fn dhcp_log_files_max_size_mb(&self) -> u32 {
        dword_or(
            &self.dhcp_log_files_max_size,
            DEFAULT_DHCP_LOG_FILES_MAX_SIZE_MB,
        )
    }

    /// `DhcpLogMinSpaceOnDisk` in MB, or [`DEFAULT_DHCP_LOG_MIN_SPACE_ON_DISK_MB`].
    pub fn dhcp_log_min_space_on_disk_mb(&self) -> u32 {
        dword_or(
            &self.dhcp_log_min_space_on_disk,
            DEFAULT_DHCP_LOG_MIN_SPACE_ON_DISK_MB,
        )
    }

    /// `DhcpLogDiskSpaceCheckInterval` in events, or
    /// [`DEFAULT_DHCP_LOG_DISK_SPACE_CHECK_INTERVAL`]; 0 is taken as 1 (check at every event).
    pub fn dhcp_log_disk_space_check_interval(&self) -> u32 {
        dword_or(
            &self.dhcp_log_disk_space_check_interval,
            DEFAULT_DHCP_LOG_DISK_SPACE_CHECK_INTERVAL,
        )
        .max(1)
    }

    /// Whether replies are always broadcast (`IgnoreBroadcastFlag` non-zero; on when absent, as
    /// Microsoft documents: [`DEFAULT_IGNORE_BROADCAST_FLAG`]).
    pub fn ignore_broadcast(&self) -> bool {
        dword_or(&self.ignore_broadcast_flag, DEFAULT_IGNORE_BROADCAST_FLAG) != 0
    }

    /// Whether the server serves without AD authorisation (`DisableRogueDetection` non-zero).
    pub fn rogue_detection_disabled(&self) -> bool {
        dword_or(&self.disable_rogue_detection, 0) != 0
    }
}

/// A value in the `Parameters` key that calloutd does not act on, and why (one `check` warning each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnusedValue {
    /// The value's name as spelled in the file.
    pub name: String,
    /// Why calloutd ignores it.
    pub reason: &'static str,
    /// The file that set it (empty when not from a file).
    pub file: PathBuf,
    /// The line that set it (0 when not from a file).
    pub line: usize,
}

impl fmt::Display for UnusedValue {
    /// `file:line: DebugFlag is ignored: <reason>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {} is ignored: {}",
            self.file.display(),
            self.line,
            self.name,
            self.reason
        )
    }
}

/// The values calloutd acts on (everything else in the key is reported by
/// [`Parameters::unused_values`]).
const USED_VALUES: [&str; 13] = [
    "CalloutDlls",
    "CalloutEnabled",
    "DatabasePath",
    "DatabaseName",
    "BackupDatabasePath",
    "BackupInterval",
    "DatabaseCleanupInterval",
    "DhcpLogFilePath",
    "ActivityLogFlag",
    "DhcpLogFilesMaxSize",
    "DhcpLogMinSpaceOnDisk",
    "DhcpLogDiskSpaceCheckInterval",
    "IgnoreBroadcastFlag",
];

/// Documented `DHCPServer\Parameters` values calloutd ignores, with the reason.
const KNOWN_UNUSED: [(&str, &str); 8] = [
    (
        "APIProtocolSupport",
        "it selects the RPC transports of Microsoft's management API; calloutd's is its control HTTP API",
    ),
    (
        "RestoreFlag",
        "calloutd never restores a backup at start; a restore is done by hand (README: lease database, backups and restore)",
    ),
    (
        "DatabaseLoggingFlag",
        "it turns JET's transaction log on or off; calloutd's SQLite database always keeps its write-ahead log",
    ),
    ("DebugFlag", "it selects Microsoft's internal debug tracing; use RUST_LOG or --trace"),
    (
        "DisableRogueDetection",
        "calloutd has no Active Directory authorisation or rogue detection; it always serves",
    ),
    ("DhcpV6LogFilePath", "calloutd serves DHCPv4 only"),
    ("DhcpAlertPercentage", "calloutd raises no scope-usage alerts"),
    ("DhcpAlertCount", "calloutd raises no scope-usage alerts"),
];

impl Parameters {
    /// Every value in the `Parameters` key that calloutd does not act on, in the key's order, each
    /// with the reason it is ignored (values unknown to calloutd get a generic one).
    pub fn unused_values(tree: &RegistryTree) -> Vec<UnusedValue> {
        let Some(key) = tree.key(DHCP_PARAMETERS_KEY) else {
            return Vec::new();
        };
        key.values()
            .iter()
            .filter(|v| {
                !v.name().is_empty()
                    && !USED_VALUES.iter().any(|u| u.eq_ignore_ascii_case(v.name()))
            })
            .map(|v| {
                let reason = KNOWN_UNUSED
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(v.name()))
                    .map_or("not a value calloutd reads", |(_, why)| why);
                let (file, line) = v
                    .origin()
                    .map_or((PathBuf::new(), 0), |o| (o.file.clone(), o.line));
                UnusedValue {
                    name: v.name().to_owned(),
                    reason,
                    file,
                    line,
                }
            })
            .collect()
    }
}

fn string_or<'a>(value: &'a Option<Located<String>>, default: &'a str) -> &'a str {
    value.as_ref().map_or(default, |v| v.value.as_str())
}

fn dword_or(value: &Option<Located<u32>>, default: u32) -> u32 {
    value.as_ref().map_or(default, |v| v.value)
}

struct ViewReader<'a> {
    tree: &'a RegistryTree,
    errors: Vec<ValueTypeError>,
}

impl<'a> ViewReader<'a> {
    fn located<T>(value: T, from: &RegValue) -> Located<T> {
        let (file, line) = from
            .origin()
            .map_or((PathBuf::new(), 0), |o| (o.file.clone(), o.line));
        Located { value, file, line }
    }

    fn get(&self, name: &str) -> Option<&'a RegValue> {
        self.tree.value(DHCP_PARAMETERS_KEY, name)
    }

    fn wrong(&mut self, name: &'static str, expected: &'static str, from: &RegValue) {
        let at = Self::located((), from);
        self.errors.push(ValueTypeError {
            value: name,
            expected,
            found: describe(from.data()),
            file: at.file,
            line: at.line,
        });
    }

    fn multi_sz(&mut self, name: &'static str) -> Option<Located<Vec<String>>> {
        let from = self.get(name)?;
        match from.data() {
            RegValueData::MultiSz(list) => {
                // The documented multi-sz meaning: the list ends at the first empty string.
                let entries = list.iter().take_while(|s| !s.is_empty()).cloned().collect();
                Some(Self::located(entries, from))
            }
            _ => {
                self.wrong(name, "REG_MULTI_SZ", from);
                None
            }
        }
    }

    fn dword(&mut self, name: &'static str) -> Option<Located<u32>> {
        let from = self.get(name)?;
        match from.data() {
            RegValueData::Dword(n) => Some(Self::located(*n, from)),
            _ => {
                self.wrong(name, "REG_DWORD", from);
                None
            }
        }
    }

    fn string(&mut self, name: &'static str) -> Option<Located<String>> {
        let from = self.get(name)?;
        match from.data() {
            RegValueData::Sz(text) | RegValueData::ExpandSz(text) => {
                Some(Self::located(text.clone(), from))
            }
            _ => {
                self.wrong(name, "REG_SZ or REG_EXPAND_SZ", from);
                None
            }
        }
    }
}

/// The type of `data` for an error message; data that did not fit its known type says so.
fn describe(data: &RegValueData) -> String {
    let RegValueData::Other { kind, bytes } = data else {
        return kind_name(data.kind());
    };
    let why = match *kind {
        REG_SZ | REG_EXPAND_SZ | REG_MULTI_SZ => "that is not valid string data",
        REG_DWORD | REG_DWORD_BIG_ENDIAN | REG_QWORD => "of the wrong size",
        _ => return kind_name(*kind),
    };
    format!("{} with {} byte(s) {why}", kind_name(*kind), bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Origin;

    fn set(tree: &mut RegistryTree, name: &str, data: RegValueData, line: usize) {
        let origin = Origin {
            file: PathBuf::from("/cfg/dhcp.reg"),
            line,
        };
        tree.set_value(DHCP_PARAMETERS_KEY, name, data, Some(origin))
            .unwrap();
    }

    #[test]
    fn defaults_when_absent() {
        let params = Parameters::from_tree(&RegistryTree::new()).unwrap();
        assert_eq!(params, Parameters::default());
        assert!(!params.callouts_enabled());
        assert_eq!(
            params.database_path_or_default(),
            r"%SystemRoot%\System32\dhcp"
        );
        assert_eq!(params.database_name_or_default(), "dhcp.mdb");
        assert_eq!(
            params.backup_database_path_or_default(),
            r"%SystemRoot%\System32\dhcp\backup"
        );
        assert_eq!(params.backup_interval_minutes(), 60);
        assert_eq!(params.database_cleanup_interval_minutes(), 60);
        assert_eq!(
            params.dhcp_log_file_path_or_default(),
            r"%windir%\System32\Dhcp"
        );
        assert!(params.activity_log_enabled());
        assert_eq!(params.dhcp_log_files_max_size_mb(), 70);
        assert_eq!(params.dhcp_log_min_space_on_disk_mb(), 20);
        assert_eq!(params.dhcp_log_disk_space_check_interval(), 50);
        // Microsoft's default: the broadcast bit is ignored and every reply broadcast.
        assert!(params.ignore_broadcast());
        assert!(!params.rogue_detection_disabled());
    }

    /// Absent path values go under the data directory on every OS (Windows included: never into
    /// `C:\Windows\System32\dhcp`); this test also runs as a Windows program under Wine.
    #[test]
    fn absent_paths_go_under_the_data_dir_on_every_os() {
        let data = std::env::temp_dir().join("calloutd-data");
        let params = Parameters::from_tree(&RegistryTree::new()).unwrap();
        let db = params.database_folder(&data);
        assert_eq!(db.path, data.join("Windows").join("System32").join("dhcp"));
        assert!(db.mapped);
        assert_eq!(db.original, DEFAULT_DATABASE_PATH);
        assert_eq!(
            params.backup_folder(&data).path,
            data.join("Windows")
                .join("System32")
                .join("dhcp")
                .join("backup")
        );
        assert_eq!(
            params.dhcp_log_folder(&data).path,
            data.join("Windows").join("System32").join("Dhcp")
        );
    }

    /// A `DatabasePath` the configuration sets is honoured on Windows, as Microsoft does; the audit
    /// log follows it.
    #[cfg(windows)]
    #[test]
    fn set_paths_are_honoured_on_windows() {
        let data = std::env::temp_dir().join("calloutd-data");
        let mut tree = RegistryTree::new();
        set(
            &mut tree,
            "DatabasePath",
            RegValueData::ExpandSz(r"D:\dhcpdb".into()),
            2,
        );
        let params = Parameters::from_tree(&tree).unwrap();
        let db = params.database_folder(&data);
        assert_eq!(db.path, Path::new(r"D:\dhcpdb"));
        assert!(!db.mapped);
        assert_eq!(params.dhcp_log_folder(&data).path, Path::new(r"D:\dhcpdb"));
        // What is not set still goes under the data directory.
        assert!(params.backup_folder(&data).path.starts_with(&data));
        // `%SystemRoot%` comes from the real environment when set explicitly.
        set(
            &mut tree,
            "BackupDatabasePath",
            RegValueData::ExpandSz(r"%SystemRoot%\System32\dhcp\backup".into()),
            3,
        );
        let params = Parameters::from_tree(&tree).unwrap();
        let root = std::env::var("SystemRoot").unwrap();
        assert_eq!(
            params.backup_folder(&data).path,
            Path::new(&format!(r"{root}\System32\dhcp\backup"))
        );
    }

    /// Elsewhere a Windows path the configuration sets is mapped under the data directory, and a
    /// POSIX one kept.
    #[cfg(not(windows))]
    #[test]
    fn set_windows_paths_are_mapped_elsewhere() {
        let data = Path::new("/var/lib/calloutd");
        let mut tree = RegistryTree::new();
        set(
            &mut tree,
            "DatabasePath",
            RegValueData::ExpandSz(r"D:\dhcpdb".into()),
            2,
        );
        set(
            &mut tree,
            "DhcpLogFilePath",
            RegValueData::Sz("/var/log/dhcp".into()),
            3,
        );
        let params = Parameters::from_tree(&tree).unwrap();
        let db = params.database_folder(data);
        assert_eq!(db.path, Path::new("/var/lib/calloutd/dhcpdb"));
        assert!(db.mapped);
        assert_eq!(
            params.dhcp_log_folder(data).path,
            Path::new("/var/log/dhcp")
        );
    }

    #[test]
    fn the_audit_log_follows_the_database_folder() {
        let mut tree = RegistryTree::new();
        set(
            &mut tree,
            "DatabasePath",
            RegValueData::ExpandSz(r"D:\dhcpdb".into()),
            2,
        );
        let params = Parameters::from_tree(&tree).unwrap();
        assert_eq!(params.dhcp_log_file_path_or_default(), r"D:\dhcpdb");
        set(
            &mut tree,
            "DhcpLogFilePath",
            RegValueData::Sz(r"E:\logs".into()),
            3,
        );
        let params = Parameters::from_tree(&tree).unwrap();
        assert_eq!(params.dhcp_log_file_path_or_default(), r"E:\logs");
    }

    #[test]
    fn unused_values_are_named_with_a_reason() {
        let mut tree = RegistryTree::new();
        set(&mut tree, "CalloutEnabled", RegValueData::Dword(1), 2);
        set(&mut tree, "DatabaseLoggingFlag", RegValueData::Dword(1), 3);
        set(&mut tree, "restoreflag", RegValueData::Dword(0), 4);
        set(&mut tree, "DebugFlag", RegValueData::Dword(0), 5);
        set(&mut tree, "APIProtocolSupport", RegValueData::Dword(5), 6);
        set(
            &mut tree,
            "DisableRogueDetection",
            RegValueData::Dword(1),
            7,
        );
        set(&mut tree, "SomethingNew", RegValueData::Dword(1), 8);
        // Read by `serve` (the periodic backups): never reported as ignored.
        set(&mut tree, "BackupInterval", RegValueData::Dword(60), 10);
        set(
            &mut tree,
            "BackupDatabasePath",
            RegValueData::Sz(r"D:\backup".into()),
            11,
        );
        set(
            &mut tree,
            "DhcpLogDiskSpaceCheckInterval",
            RegValueData::Dword(9),
            9,
        );
        let unused = Parameters::unused_values(&tree);
        let names: Vec<&str> = unused.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "DatabaseLoggingFlag",
                "restoreflag",
                "DebugFlag",
                "APIProtocolSupport",
                "DisableRogueDetection",
                "SomethingNew"
            ]
        );
        assert!(unused[0].reason.contains("JET"));
        assert_eq!(unused[5].reason, "not a value calloutd reads");
        assert_eq!(
            unused[2].to_string(),
            "/cfg/dhcp.reg:5: DebugFlag is ignored: it selects Microsoft's internal debug tracing; use RUST_LOG or --trace"
        );
        assert!(Parameters::unused_values(&RegistryTree::new()).is_empty());
    }

    #[test]
    fn reads_every_value_with_its_origin() {
        let mut tree = RegistryTree::new();
        let list =
            |items: &[&str]| RegValueData::MultiSz(items.iter().map(|s| s.to_string()).collect());
        set(
            &mut tree,
            "calloutdlls",
            list(&["b.so", "a.so", "", "ignored.so"]),
            4,
        );
        set(&mut tree, "CalloutEnabled", RegValueData::Dword(1), 5);
        set(
            &mut tree,
            "DatabasePath",
            RegValueData::ExpandSz("db".into()),
            6,
        );
        set(
            &mut tree,
            "DatabaseName",
            RegValueData::Sz("x.mdb".into()),
            7,
        );
        set(
            &mut tree,
            "BackupDatabasePath",
            RegValueData::Sz("bk".into()),
            8,
        );
        set(&mut tree, "BackupInterval", RegValueData::Dword(5), 9);
        set(
            &mut tree,
            "DatabaseCleanupInterval",
            RegValueData::Dword(6),
            10,
        );
        set(
            &mut tree,
            "DhcpLogFilePath",
            RegValueData::ExpandSz("logs".into()),
            11,
        );
        set(&mut tree, "ActivityLogFlag", RegValueData::Dword(0), 12);
        set(&mut tree, "DhcpLogFilesMaxSize", RegValueData::Dword(7), 13);
        set(&mut tree, "IgnoreBroadcastFlag", RegValueData::Dword(1), 14);
        set(
            &mut tree,
            "DisableRogueDetection",
            RegValueData::Dword(1),
            15,
        );
        let params = Parameters::from_tree(&tree).unwrap();
        let dlls = params.callout_dlls.as_ref().unwrap();
        assert_eq!(dlls.value, ["b.so", "a.so"]);
        assert_eq!(dlls.location(), "/cfg/dhcp.reg:4");
        assert_eq!(dlls.dir(), Some(Path::new("/cfg")));
        assert!(params.callouts_enabled());
        assert_eq!(params.database_path_or_default(), "db");
        assert_eq!(params.database_name_or_default(), "x.mdb");
        assert_eq!(params.backup_database_path_or_default(), "bk");
        assert_eq!(params.backup_interval_minutes(), 5);
        assert_eq!(params.database_cleanup_interval_minutes(), 6);
        assert_eq!(params.dhcp_log_file_path_or_default(), "logs");
        assert!(!params.activity_log_enabled());
        assert_eq!(params.dhcp_log_files_max_size_mb(), 7);
        assert!(params.ignore_broadcast());
        assert!(params.rogue_detection_disabled());
        assert_eq!(params.disable_rogue_detection.unwrap().line, 15);
    }

    #[test]
    fn wrong_types_name_the_value_and_where_it_was_set() {
        let mut tree = RegistryTree::new();
        set(
            &mut tree,
            "CalloutDlls",
            RegValueData::Sz(r"C:\a.dll".into()),
            3,
        );
        set(
            &mut tree,
            "CalloutEnabled",
            RegValueData::Other {
                kind: REG_DWORD,
                bytes: vec![1],
            },
            4,
        );
        set(&mut tree, "DatabaseName", RegValueData::Dword(1), 5);
        let error = Parameters::from_tree(&tree).unwrap_err();
        let lines: Vec<String> = error.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "/cfg/dhcp.reg:3: CalloutDlls is REG_SZ, expected REG_MULTI_SZ",
                "/cfg/dhcp.reg:4: CalloutEnabled is REG_DWORD with 1 byte(s) of the wrong size, expected REG_DWORD",
                "/cfg/dhcp.reg:5: DatabaseName is REG_DWORD, expected REG_SZ or REG_EXPAND_SZ",
            ]
        );
    }

    #[test]
    fn callouts_need_both_values() {
        let mut tree = RegistryTree::new();
        set(&mut tree, "CalloutEnabled", RegValueData::Dword(1), 1);
        assert!(!Parameters::from_tree(&tree).unwrap().callouts_enabled());
        set(
            &mut tree,
            "CalloutDlls",
            RegValueData::MultiSz(vec!["a".into()]),
            2,
        );
        assert!(Parameters::from_tree(&tree).unwrap().callouts_enabled());
        set(&mut tree, "CalloutEnabled", RegValueData::Dword(0), 3);
        assert!(!Parameters::from_tree(&tree).unwrap().callouts_enabled());
    }
}
