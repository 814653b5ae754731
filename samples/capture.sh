#!/usr/bin/bash
# Capture the sample audit logs of auditsentry on this machine (root, real kernel audit).
#
#   capture.sh [raw|enriched]
#
#   raw (default): tokens s-scNN -> sample.audit.log (log_format RAW) + sample.netlink.bin
#   enriched:      tokens t-scNN -> sample-enriched.audit.log (log_format ENRICHED)
#
# What it does, in order:
#   1. installs auditd and busybox with apt-get if they are missing;
#   2. notes the kernel audit state (auditctl -s / -l); refuses to run if it is locked
#      (enabled 2); stops an auditd that is already running (restarted at the end);
#   3. starts a private auditd (`auditd -n -c DIR`) whose auditd.conf is a copy of
#      /etc/audit/auditd.conf with log_format/log_file changed and no plugins — the system
#      auditd.conf is never edited; raises the backlog limit to 8192;
#   4. starts nlrecord.py (NETLINK_AUDIT multicast reader) in parallel;
#   5. adds the three rules of the corpus (execve/execveat b64 and b32 key exec, link
#      syscalls key links), runs scenarios.sh from /root with a neutral environment,
#      then deletes exactly the rules it added;
#   6. stops the recorder and the private auditd, restores enabled/backlog_limit and the
#      previous auditd, and checks that auditctl -s / -l match what they were;
#   7. drops every event (all records of one serial) mentioning /work or the host's
#      session machinery, in both files, and writes the results next to this script.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mode=${1:-raw}
case $mode in
  raw)      P=s; FMT=RAW;      out_log=sample.audit.log;          out_nl=sample.netlink.bin ;;
  enriched) P=t; FMT=ENRICHED; out_log=sample-enriched.audit.log; out_nl= ;;
  *) echo "usage: $0 [raw|enriched]" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "capture.sh: must run as root" >&2; exit 1; }
cd /root   # every process started from here has a neutral cwd

# ---- 1. tools --------------------------------------------------------------------
missing=()
command -v auditd >/dev/null || missing+=(auditd)
[ -x /usr/bin/busybox ] || missing+=(busybox)
for t in /usr/bin/dash /usr/bin/perl /usr/bin/python3; do
  [ -x "$t" ] || { echo "capture.sh: $t is needed by scenarios.sh" >&2; exit 1; }
done
if [ ${#missing[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi

# ---- 2. state before -------------------------------------------------------------
status_field() { auditctl -s | awk -v k="$1" '$1 == k { print $2 }'; }
enabled0=$(status_field enabled)
backlog0=$(status_field backlog_limit)
pid0=$(status_field pid)
rules0=$(auditctl -l)
status0=$(auditctl -s | grep -Ev '^(lost|backlog|backlog_wait_time_actual) ')
echo "== before: enabled=$enabled0 backlog_limit=$backlog0 pid=$pid0 rules: $rules0"
[ "$enabled0" != 2 ] || { echo "capture.sh: audit configuration is locked (enabled 2)" >&2; exit 1; }

work=$(mktemp -d /tmp/auditsentry-capture.XXXXXX)
chmod 700 "$work"
mkdir "$work/plugins"

prev=none          # how the auditd running before us was started: none, systemd, plain
prev_cmd=()
auditd_pid=
rec_pid=
added=()           # indexes into RULES of the rules this script added
done_teardown=0
RULES=(
  "-F arch=b64 -S execve,execveat -k exec"
  "-F arch=b32 -S execve,execveat -k exec"
  "-F arch=b64 -S symlink,symlinkat,link,linkat -k links"
)

wait_gone() { # pid: wait up to 10 s for a process to exit
  local i
  for i in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  echo "capture.sh: process $1 did not exit" >&2; return 1
}

teardown() {
  [ "$done_teardown" = 0 ] || return 0
  done_teardown=1
  set +e
  local i
  for i in "${added[@]}"; do
    # shellcheck disable=SC2086
    auditctl -d always,exit ${RULES[$i]} >/dev/null
  done
  added=()
  if [ -n "$rec_pid" ]; then kill -TERM "$rec_pid"; wait "$rec_pid"; fi
  if [ -n "$auditd_pid" ]; then kill -TERM "$auditd_pid"; wait "$auditd_pid"; fi
  auditctl -e "$enabled0" >/dev/null
  auditctl -b "$backlog0" >/dev/null
  case $prev in
    systemd) systemctl start auditd ;;
    plain)   "${prev_cmd[@]}" ;;
  esac
  set -e
}
cleanup_on_exit() {
  teardown
  rm -rf -- "$work"
}
trap cleanup_on_exit EXIT

if [ "$pid0" != 0 ] && kill -0 "$pid0" 2>/dev/null; then
  if [ -d /run/systemd/system ] && systemctl is-active -q auditd; then
    prev=systemd   # auditd.service refuses a manual stop: signal the daemon instead
  else
    prev=plain
    mapfile -d '' prev_cmd < "/proc/$pid0/cmdline"
  fi
  echo "== stopping the running auditd (pid $pid0, $prev)"
  auditctl --signal TERM
  wait_gone "$pid0"
fi

# ---- 3. private auditd -----------------------------------------------------------
{
  if [ -r /etc/audit/auditd.conf ]; then
    grep -Ev '^[[:space:]]*(log_file|log_format|plugin_dir|max_log_file_action|write_logs)[[:space:]]*=' \
      /etc/audit/auditd.conf
  fi
  echo "log_file = $work/audit.log"
  echo "log_format = $FMT"
  echo "write_logs = yes"
  echo "plugin_dir = $work/plugins"
  echo "max_log_file_action = IGNORE"
} > "$work/auditd.conf"
chmod 640 "$work/auditd.conf"
auditd -n -c "$work" &
auditd_pid=$!
for _ in $(seq 100); do
  [ "$(status_field pid)" = "$auditd_pid" ] && break
  sleep 0.1
done
[ "$(status_field pid)" = "$auditd_pid" ] || { echo "capture.sh: auditd did not register" >&2; exit 1; }
auditctl -b 8192 >/dev/null

# ---- 4. netlink recorder ---------------------------------------------------------
cp "$here/nlrecord.py" "$here/scenarios.sh" "$work/"
/usr/bin/python3 "$work/nlrecord.py" "$work/netlink.bin" "$work/ready" 2>"$work/nlrecord.err" &
rec_pid=$!
for _ in $(seq 100); do [ -s "$work/ready" ] && break; sleep 0.1; done
[ -s "$work/ready" ] || { echo "capture.sh: recorder did not start" >&2; exit 1; }

# ---- 5. rules + scenarios --------------------------------------------------------
for i in "${!RULES[@]}"; do
  # shellcheck disable=SC2086
  if auditctl -a always,exit ${RULES[$i]} >/dev/null; then
    added+=("$i")
  else
    echo "== rule already present, left alone: ${RULES[$i]}"
  fi
done
sleep 0.5
env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
  /usr/bin/bash "$work/scenarios.sh" "$P"
sleep 1.5   # let the last events close

# ---- 6. stop and restore ---------------------------------------------------------
teardown
cat "$work/nlrecord.err" >&2
lost=$(status_field lost)
status1=$(auditctl -s | grep -Ev '^(lost|backlog|backlog_wait_time_actual) ')
rules1=$(auditctl -l)
echo "== after: $(echo "$status1" | tr '\n' ' ') lost=$lost rules: $rules1"
if [ "$status1" != "$status0" ] && [ "$prev" = none ]; then
  echo "capture.sh: WARNING audit status differs from before:" >&2
  diff <(echo "$status0") <(echo "$status1") >&2 || true
fi
[ "$rules1" = "$rules0" ] || echo "capture.sh: WARNING rules differ from before" >&2

# ---- 7. trim and write -----------------------------------------------------------
/usr/bin/python3 - "$work/audit.log" "$here/$out_log" "$work/netlink.bin" "${out_nl:+$here/$out_nl}" <<'PY'
import re, struct, sys

in_log, out_log, in_nl, out_nl = sys.argv[1:5]
NEEDLES = (b"/work", b"line_io_tools", b"process_api")
KEY = re.compile(rb"audit\((\d+\.\d+:\d+)\)")
HEXVAL = re.compile(rb"=([0-9A-F]{2,})(?=[\s\x1d]|$)")

def tainted(text):
    if any(n in text for n in NEEDLES):
        return True
    for m in HEXVAL.finditer(text):
        h = m.group(1)
        if len(h) % 2 == 0 and any(n in bytes.fromhex(h.decode()) for n in NEEDLES):
            return True
    return False

lines = open(in_log, "rb").read().splitlines(keepends=True)
frames, off = [], 0
nl = open(in_nl, "rb").read()
while off + 16 <= len(nl):
    length = struct.unpack_from("<I", nl, off)[0]
    if length < 16:
        break
    frames.append(nl[off:off + length])
    off += length

def key(b):
    m = KEY.search(b[:80])
    return m.group(1) if m else None

bad = set()
for rec in lines + [f[16:] for f in frames]:
    k = key(rec)
    if k is not None and tainted(rec):
        bad.add(k)
kept_lines = [l for l in lines if key(l) not in bad]
kept_frames = [f for f in frames if key(f[16:]) not in bad]
with open(out_log, "wb") as o:
    o.writelines(kept_lines)
if out_nl:
    with open(out_nl, "wb") as o:
        o.writelines(kept_frames)
ev = lambda recs: len({key(r) for r in recs} - {None})
print(f"== trim: dropped {len(bad)} events; log {len(lines)} -> {len(kept_lines)} records "
      f"({ev(kept_lines)} events); netlink {len(frames)} -> {len(kept_frames)} frames "
      f"({ev([f[16:] for f in kept_frames])} events)")
PY
ls -l "$here/$out_log" ${out_nl:+"$here/$out_nl"}
