/*
 * The in-process exception shim for Windows (docs/hooks.md section 8.2): a hook is called through
 * calloutd_seh_call, which catches any exception the call raises and does not handle itself (an
 * access violation, a divide by zero, an illegal instruction, a C++ throw...) the way Microsoft's
 * DHCP Server does around its callout calls: the exception is reported, the call returns, and the
 * server and the callout carry on.
 *
 * Every hook's arguments are DWORDs and pointers, which the x64 Windows calling convention passes
 * in 64-bit slots (four registers, then the stack, caller-cleaned), so one nine-argument call covers
 * every hook: a hook simply ignores the slots past its own arguments.
 *
 * MSVC (and clang-cl) build the frame handler with __try/__except. mingw-w64's GCC has no
 * __try/__except: there the function gets a frame-based handler through the assembler's
 * .seh_handler directive, exactly where __except would put it, so a callout's own handlers still
 * run first; the handler leaves the faulting call with __builtin_longjmp back into this function.
 */
#include <stdint.h>
#include <windows.h>

typedef DWORD (WINAPI *calloutd_hook9)(uintptr_t, uintptr_t, uintptr_t, uintptr_t, uintptr_t,
                                       uintptr_t, uintptr_t, uintptr_t, uintptr_t);

/* What a guarded call did: the hook's return value, or the exception that ended it. */
typedef struct {
    DWORD ret;
    DWORD code;
    uintptr_t address;
} calloutd_seh_outcome;

/* Whether the shim takes the exception: errors (severity bits 11: access violation, divide by
 * zero, stack overflow...) and C++ throws; informational and warning codes (debug output, thread
 * naming, breakpoints under a debugger) go on to whoever else handles them. */
static int calloutd_takes(DWORD code) {
    return (code & 0xC0000000u) == 0xC0000000u || code == 0xE06D7363u;
}

#ifdef _MSC_VER

static int calloutd_filter(EXCEPTION_POINTERS *info, calloutd_seh_outcome *out) {
    DWORD code = info->ExceptionRecord->ExceptionCode;
    if (!calloutd_takes(code)) return EXCEPTION_CONTINUE_SEARCH;
    out->code = code;
    out->address = (uintptr_t)info->ExceptionRecord->ExceptionAddress;
    return EXCEPTION_EXECUTE_HANDLER;
}

int calloutd_seh_call(const void *hook, const uintptr_t *a, calloutd_seh_outcome *out) {
    __try {
        out->ret = ((calloutd_hook9)hook)(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8]);
        return 0;
    } __except (calloutd_filter(GetExceptionInformation(), out)) {
        return 1;
    }
}

#else /* mingw-w64 GCC */

/* The guarded call in progress on this thread (hooks never nest on one thread). */
static __thread void *calloutd_jump[5];
static __thread calloutd_seh_outcome *calloutd_current;

EXCEPTION_DISPOSITION calloutd_seh_handler(EXCEPTION_RECORD *record, void *frame, CONTEXT *context,
                                           void *dispatch) {
    (void)frame; (void)context; (void)dispatch;
    if (record->ExceptionFlags & (EXCEPTION_UNWINDING | EXCEPTION_EXIT_UNWIND))
        return ExceptionContinueSearch;
    if (!calloutd_current || !calloutd_takes(record->ExceptionCode))
        return ExceptionContinueSearch;
    calloutd_current->code = record->ExceptionCode;
    calloutd_current->address = (uintptr_t)record->ExceptionAddress;
    __builtin_longjmp(calloutd_jump, 1);
}

__attribute__((noinline))
int calloutd_seh_call(const void *hook, const uintptr_t *a, calloutd_seh_outcome *out) {
    __asm__ __volatile__(".seh_handler calloutd_seh_handler, @except");
    calloutd_current = out;
    if (__builtin_setjmp(calloutd_jump)) {
        calloutd_current = 0;
        return 1;
    }
    out->ret = ((calloutd_hook9)hook)(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8]);
    calloutd_current = 0;
    return 0;
}

#endif
