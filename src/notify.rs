//! What the administrator is told (`[notify]`), in words: the events, a digest of the
//! alerts, and the message a batch of them makes (a mail's subject and text, the
//! webhook's JSON). Pure: the daemon's notifier (`daemon::notify`) sends them.
//!
//! Account names and numbers come from callers (a SIP From user): they are shown with
//! only printable ASCII, and none of `<`, `>`, `&` (Slack and Teams read those as
//! markup, so a name could otherwise carry a link).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;

use serde::Serialize;

/// Something the administrator should hear about.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// An account passed a warning level of the outbound check.
    TollFraudWarning(Level),
    /// An account passed a critical level: the call was refused and the account
    /// quarantined.
    TollFraud(Level),
    /// A login that looked like a takeover quarantined the account before its first call.
    Takeover {
        account: String,
        address: IpAddr,
        failed_logins: u16,
    },
    /// `extsecurity fraud release`.
    Released {
        account: String,
        quarantined: bool,
    },
    /// A link the daemon needs went down (`AMI`, `CrowdSec LAPI`).
    LinkDown {
        link: String,
        why: String,
    },
    LinkUp {
        link: String,
    },
    /// The alert log stopped taking lines: nothing new is banned by fail2ban.
    LogFailing {
        why: String,
    },
    LogBack {
        lost: u64,
    },
    /// The alerts of the last `seconds`.
    Digest(Digest),
}

/// A level of the outbound check an account reached, on a call from `address`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Level {
    pub account: String,
    pub class: String,
    pub rule: String,
    pub figure: u32,
    pub limit: u32,
    /// None: a Local channel that carried no address (an `Originate`, a call file).
    pub address: Option<IpAddr>,
    /// The address is the account's usual one (`known_address_seconds`): not banned.
    pub usual_address: bool,
}

impl Level {
    /// `account 'alice' reached 3 for concurrent on international calls (critical level
    /// 3), calling from 203.0.113.66`
    fn words(&self, level: &str) -> String {
        let from = match (self.address, self.usual_address) {
            (Some(ip), true) => format!("calling from its usual address {ip}"),
            (Some(ip), false) => format!("calling from {ip}"),
            (None, _) => {
                "from no address (a Local channel: forwarding, a queue, an Originate)".into()
            }
        };
        format!(
            "account {} reached {} for {} on {} calls ({level} level {}), {from}",
            shown(&self.account),
            self.figure,
            self.rule,
            self.class,
            self.limit,
        )
    }

    /// What became of the address, for a quarantine.
    fn address_fate(&self) -> &'static str {
        match (self.address, self.usual_address) {
            (Some(_), true) => {
                " The calls came from the account's usual address, which was NOT banned: a phone or a host on that network may be compromised."
            }
            (Some(_), false) => " The address is banned.",
            (None, _) => "",
        }
    }
}

/// The alerts (bans) of a period: counts by rule and the top addresses.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Digest {
    pub seconds: u64,
    pub alerts: u64,
    pub by_rule: Vec<(String, u64)>,
    /// The addresses with the most alerts, their count and last rule.
    pub top: Vec<(IpAddr, u64, String)>,
}

/// How many addresses a digest names.
const TOP: usize = 10;
/// Addresses a digest counts at most; past it new ones count in the totals only, so that
/// a flood of spoofed addresses cannot grow the notifier's memory.
const MAX_ADDRESSES: usize = 10_000;

/// Counts alerts until the next digest is due.
#[derive(Debug, Default)]
pub struct DigestCounter {
    alerts: u64,
    by_rule: BTreeMap<String, u64>,
    by_address: HashMap<IpAddr, (u64, String)>,
}

impl DigestCounter {
    pub fn alert(&mut self, ip: IpAddr, reason: &str) {
        let rule = crate::alert_log::rule_of(reason);
        self.alerts += 1;
        *self.by_rule.entry(rule.to_string()).or_default() += 1;
        let full = self.by_address.len() >= MAX_ADDRESSES;
        match self.by_address.get_mut(&ip) {
            Some((n, last)) => {
                *n += 1;
                if last != rule {
                    *last = rule.to_string();
                }
            }
            None if !full => {
                self.by_address.insert(ip, (1, rule.to_string()));
            }
            None => {}
        }
    }

    /// The digest of what was counted (None when nothing was), and a fresh count.
    pub fn take(&mut self, seconds: u64) -> Option<Digest> {
        if self.alerts == 0 {
            return None;
        }
        let counted = std::mem::take(self);
        let mut by_rule: Vec<(String, u64)> = counted.by_rule.into_iter().collect();
        by_rule.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut top: Vec<(IpAddr, u64, String)> = counted
            .by_address
            .into_iter()
            .map(|(ip, (n, rule))| (ip, n, rule))
            .collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(TOP);
        Some(Digest {
            seconds,
            alerts: counted.alerts,
            by_rule,
            top,
        })
    }
}

impl Event {
    /// `critical`, `warning` or `info`.
    pub fn severity(&self) -> &'static str {
        match self {
            Event::TollFraud(_) | Event::Takeover { .. } | Event::LogFailing { .. } => "critical",
            Event::TollFraudWarning(_) | Event::LinkDown { .. } => "warning",
            _ => "info",
        }
    }

    /// One line in words.
    pub fn text(&self) -> String {
        match self {
            Event::TollFraudWarning(l) => format!("Toll fraud warning: {}.", l.words("warning")),
            Event::TollFraud(l) => format!(
                "TOLL FRAUD: {}: the call was refused and the account QUARANTINED (only internal, national and emergency calls pass).{} Change its password, then: extsecurity fraud release {}",
                l.words("critical"),
                l.address_fate(),
                shown(&l.account)
            ),
            Event::Takeover {
                account,
                address,
                failed_logins,
            } => format!(
                "TAKEOVER: account {} logged in from a new address {address} after {failed_logins} failed logins: QUARANTINED before its first call. Change its password, then: extsecurity fraud release {}",
                shown(account),
                shown(account)
            ),
            Event::Released {
                account,
                quarantined,
            } => match quarantined {
                true => format!(
                    "Account {} released from quarantine by an administrator; its counters reset.",
                    shown(account)
                ),
                false => format!(
                    "Account {}: counters reset by an administrator (it was not quarantined).",
                    shown(account)
                ),
            },
            Event::LinkDown { link, why } => format!("{link} is DOWN: {}", shown(why)),
            Event::LinkUp { link } => format!("{link} is back."),
            Event::LogFailing { why } => format!(
                "The alert log takes no lines: {}. fail2ban and CrowdSec see nothing new until it is fixed (calls are still judged).",
                shown(why)
            ),
            Event::LogBack { lost } => {
                format!("The alert log takes lines again; {lost} lines were lost meanwhile.")
            }
            Event::Digest(d) => digest_text(d),
        }
    }

    /// How much it matters, 0 first: the subject and first line of a batch name the
    /// worst (a quarantine, then a takeover, then a warning), whatever came first.
    fn rank(&self) -> u8 {
        match self {
            Event::TollFraud(_) => 0,
            Event::Takeover { .. } => 1,
            Event::LogFailing { .. } => 2,
            Event::TollFraudWarning(_) => 3,
            Event::LinkDown { .. } => 4,
            _ => 5,
        }
    }

    /// A few words for a mail's subject.
    fn headline(&self) -> String {
        match self {
            Event::TollFraudWarning(l) => format!("toll fraud warning for {}", shown(&l.account)),
            Event::TollFraud(l) => {
                format!("account {} quarantined (toll fraud)", shown(&l.account))
            }
            Event::Takeover { account, .. } => {
                format!("account {} quarantined (takeover)", shown(account))
            }
            Event::Released { account, .. } => format!("account {} released", shown(account)),
            Event::LinkDown { link, .. } => format!("{link} down"),
            Event::LinkUp { link } => format!("{link} back"),
            Event::LogFailing { .. } => "the alert log takes no lines".into(),
            Event::LogBack { .. } => "the alert log is back".into(),
            Event::Digest(d) => format!("{} alerts", d.alerts),
        }
    }
}

fn digest_text(d: &Digest) -> String {
    let mut text = format!("{} alerts in the last {}:", d.alerts, period(d.seconds));
    let rules: Vec<String> = d.by_rule.iter().map(|(r, n)| format!("{r} {n}")).collect();
    let _ = write!(text, " {}.", rules.join(", "));
    if !d.top.is_empty() {
        text.push_str(" Top addresses:");
        for (ip, n, rule) in &d.top {
            let _ = write!(text, "\n  {ip}  {n} ({rule})");
        }
    }
    text
}

fn period(seconds: u64) -> String {
    match seconds {
        s if s % 3600 == 0 && s >= 3600 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// A caller-chosen value as it may be shown: printable ASCII but `<`, `>`, `&`, `'`
/// and `\`, which are written `\xNN`, the whole in quotes and cut at 64 bytes.
pub fn shown(value: &str) -> String {
    let mut out = String::from("'");
    for &b in value.as_bytes().iter().take(64) {
        match b {
            b'<' | b'>' | b'&' | b'\'' | b'\\' => {
                let _ = write!(out, "\\x{b:02x}");
            }
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    if value.len() > 64 {
        let _ = write!(out, "[+{} bytes]", value.len() - 64);
    }
    out.push('\'');
    out
}

/// One message: a batch of events, as one mail or one webhook POST.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub subject: String,
    pub text: String,
    pub json: serde_json::Value,
}

/// The message for `events` (at least one) from `host`, sent at `time` (RFC 3339).
pub fn message(host: &str, time: &str, events: &[Event]) -> Message {
    let mut ordered: Vec<&Event> = events.iter().collect();
    ordered.sort_by_key(|e| e.rank()); // stable: equals keep their order
    let events = ordered;
    let worst = events
        .iter()
        .map(|e| e.severity())
        .min_by_key(|s| match *s {
            "critical" => 0,
            "warning" => 1,
            _ => 2,
        })
        .unwrap_or("info");
    let first = events.first().map(|e| e.headline()).unwrap_or_default();
    let more = match events.len() {
        0 | 1 => String::new(),
        n => format!(" (+{} more)", n - 1),
    };
    let subject = format!("[extsecurity] {host}: {first}{more}");
    let lines: Vec<String> = events.iter().map(|e| e.text()).collect();
    let text = format!(
        "{}\n\n-- extsecurity on {host}, {time}\n",
        lines.join("\n\n")
    );
    let json = serde_json::json!({
        "text": format!("extsecurity on {host}: {}", lines.join("\n")),
        "host": host,
        "time": time,
        "severity": worst,
        "events": events
            .iter()
            .map(|e| {
                let mut v = serde_json::to_value(e).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("severity".into(), e.severity().into());
                    o.insert("text".into(), e.text().into());
                }
                v
            })
            .collect::<Vec<_>>(),
    });
    Message {
        subject,
        text,
        json,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quarantine(account: &str) -> Event {
        Event::TollFraud(Level {
            account: account.into(),
            class: "international".into(),
            rule: "concurrent".into(),
            figure: 3,
            limit: 3,
            address: Some("203.0.113.9".parse().unwrap()),
            usual_address: false,
        })
    }

    /// Issue 27: a warning then a quarantine in one batch was titled "toll fraud
    /// warning … (+1 more)": the subject and first line now name the quarantine.
    #[test]
    fn a_batch_is_named_for_its_worst_event_whatever_came_first() {
        let warning = Event::TollFraudWarning(Level {
            class: "national".into(),
            rule: "calls_per_hour".into(),
            ..match quarantine("bob") {
                Event::TollFraud(l) => l,
                _ => unreachable!(),
            }
        });
        let takeover = Event::Takeover {
            account: "carol".into(),
            address: "198.51.100.7".parse().unwrap(),
            failed_logins: 12,
        };
        let m = message(
            "pbx1",
            "t",
            &[warning.clone(), takeover.clone(), quarantine("alice")],
        );
        assert_eq!(
            m.subject,
            "[extsecurity] pbx1: account 'alice' quarantined (toll fraud) (+2 more)"
        );
        assert!(m.text.starts_with("TOLL FRAUD"), "{}", m.text);
        let kinds: Vec<&str> = (0..3)
            .map(|i| m.json["events"][i]["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["toll_fraud", "takeover", "toll_fraud_warning"]);
        let m = message("pbx1", "t", &[warning, takeover]);
        assert!(
            m.subject.contains("'carol' quarantined (takeover)"),
            "{}",
            m.subject
        );
    }

    #[test]
    fn a_batch_is_one_message_named_for_its_first_event() {
        let m = message(
            "pbx1",
            "2026-12-03T16:00:00Z",
            &[
                quarantine("alice"),
                Event::LinkDown {
                    link: "AMI".into(),
                    why: "connection refused".into(),
                },
            ],
        );
        assert_eq!(
            m.subject,
            "[extsecurity] pbx1: account 'alice' quarantined (toll fraud) (+1 more)"
        );
        assert!(m.text.contains("QUARANTINED"));
        assert!(m.text.contains("extsecurity fraud release 'alice'"));
        assert!(m.text.contains("AMI is DOWN: 'connection refused'"));
        assert_eq!(m.json["severity"], "critical");
        assert_eq!(m.json["events"][0]["kind"], "toll_fraud");
        assert_eq!(m.json["events"][0]["account"], "alice");
        assert_eq!(m.json["events"][1]["kind"], "link_down");
        assert!(
            m.json["text"]
                .as_str()
                .unwrap()
                .starts_with("extsecurity on pbx1: TOLL FRAUD")
        );
    }

    #[test]
    fn a_hostile_account_name_can_neither_split_a_subject_nor_carry_markup() {
        let m = message(
            "pbx1",
            "t",
            &[quarantine(
                "x\r\nBcc: all@example.org <https://evil.example|click> & more",
            )],
        );
        assert!(
            !m.subject.contains(['\r', '\n', '<', '>', '&']),
            "{}",
            m.subject
        );
        let text = m.json["text"].as_str().unwrap();
        assert!(!text.contains(['<', '>', '&']), "{text}");
        assert!(text.contains(
            "\\x0d\\x0aBcc: all@example.org \\x3chttps://evil.example|click\\x3e \\x26 more"
        ));
        let long = shown(&"a".repeat(100));
        assert!(long.ends_with("[+36 bytes]'"), "{long}");
    }

    #[test]
    fn the_digest_counts_rules_and_names_the_top_addresses() {
        let mut d = DigestCounter::default();
        assert_eq!(d.take(3600), None, "nothing counted, nothing sent");
        let a: IpAddr = "203.0.113.5".parse().unwrap();
        let b: IpAddr = "198.51.100.7".parse().unwrap();
        for _ in 0..3 {
            d.alert(a, "extension_scan");
        }
        d.alert(b, "call_rate(31)");
        let digest = d.take(3600).unwrap();
        assert_eq!(digest.alerts, 4);
        assert_eq!(
            digest.by_rule,
            [("extension_scan".into(), 3), ("call_rate".into(), 1)]
        );
        assert_eq!(digest.top[0], (a, 3, "extension_scan".into()));
        let text = Event::Digest(digest).text();
        assert!(
            text.starts_with("4 alerts in the last 1 h: extension_scan 3, call_rate 1."),
            "{text}"
        );
        assert!(text.contains("\n  203.0.113.5  3 (extension_scan)"));
        assert_eq!(d.take(3600), None, "taken: the count starts again");
    }

    #[test]
    fn a_flood_of_addresses_is_counted_without_remembering_each() {
        let mut d = DigestCounter::default();
        for i in 0..(MAX_ADDRESSES as u32 + 500) {
            d.alert(IpAddr::from(i.to_be_bytes()), "user_agent");
        }
        assert_eq!(d.by_address.len(), MAX_ADDRESSES);
        let digest = d.take(60).unwrap();
        assert_eq!(digest.alerts, MAX_ADDRESSES as u64 + 500);
        assert_eq!(digest.top.len(), TOP);
    }
}
