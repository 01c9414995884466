//! `extsecurity serve`'s wiring: the runtime, the signals, the listeners, and the parts
//! that run beside the FastAGI accept loop (metrics, the AMI watcher, the CrowdSec
//! pusher, the kernel bans), started in the order that keeps a shutdown clean and
//! stopped in the order that loses no alert.
//!
//! What stops `serve` at start is only what the call path needs: a valid config, the
//! alert log, the FastAGI port, the control socket not held by another daemon, the
//! FastAGI key. A part beside it that cannot start says so and is tried again
//! ([`super::parts`]).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use crate::alert_log::AlertLog;
use crate::config::{Config, ConfigError, Source};
use crate::daemon::parts::Parts;
use crate::daemon::{self, Shared, metrics, reload};

/// Starts the daemon and runs it until SIGTERM or SIGINT. SIGHUP reloads the config
/// (a bad one is reported and the old one kept) and reopens the alert log; SIGUSR1
/// reopens the alert log.
pub fn run(config: Config, source: Source, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    if !config.daemon.fastagi && config.ami.is_none() {
        anyhow::bail!("nothing to serve: [daemon] fastagi = false and no [ami] table");
    }
    let config = resolve_key(config)?;
    // One daemon per control socket: checked before anything else is touched.
    let control = match &config.daemon.control_socket {
        Some(path) => match daemon::control::bind(path) {
            Ok(control) => Some(Arc::new(control)),
            Err(e @ daemon::control::ControlError::Taken { .. }) => return Err(e.into()),
            Err(e) => {
                tracing::warn!("{e}: extsecurity unban cannot reach this daemon");
                None
            }
        },
        None => None,
    };
    // Every verdict is written there: a log that cannot be opened stops us now, with
    // its name and why, rather than costing every call its line.
    AlertLog::open(&config.log_file)?;
    // One thread for every connection, the AMI reader and the timers: a call is a few
    // short wake-ups, and handing each between worker threads cost more than the work
    // (on a real Asterisk, 0.65 → 0.56 ms of the daemon's CPU a checked call, 14 → 10
    // context switches: doc/performance.md). The AMI evaluator, the edge's lists and
    // blocking saves keep threads of their own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config, source, listen, control))
}

/// The daemon's config with a `daemon.secret_file` read into the key every call is
/// compared against (at start, and at each reload).
/// The accounts `[fraud] audit_dir`'s audit finds weak are marked too (their stricter
/// limits apply from this config on).
pub fn resolve_key(mut config: Config) -> Result<Config, ConfigError> {
    if let Some(secret) = &config.daemon.secret {
        config.daemon.secret = Some(secret.resolved().map_err(|e| ConfigError::Read {
            path: secret.path().map(Into::into).unwrap_or_default(),
            source: std::io::Error::other(e.to_string()),
        })?);
    }
    if let Some(fraud) = &mut config.fraud {
        daemon::fraud::mark_weak_accounts(fraud);
    }
    Ok(config)
}

async fn serve(
    config: Config,
    source: Source,
    listen: Option<SocketAddr>,
    control: Option<Arc<daemon::control::Control>>,
) -> anyhow::Result<()> {
    // Before anything can be seen from outside (the port accepting): a SIGTERM
    // sent as soon as the port answers must stop the daemon cleanly, not kill it.
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    // Every port is bound before the FastAGI port accepts: whoever waits for that
    // port (systemd's ExecStartPost, a test, a monitor) then finds the metrics too.
    let metrics_listener = match config.daemon.metrics_listen {
        Some(addr) => Some(bind_metrics(addr)?),
        None => None,
    };
    let addr = listen.unwrap_or(config.daemon.listen);
    let listener = match config.daemon.fastagi {
        true => Some(
            daemon::bind(addr, config.daemon.listen_backlog)
                .with_context(|| format!("cannot listen on {addr}"))?,
        ),
        false => None,
    };
    say_start(&config, &source, listener.as_ref().map(|_| addr));
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let shared = Arc::new(Shared::new(config, source, stopping));
    // The outbound check judges with it; a list that does not read stops that check
    // alone (no part's fault stops another).
    shared.fraud.take_high_risk(&shared.config(), true);
    // Before anything can write an alert: on a first start the pusher begins at the
    // end of the log as it is now.
    let parts = Parts::start(&shared);
    if let Err(e) = daemon::legacy::spawn(shared.clone()) {
        tracing::warn!("cannot start the thread that counts legacy JSON requests: {e}");
    }
    if let Some(listener) = metrics_listener {
        let shared = shared.clone();
        tokio::spawn(metrics::serve(listener, move || {
            let tracked = shared.memory.lock().map(|m| m.len()).unwrap_or(0);
            shared.metrics.render(tracked, shared.started)
                + &metrics::render_parts(
                    &shared.config(),
                    &shared
                        .edge
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone(),
                )
        }));
    }
    let control_task = control
        .clone()
        .map(|c| tokio::spawn(daemon::control::serve(c, shared.clone())));
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    let supervisor = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut parts = parts;
            let mut finished = finished;
            let mut retry = tokio::time::interval(daemon::parts::RETRY_EVERY);
            loop {
                tokio::select! {
                    _ = hup.recv() => reload_now(&shared, &mut parts).await,
                    _ = usr1.recv() => {
                        shared.reopen_log();
                        tracing::info!("alert log reopened");
                    }
                    _ = retry.tick() => parts.retry(&shared),
                    _ = &mut finished => break,
                }
            }
            parts.stop(&shared).await;
        })
    };
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = stop.send(true);
    };
    match listener {
        Some(listener) => daemon::run(listener, shared.clone(), shutdown).await,
        None => shutdown.await,
    }
    // The calls in flight are finished: stop the watcher, then let the pusher deliver
    // what the log holds and end.
    let _ = done.send(());
    let _ = supervisor.await;
    if let Some(task) = control_task {
        task.abort();
        let _ = task.await;
    }
    drop(control);
    tracing::info!("stopped");
    Ok(())
}

fn bind_metrics(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let bind = || {
        let socket = daemon::reusable_socket(addr)?;
        socket.bind(addr)?;
        socket.listen(1024)
    };
    bind().with_context(|| format!("cannot listen for metrics on {addr}"))
}

/// SIGHUP: a new config swapped in whole (or refused, the running one kept), said
/// setting by setting, and the parts made to follow it.
async fn reload_now(shared: &Arc<Shared>, parts: &mut Parts) {
    match shared.reload() {
        Ok((old, new, diff)) => {
            reload::say(&diff, &shared.source());
            parts.follow(shared, &old, &new).await;
        }
        Err(e) => tracing::warn!("reload refused, the running configuration is kept: {e}"),
    }
}

/// One line at start: what runs, from which file.
fn say_start(config: &Config, source: &Source, fastagi: Option<SocketAddr>) {
    let mut parts = Vec::new();
    match fastagi {
        Some(addr) => parts.push(format!("FastAGI on {addr}")),
        None => parts.push("FastAGI off".into()),
    }
    if let Some(a) = &config.ami {
        parts.push(format!("AMI watcher for {}", a.address));
    }
    if let Some(c) = &config.crowdsec {
        parts.push(format!("CrowdSec pusher to {}", c.lapi_url));
    }
    if let Some(n) = &config.nftables {
        parts.push(format!("kernel bans in table inet {}", n.table));
    }
    if let Some(f) = &config.fraud {
        parts.push(format!(
            "outbound check (+{}), state in {}",
            f.dial_plan.country_code,
            f.state_file.display()
        ));
    }
    if let Some(m) = config.daemon.metrics_listen {
        parts.push(format!("metrics on {m}"));
    }
    if let Some(c) = &config.daemon.control_socket {
        parts.push(format!("control socket {}", c.display()));
    }
    tracing::info!(
        "extsecurity {} starting: configuration {source}; alert log {}; {}",
        env!("CARGO_PKG_VERSION"),
        config.log_file.display(),
        parts.join(", ")
    );
}
