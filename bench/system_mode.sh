#!/usr/bin/env bash
# Whole-process benchmark of one System()-mode check (issue: the call checker).
#
# Side by side, in one hyperfine run: /bin/true (the floor: starting any process),
# extsecurity with the recommended base64 options, extsecurity with the seed's legacy
# JSON, and the seed's work in Python 3 (bench/seed_equivalent.py). Each writes one
# accepted-call line to its own log in a temporary folder; the tarpit is off.
#
#   bench/system_mode.sh            # prints the table and writes bench/results/system_mode.md
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { echo "hyperfine is needed: apt-get install hyperfine" >&2; exit 1; }
cargo build --release --quiet
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'log_file = "%s/rust.log"\ntarpit_seconds = 0\n' "$tmp" > "$tmp/extsecurity.toml"
export EXTSECURITY_CONFIG="$tmp/extsecurity.toml"
bin="$PWD/target/release/extsecurity"
# The interpreter itself, not a version manager's shim script in front of it.
python=$(python3 -c 'import sys; print(sys.executable)')
json='{"ip": "203.0.113.5", "callerid_num": "5551234", "callerid_num": "Alice", "dest_exten": "4915112345678", "user_agent":"Yealink SIP-T46S", "peer_name": "guest"}'
mkdir -p bench/results
hyperfine -N --warmup 50 --runs "${RUNS:-500}" \
  --export-markdown bench/results/system_mode.md \
  -n '/bin/true' "/bin/true" \
  -n 'extsecurity check (base64 options)' \
     "$bin check --ip=203.0.113.5 --exten-b64=NDkxNTExMjM0NTY3OA== --callerid-num-b64=NTU1MTIzNA== --callerid-name-b64=QWxpY2U= --peer-name-b64=Z3Vlc3Q= --user-agent-b64=WWVhbGluayBTSVAtVDQ2Uw==" \
  -n 'extsecurity legacy JSON' \
     "$bin '$json'" \
  -n 'python3 seed equivalent' \
     "$python bench/seed_equivalent.py $tmp/python.log '$json'"
wc -l "$tmp"/*.log
