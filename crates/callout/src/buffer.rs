//! The writable packet buffers handed to the DLL: at least 4096 bytes (docs/hooks.md section 6),
//! with canary-filled guard zones before and after so writes past either end are
//! detected. One buffer per thread is reused, so a hook call allocates nothing once warm.

use std::cell::RefCell;

/// The documented in/out buffer size of NewPkt, PktDrop and PktSend.
pub const MIN_BUFFER: usize = 4096;
/// Bytes of canary before and after the usable area.
pub const GUARD_LEN: usize = 64;
/// The canary byte (the value of MSVC's "no man's land", unlikely in DHCP data written by a DLL).
const CANARY: u8 = 0xFD;

/// Which guard zone a DLL damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardZone {
    /// The bytes right before the buffer.
    Before,
    /// The bytes right after the buffer's capacity.
    After,
}

/// `[guard][capacity usable bytes][guard]`.
#[derive(Debug)]
pub struct GuardedBuffer {
    storage: Vec<u8>,
}

impl GuardedBuffer {
    /// A buffer with `MIN_BUFFER` usable bytes.
    pub fn new() -> GuardedBuffer {
        let mut buffer = GuardedBuffer {
            storage: vec![0; GUARD_LEN + MIN_BUFFER + GUARD_LEN],
        };
        buffer.repair();
        buffer
    }

    /// Usable bytes.
    pub fn capacity(&self) -> usize {
        self.storage.len() - 2 * GUARD_LEN
    }

    /// Copies `data` to the start of the usable area (growing it to `data.len()` when larger than the
    /// capacity) and returns a pointer to that start.
    pub fn load(&mut self, data: &[u8]) -> *mut u8 {
        if data.len() > self.capacity() {
            self.storage = vec![0; GUARD_LEN + data.len() + GUARD_LEN];
            self.repair();
        }
        self.storage[GUARD_LEN..GUARD_LEN + data.len()].copy_from_slice(data);
        self.start()
    }

    /// Pointer to the first usable byte.
    pub fn start(&mut self) -> *mut u8 {
        self.storage[GUARD_LEN..].as_mut_ptr()
    }

    /// The first `len` usable bytes, or `None` when `len` exceeds the capacity.
    pub fn contents(&self, len: usize) -> Option<&[u8]> {
        self.storage
            .get(GUARD_LEN..GUARD_LEN.checked_add(len)?)
            .filter(|_| len <= self.capacity())
    }

    /// Checks both guard zones; a damaged one is refilled so the buffer stays usable.
    pub fn check_guards(&mut self) -> Result<(), GuardZone> {
        let end = self.storage.len();
        // Slice equality is one memcmp; a per-byte loop cost more than the hook call it guards.
        const INTACT: [u8; GUARD_LEN] = [CANARY; GUARD_LEN];
        let before_ok = self.storage[..GUARD_LEN] == INTACT;
        let after_ok = self.storage[end - GUARD_LEN..] == INTACT;
        if before_ok && after_ok {
            return Ok(());
        }
        self.repair();
        Err(if before_ok {
            GuardZone::After
        } else {
            GuardZone::Before
        })
    }

    fn repair(&mut self) {
        let end = self.storage.len();
        self.storage[..GUARD_LEN].fill(CANARY);
        self.storage[end - GUARD_LEN..].fill(CANARY);
    }
}

impl Default for GuardedBuffer {
    fn default() -> Self {
        GuardedBuffer::new()
    }
}

thread_local! {
    static THREAD_BUFFER: RefCell<GuardedBuffer> = RefCell::new(GuardedBuffer::new());
}

/// Runs `f` with this thread's buffer (or a fresh one if it is somehow in use already).
pub fn with_thread_buffer<R>(f: impl FnOnce(&mut GuardedBuffer) -> R) -> R {
    THREAD_BUFFER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) => f(&mut buffer),
        Err(_) => f(&mut GuardedBuffer::new()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_packet_gets_the_documented_4096_bytes() {
        let mut b = GuardedBuffer::new();
        b.load(&[1, 2, 3]);
        assert_eq!(b.capacity(), MIN_BUFFER);
        assert_eq!(b.contents(3), Some(&[1u8, 2, 3][..]));
        assert_eq!(b.contents(MIN_BUFFER + 1), None);
        assert_eq!(b.check_guards(), Ok(()));
    }

    #[test]
    fn a_large_packet_grows_the_buffer_to_its_length() {
        let mut b = GuardedBuffer::new();
        let big = vec![7u8; 6000];
        b.load(&big);
        assert_eq!(b.capacity(), 6000);
        assert_eq!(b.contents(6000), Some(&big[..]));
        assert_eq!(b.check_guards(), Ok(()));
    }

    #[test]
    fn writes_past_either_end_are_detected_and_repaired() {
        let mut b = GuardedBuffer::new();
        b.load(&[0; 10]);
        let end = b.storage.len();
        b.storage[end - GUARD_LEN + 3] = 0;
        assert_eq!(b.check_guards(), Err(GuardZone::After));
        assert_eq!(b.check_guards(), Ok(()));
        b.storage[GUARD_LEN - 1] = 0;
        assert_eq!(b.check_guards(), Err(GuardZone::Before));
    }
}
