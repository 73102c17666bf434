//! Loading the callout DLL: docs/hooks.md section 2.

use crate::callout::{Callout, HookTable};
use crate::{trust, HookName};
use dhcpssdk::{
    DHCP_CALLOUT_ENTRY_POINT, DHCP_CALLOUT_ENTRY_POINT_C, DHCP_CALLOUT_TABLE, DHCP_CALLOUT_VERSION,
    LPDHCP_ENTRY_POINT_FUNC,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The order in which `CalloutDlls` entries are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LoadOrder {
    /// Case-insensitive sort of the full strings (Microsoft's documented behaviour; the default).
    #[default]
    Alphabetical,
    /// The multi-sz order as written (`--load-order listed`).
    Listed,
}

/// What the loader needs from the registry and the command line.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CalloutConfig {
    /// `CalloutDlls`, already cut at the first empty string.
    pub dlls: Vec<String>,
    /// `CalloutEnabled` (absent = `None`).
    pub enabled: Option<u32>,
    /// The folder of the `.reg` file that set `CalloutDlls`: relative entries resolve against it
    /// first, then through the normal library search.
    pub base_dir: Option<PathBuf>,
    /// Alphabetical (default) or listed.
    pub order: LoadOrder,
    /// `--strict-dll-permissions`: a DLL that someone other than calloutd's user or root could
    /// have written (see [`crate::trust`]), or whose permissions cannot be checked, is not loaded
    /// (a load failure, event 1034). Without it, that is a warning.
    pub strict_permissions: bool,
}

/// How one candidate DLL fared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The entry point returned 0: this DLL is the callout (event 1033).
    Loaded,
    /// The DLL could not be loaded (event 1034); `error` is the OS error text.
    LoadFailed {
        /// The OS error text.
        error: String,
    },
    /// The DLL has no `DhcpServerCalloutEntry` export (event 1034).
    EntryPointMissing {
        /// The OS error text.
        error: String,
    },
    /// The entry point returned a non-zero code (event 1034).
    EntryFailed {
        /// The code it returned.
        code: u32,
    },
    /// `--strict-dll-permissions` refused it: others can write it or a folder above it (event
    /// 1034).
    Untrusted {
        /// Who can write what.
        error: String,
    },
    /// The isolated host died while loading this DLL or calling its entry point (`--isolate`;
    /// event 1032, "exception while loading"): the DLL is not loaded, the next one is tried.
    Exception {
        /// How the host died (`SIGSEGV`, `exit 3`...).
        cause: String,
    },
}

impl AttemptOutcome {
    /// The Windows event ID Microsoft DHCP Server logs for this outcome (1033 or 1034).
    pub fn event_id(&self) -> u32 {
        match self {
            AttemptOutcome::Loaded => 1033,
            AttemptOutcome::Exception { .. } => 1032,
            _ => 1034,
        }
    }

    /// Whether this candidate became the callout.
    pub fn is_loaded(&self) -> bool {
        matches!(self, AttemptOutcome::Loaded)
    }
}

impl std::fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptOutcome::Loaded => write!(f, "loaded ({DHCP_CALLOUT_ENTRY_POINT} returned 0)"),
            AttemptOutcome::LoadFailed { error } => write!(f, "cannot load: {error}"),
            AttemptOutcome::EntryPointMissing { error } => {
                write!(f, "no {DHCP_CALLOUT_ENTRY_POINT} export: {error}")
            }
            AttemptOutcome::Exception { cause } => {
                write!(
                    f,
                    "exception while loading: the callout host died ({cause})"
                )
            }
            AttemptOutcome::EntryFailed { code } => {
                write!(
                    f,
                    "{DHCP_CALLOUT_ENTRY_POINT} returned {code} (0x{code:08X})"
                )
            }
            AttemptOutcome::Untrusted { error } => {
                write!(f, "not loaded (--strict-dll-permissions): {error}")
            }
        }
    }
}

/// One candidate tried, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadAttempt {
    /// The `CalloutDlls` entry as written.
    pub entry: String,
    /// What was handed to the OS loader (resolved against the base dir when that file exists).
    pub path: PathBuf,
    /// The `ChainDlls` passed to its entry point (empty when it was not called).
    pub chain_dlls: Vec<String>,
    /// Who other than calloutd's user and root can change the DLL (see [`crate::trust`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permission_warnings: Vec<String>,
    /// The outcome.
    #[serde(flatten)]
    pub outcome: AttemptOutcome,
}

impl std::fmt::Display for LoadAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "event {}: {}: {}",
            self.outcome.event_id(),
            self.entry,
            self.outcome
        )
    }
}

/// The DLL that became the callout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadedDll {
    /// The `CalloutDlls` entry as written.
    pub entry: String,
    /// The path handed to the OS loader.
    pub path: PathBuf,
    /// The `ChainDlls` it was given.
    pub chain_dlls: Vec<String>,
    /// The hooks its table sets, in table order.
    pub hooks: Vec<HookName>,
    /// The SHA-256 of the file loaded (lower-case hex); `None` for a bare name found through the
    /// library search path.
    pub sha256: Option<String>,
}

/// The overall result of loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadStatus {
    /// `CalloutEnabled` is absent or 0: nothing was loaded.
    Disabled,
    /// `CalloutDlls` is empty: nothing was loaded.
    NoDlls,
    /// A DLL was loaded.
    Loaded,
    /// Every candidate failed.
    AllFailed,
}

/// Everything the loader did, for logs and `calloutd check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadReport {
    /// The overall result.
    pub status: LoadStatus,
    /// The `CalloutEnabled` value read (absent = `None`).
    pub enabled: Option<u32>,
    /// The order used.
    pub order: LoadOrder,
    /// The candidates in the order they are tried.
    pub candidates: Vec<String>,
    /// Every attempt made, in order.
    pub attempts: Vec<LoadAttempt>,
    /// The DLL that was loaded.
    pub loaded: Option<LoadedDll>,
}

impl LoadReport {
    /// One clear line saying what happened.
    pub fn summary(&self) -> String {
        match (&self.status, &self.loaded) {
            (LoadStatus::Disabled, _) => match self.enabled {
                None => "callouts disabled: CalloutEnabled is absent (Microsoft DHCP Server needs \
                         CalloutDlls and CalloutEnabled = 1); no callout DLL loaded"
                    .into(),
                Some(_) => "callouts disabled: CalloutEnabled is 0; no callout DLL loaded".into(),
            },
            (LoadStatus::NoDlls, _) => {
                "callouts enabled but CalloutDlls lists no DLL: no callout DLL loaded".into()
            }
            (LoadStatus::Loaded, Some(dll)) => format!(
                "callout loaded: {} (ChainDlls: [{}]; hooks: {})",
                dll.entry,
                dll.chain_dlls.join(", "),
                dll.hooks
                    .iter()
                    .map(|h| h.table_slot())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => format!(
                "no callout DLL could be loaded ({} tried)",
                self.attempts.len()
            ),
        }
    }

    /// Attempts that failed before the one that loaded (warnings for `calloutd check`).
    pub fn failed_attempts(&self) -> impl Iterator<Item = &LoadAttempt> {
        self.attempts.iter().filter(|a| !a.outcome.is_loaded())
    }

    /// Every permission warning of every attempt, each as `entry: warning`.
    pub fn permission_warnings(&self) -> impl Iterator<Item = String> + '_ {
        self.attempts.iter().flat_map(|a| {
            a.permission_warnings
                .iter()
                .map(move |w| format!("{}: {w}", a.entry))
        })
    }
}

/// A [`LoadReport`] and, when one loaded, the [`Callout`].
#[derive(Debug)]
pub struct LoadResult {
    /// What happened.
    pub report: LoadReport,
    /// The loaded callout, ready for hook calls.
    pub callout: Option<Callout>,
}

/// Loads the callout as Microsoft DHCP Server does (docs/hooks.md section 2):
/// `CalloutEnabled` absent or 0 loads nothing; otherwise each candidate in `config.order` is loaded,
/// its `DhcpServerCalloutEntry` is called with a zeroed table, `ChainDlls` = the candidates after it
/// (UTF-16 multi-sz, never NULL) and `CalloutVersion` 0; the first that returns 0 is kept, every
/// other is unloaded and the next one tried. Every step is logged (events 1033/1034) and reported.
pub fn load_callout(config: &CalloutConfig) -> LoadResult {
    load_callout_observed(config, &mut |_, _| {}, None)
}

/// [`load_callout`], telling `attempting` the index (in load order) of each candidate and the
/// report so far before it is loaded: the isolated host publishes both, so a crash while loading
/// names the DLL (event 1032) and the attempts before it are not lost.
///
/// `permissions`, when given, is who can write each candidate (in load order) as another process
/// found it: the Linux server's findings for a Windows host under wine, which cannot read Linux
/// permissions. Without it each file is checked here.
pub(crate) fn load_callout_observed(
    config: &CalloutConfig,
    attempting: &mut dyn FnMut(usize, &LoadReport),
    permissions: Option<&[Vec<String>]>,
) -> LoadResult {
    let candidates = ordered(&config.dlls, config.order);
    let mut report = LoadReport {
        status: LoadStatus::AllFailed,
        enabled: config.enabled,
        order: config.order,
        candidates: candidates.clone(),
        attempts: Vec::new(),
        loaded: None,
    };
    if config.enabled.unwrap_or(0) == 0 {
        report.status = LoadStatus::Disabled;
        tracing::info!("{}", report.summary());
        return LoadResult {
            report,
            callout: None,
        };
    }
    if candidates.is_empty() {
        report.status = LoadStatus::NoDlls;
        tracing::info!("{}", report.summary());
        return LoadResult {
            report,
            callout: None,
        };
    }
    for (i, entry) in candidates.iter().enumerate() {
        let chain_dlls = candidates[i + 1..].to_vec();
        let path = resolve(entry, config.base_dir.as_deref());
        attempting(i, &report);
        let (permission_warnings, clean) = match permissions {
            Some(found) => {
                let lines = found.get(i).cloned().unwrap_or_default();
                let clean = lines.is_empty();
                (lines, clean)
            }
            None => {
                let trust = trust::check_dll(&path);
                (trust.lines(), trust.is_clean())
            }
        };
        for warning in &permission_warnings {
            tracing::warn!("{entry}: {warning}");
        }
        // Hashed before loading: what the log names is what the loader then reads (in strict
        // mode nobody else could have changed it in between).
        let sha256 = trust::sha256_file(&path)
            .ok()
            .filter(|_| path.components().count() > 1);
        let (outcome, callout) = if config.strict_permissions && !clean {
            (
                AttemptOutcome::Untrusted {
                    error: permission_warnings.join("; "),
                },
                None,
            )
        } else {
            try_one(entry, &path, &chain_dlls)
        };
        let attempt = LoadAttempt {
            entry: entry.clone(),
            path: path.clone(),
            permission_warnings,
            chain_dlls: if matches!(
                outcome,
                AttemptOutcome::Loaded | AttemptOutcome::EntryFailed { .. }
            ) {
                chain_dlls.clone()
            } else {
                Vec::new()
            },
            outcome,
        };
        if let Some(callout) = callout {
            tracing::info!("{attempt}");
            match &sha256 {
                Some(digest) => tracing::info!("{entry}: SHA-256 {digest} ({})", path.display()),
                None => {
                    tracing::info!("{entry}: loaded through the library search path; not hashed")
                }
            }
            report.loaded = Some(LoadedDll {
                entry: entry.clone(),
                path,
                chain_dlls,
                hooks: callout.hooks_set(),
                sha256,
            });
            report.attempts.push(attempt);
            report.status = LoadStatus::Loaded;
            tracing::info!("{}", report.summary());
            return LoadResult {
                report,
                callout: Some(callout),
            };
        }
        tracing::warn!("{attempt}");
        report.attempts.push(attempt);
    }
    tracing::warn!("{}", report.summary());
    LoadResult {
        report,
        callout: None,
    }
}

/// The candidates in load order.
pub(crate) fn ordered(dlls: &[String], order: LoadOrder) -> Vec<String> {
    let mut list = dlls.to_vec();
    if order == LoadOrder::Alphabetical {
        // Stable: entries equal but for case keep their listed order.
        list.sort_by_cached_key(|s| s.to_lowercase());
    }
    list
}

/// An absolute entry is used as is; a relative one is looked up in `base_dir` first, and otherwise
/// handed to the OS loader unchanged (a bare name goes through the normal library search: on Windows
/// `LoadLibraryW`'s DLL search path, which libloading uses). On Windows `%VAR%` references are
/// expanded from the real environment first, as `ExpandEnvironmentStrings` does (unknown ones stay).
pub(crate) fn resolve(entry: &str, base_dir: Option<&Path>) -> PathBuf {
    #[cfg(windows)]
    let expanded = expand_environment(entry);
    #[cfg(windows)]
    let entry = expanded.as_str();
    let path = Path::new(entry);
    if path.is_relative() {
        if let Some(base) = base_dir {
            let candidate = base.join(path);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    path.to_path_buf()
}

/// `%NAME%` replaced by the environment variable NAME where it is set (case-insensitive on Windows,
/// like the environment itself); anything else stays as written.
#[cfg(windows)]
fn expand_environment(entry: &str) -> String {
    let mut out = String::new();
    let mut rest = entry;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('%') {
            Some(end) if end > 0 => match std::env::var(&after[..end]) {
                Ok(value) => {
                    out.push_str(&value);
                    rest = &after[end + 1..];
                }
                Err(_) => {
                    out.push('%');
                    out.push_str(&after[..end]);
                    rest = &after[end..];
                }
            },
            _ => {
                out.push('%');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `strings` as a UTF-16 multi-sz: each string NUL-terminated, then one more NUL.
pub(crate) fn multi_sz(strings: &[String]) -> Vec<u16> {
    let mut out: Vec<u16> = Vec::new();
    for s in strings {
        out.extend(s.encode_utf16());
        out.push(0);
    }
    out.push(0);
    if strings.is_empty() {
        // An empty remainder is "two NULs", never NULL.
        out.push(0);
    }
    out
}

/// The error and its sources as one line (libloading's own message is generic; the OS text is
/// in the source).
fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

fn try_one(entry: &str, path: &Path, chain_dlls: &[String]) -> (AttemptOutcome, Option<Callout>) {
    // SAFETY: loading a library runs its initialisers. Running the configured callout's code is
    // the purpose of this server, exactly as Microsoft's service does; the administrator chose it.
    let library = match unsafe { libloading::Library::new(path.as_os_str()) } {
        Ok(library) => library,
        Err(e) => {
            return (
                AttemptOutcome::LoadFailed {
                    error: error_text(&e),
                },
                None,
            )
        }
    };
    // SAFETY: `DhcpServerCalloutEntry` has the documented `LPDHCP_ENTRY_POINT_FUNC` signature; the
    // function pointer is copied out and only used while `library` is alive (it moves into the
    // Callout, or is dropped after the last use below).
    let entry_fn: LPDHCP_ENTRY_POINT_FUNC =
        match unsafe { library.get::<LPDHCP_ENTRY_POINT_FUNC>(DHCP_CALLOUT_ENTRY_POINT_C) } {
            Ok(symbol) => *symbol,
            Err(e) => {
                return (
                    AttemptOutcome::EntryPointMissing {
                        error: error_text(&e),
                    },
                    None,
                )
            }
        };
    let mut chain = multi_sz(chain_dlls);
    let mut table = DHCP_CALLOUT_TABLE::zeroed();
    // SAFETY: `chain` is a valid NUL-NUL-terminated UTF-16 buffer and `table` a zeroed, writable
    // DHCP_CALLOUT_TABLE, both alive for the call (and `chain` for the callout's lifetime, in case
    // the DLL keeps the pointer); the library is loaded.
    let code = unsafe { entry_fn(chain.as_mut_ptr(), DHCP_CALLOUT_VERSION, &mut table) };
    if code != 0 {
        drop(library);
        return (AttemptOutcome::EntryFailed { code }, None);
    }
    let hooks = HookTable::from_table(&table);
    let callout = Callout::new(entry.to_string(), path.to_path_buf(), hooks, chain, library);
    (AttemptOutcome::Loaded, Some(callout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(windows)]
    #[test]
    fn percent_variables_expand_from_the_environment_and_unknown_ones_stay() {
        std::env::set_var("CALLOUTD_TEST_DLL_DIR", r"C:\callouts");
        assert_eq!(
            expand_environment(r"%calloutd_test_dll_dir%\trace.dll"),
            r"C:\callouts\trace.dll"
        );
        assert_eq!(
            expand_environment(r"%CALLOUTD_NOT_SET%\x.dll 100%"),
            r"%CALLOUTD_NOT_SET%\x.dll 100%"
        );
        assert!(resolve(r"%SystemRoot%\System32\x.dll", None).is_absolute());
    }

    #[test]
    fn alphabetical_order_ignores_case_and_listed_keeps_the_multi_sz_order() {
        let dlls: Vec<String> = ["c.dll", "B.dll", "a.dll"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            ordered(&dlls, LoadOrder::Alphabetical),
            ["a.dll", "B.dll", "c.dll"]
        );
        assert_eq!(
            ordered(&dlls, LoadOrder::Listed),
            ["c.dll", "B.dll", "a.dll"]
        );
    }

    #[test]
    fn multi_sz_is_nul_separated_with_a_final_nul_and_never_empty() {
        assert_eq!(multi_sz(&[]), vec![0, 0]);
        let two = multi_sz(&["ab".into(), "é".into()]);
        assert_eq!(two, vec![b'a' as u16, b'b' as u16, 0, 0xE9, 0, 0]);
    }

    #[test]
    fn relative_entries_resolve_against_the_base_dir_when_the_file_is_there() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.so"), b"").unwrap();
        assert_eq!(resolve("x.so", Some(dir.path())), dir.path().join("x.so"));
        assert_eq!(resolve("y.so", Some(dir.path())), PathBuf::from("y.so"));
        assert_eq!(
            resolve("/abs/z.so", Some(dir.path())),
            PathBuf::from("/abs/z.so")
        );
        assert_eq!(resolve("x.so", None), PathBuf::from("x.so"));
    }

    #[test]
    fn disabled_or_absent_enable_value_loads_nothing_with_one_reason() {
        for enabled in [None, Some(0)] {
            let result = load_callout(&CalloutConfig {
                dlls: vec!["/nonexistent/trace.so".into()],
                enabled,
                ..CalloutConfig::default()
            });
            assert_eq!(result.report.status, LoadStatus::Disabled);
            assert!(result.report.attempts.is_empty());
            assert!(result.callout.is_none());
            let expected = if enabled.is_none() {
                "CalloutEnabled is absent"
            } else {
                "CalloutEnabled is 0"
            };
            assert!(
                result.report.summary().contains(expected),
                "{}",
                result.report.summary()
            );
        }
    }
}
