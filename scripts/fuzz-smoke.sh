#!/usr/bin/env bash
# Bounded fuzzing of every cargo-fuzz target (`cargo fuzz list`: the parsers, the reassembler with
# the agent's limits, KQL and EQL, the stateful rules, the syslog line and JSON alert writers) on nightly:
# SECONDS_PER_TARGET each (default 30), seeded from fuzz/seeds/ (and the shared corpus when it
# sits beside the repo). Installs the nightly toolchain and cargo-fuzz when missing.
# A crash fails the script; the reproducer is left under fuzz/artifacts/<target>/.
#
#   scripts/fuzz-smoke.sh [SECONDS_PER_TARGET] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
shift || true
targets=("$@")

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir fuzz)
[ ${#targets[@]} -gt 0 ] || { echo "fuzz-smoke: no fuzz targets found" >&2; exit 1; }

shared=../shared/corpus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Corpus directories: the checked-in seeds, plus whole shared inputs cut to the target's unit.
for t in "${targets[@]}"; do
    mkdir -p "$work/$t"
    [ ! -d fuzz/seeds/"$t" ] || cp fuzz/seeds/"$t"/* "$work/$t"/
done
if [ -d "$shared" ]; then
    if [[ " ${targets[*]} " == *" record_text "* ]]; then
        # One line per seed file, the first 200 lines of each text log.
        for f in "$shared"/*.audit.log; do
            head -n 200 "$f" | split -l 1 - "$work/record_text/$(basename "$f")-"
        done
    fi
    if [[ " ${targets[*]} " == *" netlink_frames "* ]]; then
        for f in "$shared"/*.netlink.bin; do
            head -c 16384 "$f" >"$work/netlink_frames/$(basename "$f")"
        done
    fi
fi

failed=0
for t in "${targets[@]}"; do
    echo "== $t: ${secs}s"
    set +e
    cargo +nightly fuzz run --fuzz-dir fuzz "$t" "$work/$t" -- \
        -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        >"$work/$t.log" 2>&1
    rc=$?
    set -e
    grep -E '^stat::(number_of_executed_units|peak_rss_mb|new_units_added)' "$work/$t.log" || true
    if [ $rc -ne 0 ]; then
        tail -n 60 "$work/$t.log" >&2
        echo "fuzz-smoke: $t failed (exit $rc)" >&2
        ls fuzz/artifacts/"$t"/ 2>/dev/null | sed "s|^|  reproducer: fuzz/artifacts/$t/|" >&2 || true
        failed=1
    fi
done
[ $failed = 0 ] || exit 1
echo "fuzz-smoke: ${#targets[@]} target(s), ${secs}s each, no failures"
