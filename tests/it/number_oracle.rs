//! Issue 26: the outbound check's destination classes held against an independent
//! oracle, Python `phonenumbers` (the same libphonenumber metadata, 9.0.33, as the
//! `phonenumber` crate ships; `tests/oracle/classify_number.py` decides with
//! libphonenumber's own parser, types, regions and short-number costs). The corpus is
//! what a PBX's users dial, per country: the metadata's example numbers of every type
//! with the national prefix, `+` and the international prefix, other countries'
//! numbers (every NANP region among them), short numbers, local numbers and random
//! digits, and the numbers design §3g found walking around the check.
//!
//! `scripts/test.sh` makes the virtual environment (`target/phonenumbers-venv`) with
//! `pip install phonenumbers==9.0.33`; `EXTSEC_PHONENUMBERS_PYTHON` names another
//! Python that has it.

use crate::common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use extsecurity::fraud::{DialPlan, Prefixes, classify};
use phonenumber::metadata::{DATABASE, Descriptor};

/// Where the oracle disagrees on purpose, with why.
const DEPARTURES: &[(&str, &str, &str, &str)] = &[
    // NANP exchange 976 is pay-per-call inside ordinary area codes (design §3g);
    // libphonenumber types it as a fixed line.
    ("US", "12129765555", "premium", "national"),
    // libphonenumber drops a national prefix written after the calling code (+49 (0)
    // 511); a carrier dials the digits as they are, and no such number exists.
    ("DE", "0049051107992", "malformed", "national"),
];

fn python() -> String {
    if let Ok(p) = std::env::var("EXTSEC_PHONENUMBERS_PYTHON") {
        return p;
    }
    let venv = common::repo().join("target/phonenumbers-venv/bin/python3");
    assert!(
        venv.exists(),
        "no Python with phonenumbers: run scripts/test.sh (it makes {}) or set EXTSEC_PHONENUMBERS_PYTHON",
        venv.display()
    );
    venv.display().to_string()
}

/// A small deterministic generator: the corpus is the same in every run.
struct Digits(u64);

impl Digits {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn string(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(b'0' + (self.next() % 10) as u8))
            .collect()
    }
}

fn examples(region: &str) -> Vec<String> {
    let Some(meta) = DATABASE.by_id(region) else {
        return Vec::new();
    };
    extsecurity::fraud::number_types::type_descriptors(meta.descriptors())
        .filter_map(Descriptor::example)
        .map(str::to_string)
        .collect()
}

/// What the users of a PBX in `region` dial.
fn corpus(region: &str, plan: &DialPlan, seed: u64) -> Vec<String> {
    let (intl, national, cc) = (
        &plan.international_prefix,
        &plan.national_prefix,
        &plan.country_code,
    );
    let mut out = Vec::new();
    for example in examples(region) {
        out.push(format!("{national}{example}"));
        out.push(format!("+{cc}{example}"));
        out.push(format!("{intl}{cc}{example}"));
    }
    let abroad = [
        "GB", "DE", "FR", "IT", "US", "CA", "JM", "DO", "AG", "BS", "BB", "KY", "TT", "PR", "CU",
        "RU", "KZ", "LT", "SO", "NG", "IN", "CN", "JP", "AU", "BR", "MX", "IL", "AE", "VA", "GG",
        "IM", "JE", "SM", "MC", "LI", "LV", "EE", "BY", "UA", "TN",
    ];
    for other in abroad {
        let code = DATABASE.by_id(other).map(|m| m.country_code()).unwrap();
        for example in examples(other) {
            out.push(format!("{intl}{code}{example}"));
            out.push(format!("+{code}{example}"));
        }
    }
    let mut random = Digits(seed);
    for _ in 0..400 {
        let len = 2 + (random.next() % 5) as usize;
        out.push(random.string(len));
    }
    for _ in 0..300 {
        let len = 6 + (random.next() % 6) as usize;
        out.push(format!("{national}{}", random.string(len)));
    }
    for _ in 0..200 {
        let len = 7 + (random.next() % 4) as usize;
        out.push(random.string(len));
    }
    for _ in 0..200 {
        let len = 7 + (random.next() % 8) as usize;
        out.push(format!("{intl}{}", random.string(len)));
    }
    // Feature codes (`1167` in North America) are the check's own knowledge, tested
    // beside it: the oracle dials none.
    out.retain(|n| {
        !plan
            .feature_prefixes
            .iter()
            .any(|p| n.starts_with(p.as_str()))
    });
    out.sort();
    out.dedup();
    out
}

fn oracle(lines: &str) -> Vec<String> {
    let mut child = Command::new(python())
        .arg(common::repo().join("tests/oracle/classify_number.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the oracle starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Each supported country's corpus, classified by the check and by the oracle: the same
/// class for every number but the listed departures.
#[test]
fn every_class_agrees_with_libphonenumber_itself() {
    let countries = [
        ("FR", "33"),
        ("DE", "49"),
        ("GB", "44"),
        ("US", "1"),
        ("IT", "39"),
    ];
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (i, (region, cc)) in countries.into_iter().enumerate() {
        let plan = DialPlan::for_country(cc);
        let mut numbers = corpus(region, &plan, 0x9e37_79b9_7f4a_7c15 + i as u64);
        numbers.extend(
            DEPARTURES
                .iter()
                .filter(|d| d.0 == region)
                .map(|d| d.1.to_string()),
        );
        let homes = plan.home_regions.join(",");
        let input: String = numbers
            .iter()
            .map(|n| format!("{region}\t{homes}\t{n}\n"))
            .collect();
        let expected = oracle(&input);
        assert_eq!(expected.len(), numbers.len());
        for (number, oracle) in numbers.iter().zip(&expected) {
            let ours = classify(
                &plan,
                &Prefixes::default(),
                &Prefixes::default(),
                number.as_bytes(),
            )
            .class
            .to_string();
            checked += 1;
            let departure = DEPARTURES.iter().find(|d| d.0 == region && d.1 == number);
            match departure {
                Some(d) => assert_eq!((ours.as_str(), oracle.as_str()), (d.2, d.3), "{number}"),
                None if ours != *oracle => wrong.push(format!(
                    "{region} {number}: ours {ours}, libphonenumber {oracle}"
                )),
                None => {}
            }
        }
    }
    assert!(checked > 5000, "only {checked} numbers");
    assert!(
        wrong.is_empty(),
        "{} of {checked} differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
