#!/usr/bin/env bash
# The whole test suite, set-up included, on a fresh Debian 12 machine (README, "Tests").
# .ci/run calls exactly this. Installs what the tests need when it is missing:
#   fail2ban        the real fail2ban-regex and fail2ban-server run the shipped filter
#                   and jail over our logs
#   logrotate       the shipped logrotate file rotates while writers append
#   nftables, iproute2  a real kernel ban between network namespaces the test makes
#   libcap2-bin     capsh drops CAP_NET_ADMIN to show serve without it
#   systemd         systemd-analyze rates the shipped unit's hardening
#   lintian, cargo-deb  scripts/package.sh builds and checks the Debian package
#   crowdsec        a real LAPI and agent read our log and take the daemon's pushes;
#                   installed offline as design.md §3c says (a comment-only
#                   online_api_credentials.yaml first, or postinst fails registering
#                   with the Central API)
#   postgresql      a fleet's LAPI runs on a private cluster (initdb/pg_ctl in a
#                   scratch folder, never the system one)
#   crowdsec-firewall-bouncer  enforces the fleet's bans on another "host" (a network
#                   namespace) with a private config
#   adduser, util-linux (setpriv, runuser, unshare)  tests make the users a PBX has
#                   (asterisk; extsecurity by running debian/postinst) and run the
#                   checks and the daemon as them; fail2ban runs in a mount namespace
#   openssl         a CA and a certificate for the AMI's TLS, as ast_tls_cert makes them
#   man-db, bash-completion, zsh, fish  the shipped manual pages read by man as lintian
#                   reads them, the completions run in the real shells
#   prometheus      promtool checks and unit-tests the shipped alert rules and the
#                   dashboard's queries
#   python3-aiosmtpd  a real SMTP server (STARTTLS, AUTH) takes the notifications
#   python3-venv (if python3 lacks venv) and phonenumbers 9.0.33 from PyPI in
#                   target/phonenumbers-venv: the oracle of the destination classes
#   chromium, fonts-dejavu-core  a headless browser loads report --html and takes the
#                   screenshot the README shows
#   libmaxmind-db-writer-perl, mmdb-bin  the edge's tests write a country database
#                   (MaxMind's own writer) and check `edge lookup` against mmdblookup
#   rustfmt, clippy the style gates
# then runs cargo fmt --check, cargo clippy --all-targets -D warnings, cargo test, and
# scripts/package.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: missing $*; install them (apt-get install $*) or run as root" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

need=()
command -v fail2ban-regex >/dev/null || need+=(fail2ban)
command -v logrotate >/dev/null || need+=(logrotate)
command -v nft >/dev/null || need+=(nftables)
command -v ip >/dev/null || need+=(iproute2)
command -v capsh >/dev/null || need+=(libcap2-bin)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v lintian >/dev/null || need+=(lintian)
command -v adduser >/dev/null || need+=(adduser)
command -v setpriv >/dev/null || need+=(util-linux)
command -v openssl >/dev/null || need+=(openssl)
command -v man >/dev/null || need+=(man-db)
command -v zsh >/dev/null || need+=(zsh)
command -v fish >/dev/null || need+=(fish)
[ -e /usr/share/bash-completion/bash_completion ] || need+=(bash-completion)
command -v promtool >/dev/null || need+=(prometheus)
[ -e /usr/lib/python3/dist-packages/aiosmtpd ] || need+=(python3-aiosmtpd)
command -v chromium >/dev/null || need+=(chromium)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
perl -MMaxMind::DB::Writer::Tree -e1 2>/dev/null || need+=(libmaxmind-db-writer-perl)
command -v mmdblookup >/dev/null || need+=(mmdb-bin)
if ! command -v crowdsec >/dev/null; then
  if [ "$(id -u)" -eq 0 ] && [ ! -e /etc/crowdsec/online_api_credentials.yaml ]; then
    mkdir -p /etc/crowdsec
    echo '# offline: no Central API (extsecurity tests)' >/etc/crowdsec/online_api_credentials.yaml
  fi
  need+=(crowdsec)
fi
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
command -v crowdsec-firewall-bouncer >/dev/null || need+=(crowdsec-firewall-bouncer)
if ((${#need[@]})); then
  echo "test.sh: installing ${need[*]}"
  apt_install "${need[@]}"
fi
# Python phonenumbers from PyPI, the independent oracle tests/it/number_oracle.rs holds the
# destination classes to (the same libphonenumber metadata as the phonenumber crate's).
oracle=target/phonenumbers-venv
if ! "$oracle/bin/python3" -c 'import phonenumbers' 2>/dev/null; then
  rm -rf "$oracle"
  python3 -m venv "$oracle" 2>/dev/null || { apt_install python3-venv; rm -rf "$oracle"; python3 -m venv "$oracle"; }
  "$oracle/bin/pip" install -q --disable-pip-version-check phonenumbers==9.0.33
fi
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
done

command -v cargo-deb >/dev/null || cargo install cargo-deb --locked --quiet

cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test
bash scripts/package.sh
