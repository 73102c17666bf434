/*
 * win32compat.h - an opt-in Linux subset of the Win32 calls real-world callouts use
 * (calloutd project; docs/hooks.md section 12). Include it instead of, or after, dhcpssdk.h.
 *
 * On Windows it only includes dhcpssdk.h (and so <windows.h>): the real calls are used.
 * On Linux it supplies, header-only:
 *   - types: HMODULE, HINSTANCE, HANDLE, FARPROC, INT, UINT, LONG, WORD, SIZE_T, INT_PTR,
 *     UINT_PTR, LPCVOID;
 *   - DLLs: LoadLibraryW (UTF-16 path converted to UTF-8, '\' read as '/'), LoadLibraryA,
 *     GetProcAddress (dlsym; by name only), FreeLibrary (dlclose), GetModuleFileNameA/W,
 *     DisableThreadLibraryCalls (no-op), GetLastError/SetLastError (set by the calls above);
 *   - DllMain: if the library defines BOOL WINAPI DllMain(HINSTANCE, DWORD, LPVOID), it is called
 *     with DLL_PROCESS_ATTACH when the library is loaded (before DhcpServerCalloutEntry) and with
 *     DLL_PROCESS_DETACH when it is unloaded (dlclose/FreeLibrary, or process exit), once per
 *     library however many files include this header. lpReserved is always NULL. A FALSE from
 *     DLL_PROCESS_ATTACH cannot fail dlopen on Linux: it is reported on stderr;
 *   - strings and memory: lstrlenW, lstrlenA, RtlZeroMemory/ZeroMemory, RtlEqualMemory/
 *     EqualMemory, RtlCopyMemory/CopyMemory, RtlMoveMemory/MoveMemory, RtlFillMemory/FillMemory,
 *     InterlockedIncrement/InterlockedDecrement, ARRAYSIZE, _countof, MAX_PATH, and the
 *     DLL_PROCESS_ATTACH/DETACH and DLL_THREAD_ATTACH/DETACH codes (thread codes are never sent).
 * L"..." literals are UTF-16 only with gcc/clang -fshort-wchar on Linux (then do not call the C
 * library's wcs* functions: glibc's are 32-bit); ChainDlls and LoadLibraryW need no literal.
 * Link with -ldl on glibc older than 2.34.
 */
#ifndef CALLOUTD_WIN32COMPAT_H
#define CALLOUTD_WIN32COMPAT_H

#include "dhcpssdk.h"

#if !defined(_WIN32)

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef void *HMODULE;
typedef HMODULE HINSTANCE;
typedef void *HANDLE;
typedef int INT;
typedef unsigned int UINT;
typedef int32_t LONG;
typedef uint16_t WORD;
typedef size_t SIZE_T;
typedef intptr_t INT_PTR;
typedef uintptr_t UINT_PTR;
typedef const void *LPCVOID;
/* Unprototyped, as on Windows: casting it to any function pointer type draws no warning. */
typedef INT_PTR (WINAPI *FARPROC)();

#define DLL_PROCESS_DETACH 0
#define DLL_PROCESS_ATTACH 1
#define DLL_THREAD_ATTACH 2
#define DLL_THREAD_DETACH 3

#ifndef MAX_PATH
#define MAX_PATH 260
#endif
#ifndef ARRAYSIZE
#define ARRAYSIZE(a) (sizeof(a) / sizeof((a)[0]))
#endif
#ifndef _countof
#define _countof(a) ARRAYSIZE(a)
#endif

#define RtlZeroMemory(d, n) memset((d), 0, (n))
#define ZeroMemory RtlZeroMemory
#define RtlEqualMemory(a, b, n) (!memcmp((a), (b), (n)))
#define EqualMemory RtlEqualMemory
#define RtlCopyMemory(d, s, n) memcpy((d), (s), (n))
#define CopyMemory RtlCopyMemory
#define RtlMoveMemory(d, s, n) memmove((d), (s), (n))
#define MoveMemory RtlMoveMemory
#define RtlFillMemory(d, n, fill) memset((d), (fill), (n))
#define FillMemory RtlFillMemory

/* One definition per library, however many files include this header (weak, not exported). */
#define CALLOUTD_W32_SHARED __attribute__((weak, visibility("hidden")))
CALLOUTD_W32_SHARED __thread DWORD calloutd_w32_last_error;
CALLOUTD_W32_SHARED int calloutd_w32_attached;
CALLOUTD_W32_SHARED HMODULE calloutd_w32_self;

static inline DWORD GetLastError(void) { return calloutd_w32_last_error; }
static inline void SetLastError(DWORD code) { calloutd_w32_last_error = code; }

static inline LONG InterlockedIncrement(LONG volatile *value) {
    return __atomic_add_fetch(value, 1, __ATOMIC_SEQ_CST);
}
static inline LONG InterlockedDecrement(LONG volatile *value) {
    return __atomic_sub_fetch(value, 1, __ATOMIC_SEQ_CST);
}

static inline int lstrlenW(LPCWSTR s) {
    int n = 0;
    if (s)
        while (s[n]) n++;
    return n;
}
static inline int lstrlenA(LPCSTR s) { return s ? (int)strlen(s) : 0; }

/* UTF-16 to UTF-8 (unpaired surrogates become U+FFFD); FALSE when `out` is too small. */
static inline BOOL calloutd_w32_utf8(LPCWSTR in, char *out, size_t out_size) {
    size_t n = 0;
    while (*in) {
        uint32_t cp = *in++;
        if (cp >= 0xD800 && cp <= 0xDBFF && *in >= 0xDC00 && *in <= 0xDFFF)
            cp = 0x10000 + ((cp - 0xD800) << 10) + (uint32_t)(*in++ - 0xDC00);
        else if (cp >= 0xD800 && cp <= 0xDFFF)
            cp = 0xFFFD;
        unsigned char b[4];
        size_t len;
        if (cp < 0x80) {
            b[0] = (unsigned char)cp;
            len = 1;
        } else if (cp < 0x800) {
            b[0] = (unsigned char)(0xC0 | (cp >> 6));
            b[1] = (unsigned char)(0x80 | (cp & 0x3F));
            len = 2;
        } else if (cp < 0x10000) {
            b[0] = (unsigned char)(0xE0 | (cp >> 12));
            b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
            b[2] = (unsigned char)(0x80 | (cp & 0x3F));
            len = 3;
        } else {
            b[0] = (unsigned char)(0xF0 | (cp >> 18));
            b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
            b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
            b[3] = (unsigned char)(0x80 | (cp & 0x3F));
            len = 4;
        }
        if (n + len + 1 > out_size) return FALSE;
        memcpy(out + n, b, len);
        n += len;
    }
    if (out_size == 0) return FALSE;
    out[n] = 0;
    return TRUE;
}

static inline HMODULE LoadLibraryA(LPCSTR name) {
    if (!name || !*name) {
        SetLastError(ERROR_INVALID_PARAMETER);
        return NULL;
    }
    char path[4096];
    size_t len = strlen(name);
    if (len >= sizeof path) {
        SetLastError(ERROR_FILE_NOT_FOUND);
        return NULL;
    }
    /* Windows paths use '\'; a Linux file name rarely contains one. */
    for (size_t i = 0; i <= len; i++) path[i] = name[i] == '\\' ? '/' : name[i];
    HMODULE module = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    SetLastError(module ? ERROR_SUCCESS : ERROR_MOD_NOT_FOUND);
    return module;
}

static inline HMODULE LoadLibraryW(LPCWSTR name) {
    char path[4096];
    if (!name || !calloutd_w32_utf8(name, path, sizeof path)) {
        SetLastError(name ? ERROR_FILE_NOT_FOUND : ERROR_INVALID_PARAMETER);
        return NULL;
    }
    return LoadLibraryA(path);
}

static inline FARPROC GetProcAddress(HMODULE module, LPCSTR name) {
    /* An ordinal (a pointer value below 0x10000) has no meaning for an ELF library. */
    if (!module || (uintptr_t)name < 0x10000) {
        SetLastError(ERROR_PROC_NOT_FOUND);
        return NULL;
    }
    void *symbol = dlsym(module, name);
    SetLastError(symbol ? ERROR_SUCCESS : ERROR_PROC_NOT_FOUND);
    FARPROC proc;
    memcpy(&proc, &symbol, sizeof proc); /* object to function pointer, as POSIX allows */
    return proc;
}

static inline BOOL FreeLibrary(HMODULE module) {
    if (!module || dlclose(module) != 0) {
        SetLastError(ERROR_INVALID_HANDLE);
        return FALSE;
    }
    return TRUE;
}

static inline BOOL DisableThreadLibraryCalls(HMODULE module) {
    (void)module; /* DLL_THREAD_ATTACH/DETACH are never sent on Linux */
    return TRUE;
}

/* The C library's Dl_info and link_map prefix, declared here so the header needs no
 * _GNU_SOURCE before the first system include (same symbols, private names). */
struct calloutd_w32_dl_info {
    const char *fname;
    void *fbase;
    const char *sname;
    void *saddr;
};
struct calloutd_w32_link_map {
    uintptr_t addr;
    const char *name;
};
extern int calloutd_w32_dladdr(const void *, struct calloutd_w32_dl_info *) __asm__("dladdr");
extern int calloutd_w32_dlinfo(void *, int, void *) __asm__("dlinfo");
#define CALLOUTD_W32_RTLD_DI_LINKMAP 2

/* The file of `module` (NULL: the executable), UTF-8, truncated to `size` - 1 as Windows does;
 * returns the length copied, 0 on failure. */
static inline DWORD GetModuleFileNameA(HMODULE module, LPSTR out, DWORD size) {
    char exe[4096];
    const char *name = NULL;
    if (!module) {
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n > 0) {
            exe[n] = 0;
            name = exe;
        }
    } else {
        struct calloutd_w32_link_map *map = NULL;
        if (calloutd_w32_dlinfo(module, CALLOUTD_W32_RTLD_DI_LINKMAP, &map) == 0 && map)
            name = map->name;
    }
    if (!name || !out || size == 0) {
        SetLastError(ERROR_INVALID_HANDLE);
        return 0;
    }
    size_t len = strlen(name);
    if (len >= size) {
        len = size - 1;
        SetLastError(ERROR_INSUFFICIENT_BUFFER);
    } else {
        SetLastError(ERROR_SUCCESS);
    }
    memcpy(out, name, len);
    out[len] = 0;
    return (DWORD)len;
}

/* As GetModuleFileNameA, in UTF-16 units (the name is read as UTF-8). */
static inline DWORD GetModuleFileNameW(HMODULE module, LPWSTR out, DWORD size) {
    char utf8[4096];
    if (!out || size == 0 || !GetModuleFileNameA(module, utf8, sizeof utf8)) return 0;
    DWORD n = 0;
    const unsigned char *s = (const unsigned char *)utf8;
    while (*s && n + 1 < size) {
        uint32_t cp = *s++;
        int more = cp >= 0xF0 ? 3 : cp >= 0xE0 ? 2 : cp >= 0xC0 ? 1 : 0;
        if (more) cp &= 0x3Fu >> more;
        for (; more && (*s & 0xC0) == 0x80; more--) cp = (cp << 6) | (*s++ & 0x3F);
        if (cp >= 0x10000) {
            if (n + 2 >= size) break;
            out[n++] = (WCHAR)(0xD800 + ((cp - 0x10000) >> 10));
            out[n++] = (WCHAR)(0xDC00 + ((cp - 0x10000) & 0x3FF));
        } else {
            out[n++] = (WCHAR)cp;
        }
    }
    out[n] = 0;
    return n;
}

/* The library's own DllMain, if it defines one (hidden: it stays unexported, as on Windows). */
extern BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
    __attribute__((weak, visibility("hidden")));

/* Runs when the library is loaded: finds its own handle and calls DllMain(PROCESS_ATTACH). */
__attribute__((constructor)) static void calloutd_w32_attach(void) {
    if (calloutd_w32_attached || !DllMain) return;
    calloutd_w32_attached = 1;
    struct calloutd_w32_dl_info info = {NULL, NULL, NULL, NULL};
    if (calloutd_w32_dladdr((const void *)&calloutd_w32_attach, &info) && info.fname) {
        /* NOLOAD finds the library being loaded; closing it again keeps its count unchanged. */
        calloutd_w32_self = dlopen(info.fname, RTLD_NOW | RTLD_NOLOAD);
        if (calloutd_w32_self) dlclose(calloutd_w32_self);
    }
    if (!DllMain(calloutd_w32_self, DLL_PROCESS_ATTACH, NULL))
        fprintf(stderr, "%s: DllMain(DLL_PROCESS_ATTACH) returned FALSE\n",
                info.fname ? info.fname : "callout");
}

/* Runs when the library is unloaded (or the process exits). */
__attribute__((destructor)) static void calloutd_w32_detach(void) {
    if (calloutd_w32_attached != 1 || !DllMain) return;
    calloutd_w32_attached = 2;
    DllMain(calloutd_w32_self, DLL_PROCESS_DETACH, NULL);
}

#ifdef __cplusplus
}
#endif

#endif /* !_WIN32 */

#endif /* CALLOUTD_WIN32COMPAT_H */
