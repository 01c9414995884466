//! Issue 21, notifications (`[notify]`): what reaches a real SMTP server (Debian's
//! aiosmtpd, STARTTLS and AUTH required, `tests/notify/smtp_server.py`) and a local
//! webhook, how many messages, and what an outage of the mail server does: the events
//! wait, go in one message once it is back, and the outage is said once.
//!
//! The calls come through the res_agi-faithful peer (design §3a, §3e): a third live
//! international call of an account is toll fraud (the shipped default), scanners'
//! calls are alerts for the digest.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::agi_peer::{fastagi_call, outbound_call};
use common::asterisk::Channel;
use common::{LoggedServe, Sandbox, free_port, metric, repo, wait_for};

const USER: &str = "pbx1@example.org";
const PASSWORD: &str = "s3cret-smtp";

/// aiosmtpd on `port`, its Maildir in `dir`; killed when dropped.
struct SmtpServer {
    child: Child,
    maildir: PathBuf,
}

impl SmtpServer {
    fn start(dir: &Path, port: u16, cert: &Path, key: &Path) -> SmtpServer {
        let maildir = dir.join("Maildir");
        let mut child = Command::new("/usr/bin/python3")
            .arg(repo().join("tests/notify/smtp_server.py"))
            .arg(port.to_string())
            .arg(&maildir)
            .args([cert, key])
            .args([USER, PASSWORD])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("/usr/bin/python3 with python3-aiosmtpd (scripts/test.sh installs it)");
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready", "aiosmtpd did not start");
        SmtpServer { child, maildir }
    }

    /// The messages it stored, as text, folded header lines unfolded.
    fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        files.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
        files
            .iter()
            .map(|p| {
                std::fs::read_to_string(p)
                    .unwrap()
                    .replace("\r\n", "\n")
                    .replace("\n ", " ")
                    .replace("=\n", "") // quoted-printable's soft line breaks
            })
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A webhook: every POST's body, answered 200.
fn webhook() -> (u16, Arc<Mutex<Vec<serde_json::Value>>>) {
    webhook_failing_first(0)
}

/// A webhook that answers `503` to its first `failures` POSTs (not kept), then 200.
fn webhook_failing_first(failures: usize) -> (u16, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let got = bodies.clone();
    std::thread::spawn(move || {
        let mut failures = failures;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            if failures > 0 {
                failures -= 1;
                let _ = stream.write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            }
            got.lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap());
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    (port, bodies)
}

/// A daemon with `[fraud]` for Germany and `notify`, its metrics on a port of its own.
fn daemon(notify: &str) -> (LoggedServe, u16, u16) {
    let (port, metrics_port) = (free_port(), free_port());
    let list = repo().join("dist/extsecurity-high-risk.conf");
    let sandbox = Sandbox::with_config(&format!(
        "tarpit_seconds = 0\n[daemon]\nlisten = '127.0.0.1:{port}'\nmetrics_listen = '127.0.0.1:{metrics_port}'\n\
         [fraud]\nenabled = true\ncountry_code = \"49\"\nhigh_risk_file = {list:?}\n\
         state_file = \"@DIR@/fraud.state\"\n\
         [fraud.class.international]\nconcurrent = {{ warning = 0, critical = 3 }}\n[notify]\n{notify}"
    ));
    (LoggedServe::start(sandbox, port), port, metrics_port)
}

/// A third live international call of `account` (the daemon judged the two before it;
/// concurrency's warning level is off here, so they pass unsaid): refused, the account
/// quarantined.
fn toll_fraud(port: u16, account: &str) {
    for live in 1..=3 {
        let number = format!("0044207946000{live}");
        let mut channel = Channel::outbound(account, number.as_bytes(), "203.0.113.66");
        channel.live = live;
        let ex = outbound_call(port, &channel);
        let expected = if live == 3 { "ALERT" } else { "OK" };
        assert_eq!(ex.variable("EXTSEC_RESULT").as_deref(), Some(expected));
    }
}

fn mail_settings(port: u16, ca: &Path) -> String {
    format!(
        "smtp_server = \"127.0.0.1\"\nsmtp_port = {port}\nsmtp_security = \"starttls\"\n\
         smtp_username = \"{USER}\"\nsmtp_password = \"{PASSWORD}\"\nsmtp_ca_file = {ca:?}\n\
         mail_from = \"extsecurity@pbx1.example.org\"\nmail_to = [\"admin@example.org\"]\n"
    )
}

#[test]
fn a_quarantine_and_a_digest_reach_the_mailbox_and_the_webhook_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let [ca, cert, key] = common::ast_tls_cert(dir.path(), "smtp");
    let smtp_port = free_port();
    let smtp = SmtpServer::start(dir.path(), smtp_port, &cert, &key);
    let (hook_port, hooks) = webhook();
    let (serve, port, metrics_port) = daemon(&format!(
        "{}webhook_url = \"http://127.0.0.1:{hook_port}/hook\"\ndigest_seconds = 10\n",
        mail_settings(smtp_port, &ca)
    ));

    toll_fraud(port, "alice");
    // Scanners: alerts, told only in the digest.
    for i in 0..5 {
        let mut scanner = Channel::ordinary(&format!("203.0.113.{}", 10 + i));
        scanner.exten = b"100".to_vec();
        scanner.user_agent = b"friendly-scanner".to_vec();
        fastagi_call(port, &scanner);
    }
    // Issue 27: lines others write count too: a System()-mode check by Asterisk, a ban
    // by hand (the digest reads the log as the CrowdSec pusher does).
    let check = serve.sandbox.run(&[
        "check",
        "--ip=198.51.100.50",
        "--exten-b64=MTAw",
        "--callerid-num-b64=NTU1",
    ]);
    assert_eq!(check.status.code(), Some(0));
    let ban = serve
        .sandbox
        .run(&["ban", "192.0.2.60", "--reason", "seen in a trace"]);
    assert!(
        String::from_utf8_lossy(&ban.stdout).contains("alert line written"),
        "{}",
        String::from_utf8_lossy(&ban.stdout)
    );

    wait_for("the quarantine's mail", Duration::from_secs(10), || {
        !smtp.messages().is_empty()
    });
    let first = &smtp.messages()[0];
    assert!(
        first.contains("Subject: [extsecurity] ")
            && first.contains("account 'alice' quarantined (toll fraud)"),
        "{first}"
    );
    assert!(
        first.contains("TOLL FRAUD: account 'alice' reached 3 for concurrent"),
        "{first}"
    );
    assert!(
        first.contains("extsecurity fraud release 'alice'"),
        "{first}"
    );
    assert!(first.contains("To: admin@example.org"), "{first}");

    wait_for("the digest", Duration::from_secs(20), || {
        smtp.messages().len() == 2
    });
    let digest = &smtp.messages()[1];
    assert!(digest.contains(" alerts in the last 10 s:"), "{digest}");
    assert!(digest.contains("203.0.113.10  1 ("), "{digest}");
    assert!(digest.contains("198.51.100.50  1 ("), "{digest}");
    assert!(digest.contains("192.0.2.60  1 (manual)"), "{digest}");

    wait_for("both webhook posts", Duration::from_secs(5), || {
        hooks.lock().unwrap().len() == 2
    });
    let hooks = hooks.lock().unwrap().clone();
    assert_eq!(hooks[0]["events"][0]["kind"], "toll_fraud");
    assert_eq!(hooks[0]["events"][0]["account"], "alice");
    assert_eq!(hooks[0]["severity"], "critical");
    assert!(hooks[0]["text"].as_str().unwrap().contains("TOLL FRAUD"));
    assert_eq!(hooks[1]["events"][0]["kind"], "digest");
    // Five scanners' alerts, the toll-fraud line, the System() check and the ban by
    // hand: one digest, not a message each.
    assert_eq!(hooks[1]["events"][0]["alerts"], 8, "{}", hooks[1]);

    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(smtp.messages().len(), 2, "nothing more");
    assert_eq!(
        metric(
            metrics_port,
            "extsecurity_notify_sent_total{channel=\"mail\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(
            metrics_port,
            "extsecurity_notify_sent_total{channel=\"webhook\"}"
        ),
        2.0
    );
    drop(serve);
}

#[test]
fn a_mail_server_that_is_down_loses_nothing_and_is_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let [ca, cert, key] = common::ast_tls_cert(dir.path(), "smtp");
    let smtp_port = free_port(); // nothing listens there yet
    let (mut serve, port, metrics_port) = daemon(&mail_settings(smtp_port, &ca));

    for account in ["alice", "bob", "carol"] {
        toll_fraud(port, account);
    }
    wait_for("failed tries", Duration::from_secs(10), || {
        metric(
            metrics_port,
            "extsecurity_notify_failures_total{channel=\"mail\"}",
        ) >= 2.0
    });
    let smtp = SmtpServer::start(dir.path(), smtp_port, &cert, &key);
    wait_for("the mail after the outage", Duration::from_secs(20), || {
        !smtp.messages().is_empty()
    });
    std::thread::sleep(Duration::from_secs(3));
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1, "the three quarantines in one message");
    for account in ["alice", "bob", "carol"] {
        assert!(
            messages[0].contains(&format!("account '{account}' reached 3")),
            "{}",
            messages[0]
        );
    }
    assert!(messages[0].contains("(+2 more)"), "{}", messages[0]);
    assert!(serve.terminate().success());
    let said = serve.stderr();
    assert_eq!(said.matches("notify: the mail fails").count(), 1, "{said}");
    assert_eq!(
        said.matches("notify: the mail works again").count(),
        1,
        "{said}"
    );
}

#[test]
fn a_webhook_that_answers_503_gets_everything_in_one_post_once_it_works() {
    let (hook_port, hooks) = webhook_failing_first(2);
    let (mut serve, port, metrics_port) = daemon(&format!(
        "webhook_url = \"http://127.0.0.1:{hook_port}/hook\"\n"
    ));
    toll_fraud(port, "alice");
    toll_fraud(port, "bob");
    // Two 503s (at about 2 s and 3 s), then the third try (about 5 s) is taken.
    wait_for(
        "the post after two refusals",
        Duration::from_secs(20),
        || hooks.lock().unwrap().len() == 1,
    );
    std::thread::sleep(Duration::from_secs(3));
    let hooks = hooks.lock().unwrap().clone();
    assert_eq!(hooks.len(), 1, "one POST once it works");
    let kinds: Vec<&str> = hooks[0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["account"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["alice", "bob"], "both quarantines, in order");
    assert_eq!(
        metric(
            metrics_port,
            "extsecurity_notify_failures_total{channel=\"webhook\"}"
        ),
        2.0
    );
    assert!(serve.terminate().success());
    let said = serve.stderr();
    assert_eq!(
        said.matches("notify: the webhook fails (the webhook answered HTTP 503)")
            .count(),
        1,
        "{said}"
    );
    assert_eq!(
        said.matches("notify: the webhook works again").count(),
        1,
        "{said}"
    );
}
