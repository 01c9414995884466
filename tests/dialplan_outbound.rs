//! The shipped `[extsec-outbound]` (dist/asterisk/extensions-outbound.conf) run through
//! every verdict case the way pbx.c runs it (`common/asterisk.rs`), its `AGI()` a real
//! FastAGI exchange with the real daemon: the peer answers as Asterisk does (design
//! §3a: one command per wake-up, `GET FULL VARIABLE` substituted raw) from the
//! channel's own values and group (design §3e: `GROUP(extsec-outbound)`,
//! `GROUP_COUNT(@extsec-outbound)`, `ARG1`), and the MSet's variables land on the
//! channel. Both drivers, and one the subroutine does not read.

mod common;

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

/// A phone of `account` on `driver` dialling `number`.
fn phone(driver: Driver, account: &str, number: &str) -> Channel {
    Channel {
        peer_name: account.as_bytes().to_vec(),
        exten: number.as_bytes().to_vec(),
        ..Channel::ordinary("203.0.113.66").over(driver)
    }
}

/// What Asterisk does for `AGI(agi://127.0.0.1/SCRIPT)`: connects to the daemon on
/// `port` (none: nobody listens, AGISTATUS=FAILURE, nothing set), writes the block,
/// answers each command, and sets what the MSet names. Counts the AGIs run.
struct FastAgi {
    port: Option<u16>,
    runs: Vec<String>,
}

impl FastAgi {
    fn run(&mut self, url: &str, channel: &mut Channel) {
        self.runs.push(url.to_string());
        let Some(port) = self.port else { return };
        let script = url
            .strip_prefix("agi://127.0.0.1/")
            .expect("the shipped URL");
        let block = Block {
            tech: match channel.driver {
                Some(Driver::Sip) => "SIP",
                _ => "PJSIP",
            },
            request: url.into(),
            network_script: Some(script.into()),
            args: vec![],
            ..Block::pjsip()
        };
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let reader = stream.try_clone().unwrap();
        let seen: &Channel = channel;
        let ex = serve(stream, reader, &block.bytes(seen), |c| {
            Some(reply_to(c, seen))
        });
        assert!(ex.written_early.is_empty(), "one command at a time");
        for name in [
            "EXTSEC_RESULT",
            "EXTSEC_REASON",
            "EXTSEC_MAX_SECONDS",
            "EXTSEC_CLASS",
        ] {
            if let Some(value) = ex.variable(name) {
                channel.set(name, value.into_bytes());
            }
        }
    }
}

/// Runs `Gosub(extsec-outbound,s,1(${EXTEN}))` as the phones' context does; the
/// outcome, and the channel as the subroutine left it.
fn dial(port: Option<u16>, mut channel: Channel) -> (Outcome, Channel, Vec<String>) {
    let conf = format!(
        "{}\n[default]\nexten => _X.,1,Gosub(extsec-outbound,s,1(${{EXTEN}}))\n",
        conf()
    );
    let mut agi = FastAgi { port, runs: vec![] };
    let mut system = |_: &[u8], _: &Channel| -> &'static str { panic!("no System() here") };
    let mut run_agi = |url: &str, c: &mut Channel| agi.run(url, c);
    let mut apps = Apps {
        system: &mut system,
        agi: &mut run_agi,
    };
    let exten = String::from_utf8(channel.exten.clone()).unwrap();
    let outcome = run_call_with(&conf, "default", &exten, &mut channel, &mut apps);
    (outcome, channel, agi.runs)
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
    let mut agi = FastAgi {
        port: Some(port),
        runs: vec![],
    };
    let mut system = |_: &[u8], _: &Channel| -> &'static str { panic!("no System() here") };
    let mut run_agi = |url: &str, c: &mut Channel| agi.run(url, c);
    let mut apps = Apps {
        system: &mut system,
        agi: &mut run_agi,
    };
    let outcome = run_call_with(&conf(), "extsec-outbound-end", "s", &mut channel, &mut apps);
    assert_eq!(outcome, Outcome::Continued);
    assert_eq!(agi.runs, ["agi://127.0.0.1/outbound-end"]);
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
        assert_eq!(runs, ["agi://127.0.0.1/outbound"]);
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
/// a driver the subroutine does not read — follows EXTSEC_ON_ERROR: the call goes on
/// unchecked by default, is refused with `hangup`; never capped, never counted.
#[test]
fn a_check_that_could_not_run_follows_extsec_on_error() {
    let (_off, off_port) = daemon(false);
    for (port, driver, agis) in [
        (Some(off_port), Driver::Pjsip, 1),
        (None, Driver::Pjsip, 1),
        (Some(off_port), Driver::Other("IAX2"), 0),
    ] {
        for (on_error, expected) in [
            ("", Outcome::Continued),
            ("continue", Outcome::Continued),
            ("hangup", Outcome::Congested),
        ] {
            let mut channel = phone(driver, "1001", "00442079460123");
            channel.on_error = on_error.into();
            let (outcome, channel, runs) = dial(port, channel);
            assert_eq!(outcome, expected, "{port:?} {driver:?} {on_error:?}");
            assert_eq!(runs.len(), agis);
            assert_eq!(var(&channel, "CHANNEL(hangup_handler_push)"), None);
            assert_eq!(var(&channel, "TIMEOUT(absolute)"), None);
        }
    }
}
