//! The edge's lists kept in the kernel (doc/edge.md): a thread that fills the feed and
//! country sets from the last good copies at start, fetches each feed every
//! `feed_refresh_seconds`, reads the country database again when its file changes or on
//! SIGHUP, and fills both again when the table was rebuilt. A list that cannot be had
//! leaves the one in force; nothing here can stop the call check or the bans.

use crate::control::status::{Country as CountrySeen, Feed as FeedSeen};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::config::EdgeConfig;
use crate::daemon::Shared;
use crate::edge::{Networks, feed, fetch};
use crate::nftables::EdgeSet;

/// How often the thread looks at its clocks, files and the stop flag.
const TICK: Duration = Duration::from_secs(1);
/// A feed that could not be fetched is asked again after 10 s, then twice as long
/// each time, up to this (the network may not be up yet at boot).
const RETRY: Duration = Duration::from_secs(300);
const FIRST_RETRY: Duration = Duration::from_secs(10);

/// What the lists hold now, for `status` and the metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Seen {
    pub feeds: Vec<FeedSeen>,
    pub country: Option<CountrySeen>,
}

/// The running thread.
pub struct Lists {
    pub config: EdgeConfig,
    pub table: String,
    stop: Arc<AtomicBool>,
    again: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Lists {
    /// Starts the thread, unless there is nothing to keep.
    pub fn start(shared: &Arc<Shared>, config: &EdgeConfig, table: &str) -> Option<Lists> {
        if config.feeds.is_empty() && config.countries.is_none() {
            return None;
        }
        let (stop, again) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let mut keeper = Keeper::new(shared.clone(), config.clone(), table.to_string());
        let (s, a) = (stop.clone(), again.clone());
        let thread = std::thread::Builder::new()
            .name("edge-lists".into())
            .spawn(move || keeper.run(&s, &a))
            .ok()?;
        Some(Lists {
            config: config.clone(),
            table: table.to_string(),
            stop,
            again,
            thread: Some(thread),
        })
    }

    /// SIGHUP: the country database is read again and every feed asked again now.
    pub fn again(&self) {
        self.again.store(true, Ordering::Relaxed);
    }
}

/// Stops the thread without waiting for it: a fetch in flight (a minute at most) must
/// not hold a reload up. It writes nothing once told to stop.
impl Drop for Lists {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take();
    }
}

/// One feed as the thread keeps it.
struct Feed {
    url: String,
    meta: Option<fetch::Meta>,
    networks: Networks,
    entries: usize,
    due: Instant,
    error: Option<String>,
    /// Fetches failed in a row.
    failures: u32,
}

struct Keeper {
    shared: Arc<Shared>,
    config: EdgeConfig,
    table: String,
    /// Networks no list may drop: the LAN, this host, trusted networks and peers.
    never: Vec<ipnet::IpNet>,
    feeds: Vec<Feed>,
    country: Networks,
    country_seen: Option<CountrySeen>,
    country_mtime: Option<SystemTime>,
    rebuilt: u64,
}

impl Keeper {
    fn new(shared: Arc<Shared>, config: EdgeConfig, table: String) -> Keeper {
        let mut never = crate::edge::never_dropped().to_vec();
        never.extend(config.pass.iter().copied());
        never.extend(
            crate::nftables::own_addresses()
                .into_iter()
                .map(ipnet::IpNet::from),
        );
        let rebuilt = shared.metrics.bans.rebuilt_total();
        Keeper {
            shared,
            config,
            table,
            never,
            feeds: Vec::new(),
            country: Networks::default(),
            country_seen: None,
            country_mtime: None,
            rebuilt,
        }
    }

    fn run(&mut self, stop: &AtomicBool, again: &AtomicBool) {
        self.load_kept_feeds();
        self.fill_feeds();
        self.read_country();
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let now = Instant::now();
            if again.swap(false, Ordering::Relaxed) {
                self.country_mtime = None;
                self.feeds.iter_mut().for_each(|f| f.due = now);
            }
            let rebuilt = self.shared.metrics.bans.rebuilt_total();
            if rebuilt != self.rebuilt {
                self.rebuilt = rebuilt;
                // The logins in the kernel went with the table: let the next ones in.
                self.shared
                    .known
                    .0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
                self.fill_feeds();
                self.fill(EdgeSet::Country, &self.country.clone());
            }
            if self.feeds.iter().any(|f| f.due <= now) {
                self.refresh_feeds(stop);
            }
            if self.country_file_changed() {
                self.read_country();
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
            self.publish();
            std::thread::sleep(TICK);
        }
    }

    /// The copies kept at the last run: in force before any server is asked.
    fn load_kept_feeds(&mut self) {
        let now = Instant::now();
        for url in &self.config.feeds {
            let mut feed = Feed {
                url: url.clone(),
                meta: None,
                networks: Networks::default(),
                entries: 0,
                due: now,
                error: None,
                failures: 0,
            };
            if let Some((meta, body)) = fetch::load(&self.config.feed_dir, url)
                && let Ok(list) = feed::read(&body, &self.never)
            {
                let age = crate::clock::unix_now().saturating_sub(meta.fetched);
                feed.due = now
                    + self
                        .config
                        .feed_refresh
                        .saturating_sub(Duration::from_secs(age));
                feed.networks = list.networks;
                feed.entries = list.entries;
                feed.meta = Some(meta);
                tracing::info!(
                    feed = url,
                    entries = feed.entries,
                    "edge: feed's kept copy in force, {age} s old"
                );
            }
            self.feeds.push(feed);
        }
    }

    fn refresh_feeds(&mut self, stop: &AtomicBool) {
        let mut changed = false;
        let now = Instant::now();
        let (never, dir, every) = (
            self.never.clone(),
            self.config.feed_dir.clone(),
            self.config.feed_refresh,
        );
        for f in self.feeds.iter_mut().filter(|f| f.due <= now) {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            match refresh(f, &never, &dir) {
                Ok(new) => {
                    changed |= new;
                    f.error = None;
                    f.failures = 0;
                    f.due = Instant::now() + every;
                }
                Err(why) => {
                    if f.error.as_deref() != Some(why.as_str()) {
                        tracing::warn!(
                            feed = f.url,
                            "edge: feed refused or unreachable: {why}; {} kept",
                            match f.entries {
                                0 => "no copy yet, nothing".to_string(),
                                n => format!("the last good copy ({n} entries)"),
                            }
                        );
                    }
                    f.error = Some(why);
                    f.failures += 1;
                    f.due = Instant::now() + retry_after(f.failures).min(every);
                }
            }
        }
        if changed && !stop.load(Ordering::Relaxed) {
            self.fill_feeds();
        }
    }

    /// Every feed's networks, merged, into the feed sets.
    fn fill_feeds(&self) {
        let all = self
            .feeds
            .iter()
            .fold(Networks::default(), |all, f| all.union(&f.networks));
        self.fill(EdgeSet::Feed, &all);
    }

    fn fill(&self, set: EdgeSet, nets: &Networks) {
        let started = Instant::now();
        match crate::nftables::fill(&self.table, set, nets) {
            Ok(()) => tracing::info!(
                "edge: {} sets filled with {} networks in {} ms",
                set.name(),
                nets.len(),
                started.elapsed().as_millis()
            ),
            Err(e) => tracing::warn!(
                "edge: the {} set could not be filled ({e}); the one in force is kept",
                set.name()
            ),
        }
    }

    fn country_file_changed(&self) -> bool {
        let Some(c) = &self.config.countries else {
            return false;
        };
        let mtime = std::fs::metadata(&c.file).and_then(|m| m.modified()).ok();
        mtime.is_some() && mtime != self.country_mtime
    }

    /// Reads the database and swaps the country sets; a database that cannot be read
    /// leaves the sets as they are.
    fn read_country(&mut self) {
        let Some(c) = self.config.countries.clone() else {
            return;
        };
        self.country_mtime = std::fs::metadata(&c.file).and_then(|m| m.modified()).ok();
        let started = Instant::now();
        let file = c.file.display().to_string();
        let read = fetch::open_db(&c.file)
            .and_then(|db| Ok((db.built(), db.refused(&c.rule, &self.never)?)));
        match read {
            Ok((built, refused)) => {
                tracing::info!(
                    "edge: country database {file} (built {}): {} of its {} networks are in refused countries, {} set entries; read in {} ms",
                    jiff::Timestamp::from_second(built as i64)
                        .map(|t| t.strftime("%Y-%m-%d").to_string())
                        .unwrap_or_default(),
                    refused.refused,
                    refused.placed,
                    refused.networks.len(),
                    started.elapsed().as_millis()
                );
                self.fill(EdgeSet::Country, &refused.networks);
                self.country_seen = Some(CountrySeen {
                    file,
                    networks: refused.networks.len(),
                    placed: refused.placed,
                    built: Some(built),
                    error: None,
                });
                self.country = refused.networks;
            }
            Err(e) => {
                tracing::warn!(
                    "edge: {e}; countries {} (run extsecurity edge update)",
                    match self.country.is_empty() {
                        true => "not dropped yet",
                        false => "dropped as the last database said",
                    }
                );
                let seen = self.country_seen.get_or_insert_with(|| CountrySeen {
                    file: file.clone(),
                    ..Default::default()
                });
                seen.error = Some(e.to_string());
            }
        }
    }

    fn publish(&self) {
        let seen = Seen {
            feeds: self
                .feeds
                .iter()
                .map(|f| FeedSeen {
                    url: f.url.clone(),
                    entries: f.entries,
                    fetched: f.meta.as_ref().map(|m| m.fetched),
                    error: f.error.clone(),
                })
                .collect(),
            country: self.country_seen.clone(),
        };
        *self.shared.edge.lock().unwrap_or_else(|e| e.into_inner()) = seen;
    }
}

/// How long after its `failures`th failure in a row a feed is asked again.
fn retry_after(failures: u32) -> Duration {
    FIRST_RETRY
        .saturating_mul(1 << failures.saturating_sub(1).min(8))
        .min(RETRY)
}

/// Asks for one feed; `Ok(true)` when a new list is in force, `Ok(false)` when the
/// server said it had not changed.
fn refresh(f: &mut Feed, never: &[ipnet::IpNet], dir: &std::path::Path) -> Result<bool, String> {
    let (body, etag, last_modified) = match fetch::fetch(&f.url, f.meta.as_ref())? {
        fetch::Fetched::Unchanged => {
            // Confirmed current: its age starts again, or a list its server keeps
            // answering 304 for would look stale.
            if let Some(meta) = f.meta.as_mut() {
                meta.fetched = crate::clock::unix_now();
                let _ = fetch::store_meta(dir, meta);
            }
            return Ok(false);
        }
        fetch::Fetched::Body {
            body,
            etag,
            last_modified,
        } => (body, etag, last_modified),
    };
    let list = feed::read(&body, never).map_err(|e| e.to_string())?;
    if !list.left_out.is_empty() {
        let shown: Vec<String> = list
            .left_out
            .iter()
            .take(3)
            .map(|n| n.to_string())
            .collect();
        tracing::warn!(
            feed = f.url,
            "edge: {} entries left out: they touch the LAN, this host or a trusted network ({}{})",
            list.left_out.len(),
            shown.join(", "),
            if list.left_out.len() > 3 { ", …" } else { "" }
        );
    }
    let meta = fetch::Meta {
        url: f.url.clone(),
        etag,
        last_modified,
        fetched: crate::clock::unix_now(),
    };
    if let Err(e) = fetch::store(dir, &meta, &body) {
        tracing::warn!(
            feed = f.url,
            "edge: the copy cannot be kept in {} ({e}); in force until a restart",
            dir.display()
        );
    }
    tracing::info!(feed = f.url, entries = list.entries, "edge: feed fetched");
    f.meta = Some(meta);
    f.networks = list.networks;
    f.entries = list.entries;
    Ok(true)
}

/// How often one address's day is started again: a phone re-registers every minute or
/// hour, and each `SuccessfulAuth` need not reach the kernel.
const KNOWN_AGAIN: Duration = Duration::from_secs(3600);

/// Addresses that logged in lately, for the edge to let through (doc/edge.md): a
/// travelling user in a refused country, a phone behind an address a feed lists.
pub struct Known(std::sync::Mutex<lru::LruCache<std::net::IpAddr, Instant>>);

impl Default for Known {
    fn default() -> Known {
        Known(std::sync::Mutex::new(lru::LruCache::new(
            std::num::NonZeroUsize::new(65_536).expect("not zero"),
        )))
    }
}

/// A `SuccessfulAuth` from `ip`: it passes the edge for a day, whatever its country or
/// a feed says (the bans, before the edge, still drop it if it misbehaves).
pub fn logged_in(shared: &Shared, ip: std::net::IpAddr) {
    let config = shared.config();
    let Some(nft) = config.nftables.as_ref().filter(|n| n.edge.is_some()) else {
        return;
    };
    if shared
        .bans
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .is_none()
    {
        return;
    }
    {
        let mut known = shared.known.0.lock().unwrap_or_else(|e| e.into_inner());
        if known.get(&ip).is_some_and(|at| at.elapsed() < KNOWN_AGAIN) {
            return;
        }
        known.put(ip, Instant::now());
    }
    let done = crate::nftables::netlink::Socket::open()
        .and_then(|mut s| s.know(&nft.table, ip, crate::nftables::KNOWN_FOR));
    match done {
        Ok(()) => tracing::debug!(%ip, "edge: logged in, passes for a day"),
        Err(e) => {
            shared
                .known
                .0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop(&ip);
            tracing::warn!(%ip, "edge: a login could not be let through ({e})");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_failing_feed_is_asked_again_sooner_first() {
        let secs: Vec<u64> = (1..=7).map(|n| super::retry_after(n).as_secs()).collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 300, 300]);
    }
}
