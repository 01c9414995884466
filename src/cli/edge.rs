//! `edge lookup`, `edge update`, `edge what-if`: the edge's lists from the command line,
//! read from the files the daemon reads (the country database, the feeds' kept copies).

use std::net::IpAddr;
use std::time::Duration;

use extsecurity::config::{Config, EdgeConfig};
use extsecurity::edge::{Networks, country, feed, fetch, lookup, what_if};
use extsecurity::exits;

/// `[edge]`, or a line saying it is off.
fn edge_of(config: &Config) -> Option<&EdgeConfig> {
    if config.edge.is_none() {
        println!("[edge] is off: nothing is dropped before Asterisk but the bans (doc/edge.md)");
    }
    config.edge.as_ref()
}

/// The country database, when the rule uses one; what went wrong said on stderr.
fn open_db(edge: &EdgeConfig) -> Option<country::Db> {
    let c = edge.countries.as_ref()?;
    fetch::open_db(&c.file)
        .inspect_err(|e| eprintln!("extsecurity: {e} (run extsecurity edge update)"))
        .ok()
}

/// What the daemon's lists are made of, read from its files once: the country
/// database and each feed's kept copy (a what-if asks about every address of a log).
struct Lists {
    db: Option<country::Db>,
    feeds: Vec<(String, Networks)>,
}

impl Lists {
    fn read(edge: &EdgeConfig) -> Lists {
        let feeds = edge
            .feeds
            .iter()
            .filter_map(|url| {
                let (_, body) = fetch::load(&edge.feed_dir, url)?;
                let list = feed::read(&body, &[]).ok()?;
                Some((url.clone(), list.networks))
            })
            .collect();
        Lists {
            db: open_db(edge),
            feeds,
        }
    }

    /// What the files say of `ip` — its country, the feeds listing it — and the
    /// chain's verdict on it.
    fn judged(
        &self,
        edge: &EdgeConfig,
        ip: IpAddr,
    ) -> (Option<String>, Vec<String>, lookup::Verdict) {
        let country = self.db.as_ref().and_then(|db| db.country(ip));
        let feeds: Vec<String> = self
            .feeds
            .iter()
            .filter(|(_, nets)| nets.contains(ip))
            .map(|(url, _)| url.clone())
            .collect();
        let facts = lookup::Facts {
            country: country.as_deref(),
            db_read: self.db.is_some(),
            feeds: &feeds,
        };
        let verdict = lookup::verdict(edge, ip, &facts);
        (country, feeds, verdict)
    }
}

/// A judge of addresses as the daemon's chain judges them, from the files.
fn judge(edge: &EdgeConfig) -> impl FnMut(IpAddr) -> lookup::Verdict + '_ {
    let lists = Lists::read(edge);
    move |ip| lists.judged(edge, ip).2
}

pub(crate) fn edge_lookup(config: &Config, ip: IpAddr) -> u8 {
    let Some(edge) = edge_of(config) else {
        return exits::OK;
    };
    let lists = Lists::read(edge);
    let (country, feeds, verdict) = lists.judged(edge, ip);
    match (&edge.countries, &country) {
        (None, _) => println!("country: no country rule (allow_countries, deny_countries)"),
        (Some(c), Some(code)) => println!("country: {code} ({})", c.file.display()),
        (Some(c), None) if lists.db.is_some() => println!(
            "country: none ({} places {ip} in no country)",
            c.file.display()
        ),
        (Some(_), None) => println!("country: unknown (no database)"),
    }
    match (edge.feeds.len(), feeds.len()) {
        (0, _) => println!("feeds: none configured"),
        (n, 0) => println!("feeds: listed by none of {n}"),
        (_, _) => println!("feeds: listed by {}", feeds.join(", ")),
    }
    println!("edge: {ip} {}", lookup::said(edge, &verdict));
    exits::OK
}

pub(crate) fn edge_what_if(config: &Config, since: Duration) -> u8 {
    let Some(edge) = edge_of(config) else {
        return exits::OK;
    };
    let cutoff = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::try_from(since).unwrap_or(jiff::SignedDuration::ZERO))
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned_datetime(extsecurity::clock::local_zone())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string();
    let mut judge = judge(edge);
    let mut replay = what_if::WhatIf::default();
    for path in extsecurity::report::with_rotations_and_backups(&config.log_file) {
        let read = extsecurity::alert_log::open_log(&path).and_then(|input| {
            extsecurity::alert_log::for_each_line(input, |line| {
                if let Some(line) = line {
                    replay.add_line(line, &cutoff, &mut judge);
                }
            })
        });
        if let Err(e) = read {
            eprintln!("extsecurity: {}: {e}", path.display());
            return exits::LOG;
        }
    }
    let verb = if edge.dry_run {
        "would stop (dry_run is on: nothing is dropped yet)"
    } else {
        "would have stopped"
    };
    println!("since {cutoff}, from {}:", config.log_file.display());
    println!(
        "  {} of {} calls and {} of {} alerts came from addresses the edge {verb}",
        replay.calls_stopped, replay.calls, replay.alerts_stopped, replay.alerts
    );
    println!(
        "  {} such addresses; {} alerting addresses would still reach Asterisk (the bans catch them)",
        replay.stopped_sources, replay.alerting_passed
    );
    for (list, n) in &replay.by_list {
        println!("  {list}: {n} alerts");
    }
    known_addresses(config, &mut judge)
}

/// The accounts' own addresses the lists would drop: the lock-outs to fix first.
fn known_addresses(config: &Config, judge: &mut impl FnMut(IpAddr) -> lookup::Verdict) -> u8 {
    let Some(fraud) = &config.fraud else {
        println!("accounts: [fraud] is off, so no account's addresses are known to check");
        return exits::OK;
    };
    let state = extsecurity::state_file::StateFile::new(&fraud.state_file);
    let accounts = match state.load::<extsecurity::fraud::guard::Snapshot>() {
        Ok(snapshot) => snapshot.map(|s| s.accounts).unwrap_or_default(),
        Err(e) => {
            eprintln!(
                "extsecurity: cannot read {}: {e} (run as root)",
                fraud.state_file.display()
            );
            return exits::FRAUD;
        }
    };
    let known = accounts.iter().flat_map(|(name, account)| {
        account
            .addresses
            .iter()
            .map(move |seen| (name.as_str(), seen.ip))
    });
    let hit = what_if::known_hit(known, judge);
    match hit.len() {
        0 => println!("accounts: none of the addresses your accounts used is dropped"),
        n => {
            println!(
                "accounts: {n} addresses your accounts used WOULD BE DROPPED (add them to trusted_networks, or allow their country):"
            );
            for (account, ip, list) in hit {
                println!("  {account} from {ip}: {list}");
            }
        }
    }
    exits::OK
}

/// What `check-config` says of the lists: the country database (read, as the daemon
/// will) and each feed's kept copy.
pub(crate) fn summary(edge: &EdgeConfig) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(c) = &edge.countries {
        let rule = match &c.rule {
            extsecurity::config::CountryRule::Allow(l) => format!("only {} let in", l.join(", ")),
            extsecurity::config::CountryRule::Deny(l) => format!("{} kept out", l.join(", ")),
        };
        let db = fetch::open_db(&c.file).and_then(|db| Ok((db.built(), db.refused(&c.rule, &[])?)));
        out.push(match db {
            Ok((built, refused)) => format!(
                "countries: {rule}; {} built {}: {} of its {} networks refused",
                c.file.display(),
                jiff::Timestamp::from_second(built as i64)
                    .map(|t| t.strftime("%Y-%m-%d").to_string())
                    .unwrap_or_default(),
                refused.refused,
                refused.placed
            ),
            Err(e) => format!("countries: {rule}; NOT IN FORCE: {e} (run extsecurity edge update)"),
        });
    }
    for url in &edge.feeds {
        out.push(match fetch::load(&edge.feed_dir, url) {
            Some((meta, body)) => {
                let age = extsecurity::clock::unix_now().saturating_sub(meta.fetched);
                let entries = feed::read(&body, &[]).map(|l| l.entries).unwrap_or(0);
                format!(
                    "feed {url}: kept copy of {entries} entries, {} old",
                    extsecurity::clock::time_left(Duration::from_secs(age))
                )
            }
            None => format!("feed {url}: no copy kept yet (the daemon fetches it at start)"),
        });
    }
    out
}

/// `{year}` and `{month}` of `url` for the month `back` months before now.
fn for_month(url: &str, back: i8) -> String {
    let now = jiff::Timestamp::now().strftime("%Y %m").to_string();
    let (y, m) = now.split_once(' ').unwrap_or(("1970", "01"));
    let months =
        y.parse::<i32>().unwrap_or(1970) * 12 + m.parse::<i32>().unwrap_or(1) - 1 - i32::from(back);
    url.replace("{year}", &format!("{:04}", months / 12))
        .replace("{month}", &format!("{:02}", months % 12 + 1))
}

pub(crate) fn edge_update(config: &Config, url: Option<String>) -> u8 {
    let Some(edge) = edge_of(config) else {
        return exits::CONFIG;
    };
    let Some(c) = &edge.countries else {
        eprintln!(
            "extsecurity: no country rule in [edge] (allow_countries or deny_countries): nothing to update"
        );
        return exits::CONFIG;
    };
    let template = url.unwrap_or_else(|| edge.country_url.clone());
    // DB-IP publishes on the first of the month: early on, last month's is the newest.
    let mut tried = Vec::new();
    let mut body = None;
    for back in [0, 1] {
        let url = for_month(&template, back);
        if tried.contains(&url) {
            break;
        }
        match fetch::fetch(&url, None) {
            Ok(fetch::Fetched::Body { body: b, .. }) => {
                body = Some((url, b));
                break;
            }
            Ok(fetch::Fetched::Unchanged) => {}
            Err(e) => eprintln!("extsecurity: {url}: {e}"),
        }
        tried.push(url);
    }
    let Some((url, bytes)) = body else {
        eprintln!(
            "extsecurity: no country database fetched; {} is left as it is",
            c.file.display()
        );
        return exits::EDGE;
    };
    let bytes = match gunzipped(bytes) {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "extsecurity: {url}: {e}; {} is left as it is",
                c.file.display()
            );
            return exits::EDGE;
        }
    };
    let checked = country::Db::from_bytes(bytes.clone(), url.clone()).and_then(|db| {
        let placed = db.refused(&c.rule, &[])?.placed;
        Ok((db.built(), placed))
    });
    let (built, placed) = match checked {
        Ok(found) => found,
        Err(e) => {
            eprintln!("extsecurity: {e}; {} is left as it is", c.file.display());
            return exits::EDGE;
        }
    };
    if let Err(e) = put(&c.file, &bytes) {
        eprintln!("extsecurity: cannot write {}: {e}", c.file.display());
        return exits::EDGE;
    }
    let built = jiff::Timestamp::from_second(built as i64)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default();
    println!(
        "{}: {placed} networks placed in countries, built {built}, from {url}; a running daemon reads it within a second",
        c.file.display()
    );
    exits::OK
}

/// A `.gz` body unpacked (at most 256 MiB), any other as it is.
fn gunzipped(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    use std::io::Read;
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .take(256 << 20)
        .read_to_end(&mut out)
        .map_err(|e| format!("not a whole gzip file ({e})"))?;
    Ok(out)
}

/// Written beside and renamed: the daemon never reads half a database.
fn put(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
