//! The AMI watcher end to end: the real `extsecurity serve` (FastAGI off) logs in to
//! the AMI peer of `common/ami_peer.rs`, which speaks as Asterisk 20.20.1 does
//! (design.md §3b) and sends the events of `tests/captures/ami/`, hostile ones
//! included; the alert log it writes goes through the real `fail2ban-regex` with the
//! shipped filter.

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use common::agi_peer::fastagi_call;
use common::ami_peer::{
    AmiPeer, Script, Then, capture_events, from_address, split_events, with_account,
};
use common::asterisk::Channel;
use common::{
    LoggedServe, Sandbox, fail2ban_matches, free_port, ip_field, level, metric, wait_until,
};

/// `extsecurity serve` with only the AMI watcher, its stderr kept in the sandbox.
struct Watcher {
    serve: LoggedServe,
    metrics_port: u16,
}

impl Watcher {
    fn start(peer: &AmiPeer, extra: &str) -> Watcher {
        Watcher::start_with(peer, extra, "fastagi = false", "")
    }

    /// `daemon` is put in the `[daemon]` table, `ami` in the `[ami]` table.
    fn start_with(peer: &AmiPeer, extra: &str, daemon: &str, ami: &str) -> Watcher {
        let metrics_port = free_port();
        let sandbox = Sandbox::with_config(&format!(
            "tarpit_seconds = 0\n{extra}\n\
             [daemon]\n{daemon}\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n\
             [ami]\naddress = \"{}\"\nusername = \"extsecurity\"\nsecret = \"s3cmon-test\"\n\
             ping_interval_seconds = 1\n{ami}\n",
            peer.addr
        ));
        Watcher {
            serve: LoggedServe::start(sandbox, metrics_port),
            metrics_port,
        }
    }

    fn stderr(&self) -> String {
        self.serve.stderr()
    }

    fn log(&self) -> &Sandbox {
        &self.serve.sandbox
    }

    /// The value of a metric line such as `extsecurity_ami_tampered_total`.
    fn metric(&self, name: &str) -> f64 {
        metric(self.metrics_port, name)
    }

    fn events_read(&self) -> f64 {
        self.metric("extsecurity_ami_events_total{")
    }

    fn wait_for(&self, what: &str, done: impl FnMut() -> bool) {
        assert!(
            wait_until(Duration::from_secs(60), done),
            "timed out waiting for {what}; stderr:\n{}",
            self.stderr()
        );
    }

    /// The alert log's ERROR lines.
    fn alerts(&self) -> Vec<String> {
        self.log()
            .log_lines()
            .into_iter()
            .filter(|l| level(l) == "ERROR")
            .collect()
    }
}

fn repeat(events: &[u8], times: usize) -> Vec<u8> {
    events.repeat(times)
}

/// One ChallengeSent + one ChallengeResponseFailed (and the capture's own AMI
/// SuccessfulAuth) per copy: a wrong password for endpoint 1001.
fn wrong_passwords(ip: &str, times: usize) -> Vec<u8> {
    repeat(&from_address(&capture_events("ami-wrongpw.bin"), ip), times)
}

#[test]
fn a_burst_of_wrong_passwords_is_banned_once() {
    let peer = AmiPeer::start(vec![Script::accept(
        wrong_passwords("203.0.113.5", 8),
        Then::Hold,
    )]);
    let w = Watcher::start(&peer, "");
    w.wait_for("24 events", || w.events_read() >= 24.0);
    w.wait_for("the alert", || !w.alerts().is_empty());
    let alerts = w.alerts();
    assert_eq!(alerts.len(), 1, "one line per crossing: {alerts:?}");
    assert!(
        alerts[0].contains(" ERROR ip=203.0.113.5 reason=auth_bruteforce tries=6 window_seconds=60 last_event=ChallengeResponseFailed service='PJSIP' account='1001'"),
        "{}",
        alerts[0]
    );
    // The real fail2ban-regex, the shipped filter: exactly the attacker. Our own AMI
    // login (SuccessfulAuth from 127.0.0.1) counts toward nothing.
    let matches = fail2ban_matches(&w.log().log);
    assert_eq!(matches.len(), 1, "{matches:?}");
    assert_eq!(matches[0].1, "203.0.113.5");
    assert_eq!(
        w.metric("extsecurity_ami_alerts_total{reason=\"auth_bruteforce\"}"),
        1.0
    );
    assert_eq!(w.metric("extsecurity_ami_connected"), 1.0);
    // The login as design §3b has it, by MD5 challenge (the peer checks the key as
    // manager.c does), the secret never on the wire; and FastAGI really off.
    let login = peer.received(0);
    for line in [
        "Action: Challenge\r\n",
        "AuthType: MD5\r\n",
        "Action: Login\r\n",
        "Username: extsecurity\r\n",
        "Key: ",
        "Events: security\r\n",
    ] {
        assert!(login.contains(line), "{login:?}");
    }
    assert!(!login.contains("s3cmon-test"), "{login:?}");
    assert!(
        w.stderr().contains("FastAGI off, AMI watcher for"),
        "{}",
        w.stderr()
    );
}

#[test]
fn forged_addresses_are_never_banned() {
    // ami-spoof.bin: an InvalidAccountID with a forged `RemoteAddress: …/9.9.9.9/5`
    // first, and a Call-ID spelling `RemoteAddress: IPV4/UDP/8.8.8.8/1`; ami-crlf.bin:
    // one event split in two by CR LF CR LF in the From user.
    let attacker = "198.51.100.20";
    let spoof = from_address(&capture_events("ami-spoof.bin"), attacker);
    let crlf = from_address(&capture_events("ami-crlf.bin"), attacker);
    let events = [repeat(&spoof, 10), repeat(&crlf, 10)].concat();
    let peer = AmiPeer::start(vec![Script::accept(events, Then::Hold)]);
    // The valid events of both captures name four user names in all.
    let w = Watcher::start_with(&peer, "", "fastagi = false", "max_unknown_accounts = 3");
    // 1 tampered message per spoof copy, 2 per crlf copy.
    w.wait_for("30 tampered messages", || {
        w.metric("extsecurity_ami_tampered_total") >= 30.0
    });
    assert_eq!(w.metric("extsecurity_ami_tampered_total"), 30.0);
    w.wait_for("the scan alert", || !w.alerts().is_empty());
    let log = w.log().log_text();
    for forged in ["9.9.9.9", "8.8.8.8"] {
        assert!(!log.contains(forged), "{log}");
    }
    let matches = fail2ban_matches(&w.log().log);
    assert!(!matches.is_empty());
    assert!(
        matches.iter().all(|(_, ip)| ip == attacker),
        "only the real sender: {matches:?}"
    );
    assert!(
        w.alerts()
            .iter()
            .all(|l| ip_field(l) == Some(attacker) && l.contains("reason=account_scan")),
        "{:?}",
        w.alerts()
    );
    assert!(
        w.stderr().contains("reshaped by a caller's bytes"),
        "{}",
        w.stderr()
    );
}

#[test]
fn trusted_networks_are_never_alerted_on() {
    let unknown = from_address(&capture_events("ami-unknown.bin"), "198.51.100.9");
    let events = [wrong_passwords("203.0.113.5", 10), repeat(&unknown, 10)].concat();
    let peer = AmiPeer::start(vec![Script::accept(events, Then::Hold)]);
    let w = Watcher::start(&peer, "trusted_networks = [\"203.0.113.0/24\"]");
    w.wait_for("the alert", || !w.alerts().is_empty());
    w.wait_for("every event", || {
        w.metric("extsecurity_ami_events_total{type=\"InvalidAccountID\"}") >= 20.0
            && w.metric("extsecurity_ami_events_total{type=\"ChallengeResponseFailed\"}") >= 20.0
    });
    let alerts = w.alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(ip_field(&alerts[0]), Some("198.51.100.9"));
    // Ten tries on one unknown name: one name, ten failed tries.
    assert!(
        alerts[0].contains("reason=auth_bruteforce tries=6"),
        "{}",
        alerts[0]
    );
}

#[test]
fn counting_goes_on_across_a_dropped_connection_and_a_refused_login() {
    // Asterisk restarts mid-event after three failures, then refuses one login (its
    // manager.conf not loaded yet), then accepts: three more failures cross the limit.
    let three = wrong_passwords("203.0.113.5", 3);
    let cut = [
        three.clone(),
        b"Event: ChallengeResponseFailed\r\nPrivilege: secu".to_vec(),
    ]
    .concat();
    let peer = AmiPeer::start(vec![
        Script::accept(cut, Then::Close),
        Script::refuse(),
        Script::accept(three, Then::Hold),
    ]);
    let w = Watcher::start(&peer, "");
    w.wait_for("the third connection", || peer.connections() == 3);
    w.wait_for("the alert", || !w.alerts().is_empty());
    let alerts = w.alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        alerts[0].contains("ip=203.0.113.5 reason=auth_bruteforce"),
        "{}",
        alerts[0]
    );
    // The daemon's own log says the outage once, the refusal once, the return once
    // (README: not a line per retry).
    let stderr = w.stderr();
    let count = |text: &str| stderr.matches(text).count();
    assert_eq!(
        count("AMI: Asterisk closed the connection; reconnecting every 1-30 s"),
        1,
        "{stderr}"
    );
    assert_eq!(
        count("AMI: login refused: Authentication failed"),
        1,
        "{stderr}"
    );
    assert_eq!(count("AMI: logged in again after"), 1, "{stderr}");
    assert_eq!(count("WARN"), 1, "{stderr}");
    assert_eq!(w.metric("extsecurity_ami_reconnects_total"), 2.0);
    assert_eq!(w.metric("extsecurity_ami_login_failures_total"), 1.0);
    assert_eq!(
        w.metric("extsecurity_ami_tampered_total"),
        0.0,
        "the cut event is dropped, not misread"
    );
}

#[test]
fn huge_and_oversized_messages_keep_the_connection() {
    // Call-IDs of 20k, 60k and 65.2k bytes (SessionID lines that long) are read; a
    // 300 KB message is skipped; the failures after them still count.
    let ip = "203.0.113.8";
    let mut events = [
        from_address(&capture_events("ami-bigcid.bin"), ip),
        from_address(&capture_events("ami-maxcid.bin"), ip),
    ]
    .concat();
    events.extend_from_slice(b"Event: InvalidAccountID\r\nPrivilege: security,all\r\nSessionID: ");
    events.extend(std::iter::repeat_n(b'A', 300_000));
    events.extend_from_slice(b"\r\n\r\n");
    events.extend(wrong_passwords(ip, 6));
    let peer = AmiPeer::start(vec![Script::accept(events, Then::Hold)]);
    let w = Watcher::start(&peer, "");
    w.wait_for("the alert", || {
        w.alerts()
            .iter()
            .any(|l| l.contains("reason=auth_bruteforce"))
    });
    assert_eq!(
        w.metric("extsecurity_ami_tampered_total"),
        1.0,
        "the oversized message"
    );
    assert!(w.metric("extsecurity_ami_events_total{type=\"InvalidAccountID\"}") >= 3.0);
    assert_eq!(peer.connections(), 1, "{}", w.stderr());
    assert!(w.alerts().iter().all(|l| ip_field(l) == Some(ip)));
}

#[test]
fn a_silent_asterisk_is_pinged_then_left_for_a_new_connection() {
    let peer = AmiPeer::start(vec![
        Script::accept(Vec::new(), Then::HoldSilent),
        Script::accept(wrong_passwords("203.0.113.5", 6), Then::Hold),
    ]);
    let w = Watcher::start(&peer, "");
    w.wait_for("the second connection", || peer.connections() == 2);
    assert!(
        peer.received(0).contains("Action: Ping\r\n"),
        "{:?}",
        peer.received(0)
    );
    w.wait_for("the alert", || !w.alerts().is_empty());
    assert!(w.stderr().contains("Ping unanswered"), "{}", w.stderr());
}

#[test]
fn serve_with_nothing_to_serve_says_so() {
    let sandbox = Sandbox::with_config("[daemon]\nfastagi = false\n");
    let out = sandbox
        .command()
        .arg("serve")
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nothing to serve: [daemon] fastagi = false and no [ami] table"),
        "{stderr}"
    );
    let sandbox = Sandbox::with_config("[ami]\nsecret = 'x'\n");
    let out = sandbox.run(&["check-config"]);
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(":2:1: ami.username is required"),
        "{stderr}"
    );
}

/// A SIP proxy beside Asterisk makes every login's address this host: its password
/// guessers are alerted on, but the proxy's address is no repeat offender for the
/// calls that follow through it (daemon/this_host.rs).
#[test]
fn an_ami_alert_on_this_host_marks_no_repeat_offender() {
    let peer = AmiPeer::start(vec![Script::accept(
        wrong_passwords("127.0.0.1", 6),
        Then::Hold,
    )]);
    let port = free_port();
    let w = Watcher::start_with(&peer, "", &format!("listen = \"127.0.0.1:{port}\""), "");
    w.wait_for("the AMI alert", || !w.alerts().is_empty());
    let reason = fastagi_call(port, &Channel::ordinary("127.0.0.1"))
        .variable("EXTSEC_REASON")
        .unwrap_or_default();
    assert_eq!(reason, "ok");
}

#[test]
fn fastagi_and_ami_share_one_memory() {
    // A password guesser banned through AMI that then places a call through FastAGI:
    // the call is a repeat offender, whatever the call itself looks like.
    let peer = AmiPeer::start(vec![Script::accept(
        wrong_passwords("203.0.113.5", 6),
        Then::Hold,
    )]);
    let port = free_port();
    let w = Watcher::start_with(&peer, "", &format!("listen = \"127.0.0.1:{port}\""), "");
    w.wait_for("the AMI alert", || !w.alerts().is_empty());
    let call = |ip: &str| {
        fastagi_call(port, &Channel::ordinary(ip))
            .variable("EXTSEC_REASON")
            .unwrap_or_default()
    };
    assert_eq!(call("203.0.113.5"), "repeat_offender");
    assert_eq!(call("203.0.113.6"), "ok", "another address is not affected");
}

/// One try as the capture recorded it (design.md §3b's table), its SIP events coming
/// from `ip`; the capture's own AMI login left out.
fn one_try(capture: &str, ip: &str) -> Vec<u8> {
    sip_events(capture, ip).concat()
}

fn sip_events(capture: &str, ip: &str) -> Vec<Vec<u8>> {
    split_events(&from_address(&capture_events(capture), ip))
        .into_iter()
        .filter(|e| !String::from_utf8_lossy(e).contains("Service: AMI"))
        .collect()
}

/// The table's OPTIONS row (a monitor's keep-alive, svmap, or a REGISTER that svwar
/// never answers): InvalidAccountID for the From user, ChallengeSent to `<unknown>` —
/// the first two events of `ami-unknown.bin`.
fn unanswered(ip: &str, user: &str) -> Vec<u8> {
    let events = sip_events("ami-unknown.bin", ip);
    with_account(&events[..2].concat(), "9999", user)
}

/// Issue 12: one try raises several events, so counting events banned a phone with a
/// mistyped user name on its 2nd try and a monitor on its 3rd ping. Played at 20× speed
/// (a 3 s window, a try a second is a 60 s window and a try every 20 s): phones that get
/// it wrong and a monitor, for ten "minutes", never alerted; a source just over a limit
/// gets one line per window at most.
#[test]
fn phones_and_monitors_are_never_alerted_and_a_hovering_source_once_per_window() {
    let hover = "203.0.113.50";
    let mut steps = Vec::new();
    for tick in 0..60 {
        let mut chunk = one_try("ami-wrongpw.bin", hover);
        if tick % 2 == 0 {
            chunk.extend(one_try("ami-wrongpw.bin", "192.0.2.21"));
            chunk.extend(one_try("ami-unknown.bin", "192.0.2.22"));
            chunk.extend(one_try("ami-acl.bin", "192.0.2.23"));
            chunk.extend(unanswered("192.0.2.24", "nagios"));
        }
        steps.push((Duration::from_millis(500), chunk));
    }
    let peer = AmiPeer::start(vec![Script::paced(steps, Then::Hold)]);
    let w = Watcher::start_with(&peer, "", "fastagi = false", "window_seconds = 3");
    // 60 hovering tries of 2 events, 30 of each phone (2 + 4 + 4 + 2 events).
    w.wait_for("every event", || {
        w.events_read() >= (60 * 2 + 30 * 12) as f64
    });
    let alerts = w.alerts();
    assert!(!alerts.is_empty(), "the hovering source is over the limit");
    assert!(alerts.len() <= 10, "{alerts:#?}");
    for line in &alerts {
        assert_eq!(ip_field(line), Some(hover), "{line}");
        assert!(line.contains(" reason=auth_bruteforce tries="), "{line}");
    }
    let times: Vec<f64> = alerts.iter().map(|l| seconds_of_day(l)).collect();
    for pair in times.windows(2) {
        // A window of 3 s, kept in slices of 0.25 s.
        assert!(pair[1] - pair[0] >= 2.7, "one line per window: {alerts:#?}");
    }
}

/// `2026-12-01 14:03:05.123 …` → seconds since midnight.
fn seconds_of_day(line: &str) -> f64 {
    let time = line.split(' ').nth(1).unwrap();
    let mut parts = time.split(':');
    let mut field = || parts.next().unwrap().parse::<f64>().unwrap();
    field() * 3600.0 + field() * 60.0 + field()
}

/// The scanners and guessers of design.md §3b are still caught as fast: a walk over
/// user names at 50/s at the 6th name, svcrack at 150 guesses/s at the 6th guess (on
/// an existing account and on an unknown one), and 500 unauthenticated OPTIONS in 5 s
/// under one name as a request flood; each once.
#[test]
fn scanners_and_guessers_are_caught_at_the_sixth_try() {
    let (walker, cracker, blind, flooder) = (
        "203.0.113.61",
        "203.0.113.62",
        "203.0.113.63",
        "203.0.113.64",
    );
    let mut steps = Vec::new();
    for name in 1000..1100 {
        steps.push((
            Duration::from_millis(20),
            unanswered(walker, &name.to_string()),
        ));
    }
    let guess = Duration::from_micros(6_667);
    let wrong = sip_events("ami-wrongpw.bin", cracker);
    steps.push((guess, wrong[0].clone()));
    steps.extend((0..20).map(|_| (guess, wrong[1].clone())));
    let unknown = sip_events("ami-unknown.bin", blind);
    steps.push((guess, unanswered(blind, "9999")));
    steps.extend((0..20).map(|_| (guess, [unknown[2].clone(), unknown[3].clone()].concat())));
    steps.extend((0..500).map(|_| (Duration::from_millis(10), unanswered(flooder, "100"))));
    let total_events = 100 * 2 + 21 + 2 + 40 + 500 * 2;
    let peer = AmiPeer::start(vec![Script::paced(steps, Then::Hold)]);
    let w = Watcher::start(&peer, "");
    w.wait_for("every event", || w.events_read() >= total_events as f64);
    let mut alerts: Vec<String> = w
        .alerts()
        .iter()
        .map(|l| {
            let from = l.find(" ip=").unwrap();
            let to = l.find(" window_seconds=").unwrap();
            l[from + 1..to].to_string()
        })
        .collect();
    alerts.sort();
    assert_eq!(
        alerts,
        [
            format!("ip={walker} reason=account_scan names=6"),
            format!("ip={cracker} reason=auth_bruteforce tries=6"),
            format!("ip={blind} reason=auth_bruteforce tries=6"),
            format!("ip={flooder} reason=request_flood requests=121"),
        ]
    );
    let walk = w
        .alerts()
        .into_iter()
        .find(|l| l.contains("account_scan"))
        .unwrap();
    assert!(walk.ends_with(" account='1005'"), "the 6th name: {walk}");
    let mut banned: Vec<String> = fail2ban_matches(&w.log().log)
        .into_iter()
        .map(|(_, ip)| ip)
        .collect();
    banned.sort();
    assert_eq!(banned, [walker, cracker, blind, flooder]);
}

#[test]
fn a_tls_manager_is_verified_and_a_forged_one_refused() {
    // manager.conf tlsenable = yes: TLS first, then the banner and the MD5 login.
    let dir = tempfile::tempdir().unwrap();
    let [ca, cert, key] = common::ast_tls_cert(dir.path(), "pbx");
    let peer = AmiPeer::start_tls(
        vec![Script::accept(
            wrong_passwords("203.0.113.5", 6),
            Then::Hold,
        )],
        &cert,
        &key,
    );
    let ami = format!(
        "tls = true\ntls_ca_file = {:?}\ntls_server_name = \"pbx.example\"\n",
        ca
    );
    let w = Watcher::start_with(&peer, "", "fastagi = false", &ami);
    w.wait_for("the alert over TLS", || !w.alerts().is_empty());
    assert!(w.alerts()[0].contains("ip=203.0.113.5 reason=auth_bruteforce"));
    assert!(peer.received(0).contains("AuthType: MD5\r\n"));

    // A manager whose certificate our CA file does not vouch for: no login, said once.
    let [_, other, other_key] = common::ast_tls_cert(dir.path(), "impostor");
    let impostor = AmiPeer::start_tls(
        vec![Script::accept(
            wrong_passwords("203.0.113.6", 6),
            Then::Hold,
        )],
        &other,
        &other_key,
    );
    let w = Watcher::start_with(&impostor, "", "fastagi = false", &ami);
    w.wait_for("two refused handshakes", || {
        w.metric("extsecurity_ami_reconnects_total") >= 1.0
    });
    let stderr = w.stderr();
    assert_eq!(
        stderr.matches("TLS handshake failed").count(),
        1,
        "{stderr}"
    );
    assert!(
        impostor.received(0).is_empty(),
        "nothing sent before the handshake"
    );
    assert_eq!(w.metric("extsecurity_ami_connected"), 0.0);
    assert!(w.alerts().is_empty());
}

#[test]
fn the_secret_is_sent_in_clear_only_when_asked_and_a_wrong_one_is_refused() {
    let peer = AmiPeer::start(vec![Script::accept(
        wrong_passwords("203.0.113.5", 6),
        Then::Hold,
    )]);
    let w = Watcher::start_with(&peer, "", "fastagi = false", "auth = \"plain\"\n");
    w.wait_for("the alert", || !w.alerts().is_empty());
    let login = peer.received(0);
    assert!(login.contains("Secret: s3cmon-test\r\n"), "{login:?}");
    assert!(!login.contains("Challenge"), "{login:?}");

    // The MD5 key of another secret: manager.c refuses it, and so does the peer.
    let peer = AmiPeer::start(vec![Script::accept(Vec::new(), Then::Hold)]);
    let sandbox = Sandbox::with_config(&format!(
        "[daemon]\nfastagi = false\n[ami]\naddress = \"{}\"\nusername = \"extsecurity\"\nsecret = \"not-the-secret\"\n",
        peer.addr
    ));
    let metrics_less = LoggedServe::start_unready(sandbox);
    assert!(
        wait_until(Duration::from_secs(10), || metrics_less
            .stderr()
            .contains("AMI: login refused: Authentication failed")),
        "{}",
        metrics_less.stderr()
    );
}

#[test]
fn an_unreachable_manager_is_one_warning_not_one_per_retry() {
    // Nothing listens: every try fails at connect, 1 s, 2 s, 4 s apart.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let metrics_port = free_port();
    let sandbox = Sandbox::with_config(&format!(
        "[daemon]\nfastagi = false\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n\
         [ami]\naddress = \"{addr}\"\nusername = \"extsecurity\"\nsecret = \"s3cmon-test\"\n"
    ));
    let serve = LoggedServe::start(sandbox, metrics_port);
    assert!(wait_until(Duration::from_secs(15), || {
        metric(metrics_port, "extsecurity_ami_reconnects_total") >= 3.0
    }));
    let stderr = serve.stderr();
    assert_eq!(stderr.matches(" WARN ").count(), 1, "{stderr}");
    assert!(stderr.contains("AMI: cannot connect"), "{stderr}");
}

/// Issue 19: REGISTERs without credentials for an existing account raise only the
/// challenge (`ChallengeSent(1001)`, the first SIP event of `ami-rightpw.bin`) and are
/// never answered: 150 from one address are a `request_flood`. The same account's
/// registrations that answer (the capture's whole try, ChallengeSent then
/// SuccessfulAuth) count toward nothing, however many (design §3b).
#[test]
fn unanswered_challenges_to_a_known_account_are_a_flood_and_answered_ones_nothing() {
    let events = |ip| -> Vec<Vec<u8>> {
        sip_events("ami-rightpw.bin", ip)
            .into_iter()
            .filter(|e| e.starts_with(b"Event: "))
            .collect()
    };
    let right = events("198.51.100.30");
    assert_eq!(right.len(), 2, "ChallengeSent(1001), SuccessfulAuth(1001)");
    let flood = events("203.0.113.30")[0].repeat(150);
    let peer = AmiPeer::start(vec![Script::accept(
        [right.concat().repeat(150), flood].concat(),
        Then::Hold,
    )]);
    let w = Watcher::start(&peer, "");
    w.wait_for("600 events", || w.events_read() >= 450.0);
    w.wait_for("the alert", || !w.alerts().is_empty());
    let alerts = w.alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        alerts[0].contains("ip=203.0.113.30 reason=request_flood requests=121 "),
        "{}",
        alerts[0]
    );
}

/// Issue 20, the takeover signal: svcrack's wrong guesses on 1001 from one address
/// (the capture's ChallengeResponseFailed(1001), five: below the AMI rule's six), then
/// the right password from that address (the capture's SuccessfulAuth(1001), Service
/// PJSIP). The account is quarantined before its first call, with one WARNING line;
/// its first international call is refused. A phone of another account that logs in
/// from a new address without failed guesses is only noted.
#[test]
fn a_login_right_after_guesses_quarantines_the_account_before_its_first_call() {
    let attacker = "203.0.113.99";
    let mut events = wrong_passwords(attacker, 5);
    events.extend(from_address(&capture_events("ami-rightpw.bin"), attacker));
    events.extend(with_account(
        &from_address(&capture_events("ami-rightpw.bin"), "192.0.2.60"),
        "1001",
        "1002",
    ));
    let port = free_port();
    let peer = AmiPeer::start(vec![Script::accept(events, Then::Hold)]);
    let w = Watcher::start_with(
        &peer,
        "[fraud]\nenabled = true\ncountry_code = \"49\"\nhigh_risk_file = \"\"\nstate_file = \"@DIR@/fraud.state\"\n",
        &format!("listen = '127.0.0.1:{port}'"),
        "",
    );
    w.wait_for("the takeover line", || {
        w.log().log_text().contains("reason=takeover")
    });
    let lines = w.log().log_lines();
    let takeover: Vec<&String> = lines.iter().filter(|l| l.contains("takeover")).collect();
    assert_eq!(takeover.len(), 1, "{lines:?}");
    assert!(
        takeover[0].contains(&format!(
            "WARNING ip={attacker} reason=takeover account='1001' failed_logins=5"
        )),
        "{}",
        takeover[0]
    );
    assert!(
        w.alerts().is_empty(),
        "five guesses are below the AMI rule; nothing banned"
    );
    assert_eq!(w.metric("extsecurity_outbound_takeovers_total"), 1.0);
    let call = Channel::outbound("1001", b"00442079460123", attacker);
    let ex = common::agi_peer::outbound_call(port, &call);
    assert_eq!(
        ex.variable("EXTSEC_REASON").as_deref(),
        Some("quarantined(takeover)")
    );
    w.wait_for("the note on 1002", || {
        w.stderr().contains("logged in from a new address")
    });
    let other = Channel::outbound("1002", b"00442079460123", "192.0.2.60");
    let ex = common::agi_peer::outbound_call(port, &other);
    assert_eq!(ex.variable("EXTSEC_RESULT").as_deref(), Some("OK"));
}

/// The captured `ExtsecCallEnd` user event (`ami-callend.bin`, Asterisk 20.20.1), for
/// the channel `uniqueid` of `account`.
fn call_end_event(uniqueid: &str, account: &str) -> Vec<u8> {
    let events = split_events(&capture_events("ami-callend.bin"));
    let event = events
        .iter()
        .find(|e| e.starts_with(b"Event: UserEvent\r\n"))
        .expect("the capture's UserEvent");
    let text = String::from_utf8(event.clone()).unwrap();
    let real_id = text
        .lines()
        .find_map(|l| l.strip_prefix("Uniqueid: "))
        .unwrap()
        .to_string();
    text.replace(
        &format!("Uniqueid: {real_id}\r\n"),
        &format!("Uniqueid: {uniqueid}\r\n"),
    )
    .replace("Account: 1001\r\n", &format!("Account: {account}\r\n"))
    .into_bytes()
}

/// Issue 26, the cost: with `call_end = "ami"` the daemon logs in for user events too,
/// tells the dialplan to push the AMI hangup handler (`EXTSEC_END=-ami`), and a call's
/// end comes as the captured `UserEvent`: the call no longer counts toward the
/// account's concurrency. An event for a call the guard never judged (another PBX's,
/// or one forged through a caller id's CR LF, design §3b) ends nothing.
#[test]
fn with_call_end_ami_a_calls_end_comes_as_a_user_event() {
    let port = free_port();
    let (a, never) = ("1796618375.901", "1796618375.902");
    // A pong a second keeps the link alive (the watcher gives up on three silent
    // ping intervals) until the ends come, 8 s after the login.
    let keepalive = (
        Duration::from_secs(1),
        b"Response: Success\r\nPing: Pong\r\n\r\n".to_vec(),
    );
    let mut paced = vec![keepalive; 8];
    paced.extend([
        (Duration::ZERO, call_end_event(a, "1001")),
        (Duration::ZERO, call_end_event("1796618375.999", "2001")),
        (Duration::ZERO, call_end_event(never, "2001")),
    ]);
    let peer = AmiPeer::start(vec![Script::paced(paced, Then::Hold)]);
    let w = Watcher::start_with(
        &peer,
        "[fraud]\nenabled = true\ncountry_code = \"49\"\nhigh_risk_file = \"\"\n\
         state_file = \"@DIR@/fraud.state\"\ncall_end = \"ami\"\n",
        &format!("listen = '127.0.0.1:{port}'"),
        "",
    );
    w.wait_for("the login", || {
        peer.received(0).contains("Events: security,user")
    });
    w.wait_for("the link up", || {
        w.metric("extsecurity_ami_connected") == 1.0
    });
    let up = std::time::Instant::now();
    let call = |account: &str, id: &str, live: u32, number: &[u8]| {
        let mut c = Channel::outbound(account, number, "192.0.2.70");
        c.set("UNIQUEID", id.as_bytes().to_vec());
        c.live = live;
        common::agi_peer::outbound_call(port, &c)
    };
    let first = call("1001", a, 1, b"00442079460123");
    // The shipped subroutine's check: the daemon's answer pushes the AMI handler.
    assert_eq!(
        first.variable("CHANNEL(hangup_handler_push)").as_deref(),
        Some("extsec-outbound-end-ami,s,1")
    );
    assert_eq!(first.variable("TIMEOUT(absolute)").as_deref(), Some("3600"));
    call("1001", "1796618375.911", 2, b"00442079460124");
    call("2001", "1796618375.921", 1, b"00442079460125");
    call("2001", "1796618375.922", 2, b"00442079460126");
    // The peer writes the ends 8 s after the login: the calls must be judged first.
    assert!(
        up.elapsed() < Duration::from_secs(7),
        "the calls took {:?}",
        up.elapsed()
    );
    std::thread::sleep(Duration::from_secs(10).saturating_sub(up.elapsed()));
    // 1001's first call ended: two up, Asterisk's count says three (the new one
    // included, one it has not yet let go), the guard two.
    let third = call("1001", "1796618375.912", 3, b"00442079460127");
    assert_eq!(
        third.variable("EXTSEC_REASON").as_deref(),
        Some("warning(concurrent)")
    );
    // 2001's ends named calls the guard never judged: all three count.
    let third = call("2001", "1796618375.923", 3, b"00442079460128");
    assert_eq!(
        third.variable("EXTSEC_REASON").as_deref(),
        Some("toll_fraud(concurrent)")
    );
    assert_eq!(w.metric("extsecurity_ami_tampered_total"), 0.0);
}
