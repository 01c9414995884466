//! Settings, read from TOML.
//!
//! Every key of the seed script's `settings` dictionary is accepted under its seed name
//! (typos included) as an alias of a clearer name, so an administrator can copy the
//! seed's values across unchanged. A file is validated whole before it is used: an
//! unknown key, a wrong type, a bad regex or CIDR is an error naming `path:line:column`.

use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use regex_automata::meta::{self, Regex};
use regex_automata::nfa::thompson::WhichCaptures;
use regex_automata::util::syntax;
use serde::Deserialize;
use toml::Spanned;

use crate::ami::Limits;
use crate::memory::MemoryConfig;

/// Where the configuration is read when neither `--config` nor the environment names one.
pub const DEFAULT_PATH: &str = "/etc/asterisk/extsecurity.toml";
/// The environment variable that names a configuration file.
pub const ENV_VAR: &str = "EXTSECURITY_CONFIG";
/// The seed's log file.
pub const DEFAULT_LOG_FILE: &str = "/var/log/asterisk/inbound_extsecurity.log";
/// Where the FastAGI daemon listens by default (Asterisk's default FastAGI port).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4573";
/// A tarpit longer than this holds an Asterisk channel thread for no gain.
pub const MAX_TARPIT_SECONDS: f64 = 300.0;

/// User agents of the common SIP scanners. Case-insensitive, matched anywhere in the value.
pub const DEFAULT_BLOCKED_USER_AGENTS: &[&str] = &[
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "pplsip",
    "VaxSIPUserAgent",
    "sip-scan",
    "iWar",
    "sundayddr",
];

/// A value that failed validation: where it was written, and what is wrong with it.
type Invalid = (Range<usize>, String);

/// The validated settings the rules and sinks use.
#[derive(Debug, Clone)]
pub struct Config {
    pub log_file: PathBuf,
    /// How long a channel is held after an alert was written; zero disables the tarpit.
    pub tarpit: Duration,
    pub callerid_num_must_be_numeric: bool,
    pub exten_must_be_numeric: bool,
    /// Extensions shorter than this alert; 0 disables the rule.
    pub exten_min_length: usize,
    /// Extensions longer than this alert; 0 disables the rule.
    pub exten_max_length: usize,
    /// Each pattern must match the whole extension, as Asterisk patterns do.
    pub blocked_extensions: Patterns,
    /// Each pattern matches anywhere in the user agent, ignoring case.
    pub blocked_user_agents: Patterns,
    /// Calls from these networks are never alerted on, whatever they send.
    pub trusted_networks: Vec<IpNet>,
    pub log_ok_calls: bool,
    /// The daemon's rules with memory (`[memory]`).
    pub memory: MemoryConfig,
    /// The daemon's listener and limits (`[daemon]`).
    pub daemon: DaemonConfig,
    /// The AMI security-event watcher (`[ami]`); off unless the table is present.
    pub ami: Option<AmiConfig>,
    /// Pushing alerts to a CrowdSec LAPI (`[crowdsec]`); off unless the table is present.
    pub crowdsec: Option<CrowdsecConfig>,
}

/// Where and as whom the daemon pushes its alerts to CrowdSec.
#[derive(Debug, Clone, PartialEq)]
pub struct CrowdsecConfig {
    /// The LAPI's base URL, without a trailing slash: `http://127.0.0.1:8080`.
    pub lapi_url: String,
    pub machine_id: String,
    pub password: String,
    /// How long the pushed ban lasts, as CrowdSec writes durations: `4h`, `90m`, `1h30m`.
    pub ban_duration: String,
    /// Alerts kept while the LAPI is unreachable; beyond this new alerts are dropped.
    pub queue_size: usize,
    /// Alerts sent in one POST at most.
    pub batch_size: usize,
}

/// Where and how the daemon reads Asterisk's security events.
#[derive(Debug, Clone, PartialEq)]
pub struct AmiConfig {
    pub address: SocketAddr,
    pub username: String,
    pub secret: String,
    /// How often to send `Action: Ping`; a connection silent for three times this is
    /// taken for dead and made again.
    pub ping_interval: Duration,
    pub limits: Limits,
}

/// The FastAGI daemon's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    /// Whether to serve FastAGI at all (`false`: the AMI watcher alone).
    pub fastagi: bool,
    pub listen: SocketAddr,
    /// Connections served at once; further ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// The listen backlog: connections the kernel completes and holds for us while
    /// every `max_connections` slot is busy (capped by `net.core.somaxconn`). Beyond it
    /// the kernel drops the SYN, and Asterisk's 2 s FastAGI connect gives up.
    pub listen_backlog: u32,
    /// A connection silent for this long is closed.
    pub idle_timeout: Duration,
    /// Channels held in the tarpit at once; beyond it alerts are answered at once.
    pub max_concurrent_tarpits: usize,
    /// Where to serve Prometheus metrics (loopback only), if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// TCP peers allowed to connect: the Asterisk servers. Others are closed at once.
    pub allowed_clients: Vec<IpNet>,
    /// When set, a FastAGI request counts only if its URL carries `?key=<secret>`
    /// (`AGI(agi://127.0.0.1/check?key=…)`): other local users cannot submit calls.
    pub secret: Option<String>,
}

impl Default for Config {
    /// The seed script's settings, plus the scanner user agents.
    fn default() -> Config {
        Config::from_raw(RawConfig::default()).expect("built-in defaults are valid")
    }
}

impl Config {
    /// Parses and validates a whole configuration file's text.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            ConfigError::at(path, text, span, e.message().to_string())
        })?;
        Config::from_raw(raw).map_err(|(span, message)| ConfigError::at(path, text, span, message))
    }

    /// Whether `ip` belongs to a trusted network.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_networks.iter().any(|net| net.contains(&ip))
    }

    fn from_raw(raw: RawConfig) -> Result<Config, Invalid> {
        let tarpit = *raw.tarpit_seconds.get_ref();
        if !(0.0..=MAX_TARPIT_SECONDS).contains(&tarpit) {
            return Err((
                raw.tarpit_seconds.span(),
                format!("tarpit_seconds must be between 0 and {MAX_TARPIT_SECONDS}, not {tarpit}"),
            ));
        }
        Ok(Config {
            log_file: raw.log_file,
            tarpit: Duration::from_secs_f64(tarpit),
            callerid_num_must_be_numeric: raw.callerid_num_must_be_numeric,
            exten_must_be_numeric: raw.exten_must_be_numeric,
            exten_min_length: raw.exten_min_length,
            exten_max_length: raw.exten_max_length,
            blocked_extensions: Patterns::whole(&raw.blocked_extensions)?,
            blocked_user_agents: Patterns::anywhere_ignoring_case(&raw.blocked_user_agents)?,
            trusted_networks: raw
                .trusted_networks
                .iter()
                .map(|n| parse_network(n, "trusted network"))
                .collect::<Result<_, _>>()?,
            log_ok_calls: raw.log_ok_calls,
            memory: raw.memory.validate()?,
            daemon: raw.daemon.validate()?,
            ami: raw.ami.map(RawAmi::validate).transpose()?,
            crowdsec: raw.crowdsec.map(RawCrowdsec::validate).transpose()?,
        })
    }
}

/// The file as written; `Spanned` keeps each value's position for error messages.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    #[serde(alias = "logfile_path")]
    log_file: PathBuf,
    #[serde(alias = "default_sleep_protection_time_sec")]
    tarpit_seconds: Spanned<f64>,
    #[serde(alias = "alert_if_callerid_num_is_not_numeric")]
    callerid_num_must_be_numeric: bool,
    #[serde(alias = "alert_if_dialed_exten_is_not_numeric")]
    exten_must_be_numeric: bool,
    #[serde(
        alias = "alert_if_dialed_exten_lenghts_less_than",
        alias = "alert_if_dialed_exten_length_less_than"
    )]
    exten_min_length: usize,
    #[serde(
        alias = "alert_if_dialed_exten_lenghts_more_than",
        alias = "alert_if_dialed_exten_length_more_than"
    )]
    exten_max_length: usize,
    #[serde(alias = "automatic_block_attempts_to_extensions")]
    blocked_extensions: Vec<Spanned<String>>,
    blocked_user_agents: Vec<Spanned<String>>,
    trusted_networks: Vec<Spanned<String>>,
    log_ok_calls: bool,
    memory: RawMemory,
    daemon: RawDaemon,
    ami: Option<Spanned<RawAmi>>,
    crowdsec: Option<Spanned<RawCrowdsec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMemory {
    enabled: bool,
    window_seconds: Spanned<u64>,
    max_extensions: usize,
    max_calls: usize,
    repeat_offender_seconds: u64,
    max_tracked_ips: Spanned<usize>,
}

impl Default for RawMemory {
    fn default() -> RawMemory {
        let d = MemoryConfig::default();
        RawMemory {
            enabled: d.enabled,
            window_seconds: Spanned::new(0..0, d.window.as_secs()),
            max_extensions: d.max_extensions,
            max_calls: d.max_calls,
            repeat_offender_seconds: d.repeat_offender.as_secs(),
            max_tracked_ips: Spanned::new(0..0, d.max_tracked_ips.get()),
        }
    }
}

impl RawMemory {
    fn validate(self) -> Result<MemoryConfig, Invalid> {
        if *self.window_seconds.get_ref() == 0 {
            return Err((
                self.window_seconds.span(),
                "memory.window_seconds must be at least 1".into(),
            ));
        }
        let max_tracked_ips = NonZeroUsize::new(*self.max_tracked_ips.get_ref()).ok_or((
            self.max_tracked_ips.span(),
            "memory.max_tracked_ips must be at least 1".to_string(),
        ))?;
        Ok(MemoryConfig {
            enabled: self.enabled,
            window: Duration::from_secs(*self.window_seconds.get_ref()),
            max_extensions: self.max_extensions,
            max_calls: self.max_calls,
            repeat_offender: Duration::from_secs(self.repeat_offender_seconds),
            max_tracked_ips,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDaemon {
    fastagi: bool,
    listen: Spanned<String>,
    max_connections: Spanned<usize>,
    listen_backlog: Spanned<u32>,
    idle_timeout_seconds: Spanned<f64>,
    max_concurrent_tarpits: usize,
    metrics_listen: Spanned<String>,
    allowed_clients: Vec<Spanned<String>>,
    secret: Spanned<String>,
    secret_file: Spanned<String>,
}

impl Default for RawDaemon {
    fn default() -> RawDaemon {
        RawDaemon {
            fastagi: true,
            listen: Spanned::new(0..0, DEFAULT_LISTEN.to_string()),
            max_connections: Spanned::new(0..0, 1024),
            listen_backlog: Spanned::new(0..0, 4096),
            idle_timeout_seconds: Spanned::new(0..0, 10.0),
            max_concurrent_tarpits: 256,
            metrics_listen: Spanned::new(0..0, String::new()),
            allowed_clients: ["127.0.0.0/8", "::1/128"]
                .map(|n| Spanned::new(0..0, n.to_string()))
                .to_vec(),
            secret: Spanned::new(0..0, String::new()),
            secret_file: Spanned::new(0..0, String::new()),
        }
    }
}

impl RawDaemon {
    /// A secret travels in a URL query, so it must be URL-safe.
    fn secret(&self) -> Result<Option<String>, Invalid> {
        let Some((secret, span)) = read_secret(&self.secret, &self.secret_file, "daemon.secret")?
        else {
            return Ok(None);
        };
        let url_safe = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
        if secret.len() < 16 || !secret.chars().all(url_safe) {
            return Err((
                span,
                "the daemon secret must be at least 16 characters of A-Z a-z 0-9 - . _ ~".into(),
            ));
        }
        Ok(Some(secret))
    }

    fn validate(self) -> Result<DaemonConfig, Invalid> {
        let address = |s: &Spanned<String>, key: &str| {
            socket_address(s, &format!("daemon.{key}"), "127.0.0.1:4573 or [::1]:4573")
        };
        let listen = address(&self.listen, "listen")?;
        let metrics_listen = match self.metrics_listen.get_ref().as_str() {
            "" => None,
            _ => {
                let addr = address(&self.metrics_listen, "metrics_listen")?;
                if !addr.ip().is_loopback() {
                    return Err((
                        self.metrics_listen.span(),
                        "daemon.metrics_listen must be a loopback address".into(),
                    ));
                }
                Some(addr)
            }
        };
        if *self.max_connections.get_ref() == 0 {
            return Err((
                self.max_connections.span(),
                "daemon.max_connections must be at least 1".into(),
            ));
        }
        if *self.listen_backlog.get_ref() == 0 {
            return Err((
                self.listen_backlog.span(),
                "daemon.listen_backlog must be at least 1".into(),
            ));
        }
        let idle = *self.idle_timeout_seconds.get_ref();
        if !(0.1..=3600.0).contains(&idle) {
            return Err((
                self.idle_timeout_seconds.span(),
                "daemon.idle_timeout_seconds must be between 0.1 and 3600".into(),
            ));
        }
        let allowed_clients = self
            .allowed_clients
            .iter()
            .map(|n| parse_network(n, "daemon.allowed_clients entry"))
            .collect::<Result<_, _>>()?;
        Ok(DaemonConfig {
            fastagi: self.fastagi,
            secret: self.secret()?,
            allowed_clients,
            listen,
            max_connections: *self.max_connections.get_ref(),
            listen_backlog: *self.listen_backlog.get_ref(),
            idle_timeout: Duration::from_secs_f64(idle),
            max_concurrent_tarpits: self.max_concurrent_tarpits,
            metrics_listen,
        })
    }
}

impl Default for RawConfig {
    fn default() -> RawConfig {
        let unspanned = |s: &str| Spanned::new(0..0, s.to_string());
        RawConfig {
            log_file: PathBuf::from(DEFAULT_LOG_FILE),
            tarpit_seconds: Spanned::new(0..0, 2.0),
            callerid_num_must_be_numeric: true,
            exten_must_be_numeric: true,
            exten_min_length: 10,
            exten_max_length: 14,
            blocked_extensions: vec![unspanned(r"\d{1,3}")],
            blocked_user_agents: DEFAULT_BLOCKED_USER_AGENTS
                .iter()
                .map(|s| unspanned(s))
                .collect(),
            trusted_networks: Vec::new(),
            log_ok_calls: true,
            memory: RawMemory::default(),
            daemon: RawDaemon::default(),
            ami: None,
            crowdsec: None,
        }
    }
}

/// `text` as an `address:port`; the error names `key` and shows `example`.
fn socket_address(text: &Spanned<String>, key: &str, example: &str) -> Result<SocketAddr, Invalid> {
    text.get_ref().parse().map_err(|_| {
        (
            text.span(),
            format!(
                "{key} {:?} is not an address:port such as {example}",
                text.get_ref()
            ),
        )
    })
}

/// `inline` (`{key}`), or the first line of the file `file` names (`{key}_file`), with
/// where it was set; both set is an error. `key` is `daemon.secret`, say.
fn read_secret(
    inline: &Spanned<String>,
    file: &Spanned<String>,
    key: &str,
) -> Result<Option<(String, Range<usize>)>, Invalid> {
    match (inline.get_ref().is_empty(), file.get_ref().is_empty()) {
        (true, true) => Ok(None),
        (false, false) => Err((
            file.span(),
            format!("{key} and {key}_file exclude each other"),
        )),
        (false, true) => Ok(Some((inline.get_ref().clone(), inline.span()))),
        (true, false) => {
            let text = std::fs::read_to_string(file.get_ref())
                .map_err(|e| (file.span(), format!("{key}_file {}: {e}", file.get_ref())))?;
            let first = text.lines().next().unwrap_or("").trim().to_string();
            Ok(Some((first, file.span())))
        }
    }
}

/// The `[ami]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAmi {
    address: Spanned<String>,
    username: Spanned<String>,
    secret: Spanned<String>,
    secret_file: Spanned<String>,
    ping_interval_seconds: Spanned<f64>,
    window_seconds: Spanned<u64>,
    max_auth_failures: usize,
    max_unknown_accounts: Spanned<usize>,
    max_error_events: usize,
    max_unauthenticated_requests: usize,
}

impl Default for RawAmi {
    fn default() -> RawAmi {
        let limits = Limits::default();
        RawAmi {
            address: Spanned::new(0..0, "127.0.0.1:5038".into()),
            username: Spanned::new(0..0, String::new()),
            secret: Spanned::new(0..0, String::new()),
            secret_file: Spanned::new(0..0, String::new()),
            ping_interval_seconds: Spanned::new(0..0, 20.0),
            window_seconds: Spanned::new(0..0, limits.window.as_secs()),
            max_auth_failures: limits.auth_failures,
            max_unknown_accounts: Spanned::new(0..0, limits.unknown_accounts),
            max_error_events: limits.error_events,
            max_unauthenticated_requests: limits.unauthenticated_requests,
        }
    }
}

impl RawAmi {
    fn validate(table: Spanned<RawAmi>) -> Result<AmiConfig, Invalid> {
        let span = table.span();
        let raw = table.into_inner();
        let address = socket_address(&raw.address, "ami.address", "127.0.0.1:5038")?;
        // Both go into the Login action as `Key: Value` lines: a CR or LF would add
        // lines of its own.
        let printable = |s: &str| !s.is_empty() && s.chars().all(|c| !c.is_control());
        if !printable(raw.username.get_ref()) {
            let at = if raw.username.get_ref().is_empty() {
                span.clone()
            } else {
                raw.username.span()
            };
            return Err((at, "ami.username is required and must be printable".into()));
        }
        let Some((secret, secret_span)) = read_secret(&raw.secret, &raw.secret_file, "ami.secret")?
        else {
            return Err((span, "ami.secret or ami.secret_file is required".into()));
        };
        if !printable(&secret) {
            return Err((
                secret_span,
                "the AMI secret must be printable and not empty".into(),
            ));
        }
        let ping = *raw.ping_interval_seconds.get_ref();
        if !(1.0..=3600.0).contains(&ping) {
            return Err((
                raw.ping_interval_seconds.span(),
                "ami.ping_interval_seconds must be between 1 and 3600".into(),
            ));
        }
        if *raw.window_seconds.get_ref() == 0 {
            return Err((
                raw.window_seconds.span(),
                "ami.window_seconds must be at least 1".into(),
            ));
        }
        if *raw.max_unknown_accounts.get_ref() > Limits::MAX_UNKNOWN_ACCOUNTS {
            // Each address keeps one more name than the limit: this bounds its memory.
            return Err((
                raw.max_unknown_accounts.span(),
                format!(
                    "ami.max_unknown_accounts must be at most {}",
                    Limits::MAX_UNKNOWN_ACCOUNTS
                ),
            ));
        }
        Ok(AmiConfig {
            address,
            username: raw.username.into_inner(),
            secret,
            ping_interval: Duration::from_secs_f64(ping),
            limits: Limits {
                window: Duration::from_secs(*raw.window_seconds.get_ref()),
                auth_failures: raw.max_auth_failures,
                unknown_accounts: raw.max_unknown_accounts.into_inner(),
                error_events: raw.max_error_events,
                unauthenticated_requests: raw.max_unauthenticated_requests,
            },
        })
    }
}

/// The `[crowdsec]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCrowdsec {
    lapi_url: Spanned<String>,
    machine_id: Spanned<String>,
    password: Spanned<String>,
    password_file: Spanned<String>,
    ban_duration: Spanned<String>,
    queue_size: Spanned<usize>,
    batch_size: Spanned<usize>,
}

impl Default for RawCrowdsec {
    fn default() -> RawCrowdsec {
        let text = |s: &str| Spanned::new(0..0, s.to_string());
        RawCrowdsec {
            lapi_url: text("http://127.0.0.1:8080"),
            machine_id: text(""),
            password: text(""),
            password_file: text(""),
            ban_duration: text("4h"),
            queue_size: Spanned::new(0..0, 10_000),
            batch_size: Spanned::new(0..0, 100),
        }
    }
}

impl RawCrowdsec {
    fn validate(table: Spanned<RawCrowdsec>) -> Result<CrowdsecConfig, Invalid> {
        let span = table.span();
        let raw = table.into_inner();
        let url = raw.lapi_url.get_ref().trim_end_matches('/');
        let host = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .unwrap_or("");
        if host.is_empty() || host.contains(['/', '?', '#', ' ']) {
            return Err((
                raw.lapi_url.span(),
                format!(
                    "crowdsec.lapi_url {:?} is not an http:// or https:// base URL such as http://127.0.0.1:8080",
                    raw.lapi_url.get_ref()
                ),
            ));
        }
        let machine = raw.machine_id.get_ref();
        if machine.is_empty() || machine.chars().any(|c| c.is_control() || c == '"') {
            let at = if machine.is_empty() {
                span.clone()
            } else {
                raw.machine_id.span()
            };
            return Err((
                at,
                "crowdsec.machine_id is required (the name given to cscli machines add)".into(),
            ));
        }
        let Some((password, _)) =
            read_secret(&raw.password, &raw.password_file, "crowdsec.password")?
        else {
            return Err((
                span,
                "crowdsec.password or crowdsec.password_file is required".into(),
            ));
        };
        if !is_go_duration(raw.ban_duration.get_ref()) {
            return Err((
                raw.ban_duration.span(),
                format!(
                    "crowdsec.ban_duration {:?} is not a duration such as 4h, 90m or 1h30m",
                    raw.ban_duration.get_ref()
                ),
            ));
        }
        if *raw.queue_size.get_ref() == 0 {
            return Err((
                raw.queue_size.span(),
                "crowdsec.queue_size must be at least 1".into(),
            ));
        }
        if !(1..=1000).contains(raw.batch_size.get_ref()) {
            return Err((
                raw.batch_size.span(),
                "crowdsec.batch_size must be between 1 and 1000".into(),
            ));
        }
        Ok(CrowdsecConfig {
            lapi_url: url.to_string(),
            machine_id: machine.clone(),
            password,
            ban_duration: raw.ban_duration.into_inner(),
            queue_size: raw.queue_size.into_inner(),
            batch_size: raw.batch_size.into_inner(),
        })
    }
}

/// `4h`, `90m`, `1h30m`, `45s`: what CrowdSec (Go's `time.ParseDuration`) takes for a
/// decision, whole numbers of hours, minutes and seconds, not zero.
fn is_go_duration(text: &str) -> bool {
    let mut rest = text;
    let mut total = 0u64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let Ok(n) = rest[..digits].parse::<u64>() else {
            return false;
        };
        let unit = match rest[digits..].chars().next() {
            Some('h') => 3600,
            Some('m') => 60,
            Some('s') => 1,
            _ => return false,
        };
        total = total.saturating_add(n.saturating_mul(unit));
        rest = &rest[digits + 1..];
    }
    total > 0
}

fn parse_network(text: &Spanned<String>, what: &str) -> Result<IpNet, Invalid> {
    let s = text.get_ref().trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| {
            (
                text.span(),
                format!("{what} {s:?} is not an IPv4 or IPv6 address or CIDR"),
            )
        })
}

/// A compiled list of regular expressions, kept with their source for display.
///
/// `regex-automata` matches in linear time, so a 64 KiB extension cannot make a pattern
/// backtrack for seconds the way Python's `re` can. Semantics are ASCII: `\d` is
/// `[0-9]` as in an extension, case folding is ASCII's, and any byte can be matched.
#[derive(Clone)]
pub struct Patterns {
    sources: Vec<String>,
    regex: Regex,
}

impl Patterns {
    /// Each pattern must match the whole value.
    fn whole(patterns: &[Spanned<String>]) -> Result<Patterns, Invalid> {
        Patterns::build(patterns, false, |p| format!(r"\A(?:{p})\z"))
    }

    /// Each pattern may match anywhere in the value, ignoring case.
    fn anywhere_ignoring_case(patterns: &[Spanned<String>]) -> Result<Patterns, Invalid> {
        Patterns::build(patterns, true, |p| format!("(?:{p})"))
    }

    fn build(
        patterns: &[Spanned<String>],
        ignore_case: bool,
        wrap: impl Fn(&str) -> String,
    ) -> Result<Patterns, Invalid> {
        // No prefilter and no explicit capture groups: building the literal prefilter for
        // case-insensitive patterns cost a millisecond on every System() call, and the
        // values we search are short.
        let compile = |sources: &[&Spanned<String>]| {
            meta::Builder::new()
                .configure(
                    meta::Config::new()
                        .auto_prefilter(false)
                        .which_captures(WhichCaptures::Implicit)
                        .utf8_empty(false),
                )
                .syntax(
                    syntax::Config::new()
                        .unicode(false)
                        .utf8(false)
                        .case_insensitive(ignore_case),
                )
                .build_many(
                    &sources
                        .iter()
                        .map(|p| wrap(p.get_ref()))
                        .collect::<Vec<_>>(),
                )
                .map_err(|e| regex_reason(&e))
        };
        let all: Vec<&Spanned<String>> = patterns.iter().collect();
        let regex = compile(&all).map_err(|_| {
            // Find the culprit only on the error path, so that its position is named.
            let (p, e) = all
                .iter()
                .find_map(|p| compile(&[p]).err().map(|e| (p, e)))
                .expect("a list that fails to compile has a pattern that fails");
            (p.span(), format!("invalid pattern {:?}: {e}", p.get_ref()))
        })?;
        Ok(Patterns {
            sources: patterns.iter().map(|p| p.get_ref().clone()).collect(),
            regex,
        })
    }

    /// A pattern that matches `value` (the one whose match starts first), if any.
    pub fn matching(&self, value: &[u8]) -> Option<&str> {
        self.regex
            .find(value)
            .map(|m| self.sources[m.pattern().as_usize()].as_str())
    }

    pub fn sources(&self) -> &[String] {
        &self.sources
    }
}

impl fmt::Debug for Patterns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.sources).finish()
    }
}

/// Regex syntax errors draw a caret diagram over several lines; keep the gist.
fn regex_reason(e: &meta::BuildError) -> String {
    let text = match e.syntax_error() {
        Some(syntax) => syntax.to_string(),
        None => e.to_string(),
    };
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or(text.lines().next().unwrap_or("invalid regex"))
        .to_string()
}

/// A configuration that cannot be used, with the place to look.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read the configuration: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

impl ConfigError {
    fn at(path: &Path, text: &str, span: Range<usize>, message: String) -> ConfigError {
        let (line, column) = line_column(text, span.start);
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            message: message.trim().replace('\n', " "),
        }
    }
}

/// One-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

/// Which file the settings came from, for `check-config` and error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--config PATH`: must exist.
    Flag(PathBuf),
    /// `$EXTSECURITY_CONFIG`: must exist.
    Env(PathBuf),
    /// The default path, which exists.
    DefaultPath(PathBuf),
    /// No file at the default path: the seed's settings.
    BuiltIn,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(p) => write!(f, "{} (from --config)", p.display()),
            Source::Env(p) => write!(f, "{} (from ${ENV_VAR})", p.display()),
            Source::DefaultPath(p) => write!(f, "{}", p.display()),
            Source::BuiltIn => write!(f, "built-in defaults (no file at {DEFAULT_PATH})"),
        }
    }
}

/// Finds and loads the configuration: `--config`, else `$EXTSECURITY_CONFIG`, else the
/// default path, else built-in defaults. A file that was named explicitly must exist.
pub fn load(flag: Option<&Path>, env: Option<OsString>) -> Result<(Config, Source), ConfigError> {
    let source = match (flag, env.filter(|v| !v.is_empty())) {
        (Some(p), _) => Source::Flag(p.to_path_buf()),
        (None, Some(v)) => Source::Env(PathBuf::from(v)),
        (None, None) if Path::new(DEFAULT_PATH).exists() => {
            Source::DefaultPath(PathBuf::from(DEFAULT_PATH))
        }
        (None, None) => return Ok((Config::default(), Source::BuiltIn)),
    };
    let path = match &source {
        Source::Flag(p) | Source::Env(p) | Source::DefaultPath(p) => p,
        Source::BuiltIn => unreachable!("handled above"),
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    Ok((Config::from_toml(&text, path)?, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::from_toml(text, Path::new("t.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_the_seed_settings() {
        let c = Config::default();
        assert_eq!(
            c.log_file,
            Path::new("/var/log/asterisk/inbound_extsecurity.log")
        );
        assert_eq!(c.tarpit, Duration::from_secs(2));
        assert!(c.callerid_num_must_be_numeric);
        assert!(c.exten_must_be_numeric);
        assert_eq!(c.exten_min_length, 10);
        assert_eq!(c.exten_max_length, 14);
        assert_eq!(c.blocked_extensions.sources(), [r"\d{1,3}"]);
        assert!(c.log_ok_calls);
        assert!(c.trusted_networks.is_empty());
        assert_eq!(
            c.blocked_user_agents.sources().len(),
            DEFAULT_BLOCKED_USER_AGENTS.len()
        );
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.exten_min_length, 10);
        assert_eq!(c.tarpit, Duration::from_secs(2));
    }

    #[test]
    fn seed_names_typos_included_are_accepted() {
        let c = parse(
            r#"
logfile_path = "/tmp/x.log"
default_sleep_protection_time_sec = 0.5
alert_if_callerid_num_is_not_numeric = false
alert_if_dialed_exten_is_not_numeric = false
alert_if_dialed_exten_lenghts_less_than = 3
alert_if_dialed_exten_lenghts_more_than = 20
automatic_block_attempts_to_extensions = ['\d{1,2}', '900\d+']
"#,
        )
        .unwrap();
        assert_eq!(c.log_file, Path::new("/tmp/x.log"));
        assert_eq!(c.tarpit, Duration::from_millis(500));
        assert!(!c.callerid_num_must_be_numeric);
        assert!(!c.exten_must_be_numeric);
        assert_eq!((c.exten_min_length, c.exten_max_length), (3, 20));
        assert_eq!(c.blocked_extensions.sources(), [r"\d{1,2}", r"900\d+"]);
    }

    #[test]
    fn corrected_names_are_accepted() {
        let c = parse(
            "alert_if_dialed_exten_length_less_than = 4\nalert_if_dialed_exten_length_more_than = 5\n",
        )
        .unwrap();
        assert_eq!((c.exten_min_length, c.exten_max_length), (4, 5));
        let c = parse("exten_min_length = 0\nexten_max_length = 0\ntarpit_seconds = 3\n").unwrap();
        assert_eq!((c.exten_min_length, c.exten_max_length), (0, 0));
        assert_eq!(c.tarpit, Duration::from_secs(3));
    }

    #[test]
    fn unknown_keys_are_errors_with_a_position() {
        let e = parse("log_ok_calls = true\nlog_ok_call = false\n").unwrap_err();
        assert!(
            e.starts_with("t.toml:2:1: unknown field `log_ok_call`"),
            "{e}"
        );
    }

    #[test]
    fn wrong_types_are_errors_with_a_position() {
        let e = parse("exten_min_length = \"ten\"\n").unwrap_err();
        assert!(e.starts_with("t.toml:1:20: "), "{e}");
        let e = parse("\n\nexten_max_length = -1\n").unwrap_err();
        assert!(e.starts_with("t.toml:3:"), "{e}");
    }

    #[test]
    fn a_seed_name_and_its_new_name_together_are_an_error() {
        let e = parse("logfile_path = \"/a\"\nlog_file = \"/b\"\n").unwrap_err();
        assert!(e.contains("duplicate field `log_file`"), "{e}");
    }

    #[test]
    fn invalid_regex_names_the_pattern_and_position() {
        let e = parse("blocked_extensions = ['\\d+', '(unclosed']\n").unwrap_err();
        assert!(
            e.starts_with("t.toml:1:30: invalid pattern \"(unclosed\""),
            "{e}"
        );
        let e = parse("blocked_user_agents = [\n  'ok',\n  '[z-a]',\n]\n").unwrap_err();
        assert!(
            e.starts_with("t.toml:3:3: invalid pattern \"[z-a]\""),
            "{e}"
        );
    }

    #[test]
    fn tarpit_must_be_a_sane_number_of_seconds() {
        assert!(
            parse("tarpit_seconds = -1")
                .unwrap_err()
                .contains("between 0 and 300")
        );
        assert!(
            parse("tarpit_seconds = nan")
                .unwrap_err()
                .starts_with("t.toml:1:18: ")
        );
        assert!(parse("tarpit_seconds = inf").is_err());
        assert_eq!(parse("tarpit_seconds = 0").unwrap().tarpit, Duration::ZERO);
    }

    #[test]
    fn trusted_networks_take_cidrs_and_bare_addresses() {
        let c = parse(
            r#"trusted_networks = ["192.0.2.0/24", "2001:db8::/32", "198.51.100.7", "10.1.2.3/8"]"#,
        )
        .unwrap();
        for ip in ["192.0.2.200", "2001:db8::1", "198.51.100.7", "10.200.0.1"] {
            assert!(c.is_trusted(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["192.0.3.1", "2001:db9::1", "198.51.100.8"] {
            assert!(!c.is_trusted(ip.parse().unwrap()), "{ip}");
        }
        let e = parse("trusted_networks = [\"192.0.2.0/33\"]").unwrap_err();
        assert!(
            e.starts_with("t.toml:1:21: trusted network \"192.0.2.0/33\""),
            "{e}"
        );
    }

    #[test]
    fn patterns_match_the_whole_extension() {
        let c = Config::default();
        assert_eq!(c.blocked_extensions.matching(b"123"), Some(r"\d{1,3}"));
        assert_eq!(c.blocked_extensions.matching(b"1234"), None);
        assert_eq!(c.blocked_extensions.matching(b"12\n"), None);
    }

    #[test]
    fn user_agents_match_anywhere_ignoring_case() {
        let c = Config::default();
        assert!(
            c.blocked_user_agents
                .matching(b"Friendly-Scanner")
                .is_some()
        );
        assert!(c.blocked_user_agents.matching(b"x sipcli/v1.8").is_some());
        assert!(
            c.blocked_user_agents
                .matching(b"Yealink SIP-T46S")
                .is_none()
        );
    }

    #[test]
    fn daemon_and_memory_tables_have_defaults_and_are_validated() {
        let c = Config::default();
        assert_eq!(c.daemon.listen.to_string(), "127.0.0.1:4573");
        assert_eq!(c.daemon.metrics_listen, None);
        assert_eq!(c.memory.max_extensions, 10);
        let c = parse("[daemon]\nlisten = '[::1]:4600'\nmetrics_listen = '127.0.0.1:9100'\n[memory]\nmax_calls = 5\n").unwrap();
        assert_eq!(c.daemon.listen.to_string(), "[::1]:4600");
        assert_eq!(c.daemon.metrics_listen.unwrap().port(), 9100);
        assert_eq!(c.memory.max_calls, 5);
        let e = parse("[daemon]\nmetrics_listen = '0.0.0.0:9100'\n").unwrap_err();
        assert!(
            e.starts_with("t.toml:2:18: daemon.metrics_listen must be a loopback address"),
            "{e}"
        );
        let e = parse("[memory]\nmax_tracked_ips = 0\n").unwrap_err();
        assert!(
            e.starts_with("t.toml:2:19: memory.max_tracked_ips must be at least 1"),
            "{e}"
        );
        assert_eq!(c.daemon.allowed_clients.len(), 2);
        assert_eq!(c.daemon.secret, None);
        let c = parse("[daemon]\nsecret = 'abcdefghijklmnop'\nallowed_clients = ['192.0.2.10']\n")
            .unwrap();
        assert_eq!(c.daemon.secret.as_deref(), Some("abcdefghijklmnop"));
        assert!(c.daemon.allowed_clients[0].contains(&"192.0.2.10".parse::<IpAddr>().unwrap()));
        let e = parse("[daemon]\nsecret = 'short'\n").unwrap_err();
        assert!(
            e.starts_with("t.toml:2:10: the daemon secret must be at least 16"),
            "{e}"
        );
        let e = parse("[daemon]\nsecret = 'a&b=c&aaaaaaaaaaaaaaa'\n").unwrap_err();
        assert!(e.contains("must be at least 16 characters of"), "{e}");
        let e = parse("[memory]\nwindow = 5\n").unwrap_err();
        assert!(e.starts_with("t.toml:2:1: unknown field `window`"), "{e}");
        assert_eq!(Config::default().daemon.listen_backlog, 4096);
        let e = parse("[daemon]\nlisten_backlog = 0\n").unwrap_err();
        assert!(
            e.starts_with("t.toml:2:18: daemon.listen_backlog must be at least 1"),
            "{e}"
        );
    }

    #[test]
    fn the_ami_table_is_off_unless_present_and_validated() {
        assert_eq!(parse("").unwrap().ami, None);
        let c = parse("[ami]\nusername = 'extsecurity'\nsecret = 'pw'\nmax_auth_failures = 3\n")
            .unwrap();
        let ami = c.ami.unwrap();
        assert_eq!(ami.address.to_string(), "127.0.0.1:5038");
        assert_eq!(
            (ami.username.as_str(), ami.secret.as_str()),
            ("extsecurity", "pw")
        );
        assert_eq!(ami.limits.auth_failures, 3);
        assert_eq!(ami.limits.unknown_accounts, 5);
        assert_eq!(ami.limits.unauthenticated_requests, 120);
        assert_eq!(ami.limits.window, Duration::from_secs(60));
        for (text, error) in [
            (
                "[ami]\nsecret = 'pw'\n",
                "t.toml:1:1: ami.username is required",
            ),
            (
                "[ami]\nusername = 'u'\n",
                "t.toml:1:1: ami.secret or ami.secret_file is required",
            ),
            (
                "[ami]\nusername = \"u\\r\\nAction: Originate\"\nsecret = 'pw'\n",
                "t.toml:2:12: ami.username is required and must be printable",
            ),
            (
                "[ami]\nusername = 'u'\nsecret = \"p\\nw\"\n",
                "t.toml:3:10: the AMI secret must be printable",
            ),
            (
                "[ami]\nusername = 'u'\nsecret = 'pw'\naddress = 'localhost'\n",
                "t.toml:4:11: ami.address \"localhost\" is not",
            ),
            (
                "[ami]\nusername = 'u'\nsecret = 'pw'\nsecret_file = '/x'\n",
                "t.toml:4:15: ami.secret and ami.secret_file exclude",
            ),
            (
                "[ami]\nusername = 'u'\nsecret_file = '/nonexistent/s'\n",
                "t.toml:3:15: ami.secret_file /nonexistent/s: No such file",
            ),
            (
                "[ami]\nusername = 'u'\nsecret = 'pw'\nwindow_seconds = 0\n",
                "t.toml:4:18: ami.window_seconds must be at least 1",
            ),
            (
                "[ami]\nusername = 'u'\nsecret = 'pw'\nping = 1\n",
                "t.toml:4:1: unknown field `ping`",
            ),
            (
                "[ami]\nusername = 'u'\nsecret = 'pw'\nmax_unknown_accounts = 51\n",
                "t.toml:4:24: ami.max_unknown_accounts must be at most 50",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with(error), "{text:?}: {e}");
        }
        assert!(!parse("[daemon]\nfastagi = false\n").unwrap().daemon.fastagi);
    }

    #[test]
    fn the_crowdsec_table_is_off_unless_present_and_validated() {
        assert_eq!(parse("").unwrap().crowdsec, None);
        let c = parse("[crowdsec]\nmachine_id = 'pbx1'\npassword = 'pw'\nlapi_url = 'https://lapi.example.net:8080/'\n")
            .unwrap()
            .crowdsec
            .unwrap();
        assert_eq!(c.lapi_url, "https://lapi.example.net:8080");
        assert_eq!((c.machine_id.as_str(), c.password.as_str()), ("pbx1", "pw"));
        assert_eq!(
            (c.ban_duration.as_str(), c.queue_size, c.batch_size),
            ("4h", 10_000, 100)
        );
        for (text, error) in [
            (
                "[crowdsec]\npassword = 'pw'\n",
                "t.toml:1:1: crowdsec.machine_id is required",
            ),
            (
                "[crowdsec]\nmachine_id = 'm'\n",
                "t.toml:1:1: crowdsec.password or crowdsec.password_file is required",
            ),
            (
                "[crowdsec]\nmachine_id = 'm'\npassword = 'pw'\nlapi_url = '127.0.0.1:8080'\n",
                "t.toml:4:12: crowdsec.lapi_url \"127.0.0.1:8080\" is not",
            ),
            (
                "[crowdsec]\nmachine_id = 'm'\npassword = 'pw'\nban_duration = '4 hours'\n",
                "t.toml:4:16: crowdsec.ban_duration \"4 hours\" is not",
            ),
            (
                "[crowdsec]\nmachine_id = 'm'\npassword_file = '/nonexistent/p'\n",
                "t.toml:3:17: crowdsec.password_file /nonexistent/p: No such file",
            ),
            (
                "[crowdsec]\nmachine_id = 'm'\npassword = 'pw'\nbatch_size = 0\n",
                "t.toml:4:14: crowdsec.batch_size must be between 1 and 1000",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with(error), "{text:?}: {e}");
        }
        for ok in ["4h", "90m", "1h30m", "45s", "168h"] {
            assert!(is_go_duration(ok), "{ok}");
        }
        for bad in ["", "0h", "4", "h", "4d", "-4h", "4h "] {
            assert!(!is_go_duration(bad), "{bad:?}");
        }
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("é\nx", 2), (1, 2));
    }
}
