//! AMI security events (design.md §3b), without I/O: [`codec`] frames and validates
//! what Asterisk writes, [`watch`] counts events per source address and says when one
//! crosses a limit. The daemon's AMI client (`daemon::ami`) drives both.

pub mod codec;
pub mod login;
pub mod watch;

pub use codec::{Event, Framer, Message, Verdict, classify};
pub use watch::{Alert, Limits, Rule, Watch};
