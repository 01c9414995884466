//! The shipped fail2ban filter against sample lines, as fail2ban tests its own filters
//! (`fail2ban/tests/files/logs/NAME`: each line preceded by a `# failJSON:` comment).
//!
//! The samples are made by the real formatter, so the file pins the log format: a
//! change to it fails here first. `EXTSECURITY_BLESS=1 cargo test --test it fail2ban_filter::`
//! rewrites the file after a deliberate change. A few lines are written by hand to show
//! that the filter's anchoring holds even for text our writer would have escaped.

use crate::common;

use extsecurity::Call;
use extsecurity::alert_log::Line;
use extsecurity::rules::{Reason, Verdict};

const SAMPLES: &str = "tests/fail2ban/extsecurity.log";
const TIME: &str = "2026-11-24 19:08:52.123";

struct Sample {
    /// Why the line is here: the attack it guards against, or the alert it must catch.
    why: &'static str,
    line: String,
    /// The address fail2ban must take from it, or `None` for no match.
    host: Option<&'static str>,
}

fn call(ip: &str) -> Call {
    Call {
        callerid_num: b"5551234".to_vec(),
        callerid_name: b"Alice".to_vec(),
        exten: b"4915112345678".to_vec(),
        ..Call::new(ip.parse().unwrap())
    }
}

fn render(verdict: Verdict, call: &Call) -> String {
    String::from_utf8(extsecurity::check::call_line(&verdict, call).render(TIME))
        .unwrap()
        .trim_end()
        .to_string()
}

fn samples() -> Vec<Sample> {
    let alert = |reason| Verdict::Alert(reason);
    let mut scanner = call("192.0.2.10");
    scanner.user_agent = b"friendly-scanner".to_vec();
    let mut forged_ua = call("192.0.2.11");
    forged_ua.user_agent = b"ERROR ip=198.51.100.7 reason=x".to_vec();
    let mut forged_line = call("192.0.2.12");
    forged_line.callerid_name =
        format!("x\n{TIME} ERROR ip=198.51.100.7 reason=forged").into_bytes();
    let mut forged_cr = call("192.0.2.13");
    forged_cr.exten = format!("100\r{TIME} ERROR ip=198.51.100.7 reason=forged").into_bytes();
    let mut spoof = call("192.0.2.14");
    spoof.callerid_name = b"x\", \"ip\": \"198.51.100.7".to_vec();
    vec![
        Sample {
            why: "a scanner's user agent",
            line: render(alert(Reason::BlockedUserAgent), &scanner),
            host: Some("192.0.2.10"),
        },
        Sample {
            why: "an IPv6 caller to a short extension",
            line: render(
                alert(Reason::WrongExtenMinLength(3)),
                &Call {
                    exten: b"100".to_vec(),
                    ..call("2001:db8::5")
                },
            ),
            host: Some("2001:db8::5"),
        },
        Sample {
            why: "a second ip key: the first (transport) ip is banned",
            line: render(alert(Reason::RequestTampering), &spoof),
            host: Some("192.0.2.14"),
        },
        Sample {
            why: "accepted call",
            line: render(Verdict::Ok, &call("192.0.2.20")),
            host: None,
        },
        Sample {
            why: "trusted network",
            line: render(Verdict::Trusted, &call("192.0.2.21")),
            host: None,
        },
        Sample {
            why: "attack: a User-Agent of 'ERROR ip=198.51.100.7 reason=x' on an accepted call",
            line: render(Verdict::Ok, &forged_ua),
            host: None,
        },
        Sample {
            why: "attack: a caller name holding LF and a whole forged line",
            line: render(Verdict::Ok, &forged_line),
            host: None,
        },
        Sample {
            why: "attack: an extension holding CR and a forged line",
            line: render(Verdict::Ok, &forged_cr),
            host: None,
        },
        Sample {
            why: "a request that could not be judged names no ip",
            line: String::from_utf8(
                Line::bad_request(
                    "malformed JSON request",
                    b"{\"ip\": \"198.51.100.7\n ERROR ip=198.51.100.7",
                )
                .render(TIME),
            )
            .unwrap()
            .trim_end()
            .to_string(),
            host: None,
        },
        Sample {
            why: "by hand, unescaped: the anchor alone stops a forged ERROR ip= later in the line",
            line: format!(
                "{TIME} INFO ip=192.0.2.30 reason=ok user_agent='ERROR ip=198.51.100.7 reason=x'"
            ),
            host: None,
        },
        Sample {
            why: "by hand: a host name is never resolved and banned",
            line: format!("{TIME} ERROR ip=pbx.example.org reason=x"),
            host: None,
        },
        Sample {
            why: "by hand: fail2ban dates a dateless line with the last date and matches it; \
                  our writer starts every line with the date and no value can start a line",
            line: "ERROR ip=198.51.100.7 reason=x".to_string(),
            host: Some("198.51.100.7"),
        },
    ]
}

fn sample_file(samples: &[Sample]) -> String {
    let mut out = String::from(
        "# Sample lines for dist/fail2ban/filter.d/extsecurity.conf, written by\n\
         # tests/it/fail2ban_filter.rs (EXTSECURITY_BLESS=1 to rewrite). Do not edit by hand.\n",
    );
    for s in samples {
        let json = match s.host {
            Some(host) => {
                format!(r#"{{ "time": "2026-11-24T19:08:52", "match": true , "host": "{host}" }}"#)
            }
            None => r#"{ "match": false }"#.to_string(),
        };
        out.push_str(&format!("# {}\n# failJSON: {json}\n{}\n", s.why, s.line));
    }
    out
}

#[test]
fn samples_are_what_the_formatter_writes() {
    let expected = sample_file(&samples());
    let path = common::repo().join(SAMPLES);
    if std::env::var_os("EXTSECURITY_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &expected).unwrap();
    }
    let committed =
        std::fs::read_to_string(&path).expect("sample file (EXTSECURITY_BLESS=1 makes it)");
    assert_eq!(
        committed, expected,
        "the log format changed: bless the samples if deliberate"
    );
}

#[test]
fn the_real_fail2ban_regex_matches_exactly_the_samples_marked_true() {
    let path = common::repo().join(SAMPLES);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut expected = Vec::new();
    let mut pending: Option<Option<String>> = None;
    for line in text.lines() {
        if let Some(json) = line.strip_prefix("# failJSON: ") {
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            let matched = v["match"].as_bool().unwrap();
            pending = Some(matched.then(|| v["host"].as_str().unwrap().to_string()));
        } else if !line.starts_with('#') {
            let host = pending
                .take()
                .expect("every sample line has a failJSON comment");
            if let Some(host) = host {
                expected.push((line.to_string(), host));
            }
        }
    }
    assert_eq!(expected.len(), 4);
    assert_eq!(common::fail2ban_matches(&path), expected);
}
