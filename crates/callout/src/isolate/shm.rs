//! The shared region between calloutd and its callout host: a memfd mapped by both, holding a
//! header and one slot per concurrent caller. Every field both sides touch is an atomic, and every
//! byte range is bounded by constants known to both before it is used, so a host that scribbles
//! over the region can make its own calls fail, never make the server read outside the mapping.
//!
//! The doorbell is a futex on each slot's `state` word (process-shared, no `FUTEX_PRIVATE_FLAG`):
//! see bench/results.md for the measurement against eventfd and a pipe byte.

// The Windows host (calloutd.exe under wine) uses the host's half of it.
#![cfg_attr(windows, allow(dead_code))]

use std::io;
#[cfg(unix)]
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Identifies a region laid out by this version of the protocol.
pub(crate) const MAGIC: u64 = 0x6361_6c6c_6f75_7431; // "callout1"
/// Bytes for the load configuration (parent → host) and then the load report (host → parent).
pub(crate) const REPORT_MAX: usize = 256 * 1024;
/// Packet bytes per slot: the largest UDP payload, rounded up.
pub(crate) const SLOT_DATA: usize = 64 * 1024;

/// Slot states (the futex word).
pub(crate) mod state {
    /// Free: no call posted.
    pub const IDLE: u32 = 0;
    /// The server posted a call.
    pub const REQUEST: u32 = 1;
    /// The host is running the hook.
    pub const RUNNING: u32 = 2;
    /// The host wrote the result.
    pub const DONE: u32 = 3;
    /// The host died (set by the server's watcher, never by the host).
    pub const DEAD: u32 = 4;
}

/// Host states (the header's futex word).
pub(crate) mod host_state {
    /// The configuration is written; the host has not started loading.
    pub const CONFIGURED: u32 = 0;
    /// Loading: `attempt` is the candidate being tried.
    pub const LOADING: u32 = 1;
    /// The report is written and hook calls may be posted.
    pub const READY: u32 = 2;
    /// The host died (set by the server's watcher).
    pub const DEAD: u32 = 3;
}

/// The region's header.
#[repr(C)]
pub(crate) struct Header {
    pub magic: AtomicU64,
    pub slots: AtomicU32,
    pub host_state: AtomicU32,
    /// Index of the candidate the host is loading (valid in `LOADING`).
    pub attempt: AtomicU32,
    /// 1 + the slot whose thread received a fatal signal, 0 = none (written by the host's handler).
    pub fault_slot: AtomicU32,
    /// The fatal signal's number.
    pub fault_signal: AtomicU32,
    /// Bytes used in the report area.
    pub report_len: AtomicU32,
}

/// One slot's fixed fields (the packet bytes follow at a fixed offset).
#[repr(C)]
pub(crate) struct SlotHeader {
    /// The futex word: [`state`].
    pub state: AtomicU32,
    // Request (server → host).
    pub hook: AtomicU32,
    pub code: AtomicU32,
    pub ip: AtomicU32,
    pub alt: AtomicU32,
    pub client_type: AtomicU32,
    pub lease: AtomicU32,
    pub locks: AtomicU32,
    pub scope: AtomicU32,
    pub has_scope: AtomicU32,
    pub ctx: AtomicU64,
    pub len: AtomicU32,
    /// The CPU the calling thread is pinned to, or [`NOT_PINNED`]: the host thread follows it.
    pub caller_cpu: AtomicU32,
    // Response (host → server).
    /// [`status`].
    pub status: AtomicU32,
    pub ret: AtomicU32,
    pub process_it: AtomicU32,
    pub dur_us: AtomicU64,
    pub out_ctx: AtomicU64,
    /// Bytes of packet (status OK) or fault text (status FAULT) in the data area.
    pub out_len: AtomicU32,
    /// Bytes of misbehaviour (JSON) right after them.
    pub mis_len: AtomicU32,
}

/// [`SlotHeader::caller_cpu`] of a caller that may run on more than one CPU.
pub(crate) const NOT_PINNED: u32 = u32::MAX;

/// Response statuses.
pub(crate) mod status {
    /// The hook ran; `out_len` packet bytes are the result (in/out hooks).
    pub const CALLED: u32 = 1;
    /// The DLL's table does not set this hook: nothing ran.
    pub const NOT_SET: u32 = 2;
    /// The hook ran and the host detected a fault; the data area holds its text.
    pub const FAULT: u32 = 3;
    /// The request was malformed (never sent by a correct server).
    pub const BAD_REQUEST: u32 = 4;
}

const HEADER_SIZE: usize = 4096;
const SLOT_HEADER_SIZE: usize = 128;
const SLOT_STRIDE: usize = SLOT_HEADER_SIZE + SLOT_DATA;
const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_SIZE);
const _: () = assert!(std::mem::size_of::<SlotHeader>() <= SLOT_HEADER_SIZE);

/// The mapped region (owned by whoever created or mapped it; unmapped on drop).
pub(crate) struct Region {
    base: *mut u8,
    len: usize,
    slots: usize,
    #[cfg(unix)]
    fd: OwnedFd,
    /// The mapping (a host under wine maps the server's memfd through `Z:\\proc\\PID\\fd\\N`).
    #[cfg(windows)]
    _map: memmap2::MmapMut,
}

// SAFETY: the region is plain shared memory; every access to it goes through atomics or through
// byte copies of bounded ranges, which are sound from any thread.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

fn region_len(slots: usize) -> usize {
    HEADER_SIZE + REPORT_MAX + slots * SLOT_STRIDE
}

/// The most slots a host maps (the pipe doorbells carry a slot index in one byte).
#[cfg(windows)]
const MAX_MAPPED_SLOTS: usize = 256;

/// The slot count of a region of `len` bytes, when `len` is a whole layout.
#[cfg(unix)]
fn slots_of(len: usize) -> Option<usize> {
    if len < region_len(1) {
        return None;
    }
    let slots = (len - HEADER_SIZE - REPORT_MAX) / SLOT_STRIDE;
    (region_len(slots) == len).then_some(slots)
}

impl Region {
    /// Opens and maps the region at `path` (the host with the pipe-doorbell transport, given the
    /// server's memfd as `/proc/PID/fd/N`).
    #[cfg(unix)]
    pub fn open_path(path: &std::path::Path) -> io::Result<Region> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        Region::open(file.into_raw_fd())
    }

    /// Opens and maps the region at `path` (`Z:\\proc\\PID\\fd\\N` under wine).
    #[cfg(windows)]
    pub fn open_path(path: &std::path::Path) -> io::Result<Region> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        // Wine cannot stat a file opened through /proc (GetFileInformationByHandle fails): the
        // header gives the slot count, and so the length, instead.
        // SAFETY: the mapping is shared with the server by design; every access to it goes through
        // atomics or bounds-checked byte copies, never through references to its contents.
        let head = unsafe { memmap2::MmapOptions::new().len(HEADER_SIZE).map(&file)? };
        let mut slots_bytes = [0u8; 4];
        let at = std::mem::offset_of!(Header, slots);
        slots_bytes.copy_from_slice(&head[at..at + 4]);
        drop(head);
        let slots = u32::from_ne_bytes(slots_bytes) as usize;
        if slots == 0 || slots > MAX_MAPPED_SLOTS {
            return Err(io::Error::other("the shared region has an unknown layout"));
        }
        let len = region_len(slots);
        // SAFETY: as above.
        let mut map = unsafe { memmap2::MmapOptions::new().len(len).map_mut(&file)? };
        let region = Region {
            base: map.as_mut_ptr(),
            len,
            slots,
            _map: map,
        };
        region.check_layout()?;
        Ok(region)
    }

    /// The header must be the server's: magic and slot count.
    fn check_layout(&self) -> io::Result<()> {
        let header = self.header();
        if header.magic.load(Ordering::Acquire) != MAGIC
            || header.slots.load(Ordering::Relaxed) as usize != self.slots
        {
            return Err(io::Error::other("the shared region has an unknown layout"));
        }
        Ok(())
    }

    /// Creates a memfd with room for `slots` slots, maps it and initializes the header.
    #[cfg(unix)]
    pub fn create(slots: usize) -> io::Result<Region> {
        let name = c"calloutd-callout-host";
        // SAFETY: `name` is a valid NUL-terminated string; the flags are valid.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let len = region_len(slots);
        let size = libc::off_t::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "region too large"))?;
        // SAFETY: a valid fd and size.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let region = Region::map_fd(fd, len, slots)?;
        let header = region.header();
        header.slots.store(slots as u32, Ordering::Relaxed);
        header
            .host_state
            .store(host_state::CONFIGURED, Ordering::Relaxed);
        header.magic.store(MAGIC, Ordering::Release);
        Ok(region)
    }

    /// Maps a region created by the server (the host side): the size comes from the file, the
    /// slot count from the header, and both must agree.
    #[cfg(unix)]
    pub fn open(fd: RawFd) -> io::Result<Region> {
        // SAFETY: the caller hands over an fd it inherited for this purpose; we own it from here.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: `stat` is plain data, filled by fstat.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid fd and a writable stat buffer.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let len = usize::try_from(stat.st_size).unwrap_or(0);
        let slots = slots_of(len)
            .ok_or_else(|| io::Error::other("the shared region has an unknown size"))?;
        let region = Region::map_fd(fd, len, slots)?;
        region.check_layout()?;
        Ok(region)
    }

    #[cfg(unix)]
    fn map_fd(fd: OwnedFd, len: usize, slots: usize) -> io::Result<Region> {
        // SAFETY: mapping `len` bytes of a file of at least that size, shared, read-write.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Region {
            base: base.cast(),
            len,
            slots,
            fd,
        })
    }

    /// The memfd (the server passes it to the host).
    #[cfg(unix)]
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// The header.
    pub fn header(&self) -> &Header {
        // SAFETY: the mapping starts page-aligned with HEADER_SIZE bytes reserved for the header,
        // lives as long as `self`, and `Header` is made of atomics (valid for any bit pattern).
        unsafe { &*self.base.cast::<Header>() }
    }

    /// Slot `i`'s fixed fields; `None` when `i` is out of range.
    pub fn slot(&self, i: usize) -> Option<&SlotHeader> {
        if i >= self.slots {
            return None;
        }
        // SAFETY: `i < slots`, so the slot header lies inside the mapping (region_len); the offset
        // is a multiple of 64, aligned for the atomics, which are valid for any bit pattern.
        Some(unsafe { &*self.base.add(Self::slot_offset(i)).cast::<SlotHeader>() })
    }

    fn slot_offset(i: usize) -> usize {
        HEADER_SIZE + REPORT_MAX + i * SLOT_STRIDE
    }

    /// Copies `data` into slot `i`'s data area; `false` when it does not fit or `i` is out of
    /// range.
    pub fn write_data(&self, i: usize, data: &[u8]) -> bool {
        self.write_data_at(i, 0, data)
    }

    /// Copies `data` into slot `i`'s data area at `offset`; `false` when it does not fit or `i`
    /// is out of range.
    pub fn write_data_at(&self, i: usize, offset: usize, data: &[u8]) -> bool {
        if i >= self.slots
            || offset
                .checked_add(data.len())
                .is_none_or(|end| end > SLOT_DATA)
        {
            return false;
        }
        // SAFETY: the destination range lies inside the mapping (checked above) and never overlaps
        // `data`, which is process memory; the other side only reads it after the state change
        // that follows (Release/Acquire on the state word).
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.base
                    .add(Self::slot_offset(i) + SLOT_HEADER_SIZE + offset),
                data.len(),
            );
        }
        true
    }

    /// Copies `len` bytes of slot `i`'s data area into `out` (replacing its contents); `false`
    /// when `len` exceeds the data area or `i` is out of range.
    pub fn read_data(&self, i: usize, len: usize, out: &mut Vec<u8>) -> bool {
        self.read_data_at(i, 0, len, out)
    }

    /// Copies `len` bytes at `offset` of slot `i`'s data area into `out` (replacing its
    /// contents); `false` when the range exceeds the data area or `i` is out of range.
    pub fn read_data_at(&self, i: usize, offset: usize, len: usize, out: &mut Vec<u8>) -> bool {
        if i >= self.slots || offset.checked_add(len).is_none_or(|end| end > SLOT_DATA) {
            return false;
        }
        out.clear();
        out.reserve(len);
        // SAFETY: the source range lies inside the mapping (checked above) and `out` has room for
        // `len` bytes. A misbehaving peer writing concurrently can only change the bytes copied,
        // never the bounds, which were validated first.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base
                    .add(Self::slot_offset(i) + SLOT_HEADER_SIZE + offset),
                out.as_mut_ptr(),
                len,
            );
            out.set_len(len);
        }
        true
    }

    /// Writes the report area (the configuration, then the load report); `false` when too large.
    pub fn write_report(&self, data: &[u8]) -> bool {
        if data.len() > REPORT_MAX {
            return false;
        }
        // SAFETY: REPORT_MAX bytes after the header are reserved for this; `data` is process memory.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.add(HEADER_SIZE), data.len());
        }
        self.header()
            .report_len
            .store(data.len() as u32, Ordering::Release);
        true
    }

    /// Reads the report area; `None` when its recorded length is out of range.
    pub fn read_report(&self) -> Option<Vec<u8>> {
        let len = self.header().report_len.load(Ordering::Acquire) as usize;
        if len > REPORT_MAX {
            return None;
        }
        let mut out = vec![0u8; len];
        // SAFETY: `len <= REPORT_MAX` bytes after the header lie inside the mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(self.base.add(HEADER_SIZE), out.as_mut_ptr(), len);
        }
        Some(out)
    }
}

#[cfg(unix)]
impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are the mapping made in `map_fd`; nothing borrows it past `self`.
        unsafe {
            libc::munmap(self.base.cast(), self.len);
        }
    }
}

#[cfg(unix)]
/// Sleeps while `word` holds `expected`, at most `timeout` (forever with `None`). Returns early on
/// a wake-up, a changed value, a signal or the timeout; the caller re-checks the word.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned u32 (in shared memory: hence no FUTEX_PRIVATE_FLAG);
    // `ts_ptr` is NULL or points to a live timespec for the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Spins (without a system call) while `word` holds a value for which `busy` is true, for at most
/// `budget`; returns the value it holds at the end. Bounded by time, not by a count: one
/// `spin_loop` hint costs from a few to 140 cycles depending on the processor.
fn spin_while(word: &AtomicU32, busy: impl Fn(u32) -> bool, budget: Duration) -> u32 {
    let mut now = word.load(Ordering::Acquire);
    if budget.is_zero() || !busy(now) {
        return now;
    }
    let start = std::time::Instant::now();
    loop {
        for _ in 0..16 {
            std::hint::spin_loop();
            now = word.load(Ordering::Acquire);
            if !busy(now) {
                return now;
            }
        }
        if start.elapsed() >= budget {
            return now;
        }
    }
}

/// How long each side of a hook call spins on its slot before it sleeps on the futex:
/// `CALLOUTD_ISOLATE_SPIN_US` (microseconds; the host inherits it), default [`SPIN_BUDGET`].
fn spin_budget() -> Duration {
    static BUDGET: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *BUDGET.get_or_init(|| {
        std::env::var("CALLOUTD_ISOLATE_SPIN_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(SPIN_BUDGET, Duration::from_micros)
    })
}

/// See [`spin_budget`].
const SPIN_BUDGET: Duration = Duration::from_micros(5);

/// After a spin that did not see the other side answer, this many waits sleep at once.
const SPIN_BACKOFF: u32 = 64;

/// Adaptive spinning before a futex sleep, one per waiting thread. A spin pays off only while the
/// other side is running on another CPU; on a machine whose CPUs are all busy it is pure waste
/// (measured: 50 µs of spinning per wait made `--isolate` cost 16× Kea's CPU per exchange at
/// 8 000/s, against about 1-3× without; bench/results.md). So a spin that fails switches spinning
/// off for the next [`SPIN_BACKOFF`] waits.
#[derive(Debug, Default)]
pub(crate) struct Spinner {
    skip: u32,
}

impl Spinner {
    /// Spins while `busy(word)`, unless recent spins failed; returns the word's value.
    pub(crate) fn spin(&mut self, word: &AtomicU32, busy: impl Fn(u32) -> bool) -> u32 {
        if self.skip > 0 {
            self.skip -= 1;
            return word.load(Ordering::Acquire);
        }
        let now = spin_while(word, &busy, spin_budget());
        if busy(now) {
            self.skip = SPIN_BACKOFF;
        }
        now
    }
}

/// Wakes every waiter on `word`.
#[cfg(unix)]
pub(crate) fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE only reads the address.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spin_that_sees_no_answer_switches_spinning_off_for_a_while() {
        let word = AtomicU32::new(1);
        let mut spinner = Spinner::default();
        // Nobody answers: the spin gives up after its budget and backs off.
        assert_eq!(spinner.spin(&word, |s| s == 1), 1);
        assert_eq!(spinner.skip, SPIN_BACKOFF);
        for left in (0..SPIN_BACKOFF).rev() {
            spinner.spin(&word, |s| s == 1);
            assert_eq!(spinner.skip, left);
        }
        // An answer already there: no back-off.
        word.store(2, Ordering::SeqCst);
        assert_eq!(spinner.spin(&word, |s| s == 1), 2);
        assert_eq!(spinner.skip, 0);
    }
}
