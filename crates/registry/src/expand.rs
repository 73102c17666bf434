//! Expanding the Windows path values of `Parameters` (`%SystemRoot%\System32\dhcp`, `C:\dhcp`,
//! relative paths) into paths this host can use.

use std::path::{Path, PathBuf};

/// A registry path value turned into a host path, with what was done to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandedPath {
    /// The value as the registry holds it.
    pub original: String,
    /// The path to use on this host.
    pub path: PathBuf,
    /// True when the path was placed under the data directory (a Windows location on a non-Windows
    /// host, or a relative path): callers should say where it went.
    pub mapped: bool,
}

/// Expands `%SystemRoot%`, `%windir%` and other `%VAR%` references in `value` and makes the result
/// usable here.
///
/// On Windows: variables come from the environment (unknown ones stay as written, like
/// `ExpandEnvironmentStrings`); a relative result is placed under `data_dir`.
///
/// Elsewhere: `%SystemRoot%`/`%windir%` mean `C:\Windows`, `%SystemDrive%` `C:`, `%ProgramData%`
/// `C:\ProgramData`, other variables come from the environment when set; then a Windows absolute path
/// (`C:\x`, `\x`, `\\server\share\x`) is mapped under `data_dir` without its drive (`C:\Windows\x` →
/// `data_dir/Windows/x`, UNC → `data_dir/UNC/server/share/x`), a relative path goes under `data_dir`,
/// and a POSIX absolute path (`/var/lib/x`) is kept. Backslashes become `/`.
pub fn expand_path(value: &str, data_dir: &Path) -> ExpandedPath {
    let expanded = expand_variables(value, host_variable);
    let (path, mapped) = place(&expanded, data_dir);
    ExpandedPath {
        original: value.to_string(),
        path,
        mapped,
    }
}

/// Replaces each `%NAME%` for which `lookup` (given the name) has a value; others stay as written.
pub fn expand_variables(value: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('%') {
            Some(end) => {
                let name = &after[..end];
                match (!name.is_empty()).then(|| lookup(name)).flatten() {
                    Some(replacement) => {
                        out.push_str(&replacement);
                        rest = &after[end + 1..];
                    }
                    None => {
                        // Keep the `%NAME` and rescan from the closing `%`, which may open another.
                        out.push('%');
                        out.push_str(name);
                        rest = &after[end..];
                    }
                }
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(windows)]
fn host_variable(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(not(windows))]
fn host_variable(name: &str) -> Option<String> {
    windows_default_variable(name)
}

/// `%SystemRoot%`/`%windir%` as `C:\Windows`, `%SystemDrive%` as `C:`, `%ProgramData%` as
/// `C:\ProgramData` (a stock Windows install, whatever this host is), other variables from the
/// environment when set.
fn windows_default_variable(name: &str) -> Option<String> {
    let windows_default = match name.to_ascii_lowercase().as_str() {
        "systemroot" | "windir" => Some(r"C:\Windows"),
        "systemdrive" => Some("C:"),
        "programdata" => Some(r"C:\ProgramData"),
        _ => None,
    };
    match windows_default {
        Some(path) => Some(path.to_string()),
        None => std::env::var(name).ok(),
    }
}

/// Places a `Parameters` path setting on this host. A value the configuration set (`Some`) goes
/// through [`expand_path`], so on Windows an explicit `C:\dhcp` is used as it is, as Microsoft
/// does. Microsoft's default, used when the value is absent (`None`), is mapped under `data_dir` on
/// every host, Windows included (`%SystemRoot%\System32\dhcp` → `data_dir/Windows/System32/dhcp`):
/// calloutd never writes into a Windows system folder, next to a real Microsoft DHCP server's
/// files, unless the configuration says so.
pub fn place_setting(value: Option<&str>, default: &str, data_dir: &Path) -> ExpandedPath {
    match value {
        Some(value) => expand_path(value, data_dir),
        None => {
            let expanded = expand_variables(default, windows_default_variable);
            ExpandedPath {
                original: default.to_string(),
                path: map_under(&expanded, data_dir),
                mapped: true,
            }
        }
    }
}

#[cfg(windows)]
fn place(expanded: &str, data_dir: &Path) -> (PathBuf, bool) {
    let path = PathBuf::from(expanded);
    if path.is_relative() {
        (data_dir.join(path), true)
    } else {
        (path, false)
    }
}

#[cfg(not(windows))]
fn place(expanded: &str, data_dir: &Path) -> (PathBuf, bool) {
    if expanded.starts_with('/') {
        return (PathBuf::from(expanded), false);
    }
    (map_under(expanded, data_dir), true)
}

/// A Windows path (absolute or relative) under `data_dir`, without its drive: `C:\Windows\x` →
/// `data_dir/Windows/x`, `\\server\share\x` → `data_dir/UNC/server/share/x`.
fn map_under(expanded: &str, data_dir: &Path) -> PathBuf {
    let (prefix, rest): (&[&str], &str) = if let Some(unc) = expanded.strip_prefix(r"\\") {
        (&["UNC"], unc)
    } else if let Some(rooted) = expanded.strip_prefix('\\') {
        (&[], rooted)
    } else {
        let bytes = expanded.as_bytes();
        // `C:\x` and `C:x` alike: the drive is dropped (`get` keeps this panic-free on any input).
        if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
            (&[], expanded.get(2..).unwrap_or_default())
        } else {
            (&[], expanded)
        }
    };
    let mut path = data_dir.to_path_buf();
    path.extend(prefix);
    path.extend(
        rest.split(['\\', '/'])
            .filter(|s| !s.is_empty() && *s != "."),
    );
    path
}

#[cfg(all(test, not(windows)))]
mod tests {
    use super::*;

    #[test]
    fn windows_folders_map_under_the_data_dir() {
        let data = Path::new("/var/lib/calloutd");
        let e = expand_path(r"%SystemRoot%\System32\dhcp", data);
        assert_eq!(e.path, Path::new("/var/lib/calloutd/Windows/System32/dhcp"));
        assert!(e.mapped);
        assert_eq!(e.original, r"%SystemRoot%\System32\dhcp");
        assert_eq!(
            expand_path(r"%WINDIR%\System32\Dhcp", data).path,
            Path::new("/var/lib/calloutd/Windows/System32/Dhcp")
        );
        assert_eq!(
            expand_path(r"D:\dhcp\db", data).path,
            Path::new("/var/lib/calloutd/dhcp/db")
        );
        assert_eq!(
            expand_path(r"\\srv\share\x", data).path,
            Path::new("/var/lib/calloutd/UNC/srv/share/x")
        );
        assert_eq!(
            expand_path(r"backup\.\b", data).path,
            Path::new("/var/lib/calloutd/backup/b")
        );
        let posix = expand_path("/srv/dhcp", data);
        assert_eq!(posix.path, Path::new("/srv/dhcp"));
        assert!(!posix.mapped);
    }

    #[test]
    fn variables_expand_like_expand_environment_strings() {
        let lookup = |name: &str| (name == "A").then(|| "x".to_string());
        assert_eq!(expand_variables("%A%\\%B%\\%A%", lookup), "x\\%B%\\x");
        assert_eq!(expand_variables("50%%A%", lookup), "50%x");
        assert_eq!(expand_variables("%A", lookup), "%A");
        assert_eq!(expand_variables("é%A%é", lookup), "éxé");
    }
}
