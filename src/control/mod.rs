//! The control protocol: what `extsecurity unban`, `status` and `fraud …` ask the
//! running daemon over its Unix socket (mode 0600: the daemon's user and root only),
//! and what it answers. Both sides speak these types; only [`Request::encode`],
//! [`Answer::decode`] and their mirrors know the text.
//!
//! One request a connection, one line each way:
//!
//! | request                 | answer                                            |
//! |-------------------------|---------------------------------------------------|
//! | `forget ADDR`           | `forgotten ADDR`, or `unknown ADDR` (not counted)  |
//! | `status`                | `daemon JSON` ([`status::Status`])                 |
//! | `fraud-status [ACCOUNT]`| `status JSON` (the outbound guard's accounts)      |
//! | `fraud-release ACCOUNT` | `released JSON` (the quarantine it had, or null), or `unknown ACCOUNT` |
//! | `version`               | `version N` ([`VERSION`])                          |
//! | anything else           | `error TEXT`                                       |
//!
//! The words are those of the first daemons, so a CLI and a daemon one version apart
//! still understand each other; a daemon older than `version` answers it with an
//! `error`.

pub mod status;

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use crate::fraud::account::Quarantine;

/// The protocol's version: raised when a request or an answer changes meaning.
pub const VERSION: u32 = 1;

/// A request longer than this is not ours.
pub const MAX_REQUEST: u64 = 256;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Forget an address in the rules with memory (`extsecurity unban`).
    Forget(IpAddr),
    /// The daemon on one screen (`extsecurity status`).
    Status,
    /// The outbound guard's accounts, or one of them (`extsecurity fraud status`).
    FraudStatus(Option<String>),
    /// Lift an account's quarantine and reset its counters (`fraud release`).
    FraudRelease(String),
    Version,
}

/// What the daemon answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Forgotten(IpAddr),
    /// Nothing held under this name: an address the rules had not counted, an account
    /// the guard had not seen.
    Unknown(String),
    Daemon(Box<status::Status>),
    FraudStatus(Vec<crate::fraud::guard::Status>),
    /// The quarantine the account had (`None`: it had none; its counters were reset).
    Released(Option<Quarantine>),
    Version(u32),
    /// The request was not understood or could not be answered.
    Error(String),
}

impl Request {
    /// The request's line, without its LF.
    pub fn encode(&self) -> String {
        match self {
            Request::Forget(ip) => format!("forget {ip}"),
            Request::Status => "status".into(),
            Request::FraudStatus(None) => "fraud-status".into(),
            Request::FraudStatus(Some(account)) => format!("fraud-status {account}"),
            Request::FraudRelease(account) => format!("fraud-release {account}"),
            Request::Version => "version".into(),
        }
    }

    /// A request's line (without its LF), or what is wrong with it.
    pub fn decode(line: &str) -> Result<Request, String> {
        let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
        match (verb, arg) {
            ("forget", arg) => arg
                .parse::<IpAddr>()
                .map(|ip| Request::Forget(ip.to_canonical()))
                .map_err(|_| format!("not an address: {arg:?}")),
            ("status", "") => Ok(Request::Status),
            ("fraud-status", "") => Ok(Request::FraudStatus(None)),
            ("fraud-status", account) => Ok(Request::FraudStatus(Some(account.into()))),
            ("fraud-release", "") => Err("fraud-release needs an account".into()),
            ("fraud-release", account) => Ok(Request::FraudRelease(account.into())),
            ("version", "") => Ok(Request::Version),
            _ => Err("unknown request".into()),
        }
    }
}

impl Answer {
    /// The answer's line, without its LF.
    pub fn encode(&self) -> String {
        let json = |value: Result<String, serde_json::Error>, tag: &str| match value {
            Ok(json) => format!("{tag} {json}"),
            Err(e) => format!("error {e}"),
        };
        match self {
            Answer::Forgotten(ip) => format!("forgotten {ip}"),
            Answer::Unknown(name) => format!("unknown {name}"),
            Answer::Daemon(status) => json(serde_json::to_string(status), "daemon"),
            Answer::FraudStatus(accounts) => json(serde_json::to_string(accounts), "status"),
            Answer::Released(was) => json(serde_json::to_string(was), "released"),
            Answer::Version(n) => format!("version {n}"),
            // One line whatever the text holds.
            Answer::Error(text) => format!("error {}", text.replace(['\n', '\r'], " ")),
        }
    }

    /// An answer's line (without its LF), or what was unexpected in it.
    pub fn decode(line: &str) -> Result<Answer, String> {
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        let bad = |e: &dyn std::fmt::Display| format!("the daemon answered {line:?} ({e})");
        match tag {
            "forgotten" => rest.parse().map(Answer::Forgotten).map_err(|e| bad(&e)),
            "unknown" => Ok(Answer::Unknown(rest.into())),
            "daemon" => serde_json::from_str(rest)
                .map(|s| Answer::Daemon(Box::new(s)))
                .map_err(|e| bad(&e)),
            "status" => serde_json::from_str(rest)
                .map(Answer::FraudStatus)
                .map_err(|e| bad(&e)),
            "released" => serde_json::from_str(rest)
                .map(Answer::Released)
                .map_err(|e| bad(&e)),
            "version" => rest.parse().map(Answer::Version).map_err(|e| bad(&e)),
            "error" => Ok(Answer::Error(rest.into())),
            _ => Err(bad(&"not an answer of this protocol")),
        }
    }
}

/// Asks the daemon listening on `path` one request. An answer that is not of this
/// protocol is an `InvalidData` error naming it.
pub fn ask(path: &Path, request: &Request) -> std::io::Result<Answer> {
    use std::io::{BufRead, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(format!("{}\n", request.encode()).as_bytes())?;
    let mut line = String::new();
    std::io::BufReader::new(stream).read_line(&mut line)?;
    Answer::decode(line.trim_end())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_reads_back_as_itself() {
        for request in [
            Request::Forget("2001:db8::5".parse().unwrap()),
            Request::Status,
            Request::FraudStatus(None),
            Request::FraudStatus(Some("alice".into())),
            Request::FraudRelease("bob smith".into()),
            Request::Version,
        ] {
            assert_eq!(Request::decode(&request.encode()), Ok(request));
        }
    }

    #[test]
    fn a_v4_mapped_address_is_forgotten_as_the_v4_one() {
        assert_eq!(
            Request::decode("forget ::ffff:192.0.2.7"),
            Ok(Request::Forget("192.0.2.7".parse().unwrap()))
        );
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        assert_eq!(
            Request::decode("forget 10.0.0.0/8"),
            Err("not an address: \"10.0.0.0/8\"".into())
        );
        assert_eq!(
            Request::decode("fraud-release"),
            Err("fraud-release needs an account".into())
        );
        assert_eq!(Request::decode("status now"), Err("unknown request".into()));
        assert_eq!(Request::decode(""), Err("unknown request".into()));
    }

    #[test]
    fn every_answer_reads_back_as_itself() {
        let quarantine: Quarantine = serde_json::from_str(
            r#"{"why":"toll_fraud(concurrent)","since":1800000000,"until":1800086400,"address":"192.0.2.9"}"#,
        )
        .unwrap_or_else(|e| panic!("the fixture must match Quarantine's fields: {e}"));
        for answer in [
            Answer::Forgotten("192.0.2.7".parse().unwrap()),
            Answer::Unknown("10.77.0.2".into()),
            Answer::FraudStatus(Vec::new()),
            Answer::Released(None),
            Answer::Released(Some(quarantine)),
            Answer::Version(VERSION),
            Answer::Error("unknown request".into()),
        ] {
            assert_eq!(Answer::decode(&answer.encode()), Ok(answer));
        }
    }

    #[test]
    fn an_error_stays_one_line_and_garbage_is_named() {
        let line = Answer::Error("a\nb\rc".into()).encode();
        assert_eq!(line, "error a b c");
        let e = Answer::decode("hello there").unwrap_err();
        assert!(e.contains("\"hello there\""), "{e}");
        assert!(Answer::decode("daemon {not json").is_err());
    }
}
