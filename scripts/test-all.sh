#!/usr/bin/env bash
# Every test of the project, in the order a reviewer would want them to fail: format, lints, docs,
# unit and integration tests, benches and fuzz-free builds, then the labelled corpus score.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=../shared

cargo fmt --all -- --check
cargo clippy --release --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked --quiet
cargo build --release --locked
cargo test --release --locked
cargo bench --no-run --locked --quiet

# The labelled corpus: exact verdicts on every case, and new-terms (one alert per parent, none twice).
"$shared/tools/corpus-check" --bin target/release/auditsentry --parents bash,busybox,dash,perl,python3.11 \
  "$shared"/corpus/*.audit.log "$shared"/corpus/*.netlink.bin
# The extended (path-aware) detector on the same captures.
"$shared/tools/corpus-check" --extended --bin target/release/auditsentry \
  "$shared"/corpus/*.audit.log "$shared"/corpus/*.netlink.bin
# Our own capture, scored the same way against its own labels.
"$shared/tools/corpus-check" --bin target/release/auditsentry --labels samples/labels.tsv \
  --parents bash,busybox,dash,perl,python3.11 samples/sample.audit.log samples/sample-enriched.audit.log \
  samples/sample.netlink.bin
"$shared/tools/corpus-check" --extended --bin target/release/auditsentry --labels samples/labels.tsv \
  samples/sample.audit.log samples/sample-enriched.audit.log samples/sample.netlink.bin
