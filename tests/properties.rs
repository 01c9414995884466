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
        assert_one_clean_line(&Line::for_call(&verdict, &call).render("T"), ip);
        assert_one_clean_line(&Line::for_call(&Verdict::Ok, &call).render("T"), ip);
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
