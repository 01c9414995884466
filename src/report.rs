//! `extsecurity report`: a summary of alert logs for the operator. Calls, alerts by
//! reason, the top offending addresses with first and last seen, per-hour counts.
//!
//! Lines are streamed (rotated and gzip-compressed files too) and parsed by their fixed
//! layout: `DATE TIME LEVEL ip=ADDR reason=CODE …`. Only the fields before the first
//! caller value are read, and our writer escapes every caller value, so a value can
//! never pose as a field here either.

use std::collections::{BTreeMap, HashMap};

use crate::alert_log::{Parsed, for_each_line, open_log, parse};
pub use crate::alert_log::{backups, with_rotations, with_rotations_and_backups};
use std::fmt::Write as _;
use std::io::{self, Read};
use std::path::Path;

use serde::Serialize;

pub mod html;
mod ranges;

pub use ranges::MIN_MEMBERS as RANGE_MIN_MEMBERS;

/// Every line of `path` whose `ip=` field is `ip` (the field our writer puts before any
/// caller value), passed to `out`.
pub fn lines_about(
    path: &Path,
    ip: std::net::IpAddr,
    mut out: impl FnMut(&[u8]),
) -> io::Result<()> {
    let input = open_log(path)?;
    for_each_line(input, |line| {
        let Some(text) = line else { return };
        let named = match parse(text) {
            Some(Parsed::Call { ip: field, .. })
            | Some(Parsed::Outbound {
                ip: Some(field), ..
            }) => field.parse::<std::net::IpAddr>().ok() == Some(ip),
            _ => false,
        };
        if named {
            out(text);
        }
    })
}

/// Counts for one address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Offender {
    pub ip: String,
    pub alerts: u64,
    pub first_seen: String,
    pub last_seen: String,
    /// Its alerts by rule (the reason without its `(N)`).
    pub rules: BTreeMap<String, u64>,
    /// Alerting addresses this row stands for: 1 for an address, more for a range
    /// (`ip` is then its CIDR, `203.0.113.0/24`).
    pub addresses: u64,
}

impl Offender {
    /// Adds `other`'s counts: one range row made of its addresses.
    fn absorb(&mut self, other: &Offender) {
        self.alerts += other.alerts;
        self.addresses += other.addresses;
        for (rule, n) in &other.rules {
            *self.rules.entry(rule.clone()).or_default() += n;
        }
        if self.first_seen.is_empty() || other.first_seen < self.first_seen {
            self.first_seen.clone_from(&other.first_seen);
        }
        if other.last_seen > self.last_seen {
            self.last_seen.clone_from(&other.last_seen);
        }
    }

    /// `extension_scan 3, call_rate 1`, most first.
    pub fn rules_shown(&self) -> String {
        sorted_desc(&self.rules)
            .iter()
            .map(|(rule, n)| format!("{rule} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Counts for one hour (`2026-11-24 19`) or one day (`2026-11-24`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Hour {
    pub calls: u64,
    pub alerts: u64,
    /// Alerts by rule (the reason without its `(N)`).
    pub alerts_by_rule: BTreeMap<String, u64>,
}

/// Distinct dialled numbers a report remembers at most: past it new ones are not
/// counted, so a scanner sweeping numbers cannot grow the report's memory.
const MAX_NUMBERS: usize = 100_000;

/// The summary of every line read.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub lines: u64,
    /// Judged calls (`INFO` and `ERROR` lines).
    pub calls: u64,
    pub alerts: u64,
    /// `CRITICAL` lines: requests that could not be judged.
    pub bad_requests: u64,
    /// Lines not in our format.
    pub unrecognised: u64,
    /// Requests in the seed's JSON form (`via=legacy_json`): dialplan lines that still
    /// run a shell with the caller's text.
    pub legacy_requests: u64,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub alerts_by_reason: BTreeMap<String, u64>,
    pub calls_by_reason: BTreeMap<String, u64>,
    /// Every alerted address; `top` sorts them.
    #[serde(skip)]
    offenders: HashMap<String, Offender>,
    pub per_hour: BTreeMap<String, Hour>,
    pub per_day: BTreeMap<String, Hour>,
    /// The outbound check's lines, apart from the guest calls above.
    pub outbound: OutboundReport,
    /// The numbers alerted guest calls dialled (`dest_exten`, as written: escaped),
    /// what scanners probe; `top_numbers` sorts them.
    #[serde(skip)]
    numbers: HashMap<String, u64>,
    /// Only lines at or after this time (`2026-12-01`, `2026-12-01 08:00`).
    #[serde(skip)]
    pub since: Option<String>,
    /// Only lines before this time.
    #[serde(skip)]
    pub until: Option<String>,
}

impl Report {
    /// Adds one line (without its LF).
    pub fn add_line(&mut self, line: &[u8]) {
        let parsed = parse(line);
        if let Some(time) = parsed.as_ref().map(Parsed::time)
            && !self.within(time)
        {
            return;
        }
        self.lines += 1;
        self.legacy_requests += u64::from(crate::alert_log::is_legacy(line));
        match parsed {
            Some(Parsed::Call {
                time,
                alert,
                ip,
                reason,
                exten,
            }) => {
                self.add_call(time, alert, ip, reason);
                if let (true, Some(exten)) = (alert, exten) {
                    self.add_number(exten);
                }
            }
            Some(Parsed::Ban { time, ip, reason }) => {
                // An address banned, no call judged.
                self.seen(time);
                self.add_alert(time, ip, reason);
            }
            Some(Parsed::Outbound {
                time,
                level,
                ip,
                reason,
                account,
                class,
            }) => {
                self.seen(time);
                self.outbound.add(time, reason, account, class);
                // Toll fraud is banned on like any alert: the address counts as one.
                if let (Some(ip), "ERROR") = (ip, level) {
                    self.add_alert(time, ip, reason);
                }
            }
            Some(Parsed::Critical { time }) => {
                self.bad_requests += 1;
                self.seen(time);
            }
            Some(Parsed::Note { time, .. }) => self.seen(time),
            None => self.unrecognised += 1,
        }
    }

    /// A report of the lines at or after `since` and before `until`.
    pub fn between(since: Option<String>, until: Option<String>) -> Report {
        Report {
            since,
            until,
            ..Report::default()
        }
    }

    /// Whether a line at `time` is inside `--since`/`--until`.
    fn within(&self, time: &str) -> bool {
        self.since.as_deref().is_none_or(|s| time >= s)
            && self.until.as_deref().is_none_or(|u| time < u)
    }

    fn add_number(&mut self, exten: &str) {
        if let Some(n) = self.numbers.get_mut(exten) {
            *n += 1;
        } else if self.numbers.len() < MAX_NUMBERS {
            self.numbers.insert(exten.to_string(), 1);
        }
    }

    /// Addresses alerted on.
    pub fn distinct_offenders(&self) -> usize {
        self.offenders.len()
    }

    /// The `n` numbers alerted guest calls dialled most (as written: escaped).
    pub fn top_numbers(&self, n: usize) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> =
            self.numbers.iter().map(|(k, v)| (k.clone(), *v)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }

    fn add_call(&mut self, time: &str, alert: bool, ip: &str, reason: &str) {
        self.calls += 1;
        self.seen(time);
        self.per_hour
            .entry(time[..13].to_string())
            .or_default()
            .calls += 1;
        self.per_day
            .entry(time[..10].to_string())
            .or_default()
            .calls += 1;
        bump(&mut self.calls_by_reason, reason);
        if alert {
            self.add_alert(time, ip, reason);
        }
    }

    fn add_alert(&mut self, time: &str, ip: &str, reason: &str) {
        let rule = crate::alert_log::rule_of(reason);
        for period in [
            self.per_hour.entry(time[..13].to_string()).or_default(),
            self.per_day.entry(time[..10].to_string()).or_default(),
        ] {
            period.alerts += 1;
            bump(&mut period.alerts_by_rule, rule);
        }
        self.alerts += 1;
        bump(&mut self.alerts_by_reason, reason);
        let offender = self
            .offenders
            .entry(ip.to_string())
            .or_insert_with(|| Offender {
                ip: ip.to_string(),
                first_seen: time.to_string(),
                addresses: 1,
                ..Offender::default()
            });
        offender.alerts += 1;
        bump(&mut offender.rules, rule);
        // Rotated files may be read in any order: keep the extremes, not the latest.
        if time < offender.first_seen.as_str() {
            offender.first_seen = time.to_string();
        }
        if time > offender.last_seen.as_str() {
            offender.last_seen = time.to_string();
        }
    }

    fn seen(&mut self, time: &str) {
        if self.first_seen.as_deref().is_none_or(|t| time < t) {
            self.first_seen = Some(time.to_string());
        }
        if self.last_seen.as_deref().is_none_or(|t| time > t) {
            self.last_seen = Some(time.to_string());
        }
    }

    /// Reads every line of `input`, bounded in length.
    pub fn add_reader(&mut self, input: impl Read) -> io::Result<()> {
        for_each_line(input, |line| match line {
            Some(text) => self.add_line(text),
            None => {
                self.lines += 1;
                self.unrecognised += 1;
            }
        })
    }

    /// Reads a log file; `.gz` files are decompressed on the fly.
    pub fn add_file(&mut self, path: &Path) -> io::Result<()> {
        let mut input = open_log(path)?;
        self.add_reader(&mut input)
    }

    /// The `n` addresses with the most alerts (ties: the earliest first).
    pub fn top(&self, n: usize) -> Vec<Offender> {
        let mut all: Vec<&Offender> = self.offenders.values().collect();
        all.sort_by(|a, b| {
            b.alerts
                .cmp(&a.alerts)
                .then(a.first_seen.cmp(&b.first_seen))
                .then(a.ip.cmp(&b.ip))
        });
        all.into_iter().take(n).cloned().collect()
    }

    /// [`top`](Self::top), with the addresses of a range that many of them share
    /// folded into one row for the range: a flood from a /16 is one line, not
    /// thousands, while a lone scanner keeps its own.
    pub fn top_grouped(&self, n: usize) -> Vec<Offender> {
        let mut rows = ranges::group(self.offenders.values().cloned().collect());
        rows.sort_by(|a, b| {
            b.alerts
                .cmp(&a.alerts)
                .then(a.first_seen.cmp(&b.first_seen))
                .then(a.ip.cmp(&b.ip))
        });
        rows.truncate(n);
        rows
    }

    /// The report as JSON, with the top `n` offenders.
    pub fn to_json(&self, n: usize) -> String {
        #[derive(Serialize)]
        struct WithTop<'a> {
            #[serde(flatten)]
            report: &'a Report,
            distinct_offenders: usize,
            top_offenders: Vec<Offender>,
            top_offenders_grouped: Vec<Offender>,
            top_outbound_accounts: Vec<AccountCount>,
            top_numbers: Vec<(String, u64)>,
        }
        let out = WithTop {
            report: self,
            distinct_offenders: self.offenders.len(),
            top_offenders: self.top(n),
            top_offenders_grouped: self.top_grouped(n),
            top_outbound_accounts: self.outbound.top(n),
            top_numbers: self.top_numbers(n),
        };
        serde_json::to_string_pretty(&out).expect("a report always serialises")
    }

    /// The report as aligned text tables, with the top `n` offenders.
    pub fn to_table(&self, n: usize) -> String {
        let mut out = String::new();
        let period = match (&self.first_seen, &self.last_seen) {
            (Some(a), Some(b)) => format!("{a} to {b}"),
            _ => "no calls".to_string(),
        };
        let _ = writeln!(out, "period        {period}");
        let _ = writeln!(out, "calls         {}", self.calls);
        let _ = writeln!(out, "alerts        {}", self.alerts);
        let _ = writeln!(out, "bad requests  {}", self.bad_requests);
        if self.unrecognised > 0 {
            let _ = writeln!(out, "unrecognised  {} lines", self.unrecognised);
        }
        if self.legacy_requests > 0 {
            let _ = writeln!(
                out,
                "legacy JSON   {} requests from the seed's System() line, which runs a shell with the caller's text: replace it (extsecurity check-config names it)",
                self.legacy_requests
            );
        }
        let _ = writeln!(out, "\nALERTS BY REASON");
        for (reason, count) in sorted_desc(&self.alerts_by_reason) {
            let _ = writeln!(out, "  {count:>10}  {reason}");
        }
        let _ = writeln!(
            out,
            "\nTOP OFFENDING ADDRESSES ({} in all; {} or more of one range are one row)",
            self.offenders.len(),
            RANGE_MIN_MEMBERS
        );
        let _ = writeln!(
            out,
            "  {:<39} {:>8}  {:<23}  {:<23}  rules",
            "address", "alerts", "first seen", "last seen"
        );
        for o in self.top_grouped(n) {
            let shown = match o.addresses {
                1 => o.ip.clone(),
                many => format!("{} ({many} addresses)", o.ip),
            };
            let _ = writeln!(
                out,
                "  {:<39} {:>8}  {:<23}  {:<23}  {}",
                shown,
                o.alerts,
                o.first_seen,
                o.last_seen,
                o.rules_shown()
            );
        }
        let numbers = self.top_numbers(n);
        if !numbers.is_empty() {
            let _ = writeln!(out, "\nTOP NUMBERS DIALLED BY ALERTED CALLS");
            for (number, count) in numbers {
                let _ = writeln!(out, "  {count:>10}  '{number}'");
            }
        }
        if self.outbound.calls + self.outbound.takeovers > 0 {
            self.outbound_table(&mut out, n);
        }
        let most = self.per_day.values().map(|d| d.alerts).max().unwrap_or(0);
        let _ = writeln!(out, "\nPER DAY");
        // The bar is the alerts column drawn (the busiest day full): no header of its own.
        let _ = writeln!(out, "  {:<16} {:>10} {:>10}", "day", "calls", "alerts");
        for (day, d) in &self.per_day {
            let _ = writeln!(
                out,
                "  {day:<16} {:>10} {:>10}  {}",
                d.calls,
                d.alerts,
                bar(d.alerts, most)
            );
        }
        let _ = writeln!(out, "\nPER HOUR");
        let _ = writeln!(out, "  {:<16} {:>10} {:>10}", "hour", "calls", "alerts");
        for (hour, h) in &self.per_hour {
            let _ = writeln!(
                out,
                "  {:<16} {:>10} {:>10}",
                format!("{hour}:00"),
                h.calls,
                h.alerts
            );
        }
        out
    }
}

impl Report {
    fn outbound_table(&self, out: &mut String, n: usize) {
        let o = &self.outbound;
        let _ = writeln!(
            out,
            "\nOUTBOUND CALLS  {} (refused {}, toll fraud {}, takeovers {})",
            o.calls, o.refused, o.toll_fraud, o.takeovers
        );
        let _ = writeln!(out, "  {:<16} {:>10} {:>10}", "class", "calls", "refused");
        for (class, c) in &o.by_class {
            let _ = writeln!(out, "  {class:<16} {:>10} {:>10}", c.calls, c.refused);
        }
        let _ = writeln!(out, "  reasons");
        for (reason, count) in sorted_desc(&o.by_reason) {
            let _ = writeln!(out, "  {count:>10}  {reason}");
        }
        let _ = writeln!(out, "  ACCOUNTS ({} in all)", o.accounts.len());
        let _ = writeln!(
            out,
            "  {:<24} {:>8} {:>8} {:>10}  {:<23}",
            "account", "calls", "refused", "toll fraud", "last seen"
        );
        for a in o.top(n) {
            let _ = writeln!(
                out,
                "  {:<24} {:>8} {:>8} {:>10}  {:<23}",
                format!("'{}'", a.account),
                a.calls,
                a.refused,
                a.toll_fraud,
                a.last_seen
            );
        }
    }
}

/// `n` of `most` as up to 20 `#`: at least one for any `n` above 0.
fn bar(n: u64, most: u64) -> String {
    if n == 0 || most == 0 {
        return String::new();
    }
    let width = (n * 20).div_ceil(most).clamp(1, 20);
    "#".repeat(width as usize)
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_string(), 1);
        }
    }
}

fn sorted_desc(map: &BTreeMap<String, u64>) -> Vec<(&String, &u64)> {
    let mut v: Vec<_> = map.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v
}

/// `2026-12-01`, `2026-12-01 08:00` or `2026-12-01 08:00:30`: a time `--since` and
/// `--until` take, compared with the log's local times as text.
pub fn parse_bound(text: &str) -> Result<String, String> {
    const SHAPE: &str = "2026-12-01 08:00:30";
    let ok = matches!(text.len(), 10 | 16 | 19)
        && text.bytes().zip(SHAPE.bytes()).all(|(c, s)| {
            if s.is_ascii_digit() {
                c.is_ascii_digit()
            } else {
                c == s
            }
        });
    match ok {
        true => Ok(text.to_string()),
        false => Err(format!(
            "{text:?} is not a local time such as 2026-12-01, 2026-12-01 08:00 or 2026-12-01 08:00:30"
        )),
    }
}

/// The outbound check's calls, from its lines (doc/toll-fraud.md, "Toll fraud: the outbound check").
#[derive(Debug, Default, Serialize)]
pub struct OutboundReport {
    /// Outbound calls judged (lines with a class).
    pub calls: u64,
    /// Refused: by a class, the hours, a quarantine, or as toll fraud.
    pub refused: u64,
    /// Toll fraud: a critical level reached, the account quarantined.
    pub toll_fraud: u64,
    /// Logins that quarantined an account before its first call.
    pub takeovers: u64,
    pub by_class: BTreeMap<String, ClassCount>,
    pub by_reason: BTreeMap<String, u64>,
    #[serde(skip)]
    accounts: HashMap<String, AccountCount>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClassCount {
    pub calls: u64,
    pub refused: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AccountCount {
    /// As written in the log: quoted and escaped.
    pub account: String,
    pub calls: u64,
    pub refused: u64,
    pub toll_fraud: u64,
    pub last_seen: String,
}

impl OutboundReport {
    fn add(&mut self, time: &str, reason: &str, account: &str, class: Option<&str>) {
        let entry = self
            .accounts
            .entry(account.to_string())
            .or_insert_with(|| AccountCount {
                account: account.to_string(),
                ..AccountCount::default()
            });
        if time > entry.last_seen.as_str() {
            entry.last_seen = time.to_string();
        }
        if reason == "takeover" {
            self.takeovers += 1;
            return;
        }
        let toll_fraud = reason.starts_with("toll_fraud(");
        self.toll_fraud += u64::from(toll_fraud);
        entry.toll_fraud += u64::from(toll_fraud);
        // The end of a call (its minutes) is no call of its own.
        let Some(class) = class.filter(|_| !reason.ends_with("(minutes_per_day)")) else {
            return;
        };
        let passed =
            matches!(reason, "ok" | "emergency" | "internal") || reason.starts_with("warning(");
        self.calls += 1;
        entry.calls += 1;
        bump(&mut self.by_reason, reason);
        let c = self.by_class.entry(class.to_string()).or_default();
        c.calls += 1;
        if !passed {
            c.refused += 1;
            self.refused += 1;
            entry.refused += 1;
        }
    }

    /// The `n` accounts with the most toll fraud, then refusals, then calls.
    pub fn top(&self, n: usize) -> Vec<AccountCount> {
        let mut all: Vec<&AccountCount> = self.accounts.values().collect();
        all.sort_by(|a, b| {
            (b.toll_fraud, b.refused, b.calls)
                .cmp(&(a.toll_fraud, a.refused, a.calls))
                .then(a.account.cmp(&b.account))
        });
        all.into_iter().take(n).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(text: &str) -> Report {
        let mut r = Report::default();
        r.add_reader(text.as_bytes()).unwrap();
        r
    }

    const LOG: &str = "\
2026-11-24 19:08:52.123 ERROR ip=192.0.2.10 reason=blocked_user_agent callerid_num='1' user_agent='friendly-scanner'
2026-11-24 19:10:00.000 INFO ip=192.0.2.20 reason=ok callerid_num='5551234' user_agent='ERROR ip\\x3d9.9.9.9 reason\\x3dx'
2026-11-24 20:01:00.500 ERROR ip=192.0.2.10 reason=wrong_exten_type callerid_num='1'
2026-11-24 18:59:59.999 ERROR ip=2001:db8::5 reason=wrong_exten_type callerid_num='1'
2026-11-24 20:02:00.000 CRITICAL reason=bad_request error='x' request='y'
not a line of ours
";

    #[test]
    fn counts_calls_alerts_reasons_and_hours() {
        let r = report(LOG);
        assert_eq!(
            (r.lines, r.calls, r.alerts, r.bad_requests, r.unrecognised),
            (6, 4, 3, 1, 1)
        );
        assert_eq!(r.alerts_by_reason["wrong_exten_type"], 2);
        assert_eq!(r.alerts_by_reason["blocked_user_agent"], 1);
        assert_eq!(r.calls_by_reason["ok"], 1);
        let by_rule = |rule: &str| BTreeMap::from([(rule.to_string(), 1)]);
        assert_eq!(
            r.per_hour["2026-11-24 19"],
            Hour {
                calls: 2,
                alerts: 1,
                alerts_by_rule: by_rule("blocked_user_agent"),
            }
        );
        assert_eq!(
            r.per_hour["2026-11-24 20"],
            Hour {
                calls: 1,
                alerts: 1,
                alerts_by_rule: by_rule("wrong_exten_type"),
            }
        );
        assert_eq!(
            (
                r.per_day["2026-11-24"].calls,
                r.per_day["2026-11-24"].alerts
            ),
            (4, 3)
        );
        assert_eq!(
            r.per_day["2026-11-24"].alerts_by_rule["wrong_exten_type"],
            2
        );
        assert_eq!(r.first_seen.as_deref(), Some("2026-11-24 18:59:59.999"));
        assert_eq!(r.last_seen.as_deref(), Some("2026-11-24 20:02:00.000"));
    }

    #[test]
    fn ami_alerts_ban_but_are_no_calls() {
        let r = report(
            "2026-11-24 19:08:52.123 ERROR ip=192.0.2.10 reason=auth_bruteforce tries=6 window_seconds=60 last_event=InvalidPassword service='PJSIP' account='100'\n\
             2026-11-24 19:09:00.000 ERROR ip=192.0.2.11 reason=account_scan names=6 window_seconds=60 last_event=InvalidAccountID service='PJSIP' account='x'\n",
        );
        assert_eq!((r.calls, r.alerts), (0, 2));
        assert_eq!(r.per_day["2026-11-24"].alerts_by_rule["auth_bruteforce"], 1);
        assert_eq!(r.top(1)[0].ip, "192.0.2.10");
    }

    #[test]
    fn bans_by_hand_are_alerts_not_calls_and_a_range_is_no_stranger() {
        let r = report(
            "2026-12-07 10:00:00.000 ERROR ip=192.0.2.10 reason=manual note='seen on the SBC'\n\
             2026-12-07 10:01:00.000 WARNING reason=manual_range net=198.51.100.0/24 note=''\n",
        );
        assert_eq!((r.calls, r.alerts, r.unrecognised), (0, 1, 0));
        assert_eq!(r.last_seen.as_deref(), Some("2026-12-07 10:01:00.000"));
        assert_eq!(r.top(1)[0].rules["manual"], 1);
    }

    #[test]
    fn the_numbers_scanners_dialled_are_counted_as_written() {
        let r = report(
            "2026-11-24 19:08:52.123 ERROR ip=192.0.2.10 reason=blocked_user_agent callerid_num='1' callerid_name='' dest_exten='00972599' peer_name='' user_agent='x'\n\
             2026-11-24 19:08:53.123 ERROR ip=192.0.2.11 reason=blocked_user_agent callerid_num='1' callerid_name='' dest_exten='00972599' peer_name='' user_agent='x'\n\
             2026-11-24 19:08:54.123 ERROR ip=192.0.2.11 reason=wrong_exten_type callerid_num='1' callerid_name='dest_exten\\x3d\\x27666' dest_exten='9011\\x0a44' peer_name='' user_agent='x'\n\
             2026-11-24 19:08:55.123 INFO ip=192.0.2.12 reason=ok callerid_num='1' callerid_name='' dest_exten='4930901820' peer_name='' user_agent='x'\n",
        );
        assert_eq!(
            r.top_numbers(10),
            [("00972599".to_string(), 2), ("9011\\x0a44".to_string(), 1)],
            "alerted calls only; a forged dest_exten in another value is not read"
        );
    }

    #[test]
    fn since_and_until_keep_the_lines_between() {
        let mut r = Report {
            since: Some("2026-11-24 19".into()),
            until: Some("2026-11-24 20:01".into()),
            ..Report::default()
        };
        r.add_reader(LOG.as_bytes()).unwrap();
        assert_eq!(
            (r.calls, r.alerts),
            (2, 1),
            "19:08 and 19:10; not 18:59 or 20:01:00.5"
        );
        assert_eq!(r.first_seen.as_deref(), Some("2026-11-24 19:08:52.123"));
    }

    #[test]
    fn the_day_bar_scales_to_the_busiest_day() {
        assert_eq!(bar(0, 10), "");
        assert_eq!(bar(10, 10), "#".repeat(20));
        assert_eq!(bar(1, 1000), "#");
        assert_eq!(bar(5, 10), "#".repeat(10));
        assert!(
            report(LOG)
                .to_table(5)
                .contains("2026-11-24                4          3  ####################")
        );
    }

    #[test]
    fn top_offenders_have_first_and_last_seen_and_forged_text_is_no_offender() {
        let top = report(LOG).top(10);
        assert_eq!(
            top.len(),
            2,
            "9.9.9.9 in an escaped value is not an address: {top:?}"
        );
        assert_eq!(
            top[0],
            Offender {
                ip: "192.0.2.10".into(),
                alerts: 2,
                first_seen: "2026-11-24 19:08:52.123".into(),
                last_seen: "2026-11-24 20:01:00.500".into(),
                rules: BTreeMap::from([
                    ("blocked_user_agent".into(), 1),
                    ("wrong_exten_type".into(), 1)
                ]),
                addresses: 1,
            }
        );
        assert_eq!(top[1].ip, "2001:db8::5");
    }

    #[test]
    fn over_long_and_broken_lines_are_counted_not_fatal() {
        let long = format!(
            "2026-11-24 19:08:52.123 ERROR ip=192.0.2.1 reason=x v='{}'\n",
            "a".repeat(100_000)
        );
        let r = report(&format!(
            "{long}\u{1}\n\n2026-11-24 19:08:52.123 ERROR ip=192.0.2.2 reason=y\n"
        ));
        assert_eq!((r.lines, r.alerts, r.unrecognised), (4, 1, 3));
    }

    const OUTBOUND: &str = "\
2026-12-03 10:00:00.000 INFO ip=203.0.113.66 reason=ok account='1001' class=international number='00442079460120' live=1
2026-12-03 10:00:05.000 WARNING ip=203.0.113.66 reason=warning(calls_per_minute) account='1001' class=international number='00442079460123' live=1 figure=4 limit=4
2026-12-03 10:00:09.000 ERROR ip=203.0.113.66 reason=toll_fraud(calls_per_minute) account='1001' class=international number='00442079460125' live=1 figure=6 limit=6
2026-12-03 10:00:10.000 WARNING ip=203.0.113.66 reason=quarantined(calls_per_minute) account='1001' class=premium number='09001123456' live=1
2026-12-03 10:01:00.000 WARNING ip=198.51.100.7 reason=premium_destination account='it\\x27s class\\x3dx' class=premium number='09001123456' live=1
2026-12-03 10:02:00.000 INFO ip=198.51.100.8 reason=emergency account='1002' class=emergency number='112' live=1
2026-12-03 10:03:00.000 WARNING reason=warning(minutes_per_day) account='1003' class=international figure=120 limit=120
2026-12-03 10:04:00.000 WARNING ip=203.0.113.99 reason=takeover account='1004' failed_logins=5
";

    #[test]
    fn the_outbound_view_counts_accounts_classes_and_refusals() {
        let r = report(&format!("{LOG}{OUTBOUND}"));
        assert_eq!(r.calls, 4, "outbound calls are not guest calls");
        assert_eq!(r.alerts, 4, "toll fraud is an alert: it bans");
        let o = &r.outbound;
        assert_eq!(
            (o.calls, o.refused, o.toll_fraud, o.takeovers),
            (6, 3, 1, 1)
        );
        assert_eq!(
            o.by_class["international"],
            ClassCount {
                calls: 3,
                refused: 1
            }
        );
        assert_eq!(
            o.by_class["premium"],
            ClassCount {
                calls: 2,
                refused: 2
            }
        );
        let top = o.top(10);
        assert_eq!(top[0].account, "1001");
        assert_eq!((top[0].calls, top[0].refused, top[0].toll_fraud), (4, 2, 1));
        assert!(
            top.iter().any(|a| a.account == "it\\x27s class\\x3dx"),
            "{top:?}"
        );
        let table = r.to_table(5);
        assert!(
            table.contains("OUTBOUND CALLS  6 (refused 3, toll fraud 1, takeovers 1)"),
            "{table}"
        );
        assert!(r.to_json(5).contains("\"top_outbound_accounts\""));
        let mut about = Vec::new();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), OUTBOUND).unwrap();
        lines_about(file.path(), "203.0.113.66".parse().unwrap(), |l| {
            about.push(l.to_vec())
        })
        .unwrap();
        assert_eq!(about.len(), 4);
    }

    #[test]
    fn json_and_table_name_the_same_figures() {
        let r = report(LOG);
        let json: serde_json::Value = serde_json::from_str(&r.to_json(1)).unwrap();
        assert_eq!(json["alerts"], 3);
        assert_eq!(json["distinct_offenders"], 2);
        assert_eq!(json["top_offenders"][0]["ip"], "192.0.2.10");
        assert_eq!(json["per_hour"]["2026-11-24 20"]["alerts"], 1);
        let table = r.to_table(5);
        assert!(table.contains("alerts        3\n"), "{table}");
        assert!(
            table.contains("\nPER DAY\n  day                   calls     alerts\n"),
            "one header a column, none twice: {table}"
        );
        assert!(table.contains("192.0.2.10"), "{table}");
        assert!(table.contains("2026-11-24 19:00"), "{table}");
    }
}
