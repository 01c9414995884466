#!/usr/bin/env bash
# Builds the Debian package with cargo deb and checks it (issue: ship it):
# its files and conffiles, the jail disabled and the unit not enabled, the binary
# and config run from an unpacked copy, and lintian reports no error.
# Needs cargo-deb, lintian and dpkg (scripts/test.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

passed=0
failed=0
check() { # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@" >/dev/null 2>&1; then passed=$((passed + 1)); else echo "package: FAILED: $what" >&2; failed=$((failed + 1)); fi
}

cargo deb --quiet >/dev/null
deb=$(ls -t target/debian/extsecurity_*.deb | head -n 1)
echo "package: $deb"
contents=$(dpkg-deb -c "$deb")
for f in ./usr/bin/extsecurity ./etc/asterisk/extsecurity.toml \
         ./etc/asterisk/extsecurity-high-risk.conf \
         ./usr/share/doc/extsecurity/asterisk/extensions-outbound.conf \
         ./etc/fail2ban/filter.d/extsecurity.conf ./etc/fail2ban/jail.d/extsecurity.conf \
         ./usr/lib/systemd/system/extsecurity.service ./etc/logrotate.d/extsecurity \
         ./usr/share/doc/extsecurity/README.md ./usr/share/doc/extsecurity/doc/CHANGELOG.md \
         ./usr/share/doc/extsecurity/copyright \
         ./usr/share/doc/extsecurity/doc/README.md ./usr/share/doc/extsecurity/doc/install.md \
         ./usr/share/doc/extsecurity/doc/toll-fraud.md ./usr/share/doc/extsecurity/doc/report.png \
         ./usr/share/doc/extsecurity/asterisk/extensions-system.conf \
         ./usr/share/doc/extsecurity/asterisk/extensions-agi.conf \
         ./usr/share/doc/extsecurity/asterisk/extensions-fastagi.conf \
         ./usr/share/doc/extsecurity/asterisk/manager.conf \
         ./etc/crowdsec/acquis.d/extsecurity.yaml \
         ./etc/crowdsec/parsers/s00-raw/extsecurity-raw.yaml \
         ./etc/crowdsec/parsers/s01-parse/extsecurity-logs.yaml \
         ./etc/crowdsec/scenarios/extsecurity-alert.yaml \
         ./usr/share/man/man1/extsecurity.1.gz ./usr/share/man/man5/extsecurity.toml.5.gz \
         ./usr/share/bash-completion/completions/extsecurity \
         ./usr/share/zsh/vendor-completions/_extsecurity \
         ./usr/share/fish/vendor_completions.d/extsecurity.fish \
         ./usr/share/doc/extsecurity/prometheus/extsecurity-rules.yml \
         ./usr/share/doc/extsecurity/grafana/extsecurity.json; do
  check "contains $f" grep -q " $f\$" <<<"$contents"
done
conffiles=$(dpkg-deb -I "$deb" conffiles)
for f in /etc/asterisk/extsecurity.toml /etc/asterisk/extsecurity-high-risk.conf /etc/fail2ban/jail.d/extsecurity.conf /etc/logrotate.d/extsecurity; do
  check "$f is a conffile" grep -qx "$f" <<<"$conffiles"
done
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
dpkg -x "$deb" "$root"
check "the jail ships disabled" grep -q '^enabled  = false' "$root/etc/fail2ban/jail.d/extsecurity.conf"
postinst=$(dpkg-deb -I "$deb" postinst)
check "postinst creates the extsecurity user" grep -q 'adduser --quiet --system' <<<"$postinst"
# enable = false: the unit is re-enabled on upgrade only if the administrator enabled
# it (the debian-installed guard), never enabled or started on a first install.
check "postinst enables the unit only if it was enabled before" grep -q 'deb-systemd-helper debian-installed extsecurity.service' <<<"$postinst"
check "postinst never starts the unit" bash -c '! grep -Eq "deb-systemd-invoke (start|restart) " <<<"$1"' _ "$postinst"
check "the unpacked binary prints its version" "$root/usr/bin/extsecurity" --version
# The shipped config as shipped, but its log where this machine can write it.
sed "s|^log_file = .*|log_file = \"$root/inbound_extsecurity.log\"|" "$root/etc/asterisk/extsecurity.toml" >"$root/extsecurity.toml"
check "the packaged config validates" "$root/usr/bin/extsecurity" --config "$root/extsecurity.toml" check-config
check "the shipped alert rules pass promtool" promtool check rules "$root/usr/share/doc/extsecurity/prometheus/extsecurity-rules.yml"
lintian_out=$(lintian --allow-root --tag-display-limit 0 "$deb" 2>&1 || true)
echo "$lintian_out" | sed 's/^/lintian: /'
check "lintian reports no error" bash -c '! grep -q "^E: " <<<"$1"' _ "$lintian_out"
check "lintian reports no warning" bash -c '! grep -q "^W: " <<<"$1"' _ "$lintian_out"

# The package's life on a machine of our own (CI's), as root, as the README tells an
# administrator: the log folder, apt install, the jail enabled in its .local, a ban by
# fail2ban and one by the daemon ([nftables]), apt remove, apt purge. Checked: what
# each step leaves. Kernel state lives in a network namespace of its own (fail2ban
# and the daemon run in it, and so do remove and purge), the rest is the machine's.
# Skipped where something of ours is installed already, or a fail2ban already runs.
ns="extsec-pkg-$$" made_log_dir="" made_auth_log="" state=""
lifecycle() {
  state=$(mktemp -d)
  cleanup() {
    fail2ban-client stop >/dev/null 2>&1 || true
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    DEBIAN_FRONTEND=noninteractive dpkg --purge extsecurity >/dev/null 2>&1 || true
    rm -f /etc/fail2ban/jail.d/extsecurity.local /etc/fail2ban/jail.d/extsecurity.local.dpkg-bak
    [ -n "$made_auth_log" ] && rm -f /var/log/auth.log
    [ -n "$made_log_dir" ] && rm -rf /var/log/asterisk
    rm -rf "$root" ${state:+"$state"}
  }
  trap cleanup EXIT
  ip netns add "$ns" && ip -n "$ns" link set lo up
  in_ns() { ip netns exec "$ns" "$@"; }
  # What Asterisk's package makes: its user, and its log folder (README, "The log
  # folder"), before ours is installed.
  getent passwd asterisk >/dev/null || adduser --quiet --system --group --no-create-home --home /var/lib/asterisk asterisk
  if [ ! -d /var/log/asterisk ]; then
    made_log_dir=1
    # README, "The two commands": the first one, run as root before the package,
    # leaves the folder and the log root's (issue 27: the scanner's call was then
    # not logged, and fail2ban banned nothing). postinst must make them fit.
    mkdir -p /var/log/asterisk
    "$root/usr/bin/extsecurity" check --ip=203.0.113.5 --exten-b64=MTAw --callerid-num-b64=NTU1MTIzNA== >/dev/null 2>&1 || true
    check "the README's first command, as root, left a root-owned log" bash -c \
      '[ "$(stat -c %U:%G /var/log/asterisk/inbound_extsecurity.log)" = root:root ]'
  fi
  check "apt installs the package" bash -c \
    'env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "./$1" >"$2" 2>&1' _ "$deb" "$state/install.out"
  check "postinst makes the log folder fit: group asterisk, 2770" bash -c \
    '[ "$(stat -c %G:%a /var/log/asterisk)" = asterisk:2770 ]'
  check "postinst says what kernel bans do and how to turn them off" bash -c \
    'grep -q "enabled = false in /etc/asterisk/extsecurity.toml turns that off" "$1"' _ "$state/install.out"
  check "extsecurity check-config reads the installed config" bash -c \
    'extsecurity check-config | grep -q "^# effective settings, from /etc/asterisk/extsecurity.toml"'
  check "the system user exists" getent passwd extsecurity
  # Where Debian's tools look: man's database, bash-completion's loader (it finds the
  # file by the command's name on the first TAB, and returns 124, "loaded: complete
  # again"), fish's vendor folder.
  check "man extsecurity shows the installed page" bash -c \
    'MANPAGER=cat man extsecurity 2>/dev/null | grep -q "extsecurity fraud release"'
  check "man extsecurity.toml shows the settings" bash -c \
    'MANPAGER=cat man 5 extsecurity.toml 2>/dev/null | grep -q "quarantine_seconds = 86400"'
  check "bash-completion loads our completion for extsecurity" bash -c \
    'source /usr/share/bash-completion/bash_completion; _completion_loader extsecurity; complete -p extsecurity | grep -q _extsecurity'
  check "fish completes from the installed file" bash -c \
    'fish -c "complete -C \"extsecurity fr\"" | grep -q "^fraud"'
  # doc/toll-fraud.md, "Toll fraud: the outbound check": the shipped [fraud] block uncommented in the installed
  # config, its installed high-risk list read as the daemon's user.
  fraud_conf=$(mktemp /tmp/extsecurity-fraud.XXXXXX)
  sed '/^#\[fraud\]$/,/^#max_accounts/ s/^#\([a-z[]\)/\1/' /etc/asterisk/extsecurity.toml >"$fraud_conf"
  chmod 644 "$fraud_conf"
  check "check-config reads the installed high-risk list, as the daemon's user" bash -c \
    "runuser -u extsecurity -- extsecurity --config $fraud_conf check-config | grep -q 'high-risk prefixes; emergency numbers, never refused: 110, 112'"
  rm -f "$fraud_conf"
  check "the system user is in Asterisk's group" bash -c 'id -nG extsecurity | tr " " "\n" | grep -qx asterisk'
  check "the unit names no group (the user's own apply, whatever postinst made)" bash -c \
    '! grep -q "^Group=" /usr/lib/systemd/system/extsecurity.service'
  check "the unit is installed" test -f /usr/lib/systemd/system/extsecurity.service
  check "the unit is not enabled" test ! -e /etc/systemd/system/multi-user.target.wants/extsecurity.service
  check "postinst made the alert log fit, 0660, group asterisk" bash -c \
    '[ "$(stat -c %a:%G /var/log/asterisk/inbound_extsecurity.log)" = 660:asterisk ]'
  if command -v cscli >/dev/null; then
    # --branch: without it cscli asks the network which hub branch to use.
    check "CrowdSec finds our parsers where it looks for local items" bash -c \
      'cscli --branch master parsers list -a -o raw 2>/dev/null | grep -q "^extsecurity-logs.yaml,\"enabled,local\""'
    check "CrowdSec finds our scenario" bash -c \
      'cscli --branch master scenarios list -a -o raw 2>/dev/null | grep -q "^extsecurity-alert.yaml,\"enabled,local\""'
  fi

  # doc/install.md, "fail2ban": enable the jail in its .local, reload fail2ban. (Debian 12's
  # fail2ban starts only once its sshd jail finds a log: rsyslog's, as here.)
  [ -e /var/log/auth.log ] || { made_auth_log=1; touch /var/log/auth.log; }
  printf '[extsecurity]\nenabled = true\n' >/etc/fail2ban/jail.d/extsecurity.local
  check "fail2ban-client -t passes with the jail enabled" fail2ban-client -t
  check "fail2ban starts with the jail" in_ns fail2ban-server -b -x
  check "the jail runs" bash -c 'for i in $(seq 50); do fail2ban-client status extsecurity >/dev/null 2>&1 && exit 0; sleep 0.2; done; exit 1'
  check "a scanner's call, checked as Asterisk's user" runuser -u asterisk -- extsecurity check \
    --ip=203.0.113.9 --exten-b64=MTAw --callerid-num-b64=NTU1
  check "fail2ban bans it in the kernel (nftables, as shipped)" bash -c \
    "for i in \$(seq 100); do ip netns exec $ns nft list ruleset 2>/dev/null | grep -q 203.0.113.9 && exit 0; sleep 0.2; done; exit 1"

  # The daemon's own bans, as the README's [nftables] makes them.
  printf 'tarpit_seconds = 0\n[daemon]\nfastagi = false\n[ami]\nusername = "u"\nsecret = "p"\naddress = "127.0.0.1:9"\n[nftables]\nenabled = true\n' >"$state/serve.toml"
  # Not through in_ns: $! must be the daemon (ip netns exec execs it).
  ip netns exec "$ns" extsecurity --config "$state/serve.toml" serve >"$state/serve.log" 2>&1 &
  local serve_pid=$!
  check "the daemon makes its table" bash -c \
    "for i in \$(seq 50); do ip netns exec $ns nft list table inet extsecurity >/dev/null 2>&1 && exit 0; sleep 0.2; done; exit 1"
  kill "$serve_pid" 2>/dev/null; wait "$serve_pid" 2>/dev/null || true

  check "apt remove removes it" in_ns env DEBIAN_FRONTEND=noninteractive dpkg --remove extsecurity
  check "no extsecurity table is left in the kernel after remove" bash -c \
    "! ip netns exec $ns nft list table inet extsecurity >/dev/null 2>&1"
  check "nothing is left in /usr/bin" test ! -e /usr/bin/extsecurity
  check "apt purge purges it" in_ns env DEBIAN_FRONTEND=noninteractive dpkg --purge extsecurity
  check "the purged conffiles are gone" bash -c \
    'test ! -e /etc/asterisk/extsecurity.toml && test ! -e /etc/fail2ban/filter.d/extsecurity.conf'
  check "the jail's .local is moved aside" bash -c \
    'test ! -e /etc/fail2ban/jail.d/extsecurity.local && test -e /etc/fail2ban/jail.d/extsecurity.local.dpkg-bak'
  check "the running jail was stopped, its ban lifted" bash -c \
    "! fail2ban-client status extsecurity >/dev/null 2>&1 && ! ip netns exec $ns nft list ruleset | grep -q 203.0.113.9"
  check "fail2ban-client -t passes after purge" fail2ban-client -t
  fail2ban-client stop >/dev/null 2>&1 || true
  sleep 1
  check "fail2ban starts again after purge" in_ns fail2ban-server -b -x
  check "and runs its other jails" bash -c 'for i in $(seq 50); do fail2ban-client status sshd >/dev/null 2>&1 && exit 0; sleep 0.2; done; exit 1'
  check "the state folder is gone" test ! -e /var/lib/extsecurity
  check "what Debian keeps stays: the system user, the alert log" bash -c \
    'getent passwd extsecurity >/dev/null && test -e /var/log/asterisk/inbound_extsecurity.log'
}

if [ "$(id -u)" -eq 0 ] && ! dpkg -s extsecurity >/dev/null 2>&1 && [ ! -e /etc/asterisk/extsecurity.toml ] \
   && ! fail2ban-client ping >/dev/null 2>&1; then
  lifecycle
else
  echo "package: the install/purge check needs root, a machine without extsecurity installed and no fail2ban running: skipped"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
