//! What every adapter (System() arguments, legacy JSON, AGI, FastAGI) turns a guest call into.

use std::net::IpAddr;

/// One inbound call as the rules see it.
///
/// Every field but `peer_ip` is chosen by the caller and may hold any byte (design.md
/// §3a: LF, CR, `)`, invalid UTF-8), so they are kept as raw bytes: nothing is decoded
/// or trimmed on the way in, and only the alert log's escaping turns them into text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// From the transport only; never from a caller-controlled field. A request without
    /// a valid one never becomes a `Call` (see [`crate::peer`]).
    pub peer_ip: IpAddr,
    pub callerid_num: Vec<u8>,
    pub callerid_name: Vec<u8>,
    /// The dialed extension (`${EXTEN}`).
    pub exten: Vec<u8>,
    pub user_agent: Vec<u8>,
    pub peer_name: Vec<u8>,
    /// Something the adapter saw that only a caller could have caused.
    pub anomaly: Option<Anomaly>,
}

/// Evidence of tampering found while reading the request, before any rule ran.
///
/// The seed's dialplan builds JSON by pasting caller values into a string, so a caller
/// who breaks that JSON or adds keys to it is attacking the check itself (design.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anomaly {
    /// The request could not be parsed at all.
    MalformedRequest,
    /// The request parsed but carried a duplicated or unexpected key.
    RequestTampering,
}

impl Call {
    /// A call from `ip` with every caller value empty.
    pub fn new(peer_ip: IpAddr) -> Call {
        Call {
            peer_ip,
            callerid_num: Vec::new(),
            callerid_name: Vec::new(),
            exten: Vec::new(),
            user_agent: Vec::new(),
            peer_name: Vec::new(),
            anomaly: None,
        }
    }
}

/// One outbound call of an authenticated account, as the outbound check reads it
/// (`AGI(agi://…/outbound)` in `[extsec-outbound]`).
///
/// The account is the PBX's own name for it (`GROUP(extsec-outbound)`, set from the
/// endpoint or peer name); the number is what the phone dialled (`${ARG1}`), any
/// bytes; the address is the transport's (none for a Local channel whose call carried
/// no `EXTSEC_ADDRESS`: an `Originate`, a call file). `live` is `GROUP_COUNT`: the
/// account's calls up now, this one included. `call_id` is the channel's unique id
/// (`agi_uniqueid`), which its hangup handler names again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    pub account: String,
    pub number: Vec<u8>,
    pub address: Option<IpAddr>,
    pub live: u32,
    pub call_id: String,
    /// A caller's bytes reshaped the AGI stream (design.md §3a).
    pub tampered: bool,
}
