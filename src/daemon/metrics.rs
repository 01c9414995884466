//! Counters for the daemon, and a Prometheus text endpoint on loopback (off by default).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::ami::codec::EVENT_TYPES;
use crate::fraud::Class;
use crate::fraud::limits::Rule;
use crate::rules::Verdict;

#[derive(Debug, Default)]
pub struct Metrics {
    connections_total: AtomicU64,
    connections_open: AtomicI64,
    refused: AtomicU64,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    /// 1 when the last reload was refused.
    last_reload_failed: AtomicU64,
    calls_checked: AtomicU64,
    tampering: AtomicU64,
    tarpit_full: AtomicU64,
    unjudged: AtomicU64,
    accept_queue: AtomicU64,
    accept_queue_limit: AtomicU64,
    listen_overflows: AtomicU64,
    overloaded: AtomicU64,
    log_errors: AtomicU64,
    legacy_requests: AtomicU64,
    /// Verdicts by rule (`ok`, `trusted`, and each alert rule without its `(N)`).
    verdicts: Mutex<BTreeMap<&'static str, u64>>,
    pub ami: AmiMetrics,
    pub crowdsec: CrowdsecMetrics,
    pub bans: BanMetrics,
    pub outbound: OutboundMetrics,
    /// The last minute and hour, for `extsecurity status`.
    pub activity: Activity,
    /// The notifier's (`[notify]`), shared with its thread.
    pub notify: std::sync::Arc<crate::daemon::notify::NotifyMetrics>,
}

/// Calls and alerts lately, for `extsecurity status`.
#[derive(Debug, Default)]
pub struct Activity {
    pub calls: crate::daemon::activity::Recent,
    pub alerts: crate::daemon::activity::Recent,
    pub book: crate::daemon::activity::AlertBook,
    alerts_total: AtomicU64,
}

impl Activity {
    /// An alert line for `reason` (its rule: what comes before any `(`), as written.
    pub fn alert(&self, reason: &str, line: &str) {
        let now = crate::clock::unix_now();
        let rule = crate::alert_log::rule_of(reason);
        self.alerts.count(now);
        self.alerts_total.fetch_add(1, Relaxed);
        self.book.alert(rule, line, now);
    }

    pub fn alerts_total(&self) -> u64 {
        self.alerts_total.load(Relaxed)
    }
}

/// The outbound check's counters (doc/toll-fraud.md, "Toll fraud: the outbound check"): verdicts by class and result,
/// levels reached by rule, takeovers; and the guard's gauges, sampled when its state is
/// saved.
#[derive(Debug, Default)]
pub struct OutboundMetrics {
    /// [class][OK, ALERT]
    verdicts: [[AtomicU64; 2]; Class::ALL.len()],
    /// [rule][warning, critical]
    levels: [[AtomicU64; 2]; Rule::ALL.len()],
    takeovers: AtomicU64,
    accounts: AtomicU64,
    quarantined: AtomicU64,
    learned: AtomicU64,
    dropped: AtomicU64,
}

impl OutboundMetrics {
    pub fn judged_total(&self) -> u64 {
        self.verdicts
            .iter()
            .flatten()
            .map(|c| c.load(Relaxed))
            .sum()
    }

    pub fn judged(&self, j: &crate::fraud::Judgement) {
        let class = Class::ALL
            .iter()
            .position(|c| *c == j.destination.class)
            .unwrap_or(0);
        self.verdicts[class][usize::from(j.is_refused())].fetch_add(1, Relaxed);
        if let Some(reached) = j.reached()
            && let Some(i) = Rule::ALL.iter().position(|r| r.name() == reached.rule)
        {
            self.levels[i][usize::from(reached.critical)].fetch_add(1, Relaxed);
        }
    }

    /// A call's end took the day's minutes to a level.
    pub fn minutes(&self, ended: &crate::fraud::guard::Ended) {
        let severity = usize::from(ended.severity == crate::fraud::limits::Severity::Critical);
        let i = Rule::ALL
            .iter()
            .position(|r| *r == Rule::MinutesPerDay)
            .unwrap_or(0);
        self.levels[i][severity].fetch_add(1, Relaxed);
    }

    pub fn takeover(&self) {
        self.takeovers.fetch_add(1, Relaxed);
    }

    /// The guard's size: accounts tracked, quarantined now, numbers learned, accounts
    /// forgotten because of `max_accounts`.
    pub fn sample(&self, accounts: usize, quarantined: usize, learned: usize, dropped: u64) {
        self.accounts.store(accounts as u64, Relaxed);
        self.quarantined.store(quarantined as u64, Relaxed);
        self.learned.store(learned as u64, Relaxed);
        self.dropped.store(dropped, Relaxed);
    }

    fn render(&self, out: &mut String) {
        let load = |c: &AtomicU64| c.load(Relaxed).to_string();
        let rows: [(&str, &str, &str, String); 5] = [
            (
                "extsecurity_outbound_takeovers_total",
                "Logins from a new address soon after failed guesses: the account was quarantined before its first call.",
                "counter",
                load(&self.takeovers),
            ),
            (
                "extsecurity_fraud_accounts",
                "Accounts the outbound guard remembers (sampled every 5 s).",
                "gauge",
                load(&self.accounts),
            ),
            (
                "extsecurity_fraud_quarantined_accounts",
                "Accounts in quarantine: only internal, national and emergency calls pass (sampled every 5 s).",
                "gauge",
                load(&self.quarantined),
            ),
            (
                "extsecurity_fraud_learned_numbers",
                "Numbers alerted guest calls tried, refused to every account (sampled every 5 s).",
                "gauge",
                load(&self.learned),
            ),
            (
                "extsecurity_fraud_accounts_dropped_total",
                "Idle accounts forgotten because fraud.max_accounts was reached (never a quarantined one).",
                "counter",
                load(&self.dropped),
            ),
        ];
        render_rows(out, rows);
        out.push_str("# HELP extsecurity_outbound_verdicts_total Outbound calls judged, by destination class and result.\n");
        out.push_str("# TYPE extsecurity_outbound_verdicts_total counter\n");
        for (class, counts) in Class::ALL.iter().zip(&self.verdicts) {
            for (result, n) in ["OK", "ALERT"].iter().zip(counts) {
                let _ = writeln!(
                    out,
                    "extsecurity_outbound_verdicts_total{{class=\"{class}\",result=\"{result}\"}} {}",
                    n.load(Relaxed)
                );
            }
        }
        out.push_str("# HELP extsecurity_outbound_levels_total Outbound figures that reached a level, by rule and level (critical: toll fraud, quarantined).\n");
        out.push_str("# TYPE extsecurity_outbound_levels_total counter\n");
        for (rule, counts) in Rule::ALL.iter().zip(&self.levels) {
            for (level, n) in ["warning", "critical"].iter().zip(counts) {
                let _ = writeln!(
                    out,
                    "extsecurity_outbound_levels_total{{rule=\"{rule}\",level=\"{level}\"}} {}",
                    n.load(Relaxed)
                );
            }
        }
    }
}

/// The nftables ban sink's counters and how long a ban took to land.
#[derive(Debug, Default)]
pub struct BanMetrics {
    added: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    /// Bans by latency (alert line written → kernel acknowledged), per [`BAN_BUCKETS`].
    latency: [AtomicU64; BAN_BUCKETS.len()],
    latency_sum_us: AtomicU64,
    set_elements: AtomicU64,
    /// Alerts not banned, by why (in [`SKIP_REASONS`]'s order).
    skipped: [AtomicU64; SKIP_REASONS.len()],
    /// Times the table was found removed or cut and was rebuilt.
    rebuilt: AtomicU64,
    /// Why bans fail now; `None` while they land.
    failing: std::sync::Mutex<Option<String>>,
}

/// Why an alerted address is not banned in the kernel.
pub const SKIP_REASONS: [&str; 5] = ["trusted", "loopback", "this_host", "peer", "unspecified"];

/// Upper bounds (seconds) of the ban latency histogram's buckets.
const BAN_BUCKETS: [f64; 8] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 1.0];

impl BanMetrics {
    pub fn added(&self, latency: Duration) {
        self.added.fetch_add(1, Relaxed);
        let secs = latency.as_secs_f64();
        for (bucket, bound) in self.latency.iter().zip(BAN_BUCKETS) {
            if secs <= bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        self.latency_sum_us
            .fetch_add(latency.as_micros() as u64, Relaxed);
    }

    pub fn failed(&self, n: usize) {
        self.failed.fetch_add(n as u64, Relaxed);
    }

    pub fn dropped(&self) {
        self.dropped.fetch_add(1, Relaxed);
    }

    pub fn rebuilt(&self) {
        self.rebuilt.fetch_add(1, Relaxed);
    }

    pub fn rebuilt_total(&self) -> u64 {
        self.rebuilt.load(Relaxed)
    }

    /// Bans fail now, for `why` (`None`: they land again).
    pub fn set_failing(&self, why: Option<String>) {
        *self.failing.lock().unwrap_or_else(|e| e.into_inner()) = why;
    }

    pub fn failing(&self) -> Option<String> {
        self.failing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// An alert whose address is never banned, for `reason` (one of [`SKIP_REASONS`]).
    pub fn skipped(&self, reason: &str) {
        if let Some(i) = SKIP_REASONS.iter().position(|r| *r == reason) {
            self.skipped[i].fetch_add(1, Relaxed);
        }
    }

    pub fn set_elements(&self) -> u64 {
        self.set_elements.load(Relaxed)
    }

    pub fn added_total(&self) -> u64 {
        self.added.load(Relaxed)
    }

    pub fn failed_total(&self) -> u64 {
        self.failed.load(Relaxed)
    }

    pub fn set_size(&self, n: usize) {
        self.set_elements.store(n as u64, Relaxed);
    }

    fn render(&self, out: &mut String) {
        let added = self.added.load(Relaxed);
        let load = |c: &AtomicU64| c.load(Relaxed).to_string();
        render_rows(
            out,
            [
                (
                    "extsecurity_ban_set_elements",
                    "Addresses in the nftables sets (IPv4 and IPv6), read every 10 s.",
                    "gauge",
                    load(&self.set_elements),
                ),
                (
                    "extsecurity_bans_added_total",
                    "Addresses added to the nftables sets.",
                    "counter",
                    added.to_string(),
                ),
                (
                    "extsecurity_ban_errors_total",
                    "Bans the kernel refused (a full set, a missing table, no CAP_NET_ADMIN).",
                    "counter",
                    load(&self.failed),
                ),
                (
                    "extsecurity_bans_dropped_total",
                    "Bans dropped because the ban queue was full.",
                    "counter",
                    load(&self.dropped),
                ),
                (
                    "extsecurity_ban_table_rebuilds_total",
                    "Times the nftables table was found removed or cut (flush ruleset) and rebuilt with the running bans.",
                    "counter",
                    load(&self.rebuilt),
                ),
            ],
        );
        let name = "extsecurity_bans_skipped_total";
        let _ = writeln!(
            out,
            "# HELP {name} Alerts whose address is never banned in the kernel, by why.\n# TYPE {name} counter"
        );
        for (reason, n) in SKIP_REASONS.iter().zip(&self.skipped) {
            let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {}", n.load(Relaxed));
        }
        let name = "extsecurity_ban_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} From the alert line to the kernel's acknowledgement of the ban.\n# TYPE {name} histogram"
        );
        for (bucket, bound) in self.latency.iter().zip(BAN_BUCKETS) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Relaxed)
            );
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {added}");
        let sum = self.latency_sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {added}");
    }
}

/// The CrowdSec pusher's counters and its backlog: alerts found in the alert log less
/// those settled (delivered, rejected, expired).
#[derive(Debug, Default)]
pub struct CrowdsecMetrics {
    found: AtomicU64,
    delivered: AtomicU64,
    rejected: AtomicU64,
    expired: AtomicU64,
    retries: AtomicU64,
    /// The oldest alert not yet accepted, Unix milliseconds; 0 when none.
    oldest_ms: AtomicI64,
    failing: AtomicU64,
    running: AtomicU64,
    lost: AtomicU64,
}

impl CrowdsecMetrics {
    /// Whether a pusher runs (0: `[crowdsec]` is off, or the pusher could not start).
    pub fn is_running(&self) -> bool {
        self.running.load(Relaxed) == 1
    }

    pub fn is_failing(&self) -> bool {
        self.failing.load(Relaxed) == 1
    }

    pub fn pusher_running(&self, running: bool) {
        self.running.store(u64::from(running), Relaxed);
    }

    /// A new pusher counts the backlog afresh from its own position.
    pub fn restart_backlog(&self) {
        let settled = self.delivered.load(Relaxed)
            + self.rejected.load(Relaxed)
            + self.expired.load(Relaxed)
            + self.lost.load(Relaxed);
        self.found.store(settled, Relaxed);
        self.oldest_ms.store(0, Relaxed);
    }

    pub fn found(&self, n: u64) {
        self.found.fetch_add(n, Relaxed);
    }

    pub fn delivered(&self, n: usize) {
        self.delivered.fetch_add(n as u64, Relaxed);
    }

    pub fn rejected(&self, n: usize) {
        self.rejected.fetch_add(n as u64, Relaxed);
    }

    /// Alerts in rotated files deleted before the pusher read them.
    pub fn lost(&self, n: u64) {
        self.lost.fetch_add(n, Relaxed);
    }

    /// Alerts whose ban had run out before they could be delivered.
    pub fn expired(&self, n: usize) {
        self.expired.fetch_add(n as u64, Relaxed);
    }

    pub fn retried(&self) {
        self.retries.fetch_add(1, Relaxed);
    }

    pub fn oldest(&self, at: Option<jiff::Timestamp>) {
        let ms = at.map_or(0, |t| t.as_millisecond().max(1));
        self.oldest_ms.store(ms, Relaxed);
    }

    pub fn failing(&self, failing: bool) {
        self.failing.store(u64::from(failing), Relaxed);
    }

    /// Alerts in the log not yet settled.
    pub fn backlog(&self) -> u64 {
        let settled = self.delivered.load(Relaxed)
            + self.rejected.load(Relaxed)
            + self.expired.load(Relaxed)
            + self.lost.load(Relaxed);
        self.found.load(Relaxed).saturating_sub(settled)
    }

    /// Seconds since the oldest alert not yet accepted was written; 0 with none.
    pub fn backlog_age(&self) -> f64 {
        match self.oldest_ms.load(Relaxed) {
            0 => 0.0,
            ms => ((jiff::Timestamp::now().as_millisecond() - ms).max(0) as f64) / 1000.0,
        }
    }

    fn render(&self, out: &mut String) {
        let load = |c: &AtomicU64| c.load(Relaxed).to_string();
        let rows: [(&str, &str, &str, String); 9] = [
            (
                "extsecurity_crowdsec_lost_total",
                "Alerts in rotated files deleted before the pusher could read them (keep more rotations).",
                "counter",
                load(&self.lost),
            ),
            (
                "extsecurity_crowdsec_pusher_running",
                "1 while the CrowdSec pusher runs; 0 when it could not start (its state file, say: see the CRITICAL line).",
                "gauge",
                load(&self.running),
            ),
            (
                "extsecurity_crowdsec_delivered_total",
                "Alerts the LAPI accepted.",
                "counter",
                load(&self.delivered),
            ),
            (
                "extsecurity_crowdsec_rejected_total",
                "Alerts the LAPI rejected as malformed (HTTP 4xx other than 401/403); not sent again.",
                "counter",
                load(&self.rejected),
            ),
            (
                "extsecurity_crowdsec_expired_total",
                "Alerts not pushed because their ban had run out before the LAPI was back.",
                "counter",
                load(&self.expired),
            ),
            (
                "extsecurity_crowdsec_retries_total",
                "Failed pushes retried (LAPI unreachable, 5xx, refused login).",
                "counter",
                load(&self.retries),
            ),
            (
                "extsecurity_crowdsec_backlog_alerts",
                "Alerts in the alert log not yet accepted by the LAPI.",
                "gauge",
                self.backlog().to_string(),
            ),
            (
                "extsecurity_crowdsec_backlog_age_seconds",
                "Age of the oldest alert not yet accepted (0 when none waits).",
                "gauge",
                self.backlog_age().to_string(),
            ),
            (
                "extsecurity_crowdsec_failing",
                "1 while pushing has failed for more than 2 seconds.",
                "gauge",
                load(&self.failing),
            ),
        ];
        render_rows(out, rows);
    }
}

/// The AMI watcher's counters. Events are counted per type in a fixed array: at a
/// million events a second a map behind a lock would cost more than the parsing.
#[derive(Debug, Default)]
pub struct AmiMetrics {
    connected: AtomicI64,
    /// When `connected` last changed, Unix seconds; 0 before it first did.
    changed_at: AtomicU64,
    reconnects: AtomicU64,
    login_failures: AtomicU64,
    events: [AtomicU64; EVENT_TYPES.len()],
    tampered: AtomicU64,
    tracked: AtomicU64,
    alerts: Mutex<BTreeMap<String, u64>>,
}

impl AmiMetrics {
    pub fn connected(&self, up: bool) {
        let was = self.connected.swap(i64::from(up), Relaxed);
        if was != i64::from(up) || self.changed_at.load(Relaxed) == 0 {
            self.changed_at.store(crate::clock::unix_now(), Relaxed);
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Relaxed) == 1
    }

    /// When the link last came up or went down.
    pub fn changed_at(&self) -> Option<u64> {
        Some(self.changed_at.load(Relaxed)).filter(|&t| t > 0)
    }

    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Relaxed)
    }

    /// A connection attempt after a lost or refused one.
    pub fn reconnecting(&self) {
        self.reconnects.fetch_add(1, Relaxed);
    }

    pub fn login_failed(&self) {
        self.login_failures.fetch_add(1, Relaxed);
    }

    pub fn event(&self, kind: &str) {
        if let Some(i) = EVENT_TYPES.iter().position(|t| *t == kind) {
            self.events[i].fetch_add(1, Relaxed);
        }
    }

    pub fn tampered(&self) {
        self.tampered.fetch_add(1, Relaxed);
    }

    pub fn tracked(&self, pairs: usize) {
        self.tracked.store(pairs as u64, Relaxed);
    }

    pub fn alert(&self, reason: &str) {
        let mut alerts = self.alerts.lock().unwrap_or_else(|e| e.into_inner());
        *alerts.entry(reason.to_string()).or_default() += 1;
    }

    /// Events read so far, all types together.
    pub fn events_total(&self) -> u64 {
        self.events.iter().map(|c| c.load(Relaxed)).sum()
    }

    fn render(&self, out: &mut String) {
        let rows: [(&str, &str, &str, String); 5] = [
            (
                "extsecurity_ami_connected",
                "1 while logged in to AMI.",
                "gauge",
                self.connected.load(Relaxed).to_string(),
            ),
            (
                "extsecurity_ami_reconnects_total",
                "AMI connection attempts after a lost or refused one.",
                "counter",
                self.reconnects.load(Relaxed).to_string(),
            ),
            (
                "extsecurity_ami_login_failures_total",
                "AMI logins Asterisk refused.",
                "counter",
                self.login_failures.load(Relaxed).to_string(),
            ),
            (
                "extsecurity_ami_tampered_total",
                "AMI messages reshaped by a caller's bytes (or oversized): counted, never acted on.",
                "counter",
                self.tampered.load(Relaxed).to_string(),
            ),
            (
                "extsecurity_ami_tracked",
                "(address, category) pairs the AMI rules remember.",
                "gauge",
                self.tracked.load(Relaxed).to_string(),
            ),
        ];
        render_rows(out, rows);
        out.push_str("# HELP extsecurity_ami_events_total Security events read, by type.\n");
        out.push_str("# TYPE extsecurity_ami_events_total counter\n");
        for (kind, n) in EVENT_TYPES.iter().zip(&self.events) {
            let _ = writeln!(
                out,
                "extsecurity_ami_events_total{{type=\"{kind}\"}} {}",
                n.load(Relaxed)
            );
        }
        out.push_str("# HELP extsecurity_ami_alerts_total Alert lines written by the AMI rules, by reason.\n");
        out.push_str("# TYPE extsecurity_ami_alerts_total counter\n");
        for (reason, n) in self.alerts.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(
                out,
                "extsecurity_ami_alerts_total{{reason=\"{reason}\"}} {n}"
            );
        }
    }
}

fn render_rows<const N: usize>(out: &mut String, rows: [(&str, &str, &str, String); N]) {
    for (name, help, kind, value) in rows {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    }
}

impl Metrics {
    pub fn connection_opened(&self) {
        self.connections_total.fetch_add(1, Relaxed);
        self.connections_open.fetch_add(1, Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
    }

    /// A SIGHUP reload that took effect (`ok`) or was refused.
    pub fn reloaded(&self, ok: bool) {
        let counter = if ok {
            &self.reloads
        } else {
            &self.reload_failures
        };
        counter.fetch_add(1, Relaxed);
        self.last_reload_failed.store(u64::from(!ok), Relaxed);
    }

    pub fn reloads(&self) -> u64 {
        self.reloads.load(Relaxed)
    }

    pub fn reload_failures(&self) -> u64 {
        self.reload_failures.load(Relaxed)
    }

    /// Whether the last reload took effect (true before any).
    pub fn last_reload_ok(&self) -> bool {
        self.last_reload_failed.load(Relaxed) == 0
    }

    pub fn connections_open(&self) -> i64 {
        self.connections_open.load(Relaxed)
    }

    pub fn overloaded(&self) -> bool {
        self.overloaded.load(Relaxed) == 1
    }

    /// Guest and outbound calls judged.
    pub fn calls_total(&self) -> u64 {
        self.calls_checked.load(Relaxed) + self.outbound.judged_total()
    }

    pub fn refused(&self) {
        self.refused.fetch_add(1, Relaxed);
    }

    pub fn checked(&self, verdict: &Verdict) {
        self.calls_checked.fetch_add(1, Relaxed);
        self.activity.calls.count(crate::clock::unix_now());
        let mut v = self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
        *v.entry(verdict.rule()).or_default() += 1;
    }

    pub fn tampering(&self) {
        self.tampering.fetch_add(1, Relaxed);
    }

    /// A call that reached us but could not be judged (no answer to our query, a
    /// refusal, a reply without a valid peer): its dialplan follows EXTSEC_ON_ERROR.
    pub fn unjudged(&self) {
        self.unjudged.fetch_add(1, Relaxed);
    }

    /// The latest sample of the FastAGI accept queue, the connections the kernel
    /// dropped in this network namespace since the daemon started, and whether an
    /// overload episode is on.
    pub fn accept_queue(
        &self,
        sample: crate::daemon::overload::Sample,
        dropped: u64,
        overloaded: bool,
    ) {
        self.accept_queue
            .store(sample.queue.waiting.into(), Relaxed);
        self.accept_queue_limit
            .store(sample.queue.limit.into(), Relaxed);
        self.listen_overflows.store(dropped, Relaxed);
        self.overloaded.store(overloaded.into(), Relaxed);
    }

    pub fn tarpit_full(&self) {
        self.tarpit_full.fetch_add(1, Relaxed);
    }

    pub fn log_error(&self) {
        self.log_errors.fetch_add(1, Relaxed);
    }

    /// Lines of requests in the seed's JSON form, read back from the alert log.
    pub fn legacy(&self, n: u64) {
        self.legacy_requests.fetch_add(n, Relaxed);
    }

    /// The Prometheus text exposition format.
    pub fn render(&self, tracked_ips: usize, started: u64) -> String {
        let load = |c: &AtomicU64| c.load(Relaxed).to_string();
        let rows: [(&str, &str, &str, String); 16] = [
            (
                "extsecurity_legacy_requests_total",
                "Alert-log lines of requests in the seed's JSON form (its System() line runs a shell with the caller's text).",
                "counter",
                load(&self.legacy_requests),
            ),
            (
                "extsecurity_connections_total",
                "FastAGI connections accepted.",
                "counter",
                load(&self.connections_total),
            ),
            (
                "extsecurity_connections_open",
                "FastAGI connections being served.",
                "gauge",
                self.connections_open.load(Relaxed).to_string(),
            ),
            (
                "extsecurity_config_reloads_total",
                "Configuration reloads that took effect.",
                "counter",
                load(&self.reloads),
            ),
            (
                "extsecurity_config_reload_failures_total",
                "Configuration reloads refused (the running configuration was kept).",
                "counter",
                load(&self.reload_failures),
            ),
            (
                "extsecurity_refused_total",
                "Connections refused: not an allowed client, or without the daemon secret.",
                "counter",
                load(&self.refused),
            ),
            (
                "extsecurity_calls_checked_total",
                "Calls judged.",
                "counter",
                load(&self.calls_checked),
            ),
            (
                "extsecurity_fastagi_accept_queue",
                "FastAGI connections the kernel holds that no slot has taken yet (sampled every 250 ms).",
                "gauge",
                load(&self.accept_queue),
            ),
            (
                "extsecurity_fastagi_accept_queue_limit",
                "The most the accept queue holds (daemon.listen_backlog capped by net.core.somaxconn); past it connections are dropped.",
                "gauge",
                load(&self.accept_queue_limit),
            ),
            (
                "extsecurity_fastagi_overloaded",
                "1 while every max_connections slot is busy with callers waiting, or the accept queue is full.",
                "gauge",
                load(&self.overloaded),
            ),
            (
                "extsecurity_listen_overflows_total",
                "Connections the kernel dropped because a listen queue was full, since the daemon started (every listening socket of this network namespace: TcpExt ListenOverflows).",
                "counter",
                load(&self.listen_overflows),
            ),
            (
                "extsecurity_calls_unjudged_total",
                "Calls that reached the daemon but could not be judged (EXTSEC_RESULT=ERROR; each has a CRITICAL line).",
                "counter",
                load(&self.unjudged),
            ),
            (
                "extsecurity_tampering_total",
                "AGI exchanges reshaped by a caller's bytes.",
                "counter",
                load(&self.tampering),
            ),
            (
                "extsecurity_tarpit_full_total",
                "Alerts answered at once because the tarpit was full.",
                "counter",
                load(&self.tarpit_full),
            ),
            (
                "extsecurity_log_errors_total",
                "Lines that could not be written to the alert log.",
                "counter",
                load(&self.log_errors),
            ),
            (
                "extsecurity_tracked_ips",
                "Addresses the rules with memory remember.",
                "gauge",
                tracked_ips.to_string(),
            ),
        ];
        let mut out = String::new();
        render_rows(&mut out, rows);
        render_rows(
            &mut out,
            [
                (
                    "extsecurity_config_last_reload_successful",
                    "1 when the last configuration reload took effect (or none was tried), 0 when it was refused and the previous settings still run.",
                    "gauge",
                    u64::from(self.last_reload_ok()).to_string(),
                ),
                (
                    "extsecurity_start_time_seconds",
                    "When the daemon started, Unix seconds.",
                    "gauge",
                    started.to_string(),
                ),
            ],
        );
        let _ = writeln!(
            out,
            "# HELP extsecurity_build_info The running version; always 1.\n# TYPE extsecurity_build_info gauge\nextsecurity_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        out.push_str("# HELP extsecurity_verdicts_total Calls judged, by rule (ok, trusted, or the alert's rule without its (N)).\n");
        out.push_str("# TYPE extsecurity_verdicts_total counter\n");
        for (reason, n) in self
            .verdicts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(out, "extsecurity_verdicts_total{{reason=\"{reason}\"}} {n}");
        }
        self.ami.render(&mut out);
        self.crowdsec.render(&mut out);
        self.bans.render(&mut out);
        self.outbound.render(&mut out);
        self.notify.render(&mut out);
        out
    }
}

/// `extsecurity_part_enabled{part}`: which parts the running configuration turns on,
/// so that an alert rule on a part (the AMI link down) stays quiet where it is off.
pub fn render_parts(config: &crate::config::Config, lists: &super::edge::Seen) -> String {
    let mut out = String::from(
        "# HELP extsecurity_part_enabled 1 for each part the running configuration turns on.\n# TYPE extsecurity_part_enabled gauge\n",
    );
    for (part, on) in [
        ("fastagi", config.daemon.fastagi),
        ("ami", config.ami.is_some()),
        ("crowdsec", config.crowdsec.is_some()),
        ("nftables", config.nftables.is_some()),
        ("edge", config.edge.is_some()),
        ("fraud", config.fraud.is_some()),
    ] {
        let _ = writeln!(
            out,
            "extsecurity_part_enabled{{part=\"{part}\"}} {}",
            u8::from(on)
        );
    }
    out + &render_edge(config) + &render_lists(lists, crate::clock::unix_now())
}

/// The edge's lists: each feed's entries and age, the country sets' size.
fn render_lists(lists: &super::edge::Seen, now: u64) -> String {
    let mut out = String::new();
    if !lists.feeds.is_empty() {
        let (entries, age) = (
            "extsecurity_edge_feed_entries",
            "extsecurity_edge_feed_age_seconds",
        );
        let _ = writeln!(
            out,
            "# HELP {entries} Entries of each feed's copy in force.\n# TYPE {entries} gauge"
        );
        for f in &lists.feeds {
            let _ = writeln!(out, "{entries}{{feed=\"{}\"}} {}", label(&f.url), f.entries);
        }
        let _ = writeln!(
            out,
            "# HELP {age} Seconds since each feed's copy in force arrived (absent: none yet).\n# TYPE {age} gauge"
        );
        for f in &lists.feeds {
            if let Some(t) = f.fetched {
                let _ = writeln!(
                    out,
                    "{age}{{feed=\"{}\"}} {}",
                    label(&f.url),
                    now.saturating_sub(t)
                );
            }
        }
    }
    if let Some(c) = &lists.country {
        let name = "extsecurity_edge_country_networks";
        let _ = writeln!(
            out,
            "# HELP {name} Networks of refused countries in the edge's sets.\n# TYPE {name} gauge\n{name} {}",
            c.networks
        );
    }
    out
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `extsecurity_edge_over_rate_packets_total{dry_run}`: what the edge's rate limit
/// counted, read from the kernel's rule counters at each scrape (they start again when
/// the ruleset is rewritten, as a counter may). Nothing when the edge is off or the
/// kernel cannot be asked.
fn render_edge(config: &crate::config::Config) -> String {
    let Some((n, e)) = config
        .nftables
        .as_ref()
        .and_then(|n| Some((n, n.edge.as_ref()?)))
    else {
        return String::new();
    };
    let Ok(counted) = crate::nftables::edge_counted(&n.table) else {
        return String::new();
    };
    let name = "extsecurity_edge_over_rate_packets_total";
    let mut out = format!(
        "# HELP {name} Packets over the edge's rate a source, dropped (dry_run=\"false\") or only counted.\n# TYPE {name} counter\n{name}{{dry_run=\"{}\"}} {}\n",
        e.dry_run, counted.rate
    );
    if !e.feeds.is_empty() || e.countries.is_some() {
        let name = "extsecurity_edge_listed_packets_total";
        let _ = writeln!(
            out,
            "# HELP {name} Packets from addresses a feed lists or a refused country holds, dropped (dry_run=\"false\") or only counted.\n# TYPE {name} counter\n\
             {name}{{list=\"feed\",dry_run=\"{d}\"}} {}\n{name}{{list=\"country\",dry_run=\"{d}\"}} {}",
            counted.feed,
            counted.country,
            d = e.dry_run
        );
    }
    out
}

/// Answers every HTTP request on `listener` with the metrics, until the task is dropped.
/// The request is read only far enough to be polite; its content does not matter.
pub async fn serve(listener: TcpListener, render: impl Fn() -> String + Send + Sync + 'static) {
    let render = std::sync::Arc::new(render);
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let render = render.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let _ = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
            let body = render();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_feed_is_a_labelled_gauge_and_a_hostile_url_stays_one_label() {
        let seen = crate::daemon::edge::Seen {
            feeds: vec![
                crate::control::status::Feed {
                    url: "https://x.example/a\"b\\c\nd".into(),
                    entries: 12,
                    fetched: Some(1000),
                    error: None,
                },
                crate::control::status::Feed {
                    url: "https://y.example/".into(),
                    ..Default::default()
                },
            ],
            country: None,
        };
        let out = render_lists(&seen, 1060);
        let hostile = r#"feed="https://x.example/a\"b\\c\nd""#;
        assert!(
            out.contains(&format!("extsecurity_edge_feed_entries{{{hostile}}} 12\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "extsecurity_edge_feed_age_seconds{{{hostile}}} 60\n"
            )),
            "{out}"
        );
        assert!(out.contains("extsecurity_edge_feed_entries{feed=\"https://y.example/\"} 0\n"));
        assert!(
            !out.contains("age_seconds{feed=\"https://y.example/\"}"),
            "no copy, no age: {out}"
        );
        assert_eq!(
            out.lines().filter(|l| !l.starts_with('#')).count(),
            3,
            "{out}"
        );
    }
}
