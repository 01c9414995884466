//! CrowdSec's Local API, as a *machine* (design.md §3c): log in, push alerts that carry
//! a ban decision. The HTTP calls block; the daemon makes them on a blocking thread.
//!
//! What the LAPI of Debian's `crowdsec` 1.4.6 requires, as measured: a `User-Agent` of
//! the form `name/version` at login (without one it answers 401 "incorrect Username or
//! Password", as if the password were wrong); every field of an alert below, or an
//! HTTP 500; a token that lasts an hour. A POST that failed with a 5xx may have stored
//! its alerts anyway, so a retried batch can duplicate bans: harmless.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;

use crate::config::CrowdsecConfig;

/// Exactly one `/`: the LAPI checks the form.
pub const USER_AGENT: &str = concat!("extsecurity/", env!("CARGO_PKG_VERSION"));
/// A request that takes longer is taken for a failure (and retried).
const TIMEOUT: Duration = Duration::from_secs(10);
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
    /// `extsecurity/<reason>`, the reason's `(N)` argument left out: one scenario per
    /// rule, whatever its setting.
    pub fn scenario(&self) -> String {
        let rule = self.reason.split('(').next().unwrap_or_default();
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
pub fn alerts_body(alerts: &[Alert], ban_duration: &str) -> String {
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
            scenario_alert(scenario, &group, ban_duration)
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}

/// One CrowdSec alert for `group` (non-empty, one scenario).
fn scenario_alert(scenario: &str, group: &[&Alert], ban_duration: &str) -> serde_json::Value {
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
            json!({
                "origin": ORIGIN,
                "type": "ban",
                "scope": "Ip",
                "value": ip.to_string(),
                "duration": ban_duration,
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
    /// Connection refused, timed out, TLS failure, a 5xx: try again later.
    #[error("the LAPI at {url} is unreachable or failing: {why}")]
    Unavailable { url: String, why: String },
    /// A 401/403: the machine is unknown, not validated, or its password is wrong.
    #[error("the LAPI at {url} refused machine {machine:?}: {why}")]
    Refused {
        url: String,
        machine: String,
        why: String,
    },
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
        let body = json!({
            "machine_id": self.config.machine_id,
            "password": self.config.password,
            "scenarios": [],
        })
        .to_string();
        let (status, text) = self.post("/v1/watchers/login", None, &body)?;
        if status != 200 {
            return Err(self.status_error(status, text));
        }
        let answer: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| self.unavailable(format!("login answer: {e}")))?;
        let value = answer["token"].as_str().unwrap_or_default().to_string();
        let expire = answer["expire"].as_str().unwrap_or_default().to_string();
        if value.is_empty() {
            return Err(self.unavailable(format!("login answer without a token: {text}")));
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
    pub fn push(&mut self, alerts: &[Alert]) -> Result<(), LapiError> {
        let body = alerts_body(alerts, &self.config.ban_duration);
        for attempt in 0..2 {
            let stale = self
                .token
                .as_ref()
                .is_none_or(|t| jiff::Timestamp::now() >= t.renew_at);
            if stale {
                self.login()?;
            }
            let token = self.token.as_ref().map(|t| t.value.clone());
            let (status, text) = self.post("/v1/alerts", token.as_deref(), &body)?;
            match status {
                200 | 201 => return Ok(()),
                401 if attempt == 0 => self.token = None,
                _ => return Err(self.status_error(status, text)),
            }
        }
        Err(self.unavailable("unauthorised right after a fresh login".into()))
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
        let mut response = request
            .send(body)
            .map_err(|e| self.unavailable(e.to_string()))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(1024 * 1024)
            .read_to_string()
            .unwrap_or_default();
        Ok((status, text))
    }

    fn status_error(&self, status: u16, body: String) -> LapiError {
        let body: String = body.trim().chars().take(300).collect();
        match status {
            401 | 403 => LapiError::Refused {
                url: self.config.lapi_url.clone(),
                machine: self.config.machine_id.clone(),
                why: format!(
                    "HTTP {status} {body} (is the machine added and validated, `cscli machines list`, and its password right?)"
                ),
            },
            400..=499 => LapiError::Rejected {
                url: self.config.lapi_url.clone(),
                status,
                body,
            },
            _ => self.unavailable(format!("HTTP {status} {body}")),
        }
    }

    fn unavailable(&self, why: String) -> LapiError {
        LapiError::Unavailable {
            url: self.config.lapi_url.clone(),
            why,
        }
    }
}

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

    #[test]
    fn the_user_agent_has_exactly_one_slash() {
        assert_eq!(USER_AGENT.matches('/').count(), 1, "{USER_AGENT}");
    }

    #[test]
    fn an_alert_carries_every_required_field_and_its_ban() {
        // design.md §3c: a missing field is an HTTP 500.
        let body = alerts_body(&[alert("203.0.113.5", "wrong_exten_min_length(10)")], "4h");
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
        let v: serde_json::Value = serde_json::from_str(&alerts_body(&batch, "90m")).unwrap();
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
