/*
 * A stand-in for Windows' bcryptprimitives.dll, for running calloutd.exe under Wine 8 only.
 *
 * Rust's standard library (1.78 and later) gets its random bytes from ProcessPrng in
 * bcryptprimitives.dll, which Windows 10 and later always have but Wine 8 (Debian 12) does not: the
 * exe would not even start. scripts/build-windows.sh builds this stub with mingw-w64 and places it
 * next to a copy of calloutd.exe in the `wine/` folder used by the Wine tests. The calloutd.exe
 * meant for Windows is never shipped with it.
 *
 * ProcessPrng fills the buffer from RtlGenRandom (advapi32's SystemFunction036), which Wine has.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk)) return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
