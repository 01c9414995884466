# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_extsecurity_global_optspecs
    string join \n config= h/help V/version
end

function __fish_extsecurity_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_extsecurity_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_extsecurity_using_subcommand
    set -l cmd (__fish_extsecurity_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c extsecurity -n "__fish_extsecurity_needs_command" -l config -d 'Configuration file [default: $EXTSECURITY_CONFIG, else /etc/asterisk/extsecurity.toml, else built-in defaults]' -r -F
complete -c extsecurity -n "__fish_extsecurity_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c extsecurity -n "__fish_extsecurity_needs_command" -s V -l version -d 'Print version'
complete -c extsecurity -n "__fish_extsecurity_needs_command" -f -a "check" -d 'Judge one call, write its line, hold the channel on alert (the System() entry point)'
complete -c extsecurity -n "__fish_extsecurity_needs_command" -f -a "explain" -d 'Print the verdict and the line a request would produce; writes nothing, sleeps not'
complete -c extsecurity -n "__fish_extsecurity_needs_command" -f -a "check-config" -d 'Validate the configuration (and that this user can write the alert log) and print the effective settings'
complete -c extsecurity -n "__fish_extsecurity_needs_command" -f -a "audit" -d 'Read Asterisk\'s configuration as an attacker would: weak secrets (and the svcrack guess that finds each), guest paths to a trunk, exposed AMI/HTTP/ARI, the security log, fail2ban\'s jail. Never prints a secret'
complete -c extsecurity -n "__fish_extsecurity_needs_command" -f -a "edge" -d 'The edge of [edge]: what it does with an address, fetch the country database, replay the alert log against it'
complete -c extsecurity -n "__fish_extsecurity_needs_command" -f -a "crowdsec-check" -d 'Log in to the CrowdSec LAPI of [crowdsec] and say what is wrong, if anything'
complete -c extsecurity -n "__fish_extsecurity_needs_command" -f -a "agi" -d 'Judge one call over AGI on stdin/stdout: AGI(/usr/bin/extsecurity,agi)'
complete -c extsecurity -n "__fish_extsecurity_needs_command" -f -a "report" -d 'Summarise alert logs (rotated and .gz ones too): calls, alerts by reason, top offenders, per-hour counts'
complete -c extsecurity -n "__fish_extsecurity_needs_command" -f -a "bans" -d 'List the addresses the daemon banned in the kernel ([nftables]), with reason and time left; works while the daemon is down'
complete -c extsecurity -n "__fish_extsecurity_needs_command" -f -a "fraud" -d 'The outbound check of authenticated accounts ([fraud]): see accounts, lift a quarantine'
complete -c extsecurity -n "__fish_extsecurity_needs_command" -f -a "unban" -d 'Lift a ban everywhere it lives: the kernel\'s sets, fail2ban\'s jail (over its socket), the running daemon\'s memory; a range lifts every address in it'
complete -c extsecurity -n "__fish_extsecurity_needs_command" -f -a "ban" -d 'Ban by hand: the kernel\'s sets ([nftables]) and an alert line, so that fail2ban\'s jail and CrowdSec follow (a range: the kernel only, and the CrowdSec command)'
complete -c extsecurity -n "__fish_extsecurity_needs_command" -f -a "status" -d 'The running daemon on one screen: what runs (FastAGI, AMI, CrowdSec, nftables, the outbound check), calls and alerts in the last minute and hour, top rules, quarantined accounts, the last alerts'
complete -c extsecurity -n "__fish_extsecurity_needs_command" -f -a "serve" -d 'Run the daemon: FastAGI, AGI(agi://127.0.0.1/check), and with [ami] the AMI security-event watcher'
complete -c extsecurity -n "__fish_extsecurity_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand check" -l ip -d 'Peer address: ${CHANNEL(peerip)} or ${CHANNEL(pjsip,remote_addr)}' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand check" -l callerid-num-b64 -d '${BASE64_ENCODE(${CALLERID(num)})}' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand check" -l callerid-name-b64 -d '${BASE64_ENCODE(${CALLERID(name)})}' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand check" -l exten-b64 -d '${BASE64_ENCODE(${EXTEN})}' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand check" -l user-agent-b64 -d '${BASE64_ENCODE(${CHANNEL(useragent)})} or of ${PJSIP_HEADER(read,User-Agent)}' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand check" -l peer-name-b64 -d '${BASE64_ENCODE(${CHANNEL(peername)})} or of ${CHANNEL(endpoint)}' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand check" -l on-error -d 'When the check cannot run (bad config, unwritable log, bad request): continue exits 0 so the call goes on, hangup exits non-zero. Empty means continue; the dialplan passes ${EXTSEC_ON_ERROR}. Without it, every status as listed (doc/commands.md, "Exit status")' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand check" -l config -d 'Configuration file [default: $EXTSECURITY_CONFIG, else /etc/asterisk/extsecurity.toml, else built-in defaults]' -r -F
complete -c extsecurity -n "__fish_extsecurity_using_subcommand check" -l fail-on-alert -d 'Exit with status 10 when the call is alerted on (SYSTEMSTATUS=APPERROR)'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand check" -s h -l help -d 'Print help'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand explain" -l ip -d 'Peer address: ${CHANNEL(peerip)} or ${CHANNEL(pjsip,remote_addr)}' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand explain" -l callerid-num-b64 -d '${BASE64_ENCODE(${CALLERID(num)})}' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand explain" -l callerid-name-b64 -d '${BASE64_ENCODE(${CALLERID(name)})}' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand explain" -l exten-b64 -d '${BASE64_ENCODE(${EXTEN})}' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand explain" -l user-agent-b64 -d '${BASE64_ENCODE(${CHANNEL(useragent)})} or of ${PJSIP_HEADER(read,User-Agent)}' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand explain" -l peer-name-b64 -d '${BASE64_ENCODE(${CHANNEL(peername)})} or of ${CHANNEL(endpoint)}' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand explain" -l callerid-num-text -d 'Caller id number, as text' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand explain" -l callerid-name-text -d 'Caller id name, as text' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand explain" -l exten-text -d 'Dialed extension, as text' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand explain" -l user-agent-text -d 'User agent, as text' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand explain" -l peer-name-text -d 'Peer name, as text' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand explain" -l config -d 'Configuration file [default: $EXTSECURITY_CONFIG, else /etc/asterisk/extsecurity.toml, else built-in defaults]' -r -F
complete -c extsecurity -n "__fish_extsecurity_using_subcommand explain" -s h -l help -d 'Print help'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand check-config" -l dialplan -d 'Asterisk dialplan files to read for lines that hand caller values to a shell and, with daemon.secret, FastAGI URLs without the key (their #includes too) [default: /etc/asterisk/extensions*.conf]' -r -F
complete -c extsecurity -n "__fish_extsecurity_using_subcommand check-config" -l asterisk-dir -d 'Asterisk\'s configuration folder, whose audit\'s one-line summary is printed' -r -F
complete -c extsecurity -n "__fish_extsecurity_using_subcommand check-config" -l config -d 'Configuration file [default: $EXTSECURITY_CONFIG, else /etc/asterisk/extsecurity.toml, else built-in defaults]' -r -F
complete -c extsecurity -n "__fish_extsecurity_using_subcommand check-config" -s q -l quiet -d 'Print nothing unless something is wrong (the unit\'s ExecStartPre)'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand check-config" -s h -l help -d 'Print help'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand audit" -l asterisk-dir -d 'Asterisk\'s configuration folder' -r -F
complete -c extsecurity -n "__fish_extsecurity_using_subcommand audit" -l fail2ban-dir -d 'fail2ban\'s folder, for the asterisk jail\'s logpath' -r -F
complete -c extsecurity -n "__fish_extsecurity_using_subcommand audit" -l config -d 'Configuration file [default: $EXTSECURITY_CONFIG, else /etc/asterisk/extsecurity.toml, else built-in defaults]' -r -F
complete -c extsecurity -n "__fish_extsecurity_using_subcommand audit" -l json -d 'Print JSON (for cron and monitoring)'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand audit" -s h -l help -d 'Print help'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand edge; and not __fish_seen_subcommand_from lookup update what-if help" -l config -d 'Configuration file [default: $EXTSECURITY_CONFIG, else /etc/asterisk/extsecurity.toml, else built-in defaults]' -r -F
complete -c extsecurity -n "__fish_extsecurity_using_subcommand edge; and not __fish_seen_subcommand_from lookup update what-if help" -s h -l help -d 'Print help'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand edge; and not __fish_seen_subcommand_from lookup update what-if help" -f -a "lookup" -d 'The country the database places ADDR in, the feeds that list it, and what the edge does with it'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand edge; and not __fish_seen_subcommand_from lookup update what-if help" -f -a "update" -d 'Fetch the country database (edge.country_url, this month\'s, else last month\'s), check it, and put it in edge.country_file; the daemon reads it within a second'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand edge; and not __fish_seen_subcommand_from lookup update what-if help" -f -a "what-if" -d 'Replay the alert log: the calls and alerts the edge\'s lists would have stopped, and the accounts whose own addresses they would drop'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand edge; and not __fish_seen_subcommand_from lookup update what-if help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand edge; and __fish_seen_subcommand_from lookup" -l config -d 'Configuration file [default: $EXTSECURITY_CONFIG, else /etc/asterisk/extsecurity.toml, else built-in defaults]' -r -F
complete -c extsecurity -n "__fish_extsecurity_using_subcommand edge; and __fish_seen_subcommand_from lookup" -s h -l help -d 'Print help'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand edge; and __fish_seen_subcommand_from update" -l url -d 'Fetch this instead of edge.country_url' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand edge; and __fish_seen_subcommand_from update" -l config -d 'Configuration file [default: $EXTSECURITY_CONFIG, else /etc/asterisk/extsecurity.toml, else built-in defaults]' -r -F
complete -c extsecurity -n "__fish_extsecurity_using_subcommand edge; and __fish_seen_subcommand_from update" -s h -l help -d 'Print help'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand edge; and __fish_seen_subcommand_from what-if" -l since -d 'How far back, as 7d, 12h or 30m' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand edge; and __fish_seen_subcommand_from what-if" -l config -d 'Configuration file [default: $EXTSECURITY_CONFIG, else /etc/asterisk/extsecurity.toml, else built-in defaults]' -r -F
complete -c extsecurity -n "__fish_extsecurity_using_subcommand edge; and __fish_seen_subcommand_from what-if" -s h -l help -d 'Print help'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand edge; and __fish_seen_subcommand_from help" -f -a "lookup" -d 'The country the database places ADDR in, the feeds that list it, and what the edge does with it'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand edge; and __fish_seen_subcommand_from help" -f -a "update" -d 'Fetch the country database (edge.country_url, this month\'s, else last month\'s), check it, and put it in edge.country_file; the daemon reads it within a second'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand edge; and __fish_seen_subcommand_from help" -f -a "what-if" -d 'Replay the alert log: the calls and alerts the edge\'s lists would have stopped, and the accounts whose own addresses they would drop'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand edge; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand crowdsec-check" -l config -d 'Configuration file [default: $EXTSECURITY_CONFIG, else /etc/asterisk/extsecurity.toml, else built-in defaults]' -r -F
complete -c extsecurity -n "__fish_extsecurity_using_subcommand crowdsec-check" -s h -l help -d 'Print help'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand agi" -l config -d 'Configuration file [default: $EXTSECURITY_CONFIG, else /etc/asterisk/extsecurity.toml, else built-in defaults]' -r -F
complete -c extsecurity -n "__fish_extsecurity_using_subcommand agi" -s h -l help -d 'Print help'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand report" -l top -d 'How many offending addresses to list' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand report" -l address -d 'Print every line that names this address instead, from the configured log and its rotations (.gz too) when no LOG is given' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand report" -l html -d 'Write the report as one self-contained HTML page (charts per day and hour by rule, top offenders, numbers dialled by attackers, outbound refusals) to FILE' -r -F
complete -c extsecurity -n "__fish_extsecurity_using_subcommand report" -l since -d 'Only lines at or after this local time: 2026-12-01, "2026-12-01 08:00"' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand report" -l until -d 'Only lines before this local time' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand report" -l config -d 'Configuration file [default: $EXTSECURITY_CONFIG, else /etc/asterisk/extsecurity.toml, else built-in defaults]' -r -F
complete -c extsecurity -n "__fish_extsecurity_using_subcommand report" -l json -d 'Print JSON instead of tables'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand report" -s h -l help -d 'Print help'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand bans" -l explain -d 'Say why ADDR is dropped or not: its ban, if any, then the edge\'s lists (country, feeds) and what they do with it' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand bans" -l config -d 'Configuration file [default: $EXTSECURITY_CONFIG, else /etc/asterisk/extsecurity.toml, else built-in defaults]' -r -F
complete -c extsecurity -n "__fish_extsecurity_using_subcommand bans" -l json -d 'Print JSON: [{"address", "reason", "seconds_left"}]'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand bans" -l remove-table -d 'Delete the table instead, its drop rule and every ban in it (the package\'s prerm does this on removal)'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand bans" -s h -l help -d 'Print help'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand fraud; and not __fish_seen_subcommand_from status release dialplan help" -l config -d 'Configuration file [default: $EXTSECURITY_CONFIG, else /etc/asterisk/extsecurity.toml, else built-in defaults]' -r -F
complete -c extsecurity -n "__fish_extsecurity_using_subcommand fraud; and not __fish_seen_subcommand_from status release dialplan help" -s h -l help -d 'Print help'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand fraud; and not __fish_seen_subcommand_from status release dialplan help" -f -a "status" -d 'Per account: calls by class, quarantine and why, the last numbers dialled, the addresses used; from the running daemon, or from its state file when it is down'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand fraud; and not __fish_seen_subcommand_from status release dialplan help" -f -a "release" -d 'Lift an account\'s quarantine and reset its counters; say whether the address it was quarantined from is still banned'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand fraud; and not __fish_seen_subcommand_from status release dialplan help" -f -a "dialplan" -d 'Print the dialplan contexts [extsec-outbound] needs without the daemon (emergency numbers, international and premium prefixes) for the configured country, for /etc/asterisk/extensions-extsecurity-numbers.conf'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand fraud; and not __fish_seen_subcommand_from status release dialplan help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand fraud; and __fish_seen_subcommand_from status" -l config -d 'Configuration file [default: $EXTSECURITY_CONFIG, else /etc/asterisk/extsecurity.toml, else built-in defaults]' -r -F
complete -c extsecurity -n "__fish_extsecurity_using_subcommand fraud; and __fish_seen_subcommand_from status" -l json -d 'Print JSON'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand fraud; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand fraud; and __fish_seen_subcommand_from release" -l config -d 'Configuration file [default: $EXTSECURITY_CONFIG, else /etc/asterisk/extsecurity.toml, else built-in defaults]' -r -F
complete -c extsecurity -n "__fish_extsecurity_using_subcommand fraud; and __fish_seen_subcommand_from release" -l unban -d 'Lift that address\'s bans too (the kernel\'s, fail2ban\'s), as `unban` does'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand fraud; and __fish_seen_subcommand_from release" -s h -l help -d 'Print help'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand fraud; and __fish_seen_subcommand_from dialplan" -l config -d 'Configuration file [default: $EXTSECURITY_CONFIG, else /etc/asterisk/extsecurity.toml, else built-in defaults]' -r -F
complete -c extsecurity -n "__fish_extsecurity_using_subcommand fraud; and __fish_seen_subcommand_from dialplan" -s h -l help -d 'Print help'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand fraud; and __fish_seen_subcommand_from help" -f -a "status" -d 'Per account: calls by class, quarantine and why, the last numbers dialled, the addresses used; from the running daemon, or from its state file when it is down'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand fraud; and __fish_seen_subcommand_from help" -f -a "release" -d 'Lift an account\'s quarantine and reset its counters; say whether the address it was quarantined from is still banned'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand fraud; and __fish_seen_subcommand_from help" -f -a "dialplan" -d 'Print the dialplan contexts [extsec-outbound] needs without the daemon (emergency numbers, international and premium prefixes) for the configured country, for /etc/asterisk/extensions-extsecurity-numbers.conf'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand fraud; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand unban" -l fail2ban-socket -d 'fail2ban\'s socket' -r -F
complete -c extsecurity -n "__fish_extsecurity_using_subcommand unban" -l jail -d 'fail2ban\'s jail' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand unban" -l config -d 'Configuration file [default: $EXTSECURITY_CONFIG, else /etc/asterisk/extsecurity.toml, else built-in defaults]' -r -F
complete -c extsecurity -n "__fish_extsecurity_using_subcommand unban" -s h -l help -d 'Print help'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand ban" -l for -d 'How long: 90s, 15m, 4h, 2d [default: nftables.ban_seconds]' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand ban" -l reason -d 'Why, for the log and the ban\'s comment' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand ban" -l config -d 'Configuration file [default: $EXTSECURITY_CONFIG, else /etc/asterisk/extsecurity.toml, else built-in defaults]' -r -F
complete -c extsecurity -n "__fish_extsecurity_using_subcommand ban" -s h -l help -d 'Print help'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand status" -l config -d 'Configuration file [default: $EXTSECURITY_CONFIG, else /etc/asterisk/extsecurity.toml, else built-in defaults]' -r -F
complete -c extsecurity -n "__fish_extsecurity_using_subcommand status" -l json -d 'Print JSON'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand status" -s h -l help -d 'Print help'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand serve" -l listen -d 'Address to listen on [default: daemon.listen, 127.0.0.1:4573]; [::1]:4573 for IPv6' -r
complete -c extsecurity -n "__fish_extsecurity_using_subcommand serve" -l config -d 'Configuration file [default: $EXTSECURITY_CONFIG, else /etc/asterisk/extsecurity.toml, else built-in defaults]' -r -F
complete -c extsecurity -n "__fish_extsecurity_using_subcommand serve" -s h -l help -d 'Print help'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand help; and not __fish_seen_subcommand_from check explain check-config audit edge crowdsec-check agi report bans fraud unban ban status serve help" -f -a "check" -d 'Judge one call, write its line, hold the channel on alert (the System() entry point)'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand help; and not __fish_seen_subcommand_from check explain check-config audit edge crowdsec-check agi report bans fraud unban ban status serve help" -f -a "explain" -d 'Print the verdict and the line a request would produce; writes nothing, sleeps not'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand help; and not __fish_seen_subcommand_from check explain check-config audit edge crowdsec-check agi report bans fraud unban ban status serve help" -f -a "check-config" -d 'Validate the configuration (and that this user can write the alert log) and print the effective settings'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand help; and not __fish_seen_subcommand_from check explain check-config audit edge crowdsec-check agi report bans fraud unban ban status serve help" -f -a "audit" -d 'Read Asterisk\'s configuration as an attacker would: weak secrets (and the svcrack guess that finds each), guest paths to a trunk, exposed AMI/HTTP/ARI, the security log, fail2ban\'s jail. Never prints a secret'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand help; and not __fish_seen_subcommand_from check explain check-config audit edge crowdsec-check agi report bans fraud unban ban status serve help" -f -a "edge" -d 'The edge of [edge]: what it does with an address, fetch the country database, replay the alert log against it'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand help; and not __fish_seen_subcommand_from check explain check-config audit edge crowdsec-check agi report bans fraud unban ban status serve help" -f -a "crowdsec-check" -d 'Log in to the CrowdSec LAPI of [crowdsec] and say what is wrong, if anything'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand help; and not __fish_seen_subcommand_from check explain check-config audit edge crowdsec-check agi report bans fraud unban ban status serve help" -f -a "agi" -d 'Judge one call over AGI on stdin/stdout: AGI(/usr/bin/extsecurity,agi)'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand help; and not __fish_seen_subcommand_from check explain check-config audit edge crowdsec-check agi report bans fraud unban ban status serve help" -f -a "report" -d 'Summarise alert logs (rotated and .gz ones too): calls, alerts by reason, top offenders, per-hour counts'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand help; and not __fish_seen_subcommand_from check explain check-config audit edge crowdsec-check agi report bans fraud unban ban status serve help" -f -a "bans" -d 'List the addresses the daemon banned in the kernel ([nftables]), with reason and time left; works while the daemon is down'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand help; and not __fish_seen_subcommand_from check explain check-config audit edge crowdsec-check agi report bans fraud unban ban status serve help" -f -a "fraud" -d 'The outbound check of authenticated accounts ([fraud]): see accounts, lift a quarantine'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand help; and not __fish_seen_subcommand_from check explain check-config audit edge crowdsec-check agi report bans fraud unban ban status serve help" -f -a "unban" -d 'Lift a ban everywhere it lives: the kernel\'s sets, fail2ban\'s jail (over its socket), the running daemon\'s memory; a range lifts every address in it'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand help; and not __fish_seen_subcommand_from check explain check-config audit edge crowdsec-check agi report bans fraud unban ban status serve help" -f -a "ban" -d 'Ban by hand: the kernel\'s sets ([nftables]) and an alert line, so that fail2ban\'s jail and CrowdSec follow (a range: the kernel only, and the CrowdSec command)'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand help; and not __fish_seen_subcommand_from check explain check-config audit edge crowdsec-check agi report bans fraud unban ban status serve help" -f -a "status" -d 'The running daemon on one screen: what runs (FastAGI, AMI, CrowdSec, nftables, the outbound check), calls and alerts in the last minute and hour, top rules, quarantined accounts, the last alerts'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand help; and not __fish_seen_subcommand_from check explain check-config audit edge crowdsec-check agi report bans fraud unban ban status serve help" -f -a "serve" -d 'Run the daemon: FastAGI, AGI(agi://127.0.0.1/check), and with [ami] the AMI security-event watcher'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand help; and not __fish_seen_subcommand_from check explain check-config audit edge crowdsec-check agi report bans fraud unban ban status serve help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand help; and __fish_seen_subcommand_from edge" -f -a "lookup" -d 'The country the database places ADDR in, the feeds that list it, and what the edge does with it'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand help; and __fish_seen_subcommand_from edge" -f -a "update" -d 'Fetch the country database (edge.country_url, this month\'s, else last month\'s), check it, and put it in edge.country_file; the daemon reads it within a second'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand help; and __fish_seen_subcommand_from edge" -f -a "what-if" -d 'Replay the alert log: the calls and alerts the edge\'s lists would have stopped, and the accounts whose own addresses they would drop'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand help; and __fish_seen_subcommand_from fraud" -f -a "status" -d 'Per account: calls by class, quarantine and why, the last numbers dialled, the addresses used; from the running daemon, or from its state file when it is down'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand help; and __fish_seen_subcommand_from fraud" -f -a "release" -d 'Lift an account\'s quarantine and reset its counters; say whether the address it was quarantined from is still banned'
complete -c extsecurity -n "__fish_extsecurity_using_subcommand help; and __fish_seen_subcommand_from fraud" -f -a "dialplan" -d 'Print the dialplan contexts [extsec-outbound] needs without the daemon (emergency numbers, international and premium prefixes) for the configured country, for /etc/asterisk/extensions-extsecurity-numbers.conf'
