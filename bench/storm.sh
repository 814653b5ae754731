#!/usr/bin/env bash
# Exec storm against the live agent (multicast source), as root.
#
#   bench/storm.sh [--rate N] [--seconds T] [--ln K] [--bin PATH]
#
# Starts `auditsentry run --source multicast` with its own state dir, JSON file and capture
# (--record), with the seed query as a plain `query` rule so that every matching case alerts
# (the new-terms gate would let one per parent through). Sets the kernel's backlog_limit to
# 8192, then runs N execs/s of /bin/true with a marker argument plus K matching
# `ln -s /usr/bin/id /tmp/<marker>-k` cases for T seconds, stops the agent (which removes the
# execve rules it added), restores backlog_limit, and reports:
# execs started vs exec events the agent received (marker EXECVE frames in its capture), alerts
# vs ln cases, kernel lost (delta of the kernel's counter), ENOBUFS and channel drops (the agent's
# last `status:` line), agent CPU % of one core, and peak RSS (VmHWM).
set -euo pipefail
cd "$(dirname "$0")/.."

rate=1000
secs=30
lns=20
bin=""
while [ $# -gt 0 ]; do
    case "$1" in
    --rate) rate=$2; shift 2 ;;
    --seconds) secs=$2; shift 2 ;;
    --ln) lns=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    *) echo "usage: $0 [--rate N] [--seconds T] [--ln K] [--bin PATH]" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "storm: needs root (audit netlink)" >&2; exit 1; }
# Another audit consumer that changes enabled/rules mid-run would make the counts meaningless.
if pgrep -x auditd >/dev/null || pgrep -f 'auditsentry run' >/dev/null; then
    echo "storm: warning: another audit consumer is running; it may change kernel audit state" >&2
fi
if [ -z "$bin" ]; then
    cargo build --release --locked --quiet
    bin="${CARGO_TARGET_DIR:-target}/release/auditsentry"
fi

work=$(mktemp -d)
marker="storm$$x$RANDOM"
status_of() { "$bin" status | sed -n 's/.* \('"$1"'\)=\([0-9]*\).*/\2/p'; }
old_limit=$(status_of backlog_limit)
rules_before=$(auditctl -l)
enabled_before=$(status_of enabled)
lost_before=$(status_of lost)
agent=""
cleanup() {
    if [ -n "$agent" ] && kill -0 "$agent" 2>/dev/null; then
        kill -TERM "$agent"
        wait "$agent" || true
    fi
    auditctl -b "$old_limit" >/dev/null
    rm -rf "$work"
    if [ "$(auditctl -l)" != "$rules_before" ] || [ "$(status_of enabled)" != "$enabled_before" ]; then
        echo "storm: warning: kernel audit rules or enabled flag differ from before the run" >&2
    fi
}
trap cleanup EXIT

# The seed query as a plain query rule: every match alerts.
sed -e 's/^type = "new_terms"/type = "query"/' -e '/^\[rule.new_terms\]/,$d' \
    packaging/rules/defense_evasion_symlink_binary_to_writable_dir.toml >"$work/storm-query.toml"
auditctl -b 8192 >/dev/null

"$bin" run --source multicast --rules "$work/storm-query.toml" --state-dir "$work/state" \
    --json "$work/alerts.ndjson" --record "$work/capture.bin" --status-period 1 \
    2>"$work/agent.err" &
agent=$!
for _ in $(seq 100); do
    grep -q '^.*running: pid' "$work/agent.err" 2>/dev/null && break
    sleep 0.1
done
grep -q 'running: pid' "$work/agent.err" || { cat "$work/agent.err" >&2; exit 1; }
ticks() { awk '{print $14 + $15}' "/proc/$agent/stat"; }
hz=$(getconf CLK_TCK)
t0=$(ticks)
start_ns=$(date +%s%N)

# The load: paced posix_spawn of /bin/true (workers share the rate), plus K ln cases spread
# over the run. Prints the number of execs started.
started=$(python3 - "$rate" "$secs" "$lns" "$marker" <<'EOF'
import os, sys, time
rate, secs, lns, marker = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
workers = max(1, min(os.cpu_count() or 1, (rate + 1999) // 2000))
pipes = []
for w in range(workers):
    r, wfd = os.pipe()
    if os.fork() == 0:
        os.close(r)
        my_rate = rate / workers
        n = 0
        t0 = time.monotonic()
        end = t0 + secs
        k = 0
        live = 0
        while True:
            now = time.monotonic()
            if now >= end:
                break
            due = int((now - t0) * my_rate)
            while n < due:
                # Bounded children: reap (blocking) when too many are alive or spawn hits EAGAIN.
                while live >= 256:
                    os.waitpid(-1, 0)
                    live -= 1
                try:
                    if w == 0 and k < lns and (now - t0) >= (k + 0.5) * secs / lns:
                        argv = ["ln", "-sf", "/usr/bin/id", f"/tmp/{marker}-ln-{k}"]
                        os.posix_spawn("/usr/bin/ln", argv, {})
                        k += 1
                    else:
                        os.posix_spawn("/bin/true", ["true", f"{marker}-{w}-{n}"], {})
                except BlockingIOError:
                    if live:
                        os.waitpid(-1, 0)
                        live -= 1
                    continue
                n += 1
                live += 1
            while live:
                try:
                    pid, _ = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    live = 0
                    break
                if pid == 0:
                    break
                live -= 1
            time.sleep(0.0005)
        while True:
            try:
                os.wait()
            except ChildProcessError:
                break
        os.write(wfd, f"{n - k} {k}\n".encode())
        os._exit(0)
    os.close(wfd)
    pipes.append(r)
total = lnk = 0
for r in pipes:
    a, b = os.read(r, 100).split()
    total += int(a)
    lnk += int(b)
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
print(total, lnk)
EOF
)
read -r trues lns_done <<<"$started"
end_ns=$(date +%s%N)
sleep 3 # let the agent drain and complete the last events (reassembly timeout 2 s)
t1=$(ticks)
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$agent/status")
kill -TERM "$agent"
wait "$agent" || true
agent=""
lost_after=$(status_of lost)
rm -f /tmp/"$marker"-ln-*
# Someone else turning audit off or removing rules mid-run shows as CONFIG_CHANGE records.
changes=$(grep -aoE 'audit_enabled=[0-9]+ old=[0-9]+|op=(add|remove)_rule key=[^ ]*' "$work/capture.bin" \
    | sort | uniq -c || true)

elapsed=$(echo "($end_ns - $start_ns) / 1000000000 + 3" | bc -l)
cpu=$(echo "100 * ($t1 - $t0) / $hz / $elapsed" | bc -l)
seen=$(grep -aoF "$marker-" "$work/capture.bin" | wc -l)
# ln cases: their marker is in the link name; EXECVE a3 and PATH records both carry it, so count
# alerts instead (one per case) and true-execs as frames minus 2 per ln case.
alerts=$(grep -c "$marker-ln-" "$work/alerts.ndjson" || true)
status=$(grep 'status:' "$work/agent.err" | tail -1)
field() { sed -n 's/.* '"$1"'=\([0-9]*\).*/\1/p' <<<"$status"; }
true_seen=$(grep -aoE "$marker-[0-9]+-[0-9]+" "$work/capture.bin" | sort -u | wc -l)

gen_secs=$(echo "($end_ns - $start_ns) / 1000000000" | bc -l)
printf '\nexec storm: %s/s of /bin/true asked for %ss (+%s ln cases), backlog_limit 8192; achieved %.0f exec/s\n' \
    "$rate" "$secs" "$lns_done" "$(echo "($trues + $lns_done) / $gen_secs" | bc -l)"
printf '| rate (exec/s) | execs started | exec events seen | missed | ln cases | alerts | kernel lost | ENOBUFS | channel drops | agent CPU %% | CPU %% per 1000 exec/s achieved | peak RSS (MiB) |\n'
printf '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %.1f | %.2f | %.1f |\n' "$rate" "$trues" "$true_seen" \
    "$((trues - true_seen))" "$lns_done" "$alerts" "$((lost_after - lost_before))" "$(field enobufs)" \
    "$(field channel_drops)" "$cpu" "$(echo "$cpu * 1000 * $gen_secs / ($trues + $lns_done)" | bc -l)" "$(echo "$hwm / 1024" | bc -l)"
echo "last agent status: $status"
echo "(all marker occurrences in the capture: $seen)"
if [ -n "$changes" ]; then
    echo "audit configuration changes seen during the run (audit_enabled=0 from another process makes counts unreliable):"
    echo "$changes"
fi
