//! The System() adapters: a command line in, a [`Call`] (or a refusal) out.
//!
//! Two shapes reach us through `/bin/sh -c`:
//! - the seed's legacy JSON, built by pasting caller values into a string, so a caller
//!   can break it or add keys to it (design.md §3);
//! - the recommended options, `--ip=… --exten-b64=…`, where every caller value went
//!   through Asterisk's `BASE64_ENCODE()` and so holds only `[A-Za-z0-9+/=]`.

use std::ffi::OsStr;
use std::fmt;
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;

use base64::Engine as _;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};

use crate::call::{Anomaly, Call};
use crate::peer::parse_peer_ip;

/// A request that never became a [`Call`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest {
    /// What was wrong, for the `CRITICAL` line and stderr.
    pub error: String,
    /// The request as received, echoed (escaped) in the `CRITICAL` line.
    pub raw: Vec<u8>,
    /// The transport's peer IP, when the fault can only be the caller's: that IP is then
    /// alerted on (`malformed_request`). `None` for faults of the dialplan or of
    /// Asterisk, which must never lead to a ban.
    pub blame: Option<IpAddr>,
}

/// The keys the seed's dialplan line writes. Its second `callerid_num` is the caller name.
const JSON_KEYS: [&str; 6] = [
    "ip",
    "callerid_num",
    "callerid_name",
    "dest_exten",
    "user_agent",
    "peer_name",
];

/// Parses the seed's JSON request: all of the program's arguments joined by one space.
///
/// The seed's line writes `callerid_num` twice, the second holding the caller name;
/// that is accepted. Any other duplicated key and any unknown key can only come from
/// a caller's value breaking out of its string: the call is then alerted on as
/// `request_tampering`, against the *first* `ip`, which the seed's line writes before
/// any caller value.
pub fn parse_json(raw: &[u8]) -> Result<Call, BadRequest> {
    let bad = |error: String, blame| BadRequest {
        error,
        raw: raw.to_vec(),
        blame,
    };
    let mut pairs = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(raw);
    if let Err(e) = PairsSeed(&mut pairs)
        .deserialize(&mut de)
        .and_then(|()| de.end())
    {
        return Err(bad(
            format!("malformed JSON request: {e}"),
            leading_ip(&pairs),
        ));
    }
    let fields = JsonFields::from_pairs(&pairs);
    let ip_text =
        fields.values[0].ok_or_else(|| bad("the request has no \"ip\" key".into(), None))?;
    let peer_ip = parse_peer_ip(ip_text).map_err(|e| bad(format!("{e}: {ip_text:?}"), None))?;
    if fields.ip_duplicated && pairs.first().map(|(k, _)| k.as_str()) != Some("ip") {
        // Without `ip` first we cannot tell the transport's address from a forged one.
        return Err(bad(
            "the request has two \"ip\" keys and the first key is not \"ip\": cannot tell which is real".into(),
            None,
        ));
    }
    Ok(Call {
        peer_ip,
        callerid_num: fields.get(1),
        callerid_name: fields.get(2),
        exten: fields.get(3),
        user_agent: fields.get(4),
        peer_name: fields.get(5),
        anomaly: fields.tampered.then_some(Anomaly::RequestTampering),
    })
}

/// The seed's keys picked out of the JSON object's pairs, in order.
#[derive(Default)]
struct JsonFields<'a> {
    /// In `JSON_KEYS` order, slot 0 the `ip`; the first occurrence of each key.
    values: [Option<&'a str>; 6],
    ip_duplicated: bool,
    tampered: bool,
}

impl<'a> JsonFields<'a> {
    fn from_pairs(pairs: &'a [(String, String)]) -> JsonFields<'a> {
        let mut f = JsonFields::default();
        let mut callerid_nums = 0;
        for (key, value) in pairs {
            let key = key.as_str();
            let slot = match JSON_KEYS.iter().position(|k| *k == key) {
                Some(1) => {
                    callerid_nums += 1;
                    // The seed's dialplan: the second `callerid_num` is the name.
                    if callerid_nums == 2 { 2 } else { 1 }
                }
                Some(i) => i,
                None => {
                    f.tampered = true;
                    continue;
                }
            };
            if f.values[slot].is_some() {
                f.tampered = true;
                f.ip_duplicated |= slot == 0;
                continue;
            }
            f.values[slot] = Some(value);
        }
        f
    }

    fn get(&self, slot: usize) -> Vec<u8> {
        self.values[slot].unwrap_or("").as_bytes().to_vec()
    }
}

/// The peer IP of a request that failed to parse, if its *first* pair, read before the
/// parser broke, is `"ip"` with a valid address. The seed's line writes that pair first,
/// from the transport, before any caller value: a caller can break what follows but
/// not that.
fn leading_ip(pairs: &[(String, String)]) -> Option<IpAddr> {
    match pairs.first() {
        Some((key, value)) if key == "ip" => parse_peer_ip(value).ok(),
        _ => None,
    }
}

/// Reads a JSON object's pairs in order into a vector, duplicates kept (a
/// `serde_json::Map` would silently merge them). The pairs read before a syntax error
/// stay in the vector.
struct PairsSeed<'a>(&'a mut Vec<(String, String)>);

impl<'de> DeserializeSeed<'de> for PairsSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PairsSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of string values")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(pair) = map.next_entry::<String, String>()? {
            self.0.push(pair);
        }
        Ok(())
    }
}

/// The recommended System() request: one `--name=value` option per field, caller
/// values base64-encoded by the dialplan. `None` means the option was absent.
#[derive(Debug, Default, Clone, Copy)]
pub struct EncodedFields<'a> {
    pub ip: Option<&'a OsStr>,
    pub callerid_num: Option<&'a OsStr>,
    pub callerid_name: Option<&'a OsStr>,
    pub exten: Option<&'a OsStr>,
    pub user_agent: Option<&'a OsStr>,
    pub peer_name: Option<&'a OsStr>,
}

/// Decodes the recommended options. A caller cannot put anything but base64 into them,
/// so a decoding error is the dialplan's fault and never blamed on the caller.
pub fn parse_encoded(fields: EncodedFields, raw: &[u8]) -> Result<Call, BadRequest> {
    let bad = |error: String| BadRequest {
        error,
        raw: raw.to_vec(),
        blame: None,
    };
    let ip_text = fields.ip.map(OsStr::as_bytes).unwrap_or_default();
    let ip_text = std::str::from_utf8(ip_text).map_err(|_| bad("--ip is not text".into()))?;
    let peer_ip = parse_peer_ip(ip_text).map_err(|e| bad(format!("--ip: {e}: {ip_text:?}")))?;
    let decode = |name: &str, value: Option<&OsStr>| {
        decode_base64(value.map(OsStr::as_bytes).unwrap_or_default()).map_err(|e| {
            bad(format!(
                "--{name}-b64 is not base64 ({e}): is BASE64_ENCODE() missing in the dialplan?"
            ))
        })
    };
    Ok(Call {
        peer_ip,
        callerid_num: decode("callerid-num", fields.callerid_num)?,
        callerid_name: decode("callerid-name", fields.callerid_name)?,
        exten: decode("exten", fields.exten)?,
        user_agent: decode("user-agent", fields.user_agent)?,
        peer_name: decode("peer-name", fields.peer_name)?,
        anomaly: None,
    })
}

/// Decodes what Asterisk's `BASE64_ENCODE()` wrote: the standard alphabet with padding,
/// possibly cut short.
///
/// Asterisk reads a function's result into a 4 KiB buffer and cuts an application's
/// substituted data at 8 KiB (`VAR_BUF_SIZE`, `EXT_DATA_SIZE` in `main/pbx.c`), so a
/// caller who sends a long value can end its base64 mid-quartet. Refusing that would
/// let a long User-Agent switch the check off; we decode the whole quartets instead.
/// Any byte outside the alphabet is still an error: it cannot come from the encoder.
pub fn decode_base64(text: &[u8]) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let in_alphabet = |b: &u8| b.is_ascii_alphanumeric() || b"+/=".contains(b);
    if let Some(at) = text.iter().position(|b| !in_alphabet(b)) {
        return Err(base64::DecodeError::InvalidByte(at, text[at]));
    }
    let unpadded = text
        .strip_suffix(b"==")
        .or_else(|| text.strip_suffix(b"="))
        .unwrap_or(text);
    // A lone trailing symbol carries no whole byte: it is what the cut left.
    let whole = if unpadded.len() % 4 == 1 {
        &unpadded[..unpadded.len() - 1]
    } else {
        unpadded
    };
    LENIENT.decode(whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed's dialplan line after substitution (seed README, `_X.` line).
    fn seed(ip: &str, num: &str, name: &str, exten: &str, ua: &str, peer: &str) -> String {
        format!(
            r#"{{"ip": "{ip}", "callerid_num": "{num}", "callerid_num": "{name}", "dest_exten": "{exten}", "user_agent":"{ua}", "peer_name": "{peer}"}}"#
        )
    }

    #[test]
    fn the_seed_line_is_read_with_its_second_callerid_num_as_the_name() {
        let raw = seed(
            "192.0.2.10",
            "5551234",
            "Alice",
            "4915112345678",
            "Yealink",
            "trunk",
        );
        let call = parse_json(raw.as_bytes()).unwrap();
        assert_eq!(call.peer_ip.to_string(), "192.0.2.10");
        assert_eq!(call.callerid_num, b"5551234");
        assert_eq!(call.callerid_name, b"Alice");
        assert_eq!(call.exten, b"4915112345678");
        assert_eq!(call.user_agent, b"Yealink");
        assert_eq!(call.peer_name, b"trunk");
        assert_eq!(call.anomaly, None);
    }

    #[test]
    fn an_explicit_callerid_name_key_is_accepted() {
        let raw = r#"{"ip": "192.0.2.10", "callerid_num": "1", "callerid_name": "Bob"}"#;
        let call = parse_json(raw.as_bytes()).unwrap();
        assert_eq!(call.callerid_name, b"Bob");
        assert_eq!(call.anomaly, None);
    }

    #[test]
    fn a_second_ip_is_tampering_against_the_first() {
        // Caller name `x", "ip": "203.0.113.9` (design.md §3, spoofed IP).
        let raw = seed(
            "192.0.2.10",
            "1",
            r#"x", "ip": "203.0.113.9"#,
            "100",
            "",
            "",
        );
        let call = parse_json(raw.as_bytes()).unwrap();
        assert_eq!(call.peer_ip.to_string(), "192.0.2.10");
        assert_eq!(call.anomaly, Some(Anomaly::RequestTampering));
    }

    #[test]
    fn other_duplicates_and_unknown_keys_are_tampering() {
        for raw in [
            seed(
                "192.0.2.10",
                "1",
                "n",
                "100",
                "ua",
                r#"p", "dest_exten": "4915112345678"#,
            ),
            seed(
                "192.0.2.10",
                "1",
                r#"n", "callerid_num": "2"#,
                "100",
                "",
                "",
            ),
            seed(
                "192.0.2.10",
                "1",
                r#"n", "callerid_name": "m"#,
                "100",
                "",
                "",
            ),
            seed("192.0.2.10", "1", r#"n", "zzz": "m"#, "100", "", ""),
        ] {
            let call = parse_json(raw.as_bytes()).unwrap();
            assert_eq!(call.anomaly, Some(Anomaly::RequestTampering), "{raw}");
            assert_eq!(call.peer_ip.to_string(), "192.0.2.10");
        }
    }

    #[test]
    fn a_duplicated_ip_without_ip_first_blames_no_one() {
        let raw = r#"{"callerid_num": "x", "ip": "203.0.113.9", "ip": "192.0.2.10"}"#;
        let e = parse_json(raw.as_bytes()).unwrap_err();
        assert_eq!(e.blame, None);
    }

    #[test]
    fn broken_json_blames_the_leading_ip_only() {
        // A `"` or `\` in a caller value breaks the seed's JSON (design.md §3, evasion).
        let raw = seed("192.0.2.10", "1", r#"O"Brien"#, "100", "", "");
        let e = parse_json(raw.as_bytes()).unwrap_err();
        assert_eq!(e.blame, Some("192.0.2.10".parse().unwrap()));
        assert!(e.error.starts_with("malformed JSON request"), "{}", e.error);
        assert_eq!(e.raw, raw.as_bytes());
        let pjsip = r#"{"ip": "[2001:db8::5]:5060", "callerid_num": "\q"}"#;
        assert_eq!(
            parse_json(pjsip.as_bytes()).unwrap_err().blame,
            Some("2001:db8::5".parse().unwrap())
        );
        for no_blame in [
            r#"{"callerid_num": "\", "ip": "192.0.2.10"}"#,
            r#"{"ip": "garbage", "x": "\"}"#,
            "",
            "not json",
        ] {
            assert_eq!(
                parse_json(no_blame.as_bytes()).unwrap_err().blame,
                None,
                "{no_blame}"
            );
        }
    }

    #[test]
    fn raw_control_bytes_and_invalid_utf8_are_malformed() {
        let mut raw = seed("192.0.2.10", "1", "a\nb", "100", "", "").into_bytes();
        assert!(parse_json(&raw).unwrap_err().blame.is_some());
        raw = seed("192.0.2.10", "1", "a", "100", "", "").into_bytes();
        let pos = raw.iter().position(|&b| b == b'a').unwrap();
        raw[pos] = 0xff;
        assert!(parse_json(&raw).unwrap_err().blame.is_some());
    }

    #[test]
    fn json_escapes_are_decoded_into_raw_bytes() {
        let raw = seed("192.0.2.10", r"1\n2", r"\u0000", "100", "", "");
        let call = parse_json(raw.as_bytes()).unwrap();
        assert_eq!(call.callerid_num, b"1\n2");
        assert_eq!(call.callerid_name, b"\0");
    }

    #[test]
    fn a_missing_or_bad_ip_blames_no_one() {
        for raw in [
            r#"{"callerid_num": "1"}"#,
            r#"{"ip": "", "callerid_num": "1"}"#,
            r#"{"ip": "unknown"}"#,
        ] {
            assert_eq!(parse_json(raw.as_bytes()).unwrap_err().blame, None, "{raw}");
        }
    }

    #[test]
    fn non_string_values_and_non_objects_are_malformed() {
        for raw in [
            r#"{"ip": "192.0.2.10", "callerid_num": 5}"#,
            r#"["192.0.2.10"]"#,
        ] {
            assert!(parse_json(raw.as_bytes()).is_err(), "{raw}");
        }
        let trailing = r#"{"ip": "192.0.2.10"} {"ip": "1.1.1.1"}"#;
        assert_eq!(
            parse_json(trailing.as_bytes()).unwrap_err().blame,
            Some("192.0.2.10".parse().unwrap())
        );
    }

    fn os(s: &str) -> Option<&OsStr> {
        Some(OsStr::new(s))
    }

    #[test]
    fn encoded_fields_are_decoded() {
        let fields = EncodedFields {
            ip: os("127.0.0.1:5071"),
            callerid_num: os("NTU1MTIzNA=="),
            callerid_name: os("eCckKHRvdWNoIFBXTkVEKSc="),
            exten: os(""),
            user_agent: None,
            peer_name: os("MTAwMQ=="),
        };
        let call = parse_encoded(fields, b"raw").unwrap();
        assert_eq!(call.peer_ip.to_string(), "127.0.0.1");
        assert_eq!(call.callerid_num, b"5551234");
        assert_eq!(call.callerid_name, b"x'$(touch PWNED)'");
        assert_eq!(call.exten, b"");
        assert_eq!(call.user_agent, b"");
        assert_eq!(call.peer_name, b"1001");
    }

    #[test]
    fn base64_cut_short_by_asterisk_decodes_its_whole_bytes() {
        assert_eq!(decode_base64(b"NTU1MTIzNA==").unwrap(), b"5551234");
        assert_eq!(decode_base64(b"NTU1MTIzNA=").unwrap(), b"5551234");
        assert_eq!(decode_base64(b"NTU1MTIzNA").unwrap(), b"5551234");
        assert_eq!(decode_base64(b"NTU1MTIzN").unwrap(), b"555123");
        assert_eq!(decode_base64(b"NTU1M").unwrap(), b"555");
        assert_eq!(decode_base64(b"").unwrap(), b"");
        for bad in [&b"NTU1\n"[..], b"NT U1", b"NTU1$(id)", b"NT=U1", b"-_-_"] {
            assert!(
                decode_base64(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn bad_encoded_fields_blame_no_one() {
        let no_ip = EncodedFields::default();
        assert_eq!(parse_encoded(no_ip, b"").unwrap_err().blame, None);
        let not_b64 = EncodedFields {
            ip: os("192.0.2.1"),
            exten: os("1$(id)"),
            ..EncodedFields::default()
        };
        let e = parse_encoded(not_b64, b"").unwrap_err();
        assert_eq!(e.blame, None);
        assert!(
            e.error.starts_with("--exten-b64 is not base64"),
            "{}",
            e.error
        );
    }
}
