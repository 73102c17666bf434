#!/usr/bin/env bash
# Builds the C callouts of fixtures/callouts/ into fixtures/callouts/build/: linux/*.so with cc, and
# windows/*.dll with x86_64-w64-mingw32-gcc when it is installed. The same sources, unchanged, for both.
# (The test suite builds its own copies through calloutd_fixtures (crates/fixtures); this is for examples.)
set -euo pipefail
cd "$(dirname "$0")/.."
src=fixtures/callouts
inc=crates/dhcpssdk/include
mkdir -p "$src/build/linux"
for c in "$src"/*.c; do
    name=$(basename "$c" .c)
    ${CC:-cc} -shared -fPIC -fvisibility=hidden -O2 -Wall -I"$inc" -o "$src/build/linux/$name.so" "$c" -ldl -lpthread
done
echo "built: $src/build/linux/*.so"
if command -v x86_64-w64-mingw32-gcc >/dev/null; then
    mkdir -p "$src/build/windows"
    for c in "$src"/*.c; do
        name=$(basename "$c" .c)
        x86_64-w64-mingw32-gcc -shared -O2 -Wall -static-libgcc -I"$inc" -o "$src/build/windows/$name.dll" "$c"
    done
    echo "built: $src/build/windows/*.dll"
else
    echo "note: x86_64-w64-mingw32-gcc not installed (apt-get install gcc-mingw-w64-x86-64): no Windows DLLs"
fi
