//! `check`, `explain` and the seed's JSON form: one call judged as `System()` hands it
//! over, its lines written and its status returned.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use extsecurity::Call;
use extsecurity::check::{self, OnError, Plan};
use extsecurity::clock::timestamp_now;
use extsecurity::config::{Config, Source};
use extsecurity::exits;
use extsecurity::request::{self, BadRequest};

use super::*;

pub(crate) fn run_legacy(args: &[OsString]) -> u8 {
    let Some(config) = load_config(None) else {
        return exits::CONFIG;
    };
    eprintln!(
        "extsecurity: warning: the seed's JSON line: the shell ran it with the caller's text pasted in; replace it (extsecurity check-config names the dialplan lines)"
    );
    let mut plan = check::plan(&config.0, request::parse_json(&joined(args)));
    plan.lines.iter_mut().for_each(|l| l.via_legacy());
    execute(&config, &plan, false)
}

/// `check`'s status as `--on-error` wants it; without the option, as it is (the
/// shipped dialplans always pass it, scripts may want every status).
pub(crate) fn on_error_status(on_error: Option<OnError>, status: u8) -> u8 {
    on_error.map_or(status, |o| o.exit_status(status))
}

/// The whole check: plan, write, tarpit, exit status.
pub(crate) fn judge(
    config: &(Config, Source),
    request: Result<Call, BadRequest>,
    fail_on_alert: bool,
) -> u8 {
    execute(config, &check::plan(&config.0, request), fail_on_alert)
}

/// Writes a plan's lines, holds the tarpit, and gives the exit status.
pub(crate) fn execute(config: &(Config, Source), plan: &Plan, fail_on_alert: bool) -> u8 {
    if let Some(error) = &plan.error {
        eprintln!("extsecurity: bad request: {error}");
    }
    if let Err(e) = check::execute(&config.0, plan, std::thread::sleep) {
        eprintln!("extsecurity: {e}");
        // The rules have spoken: an alert is still an alert for the dialplan.
        if !(fail_on_alert && plan.is_alert()) {
            return exits::LOG;
        }
    }
    plan.exit_status(fail_on_alert)
}

pub(crate) fn explain_request(
    fields: &EncodedArgs,
    plain: &PlainArgs,
    json: &[OsString],
    args: &[OsString],
) -> Result<Call, BadRequest> {
    if !json.is_empty() {
        return request::parse_json(&joined(json));
    }
    let mut call = request::parse_encoded(fields.fields(), &joined(args))?;
    let text = |v: &Option<OsString>| v.as_ref().map(|v| v.as_bytes().to_vec());
    for (slot, value) in [
        (&mut call.callerid_num, text(&plain.callerid_num_text)),
        (&mut call.callerid_name, text(&plain.callerid_name_text)),
        (&mut call.exten, text(&plain.exten_text)),
        (&mut call.user_agent, text(&plain.user_agent_text)),
        (&mut call.peer_name, text(&plain.peer_name_text)),
    ] {
        if let Some(value) = value {
            *slot = value;
        }
    }
    Ok(call)
}

pub(crate) fn explain(config: &(Config, Source), request: Result<Call, BadRequest>) -> u8 {
    let (config, source) = config;
    let plan: Plan = check::plan(config, request);
    println!("config:  {source}");
    match (&plan.verdict, &plan.error) {
        (Some(v), _) if v.is_alert() => println!("verdict: alert ({})", v.reason_code()),
        (Some(v), _) => println!("verdict: accept ({})", v.reason_code()),
        (None, _) => println!("verdict: none: the request names no valid peer to judge"),
    }
    if let Some(error) = &plan.error {
        println!("error:   {error}");
    }
    let now = timestamp_now();
    for line in &plan.lines {
        print!("line:    {}", String::from_utf8_lossy(&line.render(&now)));
    }
    if plan.lines.is_empty() {
        println!("line:    (none: log_ok_calls = false)");
    }
    if plan.is_alert() {
        println!(
            "tarpit:  {:?} (check would hold the channel this long)",
            config.tarpit
        );
    }
    println!(
        "exit:    {} ({} with --fail-on-alert)",
        plan.exit_status(false),
        plan.exit_status(true)
    );
    exits::OK
}
