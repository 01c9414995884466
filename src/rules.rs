//! The per-call rules: a [`Call`] and a [`Config`] in, a [`Verdict`] out. No I/O.
//!
//! The order is the seed script's (design.md §2), first match wins, with its bugs fixed:
//! a number is ASCII digits with at most one leading `+`, the extension rule tests the
//! extension, length limits of 0 are off, and patterns match the whole extension.

use std::fmt;

use crate::call::{Anomaly, Call};
use crate::config::Config;

/// What to do with a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No rule objected.
    Ok,
    /// The peer is in `trusted_networks`: never alerted on, whatever it sent.
    Trusted,
    /// Write an `ERROR` line (fail2ban bans on it) and hold the channel.
    Alert(Reason),
}

impl Verdict {
    pub fn is_alert(&self) -> bool {
        matches!(self, Verdict::Alert(_))
    }

    /// The rule that decided: `ok`, `trusted` or [`Reason::name`] (metrics' label).
    pub fn rule(&self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Trusted => "trusted",
            Verdict::Alert(reason) => reason.name(),
        }
    }

    /// The `reason=` token written to the alert log.
    pub fn reason_code(&self) -> String {
        match self {
            Verdict::Ok => "ok".to_string(),
            Verdict::Trusted => "trusted".to_string(),
            Verdict::Alert(reason) => reason.to_string(),
        }
    }
}

/// Why a call was alerted on. The `Display` form is a stable, documented code (README,
/// "Reason codes"); it never contains whitespace, so the fail2ban filter's `\S+` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The caller id number is empty or not a number (seed: `wrong_callerid_num`).
    WrongCalleridNum,
    /// The dialed extension is not a number (seed: `wrong_exten_type`).
    WrongExtenType,
    /// The extension is shorter than the configured minimum; N is its length as dialed
    /// (seed: `wrong_exten_min_lenghts(N)`, `100` → `(3)`).
    WrongExtenMinLength(usize),
    /// The extension is longer than the configured maximum; N is its length as dialed
    /// (seed: `wrong_exten_max_lenghts(N)`).
    WrongExtenMaxLength(usize),
    /// The extension matches a blocked pattern (seed: `exension_banned`).
    ExtensionBanned,
    /// The user agent matches a known scanner.
    BlockedUserAgent,
    /// The request could not be parsed: only a caller can break the dialplan's JSON.
    MalformedRequest,
    /// The request carried a duplicated or unexpected key, e.g. a second `ip`, or the
    /// AGI stream was reshaped by a caller's bytes.
    RequestTampering,
    /// Daemon only: more distinct extensions from one IP than allowed within the window.
    ExtensionScan,
    /// Daemon only: more calls from one IP than allowed within the window.
    CallRate,
    /// Daemon only: the IP was alerted on recently.
    RepeatOffender,
}

impl Reason {
    /// The rule's name: the code without its `(N)`. A bounded set of labels for metrics
    /// (the code itself carries a length a caller chooses).
    pub fn name(&self) -> &'static str {
        match self {
            Reason::WrongCalleridNum => "wrong_callerid_num",
            Reason::WrongExtenType => "wrong_exten_type",
            Reason::WrongExtenMinLength(_) => "wrong_exten_min_length",
            Reason::WrongExtenMaxLength(_) => "wrong_exten_max_length",
            Reason::ExtensionBanned => "extension_banned",
            Reason::BlockedUserAgent => "blocked_user_agent",
            Reason::MalformedRequest => "malformed_request",
            Reason::RequestTampering => "request_tampering",
            Reason::ExtensionScan => "extension_scan",
            Reason::CallRate => "call_rate",
            Reason::RepeatOffender => "repeat_offender",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        match self {
            Reason::WrongExtenMinLength(n) | Reason::WrongExtenMaxLength(n) => write!(f, "({n})"),
            _ => Ok(()),
        }
    }
}

/// Judges one call.
pub fn evaluate(config: &Config, call: &Call) -> Verdict {
    if config.is_trusted(call.peer_ip) {
        return Verdict::Trusted;
    }
    match first_objection(config, call) {
        Some(reason) => Verdict::Alert(reason),
        None => Verdict::Ok,
    }
}

fn first_objection(config: &Config, call: &Call) -> Option<Reason> {
    if let Some(anomaly) = call.anomaly {
        return Some(match anomaly {
            Anomaly::MalformedRequest => Reason::MalformedRequest,
            Anomaly::RequestTampering => Reason::RequestTampering,
        });
    }
    let exten = call.exten.as_slice();
    if config.callerid_num_must_be_numeric && !is_number(&call.callerid_num) {
        return Some(Reason::WrongCalleridNum);
    }
    if config.exten_must_be_numeric && !is_number(exten) {
        return Some(Reason::WrongExtenType);
    }
    // The seed names the length as dialed, not the limit (design.md §2).
    let min = config.exten_min_length;
    if min > 0 && exten.len() < min {
        return Some(Reason::WrongExtenMinLength(exten.len()));
    }
    let max = config.exten_max_length;
    if max > 0 && exten.len() > max {
        return Some(Reason::WrongExtenMaxLength(exten.len()));
    }
    if config.blocked_extensions.matching(exten).is_some() {
        return Some(Reason::ExtensionBanned);
    }
    if config
        .blocked_user_agents
        .matching(&call.user_agent)
        .is_some()
    {
        return Some(Reason::BlockedUserAgent);
    }
    None
}

/// ASCII digits, at least one, with at most one leading `+`.
///
/// The seed removed every `+` and used Python's `isdigit()`, so `1+2+3` and `١٢٣`
/// (Arabic-Indic digits) passed.
pub fn is_number(value: &[u8]) -> bool {
    let digits = value.strip_prefix(b"+").unwrap_or(value);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn call(num: &str, exten: &str) -> Call {
        Call {
            callerid_num: num.into(),
            exten: exten.into(),
            ..Call::new("203.0.113.5".parse().unwrap())
        }
    }

    fn config(toml: &str) -> Config {
        Config::from_toml(toml, Path::new("t.toml")).unwrap()
    }

    fn verdict(config: &Config, num: &str, exten: &str) -> String {
        evaluate(config, &call(num, exten)).reason_code()
    }

    #[test]
    fn numbers_are_ascii_digits_with_one_leading_plus() {
        for good in ["0", "5551234", "+4915112345678"] {
            assert!(is_number(good.as_bytes()), "{good}");
        }
        for bad in [
            "", "+", "++1", "1+2+3", "12+", " 1", "1 ", "abc", "١٢٣", "12\n", "0x1",
        ] {
            assert!(!is_number(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn an_ordinary_call_passes_the_seed_settings() {
        assert_eq!(
            verdict(&Config::default(), "5551234", "4915112345678"),
            "ok"
        );
        assert_eq!(
            verdict(&Config::default(), "+5551234", "+4915112345678"),
            "ok"
        );
    }

    #[test]
    fn rule_1_caller_id_must_be_a_number() {
        let c = Config::default();
        assert_eq!(verdict(&c, "", "4915112345678"), "wrong_callerid_num");
        assert_eq!(
            verdict(&c, "anonymous", "4915112345678"),
            "wrong_callerid_num"
        );
        assert_eq!(verdict(&c, "1+2", "4915112345678"), "wrong_callerid_num");
        let off = config("callerid_num_must_be_numeric = false");
        assert_eq!(verdict(&off, "anonymous", "4915112345678"), "ok");
    }

    #[test]
    fn rule_2_tests_the_extension_not_the_caller_id() {
        let c = Config::default();
        assert_eq!(verdict(&c, "5551234", "s"), "wrong_exten_type");
        assert_eq!(verdict(&c, "5551234", ""), "wrong_exten_type");
        assert_eq!(verdict(&c, "5551234", "49151123456;x"), "wrong_exten_type");
        let off = config("exten_must_be_numeric = false\nexten_min_length = 0");
        assert_eq!(verdict(&off, "5551234", "s"), "ok");
    }

    #[test]
    fn rules_3_and_4_bound_the_length_and_0_disables_them() {
        let c = Config::default();
        assert_eq!(verdict(&c, "1", "123456789"), "wrong_exten_min_length(9)");
        assert_eq!(verdict(&c, "1", "100"), "wrong_exten_min_length(3)");
        assert_eq!(verdict(&c, "1", "1234567890"), "ok");
        assert_eq!(verdict(&c, "1", "12345678901234"), "ok");
        assert_eq!(
            verdict(&c, "1", "123456789012345"),
            "wrong_exten_max_length(15)"
        );
        let off = config("exten_min_length = 0\nexten_max_length = 0\nblocked_extensions = []");
        assert_eq!(verdict(&off, "1", "1"), "ok");
        assert_eq!(verdict(&off, "1", &"9".repeat(65536)), "ok");
    }

    #[test]
    fn rule_5_patterns_match_the_whole_extension() {
        let c = config("exten_min_length = 0\nblocked_extensions = ['\\d{1,3}', '900\\d*']");
        assert_eq!(verdict(&c, "1", "100"), "extension_banned");
        assert_eq!(verdict(&c, "1", "9001234"), "extension_banned");
        // The seed's re.match flagged these because they *begin* with 1–3 digits.
        assert_eq!(verdict(&c, "1", "1000"), "ok");
        assert_eq!(verdict(&c, "1", "4915112345678"), "ok");
    }

    #[test]
    fn the_user_agent_rule_comes_after_the_seed_rules() {
        let mut scanner = call("5551234", "4915112345678");
        scanner.user_agent = b"friendly-scanner".to_vec();
        assert_eq!(
            evaluate(&Config::default(), &scanner).reason_code(),
            "blocked_user_agent"
        );
        scanner.exten = b"s".to_vec();
        assert_eq!(
            evaluate(&Config::default(), &scanner).reason_code(),
            "wrong_exten_type"
        );
        let off = config("blocked_user_agents = []");
        scanner.exten = b"4915112345678".to_vec();
        assert_eq!(evaluate(&off, &scanner), Verdict::Ok);
    }

    #[test]
    fn trusted_networks_are_never_alerted_on() {
        let c = config("trusted_networks = ['203.0.113.0/24']");
        let mut bad = call("", "s");
        bad.anomaly = Some(Anomaly::RequestTampering);
        bad.user_agent = b"sipvicious".to_vec();
        assert_eq!(evaluate(&c, &bad), Verdict::Trusted);
    }

    #[test]
    fn anomalies_alert_before_any_rule() {
        let mut c = call("5551234", "4915112345678");
        c.anomaly = Some(Anomaly::MalformedRequest);
        assert_eq!(
            evaluate(&Config::default(), &c).reason_code(),
            "malformed_request"
        );
        c.anomaly = Some(Anomaly::RequestTampering);
        assert_eq!(
            evaluate(&Config::default(), &c).reason_code(),
            "request_tampering"
        );
    }

    #[test]
    fn reason_codes_are_stable_and_have_no_whitespace() {
        let all = [
            Reason::WrongCalleridNum,
            Reason::WrongExtenType,
            Reason::WrongExtenMinLength(10),
            Reason::WrongExtenMaxLength(14),
            Reason::ExtensionBanned,
            Reason::BlockedUserAgent,
            Reason::MalformedRequest,
            Reason::RequestTampering,
            Reason::ExtensionScan,
            Reason::CallRate,
            Reason::RepeatOffender,
        ];
        let codes: Vec<String> = all.iter().map(Reason::to_string).collect();
        assert_eq!(
            codes,
            [
                "wrong_callerid_num",
                "wrong_exten_type",
                "wrong_exten_min_length(10)",
                "wrong_exten_max_length(14)",
                "extension_banned",
                "blocked_user_agent",
                "malformed_request",
                "request_tampering",
                "extension_scan",
                "call_rate",
                "repeat_offender",
            ]
        );
        assert!(codes.iter().all(|c| !c.contains(char::is_whitespace)));
    }
}
