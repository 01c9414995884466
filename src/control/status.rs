//! The running daemon's status as the control protocol carries it: the daemon collects
//! a [`Status`] (`daemon::status::collect`) and answers `status` with it as JSON;
//! `extsecurity status` prints it as text ([`render`]) or passes the JSON on.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// What `status` shows. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub started: u64,
    pub now: u64,
    /// Where the running configuration came from.
    pub config: String,
    pub reloads: u64,
    pub reload_failures: u64,
    /// Whether the last reload took effect (true when none was tried).
    pub last_reload_ok: bool,
    pub fastagi: Option<FastAgi>,
    pub ami: Option<Ami>,
    pub crowdsec: Option<Crowdsec>,
    pub nftables: Option<Nftables>,
    /// `[edge]`; `None` when off.
    #[serde(default)]
    pub edge: Option<Edge>,
    pub fraud: Option<Fraud>,
    /// Calls this daemon judged (guest and outbound).
    pub calls: Counts,
    /// Alert lines this daemon wrote (every rule: per-call, memory, AMI, toll fraud).
    pub alerts: Counts,
    /// Alerts by rule in the last hour, most first.
    pub top_rules: Vec<(String, u64)>,
    /// The last alert lines, newest first.
    pub last_alerts: Vec<String>,
    /// Settings the file changed that apply at the next restart: `key (running X,
    /// file Y)`.
    #[serde(default)]
    pub pending_restart: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub last_minute: u64,
    pub last_hour: u64,
    pub since_start: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FastAgi {
    pub listen: String,
    pub connections_open: i64,
    pub max_connections: usize,
    pub overloaded: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ami {
    pub address: String,
    pub connected: bool,
    /// When it last connected or went down; None before the first try ended.
    pub since: Option<u64>,
    pub reconnects: u64,
    pub events: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Crowdsec {
    pub lapi_url: String,
    pub running: bool,
    pub failing: bool,
    /// Alerts found in the log and not yet accepted by the LAPI.
    pub backlog: u64,
    /// Seconds since the oldest of them was written.
    pub backlog_age_seconds: f64,
    /// The LAPI's decisions pulled (`bouncer_key`); `None` when not pulling.
    #[serde(default)]
    pub pulled: Option<Pulled>,
}

/// What the LAPI's decisions hold here, as the puller keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pulled {
    /// Decisions in force from the LAPI: addresses and ranges in our table, numbers.
    pub addresses: usize,
    pub numbers: usize,
    /// When the last pull succeeded, Unix seconds.
    pub last: Option<u64>,
    pub failing: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nftables {
    pub table: String,
    /// Addresses in the ban sets now.
    pub banned: u64,
    pub bans_total: u64,
    pub errors: u64,
    /// Why bans fail now (`None` while they land).
    #[serde(default)]
    pub failing: Option<String>,
    /// Times the table was rebuilt after its removal.
    #[serde(default)]
    pub rebuilt: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    /// Packets a second one source may send to the SIP ports; 0: no limit.
    pub rate_limit: u32,
    pub rate_burst: u32,
    pub dry_run: bool,
    /// Packets over the rate since the ruleset was written (dropped, or in a dry run
    /// only counted); `None` when the kernel could not be asked.
    pub over_rate: Option<u64>,
    /// Packets from a feed's and a refused country's addresses, counted as `over_rate`.
    #[serde(default)]
    pub from_feeds: Option<u64>,
    #[serde(default)]
    pub from_countries: Option<u64>,
    #[serde(default)]
    pub feeds: Vec<Feed>,
    #[serde(default)]
    pub country: Option<Country>,
}

/// One blocklist feed as the daemon keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Feed {
    pub url: String,
    /// Entries of the copy in force (0: none yet).
    pub entries: usize,
    /// When the copy in force arrived, Unix seconds.
    pub fetched: Option<u64>,
    /// Why the last fetch gave nothing new, if it failed or was refused.
    pub error: Option<String>,
}

/// The country database as the daemon read it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Country {
    pub file: String,
    /// Set entries dropped (merged), and the database's networks placed in a country.
    pub networks: usize,
    pub placed: usize,
    /// When the database was built, Unix seconds.
    pub built: Option<u64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fraud {
    pub accounts: usize,
    pub quarantined: Vec<Quarantined>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quarantined {
    pub account: String,
    pub why: String,
    pub until: u64,
    pub address: Option<std::net::IpAddr>,
}

/// The status as a screen of text.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    let reload = match (s.reloads + s.reload_failures, s.last_reload_ok) {
        (0, _) => String::new(),
        (n, true) => format!(", {n} reloads, the last took effect"),
        (n, false) => format!(
            ", {n} reloads, THE LAST WAS REFUSED (the previous settings run: journalctl -u extsecurity)"
        ),
    };
    let _ = writeln!(
        out,
        "extsecurity {}, pid {}, up {} (since {})",
        s.version,
        s.pid,
        duration(s.now.saturating_sub(s.started)),
        local_time(s.started)
    );
    let _ = writeln!(out, "{:<11} {}{reload}", "config", s.config);
    if !s.pending_restart.is_empty() {
        let _ = writeln!(
            out,
            "{:<11} AT THE NEXT RESTART: {}",
            "",
            s.pending_restart.join(", ")
        );
    }
    let _ = writeln!(out, "{:<11} {}", "FastAGI", fastagi_line(s));
    let _ = writeln!(out, "{:<11} {}", "AMI", ami_line(s));
    let _ = writeln!(out, "{:<11} {}", "CrowdSec", crowdsec_line(s));
    let _ = writeln!(out, "{:<11} {}", "nftables", nftables_line(s));
    let _ = writeln!(out, "{:<11} {}", "edge", edge_line(s));
    for line in edge_lists(s) {
        let _ = writeln!(out, "{:<11} {line}", "");
    }
    let _ = writeln!(out, "{:<11} {}", "fraud", fraud_line(s));
    for (what, c) in [("calls", &s.calls), ("alerts", &s.alerts)] {
        let _ = writeln!(
            out,
            "{what:<11} {} in the last minute, {} in the last hour, {} since start",
            c.last_minute, c.last_hour, c.since_start
        );
    }
    let top: Vec<String> = s
        .top_rules
        .iter()
        .take(5)
        .map(|(rule, n)| format!("{rule} {n}"))
        .collect();
    let top = match top.is_empty() {
        true => "none in the last hour".to_string(),
        false => format!("{} (last hour)", top.join(", ")),
    };
    let _ = writeln!(out, "{:<11} {top}", "top rules");
    match s.last_alerts.is_empty() {
        true => out.push_str("last alerts none since start\n"),
        false => {
            out.push_str("last alerts (newest first)\n");
            for line in &s.last_alerts {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    out
}

fn fastagi_line(s: &Status) -> String {
    let Some(f) = &s.fastagi else {
        return "off (daemon.fastagi = false)".into();
    };
    format!(
        "listening on {}, {} of {} connections busy{}",
        f.listen,
        f.connections_open,
        f.max_connections,
        if f.overloaded { ", OVERLOADED" } else { "" }
    )
}

fn ami_line(s: &Status) -> String {
    let Some(a) = &s.ami else {
        return "off (no [ami])".into();
    };
    let since = a
        .since
        .map(|t| format!(" since {}", local_time(t)))
        .unwrap_or_default();
    let state = match a.connected {
        true => "connected",
        false => "NOT CONNECTED",
    };
    format!(
        "{state} to {}{since}, {} events read, {} reconnects",
        a.address, a.events, a.reconnects
    )
}

fn crowdsec_line(s: &Status) -> String {
    let Some(c) = &s.crowdsec else {
        return "off (no [crowdsec])".into();
    };
    let state = match (c.running, c.failing) {
        (false, _) => "pusher NOT RUNNING",
        (true, true) => "pushing, LAPI FAILING",
        (true, false) => "pushing",
    };
    let age = match c.backlog {
        0 => String::new(),
        _ => format!(", the oldest {}", duration(c.backlog_age_seconds as u64)),
    };
    let pulled = match &c.pulled {
        None => String::new(),
        Some(p) => {
            let last = p
                .last
                .map(|t| format!("last {} ago", duration(s.now.saturating_sub(t))))
                .unwrap_or_else(|| "none yet".into());
            let failing = p
                .failing
                .as_ref()
                .map(|w| format!(", PULL FAILING: {w}"))
                .unwrap_or_default();
            format!(
                "; pulling: {} addresses or ranges and {} numbers in force from the LAPI ({last}){failing}",
                p.addresses, p.numbers
            )
        }
    };
    format!(
        "{state} to {}, {} alerts waiting{age}{pulled}",
        c.lapi_url, c.backlog
    )
}

fn nftables_line(s: &Status) -> String {
    let Some(n) = &s.nftables else {
        return "off (no [nftables])".into();
    };
    let failed = match &n.failing {
        Some(why) => format!("{} FAILED, FAILING NOW: {why}", n.errors),
        None => format!("{} failed", n.errors),
    };
    let rebuilt = match n.rebuilt {
        0 => String::new(),
        1 => ", rebuilt once after its removal".to_string(),
        n => format!(", rebuilt {n} times after its removal"),
    };
    format!(
        "table inet {}: {} addresses banned now, {} bans since start, {failed}{rebuilt}",
        n.table, n.banned, n.bans_total
    )
}

fn edge_line(s: &Status) -> String {
    let Some(e) = &s.edge else {
        return "off (no [edge])".into();
    };
    if e.rate_limit == 0 {
        return "on, no rate limit".into();
    }
    let over = match e.over_rate {
        Some(n) => n.to_string(),
        None => "? (nft could not be asked)".into(),
    };
    match e.dry_run {
        true => format!(
            "DRY RUN: {over} packets over {}/s a source (burst {}) counted, none dropped",
            e.rate_limit, e.rate_burst
        ),
        false => format!(
            "{over} packets over {}/s a source (burst {}) dropped",
            e.rate_limit, e.rate_burst
        ),
    }
}

/// One line per feed and one for the country database: what is in force, how old.
fn edge_lists(s: &Status) -> Vec<String> {
    let Some(e) = &s.edge else {
        return Vec::new();
    };
    let verb = if e.dry_run { "counted" } else { "dropped" };
    let count = |n: Option<u64>| n.map_or("?".to_string(), |n| n.to_string());
    let mut lines = Vec::new();
    if !e.feeds.is_empty() {
        lines.push(format!("feeds: {} packets {verb}", count(e.from_feeds)));
    }
    for f in &e.feeds {
        let age = f
            .fetched
            .map(|t| {
                format!(
                    "{} old",
                    crate::clock::time_left(std::time::Duration::from_secs(
                        s.now.saturating_sub(t)
                    ))
                )
            })
            .unwrap_or_else(|| "NO COPY YET".into());
        let error = f
            .error
            .as_ref()
            .map(|e| format!("; LAST FETCH FAILED: {e}"))
            .unwrap_or_default();
        lines.push(format!("  {}: {} entries, {age}{error}", f.url, f.entries));
    }
    if let Some(c) = &e.country {
        let built = c
            .built
            .and_then(|t| jiff::Timestamp::from_second(t as i64).ok())
            .map(|t| t.strftime("%Y-%m-%d").to_string());
        let what = match (&built, &c.error) {
            (Some(b), None) => format!(
                "{} networks refused of {} (built {b})",
                c.networks, c.placed
            ),
            (Some(b), Some(e)) => format!(
                "{} networks refused (built {b}); RE-READ FAILED: {e}",
                c.networks
            ),
            (None, Some(e)) => format!("NOT IN FORCE: {e}"),
            (None, None) => "not read yet".into(),
        };
        lines.push(format!(
            "countries: {} packets {verb}; {}: {what}",
            count(e.from_countries),
            c.file
        ));
    }
    lines
}

fn fraud_line(s: &Status) -> String {
    let Some(f) = &s.fraud else {
        return "off (no [fraud])".into();
    };
    let quarantined: Vec<String> = f
        .quarantined
        .iter()
        .map(|q| format!("{:?} ({}, until {})", q.account, q.why, local_time(q.until)))
        .collect();
    match quarantined.is_empty() {
        true => format!("{}, none quarantined", accounts(f.accounts)),
        false => format!(
            "{}, {} QUARANTINED: {}",
            accounts(f.accounts),
            quarantined.len(),
            quarantined.join(", ")
        ),
    }
}

/// `1 account`, `7 accounts`.
fn accounts(n: usize) -> String {
    match n {
        1 => "1 account".into(),
        n => format!("{n} accounts"),
    }
}

/// `2d 3h 4m`, `5m 6s`, `7s`.
fn duration(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h {m}m"),
    }
}

/// `2026-12-03 15:04:05` in the alert log's zone.
fn local_time(unix: u64) -> String {
    jiff::Timestamp::from_second(unix as i64)
        .map(|t| {
            t.to_zoned_datetime(crate::clock::local_zone())
                .strftime("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| unix.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> Status {
        Status {
            version: "0.1.0".into(),
            pid: 42,
            started: 1_800_000_000,
            now: 1_800_000_000 + 2 * 86_400 + 3 * 3600 + 4 * 60,
            config: "/etc/asterisk/extsecurity.toml".into(),
            reloads: 2,
            reload_failures: 1,
            last_reload_ok: false,
            fastagi: Some(FastAgi {
                listen: "127.0.0.1:4573".into(),
                connections_open: 3,
                max_connections: 1024,
                overloaded: false,
            }),
            ami: Some(Ami {
                address: "127.0.0.1:5038".into(),
                connected: false,
                since: Some(1_800_000_100),
                reconnects: 4,
                events: 1234,
            }),
            crowdsec: None,
            nftables: Some(Nftables {
                table: "extsecurity".into(),
                banned: 12,
                bans_total: 30,
                errors: 0,
                failing: None,
                rebuilt: 0,
            }),
            edge: Some(Edge {
                rate_limit: 50,
                rate_burst: 100,
                dry_run: true,
                over_rate: Some(420),
                from_feeds: Some(7),
                from_countries: None,
                feeds: vec![
                    Feed {
                        url: "https://www.spamhaus.org/drop/drop.txt".into(),
                        entries: 1412,
                        fetched: Some(1_799_996_400),
                        error: None,
                    },
                    Feed {
                        url: "https://lists.blocklist.de/lists/sip.txt".into(),
                        entries: 0,
                        fetched: None,
                        error: Some("HTTP 503".into()),
                    },
                ],
                country: Some(Country {
                    file: "/var/lib/extsecurity/country.mmdb".into(),
                    networks: 3000,
                    placed: 600_000,
                    built: Some(1_798_761_600),
                    error: None,
                }),
            }),
            fraud: Some(Fraud {
                accounts: 7,
                quarantined: vec![Quarantined {
                    account: "alice".into(),
                    why: "concurrent".into(),
                    until: 1_800_100_000,
                    address: None,
                }],
            }),
            calls: Counts {
                last_minute: 31,
                last_hour: 1204,
                since_start: 20_311,
            },
            alerts: Counts {
                last_minute: 2,
                last_hour: 40,
                since_start: 99,
            },
            top_rules: vec![
                ("extension_scan".into(), 20),
                ("auth_bruteforce".into(), 12),
            ],
            last_alerts: vec!["2027-01-15 08:00:00.000 ERROR ip=203.0.113.5 reason=x".into()],
            pending_restart: vec![
                "daemon.listen (running 127.0.0.1:4573, file 127.0.0.1:4574)".into(),
            ],
        }
    }

    #[test]
    fn the_screen_says_what_runs_and_shouts_what_is_wrong() {
        let text = render(&status());
        for needle in [
            "extsecurity 0.1.0, pid 42, up 2d 3h 4m",
            "3 reloads, THE LAST WAS REFUSED",
            "listening on 127.0.0.1:4573, 3 of 1024 connections busy",
            "AT THE NEXT RESTART: daemon.listen (running 127.0.0.1:4573, file 127.0.0.1:4574)",
            "NOT CONNECTED to 127.0.0.1:5038 since ",
            "off (no [crowdsec])",
            "table inet extsecurity: 12 addresses banned now",
            "edge        DRY RUN: 420 packets over 50/s a source (burst 100) counted, none dropped",
            "            feeds: 7 packets counted\n",
            "              https://www.spamhaus.org/drop/drop.txt: 1412 entries, 2d 4h 4m 0s old\n",
            "              https://lists.blocklist.de/lists/sip.txt: 0 entries, NO COPY YET; LAST FETCH FAILED: HTTP 503\n",
            "            countries: ? packets counted; /var/lib/extsecurity/country.mmdb: 3000 networks refused of 600000 (built 2027-01-01)\n",
            "7 accounts, 1 QUARANTINED: \"alice\" (concurrent, until ",
            "calls       31 in the last minute, 1204 in the last hour, 20311 since start",
            "extension_scan 20, auth_bruteforce 12 (last hour)",
            "  2027-01-15 08:00:00.000 ERROR ip=203.0.113.5 reason=x",
        ] {
            assert!(text.contains(needle), "{needle:?} not in\n{text}");
        }
    }

    #[test]
    fn failing_bans_are_shouted_with_their_cause_and_rebuilds_counted() {
        let mut s = status();
        let n = s.nftables.as_mut().unwrap();
        n.errors = 2;
        n.rebuilt = 1;
        let text = render(&s);
        assert!(
            text.contains("2 failed, rebuilt once after its removal"),
            "{text}"
        );
        let n = s.nftables.as_mut().unwrap();
        n.failing = Some("Operation not permitted (os error 1)".into());
        let text = render(&s);
        assert!(
            text.contains("2 FAILED, FAILING NOW: Operation not permitted (os error 1)"),
            "{text}"
        );
    }

    #[test]
    fn a_quiet_daemon_says_none() {
        let mut s = status();
        s.top_rules.clear();
        s.last_alerts.clear();
        s.fraud = None;
        s.reloads = 0;
        s.reload_failures = 0;
        let text = render(&s);
        assert!(text.contains("none in the last hour"));
        assert!(text.contains("last alerts none since start"));
        assert!(text.contains("off (no [fraud])"));
        assert!(!text.contains("reloads"));
        s.edge.as_mut().unwrap().dry_run = false;
        assert!(
            render(&s).contains("edge        420 packets over 50/s a source (burst 100) dropped")
        );
        s.edge = None;
        assert!(render(&s).contains("edge        off (no [edge])"));
    }

    #[test]
    fn one_account_is_not_accounts() {
        let mut s = status();
        s.fraud.as_mut().unwrap().accounts = 1;
        assert!(
            render(&s).contains("1 account, 1 QUARANTINED"),
            "{}",
            render(&s)
        );
    }

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(duration(7), "7s");
        assert_eq!(duration(306), "5m 6s");
        assert_eq!(duration(3 * 3600 + 60), "3h 1m");
        assert_eq!(duration(86_400 + 7200), "1d 2h 0m");
    }

    #[test]
    fn the_json_reads_back() {
        let s = status();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), s);
    }
}
