#!/usr/bin/env bash
# The differential test of the EQL engine (tests/eql_diff/eql_diff.py) against Elastic's `eql`
# package from PyPI, installed in a virtualenv under target/ on first use. Needs the release binary
# (cargo build --release). EQL_DIFF_DOCS (default 1200) documents × every query of
# tests/eql_diff/queries.eql; EQL_DIFF_SEED (default 1) picks the generated events. With
# --sequences, the sequence test (tests/eql_diff/eql_diff_sequences.py): a stream of
# EQL_DIFF_EVENTS (default 3000) events under every query of tests/eql_diff/sequences.eql.
#
#   scripts/eql-diff.sh [--setup-only | --sequences]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/eql-venv
version=1.0.1
if ! "$venv/bin/python" -c "import eql, sys; sys.exit(eql.__version__ != '$version')" 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "eql==$version"
fi
[ "${1:-}" = --setup-only ] && exit 0
if [ "${1:-}" = --sequences ]; then
    exec "$venv/bin/python" tests/eql_diff/eql_diff_sequences.py --bin target/release/auditsentry \
        --events "${EQL_DIFF_EVENTS:-3000}" --seed "${EQL_DIFF_SEED:-1}"
fi
exec "$venv/bin/python" tests/eql_diff/eql_diff.py --bin target/release/auditsentry \
    --docs "${EQL_DIFF_DOCS:-1200}" --seed "${EQL_DIFF_SEED:-1}"
