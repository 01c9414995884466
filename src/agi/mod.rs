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

/// The commands that set [`verdict_variables`].
pub fn verdict_commands(plan: &Plan) -> Vec<u8> {
    verdict_variables(plan)
        .iter()
        .flat_map(|(name, value)| session::set_variable(name, value))
        .collect()
}
