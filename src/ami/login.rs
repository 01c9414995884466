//! The watcher's login, without I/O: the actions it writes and how it reads Asterisk's
//! answers (manager.c `action_challenge`, `authenticate`).
//!
//! By default the secret never crosses the network: `Action: Challenge` with
//! `AuthType: MD5` gets a `Challenge:` (a random number), and the `Login` carries
//! `Key: md5(challenge + secret)` in lower-case hex, as manager.c computes it. That
//! keeps the secret from a passive listener on the way to a remote AMI; TLS
//! (`tlsenable`) also keeps the events — callers' numbers and addresses — private.

use md5::{Digest, Md5};

use super::codec::{Fields, Message};

pub const CHALLENGE_ID: &str = "extsecurity-challenge";
pub const LOGIN_ID: &str = "extsecurity-login";

/// `Action: Challenge` for an MD5 login.
pub fn challenge_action() -> String {
    format!("Action: Challenge\r\nActionID: {CHALLENGE_ID}\r\nAuthType: MD5\r\n\r\n")
}

/// The event classes the watcher asks for: security events, and the `user` class when
/// outbound calls' ends come as `UserEvent`s (`[fraud] call_end = "ami"`).
pub fn events(call_ends: bool) -> &'static str {
    match call_ends {
        true => "security,user",
        false => "security",
    }
}

/// `Action: Login` with `Key: md5(challenge + secret)`, asking for `events`.
pub fn md5_login_action(username: &str, challenge: &str, secret: &str, events: &str) -> String {
    format!(
        "Action: Login\r\nActionID: {LOGIN_ID}\r\nAuthType: MD5\r\nUsername: {username}\r\nKey: {}\r\nEvents: {events}\r\n\r\n",
        md5_key(challenge, secret)
    )
}

/// `Action: Login` with the secret in clear (`auth = "plain"`), asking for `events`.
pub fn plain_login_action(username: &str, secret: &str, events: &str) -> String {
    format!(
        "Action: Login\r\nActionID: {LOGIN_ID}\r\nUsername: {username}\r\nSecret: {secret}\r\nEvents: {events}\r\n\r\n"
    )
}

/// What manager.c compares the `Key:` against.
pub fn md5_key(challenge: &str, secret: &str) -> String {
    let mut md5 = Md5::new();
    md5.update(challenge.as_bytes());
    md5.update(secret.as_bytes());
    md5.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Asterisk's answer to one of our actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// `Success`, `Error`…
    pub response: String,
    pub message: String,
    /// `Challenge:`, in the answer to `Action: Challenge`.
    pub challenge: Option<String>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        self.response == "Success"
    }
}

/// The answer to the action `id`, if `message` is it.
pub fn answer_to(message: Message<'_>, id: &str) -> Option<Answer> {
    let Message::Body(body) = message else {
        return None;
    };
    let fields = Fields::parse(body)?;
    if fields.get(b"ActionID") != Some(id.as_bytes()) {
        return None;
    }
    let text = |key: &[u8]| {
        fields
            .get(key)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    Some(Answer {
        response: text(b"Response")?,
        message: text(b"Message").unwrap_or_default(),
        challenge: text(b"Challenge"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ami::Framer;

    #[test]
    fn the_key_is_md5_of_challenge_then_secret_in_lower_hex() {
        // python3 -c "import hashlib; print(hashlib.md5(b'1234567s3cret').hexdigest())"
        assert_eq!(
            md5_key("1234567", "s3cret"),
            "68edf1b4eee7014d8ac38ff454c0b3d1"
        );
        let login = md5_login_action("extsecurity", "1234567", "s3cret", events(false));
        assert!(login.contains("\r\nKey: 68edf1b4eee7014d8ac38ff454c0b3d1\r\n"));
        assert!(login.ends_with("\r\nEvents: security\r\n\r\n"));
        assert!(
            !login.contains("s3cret"),
            "the secret itself is never written"
        );
        let plain = plain_login_action("extsecurity", "s3cret", events(true));
        assert!(
            plain.ends_with("\r\nEvents: security,user\r\n\r\n"),
            "{plain}"
        );
    }

    #[test]
    fn answers_are_matched_by_action_id() {
        // astman_start_ack + "Challenge: %s\r\n\r\n" (manager.c action_challenge).
        let wire =
            b"Response: Success\r\nActionID: extsecurity-challenge\r\nChallenge: 840128930\r\n\r\n\
                     Response: Error\r\nActionID: other\r\nMessage: x\r\n\r\n";
        let mut found = Vec::new();
        Framer::default().feed(wire, |m| found.extend(answer_to(m, CHALLENGE_ID)));
        assert_eq!(
            found,
            [Answer {
                response: "Success".into(),
                message: String::new(),
                challenge: Some("840128930".into()),
            }]
        );
    }
}
