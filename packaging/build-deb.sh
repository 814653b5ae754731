#!/usr/bin/env bash
# Builds the auditsentry .deb from a clean copy of this tree and prints its path.
#
# Installs what it needs when missing: debhelper, lintian, build-essential, python3-venv and binutils
# (apt, as root or through sudo), the `ziglang` pip package in a private virtualenv, and
# cargo-zigbuild (`cargo install --locked`). The binary is linked against glibc 2.17 with zig, so the
# package runs on old hosts; packaging/check-glibc.sh proves it before the path is printed.
#
#   packaging/build-deb.sh [--out DIR] [--prereqs-only]
#
# DIR defaults to target/deb (or $CARGO_TARGET_DIR/deb). Tools live in $AUDITSENTRY_TOOLS
# (default ~/.cache/auditsentry-build) and are reused by later runs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=""
prereqs_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --prereqs-only) prereqs_only=1; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-deb.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done
out=${out:-${CARGO_TARGET_DIR:-$root/target}/deb}
tools=${AUDITSENTRY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/auditsentry-build}
ziglang_req='ziglang~=0.13.0'
say() { echo "build-deb.sh: $*" >&2; }
# Reads the build's output, writes all of it to the log file $1 and shows its steps on stderr:
# dpkg's and debhelper's steps, cargo's first crate of every ten, the agent's own compile, when
# cargo finished, and what it is still at after 30 s without a shown line.
progress() {
  local log=$1 line step last="" crates=0 start=$SECONDS shown=$SECONDS rc
  while :; do
    rc=0
    IFS= read -r -t 30 line || rc=$?
    if [ "$rc" -gt 128 ]; then
      say "  $((SECONDS - start)) s: still at: ${last:-starting}"
      shown=$SECONDS
      continue
    fi
    [ "$rc" -eq 0 ] || [ -n "$line" ] || break
    printf '%s\n' "$line" >>"$log"
    step=${line#"${line%%[! ]*}"}
    case $step in
      "Compiling "*)
        crates=$((crates + 1))
        last="crate $crates: ${step:0:80}"
        case $step in "Compiling auditsentry "*) ;; *)
          [ $((crates % 10)) -eq 1 ] || [ $((SECONDS - shown)) -ge 30 ] || continue ;;
        esac
        say "  $((SECONDS - start)) s: $last"
        shown=$SECONDS ;;
      "Finished "* | dh_* | "debian/rules "* | "dpkg-"*": info: "*)
        last=${step:0:100}
        say "  $((SECONDS - start)) s: $last"
        shown=$SECONDS ;;
    esac
  done
}

# --- prerequisites -------------------------------------------------------------------------------
say "step 1/4: build tools (debhelper, lintian, zig in $tools, cargo-zigbuild)"
apt_missing=()
for p in debhelper lintian build-essential python3-venv binutils; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || apt_missing+=("$p")
done
if [ ${#apt_missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  say "installing ${apt_missing[*]}"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${apt_missing[@]}" >/dev/null
fi

# Debian's pip refuses system-wide installs (PEP 668): zig lives in a virtualenv of our own.
venv=$tools/venv
if ! "$venv/bin/python3" -m ziglang version >/dev/null 2>&1; then
  say "installing $ziglang_req into $venv"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "$ziglang_req"
fi
export CARGO_ZIGBUILD_PYTHON_PATH=$venv/bin/python3

export PATH=${CARGO_HOME:-$HOME/.cargo}/bin:$PATH
command -v cargo >/dev/null || { say "cargo not found (install Rust with rustup first)"; exit 1; }
if ! cargo-zigbuild --version >/dev/null 2>&1; then
  say "installing cargo-zigbuild (cargo install, a few minutes)"
  cargo install -q --locked cargo-zigbuild
fi
[ "$prereqs_only" -eq 0 ] || { say "prerequisites ready"; exit 0; }

# --- build from a clean copy ---------------------------------------------------------------------
version=$(dpkg-parsechangelog -l "$root/debian/changelog" -S Version)
work=$(mktemp -d "${TMPDIR:-/tmp}/auditsentry-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
src=$work/auditsentry-$version
mkdir -p "$src"
say "step 2/4: copying the tree (tracked and new files, no build output) to $src"
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # Tracked files plus new ones not yet committed (deleted ones left out), never ignored build
  # output; symlinks stay symlinks.
  (cd "$root" && git ls-files -z --cached --others --exclude-standard) |
    while IFS= read -r -d '' f; do
      if [ -e "$root/$f" ] || [ -L "$root/$f" ]; then printf '%s\0' "$f"; fi
    done | (cd "$root" && xargs -0 -r cp -d --parents -t "$src")
else
  tar -C "$root" --exclude=./target -cf - . | tar -C "$src" -xf -
fi

say "step 3/4: dpkg-buildpackage of auditsentry $version (cargo zigbuild against glibc 2.17, then debhelper; minutes on a cold cache)"
if ! (cd "$src" && dpkg-buildpackage -us -uc -b 2>&1) | progress "$work/build.log"; then
  tail -n 60 "$work/build.log" >&2
  say "dpkg-buildpackage failed (log above)"
  exit 1
fi

deb=$(ls "$work"/auditsentry_"$version"_*.deb)
mkdir -p "$out"
cp "$deb" "$out"/
for extra in "$work"/auditsentry-dbgsym_"$version"_*.*deb "$work"/auditsentry_"$version"_*.buildinfo \
  "$work"/auditsentry_"$version"_*.changes; do
  [ -e "$extra" ] && cp "$extra" "$out"/
done
deb=$out/$(basename "$deb")

# The packaged binary must run on glibc 2.17 hosts.
say "step 4/4: checking that the packaged binary needs at most glibc 2.17"
unpacked=$work/unpacked
dpkg-deb -x "$deb" "$unpacked"
"$root/packaging/check-glibc.sh" "$unpacked/usr/sbin/auditsentry" >&2
echo "$deb"
