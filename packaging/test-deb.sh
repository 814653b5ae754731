#!/usr/bin/env bash
# The package's whole life on this machine, as CI runs it (root, Debian 12, no systemd):
# build, lintian, install, files and conffiles, start by postinst and by the init script, an alert
# in syslog and in the JSON file, upgrade over itself keeping state, remove, purge.
# The kernel is left as found (no rules of ours, same enabled flag), and so is the package database.
#
#   packaging/test-deb.sh [DEB]      (without DEB, packaging/build-deb.sh builds one)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export DEBIAN_FRONTEND=noninteractive
[ "$(id -u)" -eq 0 ] || { echo "test-deb.sh: must run as root" >&2; exit 1; }

step() { printf '\n== %s\n' "$*"; }
fail() { echo "test-deb.sh: FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

deb=${1:-}
if [ -z "$deb" ]; then
  step "build"
  start=$(date +%s)
  deb=$("$root/packaging/build-deb.sh" | tail -n 1)
  echo "built $deb in $(( $(date +%s) - start )) s"
fi
[ -f "$deb" ] || fail "no package at $deb"
version=$(dpkg-deb -f "$deb" Version)
echo "package: $deb ($(du -k "$deb" | cut -f1) KiB, version $version)"

work=$(mktemp -d /tmp/auditsentry-test.XXXXXX)
tag=auditsentry-test-$$-$(date +%s)
policy=/usr/sbin/policy-rc.d
made_utmp=""
touched=""
enabled0=""
rules0=""

# The binary from the package, usable before install and after removal: it reads the kernel's
# audit status and rules for the checks below.
dpkg-deb -x "$deb" "$work/x"
probe=$work/x/usr/sbin/auditsentry
kernel_enabled() { "$probe" status | sed -n 's/^audit: enabled=\([0-9]*\) .*/\1/p'; }
kernel_rules() { "$probe" status | sed -n 's/^execve rules: .*(\([0-9]*\) rule(s) loaded)$/\1/p'; }
our_rules() {
  if command -v auditctl >/dev/null; then auditctl -l | grep -c 'key=auditsentry$' || true; else echo 0; fi
}

cleanup() {
  rc=$?
  set +e
  if dpkg-query -W -f='${Status}' auditsentry 2>/dev/null | grep -qv 'not-installed'; then
    [ -x /etc/init.d/auditsentry ] && /etc/init.d/auditsentry stop >/dev/null 2>&1
    dpkg -P auditsentry >/dev/null 2>&1
  fi
  [ -e "$policy.auditsentry-test" ] && mv -f "$policy.auditsentry-test" "$policy"
  [ -n "$made_utmp" ] && rm -f /run/utmp
  # The kernel as found: no rules with our key, the enabled flag as it was (once this test may
  # have changed it; a failed precondition changes nothing).
  if [ -n "$touched" ] && command -v auditctl >/dev/null; then
    [ "$(our_rules)" -eq 0 ] || auditctl -D -k auditsentry >/dev/null 2>&1
    [ -n "$enabled0" ] && [ "$(kernel_enabled)" != "$enabled0" ] && auditctl -e "$enabled0" >/dev/null
  fi
  if [ -n "$touched" ] && { [ "$(kernel_enabled)" != "$enabled0" ] || [ "$(kernel_rules)" != "$rules0" ]; }; then
    echo "test-deb.sh: WARNING: kernel audit state not restored (enabled $(kernel_enabled), was $enabled0;" \
      "rules $(kernel_rules), were $rules0)" >&2
    [ "$rc" -ne 0 ] || rc=1
  fi
  rm -rf "$work" /tmp/"$tag"*
  exit "$rc"
}
trap cleanup EXIT

step "kernel before"
enabled0=$(kernel_enabled)
rules0=$(kernel_rules)
[ -n "$enabled0" ] && [ -n "$rules0" ] || fail "cannot read the kernel audit status: $("$probe" status 2>&1)"
[ "$enabled0" != 2 ] || fail "audit rules are locked (enabled=2); this test needs to add rules"
[ "$(our_rules)" -eq 0 ] || fail "rules with key auditsentry are already loaded"
echo "audit enabled=$enabled0, $rules0 rule(s) loaded"

# postinst keeps an existing state directory as it is (an administrator's mode survives).
state_before=$(stat -c '%a %U:%G, changed %z' /var/lib/auditsentry 2>/dev/null || echo "none")
echo "state directory before install: $state_before"

step "lintian"
command -v lintian >/dev/null || apt-get install -y -qq lintian >/dev/null
lintian --fail-on error,warning --display-info "$deb" || fail "lintian"
ok "lintian: no errors, no warnings"

step "glibc"
"$root/packaging/check-glibc.sh" "$probe"

step "syslog"
# rsyslog receives the alerts (facility authpriv -> /var/log/auth.log). Started when it is not
# running: there is no init system to do it here.
command -v rsyslogd >/dev/null || apt-get install -y -qq rsyslog >/dev/null
pidof rsyslogd >/dev/null || rsyslogd
for _ in $(seq 50); do [ -S /dev/log ] && break; sleep 0.1; done
[ -S /dev/log ] || fail "rsyslogd did not create /dev/log"
ok "rsyslogd running (pid $(pidof rsyslogd))"

# Containers often forbid service starts (policy-rc.d exit 101) and have no init, hence no runlevel,
# so invoke-rc.d declines to start anything. The point here is to see postinst start the service as
# on a sysvinit host: the policy is set aside and runlevel 2 recorded in utmp until the end.
[ -e "$policy" ] && mv "$policy" "$policy.auditsentry-test"
if [ "$(runlevel 2>/dev/null || true)" = unknown ] && [ ! -e /run/utmp ]; then
  made_utmp=1
  python3 -c 'import struct, sys, time
sys.stdout.buffer.write(struct.pack("<hxxi32s4s32s256shhiii4i20s", 1, ord("2"), b"~", b"~~",
    b"runlevel", b"", 0, 0, 0, int(time.time()), 0, 0, 0, 0, 0, b""))' >/run/utmp
  echo "runlevel: $(runlevel) (recorded for this test)"
fi

step "install"
touched=1
dpkg -i "$deb"
for f in /usr/sbin/auditsentry /etc/auditsentry/auditsentry.toml \
  /etc/auditsentry/rules/defense_evasion_symlink_binary_to_writable_dir.toml \
  /etc/init.d/auditsentry /lib/systemd/system/auditsentry.service \
  /etc/audit/plugins.d/auditsentry.conf /usr/share/doc/auditsentry/examples/auditsentry.rules \
  /etc/logrotate.d/auditsentry /usr/share/man/man8/auditsentry.8.gz \
  /usr/share/doc/auditsentry/copyright; do
  [ -e "$f" ] || fail "missing $f"
done
# Audit rules that outlive the agent are the operator's choice, never the package's.
[ ! -e /etc/audit/rules.d/auditsentry.rules ] || fail "an active /etc/audit/rules.d file was installed"
[ -d /var/lib/auditsentry ] && [ "$(stat -c %a /var/lib/auditsentry)" = 700 ] ||
  fail "/var/lib/auditsentry not 0700: $(stat -c '%a %U:%G, changed %z' /var/lib/auditsentry 2>&1)" \
    "(postinst keeps a directory that existed before install: $state_before)"
ls /etc/rc2.d/S*auditsentry >/dev/null 2>&1 || fail "init script not enabled (no /etc/rc2.d link)"
ok "files at their places"
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify /lib/systemd/system/auditsentry.service || fail "systemd-analyze verify"
  ok "unit file verified"
fi
conffiles=$(dpkg-query -W -f='${Conffiles}\n' auditsentry)
for f in /etc/auditsentry/auditsentry.toml \
  /etc/auditsentry/rules/defense_evasion_symlink_binary_to_writable_dir.toml \
  /etc/init.d/auditsentry /etc/audit/plugins.d/auditsentry.conf /etc/logrotate.d/auditsentry; do
  grep -q "^ $f " <<<"$conffiles" || fail "$f is not a registered conffile"
done
grep -q "/etc/audit/rules.d/" <<<"$conffiles" && fail "an audit rules file is a conffile: $conffiles"
ok "conffiles registered"
got=$(auditsentry --version)
[ "$got" = "auditsentry $version" ] || fail "--version says '$got', package is $version"
ok "$got"

step "started by postinst"
/etc/init.d/auditsentry status || fail "postinst did not start the service"
[ "$(our_rules)" -gt 0 ] || [ "$(kernel_rules)" -gt "$rules0" ] || fail "the daemon added no execve rule"

step "init script"
conf=/etc/auditsentry/auditsentry.toml
if ! grep -q '^\[output\.json\]' "$conf"; then
  # The operator's step: turn the JSON file on (an edited conffile, kept by the upgrade below).
  printf '\n[output.json]\npath = "/var/log/auditsentry/alerts.json"\n' >>"$conf"
fi
json=$(sed -n '/^\[output\.json\]/,/^\[/s/^path *= *"\(.*\)"/\1/p' "$conf")
[ -n "$json" ] && [ "$json" != - ] || fail "no JSON file path in $conf"
auditsentry config check "$conf" >/dev/null || fail "config check $conf"
/etc/init.d/auditsentry stop
/etc/init.d/auditsentry status && fail "still running after stop"
[ "$(kernel_rules)" = "$rules0" ] && [ "$(kernel_enabled)" = "$enabled0" ] ||
  fail "stop left the kernel changed: $("$probe" status)"
/etc/init.d/auditsentry start
/etc/init.d/auditsentry status
pid=$(cat /run/auditsentry.pid)
/etc/init.d/auditsentry reload
sleep 1
[ "$(cat /run/auditsentry.pid)" = "$pid" ] && kill -0 "$pid" || fail "reload did not keep the daemon"
/etc/init.d/auditsentry restart
/etc/init.d/auditsentry status
ok "start/stop/status/reload/restart"

# Lines that auditsentry itself logged naming $1. Without an audit daemon the kernel prints every
# audit record to its log too, and rsyslog files those: they name the link as well, but not as
# auditsentry.
syslog_lines() {
  cat /var/log/auth.log /var/log/syslog /var/log/messages 2>/dev/null |
    grep -F -- "$1" | grep -E ' auditsentry(\[[0-9]+\])?: ' || true
}

# Makes a symlink from a system binary into /tmp from PARENT ($1) and waits for the alert naming it
# in syslog and in the JSON file (or, with "none", makes sure no alert appears).
links=0
alert_from() {
  links=$((links + 1))
  local parent=$1 want=$2 link=/tmp/$tag-$1-$links
  case "$parent" in
    dash) dash -c "ln -s /usr/bin/id $link; true" ;;
    bash) bash -c "ln -s /usr/bin/id $link; true" ;;
  esac
  rm -f "$link"
  local in_json=0 in_syslog=0
  for _ in $(seq 40); do
    grep -qF "$link" "$json" 2>/dev/null && in_json=1
    syslog_lines "$link" | grep -q . && in_syslog=1
    [ "$in_json$in_syslog" = 11 ] && break
    sleep 0.25
  done
  if [ "$want" = alert ]; then
    [ "$in_json" = 1 ] || fail "no alert for $link (parent $parent) in $json"
    [ "$in_syslog" = 1 ] || fail "no alert for $link (parent $parent) in syslog"
    grep -F "$link" "$json" | tail -n 1 | python3 -c 'import json,sys; d=json.load(sys.stdin);
assert d["process"]["parent"]["name"] == sys.argv[1], d["process"]["parent"]; print("alert:", d["rule"]["name"], d["process"]["command_line"])' "$parent"
    syslog_lines "$link" | tail -n 1
    ok "alert for a symlink made by $parent, in syslog and $json"
  else
    [ "$in_json$in_syslog" = 00 ] || fail "an alert for $link (parent $parent), which new terms had seen"
    ok "no second alert for parent $parent (new terms remembered)"
  fi
}

step "alert"
alert_from dash alert

step "upgrade over itself"
state=$(stat -c %i /var/lib/auditsentry)
dpkg -i "$deb"
/etc/init.d/auditsentry status || fail "not running after the upgrade"
grep -q '^\[output\.json\]' "$conf" || fail "the upgrade replaced the edited $conf"
[ "$(stat -c %i /var/lib/auditsentry)" = "$state" ] || fail "the upgrade replaced /var/lib/auditsentry"
alert_from dash none
alert_from bash alert

step "remove"
pid=$(cat /run/auditsentry.pid)
dpkg -r auditsentry
kill -0 "$pid" 2>/dev/null && fail "auditsentry (pid $pid) still running after dpkg -r"
[ ! -e /usr/sbin/auditsentry ] || fail "binary left after dpkg -r"
[ -e "$conf" ] || fail "dpkg -r removed the configuration (only purge should)"
[ "$(our_rules)" -eq 0 ] || fail "rules with key auditsentry left: $(auditctl -l)"
[ "$(kernel_rules)" = "$rules0" ] && [ "$(kernel_enabled)" = "$enabled0" ] ||
  fail "dpkg -r left the kernel changed: $("$probe" status)"
ok "stopped; the kernel has no rule of ours and enabled=$enabled0"

step "purge"
dpkg -P auditsentry
for f in /etc/auditsentry /var/lib/auditsentry /var/log/auditsentry /usr/sbin/auditsentry \
  /etc/init.d/auditsentry /run/auditsentry.pid /etc/audit/rules.d/auditsentry.rules \
  /etc/audit/plugins.d/auditsentry.conf /etc/logrotate.d/auditsentry /var/lib/auditsentry.corrupt-*; do
  [ ! -e "$f" ] || fail "$f left after purge"
done
ls /etc/rc?.d/*auditsentry >/dev/null 2>&1 && fail "rc.d links left after purge"
dpkg-query -W auditsentry >/dev/null 2>&1 && fail "dpkg still knows auditsentry"
ok "nothing left"

printf '\ntest-deb.sh: all package checks passed\n'
