//! What Asterisk exposes besides SIP, and what watches it: the manager (AMI binds every
//! address once enabled), the HTTP server that carries ARI and AMI-over-HTTP, pjsip's
//! identifier order (without `auth_username` Asterisk's own throttle for unknown users is
//! off), the security log, and fail2ban's `asterisk` jail reading the file Asterisk
//! writes (design.md §3h).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::secrets::{self, MIN_SECRET_LEN};
use super::{Asterisk, Finding, Severity, yes};
use crate::asterisk_conf::{At, Files};

/// Secrets harvested by Metasploit's `asterisk_creds` and every AMI scanner.
const KNOWN_AMI_SECRETS: [&str; 4] = ["amp111", "admin", "password", "secret"];
/// Where Asterisk writes its logs (`astlogdir`).
const LOG_DIR: &str = "/var/log/asterisk";

/// Whether an address (`bindaddr`, with or without a port) is this host only.
pub fn loopback(addr: &str) -> bool {
    let host = addr.trim().trim_start_matches('[');
    let host = host.split(']').next().unwrap_or(host);
    let host = match host.matches(':').count() {
        1 => host.split(':').next().unwrap_or(host),
        _ => host,
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub fn check(asterisk: &Asterisk, files: &impl Files, fail2ban: &Path) -> Vec<Finding> {
    let mut found = Vec::new();
    found.extend(manager(asterisk));
    found.extend(http(asterisk));
    found.extend(identifier(asterisk));
    found.extend(logs(asterisk, files, fail2ban));
    found
}

/// A password's weakness for AMI and ARI users: a known default, svcrack's list, short.
fn weak_password(user: &str, secret: &str) -> Option<String> {
    if KNOWN_AMI_SECRETS.contains(&secret) {
        return Some(format!("the well-known default {:?}", mask(secret)));
    }
    match secrets::guess(user, secret) {
        Some(secrets::Guess::Default(1)) => return Some("the user name".to_string()),
        Some(guess) => return Some(format!("in svcrack's list ({guess})")),
        None => {}
    }
    (secret.chars().count() < MIN_SECRET_LEN)
        .then(|| format!("shorter than {MIN_SECRET_LEN} characters"))
}

/// A well-known default is named by its first letter only: the audit prints no secret.
fn mask(secret: &str) -> String {
    let first: String = secret.chars().take(1).collect();
    format!("{first}…")
}

fn manager(asterisk: &Asterisk) -> Vec<Finding> {
    let conf = &asterisk.manager;
    let Some(general) = conf.named("general").last() else {
        return Vec::new();
    };
    if !general.get("enabled").is_some_and(yes) {
        return Vec::new();
    }
    let bind = general.entry("bindaddr");
    let open = bind.is_none_or(|b| !loopback(&b.value));
    let at = bind.map(|b| &b.at).unwrap_or(&general.at);
    let mut found = Vec::new();
    if open {
        found.push(
            Finding::new("ami-exposed", Severity::Medium, Some(at), format!("AMI listens on {}", bind.map_or("0.0.0.0 (the default)", |b| b.value.as_str())))
                .why("the manager controls the whole PBX (Originate, Command); bound to every address, anyone who reaches port 5038 may try its passwords")
                .fix("bindaddr = 127.0.0.1 unless another host needs AMI; then permit only that host for each user"),
        );
    }
    for user in conf.objects().filter(|s| s.name != "general") {
        found.extend(manager_user(user, open));
    }
    found
}

fn manager_user(user: &crate::asterisk_conf::Section, open: bool) -> Vec<Finding> {
    let mut found = Vec::new();
    let limited = user.get("permit").is_some() || user.get("acl").is_some();
    if open && !limited {
        found.push(
            Finding::new("ami-user-open", Severity::High, Some(&user.at), format!("AMI user {} may log in from any address", user.name))
                .why("with AMI bound off loopback and no permit, a password guessed from anywhere controls the PBX")
                .fix("deny = 0.0.0.0/0.0.0.0 and permit = <the one host that needs it>/255.255.255.255"),
        );
    }
    if let Some(secret) = user.entry("secret")
        && let Some(why) = weak_password(&user.name, &secret.value)
    {
        let severity = if open && !limited {
            Severity::Critical
        } else {
            Severity::Medium
        };
        found.push(
            Finding::new("ami-weak-secret", severity, Some(&secret.at), format!("AMI user {}: the secret is {why}", user.name))
                .why("Metasploit's asterisk_creds and AMI scanners try these first; AMI's Originate dials your trunk with it")
                .fix("set a random secret of 20 characters or more"),
        );
    }
    let write = user.entry("write");
    let dangerous: Vec<&str> = write
        .map(|w| {
            w.value
                .split(',')
                .map(str::trim)
                .filter(|c| matches!(*c, "system" | "command" | "originate" | "all"))
                .collect()
        })
        .unwrap_or_default();
    if let (Some(write), false, true) = (write, dangerous.is_empty(), open && !limited) {
        found.push(
            Finding::new("ami-dangerous-write", Severity::High, Some(&write.at), format!("AMI user {} may write {}", user.name, dangerous.join(",")))
                .why("system and command run shell commands as Asterisk's user; originate places calls: an open AMI user with them is a remote shell and a free trunk")
                .fix("grant only the classes the client needs, and permit only its host"),
        );
    }
    found
}

fn http(asterisk: &Asterisk) -> Vec<Finding> {
    let Some(general) = asterisk.http.named("general").last() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    // Asterisk starts the plain server only when enabled and given a bindaddr.
    let bind = general.entry("bindaddr");
    if let (true, Some(bind)) = (general.get("enabled").is_some_and(yes), bind)
        && !loopback(&bind.value)
    {
        found.push(
            Finding::new("http-exposed", Severity::High, Some(&bind.at), format!("Asterisk's HTTP server listens on {} without TLS", bind.value))
                .why("ARI and AMI-over-HTTP send their passwords over it in the clear, and it answers anyone who reaches the port")
                .fix("bindaddr = 127.0.0.1 (a reverse proxy with TLS in front if another host needs it), or tlsenable with tlsbindaddr and the plain bindaddr on loopback"),
        );
    }
    let exposed = !found.is_empty();
    let ari_on = asterisk
        .ari
        .named("general")
        .last()
        .is_none_or(|g| g.get("enabled").is_none_or(yes));
    for user in asterisk.ari.of_type("user").filter(|_| ari_on) {
        let crypt = user
            .get("password_format")
            .is_some_and(|f| f.eq_ignore_ascii_case("crypt"));
        if let Some(password) = user.entry("password").filter(|_| !crypt)
            && let Some(why) = weak_password(&user.name, &password.value)
        {
            let severity = if exposed {
                Severity::High
            } else {
                Severity::Medium
            };
            found.push(
                Finding::new("ari-weak-password", severity, Some(&password.at), format!("ARI user {}: the password is {why}", user.name))
                    .why("ARI controls every channel and can originate calls")
                    .fix("a random password of 20 characters or more, stored with password_format = crypt"),
            );
        }
    }
    found
}

fn identifier(asterisk: &Asterisk) -> Vec<Finding> {
    if !asterisk.pjsip.exists() {
        return Vec::new();
    }
    let order = asterisk.identifier_order();
    if order.iter().any(|o| o == "auth_username") {
        return Vec::new();
    }
    let set = asterisk
        .pjsip
        .of_type("global")
        .find_map(|g| g.entry("endpoint_identifier_order"));
    let at = set.map(|e| e.at.clone()).or_else(|| {
        asterisk.pjsip.files.first().map(|f| At {
            file: f.clone(),
            line: 1,
        })
    });
    vec![
        Finding::new("identifier-order", Severity::Medium, at.as_ref(), format!("endpoint_identifier_order = {} has no auth_username", order.join(",")))
            .why("Asterisk throttles requests from unknown users (unidentified_request_count) only when auth_username is in the order; without it a scanner's REGISTERs for made-up users are never slowed")
            .fix("endpoint_identifier_order = ip,auth_username,username,anonymous in the type=global section"),
    ]
}

/// The files Asterisk writes (`[logfiles]` channels other than console and syslog),
/// each with its levels.
pub fn log_files(asterisk: &Asterisk) -> Vec<(PathBuf, String, At)> {
    let Some(logfiles) = asterisk.logger.named("logfiles").last() else {
        return Vec::new();
    };
    logfiles
        .entries
        .iter()
        .filter(|e| e.key != "console" && !e.key.starts_with("syslog"))
        .map(|e| {
            let path = match e.key.starts_with('/') {
                true => PathBuf::from(&e.key),
                false => Path::new(LOG_DIR).join(&e.key),
            };
            (path, e.value.to_ascii_lowercase(), e.at.clone())
        })
        .collect()
}

fn logs(asterisk: &Asterisk, files: &impl Files, fail2ban: &Path) -> Vec<Finding> {
    if !asterisk.logger.exists() {
        return Vec::new();
    }
    let written = log_files(asterisk);
    let mut found = Vec::new();
    let security = written
        .iter()
        .any(|(_, levels, _)| levels.contains("security") || levels.contains('*'));
    if !security {
        let at = asterisk
            .logger
            .named("logfiles")
            .last()
            .map(|s| s.at.clone());
        found.push(
            Finding::new("security-log-off", Severity::Medium, at.as_ref(), "no log file takes the security level".to_string())
                .why("failed registrations and ACL refusals are then written nowhere: fail2ban's asterisk jail and anyone investigating afterwards see nothing")
                .fix("security => security in logger.conf [logfiles] (Asterisk writes /var/log/asterisk/security), then logger reload"),
        );
    }
    if let Some((logpath, at)) = jail_logpath(files, fail2ban, "asterisk")
        && !logpath.contains('*')
        && !written.iter().any(|(p, _, _)| p == Path::new(&logpath))
    {
        let names: Vec<String> = written
            .iter()
            .map(|(p, _, _)| p.display().to_string())
            .collect();
        found.push(
            Finding::new("jail-reads-nothing", Severity::High, Some(&at), format!("fail2ban's asterisk jail reads {logpath}, which Asterisk does not write"))
                .why(format!("the jail then never bans anyone; Asterisk writes {}", names.join(", ")))
                .fix("logpath = the file Asterisk writes (Asterisk 20's samples: /var/log/asterisk/messages.log) in jail.local's [asterisk]"),
        );
    }
    found
}

/// The `logpath` of fail2ban's jail `name` when it is enabled, read as fail2ban reads
/// its files (`jail.conf`, `jail.d/*.conf`, `jail.local`, `jail.d/*.local`, later wins;
/// `%(name)s` from the section and `[DEFAULT]`).
pub fn jail_logpath(files: &impl Files, dir: &Path, name: &str) -> Option<(String, At)> {
    let mut order = vec![dir.join("jail.conf")];
    order.extend(files.matching(&dir.join("jail.d/*.conf")));
    order.push(dir.join("jail.local"));
    order.extend(files.matching(&dir.join("jail.d/*.local")));
    let mut ini: BTreeMap<String, BTreeMap<String, (String, At)>> = BTreeMap::new();
    for path in order {
        if let Ok(text) = files.read(&path) {
            read_ini(&path, &text, &mut ini);
        }
    }
    let lookup = |key: &str| {
        ini.get(name)
            .and_then(|s| s.get(key))
            .or_else(|| ini.get("DEFAULT").and_then(|s| s.get(key)))
    };
    if !lookup("enabled").is_some_and(|(v, _)| yes(v)) {
        return None;
    }
    let (path, at) = lookup("logpath")?;
    let mut path = path.clone();
    for _ in 0..4 {
        let Some(start) = path.find("%(") else { break };
        let end = path[start..].find(")s")? + start;
        let value = lookup(&path[start + 2..end]).map(|(v, _)| v.clone())?;
        path.replace_range(start..end + 2, &value);
    }
    Some((path.split_whitespace().next()?.to_string(), at.clone()))
}

fn read_ini(path: &Path, text: &str, ini: &mut BTreeMap<String, BTreeMap<String, (String, At)>>) {
    let mut section = String::new();
    let mut last: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(key) = &last
                && let Some(entry) = ini.get_mut(&section).and_then(|s| s.get_mut(key))
            {
                entry.0.push('\n');
                entry.0.push_str(trimmed);
            }
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            section = name.to_string();
            last = None;
        } else if let Some((key, value)) = trimmed.split_once(['=', ':']) {
            let key = key.trim().to_string();
            let at = At {
                file: path.to_path_buf(),
                line: i + 1,
            };
            ini.entry(section.clone())
                .or_default()
                .insert(key.clone(), (value.trim().to_string(), at));
            last = Some(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asterisk_conf::Memory;

    #[test]
    fn loopback_addresses_with_and_without_ports() {
        for addr in [
            "127.0.0.1",
            "127.0.0.1:5038",
            "::1",
            "[::1]:8088",
            "localhost",
        ] {
            assert!(loopback(addr), "{addr}");
        }
        for addr in ["0.0.0.0", "0.0.0.0:5038", "::", "[::]:8088", "192.0.2.1"] {
            assert!(!loopback(addr), "{addr}");
        }
    }

    #[test]
    fn the_jail_is_read_in_fail2ban_s_order_with_interpolation() {
        let files = Memory::of(
            Path::new("/f"),
            &[
                (
                    "jail.conf",
                    "[DEFAULT]\nenabled = false\nlogs = /var/log/asterisk\n[asterisk]\nlogpath = %(logs)s/messages\n  /var/log/other\n",
                ),
                ("jail.d/defaults.conf", "[asterisk]\nenabled = true\n"),
                ("jail.local", "[asterisk]\nenabled = false\n"),
                ("jail.d/mine.local", "[asterisk]\nenabled = true\n"),
            ],
        );
        let (path, at) = jail_logpath(&files, Path::new("/f"), "asterisk").unwrap();
        assert_eq!(path, "/var/log/asterisk/messages");
        assert_eq!(at.line, 5);
        let off = Memory::of(
            Path::new("/f"),
            &[("jail.conf", "[asterisk]\nlogpath = /x\n")],
        );
        assert_eq!(jail_logpath(&off, Path::new("/f"), "asterisk"), None);
    }

    #[test]
    fn the_identifier_order_is_pjsip_s_default_unless_set() {
        let read = |pjsip: &str| {
            let files = Memory::of(Path::new("/a"), &[("pjsip.conf", pjsip)]);
            Asterisk::read(&files, Path::new("/a")).identifier_order()
        };
        assert_eq!(
            read("[t]\ntype=transport\n"),
            ["ip", "username", "anonymous"]
        );
        assert_eq!(
            read("[g]\ntype=global\nendpoint_identifier_order=ip, auth_username\n"),
            ["ip", "auth_username"]
        );
    }

    #[test]
    fn http_listens_only_when_enabled_and_bound() {
        let ids = |http: &str| {
            let files = Memory::of(Path::new("/a"), &[("http.conf", http)]);
            http_findings(&Asterisk::read(&files, Path::new("/a")))
        };
        assert_eq!(
            ids("[general]\nenabled=yes\nbindaddr=0.0.0.0\n"),
            ["http-exposed"]
        );
        assert!(ids("[general]\nenabled=yes\n").is_empty());
        assert!(ids("[general]\nenabled=no\nbindaddr=0.0.0.0\n").is_empty());
        assert!(ids("[general]\nenabled=yes\nbindaddr=127.0.0.1\n").is_empty());
    }

    fn http_findings(asterisk: &Asterisk) -> Vec<&'static str> {
        http(asterisk).into_iter().map(|f| f.id).collect()
    }
}
