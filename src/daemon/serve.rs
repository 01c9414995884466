//! `extsecurity serve`'s wiring: the runtime, the signals, the listeners, and the parts
//! that run beside the FastAGI accept loop (metrics, the AMI watcher, the CrowdSec
//! pusher), started in the order that keeps a shutdown clean and stopped in the order
//! that loses no alert.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::Config;
use crate::daemon::{self, Shared, metrics};

/// Starts the daemon and runs it until SIGTERM or SIGINT. SIGHUP reloads the config
/// (a bad one is reported and the old one kept) and reopens the alert log; SIGUSR1
/// reopens the alert log.
pub fn run(
    config: Config,
    source: (Option<PathBuf>, Option<OsString>),
    listen: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        if !config.daemon.fastagi && config.ami.is_none() {
            anyhow::bail!("nothing to serve: [daemon] fastagi = false and no [ami] table");
        }
        // Before anything can be seen from outside (the port accepting): a SIGTERM
        // sent as soon as the port answers must stop the daemon cleanly, not kill it.
        let mut hup = signal(SignalKind::hangup())?;
        let mut usr1 = signal(SignalKind::user_defined1())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let addr = listen.unwrap_or(config.daemon.listen);
        let listener = match config.daemon.fastagi {
            true => Some(
                daemon::bind(addr, config.daemon.listen_backlog)
                    .with_context(|| format!("cannot listen on {addr}"))?,
            ),
            false => None,
        };
        let metrics_addr = config.daemon.metrics_listen;
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let nftables = config.nftables.clone();
        let never = never_banned(&config);
        let shared = Arc::new(Shared::new(config, source, stopping));
        if let Some(nft) = nftables {
            start_bans(&shared, nft, never);
        }
        // Before anything can write an alert: on a first start the pusher begins at the
        // end of the log as it is now.
        let pusher = match shared.config().crowdsec.clone() {
            Some(cs) => {
                let pusher = daemon::crowdsec::spawn(shared.clone(), &cs)?;
                tracing::info!(lapi = cs.lapi_url, "pushing alerts to CrowdSec");
                Some(pusher)
            }
            None => None,
        };
        if let Some(addr) = metrics_addr {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for metrics on {addr}"))?;
            let shared = shared.clone();
            tokio::spawn(metrics::serve(listener, move || {
                let tracked = shared.memory.lock().map(|m| m.len()).unwrap_or(0);
                shared.metrics.render(tracked)
            }));
            tracing::info!(%addr, "metrics");
        }
        if let Some(path) = shared.config().daemon.control_socket.clone() {
            match daemon::control::bind(&path) {
                Ok(listener) => {
                    tokio::spawn(daemon::control::serve(listener, shared.clone()));
                }
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    "control socket off ({e}): extsecurity unban cannot reach this daemon"
                ),
            }
        }
        let signals = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = hup.recv() => if let Err(e) = signals.reload() {
                        tracing::error!("reload refused, keeping the running configuration: {e}");
                    },
                    _ = usr1.recv() => {
                        signals.reopen_log();
                        tracing::info!("alert log reopened");
                    }
                }
            }
        });
        let watcher = shared
            .config()
            .ami
            .is_some()
            .then(|| tokio::spawn(daemon::ami::run(shared.clone())));
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            let _ = stop.send(true);
        };
        match listener {
            Some(listener) => {
                tracing::info!(%addr, "serving FastAGI");
                daemon::run(listener, shared.clone(), shutdown).await;
            }
            None => {
                tracing::info!("FastAGI off ([daemon] fastagi = false): AMI watcher only");
                shutdown.await;
            }
        }
        // The calls in flight are finished and the AMI watcher has stopped: no more
        // alerts, so the pusher may deliver what is queued and end.
        if let Some(watcher) = watcher {
            let _ = watcher.await;
        }
        if let Some(pusher) = pusher {
            if let Some(outbox) = &shared.crowdsec {
                outbox.close();
            }
            let _ = tokio::task::spawn_blocking(move || pusher.join()).await;
        }
        tracing::info!("stopped");
        Ok(())
    })
}

/// This host's addresses and the peers it talks to: banning them would cut the daemon
/// off from Asterisk or CrowdSec.
fn never_banned(config: &Config) -> Vec<std::net::IpAddr> {
    let mut never = crate::nftables::own_addresses();
    never.extend(config.ami.as_ref().map(|a| a.address.ip()));
    let lapi_host: Option<std::net::IpAddr> = config.crowdsec.as_ref().and_then(|c| {
        let (host, _) = crate::crowdsec::host_port(&c.lapi_url)?;
        host.parse().ok()
    });
    never.extend(lapi_host);
    never
}

/// Sets the nftables table up and starts the ban thread; without the capability (or
/// nft), one clear line and the alert log alone.
fn start_bans(
    shared: &Arc<Shared>,
    nft: crate::config::NftablesConfig,
    never: Vec<std::net::IpAddr>,
) {
    let table = nft.table.clone();
    if let Err(e) = crate::nftables::setup(&nft) {
        tracing::warn!(
            "nftables bans off: {e} (the unit grants CAP_NET_ADMIN); serving with the alert log alone"
        );
        return;
    }
    let _ = shared.bans.set(daemon::bans::Sink::new(nft, never));
    match daemon::bans::spawn(shared.clone()) {
        Ok(_) => tracing::info!(table, "nftables bans on"),
        Err(e) => tracing::warn!("nftables bans off: cannot open netlink: {e}"),
    }
}
