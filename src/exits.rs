//! Every exit status the program uses, in one place (README, "Exit status").
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
/// The configuration could not be read or is invalid.
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
