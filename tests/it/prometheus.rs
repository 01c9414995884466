//! The shipped Prometheus alert rules and Grafana dashboard (`dist/prometheus`,
//! `dist/grafana`): the rules pass Debian's `promtool check rules` and their unit tests
//! (`promtool test rules tests/prometheus/…`, each alert firing on what it is for and
//! quiet where it must be), every alert has a test, the dashboard's queries are valid
//! PromQL (checked by promtool as recording rules), and every metric either names is
//! one a running daemon serves.

use crate::common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{LoggedServe, Sandbox, free_port, repo};

fn promtool(args: &[&str], dir: &std::path::Path) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool (Debian's prometheus package; scripts/test.sh installs it)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{said}");
    said
}

fn rules_file() -> std::path::PathBuf {
    repo().join("dist/prometheus/extsecurity-rules.yml")
}

#[test]
fn the_rules_pass_promtool_and_their_unit_tests() {
    let said = promtool(&["check", "rules", rules_file().to_str().unwrap()], repo());
    assert!(said.contains("SUCCESS: 12 rules found"), "{said}");
    let said = promtool(
        &["test", "rules", "extsecurity-rules.test.yml"],
        &repo().join("tests/prometheus"),
    );
    assert!(said.contains("SUCCESS"), "{said}");
}

#[test]
fn every_alert_has_a_test() {
    let rules = std::fs::read_to_string(rules_file()).unwrap();
    let tests = std::fs::read_to_string(repo().join("tests/prometheus/extsecurity-rules.test.yml"))
        .unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(alerts.len(), 12);
    for alert in alerts {
        assert!(
            tests.contains(&format!(
                "alertname: {alert}\n        exp_alerts:\n          - exp_labels"
            )),
            "{alert} is never tested firing"
        );
    }
}

/// The dashboard's queries, with Grafana's variables given values Prometheus takes.
fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("dist/grafana/extsecurity.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            queries.push(
                expr.replace("$__rate_interval", "5m")
                    .replace("$instance", ".*"),
            );
        }
    }
    let variable = &dashboard["templating"]["list"][0]["query"]["query"];
    assert_eq!(variable, "label_values(extsecurity_build_info, instance)");
    queries
}

#[test]
fn the_dashboards_queries_are_valid_promql() {
    let queries = dashboard_queries();
    assert!(queries.len() >= 25, "{}", queries.len());
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, q) in queries.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {}\n",
            serde_json::to_string(q).unwrap()
        ));
    }
    std::fs::write(dir.path().join("dashboard.yml"), rules).unwrap();
    let said = promtool(&["check", "rules", "dashboard.yml"], dir.path());
    assert!(
        said.contains(&format!("SUCCESS: {} rules found", queries.len())),
        "{said}"
    );
}

/// `extsecurity_…` names in a query or rule, a histogram's series by its own name.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("extsecurity_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let name = name.strip_suffix("_bucket").unwrap_or(name);
        // Not metrics: the job's name in `job="extsecurity"` has no `_`.
        if !name.ends_with('_') {
            names.insert(name.to_string());
        }
        rest = &tail[end..];
    }
    names
}

#[test]
fn every_metric_the_rules_and_the_dashboard_name_is_served_by_the_daemon() {
    let (port, metrics_port) = (free_port(), free_port());
    let config = format!(
        "tarpit_seconds = 0\n[daemon]\nlisten = '127.0.0.1:{port}'\nmetrics_listen = '127.0.0.1:{metrics_port}'\n"
    );
    let serve = LoggedServe::start(Sandbox::with_config(&config), port);
    let mut served = BTreeSet::new();
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", metrics_port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                served.insert(rest.split(' ').next().unwrap().to_string());
            }
        }
    }
    drop(serve);
    assert!(served.contains("extsecurity_part_enabled"), "{served:?}");
    let rules = std::fs::read_to_string(rules_file()).unwrap();
    let named: BTreeSet<String> = metric_names(&rules)
        .into_iter()
        .chain(dashboard_queries().iter().flat_map(|q| metric_names(q)))
        .collect();
    assert!(named.len() > 30, "{named:?}");
    let unknown: Vec<&String> = named.difference(&served).collect();
    assert!(unknown.is_empty(), "named but not served: {unknown:?}");
}
