//! Every integration test in one binary: one link instead of one per file (the
//! package's test build took 63 s and each relink after a library change 12–17 s
//! as 31 binaries; 37 s and 4.6–4.9 s as one). A file is a module; `common` is
//! shared. Heavy tests (a PostgreSQL and a LAPI, a fleet, 50 writers under
//! logrotate) take `common::heavy()`, one at a time across the suite.

#[path = "../common/mod.rs"]
mod common;

mod agi;
mod ami;
mod as_users;
mod audit;
mod cli;
mod control;
mod crowdsec;
mod crowdsec_faults;
mod daemon;
mod diagnostics;
mod dialplan_outbound;
mod dialplan_system;
mod dialplan_verdict;
mod dist;
mod doc_links;
mod edge;
mod edge_lists;
mod fail2ban_filter;
mod fail2ban_server;
mod fleet;
mod fleet_pull;
mod kernel_ban;
mod late_answers;
mod layers;
mod load;
mod logrotate;
mod manual;
mod nft_ban;
mod notify;
mod number_oracle;
mod outbound;
mod prometheus;
mod properties;
mod reload;
mod report_html;
