//! `fraud status`, `fraud release`, `fraud dialplan`: the outbound guard, from the
//! running daemon (over the control protocol) or from its state file when it is down.

use std::path::PathBuf;

use extsecurity::config::Config;
use extsecurity::control;
use extsecurity::exits;

use super::*;

/// Where the outbound guard's state is: the running daemon (over its control socket),
/// or, when no daemon answers there, its state file.
pub(crate) enum GuardAt<'a> {
    Daemon(&'a std::path::Path),
    File(&'a std::path::Path),
}

/// The daemon when it answers; the state file when the socket is there to be asked
/// but nobody listens (the daemon is down). `None` with the reason said.
pub(crate) fn guard_at(config: &Config) -> Option<GuardAt<'_>> {
    let Some(fraud) = &config.fraud else {
        eprintln!(
            "extsecurity: [fraud] is off in this configuration (doc/toll-fraud.md, \"Turning it on\")"
        );
        return None;
    };
    match &config.daemon.control_socket {
        Some(sock) if std::os::unix::net::UnixStream::connect(sock).is_ok() => {
            Some(GuardAt::Daemon(sock))
        }
        Some(_) => Some(GuardAt::File(&fraud.state_file)),
        None => {
            eprintln!(
                "extsecurity: no daemon.control_socket configured: the running daemon cannot be asked"
            );
            None
        }
    }
}

/// The daemon's answer to `request`; `None`, said on stderr, when it did not answer.
fn ask_daemon(sock: &std::path::Path, request: &control::Request) -> Option<control::Answer> {
    control::ask(sock, request)
        .map_err(|e| {
            eprintln!(
                "extsecurity: the daemon did not answer ({}: {e})",
                sock.display()
            )
        })
        .ok()
}

/// An answer that is not the request's: said, and the command fails.
fn unexpected(answer: &control::Answer) -> u8 {
    eprintln!("extsecurity: the daemon answered {:?}", answer.encode());
    exits::FRAUD
}

/// The guard as its state file holds it.
pub(crate) fn guard_from_file(path: &std::path::Path) -> Option<extsecurity::fraud::Guard> {
    match extsecurity::state_file::StateFile::new(path).load() {
        Ok(Some(snapshot)) => Some(extsecurity::fraud::Guard::from_snapshot(snapshot)),
        Ok(None) => Some(extsecurity::fraud::Guard::default()),
        Err(e) => {
            eprintln!(
                "extsecurity: cannot read the state file {}: {e} (run as root)",
                path.display()
            );
            None
        }
    }
}

pub(crate) fn fraud_status(config: &Config, account: Option<&str>, json: bool) -> u8 {
    let now = extsecurity::clock::Now::current().unix;
    let (accounts, from) = match guard_at(config) {
        None => return exits::FRAUD,
        Some(GuardAt::Daemon(sock)) => {
            let request = control::Request::FraudStatus(account.map(str::to_string));
            match ask_daemon(sock, &request) {
                Some(control::Answer::FraudStatus(accounts)) => {
                    (accounts, "the running daemon".to_string())
                }
                Some(other) => return unexpected(&other),
                None => return exits::FRAUD,
            }
        }
        Some(GuardAt::File(path)) => {
            let Some(mut guard) = guard_from_file(path) else {
                return exits::FRAUD;
            };
            (
                guard.status(account, now),
                format!(
                    "the state file {} (the daemon is not running)",
                    path.display()
                ),
            )
        }
    };
    if let (Some(name), true) = (account, accounts.is_empty()) {
        eprintln!("extsecurity: {name}: unknown to the outbound guard (no call, no login seen)");
        return exits::FRAUD;
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&accounts).unwrap_or_default()
        );
    } else {
        print!("{}", extsecurity::fraud::status::render(&accounts, now));
        println!("(from {from})");
    }
    exits::OK
}

pub(crate) fn fraud_dialplan(config: &Config) -> u8 {
    let Some(fraud) = &config.fraud else {
        eprintln!(
            "extsecurity: [fraud] is off in this configuration: set enabled = true and country_code first (doc/toll-fraud.md, \"Turning it on\")"
        );
        return exits::FRAUD;
    };
    let text = extsecurity::fraud::dialplan_numbers::contexts(&fraud.dial_plan);
    // A closed pipe (`| head`) is the reader's choice, not an error.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    exits::OK
}

pub(crate) fn fraud_release(config: &Config, account: &str, lift: bool) -> u8 {
    let now = extsecurity::clock::Now::current().unix;
    let was: Option<Option<extsecurity::fraud::account::Quarantine>> = match guard_at(config) {
        None => return exits::FRAUD,
        Some(GuardAt::Daemon(sock)) => {
            let request = control::Request::FraudRelease(account.to_string());
            match ask_daemon(sock, &request) {
                Some(control::Answer::Released(was)) => Some(was),
                Some(control::Answer::Unknown(_)) => None,
                Some(other) => return unexpected(&other),
                None => return exits::FRAUD,
            }
        }
        Some(GuardAt::File(path)) => {
            let Some(mut guard) = guard_from_file(path) else {
                return exits::FRAUD;
            };
            let was = guard.release(account, now);
            if was.is_some()
                && let Err(e) =
                    extsecurity::state_file::StateFile::new(path).save(&guard.snapshot().0)
            {
                eprintln!(
                    "extsecurity: cannot write the state file {}: {e} (run as root)",
                    path.display()
                );
                return exits::FRAUD;
            }
            was
        }
    };
    match was {
        None => {
            eprintln!(
                "extsecurity: {account}: unknown to the outbound guard (no call, no login seen)"
            );
            exits::FRAUD
        }
        Some(Some(q)) => {
            println!(
                "{account}: quarantine lifted (it was for {}, from {}); its counters reset",
                q.why,
                q.address
                    .map_or("an unknown address".into(), |a| a.to_string())
            );
            match (q.address, lift) {
                (Some(ip), true) => {
                    let target = extsecurity::by_hand::Target::Addr(ip);
                    let fail2ban = extsecurity::by_hand::Fail2ban {
                        socket: PathBuf::from(extsecurity::by_hand::FAIL2BAN_SOCKET),
                        jail: "extsecurity".into(),
                    };
                    said(extsecurity::by_hand::unban(config, target, &fail2ban))
                }
                (Some(ip), false) => {
                    say_still_banned(config, ip);
                    exits::OK
                }
                (None, _) => exits::OK,
            }
        }
        Some(None) => {
            println!("{account}: was not quarantined; its counters reset");
            exits::OK
        }
    }
}

/// After a release: whether the address the account was quarantined from is still
/// banned in the kernel (fail2ban's jail bans it too, for its own time), and how to
/// lift it.
pub(crate) fn say_still_banned(config: &Config, ip: std::net::IpAddr) {
    let kernel = config
        .nftables
        .as_ref()
        .and_then(|n| extsecurity::nftables::list(&n.table).ok())
        .and_then(|bans| bans.into_iter().find(|b| b.net.contains(&ip)));
    match kernel {
        Some(b) => println!(
            "{ip}: still banned in the kernel ({}, {} left), and by fail2ban's jail if it runs: extsecurity unban {ip} (or fraud release --unban) lifts both",
            b.reason,
            extsecurity::clock::time_left(b.expires)
        ),
        None => println!(
            "{ip}: not banned in the kernel; if an ERROR line named it, fail2ban's jail bans it for its own time: extsecurity unban {ip} (or fraud release --unban) lifts that"
        ),
    }
}
