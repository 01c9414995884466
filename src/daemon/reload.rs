//! What a reload changed, setting by setting: which apply now and which wait for a
//! restart. Pure: the daemon says it ([`say`]) and its parts follow ([`super::parts`]).

use crate::config::Config;
use crate::config::effective::{Setting, settings};

/// Settings a running daemon cannot change: its sockets, its accept loop's limits.
pub const AT_RESTART: &[&str] = &[
    "daemon.fastagi",
    "daemon.listen",
    "daemon.max_connections",
    "daemon.listen_backlog",
    "daemon.max_concurrent_tarpits",
    "daemon.metrics_listen",
    "daemon.control_socket",
];

/// `file`'s settings of [`AT_RESTART`] put back to the running ones: what the daemon
/// runs with after a reload until it restarts, so that `status` shows the address it
/// listens on, not the file's, and a later reload compares with what runs.
pub fn keep_restart_only(file: &mut Config, running: &Config) {
    let (to, from) = (&mut file.daemon, &running.daemon);
    to.fastagi = from.fastagi;
    to.listen = from.listen;
    to.max_connections = from.max_connections;
    to.listen_backlog = from.listen_backlog;
    to.max_concurrent_tarpits = from.max_concurrent_tarpits;
    to.metrics_listen = from.metrics_listen;
    to.control_socket = from.control_socket.clone();
}

/// What each secret kept in a file reads now, as a fingerprint (never the value): a
/// reload after the file changed names it, where the settings alone are the same.
pub fn secret_prints(config: &Config) -> Vec<(String, u64)> {
    use std::hash::{Hash, Hasher};
    config
        .secrets()
        .into_iter()
        .filter(|s| matches!(s.source, crate::config::SecretSource::File(_)))
        .map(|s| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            s.read().ok().hash(&mut hasher);
            (format!("{}_file", s.key), hasher.finish())
        })
        .collect()
}

/// The secret files whose content changed between two [`secret_prints`].
pub fn changed_secrets(before: &[(String, u64)], after: &[(String, u64)]) -> Vec<String> {
    after
        .iter()
        .filter(|(key, print)| before.iter().any(|(k, p)| k == key && p != print))
        .map(|(key, _)| format!("{key} (its content changed)"))
        .collect()
}

/// The settings that differ between two configurations.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Applied now: `trusted_networks`, `nftables.ports`, `[ami] added`…
    pub live: Vec<String>,
    /// Waiting for a restart: the key, and its running and its new value.
    pub at_restart: Vec<(String, String, String)>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.live.is_empty() && self.at_restart.is_empty()
    }
}

/// Compares `old` and `new` key by key. A table switched on or off (`[ami]`,
/// `[crowdsec]`, `[nftables]`, `[fraud]`) is one change, not one per key.
pub fn diff(old: &Config, new: &Config) -> Diff {
    let (before, after) = (settings(old), settings(new));
    let find = |all: &[Setting], key: &str| all.iter().find(|s| s.key == key).cloned();
    let mut out = Diff::default();
    let mut switched = Vec::new();
    // The tables that can be absent are those check-config's effective settings mark
    // `[name]` when they are: one list, kept in config/effective.rs.
    let mut markers: Vec<&str> = Vec::new();
    for s in before.iter().chain(&after) {
        if s.key.starts_with('[') && !markers.contains(&s.key.as_str()) {
            markers.push(&s.key);
        }
    }
    for absent in markers {
        let table = absent.trim_start_matches('[').trim_end_matches(']');
        match (find(&before, absent), find(&after, absent)) {
            (Some(_), None) => out.live.push(format!("[{table}] added")),
            (None, Some(_)) => out.live.push(format!("[{table}] removed")),
            _ => continue,
        }
        switched.push(table);
    }
    // A switched table's keys, and its marker, are in that one change.
    let in_switched = |key: &str| {
        switched.iter().any(|t| {
            key.strip_prefix(t)
                .is_some_and(|rest| rest.starts_with('.'))
                || key == format!("[{t}]")
        })
    };
    for new in &after {
        let Some(old) = find(&before, &new.key) else {
            if !in_switched(&new.key) {
                push_once(&mut out.live, format!("{} added", owner(&new.key)));
            }
            continue;
        };
        if !old.differs(new) {
            continue;
        }
        match AT_RESTART.contains(&new.key.as_str()) {
            true => out
                .at_restart
                .push((new.key.clone(), old.value.clone(), new.value.clone())),
            false => out.live.push(new.key.clone()),
        }
    }
    for old in &before {
        if find(&after, &old.key).is_none() && !in_switched(&old.key) {
            push_once(&mut out.live, format!("{} removed", owner(&old.key)));
        }
    }
    out
}

/// What a key that comes or goes belongs to: a per-account override's keys
/// (`fraud.account."alice".international.max_seconds`) are the account's
/// (`fraud.account."alice"`), said once.
fn owner(key: &str) -> &str {
    match key.starts_with("fraud.account.") {
        true => key.rsplitn(3, '.').nth(2).unwrap_or(key),
        false => key,
    }
}

fn push_once(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// One INFO line for what applies now, one WARNING for what waits for a restart.
pub fn say(diff: &Diff, source: &crate::config::Source) {
    match diff.live.is_empty() {
        true => tracing::info!("configuration reloaded from {source}: no setting changed"),
        false => tracing::info!(
            "configuration reloaded from {source}; applied now: {}",
            diff.live.join(", ")
        ),
    }
    if !diff.at_restart.is_empty() {
        let list: Vec<String> = diff
            .at_restart
            .iter()
            .map(|(key, old, new)| format!("{key} (running {old}, file {new})"))
            .collect();
        tracing::warn!(
            "configuration reloaded, but these settings apply only at the next restart (systemctl restart extsecurity): {}",
            list.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(text: &str) -> Config {
        Config::from_toml(text, Path::new("t.toml")).unwrap()
    }

    /// Every setting of AT_RESTART is kept, and only those: the list and the function
    /// cannot drift apart.
    #[test]
    fn the_restart_only_settings_are_kept_and_nothing_else() {
        let running = config("");
        let file = config(
            "tarpit_seconds = 1\n[daemon]\nfastagi = false\nlisten = '127.0.0.1:4574'\nmax_connections = 7\nlisten_backlog = 8\nmax_concurrent_tarpits = 9\nmetrics_listen = '127.0.0.1:9999'\ncontrol_socket = '/tmp/x.sock'\n[ami]\nusername = 'u'\nsecret = 'p'\n",
        );
        let before = diff(&running, &file);
        let mut pending: Vec<&str> = before
            .at_restart
            .iter()
            .map(|(k, _, _)| k.as_str())
            .collect();
        pending.sort_unstable();
        let mut all = AT_RESTART.to_vec();
        all.sort_unstable();
        assert_eq!(pending, all);
        let mut kept = file.clone();
        keep_restart_only(&mut kept, &running);
        let after = diff(&running, &kept);
        assert!(after.at_restart.is_empty(), "{:?}", after.at_restart);
        assert_eq!(after.live, before.live);
    }

    #[test]
    fn a_secret_files_new_content_is_named_and_its_value_never() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("crowdsec.secret");
        std::fs::write(&file, "old-password\n").unwrap();
        let text = format!(
            "[crowdsec]\nlapi_url = 'http://127.0.0.1:8080'\nmachine_id = 'pbx1'\npassword_file = {file:?}\n"
        );
        let before = secret_prints(&config(&text));
        assert_eq!(
            changed_secrets(&before, &secret_prints(&config(&text))),
            Vec::<String>::new()
        );
        std::fs::write(&file, "new-password\n").unwrap();
        let changed = changed_secrets(&before, &secret_prints(&config(&text)));
        assert_eq!(changed, ["crowdsec.password_file (its content changed)"]);
        assert!(!changed[0].contains("password\n") && !changed[0].contains("new-password"));
    }

    #[test]
    fn switching_notify_on_is_one_change() {
        let on = config("[notify]\nwebhook_url = 'https://hooks.example.org/x'\n");
        let d = diff(&config(""), &on);
        assert_eq!(d.live, ["[notify] added"]);
        assert_eq!(diff(&on, &config("")).live, ["[notify] removed"]);
    }

    #[test]
    fn a_reload_tells_live_settings_from_those_that_wait() {
        let old = config("trusted_networks = ['192.0.2.0/24']\n[nftables]\nenabled = true\n");
        let new = config(
            "trusted_networks = ['192.0.2.0/24', '198.51.100.0/24']\n[daemon]\nlisten = '127.0.0.1:4600'\n[nftables]\nenabled = true\nports = [5060]\nban_seconds = 60\n",
        );
        let d = diff(&old, &new);
        assert_eq!(
            d.live,
            ["trusted_networks", "nftables.ports", "nftables.ban_seconds"]
        );
        assert_eq!(
            d.at_restart,
            [(
                "daemon.listen".to_string(),
                "\"127.0.0.1:4573\"".to_string(),
                "\"127.0.0.1:4600\"".to_string()
            )]
        );
        assert!(diff(&old, &old).is_empty());
    }

    /// Found trying the shipped dialplan on a real Asterisk: a per-account override
    /// added by a reload applied, but the reload said "no setting changed".
    #[test]
    fn an_account_override_added_or_removed_is_said() {
        let base = "[fraud]\nenabled = true\ncountry_code = '49'\n";
        let old = config(base);
        let new = config(&format!(
            "{base}[fraud.account.'alice'.international]\nmax_seconds = 2\n"
        ));
        let added = diff(&old, &new);
        assert_eq!(added.live, ["fraud.account.\"alice\" added"], "{added:?}");
        assert!(added.at_restart.is_empty());
        let removed = diff(&new, &old);
        assert_eq!(
            removed.live,
            ["fraud.account.\"alice\" removed"],
            "{removed:?}"
        );
        assert!(diff(&new, &new).is_empty());
    }

    #[test]
    fn a_table_switched_on_or_off_is_one_change() {
        let off = config("");
        let on = config(
            "[ami]\nusername = 'u'\nsecret = 'pw'\n[crowdsec]\nmachine_id = 'm'\npassword = 'p'\n[nftables]\nenabled = true\n",
        );
        assert_eq!(
            diff(&off, &on).live,
            ["[ami] added", "[crowdsec] added", "[nftables] added"]
        );
        assert_eq!(
            diff(&on, &off).live,
            ["[ami] removed", "[crowdsec] removed", "[nftables] removed"]
        );
    }
}
