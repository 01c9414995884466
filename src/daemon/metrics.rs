//! Counters for the daemon, and a Prometheus text endpoint on loopback (off by default).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::rules::Verdict;

#[derive(Debug, Default)]
pub struct Metrics {
    connections_total: AtomicU64,
    connections_open: AtomicI64,
    refused: AtomicU64,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    calls_checked: AtomicU64,
    tampering: AtomicU64,
    tarpit_full: AtomicU64,
    log_errors: AtomicU64,
    /// Verdicts by reason code (`ok`, `trusted`, and each alert reason).
    verdicts: Mutex<BTreeMap<String, u64>>,
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
    }

    pub fn refused(&self) {
        self.refused.fetch_add(1, Relaxed);
    }

    pub fn checked(&self, verdict: &Verdict) {
        self.calls_checked.fetch_add(1, Relaxed);
        let mut v = self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
        *v.entry(verdict.reason_code()).or_default() += 1;
    }

    pub fn tampering(&self) {
        self.tampering.fetch_add(1, Relaxed);
    }

    pub fn tarpit_full(&self) {
        self.tarpit_full.fetch_add(1, Relaxed);
    }

    pub fn log_error(&self) {
        self.log_errors.fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition format.
    pub fn render(&self, tracked_ips: usize) -> String {
        let load = |c: &AtomicU64| c.load(Relaxed).to_string();
        let rows: [(&str, &str, &str, String); 10] = [
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
        for (name, help, kind, value) in rows {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        }
        out.push_str("# HELP extsecurity_verdicts_total Calls judged, by reason (ok, trusted, or the alert's reason).\n");
        out.push_str("# TYPE extsecurity_verdicts_total counter\n");
        for (reason, n) in self
            .verdicts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(out, "extsecurity_verdicts_total{{reason=\"{reason}\"}} {n}");
        }
        out
    }
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
