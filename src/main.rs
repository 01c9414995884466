//! The `extsecurity` command: parses arguments, calls the library, maps results to the
//! exit statuses in [`extsecurity::exits`]. Errors are printed once, on stderr,
//! prefixed `extsecurity: `.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use extsecurity::Call;
use extsecurity::by_hand::Target;
use extsecurity::check::{self, OnError, Plan};
use extsecurity::clock::timestamp_now;
use extsecurity::config::{self, Config, Source};
use extsecurity::control;
use extsecurity::exits;
use extsecurity::request::{self, BadRequest, EncodedFields};

#[derive(Parser)]
#[command(
    name = "extsecurity",
    version,
    about = "Judges Asterisk guest calls and writes the alert log that fail2ban bans on",
    long_about = "Judges Asterisk guest calls and writes the alert log that fail2ban bans on.\n\n\
                  Asterisk hands extsecurity every inbound guest call: through System() \
                  (check), AGI (agi) or FastAGI to the daemon (serve). Each call is judged on \
                  its caller id, dialled extension, user agent and peer; in the daemon also on \
                  what the same address did before (extension scans, call floods, repeat \
                  offenders). A bad call gets one ERROR line in the alert log, which the \
                  shipped fail2ban jail bans on, and its channel is held for a few seconds. \
                  The daemon can also watch Asterisk's manager interface for password guessing \
                  ([ami]), ban in the kernel within milliseconds ([nftables]), push its alerts \
                  to CrowdSec for a fleet ([crowdsec]) and judge what authenticated accounts \
                  dial before the trunk is dialled ([fraud], toll fraud). Caller-controlled \
                  bytes never reach a shell, never split a log line and never get another \
                  address banned. The settings: extsecurity.toml(5); the whole story: \
                  /usr/share/doc/extsecurity/README.md.",
    after_help = "Legacy form, as the seed's dialplan calls it: extsecurity '<json>'\n\
                  (all arguments are joined by one space and read as the seed's JSON)."
)]
struct Cli {
    /// Configuration file [default: $EXTSECURITY_CONFIG, else /etc/asterisk/extsecurity.toml,
    /// else built-in defaults]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Judge one call, write its line, hold the channel on alert (the System() entry point)
    Check {
        #[command(flatten)]
        fields: EncodedArgs,
        /// Exit with status 10 when the call is alerted on (SYSTEMSTATUS=APPERROR)
        #[arg(long)]
        fail_on_alert: bool,
        /// When the check cannot run (bad config, unwritable log, bad request): continue
        /// exits 0 so the call goes on, hangup exits non-zero. Empty means continue; the
        /// dialplan passes ${EXTSEC_ON_ERROR}. Without it, every status as listed
        /// (README, "Exit status")
        #[arg(long, require_equals = true, value_name = "continue|hangup", value_parser = OnError::parse)]
        on_error: Option<OnError>,
    },
    /// Print the verdict and the line a request would produce; writes nothing, sleeps not
    Explain {
        #[command(flatten)]
        fields: EncodedArgs,
        #[command(flatten)]
        plain: PlainArgs,
        /// A legacy JSON request, as the seed's dialplan passes it
        #[arg(value_name = "JSON", conflicts_with_all = ["ip", "callerid_num", "callerid_name", "exten", "user_agent", "peer_name"])]
        json: Vec<OsString>,
    },
    /// Validate the configuration (and that this user can write the alert log) and print
    /// the effective settings
    CheckConfig {
        /// Print nothing unless something is wrong (the unit's ExecStartPre)
        #[arg(long, short)]
        quiet: bool,
        /// Asterisk dialplan files to read for lines that hand caller values to a shell
        /// and, with daemon.secret, FastAGI URLs without the key (their #includes too)
        /// [default: /etc/asterisk/extensions*.conf]
        #[arg(long, value_name = "FILE")]
        dialplan: Vec<PathBuf>,
    },
    /// Log in to the CrowdSec LAPI of [crowdsec] and say what is wrong, if anything
    CrowdsecCheck,
    /// Judge one call over AGI on stdin/stdout: AGI(/usr/bin/extsecurity,agi)
    Agi {
        /// `check` (the guest check, the default); `outbound` is refused with a line
        /// saying it needs the daemon
        #[arg(value_name = "SCRIPT")]
        script: Option<String>,
    },
    /// Summarise alert logs (rotated and .gz ones too): calls, alerts by reason, top
    /// offenders, per-hour counts
    Report {
        /// Log files [default: the configured log_file and its rotations, .gz too]
        #[arg(value_name = "LOG")]
        logs: Vec<PathBuf>,
        /// Print JSON instead of tables
        #[arg(long)]
        json: bool,
        /// How many offending addresses to list
        #[arg(long, default_value_t = 20, value_name = "N")]
        top: usize,
        /// Print every line that names this address instead, from the configured log
        /// and its rotations (.gz too) when no LOG is given
        #[arg(long, value_name = "ADDR")]
        address: Option<std::net::IpAddr>,
        /// Write the report as one self-contained HTML page (charts per day and hour by
        /// rule, top offenders, numbers dialled by attackers, outbound refusals) to FILE
        #[arg(long, value_name = "FILE", conflicts_with_all = ["json", "address"])]
        html: Option<PathBuf>,
        /// Only lines at or after this local time: 2026-12-01, "2026-12-01 08:00"
        #[arg(long, value_name = "TIME", value_parser = extsecurity::report::parse_bound)]
        since: Option<String>,
        /// Only lines before this local time
        #[arg(long, value_name = "TIME", value_parser = extsecurity::report::parse_bound)]
        until: Option<String>,
    },
    /// List the addresses the daemon banned in the kernel ([nftables]), with reason and
    /// time left; works while the daemon is down
    Bans {
        /// Print JSON: [{"address", "reason", "seconds_left"}]
        #[arg(long, conflicts_with = "remove_table")]
        json: bool,
        /// Delete the table instead, its drop rule and every ban in it (the package's
        /// prerm does this on removal)
        #[arg(long)]
        remove_table: bool,
    },
    /// The outbound check of authenticated accounts ([fraud]): see accounts, lift a
    /// quarantine
    Fraud {
        #[command(subcommand)]
        action: FraudAction,
    },
    /// Lift a ban everywhere it lives: the kernel's sets, fail2ban's jail (over its
    /// socket), the running daemon's memory; a range lifts every address in it
    Unban {
        #[arg(value_name = "ADDR|CIDR")]
        target: Target,
        /// fail2ban's socket
        #[arg(long, value_name = "PATH", default_value = extsecurity::by_hand::FAIL2BAN_SOCKET)]
        fail2ban_socket: PathBuf,
        /// fail2ban's jail
        #[arg(long, value_name = "NAME", default_value = "extsecurity")]
        jail: String,
    },
    /// Ban by hand: the kernel's sets ([nftables]) and an alert line, so that fail2ban's
    /// jail and CrowdSec follow (a range: the kernel only, and the CrowdSec command)
    Ban {
        #[arg(value_name = "ADDR|CIDR")]
        target: Target,
        /// How long: 90s, 15m, 4h, 2d [default: nftables.ban_seconds]
        #[arg(long = "for", value_name = "DURATION", value_parser = extsecurity::nftables::parse_duration)]
        length: Option<std::time::Duration>,
        /// Why, for the log and the ban's comment
        #[arg(long, value_name = "TEXT", default_value = "")]
        reason: String,
    },
    /// The running daemon on one screen: what runs (FastAGI, AMI, CrowdSec, nftables,
    /// the outbound check), calls and alerts in the last minute and hour, top rules,
    /// quarantined accounts, the last alerts
    Status {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Run the daemon: FastAGI, AGI(agi://127.0.0.1/check), and with [ami] the AMI
    /// security-event watcher
    Serve {
        /// Address to listen on [default: daemon.listen, 127.0.0.1:4573]; [::1]:4573 for IPv6
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<std::net::SocketAddr>,
    },
}

/// The System() request. Every caller value is base64 (Asterisk's `BASE64_ENCODE()`),
/// attached with `=` so that an empty value cannot shift the next word.
#[derive(Args)]
struct EncodedArgs {
    /// Peer address: ${CHANNEL(peerip)} or ${CHANNEL(pjsip,remote_addr)}
    #[arg(long, require_equals = true, value_name = "ADDR")]
    ip: Option<OsString>,
    /// ${BASE64_ENCODE(${CALLERID(num)})}
    #[arg(
        long = "callerid-num-b64",
        require_equals = true,
        value_name = "BASE64"
    )]
    callerid_num: Option<OsString>,
    /// ${BASE64_ENCODE(${CALLERID(name)})}
    #[arg(
        long = "callerid-name-b64",
        require_equals = true,
        value_name = "BASE64"
    )]
    callerid_name: Option<OsString>,
    /// ${BASE64_ENCODE(${EXTEN})}
    #[arg(long = "exten-b64", require_equals = true, value_name = "BASE64")]
    exten: Option<OsString>,
    /// ${BASE64_ENCODE(${CHANNEL(useragent)})} or of ${PJSIP_HEADER(read,User-Agent)}
    #[arg(long = "user-agent-b64", require_equals = true, value_name = "BASE64")]
    user_agent: Option<OsString>,
    /// ${BASE64_ENCODE(${CHANNEL(peername)})} or of ${CHANNEL(endpoint)}
    #[arg(long = "peer-name-b64", require_equals = true, value_name = "BASE64")]
    peer_name: Option<OsString>,
}

#[derive(Subcommand)]
enum FraudAction {
    /// Per account: calls by class, quarantine and why, the last numbers dialled, the
    /// addresses used; from the running daemon, or from its state file when it is down
    Status {
        #[arg(value_name = "ACCOUNT")]
        account: Option<String>,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Lift an account's quarantine and reset its counters; say whether the address it
    /// was quarantined from is still banned
    Release {
        #[arg(value_name = "ACCOUNT")]
        account: String,
        /// Lift that address's bans too (the kernel's, fail2ban's), as `unban` does
        #[arg(long)]
        unban: bool,
    },
    /// Print the dialplan contexts [extsec-outbound] needs without the daemon (emergency
    /// numbers, international and premium prefixes) for the configured country, for
    /// /etc/asterisk/extensions-extsecurity-numbers.conf
    Dialplan,
}

/// Plain-text values, for trying a call by hand with `explain`. Never in a dialplan.
#[derive(Args)]
struct PlainArgs {
    /// Caller id number, as text
    #[arg(long, value_name = "TEXT", conflicts_with = "callerid_num")]
    callerid_num_text: Option<OsString>,
    /// Caller id name, as text
    #[arg(long, value_name = "TEXT", conflicts_with = "callerid_name")]
    callerid_name_text: Option<OsString>,
    /// Dialed extension, as text
    #[arg(long, value_name = "TEXT", conflicts_with = "exten")]
    exten_text: Option<OsString>,
    /// User agent, as text
    #[arg(long, value_name = "TEXT", conflicts_with = "user_agent")]
    user_agent_text: Option<OsString>,
    /// Peer name, as text
    #[arg(long, value_name = "TEXT", conflicts_with = "peer_name")]
    peer_name_text: Option<OsString>,
}

impl EncodedArgs {
    fn fields(&self) -> EncodedFields<'_> {
        EncodedFields {
            ip: self.ip.as_deref(),
            callerid_num: self.callerid_num.as_deref(),
            callerid_name: self.callerid_name.as_deref(),
            exten: self.exten.as_deref(),
            user_agent: self.user_agent.as_deref(),
            peer_name: self.peer_name.as_deref(),
        }
    }
}

/// `extsecurity generate WHAT`: prints a manual page or a shell's completions, made from
/// [`Cli`] (the package ships them; tests/manual.rs keeps `dist/man` and
/// `dist/completions` current). Outside [`Cli`], so that the pages and completions do
/// not offer it: it is the maintainers' tool, not the administrator's.
#[derive(Parser)]
#[command(name = "extsecurity generate")]
struct GenerateCli {
    #[arg(value_enum)]
    what: extsecurity::manual::Generated,
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    ExitCode::from(match args.get(1) {
        Some(first) if is_legacy_json(first) => run_legacy(&args[1..]),
        Some(first) if first == "generate" => generate(GenerateCli::parse_from(&args[1..]).what),
        _ => run(Cli::parse_from(&args), &args[1..]),
    })
}

/// The seed's dialplan passes one JSON object, which the shell may have split into
/// several words; nothing else starts with `{`.
fn is_legacy_json(first: &OsStr) -> bool {
    first.as_bytes().trim_ascii_start().first() == Some(&b'{')
}

/// All arguments joined by one space, as the seed script read its request.
fn joined(args: &[OsString]) -> Vec<u8> {
    let words: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    words.join(&b' ')
}

fn run_legacy(args: &[OsString]) -> u8 {
    let Some(config) = load_config(None) else {
        return exits::CONFIG;
    };
    eprintln!(
        "extsecurity: warning: the seed's JSON line: the shell ran it with the caller's text pasted in; replace it (extsecurity check-config names the dialplan lines)"
    );
    let mut plan = check::plan(&config.0, request::parse_json(&joined(args)));
    plan.lines.iter_mut().for_each(|l| l.via_legacy());
    execute(&config, &plan, false)
}

fn run(cli: Cli, args: &[OsString]) -> u8 {
    let Some(config) = load_config(cli.config.as_deref()) else {
        return match cli.command {
            Command::Check { on_error, .. } => on_error_status(on_error, exits::CONFIG),
            _ => exits::CONFIG,
        };
    };
    match cli.command {
        Command::Check {
            fields,
            fail_on_alert,
            on_error,
        } => {
            let made_by_root = say_log_made_by_root(&config.0.log_file);
            let status = judge(
                &config,
                request::parse_encoded(fields.fields(), &joined(args)),
                fail_on_alert,
            );
            made_by_root();
            on_error_status(on_error, status)
        }
        Command::Explain {
            fields,
            plain,
            json,
        } => explain(&config, explain_request(&fields, &plain, &json, args)),
        Command::CheckConfig { quiet, dialplan } => {
            let status = check_config(&config, quiet);
            check_dialplan(&config.0, &dialplan, quiet);
            status
        }
        Command::CrowdsecCheck => crowdsec_check(&config.0),
        Command::Agi { script } => {
            let script =
                extsecurity::agi::session::Script::of(script.as_deref().map(str::as_bytes));
            extsecurity::agi::stdio::run(&config.0, script)
        }
        Command::Report {
            logs,
            address: Some(ip),
            since,
            until,
            ..
        } => report_address(&config.0, &logs, ip, (since, until)),
        Command::Report {
            logs,
            json,
            top,
            html,
            since,
            until,
            ..
        } => report(&config.0, &logs, json, top, html, (since, until)),
        Command::Bans {
            remove_table: true, ..
        } => remove_table(&config.0),
        Command::Bans { json, .. } => bans(&config.0, json),
        Command::Status { json } => daemon_status(&config.0, json),
        Command::Unban {
            target,
            fail2ban_socket,
            jail,
        } => unban(&config.0, target, fail2ban_socket, jail),
        Command::Ban {
            target,
            length,
            reason,
        } => ban(&config.0, target, length, &reason),
        Command::Fraud {
            action: FraudAction::Status { account, json },
        } => fraud_status(&config.0, account.as_deref(), json),
        Command::Fraud {
            action: FraudAction::Release { account, unban },
        } => fraud_release(&config.0, &account, unban),
        Command::Fraud {
            action: FraudAction::Dialplan,
        } => fraud_dialplan(&config.0),
        Command::Serve { listen } => match serve(config, listen) {
            Ok(()) => exits::OK,
            Err(e) => {
                eprintln!("extsecurity: {e:#}");
                exits::SERVE
            }
        },
    }
}

fn generate(what: extsecurity::manual::Generated) -> u8 {
    use clap::CommandFactory as _;
    use std::io::Write as _;
    match std::io::stdout().write_all(&what.render(Cli::command())) {
        Ok(()) => exits::OK,
        Err(e) => {
            eprintln!("extsecurity: cannot write: {e}");
            exits::INTERNAL
        }
    }
}

/// `check`'s status as `--on-error` wants it; without the option, as it is (the
/// shipped dialplans always pass it, scripts may want every status).
fn on_error_status(on_error: Option<OnError>, status: u8) -> u8 {
    on_error.map_or(status, |o| o.exit_status(status))
}

/// The whole check: plan, write, tarpit, exit status.
fn judge(config: &(Config, Source), request: Result<Call, BadRequest>, fail_on_alert: bool) -> u8 {
    execute(config, &check::plan(&config.0, request), fail_on_alert)
}

/// Writes a plan's lines, holds the tarpit, and gives the exit status.
fn execute(config: &(Config, Source), plan: &Plan, fail_on_alert: bool) -> u8 {
    if let Some(error) = &plan.error {
        eprintln!("extsecurity: bad request: {error}");
    }
    if let Err(e) = check::execute(&config.0, plan, std::thread::sleep) {
        eprintln!("extsecurity: {e}");
        // The rules have spoken: an alert is still an alert for the dialplan.
        if !(fail_on_alert && plan.is_alert()) {
            return exits::LOG;
        }
    }
    plan.exit_status(fail_on_alert)
}

/// One login as the configured machine: proves the URL, the machine and its password;
/// then how many alerts wait in the log for the LAPI.
fn crowdsec_check(config: &Config) -> u8 {
    let Some(c) = &config.crowdsec else {
        eprintln!("extsecurity: no [crowdsec] table in the configuration: nothing to check");
        return exits::CONFIG;
    };
    if let Some((problem, _)) = extsecurity::daemon::crowdsec::state_problem(c) {
        eprintln!("extsecurity: {problem}");
        return exits::CROWDSEC;
    }
    let mut client = extsecurity::crowdsec::Client::new(c.clone());
    let status = match client.login() {
        Ok(expire) => {
            println!(
                "OK: machine {:?} logged in to the CrowdSec LAPI at {} (token valid until {expire}); bans will last {}",
                c.machine_id, c.lapi_url, c.ban_duration
            );
            exits::OK
        }
        Err(e) => {
            eprintln!("extsecurity: {e}");
            exits::CROWDSEC
        }
    };
    match extsecurity::daemon::crowdsec::waiting(config, c) {
        Ok(Some(n)) => println!(
            "{n} alerts in {} after the position saved in {} (not yet accepted by the LAPI)",
            config.log_file.display(),
            c.state_file.display()
        ),
        Ok(None) => println!(
            "no position saved in {} for {} yet: the daemon starts at the end of the log",
            c.state_file.display(),
            config.log_file.display()
        ),
        Err(e) => eprintln!(
            "extsecurity: cannot read {} or the alert log: {e}",
            c.state_file.display()
        ),
    }
    status
}

fn report(
    config: &Config,
    logs: &[PathBuf],
    json: bool,
    top: usize,
    html: Option<PathBuf>,
    (since, until): (Option<String>, Option<String>),
) -> u8 {
    // As --help and the README say: the log and its rotations (.gz too), oldest first.
    let default = extsecurity::report::with_rotations_and_backups(&config.log_file);
    let logs = if logs.is_empty() { &default[..] } else { logs };
    let mut report = extsecurity::report::Report::between(since, until);
    for path in logs {
        if let Err(e) = report.add_file(path) {
            eprintln!("extsecurity: {}: {e}", path.display());
            return exits::LOG;
        }
    }
    if let Some(file) = html {
        return match std::fs::write(&file, extsecurity::report_html::page(&report, top)) {
            Ok(()) => {
                let days = match report.per_day.len() {
                    1 => "1 day".to_string(),
                    n => format!("{n} days"),
                };
                println!(
                    "{}: {} calls, {} alerts, {days}",
                    file.display(),
                    report.calls,
                    report.alerts,
                );
                exits::OK
            }
            Err(e) => {
                eprintln!("extsecurity: cannot write {}: {e}", file.display());
                exits::LOG
            }
        };
    }
    let text = if json {
        report.to_json(top)
    } else {
        report.to_table(top)
    };
    println!("{}", text.trim_end());
    exits::OK
}

/// Every line naming `ip`, oldest log first.
fn report_address(
    config: &Config,
    logs: &[PathBuf],
    ip: std::net::IpAddr,
    (since, until): (Option<String>, Option<String>),
) -> u8 {
    let within = |line: &[u8]| {
        let time = line.get(..23).and_then(|t| std::str::from_utf8(t).ok());
        time.is_some_and(|t| {
            since.as_deref().is_none_or(|s| t >= s) && until.as_deref().is_none_or(|u| t < u)
        })
    };
    let logs = match logs {
        [] => extsecurity::report::with_rotations_and_backups(&config.log_file),
        given => given.to_vec(),
    };
    let mut found = 0usize;
    let mut stdout = std::io::stdout().lock();
    for path in &logs {
        let printed = extsecurity::report::lines_about(path, ip, |line| {
            if !within(line) {
                return;
            }
            found += 1;
            let _ = std::io::Write::write_all(&mut stdout, line)
                .and_then(|()| std::io::Write::write_all(&mut stdout, b"\n"));
        });
        if let Err(e) = printed {
            eprintln!("extsecurity: {}: {e}", path.display());
            return exits::LOG;
        }
    }
    if found == 0 {
        eprintln!(
            "extsecurity: no line names {ip} in {} log file(s)",
            logs.len()
        );
    }
    exits::OK
}

/// The table `[nftables]` names, or the default one.
fn nft_table(config: &Config) -> String {
    config.nftables_table.clone()
}

fn bans(config: &Config, json: bool) -> u8 {
    let table = nft_table(config);
    let mut banned = match extsecurity::nftables::list(&table) {
        Ok(banned) => banned,
        Err(e) => {
            eprintln!("extsecurity: cannot read the bans of table inet {table}: {e}");
            return exits::BANS;
        }
    };
    banned.sort_by_key(|b| std::cmp::Reverse(b.expires));
    if json {
        let rows: Vec<serde_json::Value> = banned
            .iter()
            .map(|b| {
                serde_json::json!({
                    "address": extsecurity::nftables::shown(&b.net),
                    "reason": b.reason,
                    "seconds_left": b.expires.as_secs(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return exits::OK;
    }
    println!("{:<40} {:<28} time left", "address", "reason");
    for b in &banned {
        println!(
            "{:<40} {:<28} {}",
            extsecurity::nftables::shown(&b.net),
            b.reason,
            extsecurity::clock::time_left(b.expires)
        );
    }
    println!("{} banned (table inet {table})", banned.len());
    exits::OK
}

fn remove_table(config: &Config) -> u8 {
    let table = nft_table(config);
    match extsecurity::nftables::remove(&table) {
        Ok(Some(n)) => println!("table inet {table} removed, with its drop rule and {n} bans"),
        Ok(None) => println!("no table inet {table}: nothing to remove"),
        Err(e @ extsecurity::nftables::NftError::InUse(_)) => {
            eprintln!("extsecurity: {e} (stop it first: systemctl stop extsecurity)");
            return exits::BANS;
        }
        Err(e) => {
            eprintln!("extsecurity: cannot remove table inet {table}: {e} (run as root)");
            return exits::BANS;
        }
    }
    exits::OK
}

fn unban(config: &Config, target: Target, fail2ban_socket: PathBuf, jail: String) -> u8 {
    let fail2ban = extsecurity::by_hand::Fail2ban {
        socket: fail2ban_socket,
        jail,
    };
    said(extsecurity::by_hand::unban(config, target, &fail2ban))
}

fn ban(config: &Config, target: Target, length: Option<std::time::Duration>, reason: &str) -> u8 {
    said(extsecurity::by_hand::ban(config, target, length, reason))
}

/// Prints what a command by hand did; failures on stderr, and exit 8.
fn said(said: extsecurity::by_hand::Said) -> u8 {
    for line in &said.lines {
        println!("{line}");
    }
    match said.failed {
        true => exits::BANS,
        false => exits::OK,
    }
}

/// Run as root, a check that creates the alert log makes it root's, which Asterisk's
/// user then cannot write (the README's first command did this): says so once it is
/// made, with what fixes it. The returned closure looks after the check.
fn say_log_made_by_root(log: &std::path::Path) -> impl FnOnce() + '_ {
    // SAFETY: geteuid(2) cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let existed = log.exists();
    move || {
        if root && !existed && log.exists() {
            eprintln!(
                "extsecurity: made {} as root: Asterisk's user cannot write it until it is group asterisk (the package's postinst does that, or: chgrp asterisk {} && chmod 0660 {})",
                log.display(),
                log.display(),
                log.display()
            );
        }
    }
}

/// `extsecurity status`: the running daemon's own account of itself.
fn daemon_status(config: &Config, json: bool) -> u8 {
    let Some(sock) = &config.daemon.control_socket else {
        eprintln!(
            "extsecurity: no daemon.control_socket configured: the running daemon cannot be asked"
        );
        return exits::NO_DAEMON;
    };
    let answer = match control::ask(sock, &control::Request::Status) {
        Ok(answer) => answer,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!(
                "extsecurity: {} is the daemon's alone ({e}): run this as root (sudo extsecurity status) or as its user (sudo -u extsecurity extsecurity status)",
                sock.display()
            );
            return exits::NO_DAEMON;
        }
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            eprintln!("extsecurity: {e}");
            return exits::NO_DAEMON;
        }
        Err(e) => {
            eprintln!(
                "extsecurity: no daemon answers on {} ({e}): is it running? systemctl status extsecurity",
                sock.display()
            );
            return exits::NO_DAEMON;
        }
    };
    let control::Answer::Daemon(status) = answer else {
        eprintln!("extsecurity: the daemon answered {:?}", answer.encode());
        return exits::NO_DAEMON;
    };
    match json {
        true => println!(
            "{}",
            serde_json::to_string_pretty(&status).unwrap_or_default()
        ),
        false => print!("{}", control::status::render(&status)),
    }
    exits::OK
}

/// Where the outbound guard's state is: the running daemon (over its control socket),
/// or, when no daemon answers there, its state file.
enum GuardAt<'a> {
    Daemon(&'a std::path::Path),
    File(&'a std::path::Path),
}

/// The daemon when it answers; the state file when the socket is there to be asked
/// but nobody listens (the daemon is down). `None` with the reason said.
fn guard_at(config: &Config) -> Option<GuardAt<'_>> {
    let Some(fraud) = &config.fraud else {
        eprintln!("extsecurity: [fraud] is off in this configuration (README, \"Toll fraud\")");
        return None;
    };
    match &config.daemon.control_socket {
        Some(sock) if std::os::unix::net::UnixStream::connect(sock).is_ok() => {
            Some(GuardAt::Daemon(sock))
        }
        Some(_) => Some(GuardAt::File(&fraud.state_file)),
        None => {
            eprintln!(
                "extsecurity: no daemon.control_socket configured: the running daemon cannot be asked"
            );
            None
        }
    }
}

/// The guard as its state file holds it.
fn guard_from_file(path: &std::path::Path) -> Option<extsecurity::fraud::Guard> {
    match extsecurity::state_file::StateFile::new(path).load() {
        Ok(Some(snapshot)) => Some(extsecurity::fraud::Guard::from_snapshot(snapshot)),
        Ok(None) => Some(extsecurity::fraud::Guard::default()),
        Err(e) => {
            eprintln!(
                "extsecurity: cannot read the state file {}: {e} (run as root)",
                path.display()
            );
            None
        }
    }
}

fn fraud_status(config: &Config, account: Option<&str>, json: bool) -> u8 {
    let now = extsecurity::clock::Now::current().unix;
    let (accounts, from) = match guard_at(config) {
        None => return exits::FRAUD,
        Some(GuardAt::Daemon(sock)) => {
            let request = control::Request::FraudStatus(account.map(str::to_string));
            match control::ask(sock, &request) {
                Ok(control::Answer::FraudStatus(accounts)) => {
                    (accounts, "the running daemon".to_string())
                }
                Ok(other) => {
                    eprintln!("extsecurity: the daemon answered {:?}", other.encode());
                    return exits::FRAUD;
                }
                Err(e) => {
                    eprintln!(
                        "extsecurity: the daemon did not answer ({}: {e})",
                        sock.display()
                    );
                    return exits::FRAUD;
                }
            }
        }
        Some(GuardAt::File(path)) => {
            let Some(mut guard) = guard_from_file(path) else {
                return exits::FRAUD;
            };
            (
                guard.status(account, now),
                format!(
                    "the state file {} (the daemon is not running)",
                    path.display()
                ),
            )
        }
    };
    if let (Some(name), true) = (account, accounts.is_empty()) {
        eprintln!("extsecurity: {name}: unknown to the outbound guard (no call, no login seen)");
        return exits::FRAUD;
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&accounts).unwrap_or_default()
        );
    } else {
        print!("{}", extsecurity::fraud::status::render(&accounts, now));
        println!("(from {from})");
    }
    exits::OK
}

fn fraud_dialplan(config: &Config) -> u8 {
    let Some(fraud) = &config.fraud else {
        eprintln!(
            "extsecurity: [fraud] is off in this configuration: set enabled = true and country_code first (README, \"Toll fraud\")"
        );
        return exits::FRAUD;
    };
    let text = extsecurity::fraud::dialplan_numbers::contexts(&fraud.dial_plan);
    // A closed pipe (`| head`) is the reader's choice, not an error.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    exits::OK
}

fn fraud_release(config: &Config, account: &str, lift: bool) -> u8 {
    let now = extsecurity::clock::Now::current().unix;
    let was: Option<Option<extsecurity::fraud::account::Quarantine>> = match guard_at(config) {
        None => return exits::FRAUD,
        Some(GuardAt::Daemon(sock)) => {
            let request = control::Request::FraudRelease(account.to_string());
            match control::ask(sock, &request) {
                Ok(control::Answer::Released(was)) => Some(was),
                Ok(control::Answer::Unknown(_)) => None,
                Ok(other) => {
                    eprintln!("extsecurity: the daemon answered {:?}", other.encode());
                    return exits::FRAUD;
                }
                Err(e) => {
                    eprintln!(
                        "extsecurity: the daemon did not answer ({}: {e})",
                        sock.display()
                    );
                    return exits::FRAUD;
                }
            }
        }
        Some(GuardAt::File(path)) => {
            let Some(mut guard) = guard_from_file(path) else {
                return exits::FRAUD;
            };
            let was = guard.release(account, now);
            if was.is_some()
                && let Err(e) =
                    extsecurity::state_file::StateFile::new(path).save(&guard.snapshot().0)
            {
                eprintln!(
                    "extsecurity: cannot write the state file {}: {e} (run as root)",
                    path.display()
                );
                return exits::FRAUD;
            }
            was
        }
    };
    match was {
        None => {
            eprintln!(
                "extsecurity: {account}: unknown to the outbound guard (no call, no login seen)"
            );
            exits::FRAUD
        }
        Some(Some(q)) => {
            println!(
                "{account}: quarantine lifted (it was for {}, from {}); its counters reset",
                q.why,
                q.address
                    .map_or("an unknown address".into(), |a| a.to_string())
            );
            match (q.address, lift) {
                (Some(ip), true) => {
                    let target = extsecurity::by_hand::Target::Addr(ip);
                    let fail2ban = extsecurity::by_hand::Fail2ban {
                        socket: PathBuf::from(extsecurity::by_hand::FAIL2BAN_SOCKET),
                        jail: "extsecurity".into(),
                    };
                    said(extsecurity::by_hand::unban(config, target, &fail2ban))
                }
                (Some(ip), false) => {
                    say_still_banned(config, ip);
                    exits::OK
                }
                (None, _) => exits::OK,
            }
        }
        Some(None) => {
            println!("{account}: was not quarantined; its counters reset");
            exits::OK
        }
    }
}

/// After a release: whether the address the account was quarantined from is still
/// banned in the kernel (fail2ban's jail bans it too, for its own time), and how to
/// lift it.
fn say_still_banned(config: &Config, ip: std::net::IpAddr) {
    let kernel = config
        .nftables
        .as_ref()
        .and_then(|n| extsecurity::nftables::list(&n.table).ok())
        .and_then(|bans| bans.into_iter().find(|b| b.net.contains(&ip)));
    match kernel {
        Some(b) => println!(
            "{ip}: still banned in the kernel ({}, {} left), and by fail2ban's jail if it runs: extsecurity unban {ip} (or fraud release --unban) lifts both",
            b.reason,
            extsecurity::clock::time_left(b.expires)
        ),
        None => println!(
            "{ip}: not banned in the kernel; if an ERROR line named it, fail2ban's jail bans it for its own time: extsecurity unban {ip} (or fraud release --unban) lifts that"
        ),
    }
}

/// `extsecurity serve`: diagnostics on stderr (the journal under systemd), then the
/// daemon until SIGTERM or SIGINT.
fn serve(
    (config, source): (Config, Source),
    listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    extsecurity::diagnostics::init();
    extsecurity::daemon::serve::run(config, source, listen)
}

fn load_config(flag: Option<&std::path::Path>) -> Option<(Config, Source)> {
    match config::load(flag, std::env::var_os(config::ENV_VAR)) {
        Ok(loaded) => Some(loaded),
        Err(e) => {
            eprintln!("extsecurity: {e}");
            None
        }
    }
}

fn explain_request(
    fields: &EncodedArgs,
    plain: &PlainArgs,
    json: &[OsString],
    args: &[OsString],
) -> Result<Call, BadRequest> {
    if !json.is_empty() {
        return request::parse_json(&joined(json));
    }
    let mut call = request::parse_encoded(fields.fields(), &joined(args))?;
    let text = |v: &Option<OsString>| v.as_ref().map(|v| v.as_bytes().to_vec());
    for (slot, value) in [
        (&mut call.callerid_num, text(&plain.callerid_num_text)),
        (&mut call.callerid_name, text(&plain.callerid_name_text)),
        (&mut call.exten, text(&plain.exten_text)),
        (&mut call.user_agent, text(&plain.user_agent_text)),
        (&mut call.peer_name, text(&plain.peer_name_text)),
    ] {
        if let Some(value) = value {
            *slot = value;
        }
    }
    Ok(call)
}

fn explain(config: &(Config, Source), request: Result<Call, BadRequest>) -> u8 {
    let (config, source) = config;
    let plan: Plan = check::plan(config, request);
    println!("config:  {source}");
    match (&plan.verdict, &plan.error) {
        (Some(v), _) if v.is_alert() => println!("verdict: alert ({})", v.reason_code()),
        (Some(v), _) => println!("verdict: accept ({})", v.reason_code()),
        (None, _) => println!("verdict: none: the request names no valid peer to judge"),
    }
    if let Some(error) = &plan.error {
        println!("error:   {error}");
    }
    let now = timestamp_now();
    for line in &plan.lines {
        print!("line:    {}", String::from_utf8_lossy(&line.render(&now)));
    }
    if plan.lines.is_empty() {
        println!("line:    (none: log_ok_calls = false)");
    }
    if plan.is_alert() {
        println!(
            "tarpit:  {:?} (check would hold the channel this long)",
            config.tarpit
        );
    }
    println!(
        "exit:    {} ({} with --fail-on-alert)",
        plan.exit_status(false),
        plan.exit_status(true)
    );
    exits::OK
}

/// Validates what `serve` and the per-call checks need and prints the effective
/// settings. The exit status says whether they can run: the config valid and the alert
/// log writable by this user. What only a sink needs (a secret this user may not read,
/// say) is said, not failed on: `serve` runs without that sink, as the unit's
/// `ExecStartPre` runs this.
fn check_config(config: &(Config, Source), quiet: bool) -> u8 {
    let (c, source) = config;
    let mut status = exits::OK;
    if let Err(e) = extsecurity::alert_log::check_writable(&c.log_file) {
        eprintln!("extsecurity: {e}");
        status = exits::LOG;
    }
    let writers = say_preflight(c, quiet);
    if let Err(e @ config::ConfigError::Empty { .. }) = config::reload(source) {
        eprintln!("extsecurity: {e}");
        status = exits::CONFIG;
    }
    let user = current_user();
    for secret in c.secrets() {
        match secret.read() {
            Ok(_) => {}
            Err(e) if e.is_permission() => eprintln!(
                "extsecurity: note: {e}: {user} cannot read it; serve reads it as its own user (the unit's: extsecurity), and the per-call checks never do"
            ),
            Err(e) => eprintln!("extsecurity: warning: {e}"),
        }
    }
    match c
        .crowdsec
        .as_ref()
        .and_then(extsecurity::daemon::crowdsec::state_problem)
    {
        Some((problem, true)) => {
            eprintln!("extsecurity: note: {problem}: not as {user}; serve uses it as its own user")
        }
        Some((problem, false)) => eprintln!(
            "extsecurity: warning: {problem}: serve would judge calls but not push to CrowdSec until it is fixed"
        ),
        None => {}
    }
    if let Some(fraud) = &c.fraud {
        match extsecurity::daemon::fraud::read_high_risk(c) {
            Ok(list) if !quiet => println!(
                "# [fraud]: {} high-risk prefixes; emergency numbers, never refused: {}",
                list.len(),
                fraud.dial_plan.emergency_numbers().join(", ")
            ),
            Ok(_) => {}
            Err(e) => {
                eprintln!(
                    "extsecurity: {e}: serve would run the guest check, but the outbound check would answer ERROR until it reads"
                );
                status = exits::CONFIG;
            }
        }
        match extsecurity::daemon::fraud::state_problem(&fraud.state_file) {
            Some((problem, true)) => {
                eprintln!(
                    "extsecurity: note: {problem}: not as {user}; serve uses it as its own user"
                )
            }
            Some((problem, false)) => eprintln!(
                "extsecurity: warning: {problem}: serve would judge outbound calls but quarantines would not survive a restart"
            ),
            None => {}
        }
    }
    if !quiet {
        println!("# effective settings, from {source}");
        match &c.nftables {
            Some(n) => println!(
                "# [nftables]: kernel bans ON, table inet {}, ports {} (from {})",
                n.table,
                match n.ports.is_empty() {
                    true => "all".to_string(),
                    false => n
                        .ports
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                },
                n.ports_from
            ),
            None => println!(
                "# [nftables]: kernel bans OFF (enabled = true in [nftables] bans within milliseconds; fail2ban alone takes ~0.5 s)"
            ),
        }
        if !writers.is_empty() {
            println!(
                "# alert log {}: writable by {}",
                c.log_file.display(),
                writers.join(" and ")
            );
        }
        print!("{}", extsecurity::config::effective::render(c));
    }
    status
}

/// Who cannot write the alert log, and whether fail2ban would start (README,
/// Install), on stderr; the users who can write it are returned, for the summary.
/// Said to the administrator (without --quiet), not at each start of the unit.
fn say_preflight(c: &Config, quiet: bool) -> Vec<String> {
    use extsecurity::preflight;
    // The unit's own check (--quiet) is about its user, which check_writable covers;
    // a missing folder is said already.
    if quiet {
        return Vec::new();
    }
    if let Some(trap) = preflight::fail2ban_sshd_trap(
        std::path::Path::new("/etc/fail2ban"),
        std::path::Path::new("/var/log/auth.log"),
    ) {
        eprintln!("extsecurity: warning: {trap}");
    }
    let folder_there = c.log_file.parent().is_some_and(|f| f.is_dir());
    let writers = match folder_there {
        true => preflight::log_writers(&c.log_file),
        false => Vec::new(),
    };
    for (user, _) in writers.iter().filter(|(_, ok)| !ok) {
        let fix = match user.as_str() {
            preflight::DAEMON_USER => {
                "adduser extsecurity asterisk, then restart the service".to_string()
            }
            _ => format!(
                "chgrp asterisk {0} && chmod 0660 {0} (and its folder 2770, group asterisk: README, \"The log folder\")",
                c.log_file.display()
            ),
        };
        eprintln!(
            "extsecurity: warning: user {user} cannot write the alert log {}: its calls would be judged with no line and no ban; {fix}",
            c.log_file.display()
        );
    }
    writers
        .into_iter()
        .filter(|(_, ok)| *ok)
        .map(|(user, _)| user)
        .collect()
}

/// Names every dialplan line that hands a caller's value to a shell unencoded. Said,
/// not failed on: the calls are judged either way, and the unit's check runs this.
fn check_dialplan(config: &Config, files: &[PathBuf], quiet: bool) {
    let (findings, unread) = extsecurity::dialplan::scan(files);
    for finding in &findings {
        eprintln!("extsecurity: warning: {finding}");
    }
    for wrong in extsecurity::dialplan::wiring(files, config.daemon.secret.is_some()).0 {
        eprintln!("extsecurity: warning: {wrong}");
    }
    if config.fraud.is_some() {
        let modules = std::path::Path::new(extsecurity::dialplan::CONFIG_DIR).join("modules.conf");
        if let Ok(text) = std::fs::read_to_string(&modules) {
            let missing = extsecurity::dialplan::modules_not_loaded(&text);
            if !missing.is_empty() {
                eprintln!(
                    "extsecurity: warning: {}: the outbound check needs {}, which it does not load: add a load => NAME.so line for each",
                    modules.display(),
                    missing.join(", ")
                );
            }
        }
    }
    for (file, e) in &unread {
        // The default files are Asterisk's: not being able to read them is no news
        // for a user who is not Asterisk's.
        if !files.is_empty() || (!quiet && e.kind() != std::io::ErrorKind::NotFound) {
            eprintln!(
                "extsecurity: note: dialplan {} not read: {e}",
                file.display()
            );
        }
    }
}

/// The name of the user this runs as, for messages about permissions.
fn current_user() -> String {
    // SAFETY: geteuid has no preconditions; getpwuid's result is read at once.
    unsafe {
        let uid = libc::geteuid();
        let pw = libc::getpwuid(uid);
        if pw.is_null() || (*pw).pw_name.is_null() {
            return format!("uid {uid}");
        }
        std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_string_lossy()
            .into_owned()
    }
}
