//! `extsecurity report --html FILE`: the report as one self-contained page — inline CSS
//! and SVG, no script, nothing fetched (a PBX may have no internet). Every bar carries
//! its figures in `data-*` attributes and a `<title>` (the tooltip), so that a browser
//! test can hold the chart to the JSON report; the JSON itself is embedded too.
//!
//! Values from the log (numbers dialled, account names) are caller-chosen: the log
//! keeps `<`, `>`, `&` and `"` as they came, so everything is HTML-escaped here.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::report::{Hour, Report};

/// Bars in the per-hour chart at most: the last week of hours that had lines.
const MAX_HOURS: usize = 168;

/// Colours for rules, in order of their total; the rest share the last.
const PALETTE: [&str; 10] = [
    "#c0392b", "#2471a3", "#d68910", "#239b56", "#7d3c98", "#17a589", "#a04000", "#5d6d7e",
    "#b7950b", "#909497",
];

/// The page for `report`, with the top `n` of each list.
pub fn page(report: &Report, n: usize) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let period = match (&report.first_seen, &report.last_seen) {
        (Some(a), Some(b)) => format!("{a} to {b}"),
        _ => "no lines".into(),
    };
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>extsecurity report, {}</title><style>{CSS}</style></head><body>\n\
         <h1>extsecurity report</h1><p class=\"period\">{}</p>\n",
        esc(&period),
        esc(&period)
    );
    totals(&mut out, report);
    let colours = colours(&report.alerts_by_reason);
    legend(&mut out, &colours);
    out.push_str("<h2>Alerts per day, by rule</h2>\n");
    chart(&mut out, "day", &report.per_day, &colours);
    let hours: BTreeMap<String, Hour> = report
        .per_hour
        .iter()
        .rev()
        .take(MAX_HOURS)
        .map(|(h, c)| (format!("{h}:00"), c.clone()))
        .collect();
    let _ = writeln!(
        out,
        "<h2>Alerts per hour, by rule{}</h2>",
        if report.per_hour.len() > MAX_HOURS {
            " (the last 168 hours with lines)"
        } else {
            ""
        }
    );
    chart(&mut out, "hour", &hours, &colours);
    offenders(&mut out, report, n);
    numbers(&mut out, report, n);
    outbound(&mut out, report, n);
    // `<` as `\u003c` (and `>`, `&`): no logged value can end the script element or
    // open a comment inside it.
    let json = report
        .to_json(n)
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    let _ = write!(
        out,
        "<script type=\"application/json\" id=\"report-data\">{json}</script>\n</body></html>\n"
    );
    out
}

const CSS: &str = "body{font-family:DejaVu Sans,Verdana,sans-serif;margin:2em;color:#222;max-width:1100px}\
h1{margin-bottom:0}.period{color:#666;margin-top:.2em}h2{margin-top:2em;font-size:1.15em}\
.totals{display:flex;gap:1em;flex-wrap:wrap}.totals div{border:1px solid #ddd;border-radius:6px;padding:.6em 1em}\
.totals b{display:block;font-size:1.6em}table{border-collapse:collapse;margin-top:.5em}\
td,th{padding:.25em .8em;border-bottom:1px solid #eee;text-align:left}td.n,th.n{text-align:right}\
.legend span{display:inline-block;margin-right:1.2em}.legend i{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:middle}\
svg text{font-size:11px;fill:#555}svg text.total{fill:#222}.empty,.scale{color:#888}.scale{font-size:.85em;margin-top:0}";

fn totals(out: &mut String, r: &Report) {
    out.push_str("<div class=\"totals\">");
    for (label, id, n) in [
        ("calls judged", "calls", r.calls),
        ("alerts", "alerts", r.alerts),
        (
            "addresses alerted on",
            "offenders",
            r.distinct_offenders() as u64,
        ),
        ("requests not judged", "bad_requests", r.bad_requests),
        ("outbound calls", "outbound_calls", r.outbound.calls),
        ("outbound refused", "outbound_refused", r.outbound.refused),
    ] {
        let _ = write!(out, "<div><b data-total=\"{id}\">{n}</b>{label}</div>");
    }
    out.push_str("</div>\n");
}

/// The rules every report may show, each with its colour for good: the same rule is
/// the same colour in every report, whatever else the period held.
const RULE_COLOURS: [(&str, &str); 20] = [
    ("wrong_exten_min_length", "#c0392b"),
    ("wrong_exten_max_length", "#e6b0aa"),
    ("wrong_exten_type", "#943126"),
    ("wrong_callerid_num", "#d68910"),
    ("extension_banned", "#b7950b"),
    ("blocked_user_agent", "#2471a3"),
    ("malformed_request", "#5d6d7e"),
    ("request_tampering", "#17202a"),
    ("extension_scan", "#7d3c98"),
    ("call_rate", "#f1c40f"),
    ("repeat_offender", "#17a589"),
    ("auth_bruteforce", "#239b56"),
    ("account_scan", "#82e0aa"),
    ("acl_violation", "#1abc9c"),
    ("request_flood", "#5dade2"),
    ("error_event", "#aab7b8"),
    ("toll_fraud", "#000000"),
    ("takeover", "#6c3483"),
    ("manual", "#909497"),
    ("manual_range", "#626567"),
];

/// Each rule's colour, the rules with most alerts first: a known rule's own
/// ([`RULE_COLOURS`]), another one's picked from [`PALETTE`] by its name.
fn colours(by_reason: &BTreeMap<String, u64>) -> Vec<(String, &'static str)> {
    let mut rules: BTreeMap<String, u64> = BTreeMap::new();
    for (reason, n) in by_reason {
        *rules
            .entry(crate::alert_log::rule_of(reason).to_string())
            .or_default() += n;
    }
    let mut sorted: Vec<(String, u64)> = rules.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    sorted
        .into_iter()
        .map(|(rule, _)| {
            let colour = fixed_colour(&rule);
            (rule, colour)
        })
        .collect()
}

/// A rule's colour, the same in every report.
fn fixed_colour(rule: &str) -> &'static str {
    match RULE_COLOURS.iter().find(|(r, _)| *r == rule) {
        Some((_, colour)) => colour,
        // FNV-1a of the name: stable across runs and builds.
        None => {
            let hash = rule.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
            PALETTE[(hash % PALETTE.len() as u64) as usize]
        }
    }
}

fn colour_of<'a>(colours: &'a [(String, &'static str)], rule: &str) -> &'a str {
    colours
        .iter()
        .find(|(r, _)| r == rule)
        .map_or(PALETTE[PALETTE.len() - 1], |(_, c)| c)
}

fn legend(out: &mut String, colours: &[(String, &'static str)]) {
    out.push_str("<p class=\"legend\">");
    for (rule, colour) in colours {
        let _ = write!(
            out,
            "<span><i style=\"background:{colour}\"></i>{}</span>",
            esc(rule)
        );
    }
    out.push_str("</p>\n");
}

/// A stacked bar per period (`day` or `hour`), a segment per rule, over the page's
/// width. Heights follow the logarithm of each period's alerts (one alert beside ten
/// thousand is 14 px, not a hair), so that a quiet day stays visible beside a flood;
/// each bar's total is written on it, and the scale is said under the chart.
fn chart(
    out: &mut String,
    kind: &str,
    periods: &BTreeMap<String, Hour>,
    colours: &[(String, &'static str)],
) {
    if periods.is_empty() {
        out.push_str("<p class=\"empty\">No lines in this period.</p>\n");
        return;
    }
    const HEIGHT: f64 = 180.0;
    const WIDTH: f64 = 1000.0;
    let step = WIDTH / periods.len() as f64;
    let bar = (step * 0.8).clamp(1.0, 80.0);
    let most = periods.values().map(|p| p.alerts).max().unwrap_or(0).max(1);
    let scale = |n: u64| (n as f64).ln_1p() / (most as f64).ln_1p() * HEIGHT;
    let _ = write!(
        out,
        "<svg class=\"chart\" data-chart=\"{kind}\" width=\"100%\" viewBox=\"0 0 {} {}\" role=\"img\">",
        WIDTH + 60.0,
        HEIGHT + 45.0
    );
    // A label at least 80 px from the next.
    let label_every = (80.0 / step).ceil().max(1.0) as usize;
    for (i, (period, counts)) in periods.iter().enumerate() {
        let x = 30.0 + i as f64 * step;
        let centre = x + bar / 2.0;
        let _ = write!(
            out,
            "<g data-{kind}=\"{}\" data-total=\"{}\" data-calls=\"{}\"><title>{}: {} alerts, {} calls</title>",
            esc(period),
            counts.alerts,
            counts.calls,
            esc(period),
            counts.alerts,
            counts.calls
        );
        let total_height = scale(counts.alerts);
        let mut y = HEIGHT + 15.0;
        let mut rules: Vec<(&String, &u64)> = counts.alerts_by_rule.iter().collect();
        rules.sort_by_key(|(rule, _)| colours.iter().position(|(r, _)| r == *rule));
        for (rule, n) in rules {
            let h = *n as f64 / counts.alerts.max(1) as f64 * total_height;
            y -= h;
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\" fill=\"{}\" data-rule=\"{}\" data-count=\"{n}\"><title>{}: {n} {}</title></rect>",
                colour_of(colours, rule),
                esc(rule),
                esc(period),
                esc(rule)
            );
        }
        if counts.alerts > 0 && (bar >= 18.0 || i % label_every == 0) {
            let _ = write!(
                out,
                "<text class=\"total\" x=\"{centre:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                HEIGHT + 12.0 - total_height,
                counts.alerts
            );
        }
        if i % label_every == 0 {
            let label = match kind {
                "hour" => &period[5..],
                _ => &period[..],
            };
            let _ = write!(
                out,
                "<text x=\"{centre:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                HEIGHT + 30.0,
                esc(label)
            );
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>\n");
    let _ = writeln!(
        out,
        "<p class=\"scale\">Bar heights: logarithmic (the largest, {most} alerts, is full height), so that quiet {kind}s stay visible; the figure on each bar is its count.</p>"
    );
}

fn offenders(out: &mut String, r: &Report, n: usize) {
    let _ = write!(
        out,
        "<h2>Top offending addresses and ranges</h2>\n<p class=\"scale\">Ranges: {} or more alerting addresses of one /24 (IPv6 /64), then of one /16 (/48), are one row; block the range, not each address.</p>\n<table id=\"offenders\"><tr><th>address or range</th><th class=\"n\">addresses</th><th class=\"n\">alerts</th><th>rules</th><th>first seen</th><th>last seen</th></tr>",
        crate::report::RANGE_MIN_MEMBERS
    );
    for o in r.top_grouped(n) {
        let _ = write!(
            out,
            "<tr data-ip=\"{}\" data-addresses=\"{}\" data-alerts=\"{}\"><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"rules\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(&o.ip),
            o.addresses,
            o.alerts,
            esc(&o.ip),
            o.addresses,
            o.alerts,
            esc(&o.rules_shown()),
            esc(&o.first_seen),
            esc(&o.last_seen)
        );
    }
    out.push_str("</table>\n");
}

fn numbers(out: &mut String, r: &Report, n: usize) {
    out.push_str("<h2>Top numbers dialled by alerted calls</h2>\n<p class=\"empty\">What callers that earned an alert dialled: the extensions scanners probe (100, 101…) and the numbers they would sell calls to. Nothing is refused for being in this list; the outbound check judges each account's calls by what the number is and how many.</p>\n<table id=\"numbers\"><tr><th>number (as logged)</th><th class=\"n\">calls</th></tr>");
    for (number, count) in r.top_numbers(n) {
        let _ = write!(
            out,
            "<tr data-count=\"{count}\"><td>{}</td><td class=\"n\">{count}</td></tr>",
            esc(&number)
        );
    }
    out.push_str("</table>\n");
}

fn outbound(out: &mut String, r: &Report, n: usize) {
    let o = &r.outbound;
    let _ = write!(
        out,
        "<h2>Outbound calls: refusals by class</h2>\n<table id=\"classes\"><tr><th>class</th><th class=\"n\">calls</th><th class=\"n\">refused</th></tr>"
    );
    for (class, c) in &o.by_class {
        let _ = write!(
            out,
            "<tr data-class=\"{}\" data-refused=\"{}\"><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(class),
            c.refused,
            esc(class),
            c.calls,
            c.refused
        );
    }
    out.push_str("</table>\n<h2>Outbound calls: accounts</h2>\n<table id=\"accounts\"><tr><th>account (as logged)</th><th class=\"n\">calls</th><th class=\"n\">refused</th><th class=\"n\">toll fraud</th><th>last seen</th></tr>");
    for a in o.top(n) {
        let _ = write!(
            out,
            "<tr data-refused=\"{}\"><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            a.refused,
            esc(&a.account),
            a.calls,
            a.refused,
            a.toll_fraud,
            esc(&a.last_seen)
        );
    }
    out.push_str("</table>\n");
}

/// Text for HTML, in an element or an attribute.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 27: colours changed between reports (the busiest rule took the first);
    /// a rule is now the same colour whatever else the period held.
    #[test]
    fn a_rule_keeps_its_colour_whatever_the_data() {
        let one: BTreeMap<String, u64> = [
            ("call_rate".to_string(), 900),
            ("auth_bruteforce".to_string(), 3),
        ]
        .into();
        let other: BTreeMap<String, u64> = [
            ("auth_bruteforce".to_string(), 5000),
            ("call_rate".to_string(), 1),
            ("some_new_rule(3)".to_string(), 7),
        ]
        .into();
        let (a, b) = (colours(&one), colours(&other));
        for rule in ["call_rate", "auth_bruteforce"] {
            assert_eq!(colour_of(&a, rule), colour_of(&b, rule), "{rule}");
        }
        assert_eq!(
            colour_of(&b, "some_new_rule"),
            fixed_colour("some_new_rule")
        );
        let distinct: std::collections::HashSet<&str> =
            RULE_COLOURS.iter().map(|(_, c)| *c).collect();
        assert_eq!(
            distinct.len(),
            RULE_COLOURS.len(),
            "one colour per known rule"
        );
    }

    #[test]
    fn a_quiet_day_beside_a_flood_stays_visible_and_labelled() {
        let mut r = Report::default();
        r.add_reader(
            "2026-11-01 10:00:00.000 ERROR ip=192.0.2.1 reason=call_rate callerid_num='1'\n"
                .as_bytes(),
        )
        .unwrap();
        let flood: String = (0..10_000)
            .map(|i| {
                format!(
                    "2026-11-02 10:00:00.000 ERROR ip=198.51.{}.{} reason=call_rate callerid_num='1'\n",
                    i / 250,
                    i % 250
                )
            })
            .collect();
        r.add_reader(flood.as_bytes()).unwrap();
        let mut out = String::new();
        chart(&mut out, "day", &r.per_day, &colours(&r.alerts_by_reason));
        let quiet = out.split("data-day=\"2026-11-01\"").nth(1).unwrap();
        let height: f64 = quiet
            .split("height=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(height >= 10.0, "{height} px");
        assert!(quiet.contains(">1</text>"), "its count written");
        assert!(out.contains("logarithmic"));
    }

    #[test]
    fn logged_markup_stays_text() {
        let mut r = Report::default();
        r.add_line(b"2026-11-24 19:08:52.123 ERROR ip=192.0.2.10 reason=wrong_exten_type callerid_num='1' callerid_name='' dest_exten='<script>alert(1)</script>' peer_name='' user_agent='x'");
        let html = page(&r, 10);
        assert_eq!(html.matches("<script").count(), 1, "only the JSON block");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(
            !html.contains("</script>'"),
            "the JSON cannot close its element"
        );
    }

    #[test]
    fn every_bar_carries_its_figures() {
        let mut r = Report::default();
        for line in [
            "2026-11-24 19:08:52.123 ERROR ip=192.0.2.10 reason=wrong_exten_type callerid_num='1'",
            "2026-11-24 19:09:52.123 ERROR ip=192.0.2.11 reason=call_rate(31) callerid_num='1'",
            "2026-11-25 01:00:00.000 INFO ip=192.0.2.12 reason=ok callerid_num='1'",
        ] {
            r.add_line(line.as_bytes());
        }
        let html = page(&r, 10);
        assert!(html.contains("data-day=\"2026-11-24\" data-total=\"2\" data-calls=\"2\""));
        assert!(html.contains("data-day=\"2026-11-25\" data-total=\"0\" data-calls=\"1\""));
        assert!(html.contains("data-rule=\"call_rate\" data-count=\"1\""));
        assert!(html.contains("data-hour=\"2026-11-24 19:00\" data-total=\"2\""));
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "nothing fetched"
        );
    }
}
