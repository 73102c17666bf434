//! The pipe-doorbell transport, the server's side: for a host that cannot use a futex on the
//! shared region (a Windows `calloutd.exe` under wine). The region is the same memfd (the host maps
//! it as `/proc/PID/fd/N`, `Z:\proc\PID\fd\N` under wine); only the wake-ups change. Two FIFOs in a
//! private folder carry one byte per wake-up: on `req` the slot index of a posted call (server →
//! host), on `resp` the slot index of a finished call or [`READY`] when the load report is written
//! (host → server). A reader thread here turns each `resp` byte into a futex wake of the word the
//! calling thread sleeps on, so the waiting code is the futex transport's.
//!
//! Cost: one pipe write and one pipe read each way per hook call (bench/results.md).

use super::shm::{futex_wake, Region};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Host → server: the host state changed (the load report is written).
pub(crate) const READY: u8 = 0xFF;
/// Server → its own reader: stop (written by the server into `resp`).
const STOP: u8 = 0xFE;
/// Slot indexes must stay below the two control bytes.
pub(crate) const MAX_SLOTS: usize = 0xFE;

/// The server's ends of one host's doorbells.
pub(crate) struct Bells {
    dir: PathBuf,
    req: File,
    resp: File,
    reader: Mutex<Option<JoinHandle<()>>>,
}

fn mkfifo(path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("NUL in the doorbell path"))?;
    // SAFETY: `c` is a valid NUL-terminated path for the call.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Bells {
    /// Makes the folder and its two FIFOs and opens the server's ends (read-write, so opening
    /// never waits for the host and the host's reads see end-of-file only when the server is
    /// gone).
    pub fn create() -> io::Result<Bells> {
        use std::os::unix::fs::DirBuilderExt;
        static UNIQUE: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "calloutd-host-{}-{}",
            std::process::id(),
            UNIQUE.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let open = |name: &str| -> io::Result<File> {
            let path = dir.join(name);
            mkfifo(&path)?;
            File::options().read(true).write(true).open(path)
        };
        let made = open("req").and_then(|req| Ok((req, open("resp")?)));
        match made {
            Ok((req, resp)) => Ok(Bells {
                dir,
                req,
                resp,
                reader: Mutex::new(None),
            }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    /// The FIFO the host reads posted calls from.
    pub fn req_path(&self) -> PathBuf {
        self.dir.join("req")
    }

    /// The FIFO the host writes finished calls to.
    pub fn resp_path(&self) -> PathBuf {
        self.dir.join("resp")
    }

    /// Starts the thread that turns the host's bytes into futex wakes on `region`.
    pub fn start_reader(&self, region: Arc<Region>) -> io::Result<()> {
        let mut resp = self.resp.try_clone()?;
        let handle = std::thread::Builder::new()
            .name("callout-host-bells".into())
            .spawn(move || {
                let mut buf = [0u8; 256];
                loop {
                    let n = match resp.read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => return,
                    };
                    for &byte in &buf[..n] {
                        match byte {
                            STOP => return,
                            READY => futex_wake(&region.header().host_state),
                            i => {
                                // An index out of range (a confused host) wakes nobody.
                                if let Some(slot) = region.slot(usize::from(i)) {
                                    futex_wake(&slot.state);
                                }
                            }
                        }
                    }
                }
            })?;
        *self.reader.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(())
    }

    /// Tells the host that slot `index` holds a call.
    pub fn ring(&self, index: usize) {
        // A one-byte write to a FIFO is atomic; it fails only when the host is gone, which the
        // waiting caller learns from the watcher.
        let _ = (&self.req).write(&[index.min(MAX_SLOTS - 1) as u8]);
    }
}

impl Drop for Bells {
    fn drop(&mut self) {
        let _ = (&self.resp).write(&[STOP]);
        if let Some(reader) = self.reader.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = reader.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
