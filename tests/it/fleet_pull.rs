//! CrowdSec both ways (issue 29): a fleet's LAPI (Debian's 1.4.6 on a private
//! PostgreSQL 15, `common/crowdsec.rs`) in the `inn` namespace, PBX 1's daemon beside
//! it, PBX 2's daemon in `pbx` with its own table, the attacker in `atk` probing PBX 2
//! every millisecond. Both daemons pull the LAPI's decision stream with a bouncer key
//! of their own; no firewall bouncer is involved. A decision added with `cscli` is
//! dropped by PBX 2 within `pull_seconds` + 1 s and its deletion lifts it; a number
//! PBX 1 learns from a scanner's call is refused on PBX 2. Calls reach the daemons as
//! Asterisk makes them (`common/agi_peer.rs`, design §3a).

use crate::common;

use std::time::{Duration, Instant};

use common::agi_peer::{fastagi_call, outbound_call};
use common::asterisk::Channel;
use common::crowdsec::{Db, Lapi, Options, Postgres};
use common::netns::{
    ATTACKER, Daemon, INNOCENT, PBX_A, arrivals, in_netns, lab_or_skip, nft_list, sender,
    timed_listener, until_one_arrives,
};
use common::{Sandbox, repo, wait_for};

const PASSWORD: &str = "fleet-test-password-0123456789";
const PULL_SECONDS: u64 = 2;

fn pbx_config(lapi: &Lapi, machine: &str, key: &str) -> String {
    let list = repo().join("dist/extsecurity-high-risk.conf");
    format!(
        "tarpit_seconds = 0\n[daemon]\ncontrol_socket = '@DIR@/control.sock'\n\
         [nftables]\nenabled = true\nports = [5060]\n\
         [crowdsec]\nlapi_url = \"{}\"\nmachine_id = \"{machine}\"\npassword = \"{PASSWORD}\"\n\
         state_file = \"@DIR@/crowdsec.position\"\nbouncer_key = \"{key}\"\npull_seconds = {PULL_SECONDS}\n\
         [fraud]\nenabled = true\ncountry_code = \"49\"\nhigh_risk_file = {list:?}\n\
         state_file = \"@DIR@/fraud.state\"\n",
        lapi.url()
    )
}

/// What `extsecurity ARGS` said, stdout then stderr.
fn run(ns: &str, s: &Sandbox, args: &[&str]) -> String {
    let (_, out, err) = common::netns::cli_in(ns, s, args);
    out + &err
}

/// The attacker's datagrams that reached PBX 2 after `since` (CLOCK_MONOTONIC ns).
fn arrived_after(got: &std::path::Path, since: u64) -> Vec<u64> {
    arrivals(got)
        .into_iter()
        .filter(|(src, at)| src == ATTACKER && *at >= since)
        .map(|(_, at)| at)
        .collect()
}

#[test]
fn the_fleets_decisions_and_learned_numbers_reach_every_pbx() {
    let _one = common::heavy();
    let Some(lab) = lab_or_skip() else { return };
    let (pbx2, atk, central) = (lab.ns(0), lab.ns(1), lab.ns(2));
    let pg = Postgres::start();
    let lapi = Lapi::start_with(Options {
        log: None,
        db: Db::PostgresSocket(&pg),
        netns: Some((central, INNOCENT)),
    });
    let key = |name: &str| {
        let out = lapi.cscli(&["bouncers", "add", name, "-o", "raw"]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    lapi.add_machine("pbx1", PASSWORD);
    lapi.add_machine("pbx2", PASSWORD);
    let one = Sandbox::with_config(&pbx_config(&lapi, "pbx1", &key("pbx1")));
    let two = Sandbox::with_config(&pbx_config(&lapi, "pbx2", &key("pbx2")));
    let _d1 = Daemon::start(central, &one);
    let _d2 = Daemon::start(pbx2, &two);
    wait_for("PBX 2's first pull", Duration::from_secs(15), || {
        run(pbx2, &two, &["status"]).contains("in force from the LAPI (last")
    });

    // A decision added by hand on the LAPI: PBX 2 drops the attacker.
    let got = two.dir.path().join("received");
    let mut listener = timed_listener(pbx2, &got);
    until_one_arrives(atk, PBX_A, &got, ATTACKER);
    let limit = Duration::from_secs(PULL_SECONDS + 1);
    let mut attacker = sender(atk, PBX_A, 20_000, 1.0);
    wait_for("the attack under way", Duration::from_secs(10), || {
        arrived_after(&got, 0).len() >= 100
    });
    let decided = common::monotonic_ns();
    let added = lapi.cscli(&[
        "decisions",
        "add",
        "--ip",
        ATTACKER,
        "--duration",
        "1h",
        "--reason",
        "fleet test",
    ]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    wait_for(
        "PBX 2 dropping the attacker",
        limit + Duration::from_secs(5),
        || nft_list(pbx2).contains(ATTACKER),
    );
    std::thread::sleep(Duration::from_millis(300));
    let last = *arrived_after(&got, decided).last().unwrap_or(&decided);
    let to_drop = Duration::from_nanos(last - decided);
    eprintln!(
        "cscli decision to PBX 2 dropping: {} ms (pull_seconds = {PULL_SECONDS})",
        to_drop.as_millis()
    );
    assert!(
        to_drop <= limit,
        "dropped {} ms after the decision",
        to_drop.as_millis()
    );
    let bans = run(pbx2, &two, &["bans"]);
    assert!(
        bans.lines()
            .any(|l| l.starts_with(ATTACKER) && l.contains("crowdsec:")),
        "{bans}"
    );

    // Deleted on the LAPI: lifted on PBX 2 within the same bound.
    let deleted_at = Instant::now();
    let lifted = lapi.cscli(&["decisions", "delete", "--ip", ATTACKER]);
    assert!(lifted.status.success());
    let back = common::monotonic_ns();
    wait_for(
        "the attacker's datagrams again",
        limit + Duration::from_secs(5),
        || !arrived_after(&got, back).is_empty(),
    );
    assert!(
        deleted_at.elapsed() <= limit + Duration::from_millis(500),
        "lifted after {:?}",
        deleted_at.elapsed()
    );
    let _ = attacker.kill();
    let _ = attacker.wait();

    // A ban by hand lifted on PBX 2 says where it comes from.
    let again = lapi.cscli(&["decisions", "add", "--ip", ATTACKER, "--duration", "1h"]);
    assert!(again.status.success());
    wait_for("pulled again", limit + Duration::from_secs(5), || {
        nft_list(pbx2).contains(ATTACKER)
    });
    let unban = run(pbx2, &two, &["unban", ATTACKER]);
    assert!(
        unban.contains(&format!("cscli decisions delete --ip {ATTACKER}")),
        "{unban}"
    );

    // What the fleet cannot make PBX 2 drop: a range holding PBX 2's own address, another
    // site's private address. A range beside them is banned (and shows the pull ran).
    for args in [
        ["--range", "203.0.113.0/24"],
        ["--ip", "10.9.9.9"],
        ["--range", "192.0.2.0/24"],
    ] {
        let added = lapi.cscli(&["decisions", "add", args[0], args[1], "--duration", "1h"]);
        assert!(
            added.status.success(),
            "{}",
            String::from_utf8_lossy(&added.stderr)
        );
    }
    wait_for("the range pulled", limit + Duration::from_secs(5), || {
        nft_list(pbx2).contains("192.0.2.0/24")
    });
    let table = nft_list(pbx2);
    assert!(
        !table.contains("203.0.113.0/24"),
        "its own network: {table}"
    );
    assert!(!table.contains("10.9.9.9"), "another site's LAN: {table}");

    // PBX 1 learns a number from a scanner's call; PBX 2 refuses it to its own phones.
    let number = "00972501234567";
    let scan = Channel {
        exten: number.as_bytes().to_vec(),
        user_agent: b"friendly-scanner".to_vec(),
        ..Channel::ordinary("203.0.113.99")
    };
    let guest = in_netns(central, move || {
        fastagi_call(4573, &scan).variable("EXTSEC_RESULT")
    });
    assert_eq!(guest.as_deref(), Some("ALERT"));
    // Waited for on `status`, not by calling: each try would be a call abroad, and the
    // account's own limits would stop it first.
    let pulled = common::wait_until(Duration::from_secs(2 * PULL_SECONDS + 10), || {
        run(pbx2, &two, &["status"]).contains("and 1 numbers in force from the LAPI")
    });
    let stderr =
        |s: &Sandbox| std::fs::read_to_string(s.dir.path().join("stderr")).unwrap_or_default();
    assert!(
        pulled,
        "the number PBX 1 learned never reached PBX 2\nPBX 1:\n{}\nPBX 2:\n{}\nLAPI decisions: {}",
        stderr(&one),
        stderr(&two),
        String::from_utf8_lossy(
            &lapi
                .cscli(&["decisions", "list", "--all", "-o", "json"])
                .stdout
        )
    );
    let phone = Channel::outbound("4001", number.as_bytes(), "192.0.2.44");
    let reason = in_netns(pbx2, move || {
        outbound_call(4573, &phone).variable("EXTSEC_REASON")
    });
    assert_eq!(
        reason.as_deref(),
        Some("learned_destination"),
        "refused on PBX 2 at its first call"
    );
    let other = Channel::outbound("4002", b"00972501234568", "192.0.2.44");
    let reason = in_netns(pbx2, move || {
        outbound_call(4573, &other).variable("EXTSEC_REASON")
    });
    assert_eq!(reason.as_deref(), Some("ok"), "only the number itself");
    let status = run(pbx2, &two, &["status"]);
    assert!(
        status.contains("and 1 numbers in force from the LAPI"),
        "{status}"
    );
    let _ = listener.kill();
    let _ = listener.wait();
}
