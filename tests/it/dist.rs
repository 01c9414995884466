//! The shipped AGI and FastAGI dialplans and the systemd unit, exercised as written:
//! the program and arguments of each `AGI()` line, the daemon's default address against
//! the `agi://` URL, and the unit's commands against the real binary.

use crate::common;

use std::process::Stdio;

use common::agi_peer::{Block, pipes, reply_to, serve};
use common::asterisk::Channel;
use common::{Sandbox, ServeProcess, bin, level, repo};
use extsecurity::config::{Config, DEFAULT_LISTEN};

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap()
}

/// The `AGI(...)` argument of each `exten => NAME,1,AGI(...)` line.
fn agi_lines(conf: &str) -> Vec<(String, String)> {
    conf.lines()
        .filter_map(|l| l.strip_prefix("exten => "))
        .filter_map(|l| {
            let (exten, rest) = l.split_once(",1,AGI(")?;
            Some((exten.to_string(), rest.strip_suffix(')')?.to_string()))
        })
        .collect()
}

#[test]
fn the_agi_dialplan_runs_the_binary_in_agi_mode_and_acts_on_alert() {
    let conf = read("dist/asterisk/extensions-agi.conf");
    let lines = agi_lines(&conf);
    assert_eq!(
        lines.iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>(),
        ["s", "_X.", "_+X."]
    );
    // What the dialplan does with the result: tests/it/dialplan_verdict.rs.
    assert_eq!(
        conf.matches(" same => n,Gosub(extsec-verdict,s,1)").count(),
        3
    );
    let s = Sandbox::new();
    for (_, agi) in lines {
        // AGI(program,arg1,...): Asterisk runs program with the arguments as argv.
        let mut words = agi.split(',');
        assert_eq!(words.next(), Some("/usr/bin/extsecurity"));
        let args: Vec<&str> = words.collect();
        let scan = Channel {
            peerip: "203.0.113.5".into(),
            remote_addr: "203.0.113.5:5060".into(),
            callerid_num: b"5551234".to_vec(),
            exten: b"100".to_vec(),
            ..Channel::default()
        };
        let mut child = std::process::Command::new(bin())
            .args(&args)
            .env("EXTSECURITY_CONFIG", &s.config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (stdin, stdout) = pipes(&mut child);
        let ex = serve(stdin, stdout, &Block::pjsip().bytes(&scan), |c| {
            Some(reply_to(c, &scan))
        });
        assert!(child.wait().unwrap().success());
        assert_eq!(ex.variable("EXTSEC_RESULT").as_deref(), Some("ALERT"));
    }
    assert_eq!(s.log_lines().len(), 3);
    assert!(s.log_lines().iter().all(|l| level(l) == "ERROR"));
}

#[test]
fn the_fastagi_dialplan_points_at_the_daemons_default_address() {
    let conf = read("dist/asterisk/extensions-fastagi.conf");
    let lines = agi_lines(&conf);
    assert_eq!(lines.len(), 3);
    for (_, url) in lines {
        // Asterisk's FastAGI port defaults to 4573, as does the daemon.
        assert_eq!(url, "agi://127.0.0.1/check");
    }
    assert_eq!(DEFAULT_LISTEN, "127.0.0.1:4573");
    assert_eq!(Config::default().daemon.listen.to_string(), DEFAULT_LISTEN);
}

#[test]
fn the_systemd_unit_runs_commands_the_binary_accepts() {
    let unit = read("dist/systemd/extsecurity.service");
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} in the unit"))
            .to_string()
    };
    assert_eq!(value("User"), "extsecurity", "runs unprivileged");
    assert_eq!(value("Restart"), "on-failure");
    assert_eq!(value("ExecReload"), "/bin/kill -HUP $MAINPID");
    let s = Sandbox::new();
    let pre = value("ExecStartPre");
    let pre_args: Vec<&str> = pre.split(' ').skip(1).collect();
    assert_eq!(pre_args, ["check-config", "--quiet"]);
    assert!(
        s.command()
            .args(&pre_args)
            .output()
            .unwrap()
            .status
            .success()
    );
    let start = value("ExecStart");
    assert_eq!(start, "/usr/bin/extsecurity serve");
    // The same command, on a free port, starts and stops cleanly on SIGTERM.
    let mut daemon = ServeProcess::start(&s);
    let pid = daemon.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .arg(pid)
            .status()
            .unwrap()
            .success()
    );
    assert!(daemon.child.wait().unwrap().success());
}

/// `key = value` lines of one `[section]` of an Asterisk .conf file.
fn conf_section(conf: &str, section: &str) -> Vec<(String, String)> {
    let header = format!("[{section}]");
    conf.lines()
        .skip_while(|l| l.trim() != header)
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .map(|l| l.split(';').next().unwrap().trim())
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn the_manager_user_reads_security_events_from_loopback_and_writes_nothing() {
    let user = conf_section(&read("dist/asterisk/manager.conf"), "extsecurity");
    let get = |key: &str| -> Vec<&str> {
        user.iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(get("read"), ["security"]);
    assert_eq!(get("write"), [""]);
    assert_eq!(get("deny"), ["0.0.0.0/0.0.0.0"]);
    assert_eq!(get("permit"), ["127.0.0.1/255.255.255.255"]);
    assert_eq!(get("secret").len(), 1);
}

#[test]
fn the_shipped_ami_crowdsec_and_nftables_tables_uncommented_are_valid_and_restate_the_defaults() {
    // The commented `#[ami]` block of dist/extsecurity.toml, uncommented (prose lines
    // start with `##` and stay comments), with its secret file in place.
    let sandbox = Sandbox::new();
    let secret = sandbox.dir.path().join("extsecurity-ami.secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let password = sandbox.dir.path().join("extsecurity-crowdsec.secret");
    std::fs::write(&password, "machine-password\n").unwrap();
    let shipped = read("dist/extsecurity.toml");
    let text: String = shipped
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if !rest.starts_with(['#', ' ']) && !rest.is_empty() => rest,
            _ => l,
        })
        .map(|l| {
            l.replace(
                "/etc/asterisk/extsecurity-ami.secret",
                secret.to_str().unwrap(),
            )
            .replace(
                "/etc/asterisk/extsecurity-crowdsec.secret",
                password.to_str().unwrap(),
            )
        })
        .map(|l| l + "\n")
        .collect();
    assert!(
        text.contains("\n[ami]\n"),
        "the block is there to uncomment"
    );
    let config = Config::from_toml(&text, std::path::Path::new("shipped.toml")).unwrap();
    let ami = config.ami.expect("[ami] uncommented");
    assert_eq!(ami.address.to_string(), "127.0.0.1:5038");
    assert_eq!(ami.username, "extsecurity");
    assert_eq!(ami.secret.read().unwrap(), "s3cret");
    assert_eq!(ami.limits, extsecurity::ami::Limits::default());
    assert_eq!(ami.ping_interval, std::time::Duration::from_secs(20));
    let crowdsec = config.crowdsec.expect("[crowdsec] uncommented");
    assert_eq!(crowdsec.lapi_url, "http://127.0.0.1:8080");
    assert_eq!(crowdsec.password.read().unwrap(), "machine-password");
    assert_eq!(
        (
            crowdsec.ban_duration.as_str(),
            crowdsec.batch_size,
            crowdsec.state_file.to_str().unwrap()
        ),
        ("4h", 100, "/var/lib/extsecurity/crowdsec.position")
    );
    assert!(crowdsec.bouncer_key.is_none(), "push only, as shipped");
    assert_eq!(crowdsec.pull.as_secs(), 10);
    let nft = config.nftables.expect("[nftables] uncommented");
    assert_eq!(
        (
            nft.ports,
            nft.ban.as_secs(),
            nft.table.as_str(),
            nft.max_elements
        ),
        (vec![5060, 5061], 86_400, "extsecurity", 65_536)
    );
    let increment = nft.increment.expect("bans escalate by default");
    assert_eq!(
        (
            increment.factor,
            increment.max.as_secs(),
            increment.history.as_secs()
        ),
        (2.0, 604_800, 30 * 86_400)
    );
    assert_eq!(
        nft.state_file.to_str(),
        Some("/var/lib/extsecurity/bans.state")
    );
    let edge = config.edge.expect("[edge] uncommented");
    assert_eq!(
        (edge.rate_limit, edge.rate_burst, edge.dry_run),
        (50, 100, false)
    );
    assert_eq!(
        edge.countries.map(|c| (c.rule, c.file)),
        Some((
            extsecurity::config::CountryRule::Allow(vec!["FR".into(), "BE".into(), "CH".into()]),
            "/var/lib/extsecurity/country.mmdb".into()
        ))
    );
    assert_eq!(
        (edge.feed_refresh.as_secs(), edge.feed_dir.to_str()),
        (3600, Some("/var/lib/extsecurity/feeds"))
    );
    let notify = config.notify.expect("[notify] uncommented");
    let smtp = notify.smtp.expect("the mail settings");
    assert_eq!(
        (smtp.server.as_str(), smtp.port, smtp.security, smtp.to),
        (
            "mail.example.org",
            587,
            extsecurity::config::Security::Starttls,
            vec!["admin@example.org".to_string()]
        )
    );
    assert_eq!((notify.digest.as_secs(), notify.queue_size), (3600, 1000));
    assert!(notify.webhook_url.is_none(), "empty: no webhook");
    // And the user name matches the manager.conf section shipped beside it.
    assert!(read("dist/asterisk/manager.conf").contains(&format!("\n[{}]\n", ami.username)));
}

/// Issue 13: granting CAP_NET_ADMIN must make the unit tighter, not looser.
/// `systemd-analyze security --offline=yes` rates it at most 2.0 (Debian's fail2ban and
/// crowdsec units rate 9.6), with AF_INET, AF_INET6 and AF_NETLINK allowed and no
/// address allow list, so a remote Asterisk, AMI or LAPI still works.
#[test]
fn the_systemd_unit_is_rated_at_most_2_0_by_systemd_analyze() {
    let unit = repo().join("dist/systemd/extsecurity.service");
    let out = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze (scripts/test.sh installs systemd)");
    let text = String::from_utf8_lossy(&out.stdout);
    let level: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for extsecurity.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no rating in:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(level <= 2.0, "rated {level}:\n{text}");
    let unit = read("dist/systemd/extsecurity.service");
    for needed in [
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
        "CapabilityBoundingSet=CAP_NET_ADMIN\n",
        "AmbientCapabilities=CAP_NET_ADMIN\n",
    ] {
        assert!(unit.contains(needed), "{needed}");
    }
    assert!(!unit.contains("PrivateNetwork=yes") && !unit.contains("IPAddressDeny="));
}

/// The shipped config's `[fraud]` block, uncommented as the README says to, is a valid
/// outbound check for Germany with the shipped limits; the high-risk list it names is
/// the one the package installs (tests/it/outbound.rs judges with it).
#[test]
fn the_shipped_fraud_block_uncommented_is_valid() {
    let shipped = read("dist/extsecurity.toml");
    let mut inside = false;
    let text: String = shipped
        .lines()
        .map(|l| {
            inside |= l == "#[fraud]";
            let on = inside
                && l.starts_with('#')
                && l[1..].starts_with(|c: char| c.is_ascii_lowercase() || c == '[');
            if l.starts_with("#max_accounts") {
                inside = false;
            }
            match on {
                true => format!("{}\n", &l[1..]),
                false => format!("{l}\n"),
            }
        })
        .collect();
    let config = Config::from_toml(&text, std::path::Path::new("extsecurity.toml")).unwrap();
    let fraud = config.fraud.expect("[fraud] on");
    assert_eq!(fraud.dial_plan.country_code, "49");
    assert_eq!(
        fraud.high_risk_file.as_deref(),
        Some(std::path::Path::new(
            "/etc/asterisk/extsecurity-high-risk.conf"
        ))
    );
    assert!(read("Cargo.toml").contains(
        "[\"dist/extsecurity-high-risk.conf\", \"etc/asterisk/extsecurity-high-risk.conf\", \"644\"]"
    ));
}
