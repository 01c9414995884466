//! What `extsecurity status` shows, collected from the daemon's parts: the control
//! socket's `status` request answers it ([`crate::control::status`] is its shape and
//! how it reads).

use crate::control::status::{
    Ami, Counts, Crowdsec, Edge, FastAgi, Fraud, Nftables, Quarantined, Status,
};
use crate::daemon::Shared;

/// The daemon as it is now.
pub fn collect(shared: &Shared) -> Status {
    let config = shared.config();
    let metrics = &shared.metrics;
    let now = crate::clock::unix_now();
    let counts = |recent: &crate::daemon::activity::Recent, total: u64| {
        let (last_minute, last_hour) = recent.last_minute_and_hour(now);
        Counts {
            last_minute,
            last_hour,
            since_start: total,
        }
    };
    let fraud = config.fraud.as_ref().map(|_| {
        let guard = shared.fraud.guard();
        Fraud {
            accounts: guard.accounts(),
            quarantined: guard
                .quarantines(now)
                .into_iter()
                .map(|(account, q)| Quarantined {
                    account,
                    why: q.why,
                    until: q.until,
                    address: q.address,
                })
                .collect(),
        }
    });
    Status {
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        started: shared.started,
        now,
        config: shared.source().to_string(),
        reloads: metrics.reloads(),
        reload_failures: metrics.reload_failures(),
        last_reload_ok: metrics.last_reload_ok(),
        fastagi: config.daemon.fastagi.then(|| FastAgi {
            listen: config.daemon.listen.to_string(),
            connections_open: metrics.connections_open(),
            max_connections: config.daemon.max_connections,
            overloaded: metrics.overloaded(),
        }),
        ami: config.ami.as_ref().map(|ami| Ami {
            address: ami.address.to_string(),
            connected: metrics.ami.is_connected(),
            since: metrics.ami.changed_at(),
            reconnects: metrics.ami.reconnects(),
            events: metrics.ami.events_total(),
        }),
        crowdsec: config.crowdsec.as_ref().map(|c| Crowdsec {
            lapi_url: c.lapi_url.clone(),
            running: metrics.crowdsec.is_running(),
            failing: metrics.crowdsec.is_failing(),
            backlog: metrics.crowdsec.backlog(),
            backlog_age_seconds: metrics.crowdsec.backlog_age(),
            pulled: c.bouncer_key.as_ref().map(|_| {
                shared
                    .pulled
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
            }),
        }),
        nftables: config.nftables.as_ref().map(|n| Nftables {
            table: n.table.clone(),
            banned: metrics.bans.set_elements(),
            bans_total: metrics.bans.added_total(),
            errors: metrics.bans.failed_total(),
            failing: metrics.bans.failing(),
            rebuilt: metrics.bans.rebuilt_total(),
        }),
        edge: config
            .nftables
            .as_ref()
            .and_then(|n| Some((n, n.edge.as_ref()?)))
            .map(|(n, e)| {
                let counted = crate::nftables::edge_counted(&n.table).ok();
                let seen = shared
                    .edge
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                Edge {
                    rate_limit: e.rate_limit,
                    rate_burst: e.rate_burst,
                    dry_run: e.dry_run,
                    over_rate: counted.map(|c| c.rate),
                    from_feeds: counted.map(|c| c.feed),
                    from_countries: counted.map(|c| c.country),
                    feeds: seen.feeds,
                    country: seen.country,
                }
            }),
        fraud,
        calls: counts(&metrics.activity.calls, metrics.calls_total()),
        alerts: counts(&metrics.activity.alerts, metrics.activity.alerts_total()),
        top_rules: metrics.activity.book.top_rules(now),
        last_alerts: metrics.activity.book.last(),
        pending_restart: shared
            .pending_restart
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(key, running, file)| format!("{key} (running {running}, file {file})"))
            .collect(),
    }
}
