//! Windows: every hook call goes through the exception shim (csrc/seh_shim.c), so an exception a
//! hook raises and does not handle (an access violation...) ends only that call, as in Microsoft's
//! DHCP Server (event 1031: "The server has ignored this exception"). The exception is kept for
//! this thread until the caller takes it ([`take_exception`]) and reports it as a
//! [`crate::HookFault::Exception`].

use std::cell::Cell;

/// An exception a hook raised: its code (e.g. 0xC0000005, access violation) and address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exception {
    pub(crate) code: u32,
    pub(crate) address: usize,
}

thread_local! {
    static LAST: Cell<Option<Exception>> = const { Cell::new(None) };
}

#[repr(C)]
struct Outcome {
    ret: u32,
    code: u32,
    address: usize,
}

extern "C" {
    fn calloutd_seh_call(hook: *const (), args: *const usize, out: *mut Outcome) -> i32;
}

/// A hook argument as the 64-bit slot the x64 calling convention passes it in.
pub(crate) trait Word {
    fn word(self) -> usize;
}

impl Word for u32 {
    fn word(self) -> usize {
        self as usize
    }
}

impl<T> Word for *mut T {
    fn word(self) -> usize {
        self as usize
    }
}

impl<T> Word for &mut T {
    fn word(self) -> usize {
        self as *mut T as usize
    }
}

/// Calls `hook` with `args` (at most nine) through the shim; the hook's return value, or 0 when
/// it raised an exception (then kept for [`take_exception`]).
///
/// # Safety
/// `hook` must be a hook of the DLL, still loaded, whose parameters are exactly `args` in order
/// (DWORDs and pointers), each pointer valid as that hook requires.
pub(crate) unsafe fn call(hook: *const (), args: &[usize]) -> u32 {
    let mut slots = [0usize; 9];
    for (slot, arg) in slots.iter_mut().zip(args) {
        *slot = *arg;
    }
    let mut out = Outcome {
        ret: 0,
        code: 0,
        address: 0,
    };
    // SAFETY: the caller guarantees `hook` and its arguments; `slots` and `out` are live for the
    // call, and the shim reads nine slots and writes `out` only.
    let raised = unsafe { calloutd_seh_call(hook, slots.as_ptr(), &mut out) };
    if raised != 0 {
        LAST.with(|last| {
            last.set(Some(Exception {
                code: out.code,
                address: out.address,
            }))
        });
        return 0;
    }
    out.ret
}

/// The exception the last guarded call on this thread raised, if any (and forgets it).
pub(crate) fn take_exception() -> Option<Exception> {
    LAST.with(Cell::take)
}
