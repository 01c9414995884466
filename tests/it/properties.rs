//! Properties over arbitrary input: no request makes a parser panic, and every line the
//! alert log would write is exactly one line of printable ASCII whose only `ip=` is the
//! transport's address.

use extsecurity::alert_log::Line;
use extsecurity::call::Call;
use extsecurity::config::Config;
use extsecurity::request::{EncodedFields, decode_base64, parse_encoded, parse_json};
use extsecurity::{Verdict, evaluate};
use proptest::prelude::*;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Bytes biased toward what breaks parsers and log lines.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    let special = prop::sample::select(vec![
        b'\n', b'\r', 0, b'"', b'\'', b'\\', b'=', b' ', b'{', b'}', b':', b',', 0x0b, 0x85, 0xe2,
        0xff,
    ]);
    prop::collection::vec(prop_oneof![any::<u8>(), special], 0..300)
}

fn assert_one_clean_line(rendered: &[u8], ip: &str) {
    assert_eq!(rendered.last(), Some(&b'\n'));
    let body = &rendered[..rendered.len() - 1];
    assert!(
        body.iter().all(|b| (0x20..0x7f).contains(b)),
        "{:?}",
        String::from_utf8_lossy(rendered)
    );
    let text = std::str::from_utf8(body).unwrap();
    assert_eq!(text.matches("ip=").count(), 1, "{text}");
    assert!(
        text.starts_with(&format!("T ERROR ip={ip} "))
            || text.starts_with(&format!("T INFO ip={ip} "))
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_json_parser_never_panics(raw in hostile_bytes()) {
        let _ = parse_json(&raw);
    }

    #[test]
    fn seed_shaped_json_never_panics_and_keeps_the_first_ip(
        num in ".{0,40}", name in ".{0,40}", exten in ".{0,40}", ua in ".{0,40}"
    ) {
        let raw = format!(
            r#"{{"ip": "192.0.2.10", "callerid_num": "{num}", "callerid_num": "{name}", "dest_exten": "{exten}", "user_agent":"{ua}", "peer_name": ""}}"#
        );
        match parse_json(raw.as_bytes()) {
            Ok(call) => prop_assert_eq!(call.peer_ip.to_string(), "192.0.2.10"),
            Err(bad) => prop_assert_eq!(bad.blame.map(|ip| ip.to_string()), Some("192.0.2.10".to_string())),
        }
    }

    #[test]
    fn the_option_parser_never_panics(ip in hostile_bytes(), v in hostile_bytes()) {
        let fields = EncodedFields {
            ip: Some(OsStr::from_bytes(&ip)),
            exten: Some(OsStr::from_bytes(&v)),
            user_agent: Some(OsStr::from_bytes(&v)),
            ..EncodedFields::default()
        };
        let _ = parse_encoded(fields, &v);
        let _ = decode_base64(&v);
    }

    #[test]
    fn every_call_line_is_one_clean_line(
        num in hostile_bytes(), name in hostile_bytes(), exten in hostile_bytes(),
        ua in hostile_bytes(), peer in hostile_bytes(), v6 in any::<bool>()
    ) {
        let ip = if v6 { "2001:db8::5" } else { "192.0.2.10" };
        let call = Call {
            callerid_num: num, callerid_name: name, exten, user_agent: ua, peer_name: peer,
            ..Call::new(ip.parse().unwrap())
        };
        let verdict = evaluate(&Config::default(), &call);
        assert_one_clean_line(&extsecurity::check::call_line(&verdict, &call).render("T"), ip);
        assert_one_clean_line(&extsecurity::check::call_line(&Verdict::Ok, &call).render("T"), ip);
    }

    #[test]
    fn every_critical_line_is_one_line_without_ip(error in ".{0,80}", raw in hostile_bytes()) {
        let rendered = Line::bad_request(&error, &raw).render("T");
        let text = std::str::from_utf8(&rendered).unwrap();
        prop_assert_eq!(text.matches('\n').count(), 1);
        prop_assert!(!text.contains("ip="));
        prop_assert!(text.starts_with("T CRITICAL reason=bad_request "));
    }
}

/// The address and reason `parse` reads back from a rendered line, as text.
fn read_back(rendered: &[u8]) -> Option<(Option<String>, String)> {
    use extsecurity::alert_log::{Parsed, parse};
    let body = rendered.strip_suffix(b"\n")?;
    Some(match parse(body)? {
        Parsed::Call { ip, reason, .. } | Parsed::Ban { ip, reason, .. } => {
            (Some(ip.to_string()), reason.to_string())
        }
        Parsed::Outbound { ip, reason, .. } => (ip.map(str::to_string), reason.to_string()),
        Parsed::Critical { .. } => (None, "bad_request".to_string()),
        Parsed::Note { reason, .. } => (None, reason.to_string()),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Issue 28: every kind of line each domain builds, from hostile values, is one line
    /// of printable ASCII that reads back — through `parse`, as report, the pusher and
    /// the digest read it — to the address and reason it was written with, and an
    /// `ERROR` line to the ban it stands for.
    #[test]
    fn every_kind_of_line_reads_back_to_what_wrote_it(
        a in hostile_bytes(),
        b in hostile_bytes(),
        octets in any::<[u8; 4]>(),
        figure in 0u32..100_000,
    ) {
        use extsecurity::ami::codec::{AccountId, Event};
        use extsecurity::by_hand::{Target, ban_line};
        use extsecurity::call::Outbound;
        use extsecurity::check::call_line;
        use extsecurity::fraud::guard::Ended;
        use extsecurity::fraud::lines::{minutes_line, outbound_line, takeover_line};
        use extsecurity::fraud::limits::Severity;
        use extsecurity::fraud::{Class, Decision, Destination, Judgement};
        use extsecurity::Reason;
        use std::net::IpAddr;

        let ip = IpAddr::from(octets);
        let text = String::from_utf8_lossy(&a).into_owned();
        let call = Call {
            callerid_num: a.clone(),
            callerid_name: b.clone(),
            exten: b.clone(),
            user_agent: a.clone(),
            ..Call::new(ip)
        };
        let event = Event {
            kind: "InvalidAccountID",
            is_error: true,
            service: "PJSIP".into(),
            account_id: AccountId::new(&a),
            remote_ip: ip,
        };
        let judgement = Judgement {
            destination: Destination { class: Class::International, e164: None },
            decision: Decision::TollFraud { rule: "concurrent".into(), figure, limit: 3 },
            max_seconds: 0,
            usual_address: false,
            live: 3,
        };
        let outbound = Outbound {
            account: text.clone(),
            number: b.clone(),
            address: Some(ip),
            live: 3,
            call_id: String::new(),
            tampered: false,
        };
        let ended = Ended {
            severity: Severity::Critical,
            figure,
            limit: 1,
            address: Some(ip),
            usual_address: false,
        };
        let lines = [
            call_line(&Verdict::Alert(Reason::WrongExtenType), &call),
            call_line(&Verdict::Ok, &call),
            extsecurity::daemon::ami::alert_line(
                &event,
                "account_scan",
                ("names", 6),
                std::time::Duration::from_secs(60),
            ),
            outbound_line(&judgement, &outbound, false),
            minutes_line(&text, Class::Premium, &ended, false),
            takeover_line(ip, &a, 4),
            ban_line(Target::Addr(ip), &text),
            ban_line(Target::Net("198.51.100.0/24".parse().unwrap()), &text),
            Line::bad_request(&text, &b),
        ];
        for line in &lines {
            let rendered = line.render("2026-12-07 10:00:00.000");
            prop_assert_eq!(rendered.iter().filter(|&&c| c == b'\n').count(), 1);
            prop_assert!(rendered[..rendered.len() - 1].iter().all(|c| (0x20..0x7f).contains(c)));
            let said = String::from_utf8_lossy(&rendered).into_owned();
            let (read_ip, reason) = read_back(&rendered).unwrap_or_else(|| panic!("unread: {said}"));
            let written_ip = line.text().strip_prefix("ip=").map(|_| ip.to_string());
            prop_assert_eq!(&read_ip, &written_ip, "{}", said);
            let code = line.text().split("reason=").nth(1).unwrap().split(' ').next().unwrap();
            prop_assert_eq!(&reason, code, "{}", said);
            if let Some((banned, why)) = line.alert() {
                let alert = extsecurity::crowdsec::Alert::from_log_line(&rendered[..rendered.len() - 1]);
                let alert = alert.unwrap_or_else(|| panic!("no alert read from {said}"));
                prop_assert_eq!(alert.ip, banned);
                prop_assert_eq!(alert.reason.as_str(), why);
            }
        }
    }
}
