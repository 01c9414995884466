//! `extsecurity edge what-if`: the alert log replayed against the edge's lists, so an
//! administrator sees what a country list or a feed would have stopped — and whom it
//! would have locked out — before switching it on.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use super::lookup::Verdict;
use crate::alert_log::{Parsed, parse};

/// What the replay found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WhatIf {
    /// Lines with an address read (after `since`).
    pub calls: u64,
    pub alerts: u64,
    /// Of them, from an address the lists drop.
    pub calls_stopped: u64,
    pub alerts_stopped: u64,
    /// Alerts stopped by each list (`country CN`, `feed URL`).
    pub by_list: BTreeMap<String, u64>,
    /// Addresses that alerted and the lists let through (the bans still catch them).
    pub alerting_passed: usize,
    /// Addresses whose lines were stopped.
    pub stopped_sources: usize,
    verdicts: HashMap<IpAddr, Option<String>>,
    passed: std::collections::HashSet<IpAddr>,
}

impl WhatIf {
    /// Adds one alert-log line; `judge` is the edge's verdict for an address, asked
    /// once per address.
    pub fn add_line(
        &mut self,
        line: &[u8],
        since: &str,
        judge: &mut impl FnMut(IpAddr) -> Verdict,
    ) {
        let (ip, alert) = match parse(line) {
            Some(p) if p.time() < since => return,
            Some(Parsed::Call { ip, alert, .. }) => (ip, alert),
            Some(Parsed::Ban { ip, .. }) => (ip, true),
            Some(Parsed::Outbound {
                ip: Some(ip),
                level,
                ..
            }) => (ip, level == "ERROR"),
            _ => return,
        };
        let Ok(ip) = ip.parse::<IpAddr>() else { return };
        let list = self
            .verdicts
            .entry(ip)
            .or_insert_with(|| list_of(&judge(ip)))
            .clone();
        self.calls += 1;
        self.alerts += u64::from(alert);
        match list {
            Some(list) => {
                self.calls_stopped += 1;
                if alert {
                    self.alerts_stopped += 1;
                    *self.by_list.entry(list).or_default() += 1;
                }
            }
            None if alert => {
                self.passed.insert(ip);
            }
            None => {}
        }
        self.alerting_passed = self.passed.len();
        self.stopped_sources = self.verdicts.values().filter(|v| v.is_some()).count();
    }
}

/// The list that drops an address, as the replay names it.
pub fn list_of(verdict: &Verdict) -> Option<String> {
    match verdict {
        Verdict::Listed(feeds) => Some(format!("feed {}", feeds[0])),
        Verdict::Refused(country) => Some(format!("country {country}")),
        Verdict::Unplaced => Some("no country (unallocated)".into()),
        Verdict::Passes(_) | Verdict::Limited => None,
    }
}

/// The accounts' own addresses (from the toll-fraud guard's state) the lists would
/// drop: `(account, address, list)`. Each is a phone or a travelling user locked out.
pub fn known_hit<'a>(
    known: impl IntoIterator<Item = (&'a str, IpAddr)>,
    judge: &mut impl FnMut(IpAddr) -> Verdict,
) -> Vec<(String, IpAddr, String)> {
    known
        .into_iter()
        .filter_map(|(account, ip)| Some((account.to_string(), ip, list_of(&judge(ip))?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(ip: IpAddr) -> Verdict {
        match ip.to_string().as_str() {
            "203.0.113.100" => Verdict::Refused("CN".into()),
            "203.0.113.67" => Verdict::Listed(vec!["https://x.example/l".into()]),
            _ => Verdict::Limited,
        }
    }

    #[test]
    fn the_log_is_replayed_address_by_address() {
        let log = "\
2026-12-01 08:00:00.000 ERROR ip=203.0.113.100 reason=blocked_user_agent callerid_num='1' dest_exten='00' user_agent='friendly-scanner' peer_name=''
2026-12-01 08:00:01.000 ERROR ip=203.0.113.100 reason=extension_scan callerid_num='1' dest_exten='01' user_agent='' peer_name=''
2026-12-05 08:00:00.000 ERROR ip=203.0.113.67 reason=auth_bruteforce tries=6 window_seconds=60
2026-12-05 09:00:00.000 INFO ip=81.2.69.160 reason=ok callerid_num='0611' dest_exten='0144' user_agent='' peer_name='trunk'
2026-12-05 09:00:01.000 ERROR ip=81.2.69.161 reason=exten_too_short callerid_num='1' dest_exten='1' user_agent='' peer_name=''
2026-12-06 10:00:00.000 ERROR ip=203.0.113.100 reason=toll_fraud(international) account='1003' class=international
2026-11-01 08:00:00.000 ERROR ip=203.0.113.100 reason=extension_scan callerid_num='1' dest_exten='01' user_agent='' peer_name=''
not a line of ours
";
        let mut w = WhatIf::default();
        let mut asked = 0;
        let mut j = |ip| {
            asked += 1;
            judge(ip)
        };
        for line in log.lines() {
            w.add_line(line.as_bytes(), "2026-11-30", &mut j);
        }
        assert_eq!((w.calls, w.alerts), (6, 5));
        assert_eq!((w.calls_stopped, w.alerts_stopped), (4, 4));
        assert_eq!(w.by_list["country CN"], 3);
        assert_eq!(w.by_list["feed https://x.example/l"], 1);
        assert_eq!((w.stopped_sources, w.alerting_passed), (2, 1));
        assert_eq!(asked, 4, "one verdict per address");
    }

    #[test]
    fn an_accounts_own_address_in_a_refused_country_is_named() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let hit = known_hit(
            [("1003", ip("81.2.69.160")), ("1004", ip("203.0.113.100"))],
            &mut judge,
        );
        assert_eq!(
            hit,
            [(
                "1004".to_string(),
                ip("203.0.113.100"),
                "country CN".to_string()
            )]
        );
    }
}
