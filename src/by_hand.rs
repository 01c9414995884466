//! Bans by hand: `extsecurity ban ADDR|CIDR` and `extsecurity unban ADDR|CIDR`, in
//! every place a ban lives, each step said in one line: the kernel's sets
//! (`[nftables]`), the alert log (so fail2ban and CrowdSec follow a ban), the running
//! daemon's memory (so an unbanned address is judged afresh), fail2ban's jail (over
//! its socket, so that an unban is not undone at its next read of the log).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ipnet::IpNet;

use crate::alert_log::{AlertLog, Level, Line};
use crate::config::Config;
use crate::control;
use crate::nftables::{self, netlink};

/// An address or a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Addr(IpAddr),
    Net(IpNet),
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Target, String> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Target::Addr(ip.to_canonical()));
        }
        match s.parse::<IpNet>() {
            Ok(net) if net.prefix_len() == net.max_prefix_len() => Ok(Target::Addr(net.addr())),
            Ok(net) if net.prefix_len() < if net.addr().is_ipv4() { 8 } else { 32 } => Err(
                format!("{s}: a range wider than /8 (IPv4) or /32 (IPv6) is not banned by hand"),
            ),
            Ok(net) => Ok(Target::Net(net.trunc())),
            Err(_) => Err(format!(
                "{s:?} is not an address or a range such as 203.0.113.5 or 203.0.113.0/24"
            )),
        }
    }
}

/// What a command did, a line per place, and whether something failed.
#[derive(Debug, Default)]
pub struct Said {
    pub lines: Vec<String>,
    pub failed: bool,
}

impl Said {
    fn say(&mut self, line: String) {
        self.lines.push(line);
    }

    fn fail(&mut self, line: String) {
        self.failed = true;
        self.lines.push(line);
    }
}

/// fail2ban's jail, reached with `fail2ban-client` over its socket.
pub struct Fail2ban {
    pub socket: PathBuf,
    pub jail: String,
}

impl Fail2ban {
    fn client(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("fail2ban-client")
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run fail2ban-client: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        match out.status.success() {
            true => Ok(text),
            false => Err(format!(
                "fail2ban-client {}: {}{}",
                args.join(" "),
                text,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        }
    }

    fn running(&self) -> bool {
        self.socket.exists()
    }

    /// Whether `ip` was banned in the jail.
    fn unban(&self, ip: IpAddr) -> Result<bool, String> {
        let ip = ip.to_string();
        Ok(self.client(&["set", &self.jail, "unbanip", &ip])? != "0")
    }

    /// The jail's banned addresses (`['203.0.113.5', …]`, as Python prints a list).
    fn banned(&self) -> Result<Vec<IpAddr>, String> {
        let list = self.client(&["get", &self.jail, "banned"])?;
        Ok(list
            .trim_matches(['[', ']'])
            .split(',')
            .filter_map(|s| s.trim().trim_matches('\'').parse().ok())
            .collect())
    }
}

/// Why `ip` is never banned, if it is not.
fn never(config: &Config, ip: IpAddr) -> Option<&'static str> {
    if config.is_trusted(ip) {
        Some("it is in trusted_networks")
    } else if ip.is_loopback() || ip.is_unspecified() {
        Some("it is this host")
    } else if nftables::own_addresses().contains(&ip) {
        Some("it is one of this host's own addresses")
    } else {
        None
    }
}

/// `extsecurity ban`.
pub fn ban(config: &Config, target: Target, length: Option<Duration>, note: &str) -> Said {
    let mut said = Said::default();
    let table = &config.nftables_table;
    let length = length
        .or(config.nftables.as_ref().map(|n| n.ban))
        .unwrap_or(Duration::from_secs(86_400));
    let note = match note.is_empty() {
        true => "banned by hand".to_string(),
        false => note.to_string(),
    };
    let shown = match target {
        Target::Addr(ip) => ip.to_string(),
        Target::Net(net) => net.to_string(),
    };
    let hit_own = match target {
        Target::Addr(ip) => never(config, ip),
        Target::Net(net) => (config
            .trusted_networks
            .iter()
            .any(|t| t.contains(&net) || net.contains(t))
            || nftables::own_addresses().iter().any(|ip| net.contains(ip)))
        .then_some("it holds a trusted network or this host's own address"),
    };
    if let Some(why) = hit_own {
        said.fail(format!("{shown}: not banned: {why}"));
        return said;
    }
    let comment = format!("manual: {note}");
    let kernel = match (&config.nftables, target) {
        (None, _) => Ok(false),
        (Some(_), Target::Addr(ip)) => netlink::Socket::open()
            .and_then(|mut s| {
                let element = netlink::Element {
                    ip,
                    timeout: length,
                    comment: nftables::nft_comment(&comment),
                };
                s.add_replacing(table, &[ip], &[element])
            })
            .map(|()| true)
            .map_err(|e| e.to_string()),
        (Some(_), Target::Net(net)) => nftables::add_range(table, net, length, &comment)
            .map(|()| true)
            .map_err(|e| e.to_string()),
    };
    match kernel {
        Ok(true) => said.say(format!(
            "{shown}: banned in the kernel for {} (table inet {table})",
            crate::clock::time_left(length)
        )),
        Ok(false) => said.say(format!(
            "{shown}: not banned in the kernel: [nftables] is off"
        )),
        Err(e) if e.contains("No such file or directory") => said.fail(format!(
            "{shown}: cannot ban in the kernel: no table inet {table} (or no range set) yet: `extsecurity serve` with [nftables] makes it at start"
        )),
        Err(e) => said.fail(format!(
            "{shown}: cannot ban in the kernel: {e} (run as root)"
        )),
    }
    let line = ban_line(target, &note);
    match AlertLog::open(&config.log_file).and_then(|mut log| log.write(&line)) {
        Ok(()) => match target {
            Target::Addr(_) => said.say(format!(
                "{shown}: alert line written to {}: fail2ban's jail and CrowdSec ban it for their own time",
                config.log_file.display()
            )),
            Target::Net(net) => said.say(format!(
                "{shown}: noted in {} (fail2ban bans addresses, not ranges); for the fleet: cscli decisions add --range {net} --duration {}s --reason manual",
                config.log_file.display(),
                length.as_secs()
            )),
        },
        Err(e) => said.fail(format!("{shown}: {e}")),
    }
    said
}

/// `extsecurity unban`.
pub fn unban(config: &Config, target: Target, fail2ban: &Fail2ban) -> Said {
    let mut said = Said::default();
    let table = &config.nftables_table;
    let net = match target {
        Target::Addr(ip) => IpNet::from(ip),
        Target::Net(net) => net,
    };
    let shown = nftables::shown(&net);
    // The kernel: the address, or the range and every address in it.
    let mut lifted: Vec<IpAddr> = Vec::new();
    let mut no_table = false;
    // Bans pulled from a CrowdSec LAPI come back at the next pull unless lifted there.
    let from_lapi: Vec<(String, String)> = nftables::list(table)
        .unwrap_or_default()
        .into_iter()
        .filter(|b| b.reason.starts_with("crowdsec:") && crate::edge::overlap(&b.net, &net))
        .map(|b| (nftables::shown(&b.net), b.reason))
        .collect();
    let kernel: Result<(), String> = (|| {
        let mut socket = netlink::Socket::open().map_err(|e| e.to_string())?;
        match socket.count(table, "v4") {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                no_table = true;
                return Ok(());
            }
            Err(e) => return Err(e.to_string()),
            Ok(_) => {}
        }
        let addresses: Vec<IpAddr> = match target {
            Target::Addr(ip) => vec![ip],
            Target::Net(net) => {
                if nftables::delete_range(table, net).map_err(|e| e.to_string())? {
                    said.say(format!("{net}: range ban lifted (table inet {table})"));
                }
                let all = nftables::list(table).map_err(|e| e.to_string())?;
                all.into_iter()
                    .filter(|b| {
                        b.net.prefix_len() == b.net.max_prefix_len() && net.contains(&b.net.addr())
                    })
                    .map(|b| b.net.addr())
                    .collect()
            }
        };
        for ip in addresses {
            if socket.delete(table, ip).map_err(|e| e.to_string())? {
                lifted.push(ip);
            }
        }
        Ok(())
    })();
    match kernel {
        Ok(()) if no_table => said.say(format!(
            "{shown}: no table inet {table}: no kernel ban here"
        )),
        Ok(()) if lifted.is_empty() && matches!(target, Target::Addr(_)) => {
            said.say(format!("{shown}: not banned in table inet {table}"))
        }
        Ok(()) => {
            for ip in &lifted {
                said.say(format!("{ip}: kernel ban lifted (table inet {table})"));
            }
        }
        Err(e) => said.fail(format!(
            "{shown}: cannot lift the kernel ban: {e} (run as root)"
        )),
    }
    for (what, reason) in from_lapi {
        let flag = if what.contains('/') {
            "--range"
        } else {
            "--ip"
        };
        said.say(format!(
            "{what}: this ban came from the CrowdSec LAPI ({reason}): the daemon pulls it again \
             unless it is lifted there too: cscli decisions delete {flag} {what}"
        ));
    }
    // fail2ban: its own bans, which it would otherwise keep (and make again from the log).
    if fail2ban.running() {
        let addresses = match target {
            Target::Addr(ip) => Ok(vec![ip]),
            Target::Net(net) => fail2ban
                .banned()
                .map(|all| all.into_iter().filter(|ip| net.contains(ip)).collect()),
        };
        match addresses {
            Ok(addresses) => {
                let mut any = false;
                for ip in addresses {
                    match fail2ban.unban(ip) {
                        Ok(true) => {
                            any = true;
                            said.say(format!(
                                "{ip}: fail2ban's ban lifted (jail {})",
                                fail2ban.jail
                            ))
                        }
                        Ok(false) => {}
                        Err(e) => said.fail(format!("{ip}: {e}")),
                    }
                }
                if !any {
                    said.say(format!(
                        "{shown}: not banned by fail2ban (jail {})",
                        fail2ban.jail
                    ));
                }
            }
            Err(e) => said.fail(format!("{shown}: {e}")),
        }
    } else {
        said.say(format!(
            "{shown}: fail2ban is not running here (no socket {}): nothing to lift there",
            fail2ban.socket.display()
        ));
    }
    // The daemon: forget, so that the next call is judged afresh.
    let forget: Vec<IpAddr> = match target {
        Target::Addr(ip) => vec![ip],
        Target::Net(_) => lifted,
    };
    match &config.daemon.control_socket {
        Some(path) => {
            for ip in forget {
                match control::ask(path, &control::Request::Forget(ip)) {
                    Ok(answer) => said.say(format!("{ip}: {}", forget_said(&answer))),
                    Err(e) => said.say(format!(
                        "{ip}: the daemon was not told ({}: {e}); if it runs, its next alert may ban {ip} again",
                        path.display()
                    )),
                }
            }
        }
        None => said.say(format!(
            "{shown}: no control_socket configured: restart the daemon to forget it"
        )),
    }
    said.say(format!(
        "for the fleet: cscli decisions delete --{} {shown}",
        match target {
            Target::Addr(_) => "ip",
            Target::Net(_) => "range",
        }
    ));
    said
}

/// Where Debian's fail2ban listens.
pub const FAIL2BAN_SOCKET: &str = "/run/fail2ban/fail2ban.sock";

/// The daemon's answer to `forget ADDR`, in words.
fn forget_said(answer: &control::Answer) -> String {
    match answer {
        control::Answer::Forgotten(_) => {
            "the daemon forgot what it counted of it: its next call is judged afresh".into()
        }
        control::Answer::Unknown(_) => {
            "the daemon had counted nothing of it: nothing to forget there".into()
        }
        other => format!("the daemon answered: {}", other.encode()),
    }
}

/// The line of a ban by hand. An address: `ERROR ip=ADDR reason=manual note='…'`, so
/// that fail2ban's jail and CrowdSec ban it too (each for its own time). A range: a
/// `WARNING reason=manual_range net=CIDR note='…'` for the record (fail2ban bans
/// addresses, not ranges; it names no `ip=`). The note is the administrator's, quoted
/// like any value.
pub fn ban_line(target: Target, note: &str) -> Line {
    match target {
        Target::Addr(ip) => Line::new(Level::Error, Some(ip), "manual"),
        Target::Net(net) => Line::new(Level::Warning, None, "manual_range").field("net", net),
    }
    .quoted("note", note.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemons_forget_answers_read_as_words() {
        let said = |line: &str| forget_said(&control::Answer::decode(line).unwrap());
        assert!(said("forgotten 10.77.0.2").contains("judged afresh"));
        assert!(said("unknown 10.77.0.2").contains("had counted nothing"));
        assert_eq!(said("error x"), "the daemon answered: error x");
    }

    #[test]
    fn targets_are_addresses_or_ranges_never_the_world() {
        assert_eq!(
            "203.0.113.5".parse(),
            Ok(Target::Addr("203.0.113.5".parse().unwrap()))
        );
        assert_eq!(
            "::ffff:203.0.113.5".parse(),
            Ok(Target::Addr("203.0.113.5".parse().unwrap()))
        );
        assert_eq!(
            "203.0.113.5/32".parse(),
            Ok(Target::Addr("203.0.113.5".parse().unwrap()))
        );
        assert_eq!(
            "203.0.113.77/24".parse(),
            Ok(Target::Net("203.0.113.0/24".parse().unwrap()))
        );
        assert!("0.0.0.0/0".parse::<Target>().is_err());
        assert!("10.0.0.0/7".parse::<Target>().is_err());
        assert!("2001:db8::/16".parse::<Target>().is_err());
        assert!("example.org".parse::<Target>().is_err());
    }
}
