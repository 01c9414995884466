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
         ./etc/fail2ban/filter.d/extsecurity.conf ./etc/fail2ban/jail.d/extsecurity.conf \
         ./usr/lib/systemd/system/extsecurity.service ./etc/logrotate.d/extsecurity \
         ./usr/share/doc/extsecurity/README.md ./usr/share/doc/extsecurity/copyright \
         ./usr/share/doc/extsecurity/asterisk/extensions-pjsip.conf \
         ./usr/share/doc/extsecurity/asterisk/extensions-chan_sip.conf \
         ./usr/share/doc/extsecurity/asterisk/extensions-agi.conf \
         ./usr/share/doc/extsecurity/asterisk/extensions-fastagi.conf \
         ./usr/share/doc/extsecurity/asterisk/manager.conf \
         ./etc/crowdsec/acquis.d/extsecurity.yaml \
         ./etc/crowdsec/parsers/s00-raw/extsecurity-raw.yaml \
         ./etc/crowdsec/parsers/s01-parse/extsecurity-logs.yaml \
         ./etc/crowdsec/scenarios/extsecurity-alert.yaml; do
  check "contains $f" grep -q " $f\$" <<<"$contents"
done
conffiles=$(dpkg-deb -I "$deb" conffiles)
for f in /etc/asterisk/extsecurity.toml /etc/fail2ban/jail.d/extsecurity.conf /etc/logrotate.d/extsecurity; do
  check "$f is a conffile" grep -qx "$f" <<<"$conffiles"
done
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
dpkg -x "$deb" "$root"
check "the jail ships disabled" grep -q '^enabled  = false' "$root/etc/fail2ban/jail.d/extsecurity.conf"
postinst=$(dpkg-deb -I "$deb" postinst)
check "postinst creates the extsecurity user" grep -q 'adduser --system' <<<"$postinst"
# enable = false: the unit is re-enabled on upgrade only if the administrator enabled
# it (the debian-installed guard), never enabled or started on a first install.
check "postinst enables the unit only if it was enabled before" grep -q 'deb-systemd-helper debian-installed extsecurity.service' <<<"$postinst"
check "postinst never starts the unit" bash -c '! grep -Eq "deb-systemd-invoke (start|restart) " <<<"$1"' _ "$postinst"
check "the unpacked binary prints its version" "$root/usr/bin/extsecurity" --version
check "the packaged config validates" "$root/usr/bin/extsecurity" --config "$root/etc/asterisk/extsecurity.toml" check-config
lintian_out=$(lintian --allow-root --tag-display-limit 0 "$deb" 2>&1 || true)
echo "$lintian_out" | sed 's/^/lintian: /'
check "lintian reports no error" bash -c '! grep -q "^E: " <<<"$1"' _ "$lintian_out"

# The README's quick start, for real, then purged: only where nothing of ours is
# installed already (a machine of our own, as CI's is), and as root.
if [ "$(id -u)" -eq 0 ] && ! dpkg -s extsecurity >/dev/null 2>&1 && [ ! -e /etc/asterisk/extsecurity.toml ]; then
  purge() { DEBIAN_FRONTEND=noninteractive dpkg --purge extsecurity >/dev/null 2>&1 || true; rm -rf "$root"; }
  trap purge EXIT
  check "apt installs the package" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "./$deb"
  check "extsecurity check-config reads the installed config" bash -c \
    'extsecurity check-config | grep -q "from /etc/asterisk/extsecurity.toml\|^# effective settings, from /etc/asterisk/extsecurity.toml"'
  check "the system user exists" getent passwd extsecurity
  check "the unit is installed" test -f /usr/lib/systemd/system/extsecurity.service
  check "the unit is not enabled" test ! -e /etc/systemd/system/multi-user.target.wants/extsecurity.service
  if command -v cscli >/dev/null; then
    # --branch: without it cscli asks the network which hub branch to use.
    check "CrowdSec finds our parsers where it looks for local items" bash -c \
      'cscli --branch master parsers list -a -o raw 2>/dev/null | grep -q "^extsecurity-logs.yaml,\"enabled,local\""'
    check "CrowdSec finds our scenario" bash -c \
      'cscli --branch master scenarios list -a -o raw 2>/dev/null | grep -q "^extsecurity-alert.yaml,\"enabled,local\""'
  fi
  check "dpkg --purge removes it" env DEBIAN_FRONTEND=noninteractive dpkg --purge extsecurity
  check "nothing is left in /usr/bin" test ! -e /usr/bin/extsecurity
  check "the purged conffile is gone" test ! -e /etc/asterisk/extsecurity.toml
else
  echo "package: the install/purge check needs root and a machine without extsecurity installed: skipped"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
