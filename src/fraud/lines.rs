//! The outbound check's alert lines (doc/toll-fraud.md, "Toll fraud: the outbound check"), with the rule that only
//! fraud from a stranger's address bans: an office phone that dialled too much is
//! stopped (`WARNING`), not banned.

use std::net::IpAddr;

use crate::alert_log::{Level, Line};
use crate::call::Outbound;
use crate::fraud::guard::Ended;
use crate::fraud::limits::Severity;
use crate::fraud::{Class, Decision, Judgement};

/// An outbound call's verdict: `INFO` when it goes on, `WARNING` when refused by
/// policy or past a warning level, `ERROR` (banned on) when it is toll fraud from an
/// address that is neither trusted nor the account's own (`usual_address`); a call
/// with no address (a Local channel that carried none) names no `ip=`.
///
/// `[ip=ADDR ]reason=CODE account='…' class=CLASS number='…' live=N [figure=N limit=N]`
pub fn outbound_line(judgement: &Judgement, call: &Outbound, trusted: bool) -> Line {
    let bans = !trusted && !judgement.usual_address && call.address.is_some();
    let reached = judgement.reached();
    let level = match (&judgement.decision, reached) {
        (Decision::Pass, _) => Level::Info,
        (_, Some(r)) if r.critical && bans => Level::Error,
        _ => Level::Warning,
    };
    let mut line = Line::new(level, call.address, &judgement.reason_code())
        .quoted("account", call.account.as_bytes())
        .field("class", judgement.destination.class)
        .quoted("number", &call.number)
        .field("live", judgement.live);
    if let Some(r) = reached {
        line = line.field("figure", r.figure).field("limit", r.limit);
        if judgement.usual_address && level == Level::Warning {
            line = line.field("address", "usual");
        }
    }
    line
}

/// An account's answered minutes reached a level when a call ended: `ERROR` at the
/// critical level against the address it last called from (unless trusted, its own,
/// or none is known), `WARNING` otherwise.
pub fn minutes_line(account: &str, class: Class, ended: &Ended, trusted: bool) -> Line {
    let critical = ended.severity == Severity::Critical;
    let reason = match critical {
        true => "toll_fraud(minutes_per_day)",
        false => "warning(minutes_per_day)",
    };
    let bans = critical && !trusted && !ended.usual_address && ended.address.is_some();
    let level = match bans {
        true => Level::Error,
        false => Level::Warning,
    };
    Line::new(level, ended.address, reason)
        .quoted("account", account.as_bytes())
        .field("class", class)
        .field("figure", ended.figure)
        .field("limit", ended.limit)
}

/// A successful login that looks like a takeover: the account is quarantined before
/// its first call. `WARNING`: the address is the one that logged in with the right
/// password, which the AMI rules judge on their own.
pub fn takeover_line(ip: IpAddr, account: &[u8], failed: u16) -> Line {
    Line::new(Level::Warning, Some(ip), "takeover")
        .quoted("account", account)
        .field("failed_logins", failed)
}
