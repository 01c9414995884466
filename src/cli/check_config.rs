//! Loading the configuration, and `check-config` / `crowdsec-check`: what `serve` and
//! the checks would meet, said before they meet it.

use std::path::PathBuf;

use extsecurity::config::{self, Config, Source};
use extsecurity::exits;

pub(crate) fn load_config(flag: Option<&std::path::Path>) -> Option<(Config, Source)> {
    match config::load(flag, std::env::var_os(config::ENV_VAR)) {
        Ok(loaded) => Some(loaded),
        Err(e) => {
            eprintln!("extsecurity: {e}");
            None
        }
    }
}

/// Validates what `serve` and the per-call checks need and prints the effective
/// settings. The exit status says whether they can run: the config valid and the alert
/// log writable by this user. What only a sink needs (a secret this user may not read,
/// say) is said, not failed on: `serve` runs without that sink, as the unit's
/// `ExecStartPre` runs this.
pub(crate) fn check_config(config: &(Config, Source), quiet: bool) -> u8 {
    let (c, source) = config;
    let mut status = exits::OK;
    if let Err(e) = extsecurity::alert_log::check_writable(&c.log_file) {
        eprintln!("extsecurity: {e}");
        status = exits::LOG;
    }
    let writers = say_preflight(c, quiet);
    if let Err(e @ config::ConfigError::Empty { .. }) = config::reload(source) {
        eprintln!("extsecurity: {e}");
        status = exits::CONFIG;
    }
    let user = current_user();
    for secret in c.secrets() {
        match secret.read() {
            Ok(_) => {}
            Err(e) if e.is_permission() => eprintln!(
                "extsecurity: note: {e}: {user} cannot read it; serve reads it as its own user (the unit's: extsecurity), and the per-call checks never do"
            ),
            Err(e) => eprintln!("extsecurity: warning: {e}"),
        }
    }
    match c
        .crowdsec
        .as_ref()
        .and_then(extsecurity::daemon::crowdsec::state_problem)
    {
        Some((problem, true)) => {
            eprintln!("extsecurity: note: {problem}: not as {user}; serve uses it as its own user")
        }
        Some((problem, false)) => eprintln!(
            "extsecurity: warning: {problem}: serve would judge calls but not push to CrowdSec until it is fixed"
        ),
        None => {}
    }
    if let Some(fraud) = &c.fraud {
        match extsecurity::daemon::fraud::read_high_risk(c) {
            Ok(list) if !quiet => println!(
                "# [fraud]: {} high-risk prefixes; emergency numbers, never refused: {}",
                list.len(),
                fraud.dial_plan.emergency_numbers().join(", ")
            ),
            Ok(_) => {}
            Err(e) => {
                eprintln!(
                    "extsecurity: {e}: serve would run the guest check, but the outbound check would answer ERROR until it reads"
                );
                status = exits::CONFIG;
            }
        }
        if let (false, Some(dir)) = (quiet, &fraud.audit_dir)
            && dir.is_dir()
        {
            let asterisk =
                extsecurity::audit::Asterisk::read_accounts(&extsecurity::asterisk_conf::Disk, dir);
            let weak = extsecurity::audit::accounts::weak_accounts(&asterisk);
            let names: Vec<&str> = weak.keys().map(String::as_str).collect();
            println!(
                "# [fraud]: {} accounts weak by the audit of {} get the [fraud.weak] limits{}{}",
                names.len(),
                dir.display(),
                if names.is_empty() { "" } else { ": " },
                names.join(", ")
            );
        }
        match extsecurity::daemon::fraud::state_problem(&fraud.state_file) {
            Some((problem, true)) => {
                eprintln!(
                    "extsecurity: note: {problem}: not as {user}; serve uses it as its own user"
                )
            }
            Some((problem, false)) => eprintln!(
                "extsecurity: warning: {problem}: serve would judge outbound calls but quarantines would not survive a restart"
            ),
            None => {}
        }
    }
    if !quiet {
        println!("# effective settings, from {source}");
        match &c.nftables {
            Some(n) => println!(
                "# [nftables]: kernel bans ON, table inet {}, ports {} (from {})",
                n.table,
                match n.ports.is_empty() {
                    true => "all".to_string(),
                    false => n
                        .ports
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                },
                n.ports_from
            ),
            None => println!(
                "# [nftables]: kernel bans OFF (enabled = true in [nftables] bans within milliseconds; fail2ban alone takes ~0.5 s)"
            ),
        }
        match &c.edge {
            Some(e) if e.rate_limit > 0 => println!(
                "# [edge]: {}at most {}/s a source (burst {}) on the nftables ports; {} trusted networks or peers, the LAN and this host pass",
                if e.dry_run {
                    "DRY RUN, counting only: "
                } else {
                    ""
                },
                e.rate_limit,
                e.rate_burst,
                e.pass.len()
            ),
            Some(_) => println!("# [edge]: on, no rate limit"),
            None => println!("# [edge]: off (enabled = true in [edge] drops floods in the kernel)"),
        }
        if let Some(e) = &c.edge {
            for line in crate::cli::edge::summary(e) {
                println!("# [edge] {line}");
            }
        }
        if !writers.is_empty() {
            println!(
                "# alert log {}: writable by {}",
                c.log_file.display(),
                writers.join(" and ")
            );
        }
        print!("{}", extsecurity::config::effective::render(c));
    }
    status
}

/// Who cannot write the alert log, and whether fail2ban would start (README,
/// Install), on stderr; the users who can write it are returned, for the summary.
/// Said to the administrator (without --quiet), not at each start of the unit.
pub(crate) fn say_preflight(c: &Config, quiet: bool) -> Vec<String> {
    use extsecurity::preflight;
    // The unit's own check (--quiet) is about its user, which check_writable covers;
    // a missing folder is said already.
    if quiet {
        return Vec::new();
    }
    if let Some(trap) = preflight::fail2ban_sshd_trap(
        std::path::Path::new("/etc/fail2ban"),
        std::path::Path::new("/var/log/auth.log"),
    ) {
        eprintln!("extsecurity: warning: {trap}");
    }
    let folder_there = c.log_file.parent().is_some_and(|f| f.is_dir());
    let writers = match folder_there {
        true => preflight::log_writers(&c.log_file),
        false => Vec::new(),
    };
    for (user, _) in writers.iter().filter(|(_, ok)| !ok) {
        let fix = match user.as_str() {
            preflight::DAEMON_USER => {
                "adduser extsecurity asterisk, then restart the service".to_string()
            }
            _ => format!(
                "chgrp asterisk {0} && chmod 0660 {0} (and its folder 2770, group asterisk: doc/install.md, \"The log folder\")",
                c.log_file.display()
            ),
        };
        eprintln!(
            "extsecurity: warning: user {user} cannot write the alert log {}: its calls would be judged with no line and no ban; {fix}",
            c.log_file.display()
        );
    }
    writers
        .into_iter()
        .filter(|(_, ok)| *ok)
        .map(|(user, _)| user)
        .collect()
}

/// Names every dialplan line that hands a caller's value to a shell unencoded. Said,
/// not failed on: the calls are judged either way, and the unit's check runs this.
pub(crate) fn check_dialplan(config: &Config, files: &[PathBuf], quiet: bool) {
    let (findings, unread) = extsecurity::dialplan::scan(files);
    for finding in &findings {
        eprintln!("extsecurity: warning: {finding}");
    }
    for wrong in extsecurity::dialplan::wiring(files, config.daemon.secret.is_some()).0 {
        eprintln!("extsecurity: warning: {wrong}");
    }
    if config.fraud.is_some() {
        let modules = std::path::Path::new(extsecurity::dialplan::CONFIG_DIR).join("modules.conf");
        if let Ok(text) = std::fs::read_to_string(&modules) {
            let missing = extsecurity::dialplan::modules_not_loaded(&text);
            if !missing.is_empty() {
                eprintln!(
                    "extsecurity: warning: {}: the outbound check needs {}, which it does not load: add a load => NAME.so line for each",
                    modules.display(),
                    missing.join(", ")
                );
            }
        }
    }
    for (file, e) in &unread {
        // The default files are Asterisk's: not being able to read them is no news
        // for a user who is not Asterisk's.
        if !files.is_empty() || (!quiet && e.kind() != std::io::ErrorKind::NotFound) {
            eprintln!(
                "extsecurity: note: dialplan {} not read: {e}",
                file.display()
            );
        }
    }
}

/// The name of the user this runs as, for messages about permissions.
pub(crate) fn current_user() -> String {
    // SAFETY: geteuid has no preconditions; getpwuid's result is read at once.
    unsafe {
        let uid = libc::geteuid();
        let pw = libc::getpwuid(uid);
        if pw.is_null() || (*pw).pw_name.is_null() {
            return format!("uid {uid}");
        }
        std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_string_lossy()
            .into_owned()
    }
}

/// One login as the configured machine: proves the URL, the machine and its password;
/// then how many alerts wait in the log for the LAPI.
pub(crate) fn crowdsec_check(config: &Config) -> u8 {
    let Some(c) = &config.crowdsec else {
        eprintln!("extsecurity: no [crowdsec] table in the configuration: nothing to check");
        return exits::CONFIG;
    };
    if let Some((problem, _)) = extsecurity::daemon::crowdsec::state_problem(c) {
        eprintln!("extsecurity: {problem}");
        return exits::CROWDSEC;
    }
    let mut client = extsecurity::crowdsec::Client::new(c.clone());
    let status = match client.login() {
        Ok(expire) => {
            println!(
                "OK: machine {:?} logged in to the CrowdSec LAPI at {} (token valid until {expire}); bans will last {}",
                c.machine_id, c.lapi_url, c.ban_duration
            );
            exits::OK
        }
        Err(e) => {
            eprintln!("extsecurity: {e}");
            exits::CROWDSEC
        }
    };
    match extsecurity::daemon::crowdsec::waiting(config, c) {
        Ok(Some(n)) => println!(
            "{n} alerts in {} after the position saved in {} (not yet accepted by the LAPI)",
            config.log_file.display(),
            c.state_file.display()
        ),
        Ok(None) => println!(
            "no position saved in {} for {} yet: the daemon starts at the end of the log",
            c.state_file.display(),
            config.log_file.display()
        ),
        Err(e) => eprintln!(
            "extsecurity: cannot read {} or the alert log: {e}",
            c.state_file.display()
        ),
    }
    status
}
