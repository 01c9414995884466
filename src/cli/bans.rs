//! `bans`, `ban`, `unban`: the kernel's ban sets and bans by hand.

use std::path::PathBuf;

use extsecurity::by_hand::Target;
use extsecurity::config::Config;
use extsecurity::exits;

/// The table `[nftables]` names, or the default one.
pub(crate) fn nft_table(config: &Config) -> String {
    config.nftables_table.clone()
}

pub(crate) fn bans(config: &Config, json: bool) -> u8 {
    let table = nft_table(config);
    let mut banned = match extsecurity::nftables::list(&table) {
        Ok(banned) => banned,
        Err(e) => {
            eprintln!("extsecurity: cannot read the bans of table inet {table}: {e}");
            return exits::BANS;
        }
    };
    banned.sort_by_key(|b| std::cmp::Reverse(b.expires));
    if json {
        let rows: Vec<serde_json::Value> = banned
            .iter()
            .map(|b| {
                serde_json::json!({
                    "address": extsecurity::nftables::shown(&b.net),
                    "reason": b.reason,
                    "seconds_left": b.expires.as_secs(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return exits::OK;
    }
    println!("{:<40} {:<28} time left", "address", "reason");
    for b in &banned {
        println!(
            "{:<40} {:<28} {}",
            extsecurity::nftables::shown(&b.net),
            b.reason,
            extsecurity::clock::time_left(b.expires)
        );
    }
    println!("{} banned (table inet {table})", banned.len());
    exits::OK
}

/// `bans --explain ADDR`: the kernel's ban of ADDR (or the range holding it), then
/// what the edge does with it.
pub(crate) fn explain_ban(config: &Config, ip: std::net::IpAddr) -> u8 {
    let table = nft_table(config);
    match extsecurity::nftables::list(&table) {
        Ok(banned) => match banned.iter().find(|b| b.net.contains(&ip)) {
            Some(b) => println!(
                "ban: {} banned for {} more, reason {}",
                extsecurity::nftables::shown(&b.net),
                extsecurity::clock::time_left(b.expires),
                b.reason
            ),
            None => println!("ban: not banned (table inet {table})"),
        },
        Err(e) => println!("ban: unknown, the table cannot be read ({e})"),
    }
    crate::cli::edge_lookup(config, ip)
}

pub(crate) fn remove_table(config: &Config) -> u8 {
    let table = nft_table(config);
    match extsecurity::nftables::remove(&table) {
        Ok(Some(n)) => println!("table inet {table} removed, with its drop rule and {n} bans"),
        Ok(None) => println!("no table inet {table}: nothing to remove"),
        Err(e @ extsecurity::nftables::NftError::InUse(_)) => {
            eprintln!("extsecurity: {e} (stop it first: systemctl stop extsecurity)");
            return exits::BANS;
        }
        Err(e) => {
            eprintln!("extsecurity: cannot remove table inet {table}: {e} (run as root)");
            return exits::BANS;
        }
    }
    exits::OK
}

pub(crate) fn unban(config: &Config, target: Target, fail2ban_socket: PathBuf, jail: String) -> u8 {
    let fail2ban = extsecurity::by_hand::Fail2ban {
        socket: fail2ban_socket,
        jail,
    };
    said(extsecurity::by_hand::unban(config, target, &fail2ban))
}

pub(crate) fn ban(
    config: &Config,
    target: Target,
    length: Option<std::time::Duration>,
    reason: &str,
) -> u8 {
    said(extsecurity::by_hand::ban(config, target, length, reason))
}

/// Prints what a command by hand did; failures on stderr, and exit 8.
pub(crate) fn said(said: extsecurity::by_hand::Said) -> u8 {
    for line in &said.lines {
        println!("{line}");
    }
    match said.failed {
        true => exits::BANS,
        false => exits::OK,
    }
}

/// Run as root, a check that creates the alert log makes it root's, which Asterisk's
/// user then cannot write (the README's first command did this): says so once it is
/// made, with what fixes it. The returned closure looks after the check.
pub(crate) fn say_log_made_by_root(log: &std::path::Path) -> impl FnOnce() + '_ {
    // SAFETY: geteuid(2) cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let existed = log.exists();
    move || {
        if root && !existed && log.exists() {
            eprintln!(
                "extsecurity: made {} as root: Asterisk's user cannot write it until it is group asterisk (the package's postinst does that, or: chgrp asterisk {} && chmod 0660 {})",
                log.display(),
                log.display(),
                log.display()
            );
        }
    }
}
