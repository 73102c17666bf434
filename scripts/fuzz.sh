#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for SECONDS each (default 60), one after another, each from a
# seed corpus made from fixtures/ (plus what earlier runs found, kept in fuzz/corpus/TARGET).
# Installs cargo-fuzz if it is missing. cargo-fuzz passes nightly-only rustc flags (-Zsanitizer,
# coverage instrumentation); on a stable toolchain RUSTC_BOOTSTRAP=1 lets rustc accept them.
# A crash leaves its input in fuzz/artifacts/TARGET/ and makes the script exit 1 after the other
# targets ran; reproduce it with `cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-...` in fuzz/.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${1:-60}
shift || true

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
if ! rustc -V | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
fi
# The packet target with a callout loads fixtures/callouts/rewrite.c, built by crates/fixtures (gcc).
command -v cc >/dev/null 2>&1 || echo "fuzz.sh: no C compiler: the callout targets cannot build their fixture" >&2

cd fuzz
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

# seeds TARGET: the fixture files that start TARGET's corpus.
seeds() {
    case "$1" in
        reg_reader) ls "$root"/fixtures/reg/*.reg "$root"/fixtures/config/*.reg ;;
        xml_reader) ls "$root"/fixtures/config/*.xml "$root"/fixtures/scenarios/*.xml ;;
        netsh_reader) ls "$root"/fixtures/config/*.txt "$root"/fixtures/scenarios/*.txt ;;
        packet_path*) ls "$root"/fixtures/packets/*.bin ;;
        control_api) ls "$root"/fixtures/control/*.http ;;
        scenario_reader) ls "$root"/fixtures/scenarios/*.toml ;;
        capture_reader) ls "$root"/fixtures/captures/*.pcap* ;;
        *) echo "fuzz.sh: no seeds known for $1" >&2 ;;
    esac
}

failed=()
summary=()
for target in "${targets[@]}"; do
    corpus="corpus/$target"
    mkdir -p "$corpus"
    for seed in $(seeds "$target"); do
        name="seed-$(basename "$seed")"
        case "$target" in
            # The first byte picks admission and segment (fuzz/src/lib.rs): seed two of each packet.
            packet_path*)
                { printf '\000'; cat "$seed"; } > "$corpus/$name.0"
                { printf '\030'; cat "$seed"; } > "$corpus/$name.24" ;;
            # The first byte picks the router without or with a token.
            control_api)
                { printf '\000'; cat "$seed"; } > "$corpus/$name.0"
                { printf '\001'; cat "$seed"; } > "$corpus/$name.1" ;;
            *) cp "$seed" "$corpus/$name" ;;
        esac
    done
    echo "fuzz.sh: $target for ${seconds}s from $(ls "$corpus" | wc -l) inputs"
    log="artifacts/$target.log"
    mkdir -p artifacts
    features=()
    # The control target needs the runtime, which the others do not build.
    [ "$target" = control_api ] && features=(--features control)
    if cargo fuzz run "${features[@]}" "$target" "$corpus" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
        -timeout=10 -print_final_stats=1 > "$log" 2>&1; then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
        summary+=("$target: clean, $runs runs in ${seconds}s")
    else
        failed+=("$target")
        summary+=("$target: FAILED (see fuzz/$log and fuzz/artifacts/$target/)")
        tail -n 40 "$log" >&2
    fi
done
printf 'fuzz.sh: %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: crashes in: ${failed[*]}" >&2
    exit 1
fi
