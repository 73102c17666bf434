//! Builds the C test callouts of `fixtures/callouts/` (sources in the repository) for tests of any
//! crate in the workspace, including the root package's end-to-end tests.
//!
//! ```no_run
//! let trace_so = calloutd_callout::fixtures::library("trace").unwrap();
//! // e.g. write CalloutDlls = trace_so into a .reg file, or copy it into a temp dir first.
//! ```
//!
//! - [`build_all`] compiles every fixture for the host with `$CC` (default `cc`) into
//!   [`linux_dir`] (`<target>/.../out/callouts/linux`, or `$CALLOUTD_FIXTURE_DIR/linux`) and returns
//!   that directory; [`library`] returns one file's path. Sources are rebuilt only when newer than
//!   the output; the result is cached per process and files are renamed into place atomically, so
//!   parallel test processes can call it.
//! - [`build_windows`] does the same with `x86_64-w64-mingw32-gcc` into `.../windows` and returns
//!   `Ok(None)` (printing a note) when that compiler is not installed.
//!
//! From a shell (e.g. the benchmark script): `cargo run -q -p calloutd-callout --example
//! build-fixtures` builds both sets and prints the Linux directory (and the Windows one, if built).
//!
//! Fixtures: `trace` (plus `trace2`, `trace3`: the same source with another `CALLOUT_TAG`, so chain
//! tests can tell copies apart), `macfilter`, `chain`, `rewrite`, `faulty`, `noop`. Their behaviour
//! and the env vars they read are documented at the top of each `.c` file. Callouts keep global
//! state per loaded file: tests that run in parallel in one process should copy the file into
//! their own temp dir (a distinct file is a distinct instance) and serialize env-var changes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The `fixtures/callouts` source directory of the workspace.
pub const SOURCE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/callouts");

/// One test callout: output name, source file, extra preprocessor definitions.
#[derive(Debug, Clone, Copy)]
pub struct Fixture {
    /// Output file stem (`trace` → `trace.so` / `trace.dll`).
    pub name: &'static str,
    /// Source file in [`SOURCE_DIR`].
    pub source: &'static str,
    /// `-D` definitions.
    pub defines: &'static [&'static str],
}

/// Every fixture that [`build_all`] builds.
pub const FIXTURES: &[Fixture] = &[
    Fixture {
        name: "trace",
        source: "trace.c",
        defines: &[],
    },
    Fixture {
        name: "trace2",
        source: "trace.c",
        defines: &["CALLOUT_TAG=\"trace2\""],
    },
    Fixture {
        name: "trace3",
        source: "trace.c",
        defines: &["CALLOUT_TAG=\"trace3\""],
    },
    Fixture {
        name: "macfilter",
        source: "macfilter.c",
        defines: &[],
    },
    Fixture {
        name: "chain",
        source: "chain.c",
        defines: &[],
    },
    Fixture {
        name: "rewrite",
        source: "rewrite.c",
        defines: &[],
    },
    Fixture {
        name: "faulty",
        source: "faulty.c",
        defines: &[],
    },
    Fixture {
        name: "noop",
        source: "noop.c",
        defines: &[],
    },
];

/// Why fixtures could not be built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FixtureError {
    /// The compiler could not be started.
    #[error("cannot run C compiler {compiler:?}: {error}")]
    NoCompiler {
        /// The compiler command.
        compiler: String,
        /// The OS error.
        error: String,
    },
    /// The compiler failed.
    #[error("{compiler} failed to build {source_file}:\n{stderr}")]
    CompileFailed {
        /// The compiler command.
        compiler: String,
        /// The source file.
        source_file: String,
        /// Its diagnostics.
        stderr: String,
    },
    /// A file operation failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        error: String,
    },
    /// [`library`] was asked for a fixture that does not exist.
    #[error("no fixture named {0:?}")]
    Unknown(String),
}

/// The root of the output directories.
pub fn output_root() -> PathBuf {
    match std::env::var_os("CALLOUTD_FIXTURE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("OUT_DIR")).join("callouts"),
    }
}

/// Where the host (Linux) builds go.
pub fn linux_dir() -> PathBuf {
    output_root().join("linux")
}

/// Where the mingw-w64 Windows builds go.
pub fn windows_dir() -> PathBuf {
    output_root().join("windows")
}

/// The host's shared-library suffix.
pub const LIBRARY_SUFFIX: &str = std::env::consts::DLL_SUFFIX;

/// Builds every fixture for the host (once per process) and returns the directory holding
/// `<name>.so`.
pub fn build_all() -> Result<PathBuf, FixtureError> {
    static BUILT: OnceLock<Result<PathBuf, FixtureError>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
            let flags = ["-fPIC", "-fvisibility=hidden"];
            let libs: &[&str] = if cfg!(target_os = "linux") {
                &["-ldl", "-lpthread"]
            } else {
                &[]
            };
            build_into(&compiler, &linux_dir(), LIBRARY_SUFFIX, &flags, libs)
        })
        .clone()
}

/// The path of one host fixture (building all first).
pub fn library(name: &str) -> Result<PathBuf, FixtureError> {
    if !FIXTURES.iter().any(|f| f.name == name) {
        return Err(FixtureError::Unknown(name.to_string()));
    }
    Ok(build_all()?.join(format!("{name}{LIBRARY_SUFFIX}")))
}

/// Builds every fixture as a Windows x64 DLL with `x86_64-w64-mingw32-gcc` (once per process).
/// `Ok(None)` (with a printed note) when the compiler is not installed.
pub fn build_windows() -> Result<Option<PathBuf>, FixtureError> {
    static BUILT: OnceLock<Result<Option<PathBuf>, FixtureError>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let compiler = "x86_64-w64-mingw32-gcc";
            if Command::new(compiler).arg("--version").output().is_err() {
                eprintln!("note: {compiler} is not installed; Windows test callouts not built");
                return Ok(None);
            }
            build_into(compiler, &windows_dir(), ".dll", &["-static-libgcc"], &[]).map(Some)
        })
        .clone()
}

fn io_error(path: &Path, error: std::io::Error) -> FixtureError {
    FixtureError::Io {
        path: path.display().to_string(),
        error: error.to_string(),
    }
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time among the fixture sources and the header.
fn newest_input() -> Option<std::time::SystemTime> {
    let mut newest = modified(Path::new(dhcpssdk::HEADER_PATH));
    if let Ok(entries) = std::fs::read_dir(SOURCE_DIR) {
        for entry in entries.flatten() {
            newest = newest.max(modified(&entry.path()));
        }
    }
    newest
}

fn build_into(
    compiler: &str,
    out_dir: &Path,
    suffix: &str,
    flags: &[&str],
    libs: &[&str],
) -> Result<PathBuf, FixtureError> {
    static UNIQUE: AtomicU64 = AtomicU64::new(0);
    std::fs::create_dir_all(out_dir).map_err(|e| io_error(out_dir, e))?;
    let newest = newest_input();
    for fixture in FIXTURES {
        let output = out_dir.join(format!("{}{suffix}", fixture.name));
        if let (Some(built), Some(newest)) = (modified(&output), newest) {
            if built >= newest {
                continue;
            }
        }
        let source = Path::new(SOURCE_DIR).join(fixture.source);
        // Compile under the final file name (a DLL records it in its export table) in a private
        // folder, then rename into place: parallel test processes never see a partial file.
        let temp_dir = out_dir.join(format!(
            ".build-{}-{}",
            std::process::id(),
            UNIQUE.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&temp_dir).map_err(|e| io_error(&temp_dir, e))?;
        let temp = temp_dir.join(format!("{}{suffix}", fixture.name));
        let mut command = Command::new(compiler);
        command
            .args(["-std=gnu11", "-O2", "-g", "-Wall", "-Wextra", "-shared"])
            .args(flags)
            .arg("-I")
            .arg(dhcpssdk::INCLUDE_DIR)
            .arg("-I")
            .arg(SOURCE_DIR);
        for define in fixture.defines {
            command.arg(format!("-D{define}"));
        }
        command.arg(&source).arg("-o").arg(&temp).args(libs);
        let out = command.output().map_err(|e| FixtureError::NoCompiler {
            compiler: compiler.to_string(),
            error: e.to_string(),
        })?;
        if out.status.success() && !out.stderr.is_empty() {
            // Warnings do not fail the build (a newer compiler may add some), but stay visible.
            eprintln!(
                "{compiler} warnings for {}:\n{}",
                source.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&temp_dir);
            return Err(FixtureError::CompileFailed {
                compiler: compiler.to_string(),
                source_file: source.display().to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        let renamed = std::fs::rename(&temp, &output).map_err(|e| io_error(&output, e));
        let _ = std::fs::remove_dir_all(&temp_dir);
        renamed?;
    }
    Ok(out_dir.to_path_buf())
}
