//! `[edge]` feeds and countries (issue 29): in network namespaces (`common/netns.rs`),
//! `serve` in `pbx` with a country database made here by Debian's
//! `libmaxmind-db-writer-perl` (`tests/fixtures/edge/make-country-db.pl`; `mmdblookup`
//! from `mmdb-bin` is the oracle for `edge lookup`) and a feed served by Python's
//! `http.server` inside `pbx`, which answers `If-Modified-Since` with 304. Sources in
//! `atk` each stand for one case: an allowed country's phone, a feed address, an address
//! in a feed's range, a refused country's scanner; the trusted innocent sits in a
//! refused country. What arrives is counted by a real socket.
//!
//! Skips, saying why, where namespaces or nftables are unavailable; `.ci/run` installs
//! everything and runs it as root.

use crate::common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::netns::{
    ATTACKER, Daemon, INNOCENT, PBX_A, PBX_I, add_address, arrivals, in_netns, lab_or_skip,
    nft_list, send_from, timed_listener, until_one_arrives,
};
use common::{Sandbox, wait_for};

/// In the feed: one address and a range. In no country: the range.
const LISTED: &str = "203.0.113.67";
const IN_RANGE: &str = "203.0.113.90";
/// In a refused country (CN), then, after the swap, an allowed one.
const REFUSED: &str = "203.0.113.100";
const HTTP: u16 = 8741;

/// Writes a country database of `NETWORK CC` lines to `out`.
pub fn make_db(out: &Path, networks: &str) {
    let script = common::repo().join("tests/fixtures/edge/make-country-db.pl");
    let mut child = Command::new("perl")
        .arg(script)
        .arg(out)
        .stdin(Stdio::piped())
        .spawn()
        .expect("perl (apt-get install libmaxmind-db-writer-perl)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(networks.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "make-country-db.pl failed");
}

const FIRST_DB: &str =
    "203.0.113.64/28 FR\n203.0.113.96/28 CN\n198.51.100.0/24 CN\n2001:db8:66::/48 CN\n";
const SECOND_DB: &str = "203.0.113.64/28 FR\n203.0.113.96/28 FR\n198.51.100.0/24 CN\n";

fn config(db: &Path, feed_dir: &Path) -> String {
    format!(
        "tarpit_seconds = 0\ntrusted_networks = ['{INNOCENT}/32']\n\
         [daemon]\ncontrol_socket = '@DIR@/control.sock'\n\
         [nftables]\nenabled = true\nports = [5060]\n\
         [edge]\nenabled = true\nrate_limit = 0\nallow_countries = ['FR']\n\
         country_file = {db:?}\nfeeds = ['http://127.0.0.1:{HTTP}/list.txt']\nfeed_dir = {feed_dir:?}\n"
    )
}

/// Python's file server on 127.0.0.1:`HTTP` inside `ns`, its request log in `log`.
fn http_server(ns: &str, root: &Path, log: &Path) -> Child {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "python3",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
        ])
        .arg(HTTP.to_string())
        .arg("--directory")
        .arg(root)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// What `extsecurity ARGS` said, stdout then stderr.
fn run(ns: &str, s: &Sandbox, args: &[&str]) -> String {
    let (_, out, err) = common::netns::cli_in(ns, s, args);
    out + &err
}

fn from(path: &Path, source: &str) -> usize {
    arrivals(path).iter().filter(|(s, _)| s == source).count()
}

/// Ten datagrams at a phone's pace (5/s) from each source; how many arrived from each.
fn ten_each(atk: &str, inn: &str, sip: &Path, sources: &[&str]) -> Vec<usize> {
    let before: Vec<usize> = sources.iter().map(|s| from(sip, s)).collect();
    let mut senders: Vec<Child> = sources
        .iter()
        .map(|src| match *src {
            INNOCENT => send_from(inn, src, PBX_I, 5060, 10, 200.0),
            _ => send_from(atk, src, PBX_A, 5060, 10, 200.0),
        })
        .collect();
    for s in &mut senders {
        s.wait().unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    sources
        .iter()
        .zip(before)
        .map(|(s, b)| from(sip, s) - b)
        .collect()
}

/// Whether `addr` is in set `set` of our table in `ns` (`nft get element`).
fn in_set(ns: &str, set: &str, addr: &str) -> bool {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "nft",
            "get",
            "element",
            "inet",
            "extsecurity",
            set,
        ])
        .arg(format!("{{ {addr} }}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The whole life of the lists: what each list drops and what it never does, the
/// oracle's countries, a conditional request, an HTML page refused with the last good
/// copy kept across a restart, the database swapped while a phone talks.
#[test]
fn feeds_and_countries_drop_before_asterisk_and_keep_their_last_good_copy() {
    let Some(lab) = lab_or_skip() else { return };
    let (pbx, atk, inn) = (lab.ns(0), lab.ns(1), lab.ns(2));
    for a in [LISTED, IN_RANGE, REFUSED] {
        add_address(atk, a);
    }
    let work = tempfile::tempdir().unwrap();
    let (db, feed_dir, www) = (
        work.path().join("country.mmdb"),
        work.path().join("feeds"),
        work.path().join("www"),
    );
    std::fs::create_dir(&www).unwrap();
    make_db(&db, FIRST_DB);
    let list = www.join("list.txt");
    std::fs::write(
        &list,
        format!("# a test feed\n{LISTED}\n203.0.113.88/29 ; a range\n10.0.0.0/8\n"),
    )
    .unwrap();
    let http_log = work.path().join("http.log");
    let mut http = http_server(pbx, &www, &http_log);
    wait_for("the feed's server", Duration::from_secs(10), || {
        in_netns(pbx, || {
            std::net::TcpStream::connect(("127.0.0.1", HTTP)).is_ok()
        })
    });
    let s = Sandbox::with_config(&config(&db, &feed_dir));

    // The oracle: mmdblookup and `edge lookup` place each address alike.
    for addr in [
        ATTACKER,
        REFUSED,
        INNOCENT,
        "2001:db8:66::66",
        "203.0.113.90",
    ] {
        let oracle = Command::new("mmdblookup")
            .args(["--file"])
            .arg(&db)
            .args(["--ip", addr, "country", "iso_code"])
            .output()
            .expect("mmdblookup (apt-get install mmdb-bin)");
        let oracle = String::from_utf8_lossy(&oracle.stdout);
        let code = oracle.split('"').nth(1);
        let said = run(pbx, &s, &["edge", "lookup", addr]);
        match code {
            Some(code) => assert!(
                said.contains(&format!("country: {code} (")),
                "{addr}: {oracle} vs {said}"
            ),
            None => assert!(said.contains("country: none"), "{addr}: {oracle} vs {said}"),
        }
    }

    let mut daemon = Daemon::start(pbx, &s);
    let filled = common::wait_until(Duration::from_secs(15), || {
        in_set(pbx, "feed4_one", LISTED)
            && in_set(pbx, "feed4", IN_RANGE)
            && in_set(pbx, "country4", REFUSED)
    });
    assert!(
        filled,
        "the lists never reached the kernel: {}\n{}",
        nft_list(pbx),
        std::fs::read_to_string(s.dir.path().join("stderr")).unwrap_or_default()
    );
    for set in ["feed4", "country4"] {
        assert!(
            !in_set(pbx, set, "10.1.2.3"),
            "a private range is never dropped ({set})"
        );
    }
    assert!(
        !in_set(pbx, "country4", ATTACKER),
        "an allowed country's address"
    );
    let sip = s.dir.path().join("sip");
    let mut listener = timed_listener(pbx, &sip);
    until_one_arrives(atk, PBX_A, &sip, ATTACKER);
    let sources = [ATTACKER, LISTED, IN_RANGE, REFUSED, INNOCENT];
    assert_eq!(
        ten_each(atk, inn, &sip, &sources),
        [10, 0, 0, 0, 10],
        "allowed phone, feed address, feed range, refused country, trusted in a refused country"
    );
    // Another port is not the edge's.
    let other = s.dir.path().join("other");
    let mut other_listener = common::netns::listen_on(pbx, 9999, &other);
    wait_for(
        "a refused country on another port",
        Duration::from_secs(10),
        || {
            let _ = send_from(atk, REFUSED, PBX_A, 9999, 1, 1.0).wait();
            std::fs::read_to_string(&other)
                .unwrap_or_default()
                .contains(REFUSED)
        },
    );
    let status = run(pbx, &s, &["status"]);
    assert!(
        status.contains(&format!("http://127.0.0.1:{HTTP}/list.txt: 2 entries")),
        "{status}"
    );
    assert!(
        status.contains("countries: ") && status.contains("networks refused of 4"),
        "{status}"
    );
    let said = run(pbx, &s, &["edge", "lookup", IN_RANGE]);
    assert!(
        said.contains(&format!(
            "DROPPED: listed by http://127.0.0.1:{HTTP}/list.txt"
        )),
        "{said}"
    );
    let explained = run(pbx, &s, &["bans", "--explain", IN_RANGE]);
    assert!(explained.starts_with("ban: not banned"), "{explained}");
    assert!(
        explained.contains(&format!(
            "feeds: listed by http://127.0.0.1:{HTTP}/list.txt"
        )),
        "{explained}"
    );

    // SIGHUP asks again, conditionally: the unchanged list is a 304.
    let hup = |d: &Daemon| {
        Command::new("kill")
            .args(["-HUP", &d.0.id().to_string()])
            .status()
            .unwrap();
    };
    hup(&daemon);
    wait_for(
        "a conditional request answered 304",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(&http_log)
                .unwrap_or_default()
                .contains("\" 304 ")
        },
    );

    // The server breaks: an HTML page. Refused, said, the last good copy kept.
    std::thread::sleep(Duration::from_millis(1100)); // a newer Last-Modified
    std::fs::write(
        &list,
        "<!DOCTYPE html><html><body>502 Bad Gateway</body></html>\n",
    )
    .unwrap();
    hup(&daemon);
    wait_for("the HTML page refused", Duration::from_secs(10), || {
        run(pbx, &s, &["status"]).contains("LAST FETCH FAILED: an HTML page")
    });
    assert_eq!(
        ten_each(atk, inn, &sip, &[LISTED]),
        [0],
        "the last good copy is in force"
    );

    // A restart with the table gone and the page still broken: the kept copy.
    kill(&mut daemon.0);
    drop(daemon);
    let del = Command::new("ip")
        .args([
            "netns",
            "exec",
            pbx,
            "nft",
            "delete",
            "table",
            "inet",
            "extsecurity",
        ])
        .status()
        .unwrap();
    assert!(del.success());
    let daemon = Daemon::start(pbx, &s);
    wait_for(
        "the kept copy in force after the restart",
        Duration::from_secs(15),
        || in_set(pbx, "feed4_one", LISTED),
    );
    assert_eq!(ten_each(atk, inn, &sip, &[LISTED, ATTACKER]), [0, 10]);
    let stderr = std::fs::read_to_string(s.dir.path().join("stderr")).unwrap();
    assert!(stderr.contains("feed's kept copy in force"), "{stderr}");

    // The database swapped (written beside, renamed) while a phone talks: no gap for
    // the phone, and the range that moved to an allowed country comes through.
    let mut phone = send_from(atk, ATTACKER, PBX_A, 5060, 20, 200.0);
    let before = from(&sip, ATTACKER);
    std::thread::sleep(Duration::from_millis(1000));
    let next = work.path().join("next.mmdb");
    make_db(&next, SECOND_DB);
    std::fs::rename(&next, &db).unwrap();
    phone.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        from(&sip, ATTACKER) - before,
        20,
        "the phone lost nothing in the swap"
    );
    wait_for("the moved range allowed", Duration::from_secs(10), || {
        let _ = send_from(atk, REFUSED, PBX_A, 5060, 1, 1.0).wait();
        from(&sip, REFUSED) > 0
    });
    assert_eq!(ten_each(atk, inn, &sip, &[LISTED, INNOCENT]), [0, 10]);
    drop(daemon);
    for c in [&mut listener, &mut other_listener, &mut http] {
        kill(c);
    }
}

/// An address that logged in (AMI `SuccessfulAuth`, the capture `ami-rightpw.bin`'s try
/// moved to that address, design §3b) passes the edge for a day though its country is
/// refused: a travelling user's phone registers, then calls.
#[test]
fn a_login_lets_a_refused_countrys_address_through() {
    use common::ami_peer::{AmiPeer, Script, Then, capture_events, from_address};
    let Some(lab) = lab_or_skip() else { return };
    let (pbx, atk, inn) = (lab.ns(0), lab.ns(1), lab.ns(2));
    add_address(atk, REFUSED);
    let work = tempfile::tempdir().unwrap();
    let db = work.path().join("country.mmdb");
    make_db(&db, FIRST_DB);
    let login = from_address(&capture_events("ami-rightpw.bin"), REFUSED);
    let peer = common::netns::in_netns(pbx, move || {
        AmiPeer::start(vec![Script::paced(
            vec![(Duration::from_secs(3), login)],
            Then::Hold,
        )])
    });
    let s = Sandbox::with_config(&format!(
        "tarpit_seconds = 0\n[daemon]\ncontrol_socket = '@DIR@/control.sock'\n\
         [ami]\naddress = '{}'\nusername = 'extsecurity'\nsecret = 's3cmon-test'\n\
         [nftables]\nenabled = true\nports = [5060]\n\
         [edge]\nenabled = true\nrate_limit = 0\nallow_countries = ['FR']\ncountry_file = {db:?}\n",
        peer.addr
    ));
    let _daemon = Daemon::start(pbx, &s);
    let sip = s.dir.path().join("sip");
    let mut listener = timed_listener(pbx, &sip);
    until_one_arrives(atk, PBX_A, &sip, ATTACKER);
    assert_eq!(
        ten_each(atk, inn, &sip, &[REFUSED]),
        [0],
        "refused before it logged in"
    );
    wait_for("the login let through", Duration::from_secs(15), || {
        let t = nft_list(pbx);
        t.split("set known4")
            .nth(1)
            .is_some_and(|set| set.split('}').next().unwrap_or("").contains(REFUSED))
    });
    assert_eq!(
        ten_each(atk, inn, &sip, &[REFUSED]),
        [10],
        "through once it logged in"
    );
    kill(&mut listener);
}

/// `dry_run = true`: a feed's address and a refused country's all arrive, and `status`
/// counts what each list would have dropped.
#[test]
fn a_dry_run_of_the_lists_counts_and_drops_nothing() {
    let Some(lab) = lab_or_skip() else { return };
    let (pbx, atk, inn) = (lab.ns(0), lab.ns(1), lab.ns(2));
    for a in [LISTED, REFUSED] {
        add_address(atk, a);
    }
    let work = tempfile::tempdir().unwrap();
    let (db, list) = (
        work.path().join("country.mmdb"),
        work.path().join("mine.txt"),
    );
    make_db(&db, FIRST_DB);
    std::fs::write(&list, format!("{LISTED}\n")).unwrap();
    let s = Sandbox::with_config(&format!(
        "tarpit_seconds = 0\n[daemon]\ncontrol_socket = '@DIR@/control.sock'\n\
         [nftables]\nenabled = true\nports = [5060]\n\
         [edge]\nenabled = true\ndry_run = true\nallow_countries = ['FR']\ncountry_file = {db:?}\n\
         feeds = ['file://{}']\nfeed_dir = '@DIR@/feeds'\n",
        list.display()
    ));
    let _daemon = Daemon::start(pbx, &s);
    wait_for("the lists in the kernel", Duration::from_secs(15), || {
        in_set(pbx, "feed4_one", LISTED) && in_set(pbx, "country4", REFUSED)
    });
    let sip = s.dir.path().join("sip");
    let mut listener = timed_listener(pbx, &sip);
    until_one_arrives(atk, PBX_A, &sip, ATTACKER);
    assert_eq!(
        ten_each(atk, inn, &sip, &[LISTED, REFUSED]),
        [10, 10],
        "nothing dropped"
    );
    let status = run(pbx, &s, &["status"]);
    let counted = |what: &str| -> u64 {
        let line = status
            .lines()
            .find(|l| l.trim_start().starts_with(what))
            .unwrap_or_else(|| panic!("{what}: {status}"));
        line.split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"))
    };
    assert!(counted("feeds:") >= 10, "{status}");
    assert!(counted("countries:") >= 10, "{status}");
    let said = run(pbx, &s, &["edge", "lookup", REFUSED]);
    assert!(said.contains("WOULD BE DROPPED (dry_run"), "{said}");
    kill(&mut listener);
}

/// `edge update` fetches this month's database (or last month's) from `country_url`,
/// unpacks it, checks it and renames it into place; an HTML page or a city database
/// instead is refused with status 13 and the file in place kept. `edge what-if` then
/// replays an alert log against the new database.
#[test]
fn update_fetches_checks_and_replaces_and_what_if_replays() {
    let work = tempfile::tempdir().unwrap();
    let www = work.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let now = Command::new("date")
        .args(["-u", "+%Y-%m"])
        .output()
        .unwrap();
    let month = String::from_utf8_lossy(&now.stdout).trim().to_string();
    let fresh = work.path().join("fresh.mmdb");
    make_db(&fresh, FIRST_DB);
    let gz = std::process::Command::new("gzip")
        .args(["-c"])
        .arg(&fresh)
        .output()
        .unwrap();
    std::fs::write(www.join(format!("db-{month}.mmdb.gz")), gz.stdout).unwrap();
    std::fs::write(www.join("broken.mmdb.gz"), "<html><body>404</body></html>").unwrap();
    let port = common::free_port();
    let mut http = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
            "--directory",
        ])
        .arg(&www)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the file server", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let db = work.path().join("country.mmdb");
    std::fs::write(&db, "the old file").unwrap();
    let s = Sandbox::with_config(&format!(
        "[nftables]\nenabled = true\nports = [5060]\n\
         [edge]\nenabled = true\ndeny_countries = ['CN']\ncountry_file = {db:?}\n\
         country_url = 'http://127.0.0.1:{port}/db-{{year}}-{{month}}.mmdb.gz'\n"
    ));
    let cli = |args: &[&str]| {
        let out = s.command().args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let broken = format!("http://127.0.0.1:{port}/broken.mmdb.gz");
    let (code, said) = cli(&["edge", "update", "--url", &broken]);
    assert_eq!(code, Some(13), "{said}");
    assert!(said.contains("is left as it is"), "{said}");
    assert_eq!(std::fs::read_to_string(&db).unwrap(), "the old file");
    let (code, said) = cli(&["edge", "update"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("4 networks placed in countries"), "{said}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        std::fs::read(&fresh).unwrap(),
        "unpacked and in place"
    );

    // The alert log replayed: the refused country's alerts counted, the others not.
    let line = |ip: &str, reason: &str| {
        format!(
            "2026-12-01 08:00:00.000 ERROR ip={ip} reason={reason} callerid_num='1' dest_exten='00' user_agent='' peer_name=''\n"
        )
    };
    std::fs::write(
        &s.log,
        [
            line(REFUSED, "extension_scan"),
            line(REFUSED, "blocked_user_agent"),
            line(ATTACKER, "exten_too_short"),
        ]
        .concat(),
    )
    .unwrap();
    let (code, said) = cli(&["edge", "what-if", "--since", "36500d"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(
            "2 of 3 calls and 2 of 3 alerts came from addresses the edge would have stopped"
        ),
        "{said}"
    );
    assert!(said.contains("country CN: 2 alerts"), "{said}");
    kill(&mut http);
}
