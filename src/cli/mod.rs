//! The `extsecurity` command's body, one file per group of commands: `run` dispatches
//! what clap parsed. Every command speaks to a running daemon only through the control
//! protocol ([`extsecurity::control`]); errors are printed once, on stderr, prefixed
//! `extsecurity: `, and the status comes from [`extsecurity::exits`].

mod args;
mod audit;
mod bans;
mod check_config;
pub(crate) mod edge;
mod fraud;
mod judge;
mod report;
mod status;

pub(crate) use args::*;
pub(crate) use audit::*;
pub(crate) use bans::*;
pub(crate) use check_config::*;
pub(crate) use edge::*;
pub(crate) use fraud::*;
pub(crate) use judge::*;
pub(crate) use report::*;
pub(crate) use status::*;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use extsecurity::config::{Config, Source};
use extsecurity::exits;
use extsecurity::request::{self};

pub(crate) fn run(cli: Cli, args: &[OsString]) -> u8 {
    // The audit reads Asterisk's files, not extsecurity's: a broken extsecurity.toml
    // must not hide what is wrong with Asterisk's.
    if let Command::Audit {
        asterisk_dir,
        fail2ban_dir,
        json,
    } = &cli.command
    {
        return audit(asterisk_dir, fail2ban_dir, *json);
    }
    let Some(config) = load_config(cli.config.as_deref()) else {
        return match cli.command {
            Command::Check { on_error, .. } => on_error_status(on_error, exits::CONFIG),
            _ => exits::CONFIG,
        };
    };
    match cli.command {
        Command::Check {
            fields,
            fail_on_alert,
            on_error,
        } => {
            let made_by_root = say_log_made_by_root(&config.0.log_file);
            let status = judge(
                &config,
                request::parse_encoded(fields.fields(), &joined(args)),
                fail_on_alert,
            );
            made_by_root();
            on_error_status(on_error, status)
        }
        Command::Explain {
            fields,
            plain,
            json,
        } => explain(&config, explain_request(&fields, &plain, &json, args)),
        Command::CheckConfig {
            quiet,
            dialplan,
            asterisk_dir,
        } => {
            let status = check_config(&config, quiet);
            if let (false, Some(summary)) = (quiet, audit_summary(&asterisk_dir)) {
                println!("{summary}");
            }
            check_dialplan(&config.0, &dialplan, quiet);
            status
        }
        Command::Audit {
            asterisk_dir,
            fail2ban_dir,
            json,
        } => audit(&asterisk_dir, &fail2ban_dir, json),
        Command::CrowdsecCheck => crowdsec_check(&config.0),
        Command::Edge { action } => match action {
            EdgeAction::Lookup { address } => edge_lookup(&config.0, address),
            EdgeAction::Update { url } => edge_update(&config.0, url),
            EdgeAction::WhatIf { since } => edge_what_if(&config.0, since),
        },
        Command::Agi { script } => {
            let script =
                extsecurity::agi::session::Script::of(script.as_deref().map(str::as_bytes));
            extsecurity::agi::stdio::run(&config.0, script)
        }
        Command::Report {
            logs,
            address: Some(ip),
            since,
            until,
            ..
        } => report_address(&config.0, &logs, ip, (since, until)),
        Command::Report {
            logs,
            json,
            top,
            html,
            since,
            until,
            ..
        } => report(&config.0, &logs, json, top, html, (since, until)),
        Command::Bans {
            remove_table: true, ..
        } => remove_table(&config.0),
        Command::Bans {
            explain: Some(ip), ..
        } => explain_ban(&config.0, ip),
        Command::Bans { json, .. } => bans(&config.0, json),
        Command::Status { json } => daemon_status(&config.0, json),
        Command::Unban {
            target,
            fail2ban_socket,
            jail,
        } => unban(&config.0, target, fail2ban_socket, jail),
        Command::Ban {
            target,
            length,
            reason,
        } => ban(&config.0, target, length, &reason),
        Command::Fraud {
            action: FraudAction::Status { account, json },
        } => fraud_status(&config.0, account.as_deref(), json),
        Command::Fraud {
            action: FraudAction::Release { account, unban },
        } => fraud_release(&config.0, &account, unban),
        Command::Fraud {
            action: FraudAction::Dialplan,
        } => fraud_dialplan(&config.0),
        Command::Serve { listen } => match serve(config, listen) {
            Ok(()) => exits::OK,
            Err(e) => {
                eprintln!("extsecurity: {e:#}");
                exits::SERVE
            }
        },
    }
}

pub(crate) fn generate(what: extsecurity::manual::Generated) -> u8 {
    use clap::CommandFactory as _;
    use std::io::Write as _;
    match std::io::stdout().write_all(&what.render(Cli::command())) {
        Ok(()) => exits::OK,
        Err(e) => {
            eprintln!("extsecurity: cannot write: {e}");
            exits::INTERNAL
        }
    }
}

/// `extsecurity serve`: diagnostics on stderr (the journal under systemd), then the
/// daemon until SIGTERM or SIGINT.
pub(crate) fn serve(
    (config, source): (Config, Source),
    listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    extsecurity::diagnostics::init();
    extsecurity::daemon::serve::run(config, source, listen)
}

/// The seed's dialplan passes one JSON object, which the shell may have split into
/// several words; nothing else starts with `{`.
pub(crate) fn is_legacy_json(first: &OsStr) -> bool {
    first.as_bytes().trim_ascii_start().first() == Some(&b'{')
}

/// All arguments joined by one space, as the seed script read its request.
pub(crate) fn joined(args: &[OsString]) -> Vec<u8> {
    let words: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    words.join(&b' ')
}
