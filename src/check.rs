//! One System()-mode check: a parsed request in, lines written and a tarpit out.
//!
//! [`plan`] is pure so that `explain` can show exactly what `check` would do; only
//! [`execute`] touches the log file and the clock.

use std::time::Duration;

use crate::alert_log::{AlertLog, Level, Line, LogError};
use crate::call::{Anomaly, Call};
use crate::clock::timestamp_now;
use crate::config::Config;
use crate::exits;
use crate::request::BadRequest;
use crate::rules::{self, Verdict};

/// The line for a judged call, in the seed's layout: `ERROR` for an alert (it bans the
/// caller's address), `INFO` otherwise; the five caller values quoted.
pub fn call_line(verdict: &Verdict, call: &Call) -> Line {
    let level = match verdict.is_alert() {
        true => Level::Error,
        false => Level::Info,
    };
    Line::new(level, Some(call.peer_ip), &verdict.reason_code())
        .quoted("callerid_num", &call.callerid_num)
        .quoted("callerid_name", &call.callerid_name)
        .quoted("dest_exten", &call.exten)
        .quoted("peer_name", &call.peer_name)
        .quoted("user_agent", &call.user_agent)
}
/// What one request leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The lines to write, in order: at most a `CRITICAL` and one call line.
    pub lines: Vec<Line>,
    /// The verdict, when the request named a peer to judge.
    pub verdict: Option<Verdict>,
    /// Why the request could not be judged, if it could not.
    pub error: Option<String>,
}

impl Plan {
    pub fn is_alert(&self) -> bool {
        self.verdict.as_ref().is_some_and(Verdict::is_alert)
    }

    /// The process's exit status (see [`exits`]). An alert wins over an error: a
    /// request only the caller can have broken is both, and must be hung up on.
    pub fn exit_status(&self, fail_on_alert: bool) -> u8 {
        if fail_on_alert && self.is_alert() {
            exits::ALERT
        } else if self.error.is_some() {
            exits::BAD_REQUEST
        } else {
            exits::OK
        }
    }
}

/// What the dialplan does with a call whose check could not run (README, "A check that
/// could not run"): the dialplan's `EXTSEC_ON_ERROR`, passed to `check --on-error=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Let the call go on (the default): a broken monitor must not take the phones down.
    /// The call is still logged (`CRITICAL`) and counted.
    #[default]
    Continue,
    /// Hang up: no call passes unjudged.
    Hangup,
}

impl OnError {
    /// `continue`, `hangup`, or empty (the dialplan variable unset) for the default.
    pub fn parse(text: &str) -> Result<OnError, String> {
        match text {
            "" | "continue" => Ok(OnError::Continue),
            "hangup" => Ok(OnError::Hangup),
            other => Err(format!("{other:?} is neither continue nor hangup")),
        }
    }

    /// The exit status System() should see: SYSTEMSTATUS is only SUCCESS (0) or
    /// APPERROR (anything else), so with `Continue` a status that says "could not run"
    /// becomes 0, and only an alert stays non-zero.
    pub fn exit_status(self, status: u8) -> u8 {
        match self {
            OnError::Continue if status != exits::ALERT => exits::OK,
            _ => status,
        }
    }
}

/// Decides what to write for one request, judged by the per-call rules.
pub fn plan(config: &Config, request: Result<Call, BadRequest>) -> Plan {
    plan_with(config, request, |call| rules::evaluate(config, call))
}

/// Decides what to write for one request, judged by `judge` (the daemon adds its rules
/// with memory on top of the per-call ones).
pub fn plan_with(
    config: &Config,
    request: Result<Call, BadRequest>,
    mut judge: impl FnMut(&Call) -> Verdict,
) -> Plan {
    match request {
        Ok(call) => {
            let verdict = judge(&call);
            let lines = if verdict.is_alert() || config.log_ok_calls {
                vec![call_line(&verdict, &call)]
            } else {
                Vec::new()
            };
            Plan {
                lines,
                verdict: Some(verdict),
                error: None,
            }
        }
        Err(bad) => {
            let mut lines = vec![Line::bad_request(&bad.error, &bad.raw)];
            // Only a caller can break the request this way: judge the transport's peer.
            let verdict = bad.blame.map(|ip| {
                let call = Call {
                    anomaly: Some(Anomaly::MalformedRequest),
                    ..Call::new(ip)
                };
                let verdict = judge(&call);
                if verdict.is_alert() {
                    lines.push(call_line(&verdict, &call));
                }
                verdict
            });
            Plan {
                lines,
                verdict,
                error: Some(bad.error),
            }
        }
    }
}

/// Writes the plan's lines, then holds the channel for the tarpit if an alert was
/// written: never before writing (a caller who hangs up must not escape the log), never
/// for accepted calls.
pub fn execute(config: &Config, plan: &Plan, sleep: impl FnOnce(Duration)) -> Result<(), LogError> {
    if plan.lines.is_empty() {
        return Ok(());
    }
    // Render first: the file is held open only for the writes themselves, so a
    // rotation cannot move it away between our open and our write (the time zone is
    // read from disk on the first timestamp).
    let now = timestamp_now();
    let rendered: Vec<Vec<u8>> = plan.lines.iter().map(|l| l.render(&now)).collect();
    let mut log = AlertLog::open(&config.log_file)?;
    for bytes in &rendered {
        log.write_rendered(bytes)?;
    }
    if plan.is_alert() && !config.tarpit.is_zero() {
        sleep(config.tarpit);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::parse_json;
    use crate::rules::Reason;
    use std::cell::Cell;
    use std::path::Path;

    fn config(toml: &str) -> Config {
        Config::from_toml(toml, Path::new("t.toml")).unwrap()
    }

    fn levels(plan: &Plan) -> Vec<Level> {
        plan.lines.iter().map(|l| l.level).collect()
    }

    const GOOD: &str = r#"{"ip": "192.0.2.10", "callerid_num": "5551234", "callerid_num": "A", "dest_exten": "4915112345678"}"#;
    const SCAN: &str = r#"{"ip": "192.0.2.10", "callerid_num": "5551234", "callerid_num": "A", "dest_exten": "100"}"#;
    const BROKEN: &str =
        r#"{"ip": "192.0.2.10", "callerid_num": "5551234", "callerid_num": "O"Brien"}"#;

    #[test]
    fn the_call_line_has_the_seed_layout_and_bans_on_alerts_only() {
        let call = Call {
            callerid_num: b"abc".to_vec(),
            callerid_name: b"x".to_vec(),
            exten: b"123".to_vec(),
            user_agent: b"friendly-scanner".to_vec(),
            ..Call::new("192.0.2.10".parse().unwrap())
        };
        let line = call_line(&Verdict::Alert(Reason::WrongCalleridNum), &call);
        assert_eq!(
            String::from_utf8(line.render("2026-11-24 19:08:52.123")).unwrap(),
            "2026-11-24 19:08:52.123 ERROR ip=192.0.2.10 reason=wrong_callerid_num \
             callerid_num='abc' callerid_name='x' dest_exten='123' peer_name='' \
             user_agent='friendly-scanner'\n"
        );
        assert_eq!(line.alert(), Some((call.peer_ip, "wrong_callerid_num")));
        assert_eq!(call_line(&Verdict::Trusted, &call).alert(), None);
        let ok = call_line(&Verdict::Ok, &call);
        assert_eq!(ok.alert(), None);
        assert!(
            ok.render("T")
                .starts_with(b"T INFO ip=192.0.2.10 reason=ok ")
        );
    }

    #[test]
    fn forged_log_text_in_a_value_stays_inside_its_quotes() {
        let call = Call {
            user_agent: b"x\n2026-11-24 19:08:52.123 ERROR ip=198.51.100.7 reason=x".to_vec(),
            ..Call::new("192.0.2.10".parse().unwrap())
        };
        let rendered = call_line(&Verdict::Ok, &call).render("T");
        let text = String::from_utf8(rendered).unwrap();
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.ends_with('\n'));
        assert_eq!(text.matches("ip=").count(), 1, "{text}");
    }

    #[test]
    fn accepted_calls_log_info_unless_switched_off() {
        let p = plan(&Config::default(), parse_json(GOOD.as_bytes()));
        assert_eq!(levels(&p), [Level::Info]);
        assert_eq!(p.exit_status(true), exits::OK);
        let quiet = plan(&config("log_ok_calls = false"), parse_json(GOOD.as_bytes()));
        assert!(quiet.lines.is_empty());
    }

    #[test]
    fn alerts_log_error_and_exit_0_unless_asked() {
        let p = plan(&Config::default(), parse_json(SCAN.as_bytes()));
        assert_eq!(levels(&p), [Level::Error]);
        assert_eq!(p.exit_status(false), exits::OK);
        assert_eq!(p.exit_status(true), exits::ALERT);
        let quiet = plan(&config("log_ok_calls = false"), parse_json(SCAN.as_bytes()));
        assert_eq!(levels(&quiet), [Level::Error]);
    }

    #[test]
    fn a_broken_request_is_critical_plus_an_alert_on_the_leading_ip() {
        let p = plan(&Config::default(), parse_json(BROKEN.as_bytes()));
        assert_eq!(levels(&p), [Level::Critical, Level::Error]);
        assert!(
            p.lines[1]
                .text()
                .starts_with("ip=192.0.2.10 reason=malformed_request ")
        );
        assert_eq!(p.exit_status(false), exits::BAD_REQUEST);
        // Both an error and an alert: the alert decides, whatever EXTSEC_ON_ERROR says.
        assert_eq!(p.exit_status(true), exits::ALERT);
        assert_eq!(
            OnError::Continue.exit_status(p.exit_status(true)),
            exits::ALERT
        );
        let trusted = plan(
            &config("trusted_networks = ['192.0.2.0/24']"),
            parse_json(BROKEN.as_bytes()),
        );
        assert_eq!(levels(&trusted), [Level::Critical]);
    }

    #[test]
    fn a_request_without_a_peer_ip_alerts_on_no_one() {
        let p = plan(
            &Config::default(),
            parse_json(br#"{"ip": "", "dest_exten": "1"}"#),
        );
        assert_eq!(levels(&p), [Level::Critical]);
        assert_eq!(p.verdict, None);
        assert_eq!(p.exit_status(false), exits::BAD_REQUEST);
    }

    #[test]
    fn on_error_continue_turns_could_not_run_into_success_and_nothing_else() {
        assert_eq!(OnError::parse(""), Ok(OnError::Continue));
        assert_eq!(OnError::parse("continue"), Ok(OnError::Continue));
        assert_eq!(OnError::parse("hangup"), Ok(OnError::Hangup));
        assert!(OnError::parse("Hangup").is_err());
        for status in [
            exits::BAD_REQUEST,
            exits::CONFIG,
            exits::LOG,
            exits::INTERNAL,
        ] {
            assert_eq!(OnError::Continue.exit_status(status), exits::OK);
            assert_eq!(OnError::Hangup.exit_status(status), status);
        }
        for on_error in [OnError::Continue, OnError::Hangup] {
            assert_eq!(on_error.exit_status(exits::ALERT), exits::ALERT);
            assert_eq!(on_error.exit_status(exits::OK), exits::OK);
        }
    }

    #[test]
    fn the_tarpit_follows_written_alerts_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        let cfg = config(&format!("log_file = {:?}\ntarpit_seconds = 1.5", log));
        let slept = Cell::new(None);
        execute(&cfg, &plan(&cfg, parse_json(GOOD.as_bytes())), |d| {
            slept.set(Some(d))
        })
        .unwrap();
        assert_eq!(slept.get(), None);
        execute(&cfg, &plan(&cfg, parse_json(SCAN.as_bytes())), |d| {
            slept.set(Some(d))
        })
        .unwrap();
        assert_eq!(slept.get(), Some(Duration::from_millis(1500)));
        assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 2);

        let missing = config("log_file = '/nonexistent-extsec/a.log'");
        slept.set(None);
        assert!(
            execute(
                &missing,
                &plan(&missing, parse_json(SCAN.as_bytes())),
                |d| slept.set(Some(d))
            )
            .is_err()
        );
        assert_eq!(slept.get(), None, "no tarpit when nothing was written");
    }
}
