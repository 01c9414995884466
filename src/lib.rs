//! extsecurity: judges Asterisk guest calls and writes the alert log fail2ban bans on.
//!
//! The core is pure: [`call::Call`] and [`config::Config`] in, [`rules::Verdict`] out
//! ([`rules::evaluate`]). Adapters around it turn what Asterisk hands us into a `Call`
//! ([`request`] for System()), and sinks turn a verdict into something durable
//! ([`alert_log`]). ARCHITECTURE.md has the map and the invariants.

pub mod agi;
pub mod alert_log;
pub mod ami;
pub mod asterisk_conf;
pub mod audit;
pub mod by_hand;
pub mod call;
pub mod check;
pub mod clock;
pub mod config;
pub mod control;
pub mod crowdsec;
pub mod daemon;
pub mod diagnostics;
pub mod dialplan;
pub mod edge;
pub mod exits;
pub mod follow;
pub mod fraud;
pub mod manual;
pub mod memory;
pub mod nftables;
pub mod notify;
pub mod peer;
pub mod preflight;
pub mod report;
pub mod request;
pub mod rules;
pub mod sip_ports;
pub mod state_file;

pub use call::Call;
pub use config::Config;
pub use rules::{Reason, Verdict, evaluate};
