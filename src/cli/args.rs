//! The command line as clap reads it: every command, option and help text (the man
//! pages and completions are generated from [`Cli`]).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use extsecurity::by_hand::Target;
use extsecurity::check::OnError;
use extsecurity::request::EncodedFields;

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
                  address banned. The settings: extsecurity.toml(5); the manual: \
                  /usr/share/doc/extsecurity/doc/.",
    after_help = "Legacy form, as the seed's dialplan calls it: extsecurity '<json>'\n\
                  (all arguments are joined by one space and read as the seed's JSON)."
)]
pub(crate) struct Cli {
    /// Configuration file [default: $EXTSECURITY_CONFIG, else /etc/asterisk/extsecurity.toml,
    /// else built-in defaults]
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) config: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
        /// (doc/commands.md, "Exit status")
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
        /// Asterisk's configuration folder, whose audit's one-line summary is printed
        #[arg(long, value_name = "DIR", default_value = "/etc/asterisk")]
        asterisk_dir: PathBuf,
    },
    /// Read Asterisk's configuration as an attacker would: weak secrets (and the svcrack
    /// guess that finds each), guest paths to a trunk, exposed AMI/HTTP/ARI, the
    /// security log, fail2ban's jail. Never prints a secret
    Audit {
        /// Asterisk's configuration folder
        #[arg(long, value_name = "DIR", default_value = "/etc/asterisk")]
        asterisk_dir: PathBuf,
        /// fail2ban's folder, for the asterisk jail's logpath
        #[arg(long, value_name = "DIR", default_value = "/etc/fail2ban")]
        fail2ban_dir: PathBuf,
        /// Print JSON (for cron and monitoring)
        #[arg(long)]
        json: bool,
    },
    /// The edge of [edge]: what it does with an address, fetch the country database,
    /// replay the alert log against it
    Edge {
        #[command(subcommand)]
        action: EdgeAction,
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
        /// Say why ADDR is dropped or not: its ban, if any, then the edge's lists
        /// (country, feeds) and what they do with it
        #[arg(long, value_name = "ADDR", conflicts_with_all = ["json", "remove_table"])]
        explain: Option<std::net::IpAddr>,
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
pub(crate) struct EncodedArgs {
    /// Peer address: ${CHANNEL(peerip)} or ${CHANNEL(pjsip,remote_addr)}
    #[arg(long, require_equals = true, value_name = "ADDR")]
    pub(crate) ip: Option<OsString>,
    /// ${BASE64_ENCODE(${CALLERID(num)})}
    #[arg(
        long = "callerid-num-b64",
        require_equals = true,
        value_name = "BASE64"
    )]
    pub(crate) callerid_num: Option<OsString>,
    /// ${BASE64_ENCODE(${CALLERID(name)})}
    #[arg(
        long = "callerid-name-b64",
        require_equals = true,
        value_name = "BASE64"
    )]
    pub(crate) callerid_name: Option<OsString>,
    /// ${BASE64_ENCODE(${EXTEN})}
    #[arg(long = "exten-b64", require_equals = true, value_name = "BASE64")]
    pub(crate) exten: Option<OsString>,
    /// ${BASE64_ENCODE(${CHANNEL(useragent)})} or of ${PJSIP_HEADER(read,User-Agent)}
    #[arg(long = "user-agent-b64", require_equals = true, value_name = "BASE64")]
    pub(crate) user_agent: Option<OsString>,
    /// ${BASE64_ENCODE(${CHANNEL(peername)})} or of ${CHANNEL(endpoint)}
    #[arg(long = "peer-name-b64", require_equals = true, value_name = "BASE64")]
    pub(crate) peer_name: Option<OsString>,
}

impl EncodedArgs {
    pub(crate) fn fields(&self) -> EncodedFields<'_> {
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

#[derive(Subcommand)]
pub(crate) enum EdgeAction {
    /// The country the database places ADDR in, the feeds that list it, and what the
    /// edge does with it
    Lookup {
        #[arg(value_name = "ADDR")]
        address: std::net::IpAddr,
    },
    /// Fetch the country database (edge.country_url, this month's, else last month's),
    /// check it, and put it in edge.country_file; the daemon reads it within a second
    Update {
        /// Fetch this instead of edge.country_url
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// Replay the alert log: the calls and alerts the edge's lists would have stopped,
    /// and the accounts whose own addresses they would drop
    WhatIf {
        /// How far back, as 7d, 12h or 30m
        #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_since)]
        since: std::time::Duration,
    },
}

fn parse_since(text: &str) -> Result<std::time::Duration, String> {
    extsecurity::nftables::parse_duration(text)
}

#[derive(Subcommand)]
pub(crate) enum FraudAction {
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
pub(crate) struct PlainArgs {
    /// Caller id number, as text
    #[arg(long, value_name = "TEXT", conflicts_with = "callerid_num")]
    pub(crate) callerid_num_text: Option<OsString>,
    /// Caller id name, as text
    #[arg(long, value_name = "TEXT", conflicts_with = "callerid_name")]
    pub(crate) callerid_name_text: Option<OsString>,
    /// Dialed extension, as text
    #[arg(long, value_name = "TEXT", conflicts_with = "exten")]
    pub(crate) exten_text: Option<OsString>,
    /// User agent, as text
    #[arg(long, value_name = "TEXT", conflicts_with = "user_agent")]
    pub(crate) user_agent_text: Option<OsString>,
    /// Peer name, as text
    #[arg(long, value_name = "TEXT", conflicts_with = "peer_name")]
    pub(crate) peer_name_text: Option<OsString>,
}

/// `extsecurity generate WHAT`: prints a manual page or a shell's completions, made from
/// [`Cli`] (the package ships them; tests/it/manual.rs keeps `dist/man` and
/// `dist/completions` current). Outside [`Cli`], so that the pages and completions do
/// not offer it: it is the maintainers' tool, not the administrator's.
#[derive(Parser)]
#[command(name = "extsecurity generate")]
pub(crate) struct GenerateCli {
    #[arg(value_enum)]
    pub(crate) what: extsecurity::manual::Generated,
}
