//! How fast a password cracker finds a secret, by replaying the guess order of the one
//! every SIP scanner ships: SIPVicious's `svcrack` (0.3.x, Debian's `sipvicious`),
//! read from its source (design.md §3h). Its default run tries the user name, then
//! 100…999 unpadded: 901 guesses. `-D` puts 2,957 more between the two: 1000…9900 and
//! 1001…9901 by 100, each digit repeated 1–7 times, 100…998, 10000…99900 and
//! 10001…99901 by 100, then runs of ascending digits. A secret's guess number is
//! therefore exact, and the audit says it instead of the secret.

use std::collections::HashMap;
use std::sync::OnceLock;

/// The guesses `-D` inserts after the user name, in svcrack's order.
fn defaults() -> &'static HashMap<String, usize> {
    static FIRST: OnceLock<HashMap<String, usize>> = OnceLock::new();
    FIRST.get_or_init(|| {
        let mut first = HashMap::with_capacity(DEFAULTS_LEN);
        for (i, guess) in defaults_list().into_iter().enumerate() {
            first.entry(guess).or_insert(i);
        }
        first
    })
}

/// `-D`'s list as svcrack generates it, repeats included.
fn defaults_list() -> Vec<String> {
    let mut list: Vec<String> = Vec::with_capacity(DEFAULTS_LEN);
    list.extend((1000..9999).step_by(100).map(|i| format!("{i:04}")));
    list.extend((1001..9999).step_by(100).map(|i| format!("{i:04}")));
    for digit in 0..9 {
        list.extend((1..8).map(|n| digit.to_string().repeat(n)));
    }
    list.extend((100..999).map(|i| i.to_string()));
    list.extend((10000..99999).step_by(100).map(|i| i.to_string()));
    list.extend((10001..99999).step_by(100).map(|i| i.to_string()));
    list.extend(
        [
            "1234", "2345", "3456", "4567", "5678", "6789", "7890", "0123",
        ]
        .map(String::from),
    );
    list.extend(
        [
            "12345", "23456", "34567", "45678", "56789", "67890", "01234",
        ]
        .map(String::from),
    );
    list
}

/// Shorter than this is a short secret (NIST's minimum for a memorised one).
pub const MIN_SECRET_LEN: usize = 8;

/// The number of guesses `-D` adds before the default range.
pub const DEFAULTS_LEN: usize = 2957;

/// Which run finds a secret, and at which guess (1 is the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guess {
    /// `svcrack -u USER`: the user name, then 100…999.
    Default(usize),
    /// `svcrack -u USER -D`.
    Defaults(usize),
}

impl std::fmt::Display for Guess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Guess::Default(n) => write!(f, "guess {n} of svcrack's default run"),
            Guess::Defaults(n) => write!(f, "guess {n} of svcrack -D"),
        }
    }
}

/// The guess at which svcrack, cracking `user`, tries `secret`; `None` if it never does.
pub fn guess(user: &str, secret: &str) -> Option<Guess> {
    if secret == user {
        return Some(Guess::Default(1));
    }
    if let Some(n) = in_range(secret) {
        return Some(Guess::Default(1 + n));
    }
    defaults().get(secret).map(|&i| Guess::Defaults(2 + i))
}

/// 1-based place of `secret` in 100…999 as svcrack writes them (`%u`: no padding).
fn in_range(secret: &str) -> Option<usize> {
    let n: usize = secret.parse().ok()?;
    (secret == n.to_string() && (100..=999).contains(&n)).then(|| n - 99)
}

/// Every guess svcrack makes for `user` with `-D`, in order (the MD5 check hashes them).
pub fn all_guesses(user: &str) -> impl Iterator<Item = String> + '_ {
    let mut ordered: Vec<(&String, &usize)> = defaults().iter().collect();
    ordered.sort_by_key(|(_, i)| **i);
    std::iter::once(user.to_string())
        .chain((100..=999).map(|n| n.to_string()))
        .chain(ordered.into_iter().map(|(g, _)| g.clone()))
}

/// The guess of an MD5 credential (`md5(user:realm:secret)`, hex), by hashing svcrack's
/// guesses; `None` when none of them is it.
pub fn guess_md5(user: &str, realm: &str, hash: &str) -> Option<Guess> {
    use md5::{Digest, Md5};
    let hash = hash.trim().to_ascii_lowercase();
    all_guesses(user)
        .find(|g| {
            let digest = Md5::digest(format!("{user}:{realm}:{g}").as_bytes());
            hex(&digest) == hash
        })
        .and_then(|g| guess(user, &g))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_run_is_the_user_then_100_to_999() {
        assert_eq!(guess("1003", "1003"), Some(Guess::Default(1)));
        assert_eq!(guess("1003", "100"), Some(Guess::Default(2)));
        // The secret svcrack found on a real Asterisk at guess 32 (design.md §3h).
        assert_eq!(guess("1003", "130"), Some(Guess::Default(32)));
        assert_eq!(guess("1003", "999"), Some(Guess::Default(901)));
        assert_eq!(guess("1003", "0130"), None);
    }

    #[test]
    fn minus_d_adds_its_list_in_order() {
        assert_eq!(defaults_list().len(), DEFAULTS_LEN);
        assert_eq!(guess("u", "1000"), Some(Guess::Defaults(2)));
        assert_eq!(guess("u", "9901"), Some(Guess::Defaults(181)));
        assert_eq!(guess("u", "0"), Some(Guess::Defaults(182)));
        assert_eq!(guess("u", "8888888"), Some(Guess::Defaults(244)));
        assert_eq!(
            guess("u", "12345"),
            Some(Guess::Defaults(2 + DEFAULTS_LEN - 7))
        );
        assert_eq!(
            guess("u", "1234"),
            Some(Guess::Defaults(2 + DEFAULTS_LEN - 15))
        );
        assert_eq!(guess("u", "99999"), None);
        assert_eq!(guess("u", "a-long-random-secret"), None);
    }

    #[test]
    fn all_guesses_are_the_run_in_order() {
        let all: Vec<String> = all_guesses("u").collect();
        assert_eq!(all.len(), 1 + 900 + defaults().len());
        assert_eq!(&all[..3], ["u", "100", "101"]);
    }

    #[test]
    fn an_md5_credential_falls_at_the_guess_of_its_secret() {
        use md5::{Digest, Md5};
        let hash = hex(&Md5::digest(b"1003:asterisk:130"));
        assert_eq!(
            guess_md5("1003", "asterisk", &hash),
            Some(Guess::Default(32))
        );
        assert_eq!(guess_md5("1003", "other-realm", &hash), None);
        let strong = hex(&Md5::digest(b"1003:asterisk:Xk29-qwe-77"));
        assert_eq!(guess_md5("1003", "asterisk", &strong), None);
    }
}
