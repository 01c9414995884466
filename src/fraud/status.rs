//! `extsecurity fraud status` as an administrator reads it: per account its quarantine
//! and why, its figures per class, the last numbers it dialled, the addresses it used.

use std::fmt::Write as _;

use crate::fraud::account::Quarantine;
use crate::fraud::guard::Status;

/// Renders accounts, quarantined first. `now` (Unix seconds) for "time left".
pub fn render(accounts: &[Status], now: u64) -> String {
    let mut out = String::new();
    for a in accounts {
        match &a.quarantine {
            Some(q) => {
                let _ = writeln!(out, "{}  QUARANTINED {}", a.account, quarantine(q, now));
            }
            None => {
                let _ = writeln!(out, "{}  ok", a.account);
            }
        }
        for c in &a.classes {
            let _ = writeln!(
                out,
                "    {}: {} calls this minute, {} this hour, {} today; {} numbers this hour; {} minutes today",
                c.class, c.calls_minute, c.calls_hour, c.calls_day, c.distinct_hour, c.minutes_day
            );
        }
        if !a.last.is_empty() {
            let last: Vec<String> = a
                .last
                .iter()
                .rev()
                .map(|(c, n)| format!("{n} ({c})"))
                .collect();
            let _ = writeln!(out, "    last dialled: {}", last.join(", "));
        }
        if !a.addresses.is_empty() {
            let ips: Vec<String> = a.addresses.iter().rev().map(ToString::to_string).collect();
            let _ = writeln!(out, "    from: {}", ips.join(", "));
        }
    }
    let quarantined = accounts.iter().filter(|a| a.quarantine.is_some()).count();
    let n = accounts.len();
    let plural = if n == 1 { "" } else { "s" };
    let _ = writeln!(out, "{n} account{plural}, {quarantined} quarantined");
    out
}

/// `for 23h 59m 12s more (calls_per_minute, international, from 203.0.113.66)`.
fn quarantine(q: &Quarantine, now: u64) -> String {
    let left = crate::clock::time_left(std::time::Duration::from_secs(q.until.saturating_sub(now)));
    let mut why = vec![q.why.clone()];
    why.extend(q.class.map(|c| c.to_string()));
    why.extend(q.address.map(|a| format!("from {a}")));
    format!("for {left} more ({})", why.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fraud::Class;
    use crate::fraud::guard::ClassStatus;

    #[test]
    fn a_quarantined_account_reads_at_a_glance() {
        let accounts = vec![
            Status {
                account: "1001".into(),
                classes: vec![ClassStatus {
                    class: Class::International,
                    calls_minute: 6,
                    calls_hour: 6,
                    calls_day: 6,
                    distinct_hour: 6,
                    minutes_day: 0,
                }],
                quarantine: Some(Quarantine {
                    why: "calls_per_minute".into(),
                    class: Some(Class::International),
                    since: 1000,
                    until: 1000 + 86_400,
                    address: Some("203.0.113.66".parse().unwrap()),
                }),
                addresses: vec!["203.0.113.66".parse().unwrap()],
                last: vec![(Class::International, "+442079460125".into())],
                active: 1000,
            },
            Status {
                account: "1002".into(),
                classes: vec![],
                quarantine: None,
                addresses: vec![],
                last: vec![],
                active: 900,
            },
        ];
        let text = render(&accounts, 1048);
        assert_eq!(
            text,
            "1001  QUARANTINED for 23h 59m 12s more (calls_per_minute, international, from 203.0.113.66)\n\
             \x20   international: 6 calls this minute, 6 this hour, 6 today; 6 numbers this hour; 0 minutes today\n\
             \x20   last dialled: +442079460125 (international)\n\
             \x20   from: 203.0.113.66\n\
             1002  ok\n\
             2 accounts, 1 quarantined\n"
        );
    }
}
