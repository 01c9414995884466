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
svg text{font-size:10px;fill:#555}.empty{color:#888}";

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

/// Each rule's colour, the rules with most alerts first.
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
        .enumerate()
        .map(|(i, (rule, _))| (rule, PALETTE[i.min(PALETTE.len() - 1)]))
        .collect()
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

/// A stacked bar per period (`day` or `hour`), a segment per rule.
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
    let width = (periods.len() as f64 * 24.0).clamp(300.0, 1050.0);
    let step = width / periods.len() as f64;
    let most = periods.values().map(|p| p.alerts).max().unwrap_or(0).max(1);
    let _ = write!(
        out,
        "<svg class=\"chart\" data-chart=\"{kind}\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" role=\"img\">",
        width + 40.0,
        HEIGHT + 40.0,
        width + 40.0,
        HEIGHT + 40.0
    );
    let _ = write!(out, "<text x=\"0\" y=\"10\">{most}</text>");
    // A label at least 80 px from the next.
    let label_every = (80.0 / step).ceil().max(1.0) as usize;
    for (i, (period, counts)) in periods.iter().enumerate() {
        let x = 30.0 + i as f64 * step;
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
        let mut y = HEIGHT + 10.0;
        let mut rules: Vec<(&String, &u64)> = counts.alerts_by_rule.iter().collect();
        rules.sort_by_key(|(rule, _)| colours.iter().position(|(r, _)| r == *rule));
        for (rule, n) in rules {
            let h = *n as f64 / most as f64 * HEIGHT;
            y -= h;
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\" data-rule=\"{}\" data-count=\"{n}\"><title>{}: {n} {}</title></rect>",
                (step * 0.8).max(1.0),
                colour_of(colours, rule),
                esc(rule),
                esc(period),
                esc(rule)
            );
        }
        if i % label_every == 0 {
            let label = match kind {
                "hour" => &period[5..],
                _ => &period[..],
            };
            let _ = write!(
                out,
                "<text x=\"{x:.1}\" y=\"{}\">{}</text>",
                HEIGHT + 25.0,
                esc(label)
            );
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>\n");
}

fn offenders(out: &mut String, r: &Report, n: usize) {
    out.push_str("<h2>Top offending addresses</h2>\n<table id=\"offenders\"><tr><th>address</th><th class=\"n\">alerts</th><th>rules</th><th>first seen</th><th>last seen</th></tr>");
    for o in r.top(n) {
        let _ = write!(
            out,
            "<tr data-ip=\"{}\" data-alerts=\"{}\"><td>{}</td><td class=\"n\">{}</td><td class=\"rules\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(&o.ip),
            o.alerts,
            esc(&o.ip),
            o.alerts,
            esc(&o.rules_shown()),
            esc(&o.first_seen),
            esc(&o.last_seen)
        );
    }
    out.push_str("</table>\n");
}

fn numbers(out: &mut String, r: &Report, n: usize) {
    out.push_str("<h2>Top numbers dialled by alerted calls</h2>\n<p class=\"empty\">What scanners probe is what they sell: with [fraud] on, the daemon refuses these to every account.</p>\n<table id=\"numbers\"><tr><th>number (as logged)</th><th class=\"n\">calls</th></tr>");
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
