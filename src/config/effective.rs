//! The effective settings as `key = value` lines: what `check-config` prints and what a
//! reload compares, key by key, to say what changed.

use std::fmt::Write as _;

use super::{Config, Secret, SecretSource};

/// One setting: its dotted key (`daemon.listen`) and its value as TOML writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    pub value: String,
    /// What the value hides (a secret written inline), compared but never shown.
    hidden: Option<String>,
}

impl Setting {
    fn new(key: String, value: String) -> Setting {
        Setting {
            key,
            value,
            hidden: None,
        }
    }

    /// Whether `other` (the same key) has another value.
    pub fn differs(&self, other: &Setting) -> bool {
        (&self.value, &self.hidden) != (&other.value, &other.hidden)
    }

    /// The key without its table: `listen`; `class.international.hours` in `[fraud]`.
    pub fn name(&self) -> &str {
        self.key.split_once('.').map_or(&self.key, |(_, rest)| rest)
    }
}

/// A table of settings, `None` for the top level; `absent` when it is off.
pub struct Table {
    pub name: Option<&'static str>,
    pub settings: Vec<Setting>,
    /// Why the table is not there, when it is not (`[ami] absent: …`).
    pub absent: Option<&'static str>,
}

/// The whole configuration, table by table, in the order `dist/extsecurity.toml` has.
pub fn tables(c: &Config) -> Vec<Table> {
    let mut out = vec![
        top(c),
        memory(c),
        daemon(c),
        optional("ami", c.ami.is_some(), "the AMI watcher is off", || ami(c)),
        optional(
            "crowdsec",
            c.crowdsec.is_some(),
            "alerts are not pushed to CrowdSec",
            || crowdsec(c),
        ),
    ];
    out.push(nftables(c));
    out.push(optional(
        "edge",
        c.edge.is_some(),
        "nothing is dropped before Asterisk sees it",
        || edge(c),
    ));
    out.push(fraud(c));
    out.push(optional(
        "notify",
        c.notify.is_some(),
        "no e-mail or webhook notifications",
        || notify(c),
    ));
    out
}

/// Every setting of every table present, for comparing two configurations.
pub fn settings(c: &Config) -> Vec<Setting> {
    let mut all = Vec::new();
    for t in tables(c) {
        match t.absent {
            // An absent table is one setting: switching it on or off is a change.
            Some(_) => all.push(Setting::new(
                format!("[{}]", t.name.unwrap_or_default()),
                "absent".into(),
            )),
            None => all.extend(t.settings),
        }
    }
    all
}

/// Renders the tables as TOML with comments, for `check-config`.
pub fn render(c: &Config) -> String {
    let mut out = String::new();
    for t in tables(c) {
        if let Some(name) = t.name {
            match t.absent {
                Some(why) => {
                    let _ = writeln!(out, "\n# [{name}] absent: {why}");
                    continue;
                }
                None => {
                    let _ = writeln!(out, "\n[{name}]");
                }
            }
        }
        for s in &t.settings {
            let _ = writeln!(out, "{} = {}", s.name(), s.value);
        }
    }
    out
}

fn optional(
    name: &'static str,
    on: bool,
    why: &'static str,
    settings: impl FnOnce() -> Table,
) -> Table {
    match on {
        true => settings(),
        false => Table {
            name: Some(name),
            settings: Vec::new(),
            absent: Some(why),
        },
    }
}

/// A TOML string.
fn string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML array of strings.
fn list<T: ToString>(items: &[T]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| string(&s.to_string())).collect();
    format!("[{}]", quoted.join(", "))
}

/// Builds the settings of one table, each key prefixed with the table's name.
struct Builder {
    prefix: &'static str,
    settings: Vec<Setting>,
}

impl Builder {
    fn new(prefix: &'static str) -> Builder {
        Builder {
            prefix,
            settings: Vec::new(),
        }
    }

    fn key(&self, key: &str) -> String {
        match self.prefix {
            "" => key.to_string(),
            p => format!("{p}.{key}"),
        }
    }

    fn set(mut self, key: &str, value: impl ToString) -> Builder {
        let key = self.key(key);
        self.settings.push(Setting::new(key, value.to_string()));
        self
    }

    /// A secret shows its file, or that it is set inline; its value is compared only.
    fn secret(mut self, key: &str, secret: Option<&Secret>) -> Builder {
        let setting = match secret.map(|s| &s.source) {
            None => Setting::new(self.key(key), string("")),
            Some(SecretSource::Inline(value)) => Setting {
                key: self.key(key),
                value: string("(set, not shown)"),
                hidden: Some(value.clone()),
            },
            Some(SecretSource::File(path)) => Setting::new(
                self.key(&format!("{key}_file")),
                string(&path.display().to_string()),
            ),
        };
        self.settings.push(setting);
        self
    }

    fn table(self, name: Option<&'static str>) -> Table {
        Table {
            name,
            settings: self.settings,
            absent: None,
        }
    }
}

fn top(c: &Config) -> Table {
    Builder::new("")
        .set("log_file", string(&c.log_file.display().to_string()))
        .set("tarpit_seconds", c.tarpit.as_secs_f64())
        .set(
            "callerid_num_must_be_numeric",
            c.callerid_num_must_be_numeric,
        )
        .set("exten_must_be_numeric", c.exten_must_be_numeric)
        .set("exten_min_length", c.exten_min_length)
        .set("exten_max_length", c.exten_max_length)
        .set("blocked_extensions", list(c.blocked_extensions.sources()))
        .set("blocked_user_agents", list(c.blocked_user_agents.sources()))
        .set("trusted_networks", list(&c.trusted_networks))
        .set("log_ok_calls", c.log_ok_calls)
        .table(None)
}

fn memory(c: &Config) -> Table {
    let m = &c.memory;
    Builder::new("memory")
        .set("enabled", m.enabled)
        .set("window_seconds", m.window.as_secs())
        .set("max_extensions", m.max_extensions)
        .set("max_calls", m.max_calls)
        .set("repeat_offender_seconds", m.repeat_offender.as_secs())
        .set("max_tracked_ips", m.max_tracked_ips)
        .table(Some("memory"))
}

fn daemon(c: &Config) -> Table {
    let d = &c.daemon;
    let control = d.control_socket.as_deref().map(|p| p.display().to_string());
    let metrics = d.metrics_listen.map(|a| a.to_string()).unwrap_or_default();
    Builder::new("daemon")
        .set("fastagi", d.fastagi)
        .set("listen", string(&d.listen.to_string()))
        .set("max_connections", d.max_connections)
        .set("listen_backlog", d.listen_backlog)
        .set("control_socket", string(&control.unwrap_or_default()))
        .set("idle_timeout_seconds", d.idle_timeout.as_secs_f64())
        .set("max_concurrent_tarpits", d.max_concurrent_tarpits)
        .set("metrics_listen", string(&metrics))
        .set("allowed_clients", list(&d.allowed_clients))
        .secret("secret", d.secret.as_ref())
        .table(Some("daemon"))
}

fn ami(c: &Config) -> Table {
    let a = c.ami.as_ref().expect("present");
    Builder::new("ami")
        .set("address", string(&a.address.to_string()))
        .set("username", string(&a.username))
        .secret("secret", Some(&a.secret))
        .set(
            "auth",
            string(match a.auth {
                crate::config::AmiAuth::Md5 => "md5",
                crate::config::AmiAuth::Plain => "plain",
            }),
        )
        .set("tls", a.tls.is_some())
        .set(
            "tls_ca_file",
            string(
                &a.tls
                    .as_ref()
                    .and_then(|t| t.ca_file.as_ref())
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
        )
        .set(
            "tls_server_name",
            string(
                a.tls
                    .as_ref()
                    .and_then(|t| t.server_name.as_deref())
                    .unwrap_or_default(),
            ),
        )
        .set("ping_interval_seconds", a.ping_interval.as_secs_f64())
        .set("window_seconds", a.limits.window.as_secs())
        .set("max_auth_failures", a.limits.auth_failures)
        .set("max_unknown_accounts", a.limits.unknown_accounts)
        .set("max_error_events", a.limits.error_events)
        .set(
            "max_unauthenticated_requests",
            a.limits.unauthenticated_requests,
        )
        .table(Some("ami"))
}

fn crowdsec(c: &Config) -> Table {
    let cs = c.crowdsec.as_ref().expect("present");
    Builder::new("crowdsec")
        .set("lapi_url", string(&cs.lapi_url))
        .set("machine_id", string(&cs.machine_id))
        .secret("password", Some(&cs.password))
        .set("ban_duration", string(&cs.ban_duration))
        .set("batch_size", cs.batch_size)
        .set("state_file", string(&cs.state_file.display().to_string()))
        .secret("bouncer_key", cs.bouncer_key.as_ref())
        .set("pull_seconds", cs.pull.as_secs())
        .table(Some("crowdsec"))
}

fn notify(c: &Config) -> Table {
    let n = c.notify.as_ref().expect("present");
    let mut b = Builder::new("notify");
    if let Some(smtp) = &n.smtp {
        b = b
            .set("smtp_server", string(&smtp.server))
            .set("smtp_port", smtp.port)
            .set("smtp_security", string(smtp.security.name()))
            .set("smtp_username", string(&smtp.username))
            .secret("smtp_password", smtp.password.as_ref())
            .set(
                "smtp_ca_file",
                string(
                    &smtp
                        .ca_file
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                ),
            )
            .set("mail_from", string(&smtp.from))
            .set("mail_to", format!("{:?}", smtp.to));
    }
    b.secret("webhook_url", n.webhook_url.as_ref())
        .set("digest_seconds", n.digest.as_secs())
        .set("queue_size", n.queue_size)
        .table(Some("notify"))
}

fn nftables(c: &Config) -> Table {
    let Some(n) = &c.nftables else {
        return Table {
            name: Some("nftables"),
            settings: Vec::new(),
            absent: Some("off: no kernel bans from the daemon"),
        };
    };
    Builder::new("nftables")
        .set("enabled", true)
        .set("ports", format!("{:?}", n.ports))
        .set("ban_seconds", n.ban.as_secs())
        .set("table", string(&n.table))
        .set("max_elements", n.max_elements)
        .set("ban_increment", n.increment.is_some())
        .set("ban_factor", n.increment.as_ref().map_or(1.0, |i| i.factor))
        .set(
            "ban_max_seconds",
            n.increment.as_ref().map_or(n.ban, |i| i.max).as_secs(),
        )
        .set(
            "ban_history_days",
            n.increment
                .as_ref()
                .map_or(0, |i| i.history.as_secs() / 86_400),
        )
        .set("state_file", string(&n.state_file.display().to_string()))
        .table(Some("nftables"))
}

fn edge(c: &Config) -> Table {
    let Some(e) = &c.edge else {
        return Builder::new("edge").table(Some("edge"));
    };
    let mut b = Builder::new("edge")
        .set("enabled", true)
        .set("rate_limit", e.rate_limit)
        .set("rate_burst", e.rate_burst)
        .set("dry_run", e.dry_run);
    if let Some(c) = &e.countries {
        b = match &c.rule {
            crate::config::CountryRule::Allow(l) => b.set("allow_countries", list(l)),
            crate::config::CountryRule::Deny(l) => b.set("deny_countries", list(l)),
        };
        b = b.set("country_file", string(&c.file.display().to_string()));
    }
    b.set("country_url", string(&e.country_url))
        .set("feeds", list(&e.feeds))
        .set("feed_refresh_seconds", e.feed_refresh.as_secs())
        .set("feed_dir", string(&e.feed_dir.display().to_string()))
        .table(Some("edge"))
}

fn fraud(c: &Config) -> Table {
    use crate::fraud::Class;
    use crate::fraud::limits::Rule;
    let Some(f) = &c.fraud else {
        return Table {
            name: Some("fraud"),
            settings: Vec::new(),
            absent: Some("off: outbound calls are not checked"),
        };
    };
    let d = &f.dial_plan;
    let path = |p: Option<&std::path::Path>| {
        string(&p.map(|p| p.display().to_string()).unwrap_or_default())
    };
    let mut b = Builder::new("fraud")
        .set("enabled", true)
        .set("country_code", string(&d.country_code))
        .set("international_prefix", string(&d.international_prefix))
        .set("national_prefix", string(&d.national_prefix))
        .set("outside_line_prefix", string(&d.outside_line_prefix))
        .set("emergency_numbers", list(&d.extra_emergency))
        .set("home_regions", list(&d.home_regions))
        .set("internal", list(d.internal.sources()))
        .set("feature_prefixes", list(&d.feature_prefixes))
        .set("blocked_prefixes", list(&f.blocked.to_vec()))
        .set("high_risk_file", path(f.high_risk_file.as_deref()))
        .set("learned_days", f.learned.as_secs() / 86_400)
        .set("quarantine_seconds", f.quarantine.as_secs())
        .set("known_address_seconds", f.known_address.as_secs())
        .set("new_address_days", f.new_address.as_secs() / 86_400)
        .set("takeover_window_seconds", f.takeover_window.as_secs())
        .set("state_file", path(Some(&f.state_file)))
        .set("max_accounts", f.max_accounts)
        .set("call_end", string(f.call_end.name()))
        .set("audit_dir", path(f.audit_dir.as_deref()));
    let limits = |b: Builder, prefix: &str, l: &crate::fraud::limits::ClassLimits| {
        let mut b = b
            .set(&format!("{prefix}.refuse"), l.refuse)
            .set(
                &format!("{prefix}.hours"),
                string(
                    &l.hours
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                ),
            )
            .set(&format!("{prefix}.max_seconds"), l.max_seconds);
        for rule in Rule::ALL {
            let level = l.level(rule);
            b = b.set(
                &format!("{prefix}.{rule}"),
                format!(
                    "{{ warning = {}, critical = {} }}",
                    level.warning, level.critical
                ),
            );
        }
        b
    };
    for class in Class::JUDGED {
        b = limits(b, &format!("class.{class}"), f.limits("", class));
    }
    for class in Class::JUDGED {
        b = limits(b, &format!("weak.{class}"), f.weak_limits(class));
    }
    for account in f.overridden_accounts() {
        for class in Class::JUDGED {
            b = limits(
                b,
                &format!("account.{}.{class}", string(account)),
                f.limits(account, class),
            );
        }
    }
    b.table(Some("fraud"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_fraud_table_reads_back_with_its_classes_and_accounts() {
        let c = config(
            "[fraud]\nenabled = true\ncountry_code = '49'\nblocked_prefixes = ['4919']\n\
             [fraud.class.international]\nhours = 'Mo-Fr 07:00-20:00'\n\
             [fraud.account.'call centre'.international]\ncalls_per_minute = { warning = 40, critical = 60 }\n",
        );
        let text = render(&c);
        assert!(text.contains("\n[fraud]\n"), "{text}");
        assert!(
            text.contains("class.international.hours = \"Mo-Fr 07:00-20:00\""),
            "{text}"
        );
        assert!(
            text.contains("account.\"call centre\".international.calls_per_minute = { warning = 40, critical = 60 }"),
            "{text}"
        );
        assert!(
            text.contains("weak.international.calls_per_minute = { warning = 2, critical = 3 }"),
            "{text}"
        );
        assert!(text.contains("audit_dir = \"/etc/asterisk\""), "{text}");
        let again = config(&text);
        assert_eq!(settings(&again), settings(&c));
        assert!(render(&config("")).contains("# [fraud] absent: off"));
        let edge = config(
            "[nftables]\nenabled = true\nports = [5060]\n[edge]\nenabled = true\ndry_run = true\n",
        );
        let text = render(&edge);
        assert!(
            text.contains(
                "\n[edge]\nenabled = true\nrate_limit = 50\nrate_burst = 100\ndry_run = true\n"
            ),
            "{text}"
        );
        assert_eq!(settings(&config(&text)), settings(&edge));
        let lists = config(
            "[nftables]\nenabled = true\nports = [5060]\n[edge]\nenabled = true\ndeny_countries = ['cn']\nfeeds = ['https://x.example/l']\n",
        );
        let text = render(&lists);
        assert!(
            text.contains(
                "deny_countries = [\"CN\"]\ncountry_file = \"/var/lib/extsecurity/country.mmdb\"\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("feeds = [\"https://x.example/l\"]\nfeed_refresh_seconds = 3600\n"),
            "{text}"
        );
        assert_eq!(settings(&config(&text)), settings(&lists));
        assert!(render(&config("")).contains("# [edge] absent: nothing is dropped"));
    }

    fn config(text: &str) -> Config {
        Config::from_toml(text, Path::new("t.toml")).unwrap()
    }

    #[test]
    fn the_rendering_reads_back_as_the_same_configuration() {
        let c = config(
            "trusted_networks = ['192.0.2.0/24']\n[ami]\nusername = 'u'\nsecret_file = '/etc/s'\n[nftables]\nenabled = true\n",
        );
        let text = render(&c);
        assert!(text.contains("\n[ami]\n"), "{text}");
        assert!(text.contains("secret_file = \"/etc/s\""), "{text}");
        assert!(text.contains("# [crowdsec] absent"), "{text}");
        let again = config(&text);
        assert_eq!(settings(&again), settings(&c));
    }

    #[test]
    fn an_inline_secret_is_compared_but_never_shown() {
        let a = config("[daemon]\nsecret = 'aaaaaaaaaaaaaaaa'\n");
        let b = config("[daemon]\nsecret = 'bbbbbbbbbbbbbbbb'\n");
        assert!(!render(&a).contains("aaaa"));
        let (sa, sb) = (settings(&a), settings(&b));
        let changed: Vec<&str> = sa
            .iter()
            .zip(&sb)
            .filter(|(x, y)| x.differs(y))
            .map(|(x, _)| x.key.as_str())
            .collect();
        assert_eq!(changed, ["daemon.secret"]);
    }
}
