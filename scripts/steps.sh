# Step bookkeeping for scripts/test-all.sh and .ci/run (sourced, not run).
#
# Every step appends one result line to $STEPS_FILE (created here unless the caller exported one, so
# .ci/run and the test-all.sh it runs share a file), and echoes it:
#   check NAME CMD...   a script check, counted once: "check: PASS NAME" or "check: FAIL NAME"
#   skip NAME REASON    a check that did not run: "check: SKIP NAME: REASON"
#   tests NAME CMD...   a test runner printing libtest's "test result:" lines (cargo test); its own
#                       counts are used: "tests: NAME: P passed, F failed, I ignored". A runner that
#                       fails without reporting a failed test (a build error, a crash) adds a FAIL.
#   summary PREFIX      prints "PREFIX: N passed, M failed, K skipped" over the whole file and
#                       returns 1 when anything failed.
# A failing step does not stop the script: the later steps still run and are counted.

if [ -z "${STEPS_FILE:-}" ]; then
  STEPS_FILE=$(mktemp)
  export STEPS_FILE
  trap 'rm -f "$STEPS_FILE"' EXIT
fi

step_result() {
  echo "$1"
  echo "$1" >>"$STEPS_FILE"
}

check() {
  local name=$1
  shift
  printf '\n== %s\n' "$name"
  if "$@"; then
    step_result "check: PASS $name"
  else
    step_result "check: FAIL $name"
  fi
}

skip() {
  step_result "check: SKIP $1: $2"
}

tests() {
  local name=$1 out rc counts errexit=
  shift
  printf '\n== %s\n' "$name"
  out=$(mktemp)
  case $- in *e*) errexit=1 ;; esac
  set +e
  "$@" 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  [ -z "$errexit" ] || set -e
  counts=$(awk '/^test result: / {
      for (i = 2; i <= NF; i++) {
        if ($i ~ /^passed/) p += $(i - 1)
        if ($i ~ /^failed/) f += $(i - 1)
        if ($i ~ /^ignored/) g += $(i - 1)
      }
    } END { printf "%d %d %d", p, f, g }' "$out")
  rm -f "$out"
  read -r p f g <<<"$counts"
  step_result "tests: $name: $p passed, $f failed, $g ignored"
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    step_result "check: FAIL $name (exit $rc without a failed test: see above)"
  fi
}

summary() {
  awk -v prefix="$1" '
    /^check: PASS / { p++ }
    /^check: FAIL / { f++ }
    /^check: SKIP / { s++ }
    /^tests: / { p += $(NF - 5); f += $(NF - 3); s += $(NF - 1) }
    END { printf "%s: %d passed, %d failed, %d skipped\n", prefix, p, f, s; exit (f > 0) }
  ' "$STEPS_FILE"
}
