#!/usr/bin/env bash
# Replay throughput: auditsentry vs LAUREL vs `grep -c EXECVE` on the same generated auditd log.
#
#   bench/replay-bench.sh [--events N] [--seed S] [--runs R] [--bin PATH] [--no-laurel]
#
# Generates the log (bench/gen-log.py) into $BENCH_DIR (default: $TMPDIR/auditsentry-bench) if it is
# missing, then for each tool reports wall time, events/s, MB/s and peak RSS (/usr/bin/time -v,
# one run each; CPU user+sys too, steadier than wall time on a shared machine) and, with hyperfine,
# the mean wall time over R runs (LAUREL: one run, it is slow).
# Needs: python3, /usr/bin/time (GNU time), hyperfine, laurel (Debian package `laurel`).
#
# LAUREL is run the way its INSTALL.md says for testing: it reads auditd plugin lines on stdin;
# the config below writes its JSON log into a scratch directory and turns off the enrichments that
# would read /proc of this host (environment, containers, scripts) for pids that are not real.
set -euo pipefail
cd "$(dirname "$0")/.."

events=1000000
seed=1
runs=3
bin=""
laurel=1
while [ $# -gt 0 ]; do
    case "$1" in
    --events) events=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --no-laurel) laurel=0; shift ;;
    *) echo "usage: $0 [--events N] [--seed S] [--runs R] [--bin PATH] [--no-laurel]" >&2; exit 2 ;;
    esac
done

for tool in python3 hyperfine /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "replay-bench: $tool is required" >&2; exit 1; }
done
if [ "$laurel" = 1 ] && ! command -v laurel >/dev/null; then
    echo "replay-bench: laurel not found (apt-get install laurel), or pass --no-laurel" >&2
    exit 1
fi

if [ -z "$bin" ]; then
    cargo build --release --locked --quiet
    bin="${CARGO_TARGET_DIR:-target}/release/auditsentry"
fi

dir=${BENCH_DIR:-${TMPDIR:-/tmp}/auditsentry-bench}
mkdir -p "$dir"
log="$dir/bench-$events-seed$seed.audit.log"
if [ ! -s "$log" ]; then
    echo "generating $log ..." >&2
    python3 bench/gen-log.py --events "$events" --seed "$seed" --out "$log.tmp"
    mv "$log.tmp" "$log"
fi
bytes=$(stat -c %s "$log")
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

mkdir -p "$scratch/laurel"
cat >"$scratch/laurel.toml" <<EOF
directory = "$scratch/laurel"
statusreport-period = 0
[auditlog]
file = "audit.log"
size = 1000000000000
generations = 1
[transform]
execve-argv = [ "array" ]
[translate]
universal = false
user-db = false
[enrich]
pid = true
execve-env = []
container = false
systemd = false
script = false
EOF

# name, shell command (reads $log, output to a file so no tool can skip work on /dev/null)
# `auditsentry` is the default replay (new-terms gate on, as a deployment runs the rule);
# `auditsentry --all-matches` writes every query match as an alert (a quarter of this input).
names=(auditsentry "auditsentry --all-matches" laurel grep)
cmds=(
    "$bin replay --quiet $log > $scratch/out"
    "$bin replay --all-matches --quiet $log > $scratch/out"
    "laurel -c $scratch/laurel.toml < $log > $scratch/out 2>/dev/null"
    "grep -c EXECVE $log > $scratch/out"
)

# Warm the page cache so every tool reads from memory.
cat "$log" >/dev/null

printf '\ninput: %s (%d events, %.1f MB)\n\n' "$log" "$events" "$(echo "$bytes / 1000000" | bc -l)"
printf '| tool | wall (s) | events/s | MB/s | CPU user+sys (s) | events/CPU-s | peak RSS (MiB) | hyperfine mean ± σ (s, %s runs) |\n' "$runs"
printf '|---|---:|---:|---:|---:|---:|---:|---:|\n'
declare -A wall cpu_of
for i in "${!names[@]}"; do
    name=${names[$i]}
    cmd=${cmds[$i]}
    [ "$name" = laurel ] && [ "$laurel" = 0 ] && continue
    rm -f "$scratch/laurel/audit.log"
    /usr/bin/time -v -o "$scratch/time" sh -c "$cmd"
    secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {
        n = split($2, p, ":"); s = 0; for (k = 1; k <= n; k++) s = s * 60 + p[k]; print s }' "$scratch/time")
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$scratch/time")
    cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {print s}' "$scratch/time")
    cpu_of[$name]=$cpu
    hf="-"
    if [ "$name" != laurel ]; then
        # /usr/bin/time has 10 ms resolution: the hyperfine mean is the wall time reported.
        hyperfine --style none --warmup 1 --runs "$runs" --export-json "$scratch/hf.json" "$cmd" >/dev/null
        read -r secs sd < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.4f %.4f" % (r["mean"], r["stddev"]))' "$scratch/hf.json")
        hf="$secs ± $sd"
    fi
    wall[$name]=$secs
    printf '| %s | %.3f | %.0f | %.1f | %.2f | %.0f | %.1f | %s |\n' "$name" "$secs" \
        "$(echo "$events / $secs" | bc -l)" "$(echo "$bytes / 1000000 / $secs" | bc -l)" \
        "$cpu" "$(echo "$events / ($cpu + 0.001)" | bc -l)" "$(echo "$rss / 1024" | bc -l)" "$hf"
done
echo
if [ "$laurel" = 1 ]; then
    printf 'auditsentry vs LAUREL: %.1fx the events/s, %.1fx the events per CPU-second (goal >= 5x)\n' \
        "$(echo "${wall[laurel]} / ${wall[auditsentry]}" | bc -l)" \
        "$(echo "${cpu_of[laurel]} / ${cpu_of[auditsentry]}" | bc -l)"
fi
printf 'auditsentry vs grep -c EXECVE: %.1fx the wall time, %.1fx the CPU time (goal <= 4x)\n' \
    "$(echo "${wall[auditsentry]} / ${wall[grep]}" | bc -l)" \
    "$(echo "${cpu_of[auditsentry]} / (${cpu_of[grep]} + 0.001)" | bc -l)"
echo "(machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end)"
