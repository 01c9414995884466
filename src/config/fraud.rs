//! `[fraud]`: the outbound check of authenticated accounts (doc/toll-fraud.md, "Toll fraud: the outbound check").

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Invalid;
use crate::fraud::extension_pattern::ExtensionPatterns;
use crate::fraud::hours::Hours;
use crate::fraud::limits::{ClassLimits, Level, MAX_DISTINCT_LEVEL, Rule};
use crate::fraud::number::{Class, DialPlan, Prefixes, feature_prefixes};

/// Where the shipped high-risk list is installed.
pub const DEFAULT_HIGH_RISK_FILE: &str = "/etc/asterisk/extsecurity-high-risk.conf";
/// Where quarantines and counters are kept across restarts.
pub const DEFAULT_STATE_FILE: &str = "/var/lib/extsecurity/fraud.state";
/// The most numbers learned from attackers kept at once (the soonest to expire go).
pub const MAX_LEARNED: usize = 10_000;

/// The validated `[fraud]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct FraudConfig {
    pub dial_plan: DialPlan,
    /// E.164 prefixes the administrator refuses (`blocked_prefixes`).
    pub blocked: Prefixes,
    /// The high-risk list, read by `serve` and `check-config` (never by a System()
    /// check); `None` when set to "".
    pub high_risk_file: Option<PathBuf>,
    /// How long a number an alerted guest call tried stays refused; zero: not learned.
    pub learned: Duration,
    pub quarantine: Duration,
    /// An address the account has used for longer than this before a toll-fraud
    /// verdict is its own (an office, a home): the account is quarantined, the address
    /// not banned.
    pub known_address: Duration,
    /// A login from an address the account has not used for this long is new.
    pub new_address: Duration,
    /// Failed logins this recent before a successful one from a new address make it a
    /// takeover.
    pub takeover_window: Duration,
    pub state_file: PathBuf,
    pub max_accounts: usize,
    /// How a call's end reaches the daemon: its hangup handler's AGI session, or a
    /// `UserEvent` over AMI (one session a call less; needs `[ami]` and `read = user`).
    pub call_end: CallEnd,
    classes: BTreeMap<Class, ClassLimits>,
    /// Per-account limits, already merged over the classes'.
    accounts: BTreeMap<String, BTreeMap<Class, ClassLimits>>,
    /// The limits of an account the audit finds weak: the classes' tightened, then
    /// `[fraud.weak]`.
    weak: BTreeMap<Class, ClassLimits>,
    /// Asterisk's folder, audited for weak accounts at start and reload; `None`: off.
    pub audit_dir: Option<PathBuf>,
    /// The accounts the audit found weak, each with why; the daemon fills it.
    pub weak_accounts: BTreeMap<String, String>,
}

impl FraudConfig {
    /// The limits `class` has for `account`.
    /// An account's own table wins; then the weak limits for an account the audit
    /// finds weak; then the class's.
    pub fn limits(&self, account: &str, class: Class) -> &ClassLimits {
        let weak = || {
            self.weak_accounts
                .contains_key(account)
                .then(|| self.weak.get(&class))
                .flatten()
        };
        self.accounts
            .get(account)
            .and_then(|a| a.get(&class))
            .or_else(weak)
            .or_else(|| self.classes.get(&class))
            .expect("every class has limits")
    }

    /// The limits `class` has for an account the audit finds weak (`[fraud.weak]`).
    pub fn weak_limits(&self, class: Class) -> &ClassLimits {
        self.weak
            .get(&class)
            .or_else(|| self.classes.get(&class))
            .expect("every class has limits")
    }

    /// `new_address` in whole days: the accounts keep the day each address was used.
    pub fn new_address_days(&self) -> u32 {
        u32::try_from(self.new_address.as_secs() / 86_400).unwrap_or(u32::MAX)
    }

    /// The accounts with limits of their own.
    pub fn overridden_accounts(&self) -> impl Iterator<Item = &str> {
        self.accounts.keys().map(String::as_str)
    }
}

/// How the end of an outbound call is told (`call_end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallEnd {
    /// The hangup handler runs `AGI(…/outbound-end)`: works everywhere.
    Agi,
    /// The hangup handler raises `UserEvent(ExtsecCallEnd)`, which the AMI watcher
    /// reads: no second FastAGI session (doc/performance.md, "Performance"). While the AMI link is
    /// down, calls fall back to the AGI.
    Ami,
}

impl CallEnd {
    pub fn name(self) -> &'static str {
        match self {
            CallEnd::Agi => "agi",
            CallEnd::Ami => "ami",
        }
    }
}

/// A level as written: `{ warning = 4, critical = 6 }`.
#[derive(Debug, Clone, Copy, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawLevel {
    warning: u32,
    critical: u32,
}

/// One class's limits as written; what is left out keeps the class's (or the
/// default's) value.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    refuse: Option<bool>,
    hours: Option<Spanned<String>>,
    max_seconds: Option<u32>,
    calls_per_minute: Option<Spanned<RawLevel>>,
    calls_per_hour: Option<Spanned<RawLevel>>,
    calls_per_day: Option<Spanned<RawLevel>>,
    concurrent: Option<Spanned<RawLevel>>,
    distinct_per_hour: Option<Spanned<RawLevel>>,
    minutes_per_day: Option<Spanned<RawLevel>>,
}

impl RawLimits {
    fn level(&self, rule: Rule) -> Option<&Spanned<RawLevel>> {
        match rule {
            Rule::CallsPerMinute => self.calls_per_minute.as_ref(),
            Rule::CallsPerHour => self.calls_per_hour.as_ref(),
            Rule::CallsPerDay => self.calls_per_day.as_ref(),
            Rule::Concurrent => self.concurrent.as_ref(),
            Rule::DistinctPerHour => self.distinct_per_hour.as_ref(),
            Rule::MinutesPerDay => self.minutes_per_day.as_ref(),
        }
    }

    /// `base` with what this table sets.
    fn over(&self, mut base: ClassLimits, key: &str) -> Result<ClassLimits, Invalid> {
        if let Some(refuse) = self.refuse {
            base.refuse = refuse;
        }
        if let Some(seconds) = self.max_seconds {
            base.max_seconds = seconds;
        }
        if let Some(hours) = &self.hours {
            base.hours = match hours.get_ref().trim() {
                "" => None,
                text => Some(
                    Hours::parse(text)
                        .map_err(|why| (hours.span(), format!("{key}.hours: {why}")))?,
                ),
            };
        }
        for rule in Rule::ALL {
            let Some(level) = self.level(rule) else {
                continue;
            };
            let RawLevel { warning, critical } = *level.get_ref();
            let name = format!("{key}.{}", rule.name());
            if warning > 0 && critical > 0 && warning > critical {
                return Err((
                    level.span(),
                    format!("{name}: warning ({warning}) is above critical ({critical})"),
                ));
            }
            if rule == Rule::DistinctPerHour && warning.max(critical) > MAX_DISTINCT_LEVEL {
                return Err((
                    level.span(),
                    format!("{name}: at most {MAX_DISTINCT_LEVEL} distinct numbers an hour"),
                ));
            }
            base.set(rule, Level::new(warning, critical));
        }
        Ok(base)
    }
}

/// `[fraud.class]` and each `[fraud.account."NAME"]`: limits by class.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawClasses {
    national: Option<RawLimits>,
    mobile: Option<RawLimits>,
    international: Option<RawLimits>,
    premium: Option<RawLimits>,
    high_risk: Option<RawLimits>,
    blocked: Option<RawLimits>,
    learned: Option<RawLimits>,
    malformed: Option<RawLimits>,
}

impl RawClasses {
    fn get(&self, class: Class) -> Option<&RawLimits> {
        match class {
            Class::National => self.national.as_ref(),
            Class::Mobile => self.mobile.as_ref(),
            Class::International => self.international.as_ref(),
            Class::Premium => self.premium.as_ref(),
            Class::HighRisk => self.high_risk.as_ref(),
            Class::Blocked => self.blocked.as_ref(),
            Class::Learned => self.learned.as_ref(),
            Class::Malformed => self.malformed.as_ref(),
            Class::Emergency | Class::Internal => None,
        }
    }

    /// `base` with what these tables set, class by class.
    fn over(
        &self,
        base: &BTreeMap<Class, ClassLimits>,
        table: &str,
    ) -> Result<BTreeMap<Class, ClassLimits>, Invalid> {
        let mut out = base.clone();
        for class in Class::JUDGED {
            if let Some(raw) = self.get(class) {
                let limits = raw.over(base[&class].clone(), &format!("{table}.{class}"))?;
                out.insert(class, limits);
            }
        }
        Ok(out)
    }
}

/// The `[fraud]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawFraud {
    enabled: bool,
    country_code: Spanned<String>,
    international_prefix: Option<Spanned<String>>,
    national_prefix: Option<Spanned<String>>,
    outside_line_prefix: Spanned<String>,
    emergency_numbers: Vec<Spanned<String>>,
    /// Replaced by `internal`: refused with a word on what to write instead.
    internal_max_digits: Option<Spanned<usize>>,
    internal: Vec<Spanned<String>>,
    home_regions: Vec<Spanned<String>>,
    feature_prefixes: Vec<Spanned<String>>,
    known_address_seconds: u64,
    call_end: CallEnd,
    blocked_prefixes: Vec<Spanned<String>>,
    high_risk_file: Spanned<String>,
    learned_days: u32,
    quarantine_seconds: Spanned<u64>,
    new_address_days: u32,
    takeover_window_seconds: u64,
    state_file: Spanned<String>,
    max_accounts: Spanned<usize>,
    class: RawClasses,
    account: BTreeMap<String, RawClasses>,
    weak: RawClasses,
    audit_dir: Spanned<String>,
}

impl Default for RawFraud {
    fn default() -> RawFraud {
        let text = |s: &str| Spanned::new(0..0, s.to_string());
        RawFraud {
            enabled: false,
            country_code: text(""),
            international_prefix: None,
            national_prefix: None,
            outside_line_prefix: text(""),
            emergency_numbers: Vec::new(),
            internal_max_digits: None,
            internal: Vec::new(),
            home_regions: Vec::new(),
            feature_prefixes: Vec::new(),
            known_address_seconds: 86_400,
            call_end: CallEnd::Agi,
            blocked_prefixes: Vec::new(),
            high_risk_file: text(DEFAULT_HIGH_RISK_FILE),
            learned_days: 30,
            quarantine_seconds: Spanned::new(0..0, 86_400),
            new_address_days: 30,
            takeover_window_seconds: 3600,
            state_file: text(DEFAULT_STATE_FILE),
            max_accounts: Spanned::new(0..0, 100_000),
            class: RawClasses::default(),
            account: BTreeMap::new(),
            weak: RawClasses::default(),
            audit_dir: text(crate::dialplan::CONFIG_DIR),
        }
    }
}

/// Digits only, at most `max` of them, or the error naming `key`.
fn digits(
    value: &Spanned<String>,
    key: &str,
    max: usize,
    example: &str,
) -> Result<String, Invalid> {
    let text = value.get_ref();
    if text.len() > max || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err((
            value.span(),
            format!("fraud.{key} must be at most {max} digits, such as {example}, not {text:?}"),
        ));
    }
    Ok(text.clone())
}

impl RawFraud {
    /// How the PBX's users dial: the prefixes (North America's `011` and `1` when the
    /// country code is 1 and they are not set), the home regions, what is internal and
    /// the feature codes.
    fn dial_plan(&self, country_code: String) -> Result<DialPlan, Invalid> {
        if let Some(old) = &self.internal_max_digits {
            return Err((
                old.span(),
                "fraud.internal_max_digits is gone: the check runs before a trunk Dial, where a short number can be premium (3617 in France); list what never leaves by the trunk as extension patterns instead, such as internal = [\"_1XX\"]".into(),
            ));
        }
        let mut plan = DialPlan::for_country(&country_code);
        if let Some(p) = &self.international_prefix {
            plan.international_prefix = digits(p, "international_prefix", 4, "\"00\" or \"011\"")?;
        }
        if let Some(p) = &self.national_prefix {
            plan.national_prefix = digits(p, "national_prefix", 2, "\"0\" or \"1\"")?;
        }
        plan.outside_line_prefix =
            digits(&self.outside_line_prefix, "outside_line_prefix", 2, "\"9\"")?;
        plan.extra_emergency = self
            .emergency_numbers
            .iter()
            .map(|n| digits(n, "emergency_numbers", 15, "\"112\""))
            .collect::<Result<_, _>>()?;
        if !self.home_regions.is_empty() {
            let code = country_code.parse().unwrap_or(0);
            let known = crate::fraud::number_types::regions(code);
            plan.home_regions = self
                .home_regions
                .iter()
                .map(|r| {
                    let region = r.get_ref().to_ascii_uppercase();
                    match known.contains(&region.as_str()) {
                        true => Ok(region),
                        false => Err((
                            r.span(),
                            format!(
                                "fraud.home_regions: {:?} is not a region of +{country_code} (its regions: {})",
                                r.get_ref(),
                                known.join(", ")
                            ),
                        )),
                    }
                })
                .collect::<Result<_, Invalid>>()?;
        }
        let internal: Vec<String> = self.internal.iter().map(|p| p.get_ref().clone()).collect();
        plan.internal = ExtensionPatterns::new(&internal).map_err(|why| {
            let at = self.internal.first().map_or(0..0, |p| p.span());
            (at, format!("fraud.internal: {why}"))
        })?;
        let extra = self
            .feature_prefixes
            .iter()
            .map(|p| {
                let text = p.get_ref();
                let ok = !text.is_empty()
                    && text.len() <= 8
                    && text.bytes().all(|b| b"0123456789*#".contains(&b));
                match ok {
                    true => Ok(text.clone()),
                    false => Err((
                        p.span(),
                        format!("fraud.feature_prefixes: {text:?} must be 1 to 8 of 0-9, * and #, such as \"*67\""),
                    )),
                }
            })
            .collect::<Result<Vec<_>, Invalid>>()?;
        plan.feature_prefixes = feature_prefixes(&country_code, &extra);
        Ok(plan)
    }

    /// `None` when off.
    pub(super) fn validate(self) -> Result<Option<FraudConfig>, Invalid> {
        if !self.enabled {
            return Ok(None);
        }
        let country_code = digits(&self.country_code, "country_code", 3, "\"49\" or \"1\"")?;
        if country_code.is_empty() || country_code.starts_with('0') {
            return Err((
                self.country_code.span(),
                "fraud.country_code must be set to the PBX's country calling code, such as \"49\" (Germany) or \"1\" (North America)".into(),
            ));
        }
        let dial_plan = self.dial_plan(country_code)?;
        let blocked = self
            .blocked_prefixes
            .iter()
            .map(|p| {
                let p = Spanned::new(p.span(), p.get_ref().trim_start_matches('+').to_string());
                digits(&p, "blocked_prefixes", 15, "\"4990\" (E.164 without +)")
                    .and_then(|d| non_empty(d, &p, "blocked_prefixes"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let classes: BTreeMap<Class, ClassLimits> = Class::ALL
            .into_iter()
            .map(|c| (c, ClassLimits::default_for(c)))
            .collect();
        let classes = self.class.over(&classes, "fraud.class")?;
        let mut accounts: BTreeMap<String, BTreeMap<Class, ClassLimits>> = self
            .account
            .iter()
            .map(|(name, raw)| {
                Ok((
                    name.clone(),
                    raw.over(
                        &account_base(name, &classes),
                        &format!("fraud.account.{name:?}"),
                    )?,
                ))
            })
            .collect::<Result<_, Invalid>>()?;
        accounts
            .entry(NO_ACCOUNT.to_string())
            .or_insert_with(|| account_base(NO_ACCOUNT, &classes));
        let tightened: BTreeMap<Class, ClassLimits> = classes
            .iter()
            .map(|(c, l)| (*c, l.clone().tightened_for_weak(*c)))
            .collect();
        let weak = self.weak.over(&tightened, "fraud.weak")?;
        let quarantine = *self.quarantine_seconds.get_ref();
        if quarantine == 0 {
            return Err((
                self.quarantine_seconds.span(),
                "fraud.quarantine_seconds must be at least 1".into(),
            ));
        }
        if *self.max_accounts.get_ref() == 0 {
            return Err((
                self.max_accounts.span(),
                "fraud.max_accounts must be at least 1".into(),
            ));
        }
        let path = |v: &Spanned<String>, key: &str| -> Result<Option<PathBuf>, Invalid> {
            match v.get_ref().as_str() {
                "" => Ok(None),
                p if p.starts_with('/') => Ok(Some(PathBuf::from(p))),
                p => Err((
                    v.span(),
                    format!("fraud.{key} {p:?} must be an absolute path"),
                )),
            }
        };
        let state_file = path(&self.state_file, "state_file")?.ok_or_else(|| {
            (
                self.state_file.span(),
                "fraud.state_file must name a file: quarantines must survive a restart".to_string(),
            )
        })?;
        const DAY: u64 = 86_400;
        Ok(Some(FraudConfig {
            known_address: Duration::from_secs(self.known_address_seconds),
            dial_plan,
            blocked: Prefixes::new(blocked),
            high_risk_file: path(&self.high_risk_file, "high_risk_file")?,
            learned: Duration::from_secs(u64::from(self.learned_days) * DAY),
            quarantine: Duration::from_secs(quarantine),
            new_address: Duration::from_secs(u64::from(self.new_address_days) * DAY),
            takeover_window: Duration::from_secs(self.takeover_window_seconds),
            state_file,
            max_accounts: *self.max_accounts.get_ref(),
            call_end: self.call_end,
            classes,
            accounts,
            weak,
            audit_dir: path(&self.audit_dir, "audit_dir")?,
            weak_accounts: BTreeMap::new(),
        }))
    }
}

/// The account of a call that carries none: a Local channel started by an
/// `Originate`, a call file, or a call from outside forwarded back out (design §3g).
pub const NO_ACCOUNT: &str = "-";

/// What `[fraud.account."NAME"]` starts from: the classes' limits, but for the call
/// with no account, which may dial no international number unless its own table says
/// so (no one is there to ask).
fn account_base(
    name: &str,
    classes: &BTreeMap<Class, ClassLimits>,
) -> BTreeMap<Class, ClassLimits> {
    let mut base = classes.clone();
    if name == NO_ACCOUNT {
        if let Some(international) = base.get_mut(&Class::International) {
            international.refuse = true;
        }
    }
    base
}

fn non_empty(d: String, at: &Spanned<String>, key: &str) -> Result<String, Invalid> {
    if d.is_empty() {
        return Err((
            at.span(),
            format!("fraud.{key}: an empty prefix would match every number"),
        ));
    }
    Ok(d)
}

/// Reads a high-risk list: one E.164 prefix per line (digits, a leading `+` allowed),
/// `#` starts a comment. Errors name the file and line.
pub fn read_high_risk(path: &std::path::Path) -> Result<Prefixes, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the high-risk list {}: {e}", path.display()))?;
    parse_high_risk(&text).map_err(|(line, why)| format!("{}:{line}: {why}", path.display()))
}

fn parse_high_risk(text: &str) -> Result<Prefixes, (usize, String)> {
    let mut prefixes = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        let digits = entry.strip_prefix('+').unwrap_or(entry);
        if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err((
                i + 1,
                format!("{entry:?} is not an E.164 prefix (digits, such as 882 or +53)"),
            ));
        }
        prefixes.push(digits.to_string());
    }
    Ok(Prefixes::new(prefixes))
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use super::*;

    const ON: &str = "[fraud]\nenabled = true\ncountry_code = \"49\"\n";

    #[test]
    fn fraud_is_off_unless_enabled_and_needs_a_country() {
        assert!(parse("").unwrap().fraud.is_none());
        let e = parse("[fraud]\nenabled = true\n").unwrap_err();
        assert!(e.contains("fraud.country_code must be set"), "{e}");
        let f = parse(ON).unwrap().fraud.unwrap();
        assert_eq!(f.dial_plan.international_prefix, "00");
        assert_eq!(f.limits("1001", Class::International).max_seconds, 3600);
        assert!(f.limits("1001", Class::Premium).refuse);
    }

    #[test]
    fn accounts_override_their_classes_field_by_field() {
        let text = format!(
            "{ON}[fraud.class.international]\nhours = \"Mo-Fr 07:00-20:00\"\n\
             [fraud.account.callcentre.international]\ncalls_per_minute = {{ warning = 40, critical = 60 }}\n"
        );
        let f = parse(&text).unwrap().fraud.unwrap();
        let cc = f.limits("callcentre", Class::International);
        assert_eq!(cc.level(Rule::CallsPerMinute), Level::new(40, 60));
        assert_eq!(cc.level(Rule::Concurrent), Level::new(2, 3), "kept");
        assert_eq!(cc.hours.as_ref().unwrap().to_string(), "Mo-Fr 07:00-20:00");
        assert_eq!(
            f.limits("1001", Class::International)
                .level(Rule::CallsPerMinute),
            Level::new(4, 6)
        );
    }

    #[test]
    fn weak_accounts_get_stricter_limits_and_their_own_table_still_wins() {
        let text = format!(
            "{ON}audit_dir = \"\"\n[fraud.weak.international]\nhours = \"Mo-Fr 08:00-18:00\"\n\
             [fraud.account.callcentre.international]\ncalls_per_minute = {{ warning = 40, critical = 60 }}\n"
        );
        let mut f = parse(&text).unwrap().fraud.unwrap();
        assert_eq!(f.audit_dir, None);
        let before = f.limits("1003", Class::International).clone();
        assert_eq!(before.level(Rule::CallsPerMinute), Level::new(4, 6));
        for weak in ["1003", "callcentre"] {
            f.weak_accounts.insert(weak.into(), "guess 32".into());
        }
        let weak = f.limits("1003", Class::International);
        assert_eq!(weak.level(Rule::CallsPerMinute), Level::new(2, 3));
        assert_eq!(weak.level(Rule::DistinctPerHour), Level::new(3, 5));
        assert_eq!(weak.level(Rule::MinutesPerDay), Level::new(30, 60));
        assert_eq!(weak.level(Rule::Concurrent), Level::new(2, 3));
        assert_eq!(weak.max_seconds, 1800);
        assert_eq!(
            weak.hours.as_ref().unwrap().to_string(),
            "Mo-Fr 08:00-18:00"
        );
        assert_eq!(
            f.limits("1003", Class::National),
            f.limits("1001", Class::National)
        );
        let own = f.limits("callcentre", Class::International);
        assert_eq!(
            own.level(Rule::CallsPerMinute),
            Level::new(40, 60),
            "its own table wins"
        );
        assert_eq!(
            parse(ON).unwrap().fraud.unwrap().audit_dir.as_deref(),
            Some(std::path::Path::new("/etc/asterisk"))
        );
    }

    #[test]
    fn bad_fraud_settings_name_their_key() {
        for (extra, error) in [
            (
                "national_prefix = \"0x\"\n",
                "fraud.national_prefix must be at most 2 digits",
            ),
            (
                "blocked_prefixes = [\"\"]\n",
                "an empty prefix would match every number",
            ),
            ("state_file = \"fraud.state\"\n", "must be an absolute path"),
            (
                "call_end = \"ami\"\n",
                "fraud.call_end = \"ami\" needs [ami]",
            ),
            ("call_end = \"email\"\n", "call_end"),
            ("internal_max_digits = 4\n", "internal = [\"_1XX\"]"),
            ("internal = [\"_1(X)\"]\n", "fraud.internal: \"_1(X)\""),
            ("home_regions = [\"FR\"]\n", "not a region of +49"),
            ("feature_prefixes = [\"*6a\"]\n", "fraud.feature_prefixes"),
            (
                "quarantine_seconds = 0\n",
                "fraud.quarantine_seconds must be at least 1",
            ),
            (
                "[fraud.class.international]\ncalls_per_minute = { warning = 7, critical = 6 }\n",
                "fraud.class.international.calls_per_minute: warning (7) is above critical (6)",
            ),
            (
                "[fraud.class.national]\ndistinct_per_hour = { critical = 65 }\n",
                "at most 64 distinct numbers an hour",
            ),
            (
                "[fraud.class.mobile]\nhours = \"Mo-Fr 7-20\"\n",
                "fraud.class.mobile.hours:",
            ),
            ("[fraud.class.emergency]\nrefuse = true\n", "emergency"),
        ] {
            let text = format!("{ON}{extra}");
            let e = parse(&text).unwrap_err();
            assert!(e.contains(error), "{extra}: {e}");
        }
    }

    #[test]
    fn the_high_risk_list_reads_prefixes_and_names_a_bad_line() {
        let list = parse_high_risk("# IRSF\n882   # international networks\n+53\n\n").unwrap();
        assert!(list.matches("88212345") && list.matches("5371234567"));
        assert_eq!(list.len(), 2);
        assert_eq!(
            parse_high_risk("882\n53x # oops\n").unwrap_err(),
            (
                2,
                "\"53x\" is not an E.164 prefix (digits, such as 882 or +53)".into()
            )
        );
    }

    #[test]
    fn the_shipped_high_risk_list_parses() {
        let text = include_str!("../../dist/extsecurity-high-risk.conf");
        let list = parse_high_risk(text).unwrap();
        assert!(list.matches("882123") && list.matches("5371234567"));
    }
}
