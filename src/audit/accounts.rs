//! SIP and IAX2 accounts as Asterisk builds them: PJSIP endpoints with their auths and
//! identifies (sorcery's defaults), chan_sip peers (`allowguest` and `alwaysauthreject`
//! default yes) and IAX2 users — the secrets a scanner guesses, the accounts that need
//! none, and the guest contexts an unauthenticated call lands in.

use std::collections::BTreeMap;

use super::secrets::{self, Guess, MIN_SECRET_LEN};
use super::{Asterisk, Finding, Severity, yes};
use crate::asterisk_conf::{At, Conf, Section};

/// Asterisk's realm when none is set (pjsip's `default_realm`, chan_sip's `realm`).
const DEFAULT_REALM: &str = "asterisk";

/// One credential a SIP or IAX2 client presents.
#[derive(Debug, Clone)]
pub struct Credential<'a> {
    /// `PJSIP auth 1001-auth`, `SIP peer 1002`.
    pub account: String,
    /// The section: a PJSIP auth (endpoints name it), or the chan_sip/IAX2 peer itself.
    pub section: String,
    pub pjsip: bool,
    pub user: String,
    pub secret: Secret<'a>,
    pub realm: String,
    pub at: At,
}

#[derive(Debug, Clone)]
pub enum Secret<'a> {
    Plain(&'a str),
    /// `md5(user:realm:secret)`, hex.
    Md5(&'a str),
}

/// Where an unauthenticated call lands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guest {
    /// `PJSIP endpoint anonymous`, `chan_sip allowguest`.
    pub how: String,
    pub context: String,
    pub at: At,
}

fn pjsip_realm(asterisk: &Asterisk) -> String {
    asterisk
        .pjsip
        .of_type("global")
        .find_map(|g| g.get("default_realm"))
        .unwrap_or(DEFAULT_REALM)
        .to_string()
}

/// Every credential of pjsip.conf, sip.conf and iax.conf.
pub fn credentials(asterisk: &Asterisk) -> Vec<Credential<'_>> {
    let mut found = Vec::new();
    let realm = pjsip_realm(asterisk);
    // An auth only a trunk's outbound_auth (or a registration's) names is what this PBX
    // answers its provider's challenge with: no scanner can try it here.
    let names = |key: &'static str| {
        asterisk
            .pjsip
            .objects()
            .filter_map(move |s| s.get(key))
            .flat_map(|v| v.split(',').map(str::trim))
    };
    let inbound: Vec<&str> = names("auth").collect();
    let outbound: Vec<&str> = names("outbound_auth").collect();
    let answered_only = |name: &str| outbound.contains(&name) && !inbound.contains(&name);
    for auth in asterisk
        .pjsip
        .of_type("auth")
        .filter(|a| !answered_only(&a.name))
    {
        let user = auth.get("username").unwrap_or(&auth.name).to_string();
        let realm = auth.get("realm").unwrap_or(&realm).to_string();
        let md5 = auth
            .get("auth_type")
            .is_some_and(|t| t.eq_ignore_ascii_case("md5"));
        let secret = match (md5, auth.entry("md5_cred"), auth.entry("password")) {
            (true, Some(e), _) => Some((Secret::Md5(&e.value), &e.at)),
            (_, _, Some(e)) => Some((Secret::Plain(&e.value), &e.at)),
            _ => None,
        };
        if let Some((secret, at)) = secret {
            found.push(Credential {
                account: format!("PJSIP auth {}", auth.name),
                section: auth.name.clone(),
                pjsip: true,
                user,
                secret,
                realm,
                at: at.clone(),
            });
        }
    }
    let sip_realm = general(&asterisk.sip)
        .and_then(|g| g.get("realm"))
        .unwrap_or(DEFAULT_REALM);
    for (conf, tech) in [(&asterisk.sip, "SIP"), (&asterisk.iax, "IAX2")] {
        for peer in peers(conf) {
            let user = peer
                .get("defaultuser")
                .or(peer.get("username"))
                .unwrap_or(&peer.name)
                .to_string();
            let secret = match (peer.entry("secret"), peer.entry("md5secret")) {
                (Some(e), _) => Some((Secret::Plain(&e.value), &e.at)),
                (None, Some(e)) => Some((Secret::Md5(&e.value), &e.at)),
                _ => None,
            };
            if let Some((secret, at)) = secret {
                found.push(Credential {
                    account: format!("{tech} peer {}", peer.name),
                    section: peer.name.clone(),
                    pjsip: false,
                    user,
                    secret,
                    realm: sip_realm.to_string(),
                    at: at.clone(),
                });
            }
        }
    }
    found
}

fn general(conf: &Conf) -> Option<&Section> {
    conf.named("general").last()
}

/// chan_sip or IAX2 accounts: every object but `[general]` and `[authentication]`.
fn peers(conf: &Conf) -> impl Iterator<Item = &Section> {
    conf.objects()
        .filter(|s| !matches!(s.name.as_str(), "general" | "authentication"))
}

/// Whether chan_sip is in play: a sip.conf and the module loaded.
pub fn chan_sip(asterisk: &Asterisk) -> bool {
    asterisk.sip.exists() && asterisk.loads("chan_sip.so")
}

pub fn check(asterisk: &Asterisk) -> Vec<Finding> {
    let mut found = Vec::new();
    let credentials = credentials(asterisk);
    for c in &credentials {
        found.extend(weak(c));
    }
    found.extend(reused(&credentials));
    found.extend(open_endpoints(asterisk).into_iter().map(|(_, f)| f));
    found.extend(guests(asterisk).into_iter().map(guest_finding));
    found.extend(insecure_dynamic(asterisk));
    found
}

/// The accounts (PJSIP endpoints, chan_sip and IAX2 peers, as the outbound check
/// names them) whose secret is weak (high or worse), reused, or missing, each with why:
/// `[fraud]` gives them stricter limits.
pub fn weak_accounts(asterisk: &Asterisk) -> BTreeMap<String, String> {
    let credentials = credentials(asterisk);
    let mut why: BTreeMap<(bool, &str), String> = BTreeMap::new();
    for c in &credentials {
        if let Some(f) = weak(c).filter(|f| f.severity >= Severity::High) {
            why.insert((c.pjsip, &c.section), f.guess.unwrap_or(f.what));
        }
    }
    for c in reused_groups(&credentials).into_iter().flatten() {
        why.entry((c.pjsip, &c.section))
            .or_insert_with(|| "its secret is reused".into());
    }
    let mut out = BTreeMap::new();
    for e in asterisk.pjsip.of_type("endpoint") {
        let auths: Vec<&str> = e
            .get("auth")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .collect();
        if let Some(w) = auths.iter().find_map(|a| why.get(&(true, *a))) {
            out.insert(e.name.clone(), w.clone());
        }
    }
    for (name, _) in open_endpoints(asterisk) {
        out.insert(name, "no auth".to_string());
    }
    for ((pjsip, section), w) in why {
        if !pjsip {
            out.insert(section.to_string(), w);
        }
    }
    out
}

/// The secret's weakness, worst first: svcrack finds it, it is short, it is digits.
fn weak(c: &Credential) -> Option<Finding> {
    let (guess, plain) = match c.secret {
        Secret::Plain(s) => (secrets::guess(&c.user, s), Some(s)),
        Secret::Md5(h) => (secrets::guess_md5(&c.user, &c.realm, h), None),
    };
    let account = &c.account;
    if let Some(guess) = guess {
        let severity = match guess {
            Guess::Default(_) => Severity::Critical,
            Guess::Defaults(_) => Severity::High,
        };
        let what = match guess {
            Guess::Default(1) => format!("{account}: the secret is the user name"),
            _ => format!("{account}: the secret is in svcrack's list"),
        };
        let mut f = Finding::new("weak-secret", severity, Some(&c.at), what)
            .why(format!("svcrack -u {} finds it at {guess}: a scanner owns the account {} and dials your trunk with it", c.user, match guess {
                Guess::Default(_) => "in seconds",
                Guess::Defaults(_) => "within a minute",
            }))
            .fix("set a random secret of 16 characters or more (pwgen -s 20 1), and the same on the phone");
        f.guess = Some(guess.to_string());
        return Some(f);
    }
    let plain = plain?;
    let short = plain.chars().count() < MIN_SECRET_LEN;
    let digits = !plain.is_empty() && plain.chars().all(|c| c.is_ascii_digit());
    let (severity, what) = match (short, digits) {
        (true, _) if plain.is_empty() => (Severity::Critical, "the secret is empty".to_string()),
        (true, _) => (
            Severity::High,
            format!("the secret is shorter than {MIN_SECRET_LEN} characters"),
        ),
        (false, true) => (Severity::Medium, "the secret is digits only".to_string()),
        (false, false) => return None,
    };
    Some(
        Finding::new("weak-secret", severity, Some(&c.at), format!("{account}: {what}"))
            .why("online guessing at hundreds of tries a second exhausts short or digit-only secrets within hours")
            .fix("set a random secret of 16 characters or more (pwgen -s 20 1)"),
    )
}

/// The same secret on two accounts: one leak opens both.
fn reused(credentials: &[Credential]) -> Vec<Finding> {
    reused_groups(credentials)
        .into_iter()
        .map(|v| {
            let names: Vec<&str> = v.iter().map(|c| c.account.as_str()).collect();
            Finding::new(
                "reused-secret",
                Severity::High,
                Some(&v[0].at),
                format!(
                    "{} accounts share one secret: {}",
                    v.len(),
                    names.join(", ")
                ),
            )
            .why("one phone's leaked provisioning file or one cracked account opens all of them")
            .fix("give each account its own random secret")
        })
        .collect()
}

/// The credentials that share a plain secret, in groups of two or more.
fn reused_groups<'c, 'a>(credentials: &'c [Credential<'a>]) -> Vec<Vec<&'c Credential<'a>>> {
    let mut by_secret: BTreeMap<&str, Vec<&Credential>> = BTreeMap::new();
    for c in credentials {
        if let Secret::Plain(s) = c.secret
            && !s.is_empty()
        {
            by_secret.entry(s).or_default().push(c);
        }
    }
    by_secret.into_values().filter(|v| v.len() > 1).collect()
}

/// PJSIP endpoints with no `auth` and no `identify`: anyone who names them is them.
fn open_endpoints(asterisk: &Asterisk) -> Vec<(String, Finding)> {
    let identified: Vec<&str> = asterisk
        .pjsip
        .of_type("identify")
        .filter_map(|s| s.get("endpoint"))
        .collect();
    let mut found = Vec::new();
    for e in asterisk.pjsip.of_type("endpoint") {
        let no_auth = e.get("auth").is_none_or(|a| a.trim().is_empty());
        if e.name.starts_with("anonymous")
            || !no_auth
            || identified.contains(&e.name.as_str())
            || limited(e)
        {
            continue;
        }
        found.push((e.name.clone(),
            Finding::new("endpoint-without-auth", Severity::High, Some(&e.at), format!("PJSIP endpoint {} has no auth and no identify", e.name))
                .why(format!("any caller whose From user is {} is that account, with no password: its context {} is open to the internet", e.name, e.get("context").unwrap_or("default")))
                .fix("give it auth = <an auth section with a strong password>, or an identify section matching the trunk's addresses"),
        ));
    }
    for peer in peers(&asterisk.sip).filter(|_| chan_sip(asterisk)) {
        let secret = peer.get("secret").or(peer.get("md5secret"));
        let dynamic = peer
            .get("host")
            .is_none_or(|h| h.eq_ignore_ascii_case("dynamic"));
        if secret.is_none_or(str::is_empty)
            && dynamic
            && !limited(peer)
            && peer.get("type").is_some()
        {
            let f = Finding::new(
                "endpoint-without-auth",
                Severity::High,
                Some(&peer.at),
                format!("SIP peer {} has no secret and no fixed host", peer.name),
            )
            .why("anyone who registers or calls as this peer is it, with no password")
            .fix("set secret = <a strong random secret>, or host = the trunk's address");
            found.push((peer.name.clone(), f));
        }
    }
    found
}

/// Whether an ACL limits where the account may call from (`permit` or a named `acl`,
/// on PJSIP endpoints and chan_sip peers alike): then no password is not anyone's.
fn limited(section: &Section) -> bool {
    section.get("permit").is_some() || section.get("acl").is_some()
}

/// The contexts an unauthenticated call lands in: PJSIP's `anonymous` endpoint (when
/// its identifier is loaded and in the order), chan_sip's `allowguest` (yes unless
/// said otherwise), an IAX2 `[guest]` user without secret.
pub fn guests(asterisk: &Asterisk) -> Vec<Guest> {
    let mut found = Vec::new();
    let order = asterisk.identifier_order();
    let anonymous_on = asterisk.loads("res_pjsip_endpoint_identifier_anonymous.so")
        && order.iter().any(|o| o == "anonymous");
    for e in asterisk.pjsip.of_type("endpoint").filter(|_| anonymous_on) {
        if e.name == "anonymous" || e.name.starts_with("anonymous@") {
            found.push(Guest {
                how: format!("PJSIP endpoint {}", e.name),
                context: e.get("context").unwrap_or("default").to_string(),
                at: e.at.clone(),
            });
        }
    }
    if chan_sip(asterisk) {
        let g = general(&asterisk.sip);
        let allow = g.and_then(|g| g.entry("allowguest"));
        if allow.is_none_or(|e| yes(&e.value)) {
            let at = allow.map(|e| e.at.clone()).or(g.map(|g| g.at.clone()));
            found.push(Guest {
                how: "chan_sip allowguest".to_string(),
                context: g
                    .and_then(|g| g.get("context"))
                    .unwrap_or("default")
                    .to_string(),
                at: at.unwrap_or_else(|| At {
                    file: asterisk.sip.files[0].clone(),
                    line: 1,
                }),
            });
        }
    }
    for user in peers(&asterisk.iax).filter(|s| s.name == "guest") {
        if user.get("secret").is_none_or(str::is_empty) {
            found.push(Guest {
                how: "IAX2 user guest".to_string(),
                context: user.get("context").unwrap_or("default").to_string(),
                at: user.at.clone(),
            });
        }
    }
    found
}

fn guest_finding(g: Guest) -> Finding {
    let fix = match g.how.as_str() {
        "chan_sip allowguest" => {
            "set allowguest = no in sip.conf [general] (and alwaysauthreject = yes); better, move to PJSIP"
        }
        _ => {
            "remove the guest account unless you take anonymous calls; if you do, send them to a context that only reaches your DIDs and has extsecurity's check"
        }
    };
    Finding::new(
        "guest-calls",
        Severity::High,
        Some(&g.at),
        format!("{} takes unauthenticated calls into context {}", g.how, g.context),
    )
    .why("anyone on the internet can call into this context without a password; what it can reach is listed under guest-path-to-trunk")
    .fix(fix)
}

/// `insecure=invite` on a `host=dynamic` peer: its INVITEs are not challenged, and its
/// address is wherever it last registered.
fn insecure_dynamic(asterisk: &Asterisk) -> Vec<Finding> {
    peers(&asterisk.sip)
        .filter(|_| chan_sip(asterisk))
        .filter_map(|p| {
            let insecure = p.entry("insecure")?;
            let dynamic = p.get("host").is_none_or(|h| h.eq_ignore_ascii_case("dynamic"));
            let skips = insecure.value.contains("invite") || insecure.value.eq_ignore_ascii_case("very");
            (skips && dynamic).then(|| {
                Finding::new("insecure-invite-dynamic", Severity::High, Some(&insecure.at), format!("SIP peer {}: insecure={} on host=dynamic", p.name, insecure.value))
                    .why("calls from the peer's last registered address are not challenged: whoever registers once (or shares its NAT) calls without a password")
                    .fix("remove insecure=invite from dynamic peers; keep it only for a trunk with a fixed host")
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asterisk_conf::Memory;
    use std::path::Path;

    fn asterisk(files: &[(&str, &str)]) -> Asterisk {
        Asterisk::read(&Memory::of(Path::new("/a"), files), Path::new("/a"))
    }

    #[test]
    fn chan_sip_guests_by_default_and_not_when_told_or_not_loaded() {
        let guests = |sip: &str, modules: &str| {
            guests(&asterisk(&[("sip.conf", sip), ("modules.conf", modules)]))
                .into_iter()
                .map(|g| g.context)
                .collect::<Vec<_>>()
        };
        let autoload = "[modules]\nautoload=yes\n";
        assert_eq!(guests("[general]\n", autoload), ["default"]);
        assert_eq!(guests("[general]\ncontext=guests\n", autoload), ["guests"]);
        assert!(guests("[general]\nallowguest=no\n", autoload).is_empty());
        assert!(
            guests(
                "[general]\n",
                "[modules]\nautoload=yes\nnoload => chan_sip.so\n"
            )
            .is_empty()
        );
        // Asterisk 20's modules.conf sample noloads chan_sip; without autoload only
        // what is loaded by name is.
        assert!(guests("[general]\n", "[modules]\n").is_empty());
        assert_eq!(
            guests("[general]\n", "[modules]\nload => chan_sip.so\n"),
            ["default"]
        );
    }

    #[test]
    fn the_anonymous_endpoint_needs_its_identifier() {
        let pjsip = "[anonymous]\ntype=endpoint\ncontext=guests\n";
        assert_eq!(guests(&asterisk(&[("pjsip.conf", pjsip)])).len(), 1);
        let ordered = format!("[g]\ntype=global\nendpoint_identifier_order=ip,username\n{pjsip}");
        assert!(guests(&asterisk(&[("pjsip.conf", &ordered)])).is_empty());
        let modules = "[modules]\nnoload => res_pjsip_endpoint_identifier_anonymous.so\n";
        assert!(
            guests(&asterisk(&[
                ("pjsip.conf", pjsip),
                ("modules.conf", modules)
            ]))
            .is_empty()
        );
    }

    #[test]
    fn a_secret_from_a_template_is_found_where_the_template_writes_it() {
        let a = asterisk(&[(
            "pjsip.conf",
            "[weak](!)\ntype=auth\npassword=123\n[1001](weak)\nusername=1001\n",
        )]);
        let found = check(&a);
        let f = found.iter().find(|f| f.id == "weak-secret").unwrap();
        assert_eq!(f.line, Some(3));
        assert_eq!(
            f.guess.as_deref(),
            Some("guess 25 of svcrack's default run")
        );
        assert!(f.what.contains("1001"));
    }

    #[test]
    fn an_acl_is_as_good_as_an_identify() {
        let ids = |pjsip: &str| -> Vec<&'static str> {
            check(&asterisk(&[("pjsip.conf", pjsip)]))
                .into_iter()
                .map(|f| f.id)
                .collect()
        };
        assert_eq!(
            ids("[fax]\ntype=endpoint\ncontext=fax\n"),
            ["endpoint-without-auth"]
        );
        assert!(ids("[fax]\ntype=endpoint\ndeny=0.0.0.0/0\npermit=192.0.2.7\n").is_empty());
        assert!(ids("[fax]\ntype=endpoint\nacl=office\n").is_empty());
        assert!(
            ids("[fax]\ntype=endpoint\n[fax-id]\ntype=identify\nendpoint=fax\nmatch=192.0.2.7\n")
                .is_empty()
        );
    }

    #[test]
    fn a_trunks_outbound_auth_is_not_a_secret_scanners_can_try_here() {
        let a = asterisk(&[(
            "pjsip.conf",
            "[provider]\ntype=endpoint\noutbound_auth=provider-auth\n\
             [provider-auth]\ntype=auth\nusername=acct\npassword=123\n\
             [1001]\ntype=endpoint\nauth=1001-auth\n\
             [1001-auth]\ntype=auth\nusername=1001\npassword=123\n",
        )]);
        let weak: Vec<String> = check(&a)
            .into_iter()
            .filter(|f| f.id == "weak-secret" || f.id == "reused-secret")
            .map(|f| f.what)
            .collect();
        assert_eq!(
            weak,
            ["PJSIP auth 1001-auth: the secret is in svcrack's list"]
        );
    }

    #[test]
    fn short_digit_and_empty_secrets() {
        let severity = |password: &str| {
            let a = asterisk(&[(
                "pjsip.conf",
                &format!("[x]\ntype=auth\nusername=x\npassword={password}\n"),
            )]);
            check(&a)
                .into_iter()
                .find(|f| f.id == "weak-secret")
                .map(|f| f.severity)
        };
        assert_eq!(severity(""), Some(Severity::Critical));
        assert_eq!(severity("aB3$xy"), Some(Severity::High));
        assert_eq!(severity("8273645519"), Some(Severity::Medium));
        assert_eq!(severity("Zq8-wP2m-Lk4x"), None);
    }
}

#[cfg(test)]
mod weak_accounts_tests {
    use super::*;
    use crate::asterisk_conf::Disk;
    use std::path::Path;

    #[test]
    fn the_weak_fixture_s_weak_accounts_by_the_names_calls_carry() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audit/weak/asterisk");
        let weak = weak_accounts(&Asterisk::read_accounts(&Disk, &dir));
        let names: Vec<&str> = weak.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["1003", "1004", "1005", "1006", "1007", "1008", "provider"]
        );
        assert_eq!(weak["1003"], "guess 32 of svcrack's default run");
        assert_eq!(weak["1006"], "no auth");
        assert_eq!(weak["1007"], "its secret is reused");
    }
}
