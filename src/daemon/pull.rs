//! CrowdSec both ways (doc/crowdsec.md, "Both ways"): with `[crowdsec] bouncer_key`, a
//! thread pulls the LAPI's decision stream every `pull_seconds` into our own table —
//! addresses and ranges with the LAPI's durations, each with its origin
//! (`crowdsec:<scenario>`) as comment, lifted when the LAPI deletes them — and the
//! numbers other PBXs learned into the toll-fraud guard; and it pushes the numbers
//! this PBX learns as decisions of our own scope. Like the pusher, it cannot stop the
//! call check: an outage is said once and the thread tries again.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::CrowdsecConfig;
use crate::crowdsec::Client;
use crate::crowdsec::stream::{Decision, Stream, Target};
use crate::daemon::Shared;
use crate::nftables::netlink::{Element, Socket};

/// Learned numbers waiting for the LAPI, at most this many (the oldest go first).
const MAX_WAITING: usize = 10_000;

/// Numbers this PBX learned, for the puller to push: (E.164 digits, how long).
#[derive(Default)]
pub struct ToShare(Mutex<VecDeque<(u64, Duration)>>);

impl ToShare {
    pub fn push(&self, number: u64, left: Duration) {
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= MAX_WAITING {
            q.pop_front();
        }
        q.push_back((number, left));
    }

    fn take(&self) -> Vec<(u64, Duration)> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect()
    }

    fn put_back(&self, numbers: Vec<(u64, Duration)>) {
        for (n, left) in numbers {
            self.push(n, left);
        }
    }
}

/// What the puller did: kept as `status` reports it.
pub use crate::control::status::Pulled;

/// The running thread; stopped when dropped.
pub struct Puller {
    pub config: CrowdsecConfig,
    stop: Arc<AtomicBool>,
}

impl Drop for Puller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Puller {
    /// Starts pulling when `[crowdsec]` has a bouncer key.
    pub fn start(shared: &Arc<Shared>, cs: &CrowdsecConfig) -> Option<Puller> {
        cs.bouncer_key.as_ref()?;
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, config, s) = (shared.clone(), cs.clone(), stop.clone());
        std::thread::Builder::new()
            .name("crowdsec-pull".into())
            .spawn(move || run(&shared, &config, &s))
            .ok()?;
        tracing::info!(
            "CrowdSec: pulling the LAPI's decisions every {} s into our table; learned numbers shared",
            cs.pull.as_secs()
        );
        Some(Puller {
            config: cs.clone(),
            stop,
        })
    }
}

fn run(shared: &Shared, cs: &CrowdsecConfig, stop: &AtomicBool) {
    let mut client = Client::new(cs.clone());
    let mut startup = true;
    let mut rebuilt = shared.metrics.bans.rebuilt_total();
    let mut in_force = InForce::default();
    loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        // A rebuilt table lost what we pulled: ask for everything again.
        let now_rebuilt = shared.metrics.bans.rebuilt_total();
        if now_rebuilt != rebuilt {
            rebuilt = now_rebuilt;
            startup = true;
        }
        let pulled = cs
            .bouncer_key
            .as_ref()
            .map(|k| {
                k.read()
                    .map_err(|e| format!("cannot read the bouncer key: {e}"))
            })
            .unwrap_or_else(|| Err("no bouncer key".into()))
            .and_then(|key| client.pull(&key, startup).map_err(|e| e.to_string()));
        match pulled {
            Ok(stream) => {
                if startup {
                    in_force = InForce::default();
                }
                apply(shared, &stream, &mut in_force);
                startup = false;
                said_ok(shared, &in_force);
            }
            Err(why) => said_failing(shared, why),
        }
        let numbers = shared.to_share.take();
        if !numbers.is_empty() {
            if let Err(e) = client.push_numbers(&numbers) {
                tracing::debug!("CrowdSec: learned numbers not pushed yet ({e})");
                shared.to_share.put_back(numbers);
            } else {
                tracing::info!(
                    count = numbers.len(),
                    "CrowdSec: learned numbers shared with the fleet"
                );
            }
        }
        for _ in 0..cs.pull.as_millis() / 100 {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// What the LAPI's decisions put in force here, counted for `status`.
#[derive(Default)]
struct InForce {
    addresses: std::collections::HashSet<String>,
    numbers: std::collections::HashSet<u64>,
}

fn said_ok(shared: &Shared, in_force: &InForce) {
    let mut p = shared.pulled.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = p.failing.take() {
        tracing::info!("CrowdSec: decisions pulled again (the last failure: {why})");
    }
    p.addresses = in_force.addresses.len();
    p.numbers = in_force.numbers.len();
    p.last = Some(crate::clock::unix_now());
}

fn said_failing(shared: &Shared, why: String) {
    let mut p = shared.pulled.lock().unwrap_or_else(|e| e.into_inner());
    if p.failing.is_none() {
        tracing::warn!(
            "CrowdSec: cannot pull the LAPI's decisions ({why}); the ones in force stay, tried again every pull_seconds"
        );
    }
    p.failing = Some(why);
}

/// Applies one answer: new decisions in, deleted ones out.
fn apply(shared: &Shared, stream: &Stream, in_force: &mut InForce) {
    let sink = shared
        .bans
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let table = sink.as_ref().map(|s| s.config().table);
    let mut elements = Vec::new();
    for d in &stream.new {
        match &d.target {
            Target::Number(n) => {
                learned(shared, *n, d.left);
                in_force.numbers.insert(*n);
            }
            Target::Ip(ip) => {
                if let Some(sink) = &sink
                    && passes(shared, sink, *ip)
                {
                    elements.push(Element {
                        ip: *ip,
                        timeout: d.left.max(Duration::from_secs(1)),
                        comment: origin(d),
                    });
                    in_force.addresses.insert(ip.to_string());
                }
            }
            Target::Range(net) => {
                if let (Some(table), Some(sink)) = (&table, &sink)
                    && range_passes(shared, sink, net)
                {
                    match crate::nftables::add_range(
                        table,
                        *net,
                        d.left.max(Duration::from_secs(1)),
                        &origin(d),
                    ) {
                        Ok(()) => {
                            in_force.addresses.insert(net.to_string());
                        }
                        Err(e) => tracing::warn!("CrowdSec: range {net} not banned: {e}"),
                    }
                }
            }
        }
    }
    let numbers = stream
        .new
        .iter()
        .filter(|d| matches!(d.target, Target::Number(_)))
        .count();
    if numbers > 0 {
        tracing::info!("CrowdSec: {numbers} numbers the fleet learned are refused here now");
    }
    if let (Some(table), false) = (&table, elements.is_empty()) {
        let added = Socket::open().and_then(|mut s| {
            elements
                .chunks(256)
                .try_for_each(|chunk| s.add(table, chunk))
        });
        match added {
            Ok(()) => tracing::debug!(count = elements.len(), "CrowdSec: decisions in our table"),
            Err(e) => tracing::warn!("CrowdSec: {} pulled bans not added: {e}", elements.len()),
        }
    }
    for d in &stream.deleted {
        lift(shared, sink.as_deref(), table.as_deref(), d, in_force);
    }
}

/// Whether a pulled address may be banned here: never this host, a peer, a trusted
/// network or the LAN's ranges, whatever the fleet says (another site's 10.0.0.7 is
/// not ours).
fn passes(shared: &Shared, sink: &crate::daemon::bans::Sink, ip: IpAddr) -> bool {
    sink.never_bans(ip).is_none()
        && !shared.config().is_trusted(ip)
        && !crate::edge::never_dropped().iter().any(|n| n.contains(&ip))
}

/// [`passes`] for a range: none of those addresses or ranges may be in it.
fn range_passes(shared: &Shared, sink: &crate::daemon::bans::Sink, net: &ipnet::IpNet) -> bool {
    let config = shared.config();
    let mut protected = crate::edge::never_dropped().to_vec();
    protected.extend(config.trusted_networks.iter().copied());
    protected.extend(sink.protected().into_iter().map(ipnet::IpNet::from));
    let passes = !protected.iter().any(|p| crate::edge::overlap(p, net));
    if !passes {
        tracing::warn!(
            "CrowdSec: range {net} not banned here: it holds this host, a peer, a trusted network or the LAN"
        );
    }
    passes
}

/// The comment `bans` shows: where the ban comes from.
fn origin(d: &Decision) -> String {
    let scenario = if d.scenario.is_empty() {
        "manual"
    } else {
        &d.scenario
    };
    format!("crowdsec:{scenario}")
}

fn learned(shared: &Shared, number: u64, left: Duration) {
    let now = crate::clock::unix_now();
    shared
        .fraud
        .guard()
        .learn_from_fleet(number, now + left.as_secs(), now);
}

/// A decision deleted on the LAPI: lifted here, unless our own alert banned the
/// address (that ban runs its course).
fn lift(
    shared: &Shared,
    sink: Option<&crate::daemon::bans::Sink>,
    table: Option<&str>,
    d: &Decision,
    in_force: &mut InForce,
) {
    match (&d.target, sink, table) {
        (Target::Number(n), _, _) => {
            shared.fraud.guard().unlearn(*n);
            in_force.numbers.remove(n);
        }
        (Target::Ip(ip), Some(sink), Some(table)) if !sink.bans_itself(*ip) => {
            match Socket::open().and_then(|mut s| s.delete(table, *ip)) {
                Ok(_) => {
                    in_force.addresses.remove(&ip.to_string());
                }
                Err(e) => tracing::warn!("CrowdSec: {ip} not lifted: {e}"),
            }
        }
        (Target::Range(net), Some(_), Some(table))
            if crate::nftables::delete_range(table, *net).is_ok() =>
        {
            in_force.addresses.remove(&net.to_string());
        }
        _ => {}
    }
}
