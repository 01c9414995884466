//! CrowdSec's Local API, as a *machine* (design.md §3c): log in, push alerts that carry
//! a ban decision. The HTTP calls block; the daemon makes them on a blocking thread.
//!
//! What the LAPI of Debian's `crowdsec` 1.4.6 requires, as measured: a `User-Agent` of
//! the form `name/version` at login (without one it answers 401 "incorrect Username or
//! Password", as if the password were wrong); every field of an alert below, or an
//! HTTP 500; a token that lasts an hour. A POST that failed with a 5xx may have stored
//! its alerts anyway, so a retried batch can duplicate bans: harmless.

pub mod stream;
use std::net::{IpAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::json;

use crate::config::CrowdsecConfig;

/// Exactly one `/`: the LAPI checks the form.
pub const USER_AGENT: &str = concat!("extsecurity/", env!("CARGO_PKG_VERSION"));
/// A request that takes longer is taken for a failure (and retried).
const TIMEOUT: Duration = Duration::from_secs(10);
/// A LAPI that does not accept a connection within this is down for now.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The LAPI's answer is read up to this; its error text is logged whole.
const MAX_ANSWER: u64 = 64 * 1024;
/// The most a decision stream may weigh: a startup pull of a fleet's LAPI with
/// community blocklists holds tens of thousands of decisions.
const MAX_STREAM: u64 = 64 << 20;
/// The `origin` of our decisions (`cscli decisions list -a` shows them).
pub const ORIGIN: &str = "extsecurity";

/// One alert to push: an address extsecurity wrote an `ERROR` line for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub ip: IpAddr,
    /// The reason code of the line (`auth_bruteforce`, `wrong_exten_min_length(10)`…).
    pub reason: String,
    pub at: jiff::Timestamp,
}

impl Alert {
    /// The alert an alert-log line stands for: an `ERROR` line's address, reason and
    /// time (local, as written). `None` for any other line. The fields read come before
    /// any caller value, which the writer escapes, so a caller cannot forge one.
    pub fn from_log_line(line: &[u8]) -> Option<Alert> {
        use crate::alert_log::Parsed;
        let (time, ip, reason) = match crate::alert_log::parse(line)? {
            Parsed::Call {
                time,
                alert: true,
                ip,
                reason,
                ..
            } => (time, ip, reason),
            // The AMI rules' alerts (password guessing, account scans), bans by hand.
            Parsed::Ban { time, ip, reason } => (time, ip, reason),
            // Toll fraud bans the address the stolen account called from.
            Parsed::Outbound {
                time,
                level: "ERROR",
                ip: Some(ip),
                reason,
                ..
            } => (time, ip, reason),
            _ => return None,
        };
        let rule = crate::alert_log::rule_of(reason);
        let word = |n: &str| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        let argument_ok = match reason[rule.len()..].strip_prefix('(') {
            None => reason.len() == rule.len(),
            Some(rest) => rest.strip_suffix(')').is_some_and(|n| {
                !n.is_empty() && (n.bytes().all(|b| b.is_ascii_digit()) || word(n))
            }),
        };
        if rule.is_empty()
            || !rule.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            || !argument_ok
        {
            return None;
        }
        let civil: jiff::civil::DateTime = time.parse().ok()?;
        let at = crate::clock::local_zone().to_timestamp(civil).ok()?;
        Some(Alert {
            ip: ip.parse().ok()?,
            reason: reason.to_string(),
            at,
        })
    }

    /// What is left of a ban of `ban` that started at this alert, at `now`.
    pub fn remaining(&self, ban: Duration, now: jiff::Timestamp) -> Duration {
        ban.saturating_sub(age(self.at, now))
    }

    /// `extsecurity/<reason>`, the reason's `(N)` argument left out: one scenario per
    /// rule, whatever its setting.
    pub fn scenario(&self) -> String {
        let rule = crate::alert_log::rule_of(&self.reason);
        format!("extsecurity/{rule}")
    }
}

/// The body of `POST /v1/alerts` for a batch: one CrowdSec alert per scenario in it,
/// carrying one ban decision per address (and one event per line).
///
/// Why not one CrowdSec alert per line: the LAPI stores an alert and a decision in
/// separate SQLite transactions, and on Debian's LAPI one alert per ban took ~900 bans
/// a second, where one alert carrying 100 bans took ~4,700 (`cscli decisions import`
/// makes such alerts too). The alert's `source` is its first address; each decision
/// names its own. Fewer alerts also means Debian's `flush.max_items` reaches our bans
/// later.
///
/// A ban lasts `ban` from the alert, not from the push: an alert delivered after an
/// outage bans for what is left (its decision's `duration` in seconds).
pub fn alerts_body(alerts: &[Alert], ban: &Ban, now: jiff::Timestamp) -> String {
    let mut scenarios: Vec<String> = alerts.iter().map(Alert::scenario).collect();
    scenarios.sort();
    scenarios.dedup();
    let items: Vec<serde_json::Value> = scenarios
        .iter()
        .map(|scenario| {
            let group: Vec<&Alert> = alerts
                .iter()
                .filter(|a| &a.scenario() == scenario)
                .collect();
            scenario_alert(scenario, &group, ban, now)
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}

/// How long ago `at` was at `now` (zero for a time still to come).
fn age(at: jiff::Timestamp, now: jiff::Timestamp) -> Duration {
    Duration::try_from(now.duration_since(at)).unwrap_or_default()
}

/// How long a pushed ban lasts: as configured (`4h`), and in seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban<'a> {
    pub text: &'a str,
    pub length: Duration,
}

impl Ban<'_> {
    /// The decision's `duration` for a ban that started at `at`: the configured text
    /// while under a second has passed, else the seconds left (at least one).
    fn left(&self, at: jiff::Timestamp, now: jiff::Timestamp) -> String {
        let age = age(at, now);
        if age < Duration::from_secs(1) {
            return self.text.to_string();
        }
        format!("{}s", self.length.saturating_sub(age).as_secs().max(1))
    }
}

/// One CrowdSec alert for `group` (non-empty, one scenario).
fn scenario_alert(
    scenario: &str,
    group: &[&Alert],
    ban: &Ban,
    now: jiff::Timestamp,
) -> serde_json::Value {
    let first = group[0];
    let (start, stop) = group.iter().fold((first.at, first.at), |(lo, hi), a| {
        (lo.min(a.at), hi.max(a.at))
    });
    let mut ips: Vec<IpAddr> = group.iter().map(|a| a.ip).collect();
    ips.sort();
    ips.dedup();
    let events: Vec<serde_json::Value> = group
        .iter()
        .map(|a| {
            json!({
                "timestamp": a.at.to_string(),
                "meta": [
                    {"key": "source_ip", "value": a.ip.to_string()},
                    {"key": "reason", "value": a.reason},
                    {"key": "service", "value": "asterisk"},
                ],
            })
        })
        .collect();
    let decisions: Vec<serde_json::Value> = ips
        .iter()
        .map(|ip| {
            let latest = group
                .iter()
                .filter(|a| a.ip == *ip)
                .map(|a| a.at)
                .max()
                .unwrap_or(now);
            json!({
                "origin": ORIGIN,
                "type": "ban",
                "scope": "Ip",
                "value": ip.to_string(),
                "duration": ban.left(latest, now),
                "scenario": scenario,
            })
        })
        .collect();
    let message = match ips.len() {
        1 => format!("extsecurity: {} {}", first.ip, first.reason),
        n => format!("extsecurity: {n} addresses, {scenario}"),
    };
    let source = first.ip.to_string();
    json!({
        "scenario": scenario,
        "scenario_hash": "",
        "scenario_version": env!("CARGO_PKG_VERSION"),
        "message": message,
        "events_count": group.len(),
        "start_at": start.to_string(),
        "stop_at": stop.to_string(),
        "capacity": 0,
        "leakspeed": "0",
        "simulated": false,
        "remediation": true,
        "events": events,
        "source": {"scope": "Ip", "value": source, "ip": source},
        "decisions": decisions,
    })
}

/// Why a call to the LAPI failed.
#[derive(Debug, thiserror::Error)]
pub enum LapiError {
    /// Connection refused or timed out, TLS failure: try again once it accepts a
    /// connection ([`probe`]).
    #[error("the LAPI at {url} is unreachable: {why}")]
    Unreachable { url: String, why: String },
    /// It answered, but with a 5xx or something that is not its answer: try later.
    #[error("the LAPI at {url} is failing: {why}")]
    Failing { url: String, why: String },
    /// A 401/403: the machine is unknown, not validated, or its password is wrong.
    #[error("the LAPI at {url} refused machine {machine:?}: {why}")]
    Refused {
        url: String,
        machine: String,
        why: String,
    },
    /// The machine's password could not be read (its file, as this user).
    #[error("cannot read the machine's password: {0}")]
    Secret(String),
    /// Any other 4xx: the request itself is wrong; sending it again will not help.
    #[error("the LAPI at {url} rejected the request: HTTP {status}: {body}")]
    Rejected {
        url: String,
        status: u16,
        body: String,
    },
}

/// A logged-in (or not yet logged-in) machine.
pub struct Client {
    agent: ureq::Agent,
    config: CrowdsecConfig,
    token: Option<Token>,
}

struct Token {
    value: String,
    /// When to log in again: a minute before the LAPI's `expire`.
    renew_at: jiff::Timestamp,
}

impl Client {
    pub fn new(config: CrowdsecConfig) -> Client {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .user_agent(USER_AGENT)
            .http_status_as_error(false)
            .build()
            .into();
        Client {
            agent,
            config,
            token: None,
        }
    }

    pub fn config(&self) -> &CrowdsecConfig {
        &self.config
    }

    /// Logs in; returns when the token expires, as the LAPI wrote it.
    pub fn login(&mut self) -> Result<String, LapiError> {
        let password = self
            .config
            .password
            .read()
            .map_err(|e| LapiError::Secret(e.to_string()))?;
        let body = json!({
            "machine_id": self.config.machine_id,
            "password": password,
            "scenarios": [],
        })
        .to_string();
        let (status, text) = self.post("/v1/watchers/login", None, &body)?;
        if status != 200 {
            return Err(self.status_error(status, text));
        }
        let answer: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| self.failing(format!("login answer: {e}")))?;
        let value = answer["token"].as_str().unwrap_or_default().to_string();
        let expire = answer["expire"].as_str().unwrap_or_default().to_string();
        if value.is_empty() {
            return Err(self.failing(format!("login answer without a token: {text}")));
        }
        let renew_at = expire
            .parse::<jiff::Timestamp>()
            .ok()
            .and_then(|t| t.checked_sub(jiff::SignedDuration::from_secs(60)).ok())
            .unwrap_or_else(|| jiff::Timestamp::now() + jiff::SignedDuration::from_secs(600));
        self.token = Some(Token { value, renew_at });
        Ok(expire)
    }

    /// Pushes one batch, logging in first when there is no valid token, and once more
    /// if the LAPI answers 401 (its token expired early, or it restarted with a new
    /// secret).
    pub fn push(&mut self, alerts: &[Alert], now: jiff::Timestamp) -> Result<(), LapiError> {
        let ban = Ban {
            text: &self.config.ban_duration,
            length: self.config.ban_length,
        };
        self.post_alerts(&alerts_body(alerts, &ban, now))
    }

    /// Pushes learned numbers (E.164 digits, how long) as decisions of
    /// [`stream::NUMBER_SCOPE`], for every PBX of the fleet to pull.
    pub fn push_numbers(&mut self, numbers: &[(u64, Duration)]) -> Result<(), LapiError> {
        self.post_alerts(&stream::numbers_body(numbers, jiff::Timestamp::now()))
    }

    /// Pulls the decision stream as a bouncer (`key`): every decision in force when
    /// `startup`, else what changed since this bouncer's last pull.
    pub fn pull(&self, key: &str, startup: bool) -> Result<stream::Stream, LapiError> {
        let url = format!(
            "{}/v1/decisions/stream?startup={startup}&scopes={}",
            self.config.lapi_url,
            stream::SCOPES
        );
        let mut response = self
            .agent
            .get(&url)
            .header("X-Api-Key", key)
            .call()
            .map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_STREAM)
            .read_to_string()
            .map_err(|e| self.failing(format!("reading the decision stream: {e}")))?;
        match status {
            200 => stream::parse(&text).map_err(|e| self.failing(e)),
            403 | 401 => Err(LapiError::Refused {
                url: self.config.lapi_url.clone(),
                machine: "bouncer_key".into(),
                why: format!("HTTP {status}: the bouncer key is unknown (cscli bouncers list)"),
            }),
            _ => Err(self.status_error(status, text)),
        }
    }

    fn post_alerts(&mut self, body: &str) -> Result<(), LapiError> {
        for attempt in 0..2 {
            let stale = self
                .token
                .as_ref()
                .is_none_or(|t| jiff::Timestamp::now() >= t.renew_at);
            if stale {
                self.login()?;
            }
            let token = self.token.as_ref().map(|t| t.value.clone());
            let (status, text) = self.post("/v1/alerts", token.as_deref(), body)?;
            match status {
                200 | 201 => return Ok(()),
                401 if attempt == 0 => self.token = None,
                _ => return Err(self.status_error(status, text)),
            }
        }
        Err(self.failing("unauthorised right after a fresh login".into()))
    }

    fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> Result<(u16, String), LapiError> {
        let url = format!("{}{path}", self.config.lapi_url);
        let mut request = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json");
        if let Some(token) = token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let mut response = request.send(body).map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .unwrap_or_default();
        Ok((status, text))
    }

    /// A request that got no HTTP answer. Only a connection that could not be made is
    /// "unreachable" (probed, and retried as soon as the port answers); anything else —
    /// a TLS handshake with a plain-http port, a broken answer — failed on a port that
    /// does answer, so probing it would retry at once, forever: that backs off instead.
    fn transport_error(&self, e: ureq::Error) -> LapiError {
        use std::io::ErrorKind::*;
        let unreachable = match &e {
            ureq::Error::Io(io) => matches!(
                io.kind(),
                ConnectionRefused
                    | TimedOut
                    | HostUnreachable
                    | NetworkUnreachable
                    | AddrNotAvailable
            ),
            ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
                true
            }
            _ => false,
        };
        let tls = matches!(e, ureq::Error::Tls(_) | ureq::Error::Rustls(_))
            || self.config.lapi_url.starts_with("https://");
        match (unreachable, tls) {
            (true, _) => LapiError::Unreachable {
                url: self.config.lapi_url.clone(),
                why: e.to_string(),
            },
            (false, true) => self.failing(format!(
                "TLS failed: {e} (is lapi_url https:// while the LAPI speaks plain http, or its certificate not trusted?)"
            )),
            (false, false) => self.failing(e.to_string()),
        }
    }

    /// The LAPI's reason is kept whole: an operator needs all of `unable to create
    /// alerts: … database is locked`, not its first words.
    fn status_error(&self, status: u16, body: String) -> LapiError {
        let body = body.trim().to_string();
        match status {
            401 | 403 if !is_credentials_problem(&body) => self.failing(format!(
                "HTTP {status} {body} (the LAPI refused the login without saying the password is wrong: its database may be down)"
            )),
            401 | 403 => LapiError::Refused {
                url: self.config.lapi_url.clone(),
                machine: self.config.machine_id.clone(),
                why: format!(
                    "HTTP {status} {body} (is the machine added and validated, `cscli machines list`, and its password right?)"
                ),
            },
            // A proxy's rate limit, a request timeout: the LAPI may take it later.
            408 | 429 => self.failing(format!("HTTP {status} {body}")),
            400..=499 => LapiError::Rejected {
                url: self.config.lapi_url.clone(),
                status,
                body,
            },
            _ => self.failing(format!("HTTP {status} {body}")),
        }
    }

    fn failing(&self, why: String) -> LapiError {
        LapiError::Failing {
            url: self.config.lapi_url.clone(),
            why,
        }
    }
}

/// Whether a 401/403 body says the credentials are wrong. CrowdSec's LAPI answers a
/// wrong password (and a missing `name/version` User-Agent) with "incorrect Username or
/// Password", an unknown machine with "machine not found" or "not validated"; a login it
/// could not check at all (its database down) is a 401 too, with the database's error.
fn is_credentials_problem(body: &str) -> bool {
    let body = body.to_ascii_lowercase();
    [
        "incorrect username or password",
        "not found",
        "not validated",
        "forbidden",
        "access",
    ]
    .iter()
    .any(|words| body.contains(words))
        || body.is_empty()
}

/// Whether the LAPI at `lapi_url` accepts a TCP connection now: the cheapest sign that
/// a LAPI that was down is back (a login costs it a bcrypt hash).
pub fn probe(lapi_url: &str, timeout: Duration) -> bool {
    let Some((host, port)) = host_port(lapi_url) else {
        return false;
    };
    let Ok(addrs) = (host.as_str(), port).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|addr| TcpStream::connect_timeout(&addr, timeout).is_ok())
}

/// Where the LAPI's URL says it is; the setting's own reading.
pub use crate::config::host_port;

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(ip: &str, reason: &str) -> Alert {
        Alert {
            ip: ip.parse().unwrap(),
            reason: reason.into(),
            at: "2026-11-25T23:00:00Z".parse().unwrap(),
        }
    }

    fn ban(text: &str, hours: u64) -> Ban<'_> {
        Ban {
            text,
            length: Duration::from_secs(hours * 3600),
        }
    }

    #[test]
    fn an_alert_is_read_from_an_error_line_only() {
        let fraud = b"2026-11-25 23:00:00.250 ERROR ip=203.0.113.66 reason=toll_fraud(calls_per_minute) account='1001' class=international number='0044' live=1";
        let a = Alert::from_log_line(fraud).unwrap();
        assert_eq!(
            (a.ip.to_string().as_str(), a.scenario().as_str()),
            ("203.0.113.66", "extsecurity/toll_fraud")
        );
        let warning = b"2026-11-25 23:00:00.250 WARNING ip=203.0.113.66 reason=premium_destination account='1001' class=premium number='0900' live=1";
        assert!(
            Alert::from_log_line(warning).is_none(),
            "a refusal by policy bans no one"
        );
        let line = b"2026-11-25 23:00:00.250 ERROR ip=203.0.113.5 reason=wrong_exten_min_length(10) callerid_num='x ip\\x3d9.9.9.9'";
        let a = Alert::from_log_line(line).unwrap();
        assert_eq!(a.ip.to_string(), "203.0.113.5");
        assert_eq!(a.reason, "wrong_exten_min_length(10)");
        let local = a.at.to_zoned_datetime(crate::clock::local_zone());
        assert_eq!(
            local.strftime("%F %T%.3f").to_string(),
            "2026-11-25 23:00:00.250"
        );
        for other in [
            &b"2026-11-25 23:00:00.250 INFO ip=203.0.113.5 reason=ok callerid_num=''"[..],
            b"2026-11-25 23:00:00.250 CRITICAL reason=bad_request error='ip=1.2.3.4'",
            b"2026-11-25 23:00:00.250 ERROR ip=not-an-address reason=call_rate",
            b"2026-11-25 23:00:00.250 ERROR ip=203.0.113.5 reason=Call-Rate",
            b"2026-11-25 23:00:00.250 ERROR ip=203.0.113.5 reason=x(1",
            b"garbage ERROR ip=203.0.113.5 reason=call_rate",
            // What a caller's name would become if the writer did not escape: still an
            // INFO line, never an alert.
            b"2026-11-25 23:00:00.250 INFO ip=198.51.100.7 reason=ok callerid_name='x' ERROR ip=9.9.9.9 reason=call_rate",
        ] {
            assert_eq!(
                Alert::from_log_line(other),
                None,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn a_late_push_bans_for_what_is_left() {
        let a = alert("203.0.113.5", "call_rate");
        let later = "2026-11-25T23:30:00Z".parse().unwrap();
        assert_eq!(
            a.remaining(Duration::from_secs(3600), later),
            Duration::from_secs(1800)
        );
        assert_eq!(a.remaining(Duration::from_secs(600), later), Duration::ZERO);
        let v: serde_json::Value =
            serde_json::from_str(&alerts_body(&[a], &ban("1h", 1), later)).unwrap();
        assert_eq!(v[0]["decisions"][0]["duration"], "1800s");
    }

    #[test]
    fn the_probe_reads_host_and_port_from_the_url() {
        assert_eq!(
            host_port("http://127.0.0.1:8080"),
            Some(("127.0.0.1".into(), 8080))
        );
        assert_eq!(
            host_port("https://lapi.example.net"),
            Some(("lapi.example.net".into(), 443))
        );
        assert_eq!(
            host_port("http://[2001:db8::1]:81/x"),
            Some(("2001:db8::1".into(), 81))
        );
        assert_eq!(
            host_port("http://[2001:db8::1]"),
            Some(("2001:db8::1".into(), 80))
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        assert!(probe(&url, Duration::from_secs(1)));
        drop(listener);
        assert!(!probe(&url, Duration::from_secs(1)));
    }

    #[test]
    fn a_401_is_a_wrong_password_only_when_the_lapi_says_so() {
        for body in [
            r#"{"code":401,"message":"incorrect Username or Password"}"#,
            r#"{"code":401,"message":"ent: machine not found"}"#,
            "",
        ] {
            assert!(is_credentials_problem(body), "{body}");
        }
        for body in [
            r#"{"code":401,"message":"dial tcp 127.0.0.1:5432: connect: connection refused"}"#,
            r#"{"code":401,"message":"pq: the database system is shutting down"}"#,
        ] {
            assert!(!is_credentials_problem(body), "{body}");
        }
    }

    #[test]
    fn the_user_agent_has_exactly_one_slash() {
        assert_eq!(USER_AGENT.matches('/').count(), 1, "{USER_AGENT}");
    }

    #[test]
    fn an_alert_carries_every_required_field_and_its_ban() {
        // design.md §3c: a missing field is an HTTP 500.
        let body = alerts_body(
            &[alert("203.0.113.5", "wrong_exten_min_length(10)")],
            &ban("4h", 4),
            "2026-11-25T23:00:00.5Z".parse().unwrap(),
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let a = &v[0];
        for field in [
            "scenario",
            "scenario_hash",
            "scenario_version",
            "message",
            "events_count",
            "start_at",
            "stop_at",
            "capacity",
            "leakspeed",
            "simulated",
            "events",
            "source",
        ] {
            assert!(!a[field].is_null(), "{field} missing: {body}");
        }
        assert_eq!(a["scenario"], "extsecurity/wrong_exten_min_length");
        assert_eq!(
            a["source"],
            json!({"scope": "Ip", "value": "203.0.113.5", "ip": "203.0.113.5"})
        );
        assert_eq!(
            a["decisions"][0],
            json!({"origin": "extsecurity", "type": "ban", "scope": "Ip", "value": "203.0.113.5",
                   "duration": "4h", "scenario": "extsecurity/wrong_exten_min_length"})
        );
        assert_eq!(
            a["events"][0]["meta"][1],
            json!({"key": "reason", "value": "wrong_exten_min_length(10)"})
        );
        assert_eq!(a["start_at"], "2026-11-25T23:00:00Z");
    }

    #[test]
    fn a_batch_is_one_alert_per_scenario_with_a_ban_per_address() {
        let batch = [
            alert("192.0.2.1", "call_rate"),
            alert("2001:db8::1", "wrong_exten_min_length(10)"),
            alert("192.0.2.2", "call_rate"),
            alert("192.0.2.1", "call_rate"),
            alert("192.0.2.3", "wrong_exten_min_length(12)"),
        ];
        let now = "2026-11-25T23:00:00Z".parse().unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&alerts_body(&batch, &ban("90m", 1), now)).unwrap();
        let alerts = v.as_array().unwrap();
        assert_eq!(alerts.len(), 2, "{v}");
        let banned = |a: &serde_json::Value| -> Vec<String> {
            a["decisions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    assert_eq!(d["duration"], "90m");
                    assert_eq!(d["scenario"], a["scenario"]);
                    d["value"].as_str().unwrap().to_string()
                })
                .collect()
        };
        assert_eq!(alerts[0]["scenario"], "extsecurity/call_rate");
        assert_eq!(
            banned(&alerts[0]),
            ["192.0.2.1", "192.0.2.2"],
            "one ban per address"
        );
        assert_eq!(alerts[0]["events_count"], 3);
        assert_eq!(alerts[0]["events"].as_array().unwrap().len(), 3);
        assert_eq!(alerts[1]["scenario"], "extsecurity/wrong_exten_min_length");
        assert_eq!(banned(&alerts[1]), ["192.0.2.3", "2001:db8::1"]);
        assert_eq!(
            alerts[1]["message"],
            "extsecurity: 2 addresses, extsecurity/wrong_exten_min_length"
        );
    }
}
