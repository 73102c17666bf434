#!/usr/bin/env bash
# Builds calloutd.exe for x86_64-pc-windows-gnu from Linux, linked by mingw-w64
# (Debian: gcc-mingw-w64-x86-64), and a copy for Wine next to a bcryptprimitives.dll stub.
#
# Usage: scripts/build-windows.sh [--release]
#
# Output (in the target dir: $CARGO_TARGET_DIR or ./target):
#   x86_64-pc-windows-gnu/<debug|release>/calloutd.exe         the Windows executable
#   x86_64-pc-windows-gnu/<debug|release>/wine/calloutd.exe    the same file, for Wine runs only,
#   x86_64-pc-windows-gnu/<debug|release>/wine/bcryptprimitives.dll
#
# Why the stub: Rust >= 1.78 executables import ProcessPrng from bcryptprimitives.dll (every
# Windows 10+ has it), which Wine 8 (Debian 12) lacks, so the exe would not start there. The import
# cannot be avoided without rebuilding std, so a tiny mingw-built stub (scripts/wine/) that answers
# ProcessPrng from RtlGenRandom sits next to the Wine copy. The exe for Windows ships without it.
#
# The Rust standard library for the target comes from `rustup target add`. If rustup cannot download
# it, the script says so and falls back to Debian's packages only: rustc-web, cargo-web and
# rust-web-src (bookworm-security, Rust 1.96), building std for the target from source
# (-Zbuild-std, allowed on a stable compiler by RUSTC_BOOTSTRAP=1). Debian has no prebuilt mingw
# Rust std. If neither works, the script fails: the Windows build never silently disappears.
#
# CALLOUTD_WINDOWS_FALLBACK=1 takes the fallback without asking rustup at all, as if it had refused
# (to try the fallback on a machine where rustup works). It is slow, since it builds std and every
# dependency afresh: a debug build from an empty target dir took 8 min of CPU (40 min of wall time
# at nice 19 on a shared, loaded 2-core machine, apt-get install included), and the exe passes
# tests/windows_wine.rs. Give it its own CARGO_TARGET_DIR when trying it; scripts/test.sh never
# forces it.
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-pc-windows-gnu
profile=debug
cargo_args=(--locked --target "$target" --bin calloutd)
if [ "${1:-}" = "--release" ]; then
    profile=release
    cargo_args+=(--release)
fi
linker=x86_64-w64-mingw32-gcc
if ! command -v "$linker" >/dev/null; then
    echo "build-windows.sh: $linker not found: apt-get install gcc-mingw-w64-x86-64" >&2
    exit 1
fi
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER="$linker"
# Keep one build of every C dependency (SQLite, the exception shim) per target: cc-rs picks the
# mingw compiler by the target's triple.
export CC_x86_64_pc_windows_gnu="$linker"
export AR_x86_64_pc_windows_gnu=x86_64-w64-mingw32-ar
target_dir="${CARGO_TARGET_DIR:-target}"

have_target() {
    command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -qx "$target"
}

use_rustup() {
    if [ "${CALLOUTD_WINDOWS_FALLBACK:-0}" = 1 ]; then
        echo "build-windows.sh: CALLOUTD_WINDOWS_FALLBACK=1: rustup not asked (as if refused)" >&2
        return 1
    fi
    have_target || { command -v rustup >/dev/null && rustup target add "$target"; }
}

if use_rustup; then
    echo "build-windows.sh: cargo build ${cargo_args[*]}"
    cargo build "${cargo_args[@]}"
else
    if [ "${CALLOUTD_WINDOWS_FALLBACK:-0}" != 1 ]; then
        echo "build-windows.sh: rustup could not install the $target standard library" >&2
    fi
    echo "build-windows.sh: falling back to Debian's rustc-web + cargo-web + rust-web-src" \
        "(std built from source)" >&2
    if [ "$(id -u)" = 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -qq --no-install-recommends rustc-web cargo-web rust-web-src >/dev/null
    fi
    if [ ! -d /usr/lib/rustlib/src/rust/library ]; then
        echo "build-windows.sh: no fallback either: rust-web-src is not installed" \
            "(apt-get install rustc-web cargo-web rust-web-src)" >&2
        exit 1
    fi
    RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 /usr/bin/cargo build "${cargo_args[@]}" \
        -Zbuild-std=std,panic_abort
fi

out="$target_dir/$target/$profile"
mkdir -p "$out/wine"
cp -f "$out/calloutd.exe" "$out/wine/calloutd.exe"
"$linker" -O2 -shared -o "$out/wine/bcryptprimitives.dll" \
    scripts/wine/bcryptprimitives.c scripts/wine/bcryptprimitives.def -ladvapi32
echo "build-windows.sh: $out/calloutd.exe (Wine copy with the ProcessPrng stub in $out/wine/)"
