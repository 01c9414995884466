//! AGI: Asterisk hands us the call over a line protocol instead of a shell.
//!
//! [`session`] is the protocol without I/O; [`stdio`] drives it for `AGI(/usr/bin/extsecurity,agi)`
//! over stdin/stdout; the daemon drives it over TCP for FastAGI.

pub mod lines;
pub mod session;
pub mod stdio;

use crate::check::Plan;

/// A line longer than this is not something Asterisk would send us about a call.
pub const MAX_LINE: usize = 128 * 1024;

/// How long Asterisk has to send the whole `agi_*` block: it writes the block as it
/// starts the program or connects, so a program or connection without one within this
/// is no channel's, and nothing is judged. The only timer on a call's exchange: once the
/// block is in and our query sent, the answer is waited for until it comes or Asterisk
/// closes our end. res_agi's `run_agi` answers every command, on a hung-up channel too
/// ("dead" mode, where `GET FULL VARIABLE` is allowed), until the program exits or the
/// connection closes, and closes our end when it stops (`AGIEXITONHANGUP`): a SIGHUP or
/// `HANGUP` says the caller left, not that the answer will not come.
pub const BLOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The channel variables that tell the dialplan the verdict: `EXTSEC_RESULT` is `OK`,
/// `ALERT` or `ERROR` (the call could not be judged), `EXTSEC_REASON` the reason code.
pub fn verdict_variables(plan: &Plan) -> [(&'static str, String); 2] {
    let (result, reason) = match (&plan.verdict, &plan.error) {
        (Some(v), _) if v.is_alert() => ("ALERT", v.reason_code()),
        (_, Some(_)) => ("ERROR", "bad_request".to_string()),
        (Some(v), None) => ("OK", v.reason_code()),
        (None, None) => ("ERROR", "bad_request".to_string()),
    };
    [
        ("EXTSEC_RESULT", result.to_string()),
        ("EXTSEC_REASON", reason),
    ]
}

/// The one command that sets both [`verdict_variables`]: `EXEC MSet
/// EXTSEC_RESULT=…,EXTSEC_REASON=…`, answered `200 result=0`.
///
/// One round trip instead of two `SET VARIABLE`s. Asterisk reads one command per wake-up
/// (design.md §3a), so every command costs a full round trip; MSet (Asterisk 13.8+)
/// splits at commas outside parentheses and at the first `=`, and strips quotes. Our
/// values are our own (`OK`, reason codes: `[a-z_]`, digits and balanced parentheses),
/// never a caller's, so neither matters; `EXEC` substitutes nothing unless the dialplan
/// sets `AGIEXECFULL`, and even then no `$` is ever in them.
pub fn verdict_command(plan: &Plan) -> Vec<u8> {
    mset(&verdict_variables(plan))
}

/// The outbound check's answer (doc/toll-fraud.md, "Toll fraud: the outbound check"):
/// `EXTSEC_RESULT` (`OK`, `ALERT`, `ERROR`), `EXTSEC_REASON`, `EXTSEC_MAX_SECONDS` (a
/// cap on the call's length, 0 for none) and `EXTSEC_CLASS` (the destination class,
/// which the hangup handler hands back); a call that goes on with a cap also gets
/// `TIMEOUT(absolute)` (MSet and SET() write functions too, design §3e), which saves
/// the dialplan priorities that would set it. `None`: the call could not be judged.
///
/// `end` names the hangup handler the dialplan pushes for a call that goes on:
/// `EXTSEC_END` is `-ami` when the call's end comes as an AMI `UserEvent`
/// (`[extsec-outbound-end-ami]`), empty for the AGI one.
pub fn outbound_variables(
    judgement: Option<&crate::fraud::Judgement>,
    end: &str,
) -> Vec<(&'static str, String)> {
    let mut variables = match judgement {
        Some(j) => vec![
            ("EXTSEC_RESULT", j.result().to_string()),
            ("EXTSEC_REASON", j.reason_code()),
            ("EXTSEC_MAX_SECONDS", j.max_seconds.to_string()),
            ("EXTSEC_CLASS", j.destination.class.to_string()),
        ],
        None => vec![
            ("EXTSEC_RESULT", "ERROR".to_string()),
            ("EXTSEC_REASON", "bad_request".to_string()),
            ("EXTSEC_MAX_SECONDS", "0".to_string()),
            ("EXTSEC_CLASS", String::new()),
        ],
    };
    if let Some(j) = judgement.filter(|j| !j.is_refused()) {
        variables.push(("EXTSEC_END", end.to_string()));
        if j.max_seconds > 0 {
            variables.push(("TIMEOUT(absolute)", j.max_seconds.to_string()));
        }
    }
    variables
}

/// The one-command answer to the shipped subroutine: [`outbound_variables`], but a
/// call that goes on gets its hangup handler pushed here (`CHANNEL(hangup_handler_push)`
/// written by the same `SET()`s), instead of `EXTSEC_END` and a dialplan priority that
/// pushes it: each priority run costs Asterisk a channel snapshot.
pub fn outbound_answer(
    judgement: Option<&crate::fraud::Judgement>,
    end: &str,
) -> Vec<(&'static str, String)> {
    let mut variables = outbound_variables(judgement, end);
    if let Some(at) = variables.iter().position(|(name, _)| *name == "EXTSEC_END") {
        variables[at] = (
            "CHANNEL(hangup_handler_push)",
            format!("extsec-outbound-end{end},s,1"),
        );
    }
    variables
}

/// [`outbound_variables`] in one `EXEC MSet`: the answer to an older subroutine, whose
/// values were asked, and the correction of a verdict that did not hold.
pub fn outbound_command(judgement: Option<&crate::fraud::Judgement>, end: &str) -> Vec<u8> {
    mset(&outbound_variables(judgement, end))
}

/// A request that was not judged, and why (`wrong_key`): `EXTSEC_RESULT=ERROR`, so that
/// the dialplan's `EXTSEC_ON_ERROR` decides, as for any check that could not run.
pub fn error_command(reason: &str) -> Vec<u8> {
    mset(&[
        ("EXTSEC_RESULT", "ERROR".to_string()),
        ("EXTSEC_REASON", reason.to_string()),
    ])
}

/// `EXEC MSet NAME=value,…` for our own variables and values.
fn mset(variables: &[(&str, String)]) -> Vec<u8> {
    let pairs: Vec<String> = variables
        .iter()
        .map(|(name, value)| {
            debug_assert!(
                value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_()-".contains(&b))
            );
            format!("{name}={value}")
        })
        .collect();
    format!("EXEC MSet {}\n", pairs.join(",")).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::Call;
    use crate::check::plan;
    use crate::config::Config;
    use crate::request::BadRequest;

    fn command(request: Result<Call, BadRequest>) -> String {
        String::from_utf8(verdict_command(&plan(&Config::default(), request))).unwrap()
    }

    #[test]
    fn the_verdict_is_one_mset_of_our_own_values() {
        let call = |exten: &[u8]| Call {
            callerid_num: b"5551234".to_vec(),
            exten: exten.to_vec(),
            ..Call::new("203.0.113.5".parse().unwrap())
        };
        assert_eq!(
            command(Ok(call(b"4915112345678"))),
            "EXEC MSet EXTSEC_RESULT=OK,EXTSEC_REASON=ok\n"
        );
        assert_eq!(
            command(Ok(call(b"100"))),
            "EXEC MSet EXTSEC_RESULT=ALERT,EXTSEC_REASON=wrong_exten_min_length(3)\n"
        );
        // A caller's bytes never reach the command: only the reason code does.
        assert_eq!(
            command(Ok(call(b"1,EXTSEC_RESULT=OK\"\n"))),
            "EXEC MSet EXTSEC_RESULT=ALERT,EXTSEC_REASON=wrong_exten_type\n"
        );
        let refused = BadRequest {
            error: "AGI: no answer to our query: timed out".into(),
            raw: Vec::new(),
            blame: None,
        };
        assert_eq!(
            command(Err(refused)),
            "EXEC MSet EXTSEC_RESULT=ERROR,EXTSEC_REASON=bad_request\n"
        );
    }
}
