#!/bin/sh
# Fails when BINARY needs a glibc symbol version newer than GLIBC_2.17 (RHEL/CentOS 7), so a build
# that would not start on old hosts is caught before it ships. Prints the newest version it needs.
#
#   packaging/check-glibc.sh BINARY [MAX]      (MAX defaults to 2.17)
set -eu
bin=${1:?usage: check-glibc.sh BINARY [MAX]}
max=${2:-2.17}
command -v objdump >/dev/null || { echo "check-glibc.sh: objdump not found (install binutils)" >&2; exit 2; }
[ -f "$bin" ] || { echo "check-glibc.sh: $bin: no such file" >&2; exit 2; }

# Every GLIBC_x.y[.z] version the dynamic symbol table references, oldest first.
versions=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/^GLIBC_//' | sort -u -V)
if [ -z "$versions" ]; then
  echo "check-glibc.sh: $bin references no versioned glibc symbol (static or not glibc?)" >&2
  exit 1
fi
newest=$(printf '%s\n' "$versions" | tail -n 1)
too_new=$(printf '%s\n' "$versions" | while read -r v; do
  [ "$(printf '%s\n%s\n' "$max" "$v" | sort -V | tail -n 1)" = "$max" ] || echo "$v"
done)
if [ -n "$too_new" ]; then
  echo "check-glibc.sh: $bin needs glibc newer than $max:" >&2
  for v in $too_new; do
    objdump -T "$bin" | grep -F "GLIBC_$v" | grep -E "GLIBC_$v([) ]|\$)" | awk '{print "  " $NF " (GLIBC_'"$v"')"}' >&2
  done
  exit 1
fi
echo "check-glibc.sh: ok: $bin needs at most GLIBC_$newest (limit $max)"
