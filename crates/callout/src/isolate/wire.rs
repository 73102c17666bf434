//! The small encodings both sides of the shared region agree on.

use crate::{HeldLocks, HookName};

/// The id of `hook` in a slot (1 + its table index; 0 is never valid).
#[cfg(unix)]
pub(crate) fn hook_id(hook: HookName) -> u32 {
    hook.index() as u32 + 1
}

/// The hook of an id read from the region, if it is one.
pub(crate) fn hook_from_id(id: u32) -> Option<HookName> {
    let index = usize::try_from(id).ok()?.checked_sub(1)?;
    HookName::ALL.get(index).copied()
}

/// `locks` as a number.
#[cfg(unix)]
pub(crate) fn encode_locks(locks: HeldLocks) -> u32 {
    match locks {
        HeldLocks::None => 0,
        HeldLocks::Lease => 1,
        HeldLocks::Service => 2,
    }
}

/// The lock set of a number read from the region (unknown values: none).
pub(crate) fn decode_locks(value: u32) -> HeldLocks {
    match value {
        1 => HeldLocks::Lease,
        2 => HeldLocks::Service,
        _ => HeldLocks::None,
    }
}

/// The name of a fatal signal (`SIGSEGV`), or its number.
#[cfg(unix)]
pub(crate) fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGABRT => "SIGABRT",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

/// A Windows exception code with its name when it is a common one: `exception 0xC0000005
/// (access violation)`.
#[cfg(unix)]
pub(crate) fn exception_name(code: u32) -> String {
    let name = match code {
        0xC000_0005 => "access violation",
        0xC000_001D => "illegal instruction",
        0xC000_0094 => "integer divide by zero",
        0xC000_0096 => "privileged instruction",
        0xC000_00FD => "stack overflow",
        0xC000_0409 => "stack buffer overrun",
        0x8000_0003 => "breakpoint",
        0xE06D_7363 => "C++ exception",
        _ => return format!("exception 0x{code:08X}"),
    };
    format!("exception 0x{code:08X} ({name})")
}

// Unix only: the encoders they round-trip through are the Linux parent's.
#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn hook_ids_round_trip_and_reject_everything_else() {
        for hook in HookName::ALL {
            assert_eq!(hook_from_id(hook_id(hook)), Some(hook));
        }
        for bad in [0, 9, u32::MAX] {
            assert_eq!(hook_from_id(bad), None);
        }
    }

    #[test]
    fn exceptions_are_named_by_code() {
        assert_eq!(
            exception_name(0xC000_0005),
            "exception 0xC0000005 (access violation)"
        );
        assert_eq!(exception_name(0xC123_4567), "exception 0xC1234567");
    }

    #[test]
    fn locks_round_trip() {
        for locks in [HeldLocks::None, HeldLocks::Lease, HeldLocks::Service] {
            assert_eq!(decode_locks(encode_locks(locks)), locks);
        }
        assert_eq!(decode_locks(77), HeldLocks::None);
    }
}
