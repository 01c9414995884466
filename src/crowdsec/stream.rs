//! The LAPI's decision stream read (`GET /v1/decisions/stream`, as a bouncer pulls it),
//! and the numbers toll fraud learns written as decisions of a scope of our own, so
//! that every PBX of a fleet enforces every other's bans and refuses every other's
//! learned numbers.

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::json;
use std::net::IpAddr;
use std::time::Duration;

/// The scope of a learned number's decision; its value is `+` and the E.164 digits.
pub const NUMBER_SCOPE: &str = "extsecurity/number";
/// The scopes pulled: what a kernel set can hold, and our numbers.
pub const SCOPES: &str = "ip,range,extsecurity/number";
/// The scenario of a learned number's alert.
pub const NUMBER_SCENARIO: &str = "extsecurity/learned_number";

/// What a decision is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Ip(IpAddr),
    Range(IpNet),
    /// E.164 digits, no `+`.
    Number(u64),
}

/// One decision of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub target: Target,
    /// How long it has left, as the LAPI said when it answered.
    pub left: Duration,
    pub scenario: String,
}

/// One answer of the stream: decisions new since the last pull (all of them on the
/// first, `startup=true`) and those deleted or expired.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Stream {
    pub new: Vec<Decision>,
    pub deleted: Vec<Decision>,
    /// Decisions of another type (captcha …) or an unreadable value, left alone.
    pub skipped: usize,
}

#[derive(Deserialize)]
struct RawStream {
    new: Option<Vec<RawDecision>>,
    deleted: Option<Vec<RawDecision>>,
}

#[derive(Deserialize)]
struct RawDecision {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    duration: String,
    #[serde(default)]
    scenario: String,
}

/// Reads an answer of the stream. Only `ban` decisions are kept: a kernel set drops,
/// it cannot ask a captcha.
pub fn parse(body: &str) -> Result<Stream, String> {
    let raw: RawStream =
        serde_json::from_str(body).map_err(|e| format!("not a decision stream: {e}"))?;
    let mut out = Stream::default();
    for (list, into) in [(raw.new, &mut out.new), (raw.deleted, &mut out.deleted)] {
        for d in list.unwrap_or_default() {
            match decision(&d) {
                Some(d) => into.push(d),
                None => out.skipped += 1,
            }
        }
    }
    Ok(out)
}

fn decision(d: &RawDecision) -> Option<Decision> {
    if !d.kind.eq_ignore_ascii_case("ban") {
        return None;
    }
    let target = match d.scope.to_ascii_lowercase().as_str() {
        "ip" => Target::Ip(d.value.parse().ok()?),
        "range" => Target::Range(d.value.parse::<IpNet>().ok()?.trunc()),
        NUMBER_SCOPE => Target::Number(number(&d.value)?),
        _ => return None,
    };
    Some(Decision {
        target,
        // A deleted decision's duration is negative or absent: nothing left.
        left: go_duration(&d.duration).unwrap_or_default(),
        scenario: d.scenario.clone(),
    })
}

/// `+4490987900` as digits: 1 to 15 of them, as E.164 allows.
fn number(value: &str) -> Option<u64> {
    let digits = value.strip_prefix('+')?;
    ((1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Go's `time.Duration` as the LAPI prints it: `3h59m48.123456789s`, `59.5s`, `12ms`;
/// `None` for a negative or unreadable one.
pub fn go_duration(text: &str) -> Option<Duration> {
    if text.is_empty() || text.starts_with('-') {
        return None;
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..end].parse().ok()?;
        rest = &rest[end..];
        let (unit, len) = [
            ("ns", 1e-9),
            ("us", 1e-6),
            ("µs", 1e-6),
            ("ms", 1e-3),
            ("h", 3600.0),
            ("m", 60.0),
            ("s", 1.0),
        ]
        .iter()
        .find(|(u, _)| rest.starts_with(u))
        .map(|(u, f)| (*f, u.len()))?;
        total += n * unit;
        rest = &rest[len..];
    }
    Duration::try_from_secs_f64(total).ok()
}

/// One alert carrying a decision per learned number (E.164 digits, how long), for
/// `POST /v1/alerts` as our machine.
pub fn numbers_body(numbers: &[(u64, Duration)], now: jiff::Timestamp) -> String {
    let decisions: Vec<serde_json::Value> = numbers
        .iter()
        .map(|(digits, left)| {
            json!({
                "origin": super::ORIGIN,
                "type": "ban",
                "scope": NUMBER_SCOPE,
                "value": format!("+{digits}"),
                "duration": format!("{}s", left.as_secs().max(1)),
                "scenario": NUMBER_SCENARIO,
            })
        })
        .collect();
    let first = numbers
        .first()
        .map(|(d, _)| format!("+{d}"))
        .unwrap_or_default();
    json!([{
        "scenario": NUMBER_SCENARIO,
        "scenario_hash": "",
        "scenario_version": env!("CARGO_PKG_VERSION"),
        "message": format!("extsecurity: {} numbers scanners probed, to refuse fleet-wide", numbers.len()),
        "events_count": numbers.len(),
        "start_at": now.to_string(),
        "stop_at": now.to_string(),
        "capacity": 0,
        "leakspeed": "0",
        "simulated": false,
        "remediation": true,
        "events": [],
        "source": {"scope": NUMBER_SCOPE, "value": first},
        "decisions": decisions,
    }])
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_as_the_lapi_prints_them() {
        for (text, secs) in [
            ("3h59m48.5s", 14_388.5),
            ("59.25s", 59.25),
            ("4h", 14_400.0),
            ("1m30s", 90.0),
            ("250ms", 0.25),
        ] {
            assert_eq!(
                go_duration(text),
                Some(Duration::from_secs_f64(secs)),
                "{text}"
            );
        }
        for bad in ["", "-3s", "-1h2m", "4x", "h", "1.2.3s"] {
            assert_eq!(go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_stream_keeps_bans_of_addresses_ranges_and_numbers() {
        // As Debian's LAPI 1.4.6 answers a bouncer (fields it adds left out).
        let body = r#"{"deleted":[{"duration":"-2.5s","id":3,"origin":"cscli","scenario":"manual","scope":"Ip","type":"ban","value":"203.0.113.7"}],
            "new":[{"duration":"3h59m50s","id":4,"origin":"crowdsec","scenario":"extsecurity/extension_scan","scope":"Ip","type":"ban","value":"203.0.113.66"},
                   {"duration":"59m","id":5,"origin":"cscli","scenario":"manual","scope":"Range","type":"ban","value":"198.51.100.7/24"},
                   {"duration":"1h","id":6,"origin":"crowdsec","scenario":"x","scope":"Ip","type":"captcha","value":"192.0.2.1"},
                   {"duration":"24h","id":7,"origin":"crowdsec","scenario":"extsecurity/learned_number","scope":"extsecurity/number","type":"ban","value":"+4490987900"},
                   {"duration":"1h","id":8,"origin":"cscli","scenario":"m","scope":"extsecurity/number","type":"ban","value":"4490; rm -rf /"},
                   {"duration":"1h","id":9,"origin":"cscli","scenario":"m","scope":"Country","type":"ban","value":"CN"}]}"#;
        let s = parse(body).unwrap();
        assert_eq!(
            s.deleted[0].target,
            Target::Ip("203.0.113.7".parse().unwrap())
        );
        assert_eq!(s.deleted[0].left, Duration::ZERO);
        let targets: Vec<&Target> = s.new.iter().map(|d| &d.target).collect();
        assert_eq!(
            targets,
            [
                &Target::Ip("203.0.113.66".parse().unwrap()),
                &Target::Range("198.51.100.0/24".parse().unwrap()),
                &Target::Number(4_490_987_900),
            ]
        );
        assert_eq!(s.new[0].scenario, "extsecurity/extension_scan");
        assert_eq!(s.new[0].left, Duration::from_secs(14_390));
        assert_eq!(s.skipped, 3, "a captcha, a number that is none, a country");
        assert_eq!(
            parse(r#"{"new":null,"deleted":null}"#).unwrap(),
            Stream::default()
        );
        assert!(parse("<html>").is_err());
    }

    #[test]
    fn a_learned_number_is_a_decision_of_our_scope() {
        let body = numbers_body(
            &[(4_490_987_900, Duration::from_secs(86_400))],
            "2026-12-07T10:00:00Z".parse().unwrap(),
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let d = &v[0]["decisions"][0];
        assert_eq!(
            (
                d["scope"].as_str(),
                d["value"].as_str(),
                d["duration"].as_str()
            ),
            (Some(NUMBER_SCOPE), Some("+4490987900"), Some("86400s"))
        );
        // What we push, we read back.
        let back = parse(&format!("{{\"new\": [{d}]}}")).unwrap();
        assert_eq!(back.new[0].target, Target::Number(4_490_987_900));
    }
}
