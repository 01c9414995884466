//! Issue 20: the outbound check of authenticated accounts, end to end through the real
//! daemon. The peer speaks as Asterisk does (`common/agi_peer.rs`: one command per
//! wake-up, `GET FULL VARIABLE` substituted raw as pbx_variables.c does; design §3a).
//! The block and query are those design §3e recorded from Asterisk 20.20.1 for
//! `Gosub(extsec-outbound,s,1(NUMBER))` with `AGI(agi://127.0.0.1/outbound)`:
//! `${ARG1}` is the number, `GROUP(extsec-outbound)` the account,
//! `GROUP_COUNT(@extsec-outbound)` answered from the test's own count.

use crate::common;

use std::time::Duration;

use common::agi_peer::{Block, Exchange, outbound_call, reply_to, serve};
use common::asterisk::Channel;
use common::{LoggedServe, Sandbox, fail2ban_matches, free_port, level, repo, wait_for};

const ATTACKER: &str = "203.0.113.66";

/// A daemon with `[fraud]` on for Germany, the shipped high-risk list, `extra` after.
fn daemon(extra: &str) -> (LoggedServe, u16) {
    let port = free_port();
    let list = repo().join("dist/extsecurity-high-risk.conf");
    let sandbox = Sandbox::with_config(&format!(
        "tarpit_seconds = 0\ntrusted_networks = [\"198.51.100.0/24\"]\n\
         [daemon]\nlisten = '127.0.0.1:{port}'\n\
         [fraud]\nenabled = true\ncountry_code = \"49\"\nhigh_risk_file = {list:?}\n\
         state_file = \"@DIR@/fraud.state\"\n{extra}"
    ));
    (LoggedServe::start(sandbox, port), port)
}

fn dial(port: u16, channel: &Channel) -> Exchange {
    outbound_call(port, channel)
}

/// `(EXTSEC_RESULT, EXTSEC_REASON, EXTSEC_CLASS, EXTSEC_MAX_SECONDS)`.
fn verdict(ex: &Exchange) -> (String, String, String, String) {
    let v = |n| {
        ex.variable(n)
            .unwrap_or_else(|| panic!("{n} not set: {:?}", ex.commands))
    };
    (
        v("EXTSEC_RESULT"),
        v("EXTSEC_REASON"),
        v("EXTSEC_CLASS"),
        v("EXTSEC_MAX_SECONDS"),
    )
}

fn call(port: u16, account: &str, number: &str, ip: &str) -> (String, String, String, String) {
    let ex = dial(port, &Channel::outbound(account, number.as_bytes(), ip));
    assert!(ex.written_early.is_empty(), "one command at a time");
    verdict(&ex)
}

/// The numbers from Germany, each from an account of its own so that no limit
/// interferes, through the daemon: the verdict, its class and its cap.
#[test]
fn every_class_is_judged_as_the_dialplan_needs() {
    let (serve, port) = daemon("");
    for (i, (number, result, reason, class, max)) in [
        (
            "09001123456",
            "ALERT",
            "premium_destination",
            "premium",
            "0",
        ),
        (
            "00448712345678",
            "ALERT",
            "premium_destination",
            "premium",
            "0",
        ),
        ("00442079460123", "OK", "ok", "international", "3600"),
        ("030901820", "OK", "ok", "national", "0"),
        ("015112345678", "OK", "ok", "mobile", "0"),
        ("112", "OK", "emergency", "emergency", "0"),
        // Before a trunk Dial a short number is a number: a local one here.
        ("100", "OK", "ok", "national", "0"),
        (
            "0088212345678",
            "ALERT",
            "high_risk_destination",
            "high_risk",
            "0",
        ),
        (
            "0053712345678",
            "ALERT",
            "high_risk_destination",
            "high_risk",
            "0",
        ),
        (
            "0044207946)0123",
            "ALERT",
            "malformed_number",
            "malformed",
            "0",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let got = call(port, &format!("10{i:02}"), number, ATTACKER);
        assert_eq!(
            got,
            (result.into(), reason.into(), class.into(), max.into()),
            "{number}"
        );
    }
    let lines = serve.sandbox.log_lines();
    assert_eq!(lines.len(), 10, "{lines:?}");
    // Refusals by policy warn; nothing here is toll fraud, so nothing is banned.
    assert_eq!(lines.iter().filter(|l| level(l) == "WARNING").count(), 5);
    assert!(fail2ban_matches(&serve.sandbox.log).is_empty());
}

/// A stolen account dialling abroad as fast as it can: the 6th call within a minute is
/// toll fraud, refused, one ERROR line bans the address it called from, and the
/// account is quarantined: only national, internal and emergency calls pass.
#[test]
fn a_stolen_account_is_stopped_within_its_first_calls() {
    let (serve, port) = daemon("");
    let results: Vec<String> = (0..6)
        .map(|i| call(port, "1001", &format!("0044207946012{i}"), ATTACKER).1)
        .collect();
    assert_eq!(
        results,
        [
            "ok",
            "ok",
            "ok",
            "warning(calls_per_minute)",
            "warning(calls_per_minute)",
            "toll_fraud(calls_per_minute)"
        ]
    );
    for (number, result, reason) in [
        ("00442079460199", "ALERT", "quarantined(calls_per_minute)"),
        ("09001123456", "ALERT", "quarantined(calls_per_minute)"),
        ("112", "OK", "emergency"),
        ("110", "OK", "emergency"),
        ("030901820", "OK", "ok"),
        // Whatever is dialled in front of a number (design §3g).
        (
            "*6700449098790000",
            "ALERT",
            "quarantined(calls_per_minute)",
        ),
        ("#31#005378612345", "ALERT", "quarantined(calls_per_minute)"),
    ] {
        let got = call(port, "1001", number, ATTACKER);
        assert_eq!(
            (got.0.as_str(), got.1.as_str()),
            (result, reason),
            "{number}"
        );
    }
    let bans = fail2ban_matches(&serve.sandbox.log);
    assert_eq!(bans.len(), 1, "one ERROR line: {bans:?}");
    assert_eq!(bans[0].1, ATTACKER);
    assert!(
        bans[0]
            .0
            .contains("reason=toll_fraud(calls_per_minute) account='1001' class=international")
    );
}

/// An office phone (a trusted network) that dials too much is stopped the same way,
/// but never banned: its line is a WARNING.
#[test]
fn a_trusted_office_is_stopped_never_banned() {
    let (serve, port) = daemon("");
    let office = "198.51.100.20";
    let calls: Vec<_> = (0..6)
        .map(|i| call(port, "2001", &format!("0044207946013{i}"), office))
        .collect();
    let last = calls.last().unwrap();
    assert_eq!(
        (last.0.as_str(), last.1.as_str()),
        ("ALERT", "toll_fraud(calls_per_minute)")
    );
    assert!(fail2ban_matches(&serve.sandbox.log).is_empty());
    let lines = serve.sandbox.log_lines();
    let fraud = lines.iter().find(|l| l.contains("toll_fraud")).unwrap();
    assert_eq!(level(fraud), "WARNING", "{fraud}");
}

/// Three live calls of one account abroad: the third is refused.
#[test]
fn a_third_live_call_abroad_is_refused() {
    let (_serve, port) = daemon("");
    let up = |n: u32, number: &[u8]| {
        let mut channel = Channel::outbound("3001", number, ATTACKER);
        channel.live = n;
        verdict(&dial(port, &channel)).1
    };
    assert_eq!(up(1, b"00442079460123"), "ok");
    assert_eq!(up(2, b"00442079460124"), "warning(concurrent)");
    assert_eq!(up(3, b"00442079460125"), "toll_fraud(concurrent)");
}

/// Issue 26, hole 1: an office user with two national calls up dials one
/// international number. National calls never count toward international's limit:
/// it passes, and nothing is banned (the issue saw `toll_fraud(concurrent) live=3`).
#[test]
fn national_calls_up_never_count_toward_international() {
    let (serve, port) = daemon("");
    let office = "192.0.2.10";
    let up = |n: u32, number: &[u8]| {
        let mut channel = Channel::outbound("4001", number, office);
        channel.live = n;
        verdict(&dial(port, &channel))
    };
    assert_eq!(up(1, b"030901820").1, "ok");
    assert_eq!(up(2, b"030901821").1, "ok");
    let abroad = up(3, b"00442079460123");
    assert_eq!((abroad.0.as_str(), abroad.1.as_str()), ("OK", "ok"));
    assert!(fail2ban_matches(&serve.sandbox.log).is_empty());
    let lines = serve.sandbox.log_lines();
    let last = lines.last().unwrap();
    assert!(
        last.contains("class=international") && last.contains(" live=1"),
        "{last}"
    );
}

/// Issue 26, hole 2: an account's own address (used for longer than
/// `known_address_seconds`, 1 s here) that dials too much is quarantined, not banned:
/// the line is a WARNING (`address=usual`); a new address doing the same is banned.
#[test]
fn the_accounts_usual_address_is_quarantined_never_banned() {
    let (serve, port) = daemon("known_address_seconds = 1\n");
    let office = "192.0.2.20";
    assert_eq!(call(port, "5001", "030901820", office).1, "ok");
    std::thread::sleep(Duration::from_millis(2100));
    let burst = |account: &str, ip: &str| -> Vec<String> {
        (0..6)
            .map(|i| call(port, account, &format!("0044207946014{i}"), ip).1)
            .collect()
    };
    assert_eq!(burst("5001", office)[5], "toll_fraud(calls_per_minute)");
    assert_eq!(
        call(port, "5001", "00442079460150", office).1,
        "quarantined(calls_per_minute)"
    );
    assert!(fail2ban_matches(&serve.sandbox.log).is_empty());
    let text = serve.sandbox.log_text();
    let line = text.lines().find(|l| l.contains("toll_fraud")).unwrap();
    assert_eq!(level(line), "WARNING", "{line}");
    assert!(line.contains("address=usual"), "{line}");
    // Another account, from an address it first used in this burst: banned.
    assert_eq!(call(port, "5002", "030901820", ATTACKER).1, "ok");
    assert_eq!(burst("5002", ATTACKER)[5], "toll_fraud(calls_per_minute)");
    let bans = fail2ban_matches(&serve.sandbox.log);
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert_eq!(bans[0].1, ATTACKER);
}

/// Issue 26, hole 6: a quarantine is on disk (written and synced) before its verdict is
/// answered: SIGKILL right after it, then a restart, keeps it.
#[test]
fn a_quarantine_survives_sigkill_right_after_it() {
    let (mut serve, port) = daemon("");
    let results: Vec<String> = (0..6)
        .map(|i| call(port, "6001", &format!("0044207946016{i}"), ATTACKER).1)
        .collect();
    assert_eq!(results[5], "toll_fraud(calls_per_minute)");
    // At once: the 5-second save has not come round.
    serve.child.kill().unwrap();
    serve.child.wait().unwrap();
    serve.restart(port);
    assert_eq!(
        call(port, "6001", "00442079460170", ATTACKER).1,
        "quarantined(calls_per_minute)"
    );
}

/// Issue 26, hole 5: call forwarding, follow-me, a queue or an Originate dial the trunk
/// from a Local channel (design §3g). The leg is judged against the account that
/// started it (`__EXTSEC_ACCOUNT` and `__EXTSEC_ADDRESS`, inherited from the phone's
/// channel, or FreePBX's `AMPUSER`: `[extsec-outbound]` puts it in the group); with no
/// account at all it is the account `-`, which may not dial abroad.
#[test]
fn a_local_channel_leg_is_judged_against_the_account_that_started_it() {
    let (serve, port) = daemon("");
    let local_leg = |account: &str, number: &[u8], address: &str| {
        let mut channel = Channel::outbound(account, number, "");
        channel.set("EXTSEC_ADDRESS", address.as_bytes().to_vec());
        let block = Block {
            tech: "Local",
            channel_name: "Local/00449098790000@from-internal-00000001;2".into(),
            ..Block::outbound()
        };
        verdict(&fastagi_call_with_block(port, &block, &channel))
    };
    // The phone's account is quarantined; its forwarding leg is refused with it.
    for i in 0..6 {
        call(port, "7101", &format!("0044207946018{i}"), ATTACKER);
    }
    let fwd = local_leg("7101", b"00442079460190", ATTACKER);
    assert_eq!(
        (fwd.0.as_str(), fwd.1.as_str()),
        ("ALERT", "quarantined(calls_per_minute)")
    );
    // A premium number forwarded to is refused as any call of the account.
    let premium = local_leg("7102", b"00449098790000", "192.0.2.30:5060");
    assert_eq!(
        (premium.0.as_str(), premium.2.as_str()),
        ("ALERT", "premium")
    );
    // An Originate: no account, no address.
    let orphan = local_leg("-", b"00442079460123", "");
    assert_eq!(
        (orphan.0.as_str(), orphan.1.as_str()),
        ("ALERT", "international_destination")
    );
    assert_eq!(local_leg("-", b"030901820", "").1, "ok");
    let text = serve.sandbox.log_text();
    assert!(
        text.lines()
            .any(|l| l.contains("reason=premium_destination account='7102'")
                && l.contains("ip=192.0.2.30")),
        "{text}"
    );
    let orphan_line = text
        .lines()
        .find(|l| l.contains("international_destination account='-'"))
        .unwrap();
    assert!(!orphan_line.contains("ip="), "{orphan_line}");
}

/// Issue 26, hole 7: with `daemon.secret` set, a request without the key is answered
/// ERROR with why (the dialplan's EXTSEC_ON_ERROR decides), one CRITICAL line says so,
/// and it is counted; nothing is judged.
#[test]
fn a_request_without_the_key_is_answered_error_and_said() {
    let port2 = free_port();
    let metrics = free_port();
    let sandbox = Sandbox::with_config(&format!(
        "tarpit_seconds = 0\n[daemon]\nlisten = '127.0.0.1:{port2}'\nsecret = \"0123456789abcdef\"\n\
         metrics_listen = '127.0.0.1:{metrics}'\n\
         [fraud]\nenabled = true\ncountry_code = \"49\"\nstate_file = \"@DIR@/fraud.state\"\n\
         high_risk_file = \"\"\n"
    ));
    let serve = LoggedServe::start(sandbox, port2);
    for _ in 0..3 {
        let ex = dial(
            port2,
            &Channel::outbound("8001", b"00449098790000", ATTACKER),
        );
        assert_eq!(ex.variable("EXTSEC_RESULT").as_deref(), Some("ERROR"));
        assert_eq!(ex.variable("EXTSEC_REASON").as_deref(), Some("wrong_key"));
    }
    let said = serve.stderr();
    assert_eq!(
        said.matches("without the right ?key=").count(),
        1,
        "once a minute: {said}"
    );
    assert!(
        said.contains("CRITICAL") || said.contains("ERROR"),
        "{said}"
    );
    assert_eq!(common::metric(metrics, "extsecurity_refused_total"), 3.0);
    assert!(serve.sandbox.log_lines().is_empty(), "nothing judged");
    // With the key, judged.
    let block = Block {
        request: "agi://127.0.0.1/outbound?key=0123456789abcdef".into(),
        network_script: Some("outbound?key=0123456789abcdef".into()),
        ..Block::outbound()
    };
    let ex = fastagi_call_with_block(
        port2,
        &block,
        &Channel::outbound("8001", b"00449098790000", ATTACKER),
    );
    assert_eq!(ex.variable("EXTSEC_RESULT").as_deref(), Some("ALERT"));
}

/// A number a scanner probed as a guest (an alerted guest call) is refused to every
/// account afterwards: it is what the attackers sell.
#[test]
fn a_number_a_scanner_probed_is_refused_to_every_account() {
    let (_serve, port) = daemon("");
    let scan = Channel {
        exten: b"00972501234567".to_vec(),
        user_agent: b"friendly-scanner".to_vec(),
        ..Channel::ordinary(ATTACKER)
    };
    let guest = common::agi_peer::fastagi_call(port, &scan);
    assert_eq!(guest.variable("EXTSEC_RESULT").as_deref(), Some("ALERT"));
    let got = call(port, "4001", "00972501234567", "192.0.2.44");
    assert_eq!(
        (got.0.as_str(), got.1.as_str()),
        ("ALERT", "learned_destination")
    );
    let other = call(port, "4002", "00972501234568", "192.0.2.44");
    assert_eq!(other.1, "ok", "only the number itself");
}

/// Every byte of the number is the phone's, and a stolen account is an attacker's:
/// LF, CR, `)`, `:`, 64 KiB. Each is refused or judged, each written on one line of
/// its own with the address the transport gave, and the daemon goes on.
#[test]
fn hostile_numbers_are_refused_or_judged_never_split_a_line() {
    let (serve, port) = daemon("");
    let long = "9".repeat(64 * 1024);
    for (i, number) in [
        "0044\n2079460123",
        "0044\r2079460123",
        "00442079460123) 200 result=1 (6.6.6.6",
        "0044:2079460123",
        long.as_str(),
        "",
    ]
    .iter()
    .enumerate()
    {
        let got = call(port, &format!("50{i:02}"), number, ATTACKER);
        assert_eq!(got.0, "ALERT", "{number:?}: {got:?}");
    }
    let lines = serve.sandbox.log_lines();
    assert_eq!(lines.len(), 6, "{lines:?}");
    for line in &lines {
        assert!(line.contains(&format!("ip={ATTACKER} ")), "{line}");
        assert!(line.len() < 2048, "cut: {}", line.len());
    }
    // The line feed reshaped the AGI stream: tampering, quarantined and banned.
    assert!(
        lines[0].contains("reason=toll_fraud(request_tampering)"),
        "{}",
        lines[0]
    );
    assert_eq!(fail2ban_matches(&serve.sandbox.log).len(), 1);
    assert_eq!(
        call(port, "6000", "030901820", ATTACKER).0,
        "OK",
        "still serving"
    );
}

/// The shipped subroutine's check is one command (src/agi/session.rs): the values in
/// the URL, the number as `agi_arg_1`, the verdict written by `SET()`s in a
/// token-framed `GET FULL VARIABLE`. A caller's name (design §3a: Asterisk writes it
/// raw) that ends the block early with a number of its own is judged first, but the
/// block's real rest reaches the daemon before Asterisk answers that verdict: it is
/// taken back by a second command before the connection closes, and the call judged
/// as tampering, against the address in the URL.
#[test]
fn a_block_a_caller_ended_early_has_its_verdict_taken_back() {
    let (serve, port) = daemon("");
    let clean = dial(port, &Channel::outbound("5101", b"030901820", ATTACKER));
    assert_eq!(clean.commands.len(), 1, "{:?}", clean.commands);
    assert_eq!(verdict(&clean).0, "OK");
    let mut forged = Channel::outbound("5102", b"00449098790000", ATTACKER);
    forged.callerid_name = b"x\nagi_callingpres: 0\nagi_callingani2: 0\nagi_callington: 0\n\
        agi_callingtns: 0\nagi_dnid: 030901820\nagi_rdnis: unknown\nagi_context: c\n\
        agi_extension: s\nagi_priority: 2\nagi_enhanced: 0.0\nagi_accountcode: \n\
        agi_threadid: 1\nagi_arg_1: 030901820\n"
        .to_vec();
    let ex = dial(port, &forged);
    assert!(ex.written_early.is_empty(), "one command at a time");
    assert_eq!(ex.commands.len(), 2, "{:?}", ex.commands);
    let first = String::from_utf8_lossy(&ex.commands[0]);
    assert!(first.contains("${SET(EXTSEC_RESULT=OK)}"), "{first}");
    assert!(ex.commands[1].starts_with(b"EXEC MSet EXTSEC_RESULT=ALERT,"));
    let got = verdict(&ex);
    assert_eq!(
        (got.0.as_str(), got.1.as_str()),
        ("ALERT", "toll_fraud(request_tampering)")
    );
    let lines = serve.sandbox.log_lines();
    let tampering = lines
        .iter()
        .find(|l| l.contains("request_tampering"))
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert!(
        tampering.contains(&format!("ip={ATTACKER} ")),
        "{tampering}"
    );
    assert!(tampering.contains("account='5102'"), "{tampering}");
}

/// An answer to the one-command verdict that is not Asterisk's framed one (a refusal,
/// which Asterisk 20 never gives `GET FULL VARIABLE`, so a caller's) takes the verdict
/// back: `EXTSEC_RESULT=ERROR` by a second command, the outage rules decide, and the
/// call no longer counts as up (the account's next two calls abroad are its first).
#[test]
fn a_verdict_asterisk_did_not_confirm_is_taken_back() {
    let (logged, port) = daemon("");
    let channel = Channel::outbound("5201", b"00442079460123", ATTACKER);
    let block = Block::outbound_given(&channel, "");
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let reader = stream.try_clone().unwrap();
    let ex = serve(stream, reader, &block.bytes(&channel), |c| {
        Some(match c.starts_with(b"GET FULL VARIABLE") {
            true => b"510 Invalid or unknown command\n".to_vec(),
            false => reply_to(c, &channel),
        })
    });
    assert_eq!(ex.commands.len(), 2, "{:?}", ex.commands);
    assert!(ex.commands[1].starts_with(b"EXEC MSet EXTSEC_RESULT=ERROR,"));
    assert_eq!(ex.variable("EXTSEC_RESULT").as_deref(), Some("ERROR"));
    assert!(logged.stderr().contains("not confirmed by Asterisk"));
    // Two calls abroad up is a warning: this one is the account's first.
    let live = |n: u32, number: &str| {
        let mut c = Channel::outbound("5201", number.as_bytes(), ATTACKER);
        c.live = n;
        verdict(&dial(port, &c)).1
    };
    assert_eq!(live(2, "00442079460124"), "ok");
}

/// With `[fraud]` off the outbound check cannot judge: ERROR for the dialplan (which
/// follows EXTSEC_ON_ERROR), a CRITICAL line saying how to switch it on.
#[test]
fn the_outbound_check_off_is_said() {
    let port = free_port();
    let sandbox = Sandbox::with_config(&format!(
        "tarpit_seconds = 0\n[daemon]\nlisten = '127.0.0.1:{port}'\n"
    ));
    let serve = LoggedServe::start(sandbox, port);
    let got = call(port, "1001", "00442079460123", ATTACKER);
    assert_eq!((got.0.as_str(), got.1.as_str()), ("ERROR", "bad_request"));
    let lines = serve.sandbox.log_lines();
    assert!(
        lines
            .iter()
            .any(|l| level(l) == "CRITICAL" && l.contains("the outbound check is off")),
        "{lines:?}"
    );
}

/// Process AGI refuses the outbound check at once: it needs the daemon's memory.
#[test]
fn process_agi_refuses_the_outbound_check() {
    let s = Sandbox::new();
    let mut child = s
        .command()
        .args(["agi", "outbound"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (stdin, stdout) = common::agi_peer::pipes(&mut child);
    let channel = Channel::outbound("1001", b"00442079460123", ATTACKER);
    let ex = serve(stdin, stdout, &Block::pjsip().bytes(&channel), |c| {
        Some(reply_to(c, &channel))
    });
    let out = child.wait_with_output().unwrap();
    assert_eq!(ex.variable("EXTSEC_RESULT").as_deref(), Some("ERROR"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the outbound check needs the daemon"));
    assert!(
        s.log_text()
            .contains("CRITICAL reason=bad_request error='the outbound check needs the daemon")
    );
}

/// The hangup handler hands back the answered seconds: international minutes past
/// the day's critical level (240) quarantine the account and ban its last address.
#[test]
fn answered_minutes_come_back_from_the_hangup_handler() {
    let (serve, port) = daemon("");
    assert_eq!(call(port, "7001", "00442079460123", ATTACKER).1, "ok");
    let end = |seconds: &str| {
        let mut channel = Channel::outbound("7001", b"", ATTACKER);
        channel.set("EXTSEC_CLASS", b"international".to_vec());
        channel.set("ANSWEREDTIME", seconds.as_bytes().to_vec());
        let block = Block {
            request: "agi://127.0.0.1/outbound-end".into(),
            network_script: Some("outbound-end".into()),
            args: vec![],
            ..Block::pjsip()
        };
        let ex = fastagi_call_with_block(port, &block, &channel);
        assert_eq!(
            ex.commands.len(),
            1,
            "a dead channel is only asked: {:?}",
            ex.commands
        );
    };
    end("3600");
    end("3600");
    end("7200");
    wait_for("the ERROR line", Duration::from_secs(5), || {
        serve
            .sandbox
            .log_text()
            .contains("reason=toll_fraud(minutes_per_day)")
    });
    let bans = fail2ban_matches(&serve.sandbox.log);
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert_eq!(bans[0].1, ATTACKER);
    assert!(
        serve
            .sandbox
            .log_text()
            .contains("WARNING ip=203.0.113.66 reason=warning(minutes_per_day)")
    );
    assert_eq!(
        call(port, "7001", "00442079460123", ATTACKER).1,
        "quarantined(minutes_per_day)"
    );
}

fn fastagi_call_with_block(port: u16, block: &Block, channel: &Channel) -> Exchange {
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let reader = stream.try_clone().unwrap();
    serve(stream, reader, &block.bytes(channel), |c| {
        Some(reply_to(c, channel))
    })
}

/// The quarantine is seen and lifted with `extsecurity fraud`, and survives a restart:
/// `status` asks the running daemon, or reads the state file while it is down;
/// `release` lifts it and resets the counters.
#[test]
fn a_quarantine_is_seen_survives_a_restart_and_is_lifted() {
    let (mut serve, port) = daemon("");
    for i in 0..6 {
        call(port, "1001", &format!("0044207946012{i}"), ATTACKER);
    }
    let fraud = |serve: &LoggedServe, args: &[&str]| {
        let out = serve
            .sandbox
            .command()
            .arg("fraud")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, text) = fraud(&serve, &["status", "1001"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.starts_with("1001  QUARANTINED for "), "{text}");
    assert!(
        text.contains("(calls_per_minute, international, from 203.0.113.66)"),
        "{text}"
    );
    assert!(
        text.contains("international: 6 calls this minute"),
        "{text}"
    );
    assert!(
        text.contains("last dialled: +442079460125 (international)"),
        "{text}"
    );
    assert!(text.contains("(from the running daemon)"), "{text}");

    assert!(serve.terminate().success());
    let (code, text) = fraud(&serve, &["status"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("1001  QUARANTINED"), "{text}");
    assert!(text.contains("(the daemon is not running)"), "{text}");

    serve.restart(port);
    assert_eq!(
        call(port, "1001", "00442079460123", ATTACKER).1,
        "quarantined(calls_per_minute)"
    );
    let (code, text) = fraud(&serve, &["release", "1001"]);
    assert_eq!(code, Some(0), "{text}");
    // Issue 27: the release says what becomes of the address it was quarantined from.
    assert_eq!(
        text,
        "1001: quarantine lifted (it was for calls_per_minute, from 203.0.113.66); its counters reset\n\
         203.0.113.66: not banned in the kernel; if an ERROR line named it, fail2ban's jail bans it for its own time: extsecurity unban 203.0.113.66 (or fraud release --unban) lifts that\n"
    );
    assert_eq!(call(port, "1001", "00442079460123", ATTACKER).1, "ok");
    // Quarantined again; --unban lifts the address's bans as `unban` does.
    for i in 0..6 {
        call(port, "1001", &format!("0044207946013{i}"), ATTACKER);
    }
    let (code, text) = fraud(&serve, &["release", "1001", "--unban"]);
    assert!(text.starts_with("1001: quarantine lifted"), "{text}");
    assert!(
        text.contains("for the fleet: cscli decisions delete --ip 203.0.113.66"),
        "{text}"
    );
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = fraud(&serve, &["release", "nobody"]);
    assert_eq!(code, Some(9), "{text}");
    assert!(
        text.contains("nobody: unknown to the outbound guard"),
        "{text}"
    );
    let (code, json) = fraud(&serve, &["status", "--json"]);
    assert_eq!(code, Some(0));
    let accounts: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(accounts[0]["account"], "1001");
    assert!(accounts[0]["quarantine"].is_null());
}

/// The high-risk list is the administrator's: check-config reads it (and says what the
/// emergency numbers are), a bad line names its file and line, and serve refuses to
/// start with it as it refuses an alert log it cannot open.
#[test]
fn check_config_and_serve_read_the_high_risk_list() {
    let good = Sandbox::with_config(&format!(
        "[fraud]\nenabled = true\ncountry_code = \"49\"\nhigh_risk_file = {:?}\n\
         state_file = \"@DIR@/fraud.state\"\n",
        repo().join("dist/extsecurity-high-risk.conf")
    ));
    let out = good.run(&["check-config"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("high-risk prefixes; emergency numbers, never refused: 110, 112"),
        "{text}"
    );
    assert!(text.contains("class.international.calls_per_minute = { warning = 4, critical = 6 }"));

    let bad = Sandbox::with_config(
        "[fraud]\nenabled = true\ncountry_code = \"49\"\nhigh_risk_file = \"@DIR@/risk.conf\"\n\
         state_file = \"@DIR@/fraud.state\"\n",
    );
    std::fs::write(bad.dir.path().join("risk.conf"), "882\n53x\n").unwrap();
    let out = bad.run(&["check-config"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{said}");
    assert!(
        said.contains("risk.conf:2: \"53x\" is not an E.164 prefix"),
        "{said}"
    );
    assert!(
        said.contains("the outbound check would answer ERROR"),
        "{said}"
    );
}

/// Issue 26, hole 9: a missing or bad high-risk list stops the outbound check alone
/// (answered ERROR, one CRITICAL line naming the file); `serve` and the guest check run.
#[test]
fn a_missing_high_risk_list_stops_only_the_outbound_check() {
    for (name, content) in [("missing", None), ("bad", Some("882\n53x\n"))] {
        let port = free_port();
        let sandbox = Sandbox::with_config(&format!(
            "tarpit_seconds = 0\n[daemon]\nlisten = '127.0.0.1:{port}'\n\
             [fraud]\nenabled = true\ncountry_code = \"49\"\nhigh_risk_file = \"@DIR@/risk.conf\"\n\
             state_file = \"@DIR@/fraud.state\"\n"
        ));
        if let Some(content) = content {
            std::fs::write(sandbox.dir.path().join("risk.conf"), content).unwrap();
        }
        let serve = LoggedServe::start(sandbox, port);
        // The port accepts (the kernel's backlog) a moment before the list is read.
        wait_for("the CRITICAL line", Duration::from_secs(5), || {
            serve.stderr().contains("the guest check runs")
        });
        let said = serve.stderr();
        assert!(said.contains("risk.conf"), "{name}: {said}");
        assert!(said.contains("the guest check runs"), "{name}: {said}");
        let scan = Channel {
            user_agent: b"friendly-scanner".to_vec(),
            ..Channel::ordinary(ATTACKER)
        };
        let guest = common::agi_peer::fastagi_call(port, &scan);
        assert_eq!(
            guest.variable("EXTSEC_RESULT").as_deref(),
            Some("ALERT"),
            "{name}"
        );
        let out = dial(
            port,
            &Channel::outbound("9001", b"00442079460123", ATTACKER),
        );
        assert_eq!(
            out.variable("EXTSEC_RESULT").as_deref(),
            Some("ERROR"),
            "{name}"
        );
        assert!(serve.child.id() > 0);
    }
}

/// A reload reads the list again: a bad one is said and the list in force kept (the
/// rest of the reload applies), a good one applies to the next call.
#[test]
fn a_reload_reads_the_high_risk_list_again() {
    let port = free_port();
    let sandbox = Sandbox::with_config(&format!(
        "tarpit_seconds = 0\n[daemon]\nlisten = '127.0.0.1:{port}'\n\
         [fraud]\nenabled = true\ncountry_code = \"49\"\nhigh_risk_file = \"@DIR@/risk.conf\"\n\
         state_file = \"@DIR@/fraud.state\"\n"
    ));
    let list = sandbox.dir.path().join("risk.conf");
    std::fs::write(&list, "53\n").unwrap();
    let serve = LoggedServe::start(sandbox, port);
    let hup = || {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(serve.child.id() as i32, libc::SIGHUP) };
    };
    assert_eq!(
        call(port, "1", "0053712345678", ATTACKER).1,
        "high_risk_destination"
    );
    std::fs::write(&list, "5x\n").unwrap();
    hup();
    wait_for("the list kept", Duration::from_secs(5), || {
        serve.stderr().contains("stays in force")
    });
    assert!(
        serve.stderr().contains("risk.conf:1: \"5x\""),
        "{}",
        serve.stderr()
    );
    assert_eq!(
        call(port, "2", "0053712345678", ATTACKER).1,
        "high_risk_destination"
    );
    std::fs::write(&list, "882\n").unwrap();
    hup();
    wait_for("the reload", Duration::from_secs(5), || {
        serve.stderr().matches("configuration reloaded").count() >= 2
    });
    assert_eq!(call(port, "3", "0053712345678", ATTACKER).1, "ok");
    assert_eq!(
        call(port, "4", "0088212345678", ATTACKER).1,
        "high_risk_destination"
    );
}

/// Issue 26, hole 7: with `daemon.secret` set, `check-config --dialplan` names every
/// `agi://` URL without the key, and the shipped subroutine's `${EXTSEC_AGI_KEY}` when
/// no `[globals]` sets it; set, nothing is said.
#[test]
fn check_config_names_agi_urls_without_the_key() {
    let sandbox = Sandbox::with_config(
        "[daemon]\nsecret = \"0123456789abcdef\"\n\
         [fraud]\nenabled = true\ncountry_code = \"49\"\nhigh_risk_file = \"\"\n\
         state_file = \"@DIR@/fraud.state\"\n",
    );
    let shipped = repo().join("dist/asterisk/extensions-outbound.conf");
    let mine = sandbox.dir.path().join("extensions.conf");
    std::fs::write(
        &mine,
        "[globals]\nEXTSEC_ON_ERROR=hangup\n\n[from-phones]\nexten => _X.,1,AGI(agi://127.0.0.1/check)\n",
    )
    .unwrap();
    let check = |files: &[&std::path::Path]| {
        let mut args = vec!["check-config".to_string(), "--quiet".into()];
        for f in files {
            args.push("--dialplan".into());
            args.push(f.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        String::from_utf8_lossy(&sandbox.run(&args).stderr).into_owned()
    };
    let said = check(&[&mine, &shipped]);
    assert!(
        said.contains(&format!(
            "{}:5: AGI(agi://127.0.0.1/check) carries no ?key=",
            mine.display()
        )),
        "{said}"
    );
    assert!(
        said.contains("${EXTSEC_AGI_KEY}, which no [globals] sets"),
        "{said}"
    );
    assert!(
        said.contains("${EXTSEC_AGI}, which no [globals] sets"),
        "{said}"
    );
    std::fs::write(
        &mine,
        "[globals]\nEXTSEC_AGI_KEY=0123456789abcdef\nEXTSEC_AGI=agi://127.0.0.1:4573\n\n[from-phones]\nexten => _X.,1,AGI(agi://127.0.0.1/check?key=0123456789abcdef)\n",
    )
    .unwrap();
    let said = check(&[&mine, &shipped]);
    assert!(!said.contains("?key="), "{said}");
    assert!(!said.contains("[globals]"), "{said}");
}

/// Issue 30: `[fraud]` reads the audit. The weak fixture's account 1003 (its secret falls
/// at svcrack's 32nd guess) is quarantined at its 3rd international call within a minute
/// — the stricter `[fraud.weak]` limits — while an account the audit does not name
/// dials on; the daemon says which accounts are weak, and why, once.
#[test]
fn an_account_the_audit_finds_weak_has_stricter_limits() {
    let dir = repo().join("tests/fixtures/audit/weak/asterisk");
    let (serve, port) = daemon(&format!("audit_dir = {:?}\n", dir.to_str().unwrap()));
    let burst = |account: &str| -> Vec<String> {
        (0..3)
            .map(|i| call(port, account, &format!("0044207946016{i}"), ATTACKER).1)
            .collect()
    };
    assert_eq!(
        burst("1003"),
        [
            "ok",
            "warning(calls_per_minute)",
            "toll_fraud(calls_per_minute)"
        ]
    );
    assert_eq!(burst("2002"), ["ok", "ok", "ok"]);
    let said = serve.stderr();
    let line = said
        .lines()
        .find(|l| l.contains("get the [fraud.weak] limits"))
        .unwrap_or_else(|| panic!("{said}"));
    assert!(
        line.contains("1003 (guess 32 of svcrack's default run)"),
        "{line}"
    );
    assert!(line.contains("1006 (no auth)"), "{line}");
    assert!(
        !line.contains("Correct-Horse"),
        "no secret in the log: {line}"
    );
}
