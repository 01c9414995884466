//! Settings, read from TOML.
//!
//! Every key of the seed script's `settings` dictionary is accepted under its seed name
//! (typos included) as an alias of a clearer name, so an administrator can copy the
//! seed's values across unchanged. A file is validated whole before it is used: an
//! unknown key, a wrong type, a bad regex or CIDR is an error naming `path:line:column`.

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
mod memory;
mod nftables;
mod patterns;

pub use ami::AmiConfig;
pub use crowdsec::CrowdsecConfig;
pub use daemon::{DEFAULT_CONTROL_SOCKET, DaemonConfig};
pub use nftables::NftablesConfig;
pub use patterns::Patterns;

use ami::RawAmi;
use crowdsec::RawCrowdsec;
use daemon::RawDaemon;
use memory::RawMemory;
use nftables::RawNftables;

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
    /// Bans in the kernel (`[nftables]`); off unless `enabled = true`.
    pub nftables: Option<NftablesConfig>,
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
            nftables: raw.nftables.validate()?,
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
    nftables: RawNftables,
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
            nftables: RawNftables::default(),
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

/// `inline` (`{key}`), or the first line of the file `file` names (`{key}_file`), with
/// where it was set; both set is an error. `key` is `daemon.secret`, say.
pub(crate) fn read_secret(
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
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("é\nx", 2), (1, 2));
    }
}
