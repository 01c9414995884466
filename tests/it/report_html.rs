//! Issue 21, pictures: `extsecurity report --html` loaded in a real headless browser
//! (Debian's `chromium`): the page loads with no console message, its charts and
//! tables hold the figures `report --json` gives for the same log, a caller's markup
//! stays text, and a screenshot shows it (`doc/report.png`, remade with
//! `UPDATE_GENERATED=1 cargo test --test it report_html::`).

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{bin, repo};

/// Three days as the writers write them: guest calls (ok and alerts), AMI alerts,
/// outbound checks, a bad request, and a scanner whose number carries markup.
fn log() -> String {
    let mut lines = Vec::new();
    for (day, scale) in [("2026-11-29", 1), ("2026-11-30", 3), ("2026-12-01", 2)] {
        for hour in [3, 9, 14, 21] {
            for i in 0..(scale * (hour % 5 + 1)) {
                let ip = format!("203.0.113.{}", (i * 7 + hour) % 40 + 1);
                let (reason, exten) = match i % 4 {
                    0 => ("blocked_user_agent", "00972599123456"),
                    1 => ("extension_scan(11)", "100"),
                    2 => ("wrong_exten_type", "9011441234"),
                    _ => ("call_rate(31)", "0088216"),
                };
                lines.push(format!(
                    "{day} {hour:02}:{i:02}:00.000 ERROR ip={ip} reason={reason} callerid_num='1' callerid_name='' dest_exten='{exten}' peer_name='' user_agent='friendly-scanner'"
                ));
            }
            for i in 0..10 {
                lines.push(format!(
                    "{day} {hour:02}:{i:02}:30.000 INFO ip=198.51.100.{i} reason=ok callerid_num='5551234' callerid_name='Alice' dest_exten='4930901820' peer_name='trunk' user_agent='Yealink'"
                ));
            }
        }
        lines.push(format!(
            "{day} 12:00:00.000 ERROR ip=192.0.2.66 reason=auth_bruteforce tries=6 window_seconds=60 last_event=InvalidPassword service='PJSIP' account='100'"
        ));
        lines.push(format!(
            "{day} 12:30:00.000 WARNING ip=192.0.2.80 reason=refused(premium) account='alice' class=premium number='+499001123456' live=1"
        ));
        lines.push(format!(
            "{day} 12:31:00.000 INFO ip=192.0.2.80 reason=ok account='alice' class=national number='+4930901820' live=1"
        ));
    }
    // A sweep from 300 addresses of one /16, ten to a /24: one row of the table.
    for i in 0..300 {
        lines.push(format!(
            "2026-11-30 18:{:02}:{:02}.000 ERROR ip=198.18.{}.{} reason=extension_scan(11) callerid_num='1' callerid_name='' dest_exten='101' peer_name='' user_agent='sipvicious'",
            i / 60,
            i % 60,
            i / 10,
            i % 10 + 1
        ));
    }
    lines.push("2026-12-01 13:00:00.000 ERROR ip=192.0.2.90 reason=toll_fraud(concurrent) account='bob' class=international number='+442079460000' live=3 figure=3 limit=3".into());
    lines.push("2026-12-01 13:05:00.000 ERROR ip=203.0.113.99 reason=wrong_exten_type callerid_num='1' callerid_name='' dest_exten='<img src=x onerror=alert(1)>' peer_name='' user_agent='x'".into());
    lines.push("2026-12-01 13:06:00.000 CRITICAL reason=bad_request error='x' request='y'".into());
    lines.join("\n") + "\n"
}

/// `extsecurity report ARGS LOG` with a configuration whose log is `log`.
fn run(args: &[&str], log: &Path) -> std::process::Output {
    let config = log.with_extension("toml");
    std::fs::write(&config, format!("log_file = {log:?}\n")).unwrap();
    Command::new(bin())
        .arg("--config")
        .arg(&config)
        .args(args)
        .arg(log)
        .output()
        .unwrap()
}

/// Every value of `attr` in `html`, in order.
fn attrs<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let key = format!(" {attr}=\"");
    html.split(key.as_str())
        .skip(1)
        .map(|rest| &rest[..rest.find('"').unwrap()])
        .collect()
}

/// `chromium --headless` with what it said on stderr.
fn chromium(args: &[&str]) -> (String, String) {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            // Nothing may be fetched: every host is unresolvable.
            "--host-resolver-rules=MAP * ~NOTFOUND",
        ])
        .args(args)
        .output()
        .expect("chromium (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_page_loads_clean_and_its_charts_hold_the_json_reports_figures() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("inbound_extsecurity.log");
    let log_text = log();
    std::fs::write(&log_path, &log_text).unwrap();
    let page = dir.path().join("report.html");

    let out = run(&["report", "--json", "--top", "10"], &log_path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let out = run(
        &["report", "--top", "10", "--html", page.to_str().unwrap()],
        &log_path,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 days"));

    let url = format!("file://{}", page.display());
    let (dom, said) = chromium(&["--dump-dom", &url]);
    assert!(!said.contains("CONSOLE"), "the page said something: {said}");
    assert!(dom.contains("<h1>extsecurity report</h1>"), "{dom}");

    // Totals.
    for (id, key) in [
        ("calls", "calls"),
        ("alerts", "alerts"),
        ("bad_requests", "bad_requests"),
    ] {
        let shown = dom
            .split(&format!("data-total=\"{id}\">"))
            .nth(1)
            .unwrap()
            .split('<')
            .next()
            .unwrap();
        assert_eq!(shown, json[key].to_string(), "{id}");
    }
    // (4+5+5+2) alerted calls an hour-set times 1+3+2, 120 ordinary ones, the markup
    // one, the sweep's 300: AMI and outbound lines are no guest calls.
    assert_eq!(json["calls"], 16 * 6 + 120 + 1 + 300);

    // The day chart: one group per day, its total and each rule's segment.
    let per_day = json["per_day"].as_object().unwrap();
    let days = attrs(&dom, "data-day");
    assert_eq!(days, per_day.keys().map(String::as_str).collect::<Vec<_>>());
    for (day, figures) in per_day {
        let group = dom.split(&format!("data-day=\"{day}\"")).nth(1).unwrap();
        let group = &group[..group.find("</g>").unwrap()];
        assert_eq!(
            attrs(&format!(" {group}"), "data-total")[0],
            figures["alerts"].to_string()
        );
        let rules = attrs(group, "data-rule");
        let counts = attrs(group, "data-count");
        let by_rule = figures["alerts_by_rule"].as_object().unwrap();
        assert_eq!(rules.len(), by_rule.len(), "{day}");
        for (rule, count) in rules.iter().zip(counts) {
            assert_eq!(by_rule[*rule].to_string(), count, "{day} {rule}");
        }
    }
    // The hour chart: a group per hour with lines.
    assert_eq!(
        attrs(&dom, "data-hour").len(),
        json["per_hour"].as_object().unwrap().len()
    );

    // Top offenders, in the JSON report's order, crowded ranges folded: the /16 sweep
    // is one row, the 40 addresses of 203.0.113.0/24 another, a lone address its own.
    let table = dom.split("id=\"offenders\"").nth(1).unwrap();
    let table = &table[..table.find("</table>").unwrap()];
    let ips = attrs(table, "data-ip");
    let alerts = attrs(table, "data-alerts");
    let addresses = attrs(table, "data-addresses");
    let top = json["top_offenders_grouped"].as_array().unwrap();
    assert_eq!(ips.len(), top.len());
    for (((ip, n), a), o) in ips.iter().zip(alerts).zip(addresses).zip(top) {
        assert_eq!(
            (*ip, n, a),
            (
                o["ip"].as_str().unwrap(),
                o["alerts"].to_string().as_str(),
                o["addresses"].to_string().as_str()
            )
        );
        // Its rules, as the JSON counts them.
        let row = table.split(&format!("data-ip=\"{ip}\"")).nth(1).unwrap();
        let shown = row
            .split("class=\"rules\">")
            .nth(1)
            .unwrap()
            .split('<')
            .next()
            .unwrap();
        let rules = o["rules"].as_object().unwrap();
        assert_eq!(shown.split(", ").count(), rules.len(), "{ip}: {shown}");
        for part in shown.split(", ") {
            let (rule, count) = part.rsplit_once(' ').unwrap();
            assert_eq!(rules[rule].to_string(), count, "{ip}: {shown}");
        }
    }
    let row = |ip: &str| {
        let at = ips
            .iter()
            .position(|i| *i == ip)
            .unwrap_or_else(|| panic!("{ip} in {ips:?}"));
        (
            attrs(table, "data-addresses")[at],
            attrs(table, "data-alerts")[at],
        )
    };
    assert_eq!(row("198.18.0.0/16"), ("300", "300"));
    let in_24: std::collections::BTreeSet<&str> = log_text
        .lines()
        .filter_map(|l| l.split(" ip=").nth(1)?.split(' ').next())
        .filter(|ip| ip.starts_with("203.0.113."))
        .collect();
    assert!(in_24.len() > 30, "{in_24:?}");
    assert_eq!(row("203.0.113.0/24").0, in_24.len().to_string());
    assert_eq!(row("192.0.2.66"), ("1", "3"));
    assert!(
        !ips.iter()
            .any(|ip| ip.starts_with("198.18.") && !ip.contains('/')),
        "{ips:?}"
    );
    // Numbers dialled by attackers, and the outbound refusals by class and account.
    let numbers = json["top_numbers"].as_array().unwrap();
    assert_eq!(numbers[0][0], "101", "the sweep's");
    assert_eq!(numbers[1][0], "00972599123456");
    for number in &numbers[..2] {
        assert!(dom.contains(&format!(
            "<td>{}</td><td class=\"n\">{}</td>",
            number[0].as_str().unwrap(),
            number[1]
        )));
    }
    let classes = dom.split("id=\"classes\"").nth(1).unwrap();
    assert!(classes.contains(&format!(
        "data-class=\"premium\" data-refused=\"{}\"",
        json["outbound"]["by_class"]["premium"]["refused"]
    )));
    assert!(
        dom.contains("<td>bob</td>"),
        "the quarantined account is listed"
    );

    // The caller's markup is text, not an element.
    assert!(
        dom.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "shown as text"
    );
    assert!(
        !dom.contains("<img"),
        "no element made from a caller's bytes"
    );
    assert_eq!(dom.matches("<script").count(), 1, "only the JSON block");
}

#[test]
fn a_screenshot_shows_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("inbound_extsecurity.log");
    std::fs::write(&log_path, log()).unwrap();
    let page = dir.path().join("report.html");
    let out = run(&["report", "--html", page.to_str().unwrap()], &log_path);
    assert!(out.status.success());
    let shot = dir.path().join("report.png");
    let (_, said) = chromium(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1150,1900",
        "--hide-scrollbars",
        &format!("file://{}", page.display()),
    ]);
    assert!(!said.contains("CONSOLE"), "{said}");
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert_eq!(width, 1150);
    assert!(
        png.len() > 20_000,
        "a page with charts, not a blank: {} bytes",
        png.len()
    );
    if std::env::var_os("UPDATE_GENERATED").is_some() {
        std::fs::create_dir_all(repo().join("doc")).unwrap();
        std::fs::write(repo().join("doc/report.png"), &png).unwrap();
    }
}
