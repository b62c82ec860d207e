//! The Ethernet shim DIF (DESIGN.md D6): the shim protocol of [`super`] straight over
//! Ethernet, with no IP underneath, and name resolution by broadcast in place of a
//! table of peers.
//!
//! Frames carry Ethertype [`ETHERTYPE`] (0xD1F0). After the Ethernet header, every
//! frame starts with a header of [`HEADER_LEN`] bytes, network byte order:
//!
//! ```text
//!  0         1        2                  6                  10
//!  +---------+--------+------------------+------------------+---------------------
//!  | version | kind   | dst demux (u32)  | src demux (u32)  | body
//!  +---------+--------+------------------+------------------+---------------------
//!  kind 0 data:              body = a shim datagram (flow id u32, PDU or shim management)
//!  kind 1 resolve request:   body = name; sent to ff:ff:ff:ff:ff:ff, dst demux all ones
//!  kind 2 resolve reply:     body = name; sent to the requester's MAC and demux
//! ```
//!
//! The **demultiplexing id** names one shim process on an interface, so that several
//! processes of one host can each run a shim on the same interface without seeing each
//! other's flows: a process takes only frames addressed to its own id (and resolve
//! requests, addressed to all). A peer is a MAC address and a demultiplexing id
//! ([`EthPeer`]).
//!
//! **Name resolution**, in the manner of ARP: to reach a name (a DIF's name, or a
//! member's IPC process name), a process broadcasts a request carrying it; every
//! process that registered the name answers with a unicast reply, whose source MAC and
//! demultiplexing id are the peer. The first answer is cached for
//! [`EthConfig::cache_ttl`]; a request is repeated every [`EthConfig::resolve_retry`]
//! until [`EthConfig::resolve_timeout`], when [`EthEvent::Unresolved`] says nobody
//! answered.
//!
//! Frames that are truncated, of another version or kind, or addressed to another
//! demultiplexing id are dropped and counted ([`EthCounters`]); nothing here panics on
//! any input.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use super::{ShimConfig, ShimEvent, ShimFlowId, ShimProcess, HEADER_LEN as SHIM_HEADER_LEN};
use crate::time::{earliest, Instant};
use crate::wire::codec::{Reader, Writer};
use crate::wire::mgmt::{get_name, put_name};
use crate::wire::Error;
use crate::ApplicationName;

/// The Ethertype of RINA shim frames.
pub const ETHERTYPE: u16 = 0xD1F0;

/// Length of the Ethernet shim header (before the shim datagram).
pub const HEADER_LEN: usize = 10;

/// The broadcast MAC address.
pub const BROADCAST_MAC: Mac = [0xff; 6];

/// The demultiplexing id that addresses every process (resolve requests only).
pub const ALL_DEMUX: u32 = u32::MAX;

const VERSION: u8 = 1;
const KIND_DATA: u8 = 0;
const KIND_RESOLVE_REQUEST: u8 = 1;
const KIND_RESOLVE_REPLY: u8 = 2;

/// A MAC address.
pub type Mac = [u8; 6];

/// One shim process on the Ethernet: its MAC address and demultiplexing id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EthPeer {
    /// The interface's MAC address.
    pub mac: Mac,
    /// The process's demultiplexing id on that interface.
    pub demux: u32,
}

impl std::fmt::Display for EthPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.mac;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}/{:08x}",
            m[0], m[1], m[2], m[3], m[4], m[5], self.demux
        )
    }
}

/// Settings of an Ethernet shim process.
#[derive(Clone, Debug)]
pub struct EthConfig {
    /// The interface's MTU: the largest frame payload (this header included).
    pub mtu: usize,
    /// Interval between repeated resolve requests.
    pub resolve_retry: Duration,
    /// How long to wait for any answer.
    pub resolve_timeout: Duration,
    /// How long an answer is remembered.
    pub cache_ttl: Duration,
    /// Timers of the shim protocol's flow allocation.
    pub alloc_retry: Duration,
    /// How long a flow allocation may take.
    pub alloc_timeout: Duration,
}

impl Default for EthConfig {
    fn default() -> Self {
        Self {
            mtu: 1500,
            resolve_retry: Duration::from_millis(200),
            resolve_timeout: Duration::from_secs(2),
            cache_ttl: Duration::from_secs(60),
            alloc_retry: Duration::from_millis(250),
            alloc_timeout: Duration::from_secs(3),
        }
    }
}

/// What the Ethernet shim tells its user (beyond the flow events of the shim
/// protocol, see [`EthShim::poll_shim_event`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EthEvent {
    /// A name was resolved (first answer).
    Resolved {
        /// The name asked for.
        name: ApplicationName,
        /// Who answered.
        peer: EthPeer,
    },
    /// Nobody answered for the name before the time-out.
    Unresolved {
        /// The name asked for.
        name: ApplicationName,
    },
}

/// Counters of frames dropped, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EthCounters {
    /// Shorter than the header, or a body that does not parse.
    pub malformed: u64,
    /// Another version or an unknown kind.
    pub unknown: u64,
    /// Addressed to another demultiplexing id (another process on this interface).
    pub not_ours: u64,
    /// Resolve requests answered.
    pub answered: u64,
}

#[derive(Debug)]
struct Pending {
    deadline: Instant,
    next_try: Instant,
}

/// One shim process on one Ethernet interface. Sans-I/O: feed it frames with
/// [`EthShim::handle_frame`], send what [`EthShim::poll_transmit`] gives, run
/// [`EthShim::handle_timeout`] at [`EthShim::poll_timeout`].
#[derive(Debug)]
pub struct EthShim {
    cfg: EthConfig,
    me: EthPeer,
    /// The shim protocol: flows to peers.
    shim: ShimProcess<EthPeer>,
    /// Names this process answers resolve requests for.
    names: BTreeSet<ApplicationName>,
    cache: BTreeMap<ApplicationName, (EthPeer, Instant)>,
    pending: BTreeMap<ApplicationName, Pending>,
    out: VecDeque<(Mac, Vec<u8>)>,
    events: VecDeque<EthEvent>,
    counters: EthCounters,
}

impl EthShim {
    /// A shim process at `me` (its interface's MAC and its own demultiplexing id).
    pub fn new(cfg: EthConfig, me: EthPeer, seed: u64) -> Self {
        let shim = ShimProcess::new(
            ShimConfig {
                mtu: cfg.mtu.saturating_sub(HEADER_LEN),
                alloc_retry: cfg.alloc_retry,
                alloc_timeout: cfg.alloc_timeout,
            },
            seed,
        );
        Self {
            cfg,
            me,
            shim,
            names: BTreeSet::new(),
            cache: BTreeMap::new(),
            pending: BTreeMap::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            counters: EthCounters::default(),
        }
    }

    /// This process's MAC and demultiplexing id.
    pub fn me(&self) -> EthPeer {
        self.me
    }

    /// The flows the shim protocol holds.
    pub fn shim_flow_count(&self) -> usize {
        self.shim.flow_count()
    }

    /// The shim protocol over this link.
    pub fn shim(&mut self) -> &mut ShimProcess<EthPeer> {
        &mut self.shim
    }

    /// The largest SDU a flow carries (the interface's MTU less both headers).
    pub fn max_sdu(&self) -> usize {
        self.shim.max_sdu()
    }

    /// Counters of dropped frames.
    pub fn counters(&self) -> EthCounters {
        self.counters
    }

    /// Counters of the flow protocol.
    pub fn shim_counters(&self) -> super::ShimCounters {
        self.shim.counters()
    }

    /// Answers resolve requests for `name`, and accepts shim flows to it.
    pub fn register(&mut self, name: ApplicationName) {
        self.shim.register(name.clone());
        self.names.insert(name);
    }

    /// The peer that answers for `name`, if it is known and fresh; otherwise starts
    /// resolving it (the answer comes as an [`EthEvent`]) and returns `None`.
    pub fn resolve(&mut self, now: Instant, name: &ApplicationName) -> Option<EthPeer> {
        match self.cache.get(name) {
            Some(&(peer, expires)) if now < expires => return Some(peer),
            Some(_) => {
                self.cache.remove(name);
            }
            None => {}
        }
        if !self.pending.contains_key(name) {
            self.pending.insert(
                name.clone(),
                Pending {
                    deadline: now + self.cfg.resolve_timeout,
                    next_try: now,
                },
            );
            self.retry(now, name.clone());
        }
        None
    }

    /// Forgets what is known of `name` (the peer stopped answering).
    pub fn forget(&mut self, name: &ApplicationName) {
        self.cache.remove(name);
    }

    /// The frame header and destination MAC for a PDU on flow `id`; the frame is the
    /// header followed by the PDU. `None`: the flow is not up.
    pub fn data_header(&self, id: ShimFlowId) -> Option<(Mac, [u8; HEADER_LEN + SHIM_HEADER_LEN])> {
        let (peer, shim_hdr) = self.shim.data_header(id)?;
        let mut h = [0u8; HEADER_LEN + SHIM_HEADER_LEN];
        h[..HEADER_LEN].copy_from_slice(&self.header(KIND_DATA, peer.demux));
        h[HEADER_LEN..].copy_from_slice(&shim_hdr);
        Some((peer.mac, h))
    }

    fn header(&self, kind: u8, dst_demux: u32) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = VERSION;
        h[1] = kind;
        h[2..6].copy_from_slice(&dst_demux.to_be_bytes());
        h[6..10].copy_from_slice(&self.me.demux.to_be_bytes());
        h
    }

    /// Handles a frame's payload (after the Ethernet header) from MAC `src`: returns
    /// the flow and PDU if it carries data for a flow of this process.
    pub fn handle_frame<'b>(
        &mut self,
        now: Instant,
        src: Mac,
        frame: &'b [u8],
    ) -> Option<(ShimFlowId, &'b [u8])> {
        if frame.len() < HEADER_LEN {
            self.counters.malformed += 1;
            return None;
        }
        let (version, kind) = (frame[0], frame[1]);
        let dst = u32::from_be_bytes([frame[2], frame[3], frame[4], frame[5]]);
        let from = EthPeer {
            mac: src,
            demux: u32::from_be_bytes([frame[6], frame[7], frame[8], frame[9]]),
        };
        let body = &frame[HEADER_LEN..];
        if version != VERSION {
            self.counters.unknown += 1;
            return None;
        }
        if dst != self.me.demux && !(dst == ALL_DEMUX && kind == KIND_RESOLVE_REQUEST) {
            self.counters.not_ours += 1;
            return None;
        }
        match kind {
            // The shim protocol counts what it drops itself.
            KIND_DATA => self.shim.handle_datagram(now, from, body),
            KIND_RESOLVE_REQUEST | KIND_RESOLVE_REPLY => {
                let mut r = Reader::new(body);
                let Ok(name) = get_name(&mut r).and_then(|n| r.finish().map(|()| n)) else {
                    self.counters.malformed += 1;
                    return None;
                };
                if kind == KIND_RESOLVE_REQUEST {
                    self.on_request(from, &name);
                } else {
                    self.on_reply(now, from, name);
                }
                None
            }
            _ => {
                self.counters.unknown += 1;
                None
            }
        }
    }

    fn on_request(&mut self, from: EthPeer, name: &ApplicationName) {
        if from == self.me || !self.names.contains(name) {
            return;
        }
        self.counters.answered += 1;
        let mut w = Writer::new();
        w.raw(&self.header(KIND_RESOLVE_REPLY, from.demux));
        put_name(&mut w, name);
        self.out.push_back((from.mac, w.into_inner()));
    }

    fn on_reply(&mut self, now: Instant, from: EthPeer, name: ApplicationName) {
        if self.pending.remove(&name).is_none() {
            return; // not asked, or already answered: the first answer wins
        }
        self.cache
            .insert(name.clone(), (from, now + self.cfg.cache_ttl));
        self.events
            .push_back(EthEvent::Resolved { name, peer: from });
    }

    fn retry(&mut self, now: Instant, name: ApplicationName) {
        let retry = self.cfg.resolve_retry;
        let Some(p) = self.pending.get_mut(&name) else {
            return;
        };
        if now >= p.deadline {
            self.pending.remove(&name);
            self.events.push_back(EthEvent::Unresolved { name });
            return;
        }
        if now < p.next_try {
            return;
        }
        p.next_try = now + retry;
        let mut w = Writer::new();
        w.raw(&self.header(KIND_RESOLVE_REQUEST, ALL_DEMUX));
        put_name(&mut w, &name);
        self.out.push_back((BROADCAST_MAC, w.into_inner()));
    }

    /// The next frame to send (resolution, or the shim protocol's management): the
    /// destination MAC and the frame's payload.
    pub fn poll_transmit(&mut self) -> Option<(Mac, Vec<u8>)> {
        if let Some(f) = self.out.pop_front() {
            return Some(f);
        }
        let (peer, dgram) = self.shim.poll_transmit()?;
        let mut frame = Vec::with_capacity(HEADER_LEN + dgram.len());
        frame.extend_from_slice(&self.header(KIND_DATA, peer.demux));
        frame.extend_from_slice(&dgram);
        Some((peer.mac, frame))
    }

    /// The next resolution event.
    pub fn poll_event(&mut self) -> Option<EthEvent> {
        self.events.pop_front()
    }

    /// The next event of the flow protocol.
    pub fn poll_shim_event(&mut self) -> Option<ShimEvent> {
        self.shim.poll_event()
    }

    /// True while events or frames wait to be polled (the driver must not sleep).
    pub fn has_pending_output(&self) -> bool {
        !self.events.is_empty() || !self.out.is_empty() || self.shim.has_pending_output()
    }

    /// When [`EthShim::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let resolve = self
            .pending
            .values()
            .map(|p| p.deadline.min(p.next_try))
            .min();
        earliest(resolve, self.shim.poll_timeout())
    }

    /// Repeats and expires resolve requests; runs the flow protocol's timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        let names: Vec<ApplicationName> = self.pending.keys().cloned().collect();
        for n in names {
            self.retry(now, n);
        }
        self.cache.retain(|_, &mut (_, expires)| now < expires);
        self.shim.handle_timeout(now);
    }
}

/// Parses the header of a frame: (version, kind, dst demux, src demux, body), for
/// captures and tests.
///
/// # Errors
/// [`Error::Truncated`] below [`HEADER_LEN`] bytes.
pub fn parse_header(frame: &[u8]) -> Result<(u8, u8, u32, u32, &[u8]), Error> {
    let mut r = Reader::new(frame);
    let version = r.u8()?;
    let kind = r.u8()?;
    let dst = r.u32()?;
    let src = r.u32()?;
    Ok((version, kind, dst, src, r.rest()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Mac = [2, 0, 0, 0, 0, 0xa];
    const B: Mac = [2, 0, 0, 0, 0, 0xb];

    fn shim(mac: Mac, demux: u32) -> EthShim {
        EthShim::new(
            EthConfig::default(),
            EthPeer { mac, demux },
            u64::from(demux),
        )
    }

    /// Delivers every frame `from` sends to each shim it is addressed to (broadcast:
    /// to all), with `from`'s MAC.
    fn deliver(now: Instant, from: &mut EthShim, to: &mut [&mut EthShim]) {
        let src = from.me().mac;
        while let Some((dst, frame)) = from.poll_transmit() {
            for s in to.iter_mut() {
                if dst == BROADCAST_MAC || dst == s.me().mac {
                    let _ = s.handle_frame(now, src, &frame);
                }
            }
        }
    }

    #[test]
    fn hand_written_frames() {
        let mut a = shim(A, 0x0102_0304);
        a.register(ApplicationName::new("net"));
        // A resolve request for "net" from B/7, by hand.
        #[rustfmt::skip]
        let request = [
            1, 1,                   // version 1, resolve request
            0xff, 0xff, 0xff, 0xff, // to every process
            0, 0, 0, 7,             // from demux 7
            3, b'n', b'e', b't', 0, 0, 0, // the name: four str8 parts
        ];
        assert_eq!(a.handle_frame(Instant::ZERO, B, &request), None);
        let (dst, reply) = a.poll_transmit().unwrap();
        assert_eq!(dst, B);
        #[rustfmt::skip]
        assert_eq!(reply, [
            1, 2,                   // version 1, resolve reply
            0, 0, 0, 7,             // to demux 7
            1, 2, 3, 4,             // from A's demux
            3, b'n', b'e', b't', 0, 0, 0,
        ]);
        assert_eq!(parse_header(&reply).unwrap().2, 7);
    }

    #[test]
    fn resolution_allocation_and_demultiplexing() {
        let t = Instant::ZERO;
        let mut a = shim(A, 1);
        let mut b1 = shim(B, 10); // two processes on host B's interface
        let mut b2 = shim(B, 20);
        b1.register(ApplicationName::new("one.net"));
        b2.register(ApplicationName::new("two.net"));
        let two = ApplicationName::new("two.net");
        assert_eq!(a.resolve(t, &two), None);
        deliver(t, &mut a, &mut [&mut b1, &mut b2]);
        assert_eq!(b1.counters().answered, 0, "not b1's name");
        deliver(t, &mut b2, &mut [&mut a]);
        let peer = EthPeer { mac: B, demux: 20 };
        assert_eq!(
            a.poll_event(),
            Some(EthEvent::Resolved {
                name: two.clone(),
                peer
            })
        );
        assert_eq!(a.resolve(t, &two), Some(peer), "cached");
        // A shim flow to b2; b1 sees the frames on the wire but drops them.
        let id = a
            .shim()
            .allocate(t, peer, ApplicationName::new("a.net"), two.clone());
        deliver(t, &mut a, &mut [&mut b1, &mut b2]);
        assert_eq!(b1.counters().not_ours, 1);
        let Some(ShimEvent::Incoming { id: bid, .. }) = b2.poll_shim_event() else {
            panic!("no incoming flow at b2")
        };
        deliver(t, &mut b2, &mut [&mut a]);
        assert_eq!(a.poll_shim_event(), Some(ShimEvent::Allocated { id }));
        let (dst, hdr) = a.data_header(id).unwrap();
        assert_eq!(dst, B);
        let mut frame = hdr.to_vec();
        frame.extend_from_slice(b"a PDU");
        assert_eq!(b2.handle_frame(t, A, &frame), Some((bid, &b"a PDU"[..])));
        assert_eq!(b1.handle_frame(t, A, &frame), None);
        // The cache expires.
        let later = t + EthConfig::default().cache_ttl;
        a.handle_timeout(later);
        assert_eq!(a.resolve(later, &two), None, "asked again");
    }

    #[test]
    fn nobody_answers() {
        let t = Instant::ZERO;
        let mut a = shim(A, 1);
        let name = ApplicationName::new("nobody");
        assert_eq!(a.resolve(t, &name), None);
        let mut requests = 0;
        let mut now = t;
        loop {
            while let Some((dst, _)) = a.poll_transmit() {
                assert_eq!(dst, BROADCAST_MAC);
                requests += 1;
            }
            if let Some(ev) = a.poll_event() {
                assert_eq!(ev, EthEvent::Unresolved { name });
                break;
            }
            now = a.poll_timeout().expect("a timer while resolving");
            a.handle_timeout(now);
        }
        assert!(requests >= 5, "retried {requests} times");
        assert!(now >= t + EthConfig::default().resolve_timeout);
    }

    #[test]
    fn bad_frames_are_counted() {
        let mut a = shim(A, 1);
        let t = Instant::ZERO;
        assert_eq!(a.handle_frame(t, B, &[1, 0, 0]), None);
        assert_eq!(a.handle_frame(t, B, &[9, 0, 0, 0, 0, 1, 0, 0, 0, 2]), None);
        assert_eq!(a.handle_frame(t, B, &[1, 7, 0, 0, 0, 1, 0, 0, 0, 2]), None);
        assert_eq!(a.handle_frame(t, B, &[1, 0, 0, 0, 0, 5, 0, 0, 0, 2]), None);
        assert_eq!(
            a.handle_frame(t, B, &[1, 1, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2, 200]),
            None
        );
        let c = a.counters();
        assert_eq!((c.malformed, c.unknown, c.not_ours), (2, 2, 1));
    }

    proptest::proptest! {
        #[test]
        fn frames_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut a = shim(A, 1);
            a.register(ApplicationName::new("net"));
            let _ = a.handle_frame(Instant::ZERO, B, &bytes);
            let mut framed = vec![1, 1, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2];
            framed.extend_from_slice(&bytes);
            let _ = a.handle_frame(Instant::ZERO, B, &framed);
            let mut data = vec![1, 0, 0, 0, 0, 1, 0, 0, 0, 2];
            data.extend_from_slice(&bytes);
            let _ = a.handle_frame(Instant::ZERO, B, &data);
        }
    }
}
