#!/usr/bin/bash
# Scenario runner for the sample audit logs of auditsentry.
#
#   scenarios.sh [PREFIX]      (default prefix: s)
#
# Every case carries the unique token PREFIX-scNN in one of its arguments. The case
# numbers and their meaning are those of labels.tsv: column "exact" says whether the
# seed Elastic query must alert, column "extended" whether the extended detector
# (relative paths resolved, cp -s, symlink syscalls) must alert.
#
# Run it as root under an audit setup that records execve/execveat and the link
# syscalls, from a neutral working directory (cwd appears in the logs). It removes
# everything it creates. Failures are part of some cases, hence `set +e`.
set +e
P=${1:-s}
BB=/usr/bin/busybox

# ---- setup (not cases) ----------------------------------------------------------
made_TMP=0
[ -e /TMP ] || { mkdir /TMP && made_TMP=1; }
mkdir -p "/home/$P-user/.cache" "/opt/.$P-sc08" "/tmp/$P-sc11dir" "/opt/$P-bb" "/opt/$P-x"
ln -sf "$BB" "/opt/$P-bb/ln"            # busybox reachable under the name "ln"
cp /usr/bin/ln "/opt/$P-lnk"            # a renamed copy of ln
long=$(head -c 8200 /dev/zero | tr '\0' 'L')

# ---- positives (exact query) ----------------------------------------------------
ln -s /usr/bin/id "/tmp/$P-sc01"                                   # into /tmp
ln -sf /bin/bash "/dev/shm/.$P-sc02"                               # hidden name in /dev/shm
ln -s /usr/sbin/nologin "/home/$P-user/.cache/$P-sc03"             # home hidden folder
ln -s /usr/lib/x86_64-linux-gnu/libc.so.6 "/var/tmp/$P-sc04.so"    # library into /var/tmp
busybox ln -s /bin/sh "/tmp/$P-sc05"                               # busybox ln
cp --symbolic-link /usr/bin/id "/tmp/$P-sc06"                      # cp --symbolic-link
ln -s "/usr/local/bin/$P-sc07tool" "/root/$P-sc07"                 # /usr/local/bin into /root
ln -s /usr/bin/python3 "/opt/.$P-sc08/py"                          # hidden folder elsewhere
ln -s /usr/bin/id "/tmp/$P-sc09 has a space"                       # space -> hex
ln -s /usr/bin/id "/tmp/$P-sc10"$'\n'"FAKE ALERT forged line"      # newline -> hex
ln -s /usr/bin/id /usr/bin/env /usr/bin/true "/tmp/$P-sc11dir/"    # several targets
ln -s /usr/bin/id "/tmp/$P-sc12_$long" 2>/dev/null                 # > 7500 bytes (ENAMETOOLONG)
ln /usr/bin/id "/tmp/$P-sc13hard"                                  # hard link
ln -s "/tmp/$P-sc14src" "/usr/bin/$P-sc14"                         # reverse direction
/bin/ln -s "/sbin/$P-sc15" "/tmp/$P-sc15"                          # full path /bin/ln
ln -s /usr/bin/id "/tmp/$P-sc16_ħéłłø_日本"                        # non-ASCII -> hex
ln -s -- /usr/bin/id "/tmp/$P-sc17'q\"uote"                        # quotes -> hex
PATH="/opt/$P-bb:$PATH" ln -s /usr/bin/id "/tmp/$P-sc18"           # busybox as "ln"
ln -s /lib64/ld-linux-x86-64.so.2 "/tmp/$P-sc19.so"                # /lib64 loader
ln -s /usr/bin/id "/opt/$P-x/./$P-sc20"                            # /./ component

# ---- negatives for the exact query ----------------------------------------------
ln -s /usr/bin/coreutils "/tmp/$P-sc30"                            # excluded target
ln -s /usr/lib/modules "/tmp/mkinitcpio.$P-sc31"                   # excluded /tmp/mkinitcpio*
ln -s /usr/bin/id "/var/tmp/dracut.$P-sc32"                        # excluded /var/tmp/dracut*
ln -s /usr/bin/id "/opt/$P-sc33"                                   # /opt is not suspicious
ln -s "/tmp/$P-sc34a" "/tmp/$P-sc34b"                              # no system binary
cp /usr/bin/id "/tmp/$P-sc35"                                      # plain cp
cp -s /usr/bin/id "/tmp/$P-sc36"                                   # cp -s (extended only)
(cd /tmp && ln -s /usr/bin/id "$P-sc37")                           # relative name, cwd /tmp
"/opt/$P-lnk" -s /usr/bin/id "/tmp/$P-sc38"                        # renamed ln copy
busybox ls "/usr/bin/$P-sc39" "/tmp/$P-sc39" >/dev/null 2>&1       # busybox, not ln
/usr/bin/python3 -c "import os; os.symlink('/usr/bin/id', '/tmp/$P-sc41')"   # symlink(2) only
ln -s /usr/bin/id "/var/tmp/mkinitramfs_$P-sc42"                   # excluded /var/tmp/mkinitramfs*
ln -s /usr/bin/id "/TMP/$P-sc44"                                   # /TMP is not /tmp
ln -s "/usr/binary/$P-sc45" "/tmp/$P-sc45"                         # /usr/binary is not /usr/bin
/nonexistent/ln -s /usr/bin/id "/tmp/$P-sc46" 2>/dev/null          # failed execve
(cd /opt && ln -s /usr/bin/id "./.$P-sc47")                        # ./.x with cwd /opt

# ---- new terms: one positive from several parents, twice each ------------------
for n in 1 2; do
  /usr/bin/dash -c "ln -s /usr/bin/id /tmp/$P-nt-dash-$n; true"
  /usr/bin/perl -e "system('ln', '-s', '/usr/bin/id', '/tmp/$P-nt-perl-$n')"
  /usr/bin/python3 -c "import subprocess; subprocess.run(['ln', '-s', '/usr/bin/id', '/tmp/$P-nt-py-$n'])"
  "$BB" sh -c "ln -s /usr/bin/id /tmp/$P-nt-bbsh-$n; true"
  ln -s /usr/bin/id "/tmp/$P-nt-bash-$n"
done

# ---- clean up ---------------------------------------------------------------------
rm -rf -- /tmp/"$P"-sc* /tmp/"$P"-nt-* /tmp/mkinitcpio."$P"-sc31 /dev/shm/."$P"-sc02 \
  "/home/$P-user" "/var/tmp/$P-sc04.so" "/var/tmp/dracut.$P-sc32" "/var/tmp/mkinitramfs_$P-sc42" \
  "/opt/$P-bb" "/opt/$P-x" "/opt/$P-lnk" "/opt/$P-sc33" "/opt/.$P-sc08" "/opt/.$P-sc47" \
  "/root/$P-sc07" "/usr/bin/$P-sc14" 2>/dev/null
rm -f -- "/TMP/$P-sc44"
[ "$made_TMP" = 1 ] && rmdir /TMP
exit 0
