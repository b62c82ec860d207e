//! A normal DIF of a node: its IPC process, the layers it is over, how it joins and
//! which adjacencies it keeps, and where its joining stands.

use crate::ipcp::IpcProcess;
use crate::node::{Backoff, DifId, Layer, LinkId, LowerFlow, Peer};
use crate::{ApplicationName, Instant, N1Port};

/// How a normal DIF reaches a neighbour: through a layer below it, to a peer there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The layer below.
    pub lower: Layer,
    /// The neighbour in it.
    pub peer: Peer,
}

impl Plan {
    /// True if this plan waits for `name` to be resolved on shim layer `link`.
    pub(crate) fn waits_for(&self, link: LinkId, name: &ApplicationName) -> bool {
        self.lower == Layer::Link(link) && matches!(&self.peer, Peer::Name(n) if n == name)
    }
}

/// An adjacency a member keeps: set up once it is a member (the one it enrolled
/// through is up from the start), and set up again with back-off whenever it is lost.
#[derive(Debug)]
pub(crate) struct Keep {
    pub(crate) plan: Plan,
    pub(crate) state: KeepState,
    pub(crate) retry_at: Instant,
    pub(crate) backoff: Backoff,
}

/// Where a kept adjacency stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeepState {
    /// Not up; try at `retry_at`.
    Down,
    /// Waiting for the neighbour to be reachable (its name resolved, the DIF below
    /// joined).
    Waiting,
    /// The N-1 flow is being allocated.
    Allocating(LowerFlow),
    /// Up on this N-1 port.
    Up(N1Port),
}

impl Keep {
    pub(crate) fn new(plan: Plan, now: Instant) -> Self {
        Self {
            plan,
            state: KeepState::Down,
            retry_at: now,
            backoff: Backoff::STANDARD,
        }
    }

    /// Down, to be tried again after the back-off (which grows): the delay.
    pub(crate) fn down(&mut self, now: Instant) -> core::time::Duration {
        let delay = self.backoff.next_delay();
        self.state = KeepState::Down;
        self.retry_at = now + delay;
        delay
    }

    /// Due now (what it waited for is there).
    pub(crate) fn due(&mut self, now: Instant) {
        self.state = KeepState::Down;
        self.retry_at = now;
    }
}

/// A normal DIF of a node.
#[derive(Debug)]
pub struct Dif {
    pub(crate) name: String,
    pub(crate) ipcp: IpcProcess,
    pub(crate) enroll: Option<Plan>,
    /// The N-1 flow being allocated to enroll, if any.
    pub(crate) enrolling: Option<LowerFlow>,
    /// The neighbour to enroll through is not reachable yet (its name being resolved,
    /// the DIF below not joined): the attempt goes on when it is.
    pub(crate) waiting: bool,
    pub(crate) over: Vec<Layer>,
    /// Adjacencies kept: the one enrolled through first (if any), then the others.
    pub(crate) keep: Vec<Keep>,
    /// When to try enrolling again.
    pub(crate) retry_at: Option<Instant>,
    pub(crate) backoff: Backoff,
    /// Why the last attempt to join failed (cleared once joined).
    pub(crate) last_failure: Option<String>,
    /// The stream SDU size: a whole number of PDU payloads, about 64 KiB.
    pub(crate) chunk: usize,
    /// The largest SDU one PDU carries.
    pub(crate) payload: usize,
    /// Its security (`None`: open).
    pub(crate) guard: Option<Box<crate::node::guard::Guard>>,
}

impl Dif {
    /// The DIF's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its IPC process.
    pub fn ipcp(&self) -> &IpcProcess {
        &self.ipcp
    }

    /// The layers it is over.
    pub fn over(&self) -> &[Layer] {
        &self.over
    }

    /// True if the DIF is secured.
    pub fn is_secured(&self) -> bool {
        self.guard.is_some()
    }

    /// Why the last attempt to join failed, until it is joined.
    pub fn last_failure(&self) -> Option<&str> {
        self.last_failure.as_deref()
    }

    /// An attempt to join is under way (a name being resolved, an N-1 flow being
    /// allocated, a DIF below being joined).
    pub fn joining(&self) -> bool {
        self.enrolling.is_some() || self.waiting
    }

    /// It is not a member and nothing is under way to become one: calls that need it
    /// fail now, with [`Dif::last_failure`].
    pub fn stalled(&self) -> bool {
        !self.ipcp.is_enrolled() && !self.joining() && self.last_failure.is_some()
    }

    /// The size of a stream flow's SDUs in this DIF: a whole number of PDU payloads,
    /// about 64 KiB.
    pub fn stream_sdu(&self) -> usize {
        self.chunk
    }

    /// The largest SDU one PDU carries (an IP packet over a tunnel's flow, say, that
    /// must not be split).
    pub fn pdu_payload(&self) -> usize {
        self.payload
    }

    /// Tries to enroll again at once (what it waited for is there).
    pub(crate) fn retry_now(&mut self, now: Instant) {
        self.waiting = false;
        self.retry_at = Some(now);
    }

    /// The attempt failed: another one after the back-off, which grows. The delay.
    pub(crate) fn schedule_retry(&mut self, now: Instant, why: String) -> core::time::Duration {
        let delay = self.backoff.next_delay();
        self.enrolling = None;
        self.waiting = false;
        self.last_failure = Some(why);
        self.retry_at = Some(now + delay);
        delay
    }

    /// True while its kept adjacencies are to be set up: once it is a member; for a
    /// leaf, only while it has no enroller (it has one at a time: the others are where
    /// it enrolls again when that one goes).
    pub(crate) fn keeps_adjacencies(&self) -> bool {
        self.ipcp.is_enrolled() && !(self.ipcp.is_leaf() && self.ipcp.has_uplink())
    }

    /// The DIFs directly below this one.
    pub(crate) fn lower_difs(&self) -> impl Iterator<Item = DifId> + '_ {
        self.over.iter().filter_map(|l| match l {
            Layer::Dif(d) => Some(*d),
            Layer::Link(_) => None,
        })
    }
}
