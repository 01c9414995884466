//! A MaxMind-format country database (DB-IP Lite country, GeoLite2-Country) turned into
//! the addresses the edge drops. `deny_countries`: every network the database places in
//! one of them. `allow_countries`: every address but the networks it places in one of
//! them — unallocated space, which it places nowhere, included. Never the LAN, this
//! host or a trusted network.

use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;

use super::{Networks, overlap};
use crate::config::CountryRule;

/// Why a database cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0} is no MaxMind-format database: {1}")]
    Format(String, maxminddb::MaxMindDbError),
    #[error("{0} places no address in any country (a city or ASN database?)")]
    NoCountries(String),
}

/// An opened database.
pub struct Db {
    reader: maxminddb::Reader<Vec<u8>>,
    path: String,
}

/// What a database says of the rule: the networks to drop, and how many it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub networks: Networks,
    /// Networks in the database with a country.
    pub placed: usize,
    /// Of them, in a refused country.
    pub refused: usize,
}

impl Db {
    pub fn from_bytes(bytes: Vec<u8>, name: String) -> Result<Db, DbError> {
        let reader =
            maxminddb::Reader::from_source(bytes).map_err(|e| DbError::Format(name.clone(), e))?;
        Ok(Db { reader, path: name })
    }

    /// When the database was built (its metadata), seconds since the epoch.
    pub fn built(&self) -> u64 {
        self.reader.metadata().build_epoch
    }

    /// The country the database places `ip` in, `None` when it places it nowhere.
    pub fn country(&self, ip: IpAddr) -> Option<String> {
        let ip = match ip {
            IpAddr::V6(v6) if self.reader.metadata().ip_version == 4 => {
                IpAddr::V4(v6.to_ipv4_mapped()?)
            }
            ip => ip,
        };
        decode_country(&self.reader.lookup(ip).ok()?)
    }

    /// What `rule` drops (see the module), never touching `never` (the LAN, this host,
    /// trusted networks), merged.
    pub fn refused(&self, rule: &CountryRule, never: &[IpNet]) -> Result<Refused, DbError> {
        let mut by_record: HashMap<usize, bool> = HashMap::new();
        let (mut nets, mut allowed, mut placed) = (Vec::new(), Vec::new(), 0);
        let all = self
            .reader
            .networks(Default::default())
            .map_err(|e| DbError::Format(self.path.clone(), e))?;
        for found in all {
            let found = found.map_err(|e| DbError::Format(self.path.clone(), e))?;
            let Some(offset) = found.offset() else {
                continue;
            };
            let refused = match by_record.get(&offset) {
                Some(r) => *r,
                None => {
                    let Some(country) = decode_country(&found) else {
                        by_record.insert(offset, false);
                        continue;
                    };
                    let r = rule.refuses(&country);
                    by_record.insert(offset, r);
                    r
                }
            };
            placed += 1;
            let Some(net) = found.network().ok().and_then(ip_net) else {
                continue;
            };
            match refused {
                true if !never.iter().any(|n| overlap(n, &net)) => nets.push(net),
                true => {}
                false => allowed.push(net),
            }
        }
        if placed == 0 {
            return Err(DbError::NoCountries(self.path.clone()));
        }
        let refused = placed - allowed.len();
        let networks = match rule {
            CountryRule::Deny(_) => Networks::of(nets),
            CountryRule::Allow(_) => {
                Networks::of(allowed.into_iter().chain(never.iter().copied())).complement()
            }
        };
        Ok(Refused {
            networks,
            placed,
            refused,
        })
    }
}

/// The country's code, or the registered country's (GeoLite2 leaves `country` out for
/// some networks).
fn decode_country<S: AsRef<[u8]>>(found: &maxminddb::LookupResult<'_, S>) -> Option<String> {
    for key in ["country", "registered_country"] {
        if let Ok(Some(code)) = found.decode_path::<String>(&maxminddb::path![key, "iso_code"]) {
            return Some(code.to_ascii_uppercase());
        }
    }
    None
}

/// The crate's network as ours; an IPv4 network the tree keeps under `::/96` as IPv4.
fn ip_net(net: ipnetwork::IpNetwork) -> Option<IpNet> {
    match net {
        ipnetwork::IpNetwork::V4(n) => ipnet::Ipv4Net::new(n.network(), n.prefix())
            .ok()
            .map(IpNet::V4),
        ipnetwork::IpNetwork::V6(n) => {
            let (ip, prefix) = (n.network(), n.prefix());
            match ip.to_ipv4() {
                Some(v4) if prefix >= 96 && ip.segments()[..6] == [0; 6] => {
                    ipnet::Ipv4Net::new(v4, prefix - 96).ok().map(IpNet::V4)
                }
                _ => ipnet::Ipv6Net::new(ip, prefix).ok().map(IpNet::V6),
            }
        }
    }
}
