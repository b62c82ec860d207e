//! The shim DIF protocol: N-1 flows over a link that has addresses but no flows of its
//! own (a UDP tunnel; Ethernet, see [`eth`]).
//!
//! [`ShimProcess`] is generic over the link address `A` (a UDP endpoint, or a MAC
//! address and demultiplexing id). Each datagram starts with a 4-byte header, the
//! receiver's flow id in network byte order; id 0 is shim management:
//!
//! ```text
//! data:        | dst flow id (u32, != 0) | PDU of the DIF above ...
//! management:  | 0u32 | version u8 = 1 | type u8 | body
//!   1 AllocRequest  { src_id u32, src_name name, dst_name name }
//!   2 AllocResponse { src_id u32 (the requester's), dst_id u32, result u8 (0 ok, 1 no such name) }
//!   3 Deallocate    { dst_id u32 }
//! ```
//!
//! A request is retried until answered or timed out; a repeated request from the same
//! peer and id gets the same answer. Data from an address other than the flow's peer is
//! dropped and counted. A flow's SDU limit is the link MTU less [`HEADER_LEN`].

pub mod eth;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::rand::Rng;
use crate::time::{earliest, Instant};
use crate::wire::codec::{Reader, Writer};
use crate::wire::mgmt::{get_name, put_name};
use crate::wire::Error;
use crate::ApplicationName;

/// Length of the shim header.
pub const HEADER_LEN: usize = 4;

const MGMT_VERSION: u8 = 1;
const ALLOC_REQUEST: u8 = 1;
const ALLOC_RESPONSE: u8 = 2;
const DEALLOCATE: u8 = 3;

/// A flow of a shim DIF, as numbered by this end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShimFlowId(pub u32);

/// Settings of one shim process.
#[derive(Clone, Debug)]
pub struct ShimConfig {
    /// Largest datagram payload the link carries (header included).
    pub mtu: usize,
    /// Interval between retries of an unanswered allocation request.
    pub alloc_retry: Duration,
    /// How long an allocation may take.
    pub alloc_timeout: Duration,
}

impl Default for ShimConfig {
    fn default() -> Self {
        Self {
            mtu: 1452,
            alloc_retry: Duration::from_millis(250),
            alloc_timeout: Duration::from_secs(3),
        }
    }
}

/// Why a shim flow could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocFailure {
    /// The peer answered that no such name is registered there.
    Refused,
    /// No answer before the time-out.
    TimedOut,
    /// The link said that nothing receives at the peer's address (a UDP port nobody
    /// listens on: ICMP port unreachable).
    NothingThere,
}

/// What the shim tells its user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShimEvent {
    /// A flow this side asked for is up.
    Allocated {
        /// The flow.
        id: ShimFlowId,
    },
    /// A flow this side asked for could not be made.
    AllocationFailed {
        /// The flow (gone).
        id: ShimFlowId,
        /// Why.
        why: AllocFailure,
    },
    /// A peer allocated a flow to a name registered here.
    Incoming {
        /// The new flow.
        id: ShimFlowId,
        /// The registered name it is for.
        local: ApplicationName,
        /// The requester's name.
        remote: ApplicationName,
    },
    /// The peer deallocated the flow.
    Deallocated {
        /// The flow (gone).
        id: ShimFlowId,
    },
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShimCounters {
    /// Datagrams dropped: malformed, unknown flow, or wrong sender.
    pub dropped: u64,
    /// Releases of protected flows ignored (unauthenticated: a secured DIF's flows end
    /// by a sealed close).
    pub releases_ignored: u64,
}

#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "a shim has a handful of flows; boxing buys nothing"
)]
enum State {
    Pending {
        local: ApplicationName,
        remote: ApplicationName,
        deadline: Instant,
        next_try: Instant,
    },
    Up,
}

#[derive(Debug)]
struct Flow<A> {
    peer: A,
    remote_id: u32,
    state: State,
    /// A secured DIF's flow: a release message does not end it.
    protected: bool,
}

/// One end of a shim DIF over a link with addresses of type `A`.
#[derive(Debug)]
pub struct ShimProcess<A> {
    cfg: ShimConfig,
    rng: Rng,
    registered: BTreeSet<ApplicationName>,
    flows: BTreeMap<u32, Flow<A>>,
    /// (peer, its flow id) -> our flow id, to answer repeated requests.
    by_remote: BTreeMap<(A, u32), u32>,
    out: VecDeque<(A, Vec<u8>)>,
    events: VecDeque<ShimEvent>,
    counters: ShimCounters,
}

impl<A: Copy + Ord> ShimProcess<A> {
    /// A shim process; `seed` picks flow ids.
    pub fn new(cfg: ShimConfig, seed: u64) -> Self {
        Self {
            cfg,
            rng: Rng::new(seed),
            registered: BTreeSet::new(),
            flows: BTreeMap::new(),
            by_remote: BTreeMap::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            counters: ShimCounters::default(),
        }
    }

    /// The largest SDU a flow carries.
    pub fn max_sdu(&self) -> usize {
        self.cfg.mtu.saturating_sub(HEADER_LEN)
    }

    /// Counters.
    pub fn counters(&self) -> ShimCounters {
        self.counters
    }

    /// Accepts flows to `name` from now on.
    pub fn register(&mut self, name: ApplicationName) {
        self.registered.insert(name);
    }

    /// Starts allocating a flow to `remote` at `peer`.
    pub fn allocate(
        &mut self,
        now: Instant,
        peer: A,
        local: ApplicationName,
        remote: ApplicationName,
    ) -> ShimFlowId {
        let id = self.fresh_id();
        self.flows.insert(
            id,
            Flow {
                peer,
                remote_id: 0,
                state: State::Pending {
                    local,
                    remote,
                    deadline: now + self.cfg.alloc_timeout,
                    next_try: now,
                },
                protected: false,
            },
        );
        self.retry(now, id);
        ShimFlowId(id)
    }

    /// Releases a flow and tells the peer.
    /// Forgets flow `id` without a word to its peer: one that never proved anything
    /// costs no reply (see `Event::NeighborRefused`).
    pub fn forget(&mut self, id: ShimFlowId) {
        if let Some(f) = self.flows.remove(&id.0) {
            self.by_remote.remove(&(f.peer, f.remote_id));
        }
    }

    /// Protects flow `id`: an (unauthenticated) release from the peer is ignored and
    /// counted; the flow ends when this end says so.
    pub fn protect(&mut self, id: ShimFlowId) {
        if let Some(f) = self.flows.get_mut(&id.0) {
            f.protected = true;
        }
    }

    /// The flows this end holds (up or being made).
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// Releases flow `id` and tells the peer.
    pub fn deallocate(&mut self, id: ShimFlowId) {
        if let Some(f) = self.flows.remove(&id.0) {
            self.by_remote.remove(&(f.peer, f.remote_id));
            if f.remote_id != 0 {
                let mut w = mgmt_header(DEALLOCATE);
                w.u32(f.remote_id);
                self.out.push_back((f.peer, w.into_inner()));
            }
        }
    }

    /// The peer and header for sending a PDU on flow `id` (`None`: not up).
    pub fn data_header(&self, id: ShimFlowId) -> Option<(A, [u8; HEADER_LEN])> {
        let f = self.flows.get(&id.0)?;
        match f.state {
            State::Up => Some((f.peer, f.remote_id.to_be_bytes())),
            State::Pending { .. } => None,
        }
    }

    /// Handles a datagram from `from`: returns the flow and PDU if it carries data;
    /// management is handled here.
    pub fn handle_datagram<'b>(
        &mut self,
        now: Instant,
        from: A,
        dgram: &'b [u8],
    ) -> Option<(ShimFlowId, &'b [u8])> {
        if dgram.len() < HEADER_LEN {
            self.counters.dropped += 1;
            return None;
        }
        let id = u32::from_be_bytes([dgram[0], dgram[1], dgram[2], dgram[3]]);
        let body = &dgram[HEADER_LEN..];
        if id == 0 {
            if self.on_mgmt(now, from, body).is_err() {
                self.counters.dropped += 1;
            }
            return None;
        }
        match self.flows.get(&id) {
            Some(f) if f.peer == from && matches!(f.state, State::Up) => {
                Some((ShimFlowId(id), body))
            }
            _ => {
                self.counters.dropped += 1;
                None
            }
        }
    }

    fn on_mgmt(&mut self, _now: Instant, from: A, body: &[u8]) -> Result<(), Error> {
        let mut r = Reader::new(body);
        let v = r.u8()?;
        if v != MGMT_VERSION {
            return Err(Error::Version(v));
        }
        match r.u8()? {
            ALLOC_REQUEST => self.on_alloc_request(from, &mut r)?,
            ALLOC_RESPONSE => self.on_alloc_response(from, &mut r)?,
            DEALLOCATE => {
                let id = r.u32()?;
                r.finish()?;
                let flow = self.flows.get(&id).filter(|f| f.peer == from);
                if flow.is_some_and(|f| f.protected) {
                    self.counters.releases_ignored += 1;
                } else if flow.is_some() {
                    if let Some(f) = self.flows.remove(&id) {
                        self.by_remote.remove(&(f.peer, f.remote_id));
                    }
                    self.events
                        .push_back(ShimEvent::Deallocated { id: ShimFlowId(id) });
                }
            }
            other => return Err(Error::UnknownType(other)),
        }
        Ok(())
    }

    /// A peer asks for a flow to a name: a flow if the name is registered here (the
    /// same one for a repeated request), and the answer either way.
    fn on_alloc_request(&mut self, from: A, r: &mut Reader<'_>) -> Result<(), Error> {
        let src_id = r.u32()?;
        let src_name = get_name(r)?;
        let dst_name = get_name(r)?;
        r.finish()?;
        if src_id == 0 {
            return Err(Error::Malformed);
        }
        let mine = if let Some(&mine) = self.by_remote.get(&(from, src_id)) {
            mine
        } else if self.registered.contains(&dst_name) {
            let mine = self.fresh_id();
            self.flows.insert(
                mine,
                Flow {
                    peer: from,
                    remote_id: src_id,
                    state: State::Up,
                    protected: false,
                },
            );
            self.by_remote.insert((from, src_id), mine);
            self.events.push_back(ShimEvent::Incoming {
                id: ShimFlowId(mine),
                local: dst_name,
                remote: src_name,
            });
            mine
        } else {
            0
        };
        let mut w = mgmt_header(ALLOC_RESPONSE);
        w.u32(src_id);
        w.u32(mine);
        w.u8(u8::from(mine == 0));
        self.out.push_back((from, w.into_inner()));
        Ok(())
    }

    /// A peer answered a flow request of ours.
    fn on_alloc_response(&mut self, from: A, r: &mut Reader<'_>) -> Result<(), Error> {
        let my_id = r.u32()?;
        let their_id = r.u32()?;
        let result = r.u8()?;
        r.finish()?;
        let Some(f) = self.flows.get_mut(&my_id) else {
            return Ok(());
        };
        if f.peer != from || !matches!(f.state, State::Pending { .. }) {
            return Ok(());
        }
        if result == 0 && their_id != 0 {
            f.remote_id = their_id;
            f.state = State::Up;
            self.by_remote.insert((from, their_id), my_id);
            self.events.push_back(ShimEvent::Allocated {
                id: ShimFlowId(my_id),
            });
        } else {
            self.flows.remove(&my_id);
            self.events.push_back(ShimEvent::AllocationFailed {
                id: ShimFlowId(my_id),
                why: AllocFailure::Refused,
            });
        }
        Ok(())
    }

    /// The next management datagram to send.
    pub fn poll_transmit(&mut self) -> Option<(A, Vec<u8>)> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ShimEvent> {
        self.events.pop_front()
    }

    /// True while events or datagrams wait to be polled (the driver must not sleep).
    pub fn has_pending_output(&self) -> bool {
        !self.events.is_empty() || !self.out.is_empty()
    }

    /// When [`ShimProcess::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.flows.values().fold(None, |t, f| match f.state {
            State::Pending {
                deadline, next_try, ..
            } => earliest(t, Some(deadline.min(next_try))),
            State::Up => t,
        })
    }

    /// The link reported that nothing receives at `peer`: every flow being allocated
    /// to it fails at once ([`AllocFailure::NothingThere`]); flows that are up are left
    /// to their keepalives (the report may be stale).
    pub fn peer_unreachable(&mut self, peer: A) {
        let pending: Vec<u32> = self
            .flows
            .iter()
            .filter(|(_, f)| f.peer == peer && matches!(f.state, State::Pending { .. }))
            .map(|(&id, _)| id)
            .collect();
        for id in pending {
            self.flows.remove(&id);
            self.events.push_back(ShimEvent::AllocationFailed {
                id: ShimFlowId(id),
                why: AllocFailure::NothingThere,
            });
        }
    }

    /// Retries and expires pending allocations.
    pub fn handle_timeout(&mut self, now: Instant) {
        let pending: Vec<u32> = self
            .flows
            .iter()
            .filter(|(_, f)| matches!(f.state, State::Pending { .. }))
            .map(|(&id, _)| id)
            .collect();
        for id in pending {
            self.retry(now, id);
        }
    }

    fn retry(&mut self, now: Instant, id: u32) {
        let retry = self.cfg.alloc_retry;
        let Some(f) = self.flows.get_mut(&id) else {
            return;
        };
        let State::Pending {
            local,
            remote,
            deadline,
            next_try,
        } = &mut f.state
        else {
            return;
        };
        if now >= *deadline {
            self.flows.remove(&id);
            self.events.push_back(ShimEvent::AllocationFailed {
                id: ShimFlowId(id),
                why: AllocFailure::TimedOut,
            });
            return;
        }
        if now < *next_try {
            return;
        }
        *next_try = now + retry;
        let mut w = mgmt_header(ALLOC_REQUEST);
        w.u32(id);
        put_name(&mut w, local);
        put_name(&mut w, remote);
        let peer = f.peer;
        self.out.push_back((peer, w.into_inner()));
    }

    fn fresh_id(&mut self) -> u32 {
        loop {
            let id = self.rng.next_u32();
            if id != 0 && !self.flows.contains_key(&id) {
                return id;
            }
        }
    }
}

fn mgmt_header(kind: u8) -> Writer {
    let mut w = Writer::new();
    w.u32(0);
    w.u8(MGMT_VERSION);
    w.u8(kind);
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pump(a: &mut ShimProcess<u8>, a_addr: u8, b: &mut ShimProcess<u8>, now: Instant) {
        while let Some((to, d)) = a.poll_transmit() {
            assert_eq!(to, 2);
            let _ = b.handle_datagram(now, a_addr, &d);
        }
    }

    #[test]
    fn allocate_send_and_deallocate() {
        let t = Instant::ZERO;
        let mut a = ShimProcess::<u8>::new(ShimConfig::default(), 1);
        let mut b = ShimProcess::<u8>::new(ShimConfig::default(), 2);
        b.register(ApplicationName::new("net"));
        let id = a.allocate(
            t,
            2,
            ApplicationName::new("client"),
            ApplicationName::new("net"),
        );
        assert!(a.data_header(id).is_none());
        pump(&mut a, 1, &mut b, t);
        let Some(ShimEvent::Incoming {
            id: bid,
            local,
            remote,
        }) = b.poll_event()
        else {
            panic!()
        };
        assert_eq!(
            (local.to_string(), remote.to_string()),
            ("net".into(), "client".into())
        );
        // The answer goes back to address 1.
        let (to, d) = b.poll_transmit().unwrap();
        assert_eq!(to, 1);
        a.handle_datagram(t, 2, &d);
        assert_eq!(a.poll_event(), Some(ShimEvent::Allocated { id }));
        let (peer, hdr) = a.data_header(id).unwrap();
        assert_eq!(peer, 2);
        let mut dgram = hdr.to_vec();
        dgram.extend_from_slice(b"pdu");
        assert_eq!(b.handle_datagram(t, 1, &dgram), Some((bid, &b"pdu"[..])));
        // From the wrong address: dropped.
        assert_eq!(b.handle_datagram(t, 9, &dgram), None);
        assert_eq!(b.counters().dropped, 1);
        a.deallocate(id);
        pump(&mut a, 1, &mut b, t);
        assert_eq!(b.poll_event(), Some(ShimEvent::Deallocated { id: bid }));
    }

    #[test]
    fn nothing_at_the_peer_fails_its_pending_flows_at_once() {
        let t = Instant::ZERO;
        let mut a = ShimProcess::<u8>::new(ShimConfig::default(), 1);
        let to_2 = a.allocate(t, 2, ApplicationName::new("c"), ApplicationName::new("x"));
        let to_3 = a.allocate(t, 3, ApplicationName::new("c"), ApplicationName::new("x"));
        a.peer_unreachable(2);
        assert_eq!(
            a.poll_event(),
            Some(ShimEvent::AllocationFailed {
                id: to_2,
                why: AllocFailure::NothingThere
            })
        );
        assert_eq!(a.poll_event(), None, "the flow to another peer goes on");
        assert!(a.data_header(to_3).is_none());
        a.peer_unreachable(3);
        assert!(matches!(
            a.poll_event(),
            Some(ShimEvent::AllocationFailed { id, .. }) if id == to_3
        ));
    }

    #[test]
    fn unknown_name_is_refused_and_silence_times_out() {
        let t = Instant::ZERO;
        let mut a = ShimProcess::<u8>::new(ShimConfig::default(), 1);
        let mut b = ShimProcess::<u8>::new(ShimConfig::default(), 2);
        let id = a.allocate(
            t,
            2,
            ApplicationName::new("c"),
            ApplicationName::new("nobody"),
        );
        pump(&mut a, 1, &mut b, t);
        let (_, d) = b.poll_transmit().unwrap();
        a.handle_datagram(t, 2, &d);
        assert_eq!(
            a.poll_event(),
            Some(ShimEvent::AllocationFailed {
                id,
                why: AllocFailure::Refused
            })
        );

        let id = a.allocate(t, 2, ApplicationName::new("c"), ApplicationName::new("net"));
        let mut now = t;
        let mut sent = 0;
        while a.poll_event().is_none() {
            while a.poll_transmit().is_some() {
                sent += 1;
            }
            now = a.poll_timeout().unwrap();
            a.handle_timeout(now);
        }
        assert!(sent >= 10, "retried {sent} times");
        assert!(now >= t + ShimConfig::default().alloc_timeout);
        assert!(a.data_header(id).is_none());
    }

    proptest::proptest! {
        #[test]
        fn datagrams_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut b = ShimProcess::<u8>::new(ShimConfig::default(), 2);
            b.register(ApplicationName::new("net"));
            let _ = b.handle_datagram(Instant::ZERO, 1, &bytes);
            let mut mgmt = vec![0, 0, 0, 0, 1];
            mgmt.extend_from_slice(&bytes);
            let _ = b.handle_datagram(Instant::ZERO, 1, &mgmt);
        }
    }
}
