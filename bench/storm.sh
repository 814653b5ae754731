#!/usr/bin/env bash
# Exec storm against the live agent (multicast source, or auditd plugin), as root.
#
#   bench/storm.sh [--rate N] [--seconds T] [--ln K] [--workers W] [--bin PATH]
#                  [--source multicast|plugin] [--log-format RAW|ENRICHED] [--no-record]
#                  [--rules DIR]
#   bench/storm.sh --op file|net [--baseline] [--rate N] [--seconds T] [--ln K] [--workers W] ...
#   bench/storm.sh --ceiling [--seconds T] [--workers W]
#
# --source plugin runs a private auditd instead (`auditd -f -n -s nochange -c DIR`, the system's
# auditd.conf with its own log file, `--log-format` (default RAW) and a plugin directory whose one
# plugin is `auditsentry plugin CONFIG`, `format = string`), so the agent reads auditd's plugin
# stream on stdin; it needs auditd installed and no audit daemon registered. There is no capture
# then: "exec events seen" is the agent's own count of exec events (its `stopped:` line) less the
# ln cases, and the CPU is the plugin process's. --no-record runs the multicast agent without its
# capture too (counted the same way), to compare the two sources' CPU on equal terms. The table
# also gives the agent's context switches (all its threads): a reader that wakes its worker for
# every record shows there.
#
# Starts `auditsentry run --source multicast` with its own state dir, JSON file and capture
# (--record), with the seed query as a plain `query` rule so that every matching case alerts
# (the new-terms gate would let one per parent through). Sets the kernel's backlog_limit to
# 8192, then runs the load generator examples/exec_storm for T seconds: N execs/s of /bin/true
# (0 = as fast as the machine can) with a marker argument, shared by W worker threads (default:
# the number of CPUs), plus K matching `ln -sf /usr/bin/id /tmp/<marker>-ln-k` cases. Then it
# stops the agent (which removes the execve rules it added), restores backlog_limit, and reports:
# asked vs achieved exec rate, execs started vs exec events the agent received (marker EXECVE
# frames in its capture), alerts vs ln cases, kernel lost (delta of the kernel's counter),
# ENOBUFS and channel drops (the agent's last `status:` line), agent CPU % of one core, and peak
# RSS (VmHWM).
#
# --rules DIR: the agent also loads every rule file of DIR (e.g. the loadable rules of a
# detection-rules checkout, linked into one directory), so the table gives what a full rule set
# costs per 1,000 exec/s; the file and network rules among them add their audit rules too.
#
# --op file / --op net: the load is file operations (create + unlink of a file in /tmp: two file
# events) or UDP connects (socket + bind + connect to 127.0.0.1: two network events) done by the
# generator itself, N per second, and the agent loads a file rule (`file where` creation of
# `<marker>-hit-*`) or a network rule (a connect to the cases' port) besides the exec query, so it
# adds the file or network audit rules; K of the operations are cases the rule alerts on. No
# capture. The table gives the documents the agent made (its `file_net` counter) against those
# expected, and the CPU of the generator (user + system: the kernel's audit work is charged to
# the process making the calls). --baseline runs the same load with the exec query alone, so no
# file or network audit rule exists: the difference is what file or network auditing costs.
#
# --ceiling runs only the generator, at rate 0 for T seconds, with no agent and no audit rules
# added: the machine's own exec ceiling, which bounds every storm rate. --bin is the agent binary
# (default: built here); the generator always runs /bin/true.
set -euo pipefail
cd "$(dirname "$0")/.."

rate=1000
secs=30
lns=20
bin=""
workers=""
ceiling=0
source=multicast
log_format=RAW
capture=1
op=exec
baseline=0
usage="usage: $0 [--rate N] [--seconds T] [--ln K] [--workers W] [--bin PATH] [--source multicast|plugin] [--log-format RAW|ENRICHED] [--no-record] [--op exec|file|net] [--baseline] [--rules DIR] | --ceiling [--seconds T] [--workers W]"
while [ $# -gt 0 ]; do
    case "$1" in
    --rate) rate=$2; shift 2 ;;
    --seconds) secs=$2; shift 2 ;;
    --ln) lns=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --ceiling) ceiling=1; shift ;;
    --source) source=$2; shift 2 ;;
    --log-format) log_format=$2; shift 2 ;;
    --no-record) capture=0; shift ;;
    --op) op=$2; shift 2 ;;
    --baseline) baseline=1; shift ;;
    --rules) extra_rules=$2; shift 2 ;;
    *) echo "$usage" >&2; exit 2 ;;
    esac
done

cargo build --release --locked --quiet --example exec_storm
storm_gen="${CARGO_TARGET_DIR:-target}/release/examples/exec_storm"
gen() { "$storm_gen" ${workers:+--workers "$workers"} "$@"; }
# One field of the generator's summary line (`started=N ln=K failed=F seconds=S rate=R workers=W`).
sum_field() { sed -n 's/.*\<'"$1"'=\([0-9.]*\).*/\1/p' <<<"$summary"; }

if [ "$ceiling" = 1 ]; then
    if [ "$(id -u)" = 0 ] && [ "$(auditctl -l)" != "No rules" ]; then
        echo "storm: warning: audit rules are loaded; the ceiling includes their cost:" >&2
        auditctl -l >&2
    fi
    summary=$(gen --rate 0 --seconds "$secs" --ln 0 --marker "ceiling$$x$RANDOM" | grep '^started=' | tail -1)
    printf '\nexec ceiling: %s execs of /bin/true in %s s, %s workers, no agent, no audit rules added: %.0f exec/s (spawn failures: %s)\n' \
        "$(sum_field started)" "$(sum_field seconds)" "$(sum_field workers)" "$(sum_field rate)" "$(sum_field failed)"
    echo "generator: $summary"
    exit 0
fi

[ "$(id -u)" = 0 ] || { echo "storm: needs root (audit netlink)" >&2; exit 1; }
case "$op" in
exec) [ "$baseline" = 0 ] || { echo "storm: --baseline is for --op file|net" >&2; exit 2; } ;;
file | net) capture=0 ;;
*) echo "$usage" >&2; exit 2 ;;
esac
case "$source" in
multicast) ;;
plugin)
    capture=0
    [ -x /usr/sbin/auditd ] && [ -r /etc/audit/auditd.conf ] ||
        { echo "storm: --source plugin needs auditd (/usr/sbin/auditd, /etc/audit/auditd.conf)" >&2; exit 1; }
    ;;
*) echo "$usage" >&2; exit 2 ;;
esac
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
auditd=""
# Stops the agent: the multicast agent directly; the plugin by stopping its auditd, which closes
# the plugin's stdin and waits for it.
stop_agent() {
    if [ -n "$auditd" ] && kill -0 "$auditd" 2>/dev/null; then
        kill -TERM "$auditd"
        wait "$auditd" || true
        while [ -n "$agent" ] && kill -0 "$agent" 2>/dev/null; do sleep 0.1; done
    elif [ -n "$agent" ] && kill -0 "$agent" 2>/dev/null; then
        kill -TERM "$agent"
        wait "$agent" || true
    fi
    agent=""
    auditd=""
}
cleanup() {
    stop_agent
    auditctl -b "$old_limit" >/dev/null
    rm -rf "$work"
    if [ "$(auditctl -l)" != "$rules_before" ] || [ "$(status_of enabled)" != "$enabled_before" ]; then
        echo "storm: warning: kernel audit rules or enabled flag differ from before the run" >&2
    fi
}
trap cleanup EXIT
[ -z "${STORM_KEEP:-}" ] || trap 'cp -r "$work" "$STORM_KEEP"; cleanup' EXIT

# The seed query as a plain query rule: every match alerts. --op file|net adds its own rule.
mkdir "$work/rules"
sed -e 's/^type = "new_terms"/type = "query"/' -e '/^\[rule.new_terms\]/,$d' \
    packaging/rules/defense_evasion_symlink_binary_to_writable_dir.toml >"$work/rules/storm-query.toml"
if [ -n "${extra_rules:-}" ]; then
    find -L "$extra_rules" -maxdepth 1 -name '*.toml' -exec cp -L {} "$work/rules/" \;
    # The seed rule's own file, if DIR has it, would define the storm query's rule_id twice.
    seed_id=$(grep -m1 '^rule_id' "$work/rules/storm-query.toml")
    grep -lxF "$seed_id" "$work/rules"/*.toml | grep -v '/storm-query.toml$' | xargs -r rm --
fi
port=$((40000 + RANDOM % 20000))
event_rule() {
    printf '[rule]\nrule_id = "storm-%s"\nname = "storm %s"\ndescription = "storm cases"\n' "$op" "$op"
    printf 'severity = "low"\nrisk_score = 1\ntype = "eql"\nlanguage = "eql"\nquery = %s\n' "$1"
}
if [ "$baseline" = 0 ]; then
    case "$op" in
    file) event_rule "'file where event.type == \"creation\" and file.name : \"$marker-hit-*\"'" ;;
    net) event_rule "'network where event.action == \"connection_attempted\" and destination.port == $((port + 1))'" ;;
    esac >"$work/rules/storm-$op.toml"
    [ -s "$work/rules/storm-$op.toml" ] || rm "$work/rules/storm-$op.toml"
fi
auditctl -b 8192 >/dev/null

if [ "$source" = plugin ]; then
    [ "$(status_of pid)" = 0 ] || { echo "storm: an audit daemon is registered; --source plugin needs none" >&2; exit 1; }
    cat >"$work/agent.toml" <<EOF
[rules]
paths = ["$work/rules"]

[state]
dir = "$work/state"

[output.syslog]
enabled = false

[output.json]
path = "$work/alerts.ndjson"

[daemon]
status_period_secs = 1
EOF
    mkdir "$work/plugins.d"
    printf 'active = yes\ndirection = out\npath = %s\ntype = always\nargs = plugin %s\nformat = string\n' \
        "$(realpath "$bin")" "$work/agent.toml" >"$work/plugins.d/auditsentry.conf"
    { grep -vE '^[[:space:]]*(log_file|log_format|plugin_dir|name_format)[[:space:]]*=' /etc/audit/auditd.conf
      printf 'log_file = %s\nlog_format = %s\nname_format = NONE\nplugin_dir = %s\n' \
          "$work/audit.log" "$log_format" "$work/plugins.d"; } >"$work/auditd.conf"
    chmod 640 "$work/auditd.conf"
    # -f: auditd and its plugin's stderr stay in agent.err.
    /usr/sbin/auditd -f -n -s nochange -c "$work" </dev/null >/dev/null 2>"$work/agent.err" &
    auditd=$!
    for _ in $(seq 100); do
        agent=$(pgrep -P "$auditd" -f "plugin $work/agent.toml" || true)
        [ -n "$agent" ] && grep -q 'running: pid' "$work/agent.err" 2>/dev/null && break
        sleep 0.1
    done
else
    record=()
    [ "$capture" = 0 ] || record=(--record "$work/capture.bin")
    "$bin" run --source multicast --rules "$work/rules" --state-dir "$work/state" \
        --json "$work/alerts.ndjson" "${record[@]}" --status-period 1 2>"$work/agent.err" &
    agent=$!
    for _ in $(seq 100); do
        grep -q '^.*running: pid' "$work/agent.err" 2>/dev/null && break
        sleep 0.1
    done
fi
grep -q 'running: pid' "$work/agent.err" && [ -n "$agent" ] || { cat "$work/agent.err" >&2; exit 1; }
ticks() { awk '{print $14 + $15}' "/proc/$agent/stat"; }
hz=$(getconf CLK_TCK)
t0=$(ticks)
start_ns=$(date +%s%N)

# The load: examples/exec_storm (paced posix_spawn of /bin/true, workers share the rate, plus K
# ln cases spread over the run). Its last stdout line is the summary.
TIMEFORMAT='%U %S'
{ time gen --op "$op" --port "$port" --rate "$rate" --seconds "$secs" --ln "$lns" --marker "$marker" \
    >"$work/gen.out"; } 2>"$work/gen.time"
summary=$(grep '^started=' "$work/gen.out" | tail -1)
gen_cpu=$(awk 'END {print $1 + $2}' "$work/gen.time")
[ -n "$summary" ] || { echo "storm: the generator printed no summary" >&2; exit 1; }
trues=$(sum_field started)
lns_done=$(sum_field ln)
achieved=$(sum_field rate)
end_ns=$(date +%s%N)
sleep 3 # let the agent drain and complete the last events (reassembly timeout 2 s)
t1=$(ticks)
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$agent/status")
switches=$(cat /proc/"$agent"/task/*/status | awk '/ctxt_switches/ {n += $2} END {print n}')
stop_agent
lost_after=$(status_of lost)
rm -f /tmp/"$marker"-ln-* /tmp/"$marker"-hit-* /tmp/"$marker"-[0-9]*
# Someone else turning audit off or removing rules mid-run shows as CONFIG_CHANGE records.
changes=""
[ "$capture" = 0 ] || changes=$(grep -aoE 'audit_enabled=[0-9]+ old=[0-9]+|op=(add|remove)_rule key=[^ ]*' \
    "$work/capture.bin" | sort | uniq -c || true)

elapsed=$(echo "($end_ns - $start_ns) / 1000000000 + 3" | bc -l)
cpu=$(echo "100 * ($t1 - $t0) / $hz / $elapsed" | bc -l)
seen=$([ "$capture" = 0 ] || grep -aoF "$marker-" "$work/capture.bin" | wc -l)
# ln cases: their marker is in the link name; EXECVE a3 and PATH records both carry it, so count
# alerts instead (one per case) and true-execs as frames minus 2 per ln case.
alerts=$(grep -c "$marker-ln-" "$work/alerts.ndjson" || true)
status=$(grep 'status:' "$work/agent.err" | tail -1)
field() { sed -n 's/.* '"$1"'=\([0-9]*\).*/\1/p' <<<"$status"; }
if [ "$capture" = 0 ]; then
    true_seen=$(($(grep 'stopped:' "$work/agent.err" | sed -n 's/.* exec=\([0-9]*\).*/\1/p') - lns_done))
else
    true_seen=$(grep -aoE "$marker-[0-9]+-[0-9]+" "$work/capture.bin" | sort -u | wc -l)
fi

gen_secs=$(echo "($end_ns - $start_ns) / 1000000000" | bc -l)
if [ "$op" != exec ]; then
    made=$(grep 'stopped:' "$work/agent.err" | sed -n 's/.* file_net=\([0-9]*\).*/\1/p')
    expected=$(((trues + lns_done) * 2))
    [ "$baseline" = 1 ] && expected=0
    alerts=$(grep -c "storm-$op" "$work/alerts.ndjson" || true)
    printf '\n%s storm (%s%s): %s/s asked for %ss (+%s cases), %s workers; achieved %.0f op/s = %.0f %s events/s\n' \
        "$op" "$source" "$([ "$baseline" = 1 ] && echo ", baseline: no $op rule, no $op audit rules")" \
        "$rate" "$secs" "$lns_done" "$(sum_field workers)" "$achieved" "$(echo "2 * $achieved" | bc -l)" "$op"
    printf '| op/s asked | op/s achieved | ops | %s documents made / expected | cases / alerts | kernel lost | agent CPU %% | agent CPU %% per 1,000 events/s | generator CPU s (user+sys) | generator CPU µs per op | peak RSS (MiB) |\n' "$op"
    printf '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
    printf '| %s | %.0f | %s | %s / %s | %s / %s | %s | %.1f | %.2f | %.2f | %.1f | %.1f |\n' "$rate" "$achieved" \
        "$((trues + lns_done))" "${made:-?}" "$expected" "$lns_done" "$alerts" "$((lost_after - lost_before))" "$cpu" \
        "$(echo "$cpu * 1000 * $gen_secs / (2 * ($trues + $lns_done))" | bc -l)" "$gen_cpu" \
        "$(echo "1000000 * $gen_cpu / ($trues + $lns_done)" | bc -l)" "$(echo "$hwm / 1024" | bc -l)"
    echo "generator: $summary"
    echo "last agent status: $status"
    exit 0
fi
printf '\nexec storm (%s): %s/s of /bin/true asked (0 = as fast as possible) for %ss (+%s ln cases), %s workers, backlog_limit 8192; achieved %.0f exec/s\n' \
    "$([ "$source" = plugin ] && echo "auditd plugin, log_format $log_format" || echo "multicast$([ "$capture" = 1 ] && echo ", capture" || echo ", no capture")")" \
    "$rate" "$secs" "$lns_done" "$(sum_field workers)" "$achieved"
printf '| rate asked (exec/s) | rate achieved (exec/s) | execs started | exec events seen | missed | ln cases | alerts | kernel lost | ENOBUFS | channel drops | agent CPU %% | CPU %% per 1000 exec/s achieved | agent CPU s | context switches | peak RSS (MiB) |\n'
printf '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
printf '| %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %.1f | %.2f | %.2f | %s | %.1f |\n' "$rate" "$achieved" "$trues" "$true_seen" \
    "$((trues - true_seen))" "$lns_done" "$alerts" "$((lost_after - lost_before))" "$(field enobufs)" \
    "$(field channel_drops)" "$cpu" "$(echo "$cpu * 1000 * $gen_secs / ($trues + $lns_done)" | bc -l)" \
    "$(echo "($t1 - $t0) / $hz" | bc -l)" "$switches" "$(echo "$hwm / 1024" | bc -l)"
echo "generator: $summary"
echo "last agent status: $status"
[ "$capture" = 0 ] || echo "(all marker occurrences in the capture: $seen)"
if [ -n "$changes" ]; then
    echo "audit configuration changes seen during the run (audit_enabled=0 from another process makes counts unreliable):"
    echo "$changes"
fi
