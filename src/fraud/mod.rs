//! Toll fraud: what an authenticated account dials, judged before `Dial` (README, "Toll
//! fraud"). Pure: the daemon passes the time and does the I/O.
//!
//! [`number`] puts a dialled number in a destination class; [`limits`] says what each
//! class allows; [`account`] keeps what an account did in [`window`]s.

pub mod account;
pub mod dialplan_numbers;
mod emergency_numbers;
pub mod extension_pattern;
pub mod guard;
pub mod hours;
pub mod limits;
pub mod lines;
pub mod number;
pub mod number_types;
pub mod short_number;
mod short_numbers;
pub mod status;
pub mod window;

pub use guard::{Decision, Guard, Judgement, Login, Refusal};
pub use number::{Class, Destination, DialPlan, Prefixes, classify};
