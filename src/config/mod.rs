//! Settings, read from TOML.
//!
//! Every key of the seed script's `settings` dictionary is accepted under its seed name
//! (typos included) as an alias of a clearer name, so an administrator can copy the
//! seed's values across unchanged. A file is validated whole before it is used: an
//! unknown key, a wrong type, a bad regex or CIDR, contradictory settings are an error
//! naming `path:line:column` and the key ([`error`]). Secret files are named here and
//! read only by whoever needs them ([`secret`]).

use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

mod ami;
mod crowdsec;
mod daemon;
mod edge;
pub mod effective;
mod error;
mod fraud;
mod memory;
mod nftables;
mod notify;
mod patterns;
mod secret;

pub use ami::{AmiAuth, AmiConfig, AmiTls};
pub use crowdsec::{CrowdsecConfig, host_port};
pub use daemon::{DEFAULT_CONTROL_SOCKET, DaemonConfig};
pub use edge::{Countries, CountryRule, EdgeConfig};
pub use error::ConfigError;
pub use fraud::{CallEnd, DEFAULT_HIGH_RISK_FILE, FraudConfig, MAX_LEARNED, read_high_risk};
pub use nftables::NftablesConfig;
pub use notify::{NotifyConfig, Security, SmtpConfig};
pub use patterns::Patterns;
pub use secret::{Secret, SecretError, SecretSource, Shape};

use ami::RawAmi;
use crowdsec::RawCrowdsec;
use daemon::RawDaemon;
use edge::RawEdge;
use fraud::RawFraud;
use memory::RawMemory;
use nftables::RawNftables;
use notify::RawNotify;

pub use memory::MemoryConfig;

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
pub(crate) type Invalid = (Range<usize>, String);

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
    /// Notifications by e-mail and webhook (`[notify]`); off unless the table is present.
    pub notify: Option<NotifyConfig>,
    /// Bans in the kernel (`[nftables]`); off unless `enabled = true`.
    pub nftables: Option<NftablesConfig>,
    /// What the kernel drops before Asterisk sees it (`[edge]`); `nftables.edge` holds
    /// the same, for the table's ruleset.
    pub edge: Option<EdgeConfig>,
    /// `nftables.table` whether the bans are on or off: with them off, `serve` removes
    /// that table (and the bans it still holds) at start.
    pub nftables_table: String,
    /// The outbound check of authenticated accounts (`[fraud]`); off unless
    /// `enabled = true`.
    pub fraud: Option<FraudConfig>,
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
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(path, text, &e))?;
        let config = Config::from_raw(raw)
            .map_err(|(span, message)| ConfigError::at(path, text, span, message))?;
        config.contradictions().map_err(|(key, message)| {
            let span = error::span_of(text, key).unwrap_or(0..0);
            ConfigError::at(path, text, span, message)
        })?;
        Ok(config)
    }

    /// Every secret set, for `check-config` to try reading.
    pub fn secrets(&self) -> Vec<&Secret> {
        let mut all: Vec<&Secret> = self.daemon.secret.iter().collect();
        all.extend(self.ami.as_ref().map(|a| &a.secret));
        all.extend(self.crowdsec.as_ref().map(|c| &c.password));
        if let Some(n) = &self.notify {
            all.extend(n.smtp.as_ref().and_then(|s| s.password.as_ref()));
            all.extend(n.webhook_url.as_ref());
        }
        all
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
        let (min, max) = (
            *raw.exten_min_length.get_ref(),
            *raw.exten_max_length.get_ref(),
        );
        if min > 0 && max > 0 && min > max {
            return Err((
                raw.exten_min_length.span(),
                format!(
                    "exten_min_length ({min}) is above exten_max_length ({max}): every call would alert; 0 switches either off"
                ),
            ));
        }
        let config = Config {
            log_file: raw.log_file,
            tarpit: Duration::from_secs_f64(tarpit),
            callerid_num_must_be_numeric: raw.callerid_num_must_be_numeric,
            exten_must_be_numeric: raw.exten_must_be_numeric,
            exten_min_length: min,
            exten_max_length: max,
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
            notify: raw.notify.map(RawNotify::validate).transpose()?,
            nftables_table: raw.nftables.table(),
            nftables: raw.nftables.validate()?,
            edge: None,
            fraud: raw.fraud.validate()?,
        };
        let mut config = config;
        // The AMI and LAPI peers pass the edge as trusted networks do: a country list
        // must not cut the daemon off its own Asterisk or its fleet.
        let lapi = config.crowdsec.as_ref().and_then(|c| {
            let (host, _) = crowdsec::host_port(&c.lapi_url)?;
            host.parse::<std::net::IpAddr>().ok()
        });
        let ami = config.ami.as_ref().map(|a| a.address.ip());
        let mut pass = config.trusted_networks.clone();
        pass.extend(ami.into_iter().chain(lapi).map(ipnet::IpNet::from));
        config.edge = raw.edge.validate(config.nftables.as_ref(), &pass)?;
        if let Some(n) = &mut config.nftables {
            n.edge = config.edge.clone();
        }
        Ok(config)
    }

    /// Settings that are each valid but cannot hold together: the key to point at, and
    /// why.
    fn contradictions(&self) -> Result<(), (&'static str, String)> {
        if self
            .fraud
            .as_ref()
            .is_some_and(|f| f.call_end == fraud::CallEnd::Ami)
            && self.ami.is_none()
        {
            return Err((
                "fraud.call_end",
                "fraud.call_end = \"ami\" needs [ami]: the call's end comes as an AMI UserEvent (or leave it \"agi\")".into(),
            ));
        }
        let d = &self.daemon;
        if d.fastagi && d.metrics_listen == Some(d.listen) {
            return Err((
                "daemon.metrics_listen",
                format!(
                    "daemon.metrics_listen and daemon.listen are both {}: give metrics a port of their own",
                    d.listen
                ),
            ));
        }
        let clash = |other: &Path, key: &'static str| {
            (other == self.log_file).then(|| {
                (
                    key,
                    format!(
                        "{key} is log_file ({}): the alert log would be overwritten",
                        other.display()
                    ),
                )
            })
        };
        if let Some(cs) = &self.crowdsec
            && let Some(e) = clash(&cs.state_file, "crowdsec.state_file")
        {
            return Err(e);
        }
        if let Some(sock) = &d.control_socket
            && let Some(e) = clash(sock, "daemon.control_socket")
        {
            return Err(e);
        }
        if let Some(n) = &self.nftables
            && let Some(e) = clash(&n.state_file, "nftables.state_file")
        {
            return Err(e);
        }
        Ok(())
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
    exten_min_length: Spanned<usize>,
    #[serde(
        alias = "alert_if_dialed_exten_lenghts_more_than",
        alias = "alert_if_dialed_exten_length_more_than"
    )]
    exten_max_length: Spanned<usize>,
    #[serde(alias = "automatic_block_attempts_to_extensions")]
    blocked_extensions: Vec<Spanned<String>>,
    blocked_user_agents: Vec<Spanned<String>>,
    trusted_networks: Vec<Spanned<String>>,
    log_ok_calls: bool,
    memory: RawMemory,
    daemon: RawDaemon,
    ami: Option<Spanned<RawAmi>>,
    crowdsec: Option<Spanned<RawCrowdsec>>,
    notify: Option<Spanned<RawNotify>>,
    nftables: RawNftables,
    edge: RawEdge,
    fraud: RawFraud,
}

impl Default for RawConfig {
    fn default() -> RawConfig {
        let unspanned = |s: &str| Spanned::new(0..0, s.to_string());
        RawConfig {
            log_file: PathBuf::from(DEFAULT_LOG_FILE),
            tarpit_seconds: Spanned::new(0..0, 2.0),
            callerid_num_must_be_numeric: true,
            exten_must_be_numeric: true,
            exten_min_length: Spanned::new(0..0, 10),
            exten_max_length: Spanned::new(0..0, 14),
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
            notify: None,
            nftables: RawNftables::default(),
            edge: RawEdge::default(),
            fraud: RawFraud::default(),
        }
    }
}

/// `text` as an `address:port`; the error names `key` and shows `example`.
pub(crate) fn socket_address(
    text: &Spanned<String>,
    key: &str,
    example: &str,
) -> Result<SocketAddr, Invalid> {
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

/// The secret set as `inline` (`{key}`) or in the file `file` names (`{key}_file`),
/// with where it was set; both set is an error. `key` is `daemon.secret`, say. An
/// inline secret is checked now; a file is not read here ([`secret`]).
pub(crate) fn secret(
    inline: &Spanned<String>,
    file: &Spanned<String>,
    key: &'static str,
    shape: Shape,
) -> Result<Option<(Secret, Range<usize>)>, Invalid> {
    match (inline.get_ref().is_empty(), file.get_ref().is_empty()) {
        (true, true) => Ok(None),
        (false, false) => Err((
            file.span(),
            format!("{key} and {key}_file exclude each other"),
        )),
        (false, true) => {
            shape
                .check(inline.get_ref())
                .map_err(|why| (inline.span(), format!("{key}: {why}")))?;
            Ok(Some((
                Secret::inline(key, inline.get_ref(), shape),
                inline.span(),
            )))
        }
        (true, false) => {
            let path = Path::new(file.get_ref());
            if !path.is_absolute() {
                return Err((
                    file.span(),
                    format!(
                        "{key}_file {:?} must be an absolute path such as /etc/asterisk/extsecurity-ami.secret",
                        file.get_ref()
                    ),
                ));
            }
            Ok(Some((Secret::file(key, path, shape), file.span())))
        }
    }
}

pub(crate) fn parse_network(text: &Spanned<String>, what: &str) -> Result<IpNet, Invalid> {
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

impl Source {
    /// The file, unless these are the built-in defaults.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Source::Flag(p) | Source::Env(p) | Source::DefaultPath(p) => Some(p),
            Source::BuiltIn => None,
        }
    }
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
    let path = source.path().expect("a file source");
    let text = read_text(path)?;
    Ok((Config::from_toml(&text, path)?, source))
}

/// Loads the configuration again for a running daemon that started from `started`.
/// Stricter than [`load`]: a file that is gone or holds no settings at all is refused
/// (an editor half-way through a save, a config manager's empty template), where at
/// start they would mean the built-in defaults. A daemon that started on the built-in
/// defaults picks up a file that appeared at the default path.
pub fn reload(started: &Source) -> Result<(Config, Source), ConfigError> {
    let source = match started {
        Source::BuiltIn if Path::new(DEFAULT_PATH).exists() => {
            Source::DefaultPath(PathBuf::from(DEFAULT_PATH))
        }
        Source::BuiltIn => return Ok((Config::default(), Source::BuiltIn)),
        other => other.clone(),
    };
    let path = source.path().expect("a file source");
    let text = read_text(path).map_err(|e| match e {
        ConfigError::Read { path, source } if source.kind() == std::io::ErrorKind::NotFound => {
            ConfigError::Gone { path, source }
        }
        other => other,
    })?;
    let has_settings = toml::de::DeTable::parse(&text).map_or(true, |t| !t.get_ref().is_empty());
    if !has_settings {
        return Err(ConfigError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok((Config::from_toml(&text, path)?, source))
}

/// The file's text; bytes that are not UTF-8 are an error with their line.
fn read_text(path: &Path) -> Result<String, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let error = e.utf8_error();
        ConfigError::not_utf8(path, e.as_bytes(), error)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn parse(text: &str) -> Result<Config, String> {
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
        assert_eq!(
            e,
            "t.toml:2:1: unknown key `log_ok_call` (did you mean `log_ok_calls`?)"
        );
        let e = parse("[daemon]\nlisten = '127.0.0.1:1'\nlisen_backlog = 5\n").unwrap_err();
        assert_eq!(
            e,
            "t.toml:3:1: unknown key `lisen_backlog` in [daemon] (did you mean `listen_backlog`?)"
        );
    }

    #[test]
    fn a_duplicate_key_is_named() {
        let e = parse("log_ok_calls = true\nlog_ok_calls = false\n").unwrap_err();
        assert_eq!(
            e,
            "t.toml:2:1: `log_ok_calls` is set twice in the same table: keep one"
        );
        let e = parse("[ami]\nusername = 'a'\nusername = 'b'\n").unwrap_err();
        assert!(e.starts_with("t.toml:3:1: `username` is set twice"), "{e}");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_placed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        std::fs::write(&path, b"log_ok_calls = true\n# caf\xe9\n").unwrap();
        let e = load(Some(&path), None).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}:2:6: the file is not UTF-8 text (byte 0xe9); save it as UTF-8",
                path.display()
            )
        );
    }

    #[test]
    fn contradictory_settings_are_refused() {
        let e = parse("exten_min_length = 20\nexten_max_length = 5\n").unwrap_err();
        assert_eq!(
            e,
            "t.toml:1:20: exten_min_length (20) is above exten_max_length (5): every call would alert; 0 switches either off"
        );
        assert!(parse("exten_min_length = 20\nexten_max_length = 0\n").is_ok());
        let e = parse("[daemon]\nlisten = '127.0.0.1:9000'\nmetrics_listen = '127.0.0.1:9000'\n")
            .unwrap_err();
        assert!(
            e.starts_with(
                "t.toml:3:18: daemon.metrics_listen and daemon.listen are both 127.0.0.1:9000"
            ),
            "{e}"
        );
        let e = parse("log_file = '/var/x.log'\n[crowdsec]\nmachine_id = 'm'\npassword = 'p'\nstate_file = '/var/x.log'\n")
            .unwrap_err();
        assert!(
            e.starts_with("t.toml:5:14: crowdsec.state_file is log_file (/var/x.log)"),
            "{e}"
        );
    }

    #[test]
    fn a_reload_refuses_a_file_that_is_gone_or_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        let started = Source::Flag(path.clone());
        for text in ["", "\n  \n", "# only a comment\n"] {
            std::fs::write(&path, text).unwrap();
            assert!(load(Some(&path), None).is_ok(), "at start: the defaults");
            let e = reload(&started).unwrap_err();
            assert!(matches!(e, ConfigError::Empty { .. }), "{text:?}: {e}");
        }
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            reload(&started).unwrap_err(),
            ConfigError::Gone { .. }
        ));
        std::fs::write(&path, "tarpit_seconds = 1\n").unwrap();
        assert_eq!(reload(&started).unwrap().0.tarpit, Duration::from_secs(1));
    }

    #[test]
    fn wrong_types_are_errors_with_a_position() {
        let e = parse("exten_min_length = \"ten\"\n").unwrap_err();
        assert_eq!(
            e,
            "t.toml:1:20: exten_min_length must be a whole number, 0 or more, not the string \"ten\""
        );
        let e = parse("tarpit_seconds = \"10\"\n").unwrap_err();
        assert_eq!(
            e,
            "t.toml:1:18: tarpit_seconds must be a number, not the string \"10\""
        );
        let e = parse("\n\nexten_max_length = -1\n").unwrap_err();
        assert!(e.starts_with("t.toml:3:"), "{e}");
    }

    #[test]
    fn a_seed_name_and_its_new_name_together_are_an_error() {
        let e = parse("logfile_path = \"/a\"\nlog_file = \"/b\"\n").unwrap_err();
        assert_eq!(
            e,
            "t.toml:2:1: `log_file` is set twice: as `logfile_path` and `log_file` (the seed's names are aliases of ours); keep one"
        );
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
}
