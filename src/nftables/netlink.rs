//! Set elements over netlink: the few nf_tables messages a ban needs, encoded by hand
//! (the kernel's uapi `linux/netfilter/nf_tables.h`), sent as one batch per flush.
//!
//! Why not a process per ban: forking `nft` costs milliseconds and a process; a batch
//! of a thousand elements is one `sendmsg`. Why not a crate: the maintained nf_tables
//! crates are GPL or bind the GPL libnftnl, and we need three message types.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

const NETLINK_NETFILTER: i32 = 12;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_DELSETELEM: u16 = 14;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_DONE: u16 = 3;
/// Sequence numbers a batch may use: BEGIN, a message per set, END.
const SEQ_PER_BATCH: u32 = 8;
/// The attribute type without its NESTED and NET_BYTEORDER flags.
const NLA_TYPE_MASK: u16 = 0x3fff;
const NFPROTO_INET: u8 = 1;
const NLA_F_NESTED: u16 = 0x8000;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
const NFTA_SET_ELEM_USERDATA: u16 = 6;
const NFTA_DATA_VALUE: u16 = 1;
/// Notifications of every change to nf_tables (`nft monitor` listens to it).
const NFNLGRP_NFTABLES: u32 = 7;
const SOL_NETLINK: i32 = 270;
const NETLINK_ADD_MEMBERSHIP: i32 = 1;
/// What removes a part of a table: itself, a chain, a rule, a set. Elements
/// (`NFT_MSG_DELSETELEM`, an unban) leave the table whole.
const REMOVALS: [u16; 4] = [2, 5, 8, 11];
/// libnftnl's user-data record for an element's comment, which `nft` shows.
const NFTNL_UDATA_SET_ELEM_COMMENT: u8 = 0;

/// The set an address belongs in, by family.
pub fn set_name(ip: IpAddr) -> &'static str {
    BANS.of(ip)
}

/// A pair of sets of one table, IPv4 and IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sets(pub &'static str, pub &'static str);

impl Sets {
    pub fn of(self, ip: IpAddr) -> &'static str {
        match ip {
            IpAddr::V4(_) => self.0,
            IpAddr::V6(_) => self.1,
        }
    }
}

/// The bans' sets.
pub const BANS: Sets = Sets("v4", "v6");
/// The addresses that logged in lately, which the edge lets through.
pub const KNOWN: Sets = Sets("known4", "known6");

/// One element to add: the address, its timeout, and the comment `nft` shows (the
/// alert's reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub ip: IpAddr,
    pub timeout: Duration,
    pub comment: String,
}

/// A netlink message under construction.
struct Message {
    bytes: Vec<u8>,
    /// Offsets of nested attributes still open, to write their length at the end.
    open: Vec<usize>,
}

impl Message {
    fn new(kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> Message {
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(&0u32.to_ne_bytes()); // length, set in `finish`
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(&flags.to_ne_bytes());
        bytes.extend_from_slice(&seq.to_ne_bytes());
        bytes.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
        bytes.push(family);
        bytes.push(0); // NFNETLINK_V0
        bytes.extend_from_slice(&res_id.to_be_bytes());
        Message {
            bytes,
            open: Vec::new(),
        }
    }

    fn attr(&mut self, kind: u16, value: &[u8]) {
        let len = 4 + value.len();
        self.bytes.extend_from_slice(&(len as u16).to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(value);
        self.pad();
    }

    fn string(&mut self, kind: u16, value: &str) {
        let mut v = value.as_bytes().to_vec();
        v.push(0);
        self.attr(kind, &v);
    }

    fn begin(&mut self, kind: u16) {
        self.open.push(self.bytes.len());
        self.bytes.extend_from_slice(&0u16.to_ne_bytes());
        self.bytes
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    }

    fn end(&mut self) {
        let at = self.open.pop().expect("a nested attribute is open");
        let len = (self.bytes.len() - at) as u16;
        self.bytes[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        while self.bytes.len() % 4 != 0 {
            self.bytes.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        debug_assert!(self.open.is_empty());
        let len = self.bytes.len() as u32;
        self.bytes[..4].copy_from_slice(&len.to_ne_bytes());
        self.bytes
    }
}

fn key(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// The comment as libnftnl stores it: type, length, the text and its NUL; cut to fit.
fn comment_userdata(comment: &str) -> Vec<u8> {
    let text: Vec<u8> = comment.bytes().take(127).collect();
    let mut out = vec![NFTNL_UDATA_SET_ELEM_COMMENT, (text.len() + 1) as u8];
    out.extend_from_slice(&text);
    out.push(0);
    out
}

/// A set-element message (`NEWSETELEM`, `DELSETELEM`, `GETSETELEM`) for `set` of
/// `inet table`; `elements` writes what goes in its element list, if anything.
fn setelem(
    op: u16,
    flags: u16,
    seq: u32,
    (table, set): (&str, &str),
    elements: Option<&dyn Fn(&mut Message)>,
) -> Vec<u8> {
    let mut m = Message::new(
        (NFNL_SUBSYS_NFTABLES << 8) | op,
        flags,
        seq,
        NFPROTO_INET,
        0,
    );
    m.string(NFTA_SET_ELEM_LIST_TABLE, table);
    m.string(NFTA_SET_ELEM_LIST_SET, set);
    if let Some(write) = elements {
        m.begin(NFTA_SET_ELEM_LIST_ELEMENTS);
        write(&mut m);
        m.end();
    }
    m.finish()
}

/// One element's key: its address.
fn element_key(m: &mut Message, ip: IpAddr) {
    m.begin(NFTA_SET_ELEM_KEY);
    m.attr(NFTA_DATA_VALUE, &key(ip));
    m.end();
}

/// `messages` between BEGIN (at `first_seq`) and END: nf_tables applies them as one
/// transaction.
fn batch(first_seq: u32, messages: Vec<Vec<u8>>) -> Vec<u8> {
    let framing =
        |kind, seq| Message::new(kind, NLM_F_REQUEST, seq, 0, NFNL_SUBSYS_NFTABLES).finish();
    let end_seq = first_seq + messages.len() as u32 + 1;
    let mut out = framing(NFNL_MSG_BATCH_BEGIN, first_seq);
    for m in messages {
        out.extend_from_slice(&m);
    }
    out.extend_from_slice(&framing(NFNL_MSG_BATCH_END, end_seq));
    out
}

/// A batch with one NEWSETELEM per set named that adds `elements` to the sets `v4` and
/// `v6` of `inet table`; the sequence numbers of the messages to be acked.
pub fn add_batch(table: &str, elements: &[Element], first_seq: u32) -> (Vec<u8>, Vec<u32>) {
    replace_batch(table, BANS, &[], elements, first_seq)
}

/// A batch that first deletes `replaced` (addresses banned now, whose ban starts
/// again: the kernel keeps an element's timeout when it is added again), then adds
/// `elements`; one transaction, so an address is never unbanned in between. A replaced
/// address that is not in its set fails the whole batch with ENOENT.
pub fn replace_batch(
    table: &str,
    sets: Sets,
    replaced: &[IpAddr],
    elements: &[Element],
    first_seq: u32,
) -> (Vec<u8>, Vec<u32>) {
    let mut messages = Vec::new();
    let mut acked = Vec::new();
    for set in [sets.0, sets.1] {
        let mine: Vec<IpAddr> = replaced
            .iter()
            .copied()
            .filter(|ip| sets.of(*ip) == set)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let seq = first_seq + 1 + messages.len() as u32;
        acked.push(seq);
        let write = |m: &mut Message| {
            for ip in &mine {
                m.begin(NFTA_LIST_ELEM);
                element_key(m, *ip);
                m.end();
            }
        };
        messages.push(setelem(
            NFT_MSG_DELSETELEM,
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
            (table, set),
            Some(&write),
        ));
    }
    for set in [sets.0, sets.1] {
        let mine: Vec<&Element> = elements.iter().filter(|e| sets.of(e.ip) == set).collect();
        if mine.is_empty() {
            continue;
        }
        let seq = first_seq + 1 + messages.len() as u32;
        acked.push(seq);
        let write = |m: &mut Message| {
            for e in &mine {
                m.begin(NFTA_LIST_ELEM);
                element_key(m, e.ip);
                let ms = u64::try_from(e.timeout.as_millis()).unwrap_or(u64::MAX);
                m.attr(NFTA_SET_ELEM_TIMEOUT, &ms.to_be_bytes());
                m.attr(NFTA_SET_ELEM_USERDATA, &comment_userdata(&e.comment));
                m.end();
            }
        };
        let flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK;
        messages.push(setelem(
            NFT_MSG_NEWSETELEM,
            flags,
            seq,
            (table, set),
            Some(&write),
        ));
    }
    (batch(first_seq, messages), acked)
}

/// A batch that deletes `ip` from its set.
pub fn delete_batch(table: &str, ip: IpAddr, first_seq: u32) -> (Vec<u8>, Vec<u32>) {
    let seq = first_seq + 1;
    let write = |m: &mut Message| {
        m.begin(NFTA_LIST_ELEM);
        element_key(m, ip);
        m.end();
    };
    let flags = NLM_F_REQUEST | NLM_F_ACK;
    let message = setelem(
        NFT_MSG_DELSETELEM,
        flags,
        seq,
        (table, set_name(ip)),
        Some(&write),
    );
    (batch(first_seq, vec![message]), vec![seq])
}

/// A dump request for the elements of one set.
pub fn dump_request(table: &str, set: &str, seq: u32) -> Vec<u8> {
    setelem(
        NFT_MSG_GETSETELEM,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        (table, set),
        None,
    )
}

/// What one chunk of a dump held: elements counted, and whether it ended the dump
/// (NLMSG_DONE, or an error's errno).
pub fn parse_dump(mut buf: &[u8]) -> (usize, Option<i32>) {
    let mut elements = 0;
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes(buf[0..4].try_into().unwrap()) as usize;
        if len < 16 || len > buf.len() {
            break;
        }
        let kind = u16::from_ne_bytes(buf[4..6].try_into().unwrap());
        match kind {
            NLMSG_DONE => return (elements, Some(0)),
            NLMSG_ERROR if len >= 20 => {
                let errno = -i32::from_ne_bytes(buf[16..20].try_into().unwrap());
                return (elements, Some(errno));
            }
            _ if kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM && len >= 20 => {
                for (kind, value) in attributes(&buf[20..len]) {
                    if kind == NFTA_SET_ELEM_LIST_ELEMENTS {
                        elements += attributes(value)
                            .filter(|(k, _)| *k == NFTA_LIST_ELEM)
                            .count();
                    }
                }
            }
            _ => {}
        }
        buf = &buf[((len + 3) & !3).min(buf.len())..];
    }
    (elements, None)
}

/// Whether the notifications in `buf` remove a part (the table, a chain, a rule, a
/// set) of the `inet` table `table`. Each removal names its table in its first
/// attribute (`NFTA_{TABLE_NAME,CHAIN_TABLE,RULE_TABLE,SET_TABLE}` are all 1).
pub fn removes_part_of(mut buf: &[u8], table: &str) -> bool {
    while buf.len() >= 20 {
        let len = u32::from_ne_bytes(buf[0..4].try_into().unwrap()) as usize;
        if len < 20 || len > buf.len() {
            break;
        }
        let kind = u16::from_ne_bytes(buf[4..6].try_into().unwrap());
        let family = buf[16];
        let removal = kind >> 8 == NFNL_SUBSYS_NFTABLES && REMOVALS.contains(&(kind & 0xff));
        if removal && family == NFPROTO_INET {
            let named = attributes(&buf[20..len])
                .find(|(k, _)| *k == 1)
                .is_some_and(|(_, name)| name.split(|&b| b == 0).next() == Some(table.as_bytes()));
            if named {
                return true;
            }
        }
        buf = &buf[((len + 3) & !3).min(buf.len())..];
    }
    false
}

/// A netlink socket that hears every change to nf_tables (`CAP_NET_ADMIN`), to
/// notice our table removed by someone else: Debian's `nftables.service` starts its
/// ruleset with `flush ruleset`.
pub struct Watch {
    fd: OwnedFd,
}

impl Watch {
    /// Opens it; a wait returns after `tick` when nothing was heard.
    pub fn open(tick: Duration) -> io::Result<Watch> {
        let fd = open_netfilter(tick)?;
        // SAFETY: a zeroed sockaddr_nl asks the kernel for a port id: a socket that
        // is not bound receives no multicast.
        let rc = unsafe {
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as u16;
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let group = NFNLGRP_NFTABLES;
        // SAFETY: a valid u32 for NETLINK_ADD_MEMBERSHIP on an open netlink socket.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                SOL_NETLINK,
                NETLINK_ADD_MEMBERSHIP,
                (&group as *const u32).cast(),
                std::mem::size_of::<u32>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Watch { fd })
    }

    /// Waits one tick for notifications; `true` when a part of `table` was removed,
    /// or when notifications were lost (the socket overran: look, to be sure).
    pub fn removed(&mut self, table: &str) -> io::Result<bool> {
        self.read(table, 0)
    }

    /// What is queued now, without waiting: `true` as [`Watch::removed`].
    pub fn removed_now(&mut self, table: &str) -> io::Result<bool> {
        self.read(table, libc::MSG_DONTWAIT)
    }

    fn read(&mut self, table: &str, mut flags: i32) -> io::Result<bool> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut removed = false;
        loop {
            // SAFETY: `buf` is valid for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    flags,
                )
            };
            let Ok(n) = usize::try_from(n) else {
                let e = io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(removed),
                    Some(libc::ENOBUFS) => Ok(true),
                    _ => Err(e),
                };
            };
            removed |= removes_part_of(&buf[..n], table);
            // What else is queued now, without waiting again.
            flags = libc::MSG_DONTWAIT;
        }
    }
}

/// A netlink socket to nf_tables whose reads give up after `timeout`.
fn open_netfilter(timeout: Duration) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_NETFILTER,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let timeout = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: a valid timeval for SO_RCVTIMEO on an open socket.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    Ok(fd)
}

/// The (type, payload) of each attribute in `buf`.
fn attributes(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([buf[0], buf[1]]));
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            return None;
        }
        let value = &buf[4..len];
        buf = &buf[((len + 3) & !3).min(buf.len())..];
        Some((kind, value))
    })
}

/// The kernel's answers in `buf`: (sequence number, errno or 0) of each NLMSG_ERROR.
pub fn parse_acks(mut buf: &[u8]) -> Vec<(u32, i32)> {
    let mut acks = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes(buf[0..4].try_into().unwrap()) as usize;
        if len < 16 || len > buf.len() {
            break;
        }
        let kind = u16::from_ne_bytes(buf[4..6].try_into().unwrap());
        let seq = u32::from_ne_bytes(buf[8..12].try_into().unwrap());
        if kind == NLMSG_ERROR && len >= 20 {
            let errno = i32::from_ne_bytes(buf[16..20].try_into().unwrap());
            acks.push((seq, -errno));
        }
        buf = &buf[(len + 3) & !3..];
    }
    acks
}

/// A netlink socket to nf_tables.
pub struct Socket {
    fd: OwnedFd,
    seq: u32,
}

impl Socket {
    /// Opens it; fails without `CAP_NET_ADMIN` only when a batch is sent.
    pub fn open() -> io::Result<Socket> {
        Ok(Socket {
            fd: open_netfilter(Duration::from_secs(2))?,
            seq: 1,
        })
    }

    /// Adds `elements`; an error names the kernel's reason (a full set: ENFILE).
    pub fn add(&mut self, table: &str, elements: &[Element]) -> io::Result<()> {
        let first = self.next_seq();
        let (batch, acked) = add_batch(table, elements, first);
        self.send(&batch, first, &acked)
    }

    /// Adds `elements`, those of `replaced` deleted first in the same transaction so
    /// that their time starts again. If one of them is gone already (expired, or lifted
    /// by hand) the kernel refuses the whole batch: it is sent again as a plain add.
    pub fn add_replacing(
        &mut self,
        table: &str,
        replaced: &[IpAddr],
        elements: &[Element],
    ) -> io::Result<()> {
        if replaced.is_empty() {
            return self.add(table, elements);
        }
        let first = self.next_seq();
        let (batch, acked) = replace_batch(table, BANS, replaced, elements, first);
        match self.send(&batch, first, &acked) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => self.add(table, elements),
            done => done,
        }
    }

    /// Puts `ip` in the known sets for `for_how_long` from now, however long it had
    /// left (the kernel keeps an element's timeout when it is added again: it is
    /// deleted first, in the same transaction).
    pub fn know(&mut self, table: &str, ip: IpAddr, for_how_long: Duration) -> io::Result<()> {
        let element = Element {
            ip,
            timeout: for_how_long,
            comment: "logged in".into(),
        };
        let first = self.next_seq();
        let (batch, acked) =
            replace_batch(table, KNOWN, &[ip], std::slice::from_ref(&element), first);
        match self.send(&batch, first, &acked) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let first = self.next_seq();
                let (batch, acked) = replace_batch(table, KNOWN, &[], &[element], first);
                self.send(&batch, first, &acked)
            }
            done => done,
        }
    }

    /// Removes `ip`; `Ok(false)` when it was not banned.
    pub fn delete(&mut self, table: &str, ip: IpAddr) -> io::Result<bool> {
        let first = self.next_seq();
        let (batch, acked) = delete_batch(table, ip, first);
        match self.send(&batch, first, &acked) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The number of elements in `set` (a netlink dump, no process).
    pub fn count(&mut self, table: &str, set: &str) -> io::Result<usize> {
        let request = dump_request(table, set, self.next_seq());
        self.send_raw(&request)?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0;
        loop {
            let n = self.recv(&mut buf)?;
            let (elements, end) = parse_dump(&buf[..n]);
            total += elements;
            match end {
                Some(0) => return Ok(total),
                Some(errno) => return Err(io::Error::from_raw_os_error(errno)),
                None => {}
            }
        }
    }

    /// The first sequence number of the next batch; each batch has [`SEQ_PER_BATCH`].
    fn next_seq(&mut self) -> u32 {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(SEQ_PER_BATCH);
        seq
    }

    /// One datagram from the kernel into `buf`; its length.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for its length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        // SAFETY: a zeroed sockaddr_nl is the kernel's address (pid 0, no groups).
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: the buffer and address are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends a batch whose messages are numbered from `first_seq` and waits for the
    /// acknowledgements of `acked`. An error for any message of this batch (the kernel
    /// refuses a batch without CAP_NET_ADMIN at its BEGIN) fails it at once; answers
    /// to an earlier batch that timed out are ignored.
    fn send(&mut self, batch: &[u8], first_seq: u32, acked: &[u32]) -> io::Result<()> {
        self.send_raw(batch)?;
        let ours = first_seq..first_seq.wrapping_add(SEQ_PER_BATCH);
        let mut pending: Vec<u32> = acked.to_vec();
        let mut buf = vec![0u8; 64 * 1024];
        while !pending.is_empty() {
            let n = self.recv(&mut buf)?;
            for (seq, errno) in parse_acks(&buf[..n]) {
                if !ours.contains(&seq) {
                    continue;
                }
                if errno != 0 {
                    return Err(io::Error::from_raw_os_error(errno));
                }
                pending.retain(|&s| s != seq);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One notification as the kernel multicasts it: header, nfgenmsg, the table's
    /// name as first attribute.
    fn notification(msg: u16, family: u8, table: &str) -> Vec<u8> {
        let mut name = table.as_bytes().to_vec();
        name.push(0);
        let attr_len = 4 + name.len();
        let mut attr = (attr_len as u16).to_ne_bytes().to_vec();
        attr.extend(1u16.to_ne_bytes());
        attr.extend(&name);
        attr.resize(attr_len.div_ceil(4) * 4, 0);
        let len = 16 + 4 + attr.len();
        let mut out = (len as u32).to_ne_bytes().to_vec();
        out.extend(((NFNL_SUBSYS_NFTABLES << 8) | msg).to_ne_bytes());
        out.extend([0u8; 10]); // flags, seq, pid
        out.extend([family, 0, 0, 0]);
        out.extend(attr);
        out
    }

    #[test]
    fn a_removal_of_our_table_or_its_parts_is_heard_and_nothing_else() {
        let ours = "extsecurity";
        // DELTABLE, DELCHAIN, DELRULE, DELSET of our inet table: heard.
        for msg in [2, 5, 8, 11] {
            assert!(
                removes_part_of(&notification(msg, NFPROTO_INET, ours), ours),
                "{msg}"
            );
        }
        // An unban (DELSETELEM), a new rule, another table, another family, a name
        // that only starts like ours: not ours to heal.
        assert!(!removes_part_of(
            &notification(NFT_MSG_DELSETELEM, NFPROTO_INET, ours),
            ours
        ));
        assert!(!removes_part_of(&notification(6, NFPROTO_INET, ours), ours));
        assert!(!removes_part_of(
            &notification(2, NFPROTO_INET, "filter"),
            ours
        ));
        assert!(!removes_part_of(&notification(2, 2, ours), ours));
        assert!(!removes_part_of(
            &notification(2, NFPROTO_INET, "extsecurity2"),
            ours
        ));
        // A flush ruleset arrives as many messages in one read: found among them.
        let mut many = notification(8, NFPROTO_INET, "filter");
        many.extend(notification(2, NFPROTO_INET, ours));
        assert!(removes_part_of(&many, ours));
        // Truncated bytes are not a removal, and do not panic.
        assert!(!removes_part_of(&many[..7], ours));
    }

    #[test]
    fn an_element_is_a_key_a_timeout_and_a_comment() {
        let e = Element {
            ip: "203.0.113.5".parse().unwrap(),
            timeout: Duration::from_secs(86_400),
            comment: "auth_bruteforce".into(),
        };
        let (batch, acked) = add_batch("extsecurity", &[e], 100);
        assert_eq!(acked, [101]);
        // BEGIN (20 bytes), NEWSETELEM, END (20 bytes).
        assert_eq!(&batch[4..6], &0x10u16.to_ne_bytes());
        assert_eq!(
            &batch[16..20],
            &[0, 0, 0, 10],
            "res_id: nf_tables, big-endian"
        );
        let msg = &batch[20..batch.len() - 20];
        let len = u32::from_ne_bytes(msg[..4].try_into().unwrap()) as usize;
        assert_eq!(len, msg.len());
        assert_eq!(&msg[4..6], &0x0a0cu16.to_ne_bytes(), "NFT_MSG_NEWSETELEM");
        assert_eq!(msg[16], NFPROTO_INET);
        let find = |needle: &[u8]| msg.windows(needle.len()).any(|w| w == needle);
        assert!(find(b"extsecurity\0"));
        assert!(find(b"v4\0"));
        assert!(find(&[203, 0, 113, 5]));
        assert!(
            find(&86_400_000u64.to_be_bytes()),
            "the timeout in ms, big-endian"
        );
        assert!(
            find(b"\0\x10auth_bruteforce\0"),
            "libnftnl's comment record"
        );
        assert_eq!(msg.len() % 4, 0);
    }

    #[test]
    fn each_family_goes_to_its_own_set() {
        let e = |ip: &str| Element {
            ip: ip.parse().unwrap(),
            timeout: Duration::from_secs(60),
            comment: "x".into(),
        };
        let (batch, acked) = add_batch("t", &[e("192.0.2.1"), e("2001:db8::1")], 0);
        assert_eq!(acked.len(), 2);
        let find = |needle: &[u8]| batch.windows(needle.len()).any(|w| w == needle);
        assert!(find(b"v4\0") && find(b"v6\0"));
        let (_, acked) = add_batch("t", &[e("2001:db8::1")], 0);
        assert_eq!(acked.len(), 1);
    }

    #[test]
    fn a_dump_counts_the_elements_of_each_message_until_done() {
        // One NEWSETELEM carrying two elements, then NLMSG_DONE.
        let e = |ip: &str| Element {
            ip: ip.parse().unwrap(),
            timeout: Duration::from_secs(60),
            comment: "x".into(),
        };
        let (batch, _) = add_batch("t", &[e("192.0.2.1"), e("192.0.2.2")], 0);
        let message = &batch[20..batch.len() - 20];
        let mut done = vec![0u8; 20];
        done[..4].copy_from_slice(&20u32.to_ne_bytes());
        done[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        assert_eq!(parse_dump(message), (2, None));
        assert_eq!(parse_dump(&[message, &done].concat()), (2, Some(0)));
        assert_eq!(
            parse_dump(&message[..30]),
            (0, None),
            "a cut message counts nothing"
        );
        let request = dump_request("t", "v4", 9);
        assert_eq!(
            &request[4..6],
            &0x0a0du16.to_ne_bytes(),
            "NFT_MSG_GETSETELEM"
        );
        assert_eq!(
            u16::from_ne_bytes([request[6], request[7]]) & NLM_F_DUMP,
            NLM_F_DUMP
        );
    }

    #[test]
    fn acks_carry_the_sequence_and_the_errno() {
        let mut ack = Vec::new();
        ack.extend_from_slice(&36u32.to_ne_bytes());
        ack.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        ack.extend_from_slice(&0u16.to_ne_bytes());
        ack.extend_from_slice(&7u32.to_ne_bytes());
        ack.extend_from_slice(&0u32.to_ne_bytes());
        ack.extend_from_slice(&(-23i32).to_ne_bytes()); // ENFILE: the set is full
        ack.extend_from_slice(&[0; 16]);
        assert_eq!(parse_acks(&ack), [(7, 23)]);
        assert_eq!(parse_acks(&ack[..10]), []);
    }
}
