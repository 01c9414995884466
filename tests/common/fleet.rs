//! Enforcement on another host (issue 14): Debian's `crowdsec-firewall-bouncer` with a
//! private config in one network namespace, banning what a daemon in another pushed.
//!
//! Roles on `common/netns.rs`'s namespaces: `inn` is the central host — the LAPI
//! (SQLite) and PBX 1's daemon, at 198.51.100.44; `pbx` is PBX 2 — the bouncer and a
//! SIP port, reaching the LAPI over its veth; `atk` is the attacker, who probes PBX 2
//! every millisecond. PBX 1 alerts on a call from the attacker's address; the time to
//! drop is from just before that call to the attacker's last datagram at PBX 2, both on
//! CLOCK_MONOTONIC, which namespaces share.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::agi_peer::fastagi_call;
use super::asterisk::Channel;
use super::crowdsec::{Db, Lapi, Options};
use super::netns::{
    ATTACKER, Daemon, INNOCENT, Lab, PBX_A, arrivals, in_netns, sender, timed_listener,
    until_one_arrives,
};
use super::{Sandbox, monotonic_ns, wait_for};

const PASSWORD: &str = "fleet-test-password-0123456789";

/// Debian's firewall bouncer with a private config (nftables, `update_frequency`
/// `every`), inside `ns`; killed when dropped.
pub struct Bouncer(Child);

impl Bouncer {
    pub fn start(ns: &str, dir: &Path, api_url: &str, key: &str, every: &str) -> Bouncer {
        let config = dir.join("bouncer.yaml");
        std::fs::write(
            &config,
            format!(
                "mode: nftables\npid_dir: {d}/\nupdate_frequency: {every}\ndaemonize: false\n\
                 log_mode: file\nlog_dir: {d}/\nlog_level: info\napi_url: {api_url}/\napi_key: {key}\n\
                 insecure_skip_verify: false\ndisable_ipv6: false\ndeny_action: DROP\ndeny_log: false\n\
                 supported_decisions_types:\n  - ban\n\
                 nftables:\n  ipv4:\n    enabled: true\n    set-only: false\n    table: crowdsec\n    chain: crowdsec-chain\n\
                 \x20 ipv6:\n    enabled: true\n    set-only: false\n    table: crowdsec6\n    chain: crowdsec6-chain\n\
                 prometheus:\n  enabled: false\n  listen_addr: 127.0.0.1\n  listen_port: 60601\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "crowdsec-firewall-bouncer", "-c"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("bouncer.err")).unwrap())
            .spawn()
            .expect("crowdsec-firewall-bouncer (.ci/run installs Debian's package)");
        Bouncer(child)
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One measurement of [`time_to_drop_across_hosts`].
pub struct Dropped {
    pub to_drop: Duration,
    /// Datagrams from the attacker that reached PBX 2 before and after the alert.
    pub before: usize,
    pub after: usize,
    /// The bouncer's log, to show when it did not drop.
    pub bouncer_log: String,
}

/// Sets the fleet up and measures once; `Err` says why it cannot run here (no
/// namespaces).
pub fn time_to_drop_across_hosts(every: &str) -> Result<Dropped, String> {
    assert!(
        Path::new("/usr/bin/crowdsec-firewall-bouncer").exists(),
        "crowdsec-firewall-bouncer must be installed (.ci/run installs it)"
    );
    let lab = Lab::new().map_err(|e| format!("cannot make network namespaces here: {e}"))?;
    let (pbx2, atk, central) = (lab.ns(0), lab.ns(1), lab.ns(2));
    let lapi = Lapi::start_with(Options {
        log: None,
        db: Db::Sqlite,
        netns: Some((central, INNOCENT)),
    });
    lapi.add_machine("pbx1", PASSWORD);
    let pbx1 = Sandbox::with_config(&format!(
        "tarpit_seconds = 0\n[crowdsec]\nlapi_url = \"{}\"\nmachine_id = \"pbx1\"\npassword = \"{PASSWORD}\"\n\
         state_file = \"@DIR@/crowdsec.position\"\n",
        lapi.url()
    ));
    let _daemon = Daemon::start(central, &pbx1);
    let _bouncer = Bouncer::start(pbx2, lapi.dir.path(), &lapi.url(), &lapi.bouncer_key, every);
    let got = pbx1.dir.path().join("received");
    let mut listener = timed_listener(pbx2, &got);
    until_one_arrives(atk, PBX_A, &got, ATTACKER);
    // The bouncer has made its table (so it pulls decisions) before the attack.
    wait_for("the bouncer's table", Duration::from_secs(10), || {
        let out = Command::new("ip")
            .args(["netns", "exec", pbx2, "nft", "list", "tables"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("crowdsec")
    });
    let period_ms = 1.0;
    let seconds = every.trim_end_matches('s').parse::<u32>().unwrap_or(10);
    let mut attacker = sender(atk, PBX_A, (seconds + 3) * 1000, period_ms);
    let from_attacker = |got: &Path| -> Vec<u64> {
        arrivals(got)
            .into_iter()
            .filter(|(src, _)| src == ATTACKER)
            .map(|(_, at)| at)
            .collect()
    };
    wait_for("the attack under way", Duration::from_secs(10), || {
        from_attacker(&got).len() >= 50
    });
    let decided = monotonic_ns();
    let verdict = in_netns(central, || {
        let scan = Channel {
            exten: b"100".to_vec(),
            ..Channel::ordinary(ATTACKER)
        };
        fastagi_call(4573, &scan).variable("EXTSEC_RESULT")
    });
    assert_eq!(verdict.as_deref(), Some("ALERT"));
    let _ = attacker.wait();
    let _ = listener.kill();
    let _ = listener.wait();
    let arrived = from_attacker(&got);
    let before = arrived.iter().filter(|&&t| t < decided).count();
    let last = arrived.last().copied().unwrap_or(decided);
    Ok(Dropped {
        to_drop: Duration::from_nanos(last.saturating_sub(decided)),
        before,
        after: arrived.len() - before,
        bouncer_log: ["bouncer.err", "crowdsec-firewall-bouncer.log"]
            .iter()
            .map(|f| std::fs::read_to_string(lapi.dir.path().join(f)).unwrap_or_default())
            .collect(),
    })
}
