//! Joining DIFs and keeping adjacencies: each DIF's enrollment plan and kept
//! neighbours, tried when due and again with back-off, waiting for a name to be
//! resolved or a DIF below to be joined, and failing with the reason of the layer
//! below when that one cannot be joined.

use std::time::Duration;

use crate::ipcp::{Event, FlowKind, FlowKinds};
use crate::node::dif::KeepState;
use crate::node::link::Allocation;
use crate::node::{DifId, Layer, LinkId, LowerFlow, Node, NodeEvent, Peer, Plan};
use crate::{ApplicationName, Instant, N1Port};

/// How long an N-1 flow in a normal DIF below may take to be made.
const LOWER_FLOW_TIMEOUT: Duration = Duration::from_secs(5);

impl Node {
    /// A program asks for something in DIF `dif` (a connect, a listen) while it waits
    /// to try joining again: it tries at once, and so does every DIF below it that
    /// waits too, as a TCP connect tries again whenever it is called, whatever failed
    /// before.
    pub fn join_now(&mut self, now: Instant, dif: DifId) {
        self.retry_down(now, dif);
        self.start_enrollments(now);
    }

    /// Marks `dif` and the DIFs below it that wait to try joining again as due now.
    fn retry_down(&mut self, now: Instant, dif: DifId) {
        let d = &mut self.difs[dif.0];
        if d.ipcp.is_enrolled() || d.joining() || d.enroll.is_none() {
            return;
        }
        d.retry_now(now);
        let below: Vec<DifId> = d.lower_difs().collect();
        for low in below {
            self.retry_down(now, low);
        }
    }

    /// Starts enrolling every DIF whose retry is due.
    pub(crate) fn start_enrollments(&mut self, now: Instant) {
        for i in 0..self.difs.len() {
            let d = &self.difs[i];
            let (Some(plan), Some(at)) = (&d.enroll, d.retry_at) else {
                continue;
            };
            if now < at || d.joining() {
                continue;
            }
            let plan = plan.clone();
            self.difs[i].retry_at = None;
            match self.allocate_lower(now, DifId(i), &plan) {
                Allocation::Started(f) => self.difs[i].enrolling = Some(f),
                Allocation::Waiting => self.difs[i].waiting = true,
            }
        }
    }

    /// Asks the layer below DIF `dif` named by `plan` for an N-1 flow from this
    /// member to the neighbour of the plan (which serves the DIF's name).
    pub(crate) fn allocate_lower(
        &mut self,
        now: Instant,
        dif: DifId,
        plan: &Plan,
    ) -> Allocation<LowerFlow> {
        let d = &self.difs[dif.0];
        let remote = ApplicationName::new(d.name.clone());
        // A secured DIF's member does not say its name below (where anyone may read
        // it): only the DIF's, and its handshake proves who it is.
        let local = if d.guard.is_some() {
            remote.clone()
        } else {
            d.ipcp.config().name.clone()
        };
        match plan.lower {
            Layer::Link(s) => match self.shims[s.0].allocate(now, &plan.peer, local, remote) {
                Allocation::Started(id) => Allocation::Started(LowerFlow::Shim(s, id)),
                Allocation::Waiting => Allocation::Waiting,
            },
            Layer::Dif(low) => {
                let Peer::Name(name) = &plan.peer else {
                    return Allocation::Waiting;
                };
                let ipcp = &mut self.difs[low.0].ipcp;
                if !ipcp.is_enrolled() {
                    return Allocation::Waiting; // goes on once that DIF is joined
                }
                // Unreliable: the DIF above has its own EFCP end to end, and an SDU per
                // PDU keeps its boundaries. To another member: this one may serve the
                // DIF's name too.
                let port = ipcp.allocate_flow_to_other(
                    now,
                    local,
                    name.clone(),
                    FlowKind::Unreliable,
                    now + LOWER_FLOW_TIMEOUT,
                );
                Allocation::Started(LowerFlow::Dif(low, port))
            }
        }
    }

    /// Member `dif` may take newcomers: it is enrolled, and it bootstrapped the DIF,
    /// serves a name, or the node is long-lived (a short-lived client is no good
    /// neighbour to enroll through). Its Ethernet shims answer for the DIF's name from
    /// then on, and it registers the DIF's name in the normal DIFs below it.
    pub(crate) fn offer_enrollment(&mut self, now: Instant, dif: DifId) {
        let d = &self.difs[dif.0];
        let long_lived = self.long_lived || d.enroll.is_none() || self.serves_applications(dif);
        if !d.ipcp.is_enrolled() || !long_lived || d.ipcp.is_leaf() {
            return;
        }
        let name = ApplicationName::new(d.name.clone());
        for i in 0..d.over.len() {
            match self.difs[dif.0].over[i] {
                Layer::Link(s) if self.shims[s.0].is_ethernet() => {
                    self.shims[s.0].register(name.clone());
                }
                Layer::Link(_) => {}
                Layer::Dif(low) if self.difs[low.0].ipcp.is_enrolled() => {
                    let _ = self.difs[low.0].ipcp.register_for(
                        now,
                        name.clone(),
                        FlowKinds::UNRELIABLE,
                    );
                }
                Layer::Dif(_) => {}
            }
        }
    }

    /// True if applications registered names in DIF `dif` (not counting the names the
    /// DIFs above it register there to reach each other).
    fn serves_applications(&self, dif: DifId) -> bool {
        self.difs[dif.0]
            .ipcp
            .registrations()
            .iter()
            .any(|n| self.upper_for(Layer::Dif(dif), n).is_none())
    }

    /// Registers, in every normal DIF that is joined, the IPC process names of the
    /// DIFs above it, so that their members can reach each other's (idempotent).
    fn publish_upper_names(&mut self, now: Instant) {
        for up in 0..self.difs.len() {
            let name = self.difs[up].ipcp.config().name.clone();
            let below: Vec<DifId> = self.difs[up].lower_difs().collect();
            for low in below {
                let ipcp = &mut self.difs[low.0].ipcp;
                if ipcp.is_enrolled() {
                    let _ = ipcp.register_for(now, name.clone(), FlowKinds::UNRELIABLE);
                }
            }
        }
    }

    /// The DIF above layer `low` that a flow arriving there for `app` is an N-1 flow
    /// of (`app` is its name or its member's name).
    pub(crate) fn upper_for(&self, low: Layer, app: &ApplicationName) -> Option<DifId> {
        self.difs
            .iter()
            .position(|d| {
                d.over.contains(&low)
                    && (d.name == app.process_name && app.process_instance.is_empty()
                        || d.ipcp.config().name == *app)
            })
            .map(DifId)
    }

    /// Handles an IPC process's event about enrollment and neighbours; passes on the
    /// others (the N-1 flows' ones were taken before).
    pub(crate) fn on_ipcp_event(&mut self, now: Instant, dif: DifId, ev: Event) {
        if self.on_lower_dif_event(now, dif, &ev) {
            return;
        }
        match ev {
            Event::Enrolled { address } => {
                let d = &mut self.difs[dif.0];
                d.enrolling = None;
                d.last_failure = None;
                d.backoff.reset();
                self.events.push_back(NodeEvent::Joined { dif, address });
                self.offer_enrollment(now, dif);
                self.lower_joined(now, dif);
            }
            Event::EnrollmentFailed { port, reason } => {
                self.release_n1(now, port);
                self.join_failed(now, dif, reason);
            }
            Event::NeighborRefused { port } => self.refuse_n1(now, port),
            Event::AccessRefused { why } => {
                self.events
                    .push_back(NodeEvent::NeighborRefused { dif, why });
            }
            Event::NeighborUp { port, name } => {
                self.keep_up(dif, port);
                self.events
                    .push_back(NodeEvent::NeighborUp { dif, port, name });
            }
            Event::NeighborLost { port } => {
                self.events.push_back(NodeEvent::NeighborLost { dif, port });
                self.release_n1(now, port);
                // A kept adjacency (the one enrolled through among them) is set up
                // again by `maintain_adjacencies`.
                if self.keep_lost(now, dif, port) {
                    return;
                }
                let d = &self.difs[dif.0];
                // An enrollee that lost its way into the DIF tries again (D7).
                if d.enroll.is_some()
                    && d.ipcp.neighbors().is_empty()
                    && !d.joining()
                    && d.retry_at.is_none()
                {
                    self.join_failed(now, dif, "lost the neighbour".into());
                }
            }
            ev => self.events.push_back(NodeEvent::Flow(dif, ev)),
        }
    }

    /// An attempt to join `dif` failed: another after the back-off; the DIFs above
    /// waiting for it fail too, with this reason.
    pub(crate) fn join_failed(&mut self, now: Instant, dif: DifId, why: String) {
        let retry_in = self.difs[dif.0].schedule_retry(now, why.clone());
        self.events
            .push_back(NodeEvent::JoinFailed { dif, why, retry_in });
        self.lower_failed(now);
    }

    /// The normal DIF `low` is joined: the DIFs above waiting for it go on.
    fn lower_joined(&mut self, now: Instant, low: DifId) {
        for d in &mut self.difs {
            let waits = |p: &Plan| p.lower == Layer::Dif(low);
            let idle = d.waiting || (!d.ipcp.is_enrolled() && d.enrolling.is_none());
            if idle && d.enroll.as_ref().is_some_and(waits) {
                d.retry_now(now);
            }
            for k in &mut d.keep {
                if k.state == KeepState::Waiting && waits(&k.plan) {
                    k.due(now);
                }
            }
        }
        for up in 0..self.difs.len() {
            if self.difs[up].over.contains(&Layer::Dif(low)) {
                self.offer_enrollment(now, DifId(up));
            }
        }
        self.publish_upper_names(now);
        self.maintain_adjacencies(now);
        self.start_enrollments(now);
    }

    /// The DIFs above a normal DIF that cannot be joined now stop waiting for it: their
    /// own attempt fails with its reason (and is made again once it is joined).
    pub(crate) fn lower_failed(&mut self, now: Instant) {
        for up in 0..self.difs.len() {
            let d = &self.difs[up];
            let Some(Plan {
                lower: Layer::Dif(low),
                ..
            }) = d.enroll
            else {
                continue;
            };
            let l = &self.difs[low.0];
            if !d.waiting || l.ipcp.is_enrolled() || l.joining() {
                continue;
            }
            let Some(why) = &l.last_failure else {
                continue;
            };
            let why = format!("cannot join DIF {} below it: {why}", l.name);
            // Recursion ends: this DIF no longer waits.
            self.join_failed(now, DifId(up), why);
        }
    }

    /// The neighbour `name` was found on `link`: the DIFs waiting for it go on.
    pub(crate) fn resolved(&mut self, now: Instant, link: LinkId, name: &ApplicationName) {
        for d in &mut self.difs {
            if d.waiting && d.enroll.as_ref().is_some_and(|p| p.waits_for(link, name)) {
                d.retry_now(now);
            }
            for k in &mut d.keep {
                if k.state == KeepState::Waiting && k.plan.waits_for(link, name) {
                    k.due(now);
                }
            }
        }
        self.maintain_adjacencies(now);
        self.start_enrollments(now);
    }

    /// Nobody answered for `name` on `link`: the DIFs waiting for it try later.
    pub(crate) fn unresolved(&mut self, now: Instant, link: LinkId, name: &ApplicationName) {
        let mut failed = Vec::new();
        for i in 0..self.difs.len() {
            for k in 0..self.difs[i].keep.len() {
                if self.difs[i].keep[k].state == KeepState::Waiting
                    && self.difs[i].keep[k].plan.waits_for(link, name)
                {
                    self.keep_down(now, DifId(i), k);
                }
            }
            let d = &self.difs[i];
            if d.waiting && d.enroll.as_ref().is_some_and(|p| p.waits_for(link, name)) {
                failed.push(i);
            }
        }
        for i in failed {
            let why = format!(
                "no member of DIF {} answered for {name} on {}",
                self.difs[i].name, self.shims[link.0].place
            );
            self.join_failed(now, DifId(i), why);
        }
    }

    /// Sets up every kept adjacency that is down and due, in the DIFs this member
    /// belongs to.
    pub(crate) fn maintain_adjacencies(&mut self, now: Instant) {
        for i in 0..self.difs.len() {
            if !self.difs[i].keeps_adjacencies() {
                continue;
            }
            for k in 0..self.difs[i].keep.len() {
                let keep = &self.difs[i].keep[k];
                if keep.state != KeepState::Down || now < keep.retry_at {
                    continue;
                }
                let plan = keep.plan.clone();
                self.difs[i].keep[k].state = match self.allocate_lower(now, DifId(i), &plan) {
                    Allocation::Started(f) => KeepState::Allocating(f),
                    Allocation::Waiting => KeepState::Waiting,
                };
            }
        }
    }

    /// When [`Node::maintain_adjacencies`] has something to do next.
    pub(crate) fn keep_deadline(&self) -> Option<Instant> {
        self.difs
            .iter()
            .filter(|d| d.keeps_adjacencies())
            .flat_map(|d| &d.keep)
            .filter(|k| k.state == KeepState::Down)
            .map(|k| k.retry_at)
            .min()
    }

    /// The kept adjacency (DIF, index) whose N-1 flow `f` is being made.
    pub(crate) fn keep_allocating(&self, f: LowerFlow) -> Option<(DifId, usize)> {
        self.difs.iter().enumerate().find_map(|(di, d)| {
            d.keep
                .iter()
                .position(|k| k.state == KeepState::Allocating(f))
                .map(|ki| (DifId(di), ki))
        })
    }

    /// N-1 port `port` of DIF `dif` is gone: if it carried a kept adjacency, that one
    /// is set up again after its back-off. False if no kept adjacency used it.
    pub(crate) fn keep_lost(&mut self, now: Instant, dif: DifId, port: N1Port) -> bool {
        let keep = &self.difs[dif.0].keep;
        match keep.iter().position(|k| k.state == KeepState::Up(port)) {
            Some(k) => {
                self.keep_down(now, dif, k);
                true
            }
            None => false,
        }
    }

    /// Kept adjacency `k` of DIF `dif` is down: tried again after its back-off.
    pub(crate) fn keep_down(&mut self, now: Instant, dif: DifId, k: usize) {
        let keep = &mut self.difs[dif.0].keep[k];
        let retry_in = keep.down(now);
        let peer = keep.plan.peer.to_string();
        self.events.push_back(NodeEvent::AdjacencyDown {
            dif,
            peer,
            retry_in,
        });
    }

    /// The neighbour on N-1 port `port` of DIF `dif` is up: its kept adjacency, if any,
    /// starts its back-off afresh.
    fn keep_up(&mut self, dif: DifId, port: N1Port) {
        if let Some(k) = self.difs[dif.0]
            .keep
            .iter_mut()
            .find(|k| k.state == KeepState::Up(port))
        {
            k.backoff.reset();
        }
    }
}
