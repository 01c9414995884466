//! The shipped `[extsec-outbound]` (dist/asterisk/extensions-outbound.conf) run through
//! every verdict case the way pbx.c runs it (`common/asterisk.rs`), its `AGI()` a real
//! FastAGI exchange with the real daemon: the peer answers as Asterisk does (design
//! §3a: one command per wake-up, `GET FULL VARIABLE` substituted raw) from the
//! channel's own values and group (design §3e: `GROUP(extsec-outbound)`,
//! `GROUP_COUNT(@extsec-outbound)`, `ARG1`), and the MSet's variables land on the
//! channel. Both drivers, and one the subroutine does not read.

use crate::common;

use common::agi_peer::{Block, reply_to, serve};
use common::asterisk::{Apps, Channel, Driver, Outcome, run_call_with};
use common::{LoggedServe, Sandbox, free_port, repo};

fn conf() -> String {
    std::fs::read_to_string(repo().join("dist/asterisk/extensions-outbound.conf")).unwrap()
}

fn daemon(fraud: bool) -> (LoggedServe, u16) {
    let port = free_port();
    let list = repo().join("dist/extsecurity-high-risk.conf");
    let fraud = match fraud {
        true => format!(
            "[fraud]\nenabled = true\ncountry_code = \"49\"\nhigh_risk_file = {list:?}\n\
             state_file = \"@DIR@/fraud.state\"\n"
        ),
        false => String::new(),
    };
    let sandbox = Sandbox::with_config(&format!(
        "tarpit_seconds = 0\n[daemon]\nlisten = '127.0.0.1:{port}'\n{fraud}"
    ));
    (LoggedServe::start(sandbox, port), port)
}

/// A phone of `account` on `driver` dialling `number`, its channel with an id of its
/// own.
fn phone(driver: Driver, account: &str, number: &str) -> Channel {
    let mut c = Channel {
        peer_name: account.as_bytes().to_vec(),
        exten: number.as_bytes().to_vec(),
        ..Channel::ordinary("203.0.113.66").over(driver)
    };
    c.set("UNIQUEID", common::asterisk::next_uniqueid().into_bytes());
    c
}

/// The administrator's `[globals]`: `EXTSEC_AGI` naming the daemon on `port`.
fn to_daemon(mut channel: Channel, port: u16) -> Channel {
    channel.set("EXTSEC_AGI", format!("agi://127.0.0.1:{port}").into_bytes());
    channel
}

/// What Asterisk does for `AGI(agi://127.0.0.1/SCRIPT)`: connects to the daemon on
/// `port` (none: nobody listens, AGISTATUS=FAILURE, nothing set), writes the block,
/// answers each command, and sets what the MSet names. Counts the AGIs run.
struct FastAgi {
    port: Option<u16>,
    runs: Vec<String>,
}

impl FastAgi {
    fn run(&mut self, data: &str, channel: &mut Channel) {
        // `AGI(url,arg…)`: app_agi splits at commas (the number has none: Gosub split
        // its own arguments first). The runs name the URL up to its key.
        let mut args = data.split(',');
        let url = args.next().unwrap_or_default();
        let args: Vec<String> = args.map(str::to_string).collect();
        self.runs
            .push(url.split('&').next().unwrap_or_default().to_string());
        // Not an agi:// URL (EXTSEC_AGI unset): res_agi looks for a local script of that
        // name, finds none, and sets nothing.
        let Some((address, script)) = url.strip_prefix("agi://").and_then(|u| u.split_once('/'))
        else {
            return;
        };
        // Only the daemon the test started listens; anything else is the daemon down.
        let Some(port) = self.port.filter(|p| address == format!("127.0.0.1:{p}")) else {
            return;
        };
        let block = Block {
            tech: match channel.driver {
                Some(Driver::Sip) => "SIP",
                Some(Driver::Other("Local")) => "Local",
                _ => "PJSIP",
            },
            request: url.into(),
            network_script: Some(script.into()),
            args,
            ..Block::pjsip()
        };
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let reader = stream.try_clone().unwrap();
        let seen: &Channel = channel;
        let ex = serve(stream, reader, &block.bytes(seen), |c| {
            Some(reply_to(c, seen))
        });
        assert!(ex.written_early.is_empty(), "one command at a time");
        // The shipped subroutine passes the values: the verdict is one command, the
        // token-framed GET FULL VARIABLE whose SET()s write it.
        if script.starts_with("outbound?") {
            assert!(script.contains("&account="), "{script}");
            assert_eq!(ex.commands.len(), 1, "{:?}", ex.commands);
            assert!(ex.commands[0].starts_with(b"GET FULL VARIABLE \"ext"));
        }
        for name in [
            "EXTSEC_RESULT",
            "EXTSEC_REASON",
            "EXTSEC_MAX_SECONDS",
            "EXTSEC_CLASS",
            "TIMEOUT(absolute)",
            "EXTSEC_END",
            "CHANNEL(hangup_handler_push)",
        ] {
            if let Some(value) = ex.variable(name) {
                channel.set(name, value.into_bytes());
            }
        }
    }
}

/// Runs `Gosub(extsec-outbound,s,1(${EXTEN}))` as the phones' context does, with the
/// daemon on `port` (`EXTSEC_AGI`; none: the daemon is down); the outcome, and the
/// channel as the subroutine left it.
fn dial(port: Option<u16>, channel: Channel) -> (Outcome, Channel, Vec<String>) {
    dial_with(&conf(), port, to_daemon(channel, port.unwrap_or(DOWN)))
}

/// Where no daemon listens in these tests: a daemon that is down.
const DOWN: u16 = 4573;

/// The generated numbers for Germany, as `#tryinclude` reads them
/// (`extsecurity fraud dialplan`).
fn numbers_file() -> String {
    let sandbox = Sandbox::with_config(
        "[fraud]\nenabled = true\ncountry_code = \"49\"\nstate_file = \"@DIR@/fraud.state\"\nhigh_risk_file = \"\"\n",
    );
    let out = sandbox.run(&["fraud", "dialplan"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn dial_with(
    conf: &str,
    port: Option<u16>,
    mut channel: Channel,
) -> (Outcome, Channel, Vec<String>) {
    let conf = format!(
        "{conf}\n[default]\nexten => _X.,1,Gosub(extsec-outbound,s,1(${{EXTEN}}))\nexten => _+X.,1,Gosub(extsec-outbound,s,1(${{EXTEN}}))\nexten => _*X.,1,Gosub(extsec-outbound,s,1(${{EXTEN}}))\n"
    );
    let exten = String::from_utf8(channel.exten.clone()).unwrap();
    let (outcome, runs) = run(&conf, "default", &exten, &mut channel, port);
    (outcome, channel, runs)
}

/// Runs `exten` of `[context]` for `channel`, its AGIs reaching the daemon on `port`;
/// the outcome and the AGI URLs run.
fn run(
    conf: &str,
    context: &str,
    exten: &str,
    channel: &mut Channel,
    port: Option<u16>,
) -> (Outcome, Vec<String>) {
    let mut agi = FastAgi { port, runs: vec![] };
    let mut system = |_: &[u8], _: &Channel| -> &'static str { panic!("no System() here") };
    let mut run_agi = |url: &str, c: &mut Channel| agi.run(url, c);
    let mut apps = Apps {
        system: &mut system,
        agi: &mut run_agi,
    };
    let outcome = run_call_with(conf, context, exten, channel, &mut apps);
    (outcome, agi.runs)
}

fn var(c: &Channel, name: &str) -> Option<String> {
    c.variables
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

/// The hangup handler the subroutine pushed, run as Asterisk runs it at hangup, with
/// `ANSWEREDTIME` as Dial() left it.
fn hang_up(port: u16, mut channel: Channel, answered: &str) {
    let handler = var(&channel, "CHANNEL(hangup_handler_push)").expect("a handler pushed");
    assert_eq!(handler, "extsec-outbound-end,s,1");
    channel.set("ANSWEREDTIME", answered.as_bytes().to_vec());
    let (outcome, runs) = run(
        &conf(),
        "extsec-outbound-end",
        "s",
        &mut channel,
        Some(port),
    );
    assert_eq!(outcome, Outcome::Continued);
    assert_eq!(runs, [format!("agi://127.0.0.1:{port}/outbound-end?key=")]);
}

fn status(serve: &LoggedServe, account: &str) -> serde_json::Value {
    let out = serve
        .sandbox
        .command()
        .args(["fraud", "status", "--json", account])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0].clone()
}

#[test]
fn ok_calls_go_on_capped_and_hand_their_minutes_back() {
    let (serve, port) = daemon(true);
    for (driver, account) in [(Driver::Pjsip, "1001"), (Driver::Sip, "sip-1001")] {
        let (outcome, channel, runs) = dial(Some(port), phone(driver, account, "00442079460123"));
        assert_eq!(outcome, Outcome::Continued, "{driver:?}");
        assert_eq!(runs, [format!("agi://127.0.0.1:{port}/outbound?key=")]);
        assert_eq!(
            var(&channel, "GROUP(extsec-outbound)").as_deref(),
            Some(account)
        );
        assert_eq!(
            var(&channel, "EXTSEC_CLASS").as_deref(),
            Some("international")
        );
        assert_eq!(var(&channel, "TIMEOUT(absolute)").as_deref(), Some("3600"));
        hang_up(port, channel, "125");
        let s = status(&serve, account);
        assert_eq!(s["classes"][0]["class"], "international", "{s}");
        assert_eq!(s["classes"][0]["minutes_day"], 2, "{s}");
        assert_eq!(s["addresses"][0], "203.0.113.66");

        // A national call: no cap, and the handler still counts.
        let (outcome, channel, _) = dial(Some(port), phone(driver, account, "030901820"));
        assert_eq!(outcome, Outcome::Continued);
        assert_eq!(
            var(&channel, "TIMEOUT(absolute)"),
            None,
            "no cap, none reset"
        );
        assert!(var(&channel, "CHANNEL(hangup_handler_push)").is_some());
    }
}

#[test]
fn alerts_get_congestion_and_run_nothing_after() {
    let (_serve, port) = daemon(true);
    let (outcome, channel, _) = dial(Some(port), phone(Driver::Pjsip, "1001", "09001123456"));
    assert_eq!(outcome, Outcome::Congested);
    assert_eq!(
        var(&channel, "EXTSEC_REASON").as_deref(),
        Some("premium_destination")
    );
    assert_eq!(var(&channel, "CHANNEL(hangup_handler_push)"), None);
    // Toll fraud, then the quarantine: international refused, emergency goes on.
    let outcomes: Vec<Outcome> = (0..6)
        .map(|i| {
            dial(
                Some(port),
                phone(Driver::Sip, "2001", &format!("0044207946012{i}")),
            )
            .0
        })
        .collect();
    assert_eq!(outcomes[4], Outcome::Continued);
    assert_eq!(outcomes[5], Outcome::Congested);
    let (outcome, _, _) = dial(Some(port), phone(Driver::Sip, "2001", "112"));
    assert_eq!(outcome, Outcome::Continued, "emergency, even in quarantine");
}

/// A check that could not run — `[fraud]` off (ERROR), the daemon down (nothing set),
/// a driver the subroutine does not read — follows EXTSEC_ON_ERROR (`hangup` refuses
/// everything but emergency numbers), then the outage rules (issue 26): international
/// and premium numbers, and anything behind a star or hash code, refused; national
/// ones go on; `EXTSEC_OUTAGE_*` changes each. Never capped, never counted.
#[test]
fn a_check_that_could_not_run_follows_extsec_on_error_and_the_outage_rules() {
    let (_off, off_port) = daemon(false);
    let with_numbers = format!("{}\n{}", conf(), numbers_file());
    for (port, driver, agis) in [
        (Some(off_port), Driver::Pjsip, 1),
        (None, Driver::Pjsip, 1),
        (Some(off_port), Driver::Other("IAX2"), 0),
    ] {
        for (number, on_error, outage, expected) in [
            ("030901820", "", None, Outcome::Continued),
            ("030901820", "continue", None, Outcome::Continued),
            ("030901820", "hangup", None, Outcome::Congested),
            (
                "030901820",
                "",
                Some(("EXTSEC_OUTAGE_NATIONAL", "refuse")),
                Outcome::Congested,
            ),
            ("00442079460123", "", None, Outcome::Congested),
            ("+442079460123", "continue", None, Outcome::Congested),
            (
                "00442079460123",
                "",
                Some(("EXTSEC_OUTAGE_INTERNATIONAL", "allow")),
                Outcome::Continued,
            ),
            (
                "00442079460123",
                "hangup",
                Some(("EXTSEC_OUTAGE_INTERNATIONAL", "allow")),
                Outcome::Congested,
            ),
            ("09001123456", "", None, Outcome::Congested),
            (
                "09001123456",
                "",
                Some(("EXTSEC_OUTAGE_PREMIUM", "allow")),
                Outcome::Continued,
            ),
            ("*6700449098790000", "", None, Outcome::Congested),
        ] {
            let mut channel = phone(driver, "1001", number);
            channel.on_error = on_error.into();
            if let Some((name, value)) = outage {
                channel.set(name, value.as_bytes().to_vec());
            }
            let channel = to_daemon(channel, port.unwrap_or(DOWN));
            let (outcome, channel, runs) = dial_with(&with_numbers, port, channel);
            assert_eq!(
                outcome, expected,
                "{number} {port:?} {driver:?} {on_error:?} {outage:?}"
            );
            assert_eq!(runs.len(), agis);
            assert_eq!(var(&channel, "CHANNEL(hangup_handler_push)"), None);
            assert_eq!(var(&channel, "TIMEOUT(absolute)"), None);
        }
    }
}

/// Issue 26, hole 8: emergency numbers reach the trunk whatever the daemon's state and
/// EXTSEC_ON_ERROR: the subroutine knows them itself (the generated file; 112 and 911
/// even without it) and asks nothing.
#[test]
fn emergency_numbers_pass_with_the_daemon_stopped_and_on_error_hangup() {
    let with_numbers = format!("{}\n{}", conf(), numbers_file());
    for (conf, number, expected) in [
        (&with_numbers, "112", Outcome::Continued),
        (&with_numbers, "110", Outcome::Continued),
        (&conf(), "112", Outcome::Continued),
        (&conf(), "911", Outcome::Continued),
        // Without the generated file Germany's 110 is not known alone: the daemon
        // would pass it; down, EXTSEC_ON_ERROR=hangup refuses it.
        (&conf(), "110", Outcome::Congested),
    ] {
        for driver in [Driver::Pjsip, Driver::Sip, Driver::Other("Local")] {
            let mut channel = phone(driver, "1001", number);
            channel.on_error = "hangup".into();
            let (outcome, channel, runs) = dial_with(conf, None, to_daemon(channel, DOWN));
            assert_eq!(outcome, expected, "{number} {driver:?}");
            if expected == Outcome::Continued {
                assert!(runs.is_empty(), "nothing asked: {runs:?}");
                assert_eq!(var(&channel, "GROUP(extsec-outbound)"), None);
            }
        }
    }
}

/// Issue 26, hole 5: call forwarding dials the trunk from a Local channel, which
/// inherits `__EXTSEC_ACCOUNT` and `__EXTSEC_ADDRESS` from the phone's channel: the
/// leg is judged against the phone's account. Without them FreePBX's `AMPUSER` names
/// it; with neither it is the account `-`, which may dial nationally only.
#[test]
fn a_forwarded_leg_is_judged_against_the_phone_that_started_it() {
    let (serve, port) = daemon(true);
    let (outcome, phone_channel, _) = dial(Some(port), phone(Driver::Pjsip, "1001", "030901820"));
    assert_eq!(outcome, Outcome::Continued);
    assert_eq!(
        var(&phone_channel, "EXTSEC_ACCOUNT").as_deref(),
        Some("1001")
    );
    let local = |number: &str, inherited: &[(&str, String)]| {
        let mut c = phone(Driver::Other("Local"), "", number);
        for (name, value) in inherited {
            c.set(name, value.clone().into_bytes());
        }
        dial(Some(port), c)
    };
    let inherited: Vec<(&str, String)> = ["EXTSEC_ACCOUNT", "EXTSEC_ADDRESS"]
        .into_iter()
        .map(|n| (n, var(&phone_channel, n).unwrap()))
        .collect();
    let (outcome, leg, runs) = local("00449098790000", &inherited);
    assert_eq!(outcome, Outcome::Congested);
    assert_eq!(runs.len(), 1);
    assert_eq!(var(&leg, "GROUP(extsec-outbound)").as_deref(), Some("1001"));
    assert_eq!(var(&leg, "EXTSEC_CLASS").as_deref(), Some("premium"));
    let s = status(&serve, "1001");
    assert!(
        s["classes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["class"] == "premium"),
        "{s}"
    );
    // FreePBX: AMPUSER names the account.
    let (_, leg, _) = local("00442079460123", &[("AMPUSER", "2002".into())]);
    assert_eq!(var(&leg, "GROUP(extsec-outbound)").as_deref(), Some("2002"));
    assert_eq!(var(&leg, "EXTSEC_RESULT").as_deref(), Some("OK"));
    // Nobody: an Originate or a call file.
    let (outcome, leg, _) = local("00442079460123", &[]);
    assert_eq!(outcome, Outcome::Congested);
    assert_eq!(var(&leg, "GROUP(extsec-outbound)").as_deref(), Some("-"));
    assert_eq!(
        var(&leg, "EXTSEC_REASON").as_deref(),
        Some("international_destination")
    );
    assert_eq!(local("030901820", &[]).0, Outcome::Continued);
}

/// The FreePBX snippet the shipped file documents, run as FreePBX 17 runs its hook (a
/// Gosub) and as FreePBX 16 does (a Macro: `MACRO_DEPTH` set, no Return()): it checks
/// the trunk's number and hands back in both.
#[test]
fn the_freepbx_hook_works_as_a_gosub_and_as_a_macro() {
    let (_serve, port) = daemon(true);
    let text = conf();
    let snippet: String = text
        .lines()
        .skip_while(|l| !l.contains("in extensions_custom.conf:"))
        .skip(2)
        .take_while(|l| l.trim() != ";")
        .filter_map(|l| l.strip_prefix(";   "))
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        snippet.starts_with("[macro-dialout-trunk-predial-hook]\n"),
        "{snippet}"
    );
    assert!(
        !snippet.contains("MacroExit"),
        "app_macro is gone in Asterisk 21"
    );
    let conf = format!(
        "{text}\n{snippet}\n[default]\nexten => _X.,1,Gosub(macro-dialout-trunk-predial-hook,s,1)\n"
    );
    for (macro_depth, number, expected) in [
        ("", "00442079460123", Outcome::Continued),
        ("1", "00442079460123", Outcome::Continued),
        ("", "09001123456", Outcome::Congested),
        ("1", "09001123456", Outcome::Congested),
    ] {
        let mut channel = to_daemon(phone(Driver::Pjsip, "3001", number), port);
        channel.set("OUTNUM", number.as_bytes().to_vec());
        channel.set("MACRO_DEPTH", macro_depth.as_bytes().to_vec());
        let (outcome, runs) = run(&conf, "default", number, &mut channel, Some(port));
        assert_eq!(outcome, expected, "{number} MACRO_DEPTH={macro_depth:?}");
        assert_eq!(runs.len(), 1);
    }
}

/// Without `EXTSEC_AGI` in `[globals]` the AGI cannot start: every check is one that
/// could not run (check-config says so), and the outage rules hold.
#[test]
fn without_extsec_agi_every_check_follows_the_outage_rules() {
    let (_serve, port) = daemon(true);
    let unset = |number: &str| dial_with(&conf(), Some(port), phone(Driver::Pjsip, "1001", number));
    let (outcome, channel, runs) = unset("00442079460123");
    assert_eq!(outcome, Outcome::Congested);
    assert_eq!(runs, ["/outbound?key="]);
    assert_eq!(var(&channel, "EXTSEC_RESULT").as_deref(), Some(""));
    assert_eq!(unset("030901820").0, Outcome::Continued);
}
