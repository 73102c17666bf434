#!/usr/bin/env bash
# Runs every test of calloutd from a fresh clone: installs what the tests need (as root, from Debian's
# packages), builds the C test callouts, checks formatting and lints, and runs the whole suite.
# Usage: scripts/test.sh            (CI calls exactly this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: a C compiler for the test callouts, mingw-w64 for their Windows DLLs
# and wine64 to run those, iproute2 for the network-namespace tests, the real DHCP clients, and ISC
# Kea 2.2 (kea-dhcp4-server, with its bootp hook library) for the differential test tests/kea_diff.rs,
# which starts it itself inside a network namespace.
packages=(gcc libc6-dev gcc-mingw-w64-x86-64 mingw-w64-common wine64 iproute2 isc-dhcp-client udhcpc dhcpcd-base kea-dhcp4-server)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "test.sh: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # No package may start a service here (kea-dhcp4-server ships one): policy-rc.d says no for
        # the install only.
        policy=/usr/sbin/policy-rc.d
        made_policy=0
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\nexit 101\n' > "$policy"
            chmod +x "$policy"
            made_policy=1
        fi
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        if [ "$made_policy" = 1 ]; then rm -f "$policy"; fi
    else
        echo "test.sh: missing Debian packages: ${missing[*]} (run as root to install them, or apt-get install them)" >&2
    fi
fi
if [ "$(id -u)" != 0 ]; then
    echo "test.sh: not root: the network-namespace end-to-end tests will report themselves skipped" >&2
fi

# One target dir for everything, so the build is reused by every step below.
export CARGO_TERM_COLOR=never
# The real-client tests fail (rather than skip) when dhclient, udhcpc or dhcpcd could not be had.
export CALLOUTD_REQUIRE_REAL_CLIENTS=1
# The Windows DLL test and the calloutd.exe Wine tests fail (rather than skip) when mingw-w64, wine or
# the exe could not be had.
export CALLOUTD_REQUIRE_WINE=1
# The Kea differential test fails (rather than skips) when kea-dhcp4 could not be had.
export CALLOUTD_REQUIRE_KEA=1
echo "test.sh: cargo fmt --check"
cargo fmt --all -- --check
echo "test.sh: cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
# calloutd.exe, built once into this target dir (adding the rustup Windows target when it is
# missing, so the Windows clippy below has it); tests/windows_wine.rs runs its Wine copy.
echo "test.sh: scripts/build-windows.sh"
scripts/build-windows.sh
if rustup target list --installed 2>/dev/null | grep -qx x86_64-pc-windows-gnu; then
    echo "test.sh: cargo clippy (x86_64-pc-windows-gnu)"
    cargo clippy --workspace --all-targets --locked --target x86_64-pc-windows-gnu -- -D warnings
else
    echo "test.sh: no rustup target x86_64-pc-windows-gnu: Windows clippy skipped (build-windows.sh falls back to Debian's Rust)" >&2
fi
if rustup target list --installed 2>/dev/null | grep -qx x86_64-pc-windows-gnu; then
    echo "test.sh: scripts/wine-unit-tests.sh (the Windows code paths' unit tests under Wine)"
    scripts/wine-unit-tests.sh
fi
echo "test.sh: cargo test"
cargo test --workspace --locked
