//! PE callouts on Linux (issue 13 item 4): a `CalloutDlls` entry that is a Windows DLL (told by
//! its "MZ" and "PE" headers, not its name) cannot be `dlopen`ed; it is hosted by `calloutd.exe`'s
//! host mode run under wine, over the pipe-doorbell transport (see [`super::bells`]).

use crate::load::{ordered, resolve};
use crate::CalloutConfig;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The environment variable naming `calloutd.exe` (default: `calloutd.exe` next to calloutd).
pub const WINDOWS_HOST_ENV: &str = "CALLOUTD_WINDOWS_HOST";
/// The environment variable naming the wine loader (default: Debian's, then `wine64`, `wine`).
pub const WINE_ENV: &str = "CALLOUTD_WINE";

/// Whether the file at `path` is a PE image: "MZ", then "PE\0\0" at the offset the DOS header
/// names. Unreadable or short files are not.
pub fn is_pe(path: &Path) -> bool {
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut head = [0u8; 0x40];
    if file.read_exact(&mut head).is_err() || &head[..2] != b"MZ" {
        return false;
    }
    let offset = u32::from_le_bytes([head[0x3c], head[0x3d], head[0x3e], head[0x3f]]);
    let mut signature = [0u8; 4];
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(u64::from(offset))).is_ok()
        && file.read_exact(&mut signature).is_ok()
        && &signature == b"PE\0\0"
}

/// The first candidate that is a PE file (resolved as the loader would).
pub(crate) fn first_pe(candidates: &[String], config: &CalloutConfig) -> Option<PathBuf> {
    candidates
        .iter()
        .map(|c| resolve(c, config.base_dir.as_deref()))
        .find(|p| is_pe(p))
}

/// Whether `config` names a Windows DLL (PE) that this platform cannot load in-process: on Linux,
/// such a callout must go through [`IsolatedCallout::load`](super::IsolatedCallout::load), which
/// hosts it under wine. Always `false` on Windows.
pub fn needs_windows_host(config: &CalloutConfig) -> bool {
    !cfg!(windows)
        && config.enabled.unwrap_or(0) != 0
        && first_pe(&ordered(&config.dlls, config.order), config).is_some()
}

/// How a host for PE DLLs is started: `launcher... program callout-host ...`, with paths written
/// for the program (`Z:\...` under wine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeHost {
    /// What runs the program (the wine loader); empty = run it directly.
    pub launcher: Vec<OsString>,
    /// The host program (`calloutd.exe`).
    pub program: PathBuf,
    /// Whether Linux paths are handed over as wine's `Z:` drive paths.
    pub windows_paths: bool,
}

impl PeHost {
    /// `path` as the host program sees it.
    pub fn host_path(&self, path: &Path) -> OsString {
        if self.windows_paths {
            format!("Z:{}", path.display()).replace('/', "\\").into()
        } else {
            path.as_os_str().to_owned()
        }
    }
}

/// What wine is started with, besides the user's own settings:
/// - `WINEDEBUG=-all`: wine's own diagnostics would fill the server's log;
/// - `WINEDLLOVERRIDES`: no Mono/Gecko installer prompts when wine makes a new prefix, and no
///   `winedbg`. On an unhandled exception wine starts the debugger named in the prefix's AeDebug
///   key, which prints a backtrace or opens a crash dialog (with a display) and holds the dead
///   host until it is dismissed. Disabling `winedbg.exe` here covers every prefix without a
///   registry edit (which would cost one more wine start per host), and the host's own
///   unhandled-exception filter ends the process before wine would ask for a debugger at all.
///
/// A `WINEDEBUG` the user set is kept; a `WINEDLLOVERRIDES` the user set is kept, with
/// `winedbg.exe=d` added unless it names winedbg itself.
pub fn wine_environment(
    winedebug: Option<&std::ffi::OsStr>,
    overrides: Option<&std::ffi::OsStr>,
) -> Vec<(OsString, OsString)> {
    let mut env = Vec::new();
    if winedebug.is_none() {
        env.push(("WINEDEBUG".into(), "-all".into()));
    }
    let overrides = match overrides {
        None => Some(OsString::from("mscoree,mshtml=;winedbg.exe=d")),
        Some(user) if user.to_string_lossy().to_lowercase().contains("winedbg") => None,
        Some(user) if user.is_empty() => Some(OsString::from("winedbg.exe=d")),
        Some(user) => {
            let mut value = user.to_owned();
            value.push(";winedbg.exe=d");
            Some(value)
        }
    };
    if let Some(value) = overrides {
        env.push(("WINEDLLOVERRIDES".into(), value));
    }
    env
}

/// The wine loader: `$CALLOUTD_WINE`, Debian's `/usr/lib/wine/wine64`, or `wine64`/`wine` on
/// the PATH.
pub fn find_wine() -> Option<PathBuf> {
    if let Some(named) = std::env::var_os(WINE_ENV) {
        // Named but missing: no wine (the error says what to install), never another one.
        return Some(PathBuf::from(named)).filter(|p| p.is_file());
    }
    let packaged = Path::new("/usr/lib/wine/wine64");
    if packaged.is_file() {
        return Some(packaged.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| [dir.join("wine64"), dir.join("wine")])
        .find(|p| p.is_file())
}

/// The file name of `path` (the report already names the entry in full).
fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The wine-run `calloutd.exe` host for `dll` (a PE file), next to `calloutd` (`host_program`)
/// unless [`WINDOWS_HOST_ENV`] names it; an error naming what to install otherwise.
pub fn windows_host(dll: &Path, host_program: &Path) -> Result<PeHost, String> {
    let Some(wine) = find_wine() else {
        return Err(format!(
            "{} is a Windows DLL (PE): hosting it on Linux needs wine (Debian/Ubuntu: apt-get \
             install wine64; or name the loader in ${WINE_ENV})",
            file_name(dll)
        ));
    };
    let exe = match std::env::var_os(WINDOWS_HOST_ENV) {
        Some(named) => PathBuf::from(named),
        None => host_program.with_file_name("calloutd.exe"),
    };
    if !exe.is_file() {
        return Err(format!(
            "{} is a Windows DLL (PE): hosting it on Linux needs calloutd.exe (built by \
             scripts/build-windows.sh) at {} or named in ${WINDOWS_HOST_ENV}",
            file_name(dll),
            exe.display()
        ));
    }
    Ok(PeHost {
        launcher: vec![wine.into_os_string()],
        program: exe,
        windows_paths: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn a_pe_file_is_told_by_its_headers_not_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut pe = vec![0u8; 0x80];
        pe[..2].copy_from_slice(b"MZ");
        pe[0x3c] = 0x40;
        pe[0x40..0x44].copy_from_slice(b"PE\0\0");
        let named_so = dir.path().join("callout.so");
        std::fs::write(&named_so, &pe).unwrap();
        assert!(is_pe(&named_so));
        let mut no_signature = pe.clone();
        no_signature[0x40] = b'X';
        let dll = dir.path().join("fake.dll");
        std::fs::write(&dll, &no_signature).unwrap();
        assert!(!is_pe(&dll));
        let mut far = pe.clone();
        far[0x3c] = 0xf0; // past the end of the file
        std::fs::write(&dll, &far).unwrap();
        assert!(!is_pe(&dll));
        std::fs::write(&dll, b"MZ").unwrap();
        assert!(!is_pe(&dll));
        assert!(!is_pe(&dir.path().join("missing.dll")));
        assert!(!is_pe(Path::new("/proc/self/exe")), "an ELF file is not PE");
    }

    #[test]
    fn wine_runs_quiet_and_without_its_debugger_keeping_the_users_settings() {
        let env = |debug: Option<&str>, over: Option<&str>| -> Vec<(String, String)> {
            wine_environment(debug.map(OsStr::new), over.map(OsStr::new))
                .into_iter()
                .map(|(k, v)| (k.to_string_lossy().into(), v.to_string_lossy().into()))
                .collect()
        };
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            env(None, None),
            [
                pair("WINEDEBUG", "-all"),
                pair("WINEDLLOVERRIDES", "mscoree,mshtml=;winedbg.exe=d")
            ]
        );
        assert_eq!(
            env(Some("+seh"), Some("foo=n")),
            [pair("WINEDLLOVERRIDES", "foo=n;winedbg.exe=d")]
        );
        assert_eq!(
            env(Some(""), Some("")),
            [pair("WINEDLLOVERRIDES", "winedbg.exe=d")]
        );
        // The user asked for winedbg explicitly (to debug their DLL): kept as it is.
        assert!(env(Some("-all"), Some("winedbg.exe=b")).is_empty());
    }

    #[test]
    fn paths_are_handed_to_a_wine_host_on_drive_z() {
        let host = PeHost {
            launcher: vec!["wine".into()],
            program: "calloutd.exe".into(),
            windows_paths: true,
        };
        assert_eq!(
            host.host_path(Path::new("/tmp/x/req")),
            OsString::from("Z:\\tmp\\x\\req")
        );
        let native = PeHost {
            windows_paths: false,
            ..host
        };
        assert_eq!(
            native.host_path(Path::new("/tmp/x")),
            OsString::from("/tmp/x")
        );
    }
}
