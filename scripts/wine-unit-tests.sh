#!/usr/bin/env bash
# Runs the unit tests of the crates with Windows code paths as Windows programs under Wine: the
# socket layer (WSARecvMsg/WSASendMsg with IP_PKTINFO), the Win32 shim (WSAPoll, IcmpSendEcho), the
# callout loader (%VAR% expansion) and the registry reader. Built for x86_64-pc-windows-gnu with
# mingw-w64 in the usual target dir; a throw-away Wine prefix holds the bcryptprimitives.dll stub
# (see scripts/build-windows.sh) and is removed at the end.
#
# Usage: scripts/wine-unit-tests.sh   (after scripts/build-windows.sh, which builds the stub)
set -euo pipefail
cd "$(dirname "$0")/.."

wine=/usr/lib/wine/wine64
[ -x "$wine" ] || wine=$(command -v wine64 || command -v wine || true)
if [ -z "$wine" ]; then
    echo "wine-unit-tests.sh: wine is not installed (apt-get install wine64)" >&2
    exit 1
fi
stub="${CARGO_TARGET_DIR:-target}/x86_64-pc-windows-gnu/debug/wine/bcryptprimitives.dll"
if [ ! -f "$stub" ]; then
    echo "wine-unit-tests.sh: $stub missing: run scripts/build-windows.sh first" >&2
    exit 1
fi
prefix=$(mktemp -d "${TMPDIR:-/tmp}/calloutd-wine-unit.XXXXXX")
wineserver="$(dirname "$wine")/wineserver"
[ -x "$wineserver" ] || wineserver=wineserver
cleanup() {
    WINEPREFIX="$prefix" "$wineserver" -k >/dev/null 2>&1 || true
    WINEPREFIX="$prefix" "$wineserver" -w >/dev/null 2>&1 || true
    rm -rf "$prefix"
}
trap cleanup EXIT
export WINEPREFIX="$prefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
"$wine" wineboot -i >/dev/null 2>&1
cp "$stub" "$prefix/drive_c/windows/system32/"
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$wine"
export CC_x86_64_pc_windows_gnu=x86_64-w64-mingw32-gcc AR_x86_64_pc_windows_gnu=x86_64-w64-mingw32-ar
cargo test --locked --target x86_64-pc-windows-gnu --lib \
    -p calloutd-win32 -p calloutd-server -p calloutd-callout -p calloutd-registry
