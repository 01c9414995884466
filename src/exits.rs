//! Every exit status the program uses, in one place (doc/commands.md, "Exit status",
//! a table generated from here).
//!
//! Asterisk's `System()` maps 0 to `SYSTEMSTATUS=SUCCESS`, any other status to
//! `APPERROR`, and 127 (or a failed exec) to `FAILURE`, which hangs the call up; so no
//! status here is 127.

/// The call was accepted, or alerted on without `--fail-on-alert` (as the seed: an
/// existing dialplan goes on).
pub const OK: u8 = 0;
/// An unexpected internal error.
pub const INTERNAL: u8 = 1;
/// The command line was wrong (clap's usage errors).
pub const USAGE: u8 = 2;
/// The request could not be judged: unparseable, or without a valid peer IP. A
/// `CRITICAL` line was written (and an alert too when the caller broke the request).
pub const BAD_REQUEST: u8 = 3;
/// The configuration could not be read or is invalid; for `audit`, a file of
/// Asterisk's could not be read and nothing high was found in the rest.
pub const CONFIG: u8 = 4;
/// The alert log could not be opened or written.
pub const LOG: u8 = 5;
/// The daemon could not start (its address is taken, say).
pub const SERVE: u8 = 6;
/// `crowdsec-check`: the LAPI is unreachable or refused the machine's login.
pub const CROWDSEC: u8 = 7;
/// `bans`, `unban`: the kernel's sets could not be read or changed, or the daemon
/// could not be told.
pub const BANS: u8 = 8;
/// `fraud status`, `fraud release`: `[fraud]` is off, the account is unknown, or
/// neither the daemon nor its state file could be reached.
pub const FRAUD: u8 = 9;
/// The call was alerted on and `--fail-on-alert` was given.
pub const ALERT: u8 = 10;
/// `status`: no daemon answers on the control socket (or none is configured).
pub const NO_DAEMON: u8 = 11;
/// `audit`: a high or critical finding.
pub const AUDIT: u8 = 12;
/// `edge update`: no country database could be fetched, or what came is none.
pub const EDGE: u8 = 13;

/// How Asterisk's `System()` reports a status of the per-call check (`check`, the
/// seed's JSON form); `None` for the statuses only other commands exit with.
pub fn system_status(code: u8) -> Option<&'static str> {
    match code {
        OK => Some("SUCCESS"),
        INTERNAL | USAGE | BAD_REQUEST | CONFIG | LOG | ALERT => Some("APPERROR"),
        _ => None,
    }
}

/// Every status with what it means, for the manual page (`extsecurity(1)`, EXIT STATUS);
/// the README's "Exit status" table says the same with Asterisk's `SYSTEMSTATUS`.
pub const MEANINGS: [(u8, &str); 14] = [
    (
        OK,
        "The call was accepted, or alerted on without --fail-on-alert (as the seed).",
    ),
    (INTERNAL, "An internal error."),
    (USAGE, "A wrong command line."),
    (
        BAD_REQUEST,
        "The request could not be judged: unparseable, or no valid peer address (a CRITICAL line was written, and an alert when the caller broke it).",
    ),
    (
        CONFIG,
        "The configuration is missing or invalid (audit: a file of it could not be read, and nothing high was found in the rest).",
    ),
    (
        LOG,
        "The alert log could not be opened or written (check-config: this user could not).",
    ),
    (
        SERVE,
        "serve could not start: its address is taken, another daemon holds the control socket, nothing to serve.",
    ),
    (
        CROWDSEC,
        "crowdsec-check: the LAPI is unreachable or refused the machine's login, or the state file cannot be used.",
    ),
    (
        BANS,
        "bans, unban: the kernel's sets could not be read or changed, or the daemon could not be told.",
    ),
    (
        FRAUD,
        "fraud status, fraud release: [fraud] is off, the account is unknown, or neither the daemon nor its state file could be asked.",
    ),
    (
        ALERT,
        "The call was alerted on and --fail-on-alert was given.",
    ),
    (
        NO_DAEMON,
        "status: no daemon answers on the control socket, or none is configured.",
    ),
    (
        AUDIT,
        "audit: a high or critical finding (medium and info ones exit 0).",
    ),
    (
        EDGE,
        "edge update: no country database could be fetched, or what came is none; the file in place is kept.",
    ),
];

#[cfg(test)]
mod tests {
    #[test]
    fn every_status_is_explained_once_and_none_is_127() {
        let codes: Vec<u8> = super::MEANINGS.iter().map(|(c, _)| *c).collect();
        let mut sorted = codes.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(codes, sorted, "in order, each once");
        assert_eq!(codes, (0..=13).collect::<Vec<u8>>());
        assert!(!codes.contains(&127));
    }
}
