//! The stack of one process: its shim DIFs (UDP and Ethernet) and normal DIFs, built
//! from the rules, and the glue between shim flows and the N-1 ports of the normal IPC
//! processes.

use std::collections::BTreeMap;
use std::time::Duration;

use rina_core::efcp::EfcpConfig;
use rina_core::ipcp::{IpcProcess, IpcpConfig};
use rina_core::shim::{ShimConfig, ShimFlowId};
use rina_core::wire::PCI_LEN;
use rina_core::{Address, ApplicationName, Instant, N1Port, PortId};
use shims::eth::{EthError, EthLink};
use shims::udp::UdpLink;

use crate::api::FlowError;
use crate::config::{Config, DifKind, Join, Neighbor};
use crate::shim::{Allocation, PeerRef, Shim};

/// Why a stack could not be built.
#[derive(Debug)]
pub(crate) enum BuildError {
    /// A shim's configured endpoint is taken (by another member with the same rules,
    /// such as the parent of a fork child).
    EndpointInUse(FlowError),
    /// Anything else.
    Other(FlowError),
}

impl From<FlowError> for BuildError {
    fn from(e: FlowError) -> Self {
        Self::Other(e)
    }
}

impl From<BuildError> for FlowError {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::EndpointInUse(e) | BuildError::Other(e) => e,
        }
    }
}

/// What carries a normal DIF's N-1 flows: a shim DIF, or a normal DIF below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Lower {
    /// A shim DIF (index into `Stack::shims`).
    Shim(usize),
    /// A normal DIF (index into `Stack::difs`).
    Dif(usize),
}

/// One N-1 flow, in the layer that carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum LowerFlow {
    /// A shim flow.
    Shim(usize, ShimFlowId),
    /// A flow of a normal DIF below.
    Dif(usize, PortId),
}

impl LowerFlow {
    /// The layer.
    pub(crate) fn lower(self) -> Lower {
        match self {
            Self::Shim(s, _) => Lower::Shim(s),
            Self::Dif(d, _) => Lower::Dif(d),
        }
    }
}

/// How a normal DIF joins, or keeps an adjacency: through a lower layer, to a
/// neighbour.
#[derive(Clone, Debug)]
pub(crate) struct EnrollPlan {
    pub(crate) lower: Lower,
    pub(crate) peer: PeerRef,
}

/// An adjacency this member keeps: set up once it is a member (the one it enrolled
/// through is up from the start), and set up again with back-off whenever it is lost.
#[derive(Debug)]
pub(crate) struct Keep {
    pub(crate) plan: EnrollPlan,
    pub(crate) state: KeepState,
    pub(crate) retry_at: Instant,
    pub(crate) backoff: Duration,
}

/// Where a kept adjacency stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeepState {
    /// Not up; try at `retry_at`.
    Down,
    /// The neighbour's name is being resolved.
    Resolving,
    /// The N-1 flow is being allocated.
    Allocating(LowerFlow),
    /// Up on this N-1 port.
    Up(N1Port),
}

const KEEP_BACKOFF: Duration = Duration::from_millis(500);
const KEEP_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A normal DIF: its IPC process and its N-1 ports.
#[derive(Debug)]
pub(crate) struct NormalDif {
    pub(crate) name: String,
    pub(crate) ipcp: IpcProcess,
    pub(crate) enroll: Option<EnrollPlan>,
    /// The N-1 flow being allocated to enroll, if any.
    pub(crate) enrolling: Option<LowerFlow>,
    /// The neighbour is not reachable yet (its name being resolved on Ethernet, or the
    /// DIF below not joined yet): the attempt goes on when it is.
    pub(crate) resolving: bool,
    /// The layers this DIF is over.
    pub(crate) over: Vec<Lower>,
    /// Adjacencies kept: the one enrolled through first (if any), then `neighbors`.
    pub(crate) keep: Vec<Keep>,
    /// When to try enrolling again, and the back-off that follows.
    pub(crate) retry_at: Option<Instant>,
    pub(crate) backoff: Duration,
    /// Set once an enrollment attempt failed (pending calls fail at once).
    pub(crate) last_failure: Option<String>,
    /// The stream SDU size: a whole number of PDU payloads, about 64 KiB.
    pub(crate) chunk: usize,
}

/// Every DIF of the process, plus the N-1 port table.
#[derive(Debug, Default)]
pub(crate) struct Stack {
    pub(crate) shims: Vec<Shim>,
    pub(crate) difs: Vec<NormalDif>,
    /// N-1 port -> (DIF, the flow below that carries it).
    pub(crate) n1: BTreeMap<N1Port, (usize, LowerFlow)>,
    /// The flow below -> N-1 port.
    pub(crate) by_lower: BTreeMap<LowerFlow, N1Port>,
    next_n1: u32,
    /// A node (`rina node`): a long-lived member that takes newcomers in every DIF.
    pub(crate) node: bool,
}

impl Stack {
    /// A program asks for something in DIF `dif` (a connect, a listen) while it waits
    /// to try joining again: it tries at once, and so does every DIF below it that
    /// waits too, as a TCP connect tries again whenever it is called, whatever failed
    /// before.
    pub(crate) fn join_now(&mut self, now: Instant, dif: usize) {
        self.retry_down(now, dif);
        self.start_enrollments(now);
    }

    /// Marks `dif` and the DIFs below it that wait to try joining again as due now.
    fn retry_down(&mut self, now: Instant, dif: usize) {
        let d = &mut self.difs[dif];
        if d.ipcp.is_enrolled() || d.joining() || d.enroll.is_none() {
            return;
        }
        d.retry_now(now);
        let below: Vec<usize> = d
            .over
            .iter()
            .filter_map(|l| match l {
                Lower::Dif(low) => Some(*low),
                Lower::Shim(_) => None,
            })
            .collect();
        for low in below {
            self.retry_down(now, low);
        }
    }

    /// True while the core has something for the driver (events to handle, PDUs or
    /// datagrams to send): the driver must not sleep (a missed wake-up otherwise).
    pub(crate) fn has_pending_output(&self) -> bool {
        self.difs.iter().any(|d| d.ipcp.has_pending_output())
            || self.shims.iter().any(Shim::has_pending_output)
    }

    /// Opens every shim and creates every IPC process of `config`.
    pub(crate) fn build(
        config: &Config,
        program: &str,
        now: Instant,
        seed: u64,
    ) -> Result<Self, BuildError> {
        let mut stack = Self::default();
        let mut shim_index = BTreeMap::new();
        for (i, dif) in config.difs.iter().enumerate() {
            let seed = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            match &dif.kind {
                DifKind::Udp(u) => {
                    let link = UdpLink::bind(u.bind).map_err(|e| {
                        let err = FlowError::RuntimeDown(format!(
                            "DIF {}: UDP {}: cannot bind: {e}",
                            dif.name, u.bind
                        ));
                        if e.kind() == std::io::ErrorKind::AddrInUse {
                            BuildError::EndpointInUse(err)
                        } else {
                            BuildError::Other(err)
                        }
                    })?;
                    let cfg = ShimConfig {
                        mtu: u.mtu,
                        ..ShimConfig::default()
                    };
                    shim_index.insert(dif.name.clone(), stack.shims.len());
                    stack.shims.push(Shim::udp(
                        dif.name.clone(),
                        link,
                        cfg,
                        u.peers.clone(),
                        seed,
                    ));
                }
                DifKind::Ethernet(e) => {
                    let link = EthLink::open(&e.interface).map_err(|err| {
                        if let EthError::Permission { .. } = &err {
                            tracing::error!("{err}");
                        }
                        FlowError::RuntimeDown(format!("DIF {}: {err}", dif.name))
                    })?;
                    shim_index.insert(dif.name.clone(), stack.shims.len());
                    stack.shims.push(Shim::eth(dif.name.clone(), link, seed));
                }
                DifKind::Normal(n) => {
                    let over: Vec<Lower> = n
                        .over
                        .iter()
                        .map(|o| match (shim_index.get(o), stack.dif_index(o)) {
                            (Some(&s), _) => Ok(Lower::Shim(s)),
                            (None, Some(d)) => Ok(Lower::Dif(d)),
                            (None, None) => Err(FlowError::RuntimeDown(format!(
                                "DIF {:?}: no DIF {o:?} below it",
                                dif.name
                            ))),
                        })
                        .collect::<Result<_, _>>()?;
                    let name = n.ipcp_name.clone().unwrap_or_else(|| {
                        crate::config::default_member_name(program, &dif.name, std::process::id())
                    });
                    let mut cfg = IpcpConfig::new(dif.name.clone(), name, seed);
                    cfg.enrollment_timeout = n.enrollment_timeout;
                    cfg.keepalive_interval = n.keepalive_interval;
                    cfg.keepalive_misses = n.keepalive_misses;
                    // Over a normal DIF the largest PDU is known once that DIF is joined
                    // (flows then use the DIF-wide figure); until then, a guess.
                    let mtu = over
                        .iter()
                        .map(|l| match *l {
                            Lower::Shim(s) => stack.shims[s].max_sdu(),
                            Lower::Dif(_) => 1400,
                        })
                        .min()
                        .unwrap_or(1400);
                    cfg.data_efcp = data_efcp(mtu);
                    // Incoming flows are answered once their listener took them (sessions.rs).
                    cfg.ask_before_accepting = true;
                    let enroll = match &n.join {
                        Join::Bootstrap { address } => {
                            cfg.bootstrap = Some(Address(*address));
                            None
                        }
                        Join::Enroll { via, neighbor } => {
                            Some(stack.plan(&dif.name, &shim_index, via, neighbor)?)
                        }
                    };
                    let mut keep: Vec<Keep> = enroll
                        .iter()
                        .map(|plan| Keep::new(plan.clone(), now))
                        .collect();
                    for (via, neighbor) in &n.neighbors {
                        let plan = stack.plan(&dif.name, &shim_index, via, neighbor)?;
                        keep.push(Keep::new(plan, now));
                    }
                    // Peers reach this member's IPC process through each shim by its own
                    // name and by the DIF's name; on Ethernet, where any member answering
                    // for the DIF's name may be picked to enroll through, only once it can
                    // take newcomers (see `Stack::offer_enrollment`). In a normal DIF
                    // below, the names are registered once that DIF is joined.
                    for l in &over {
                        if let Lower::Shim(s) = *l {
                            stack.shims[s].register(cfg.name.clone());
                            if !stack.shims[s].is_ethernet() {
                                stack.shims[s].register(ApplicationName::new(dif.name.clone()));
                            }
                        }
                    }
                    let payload = mtu - PCI_LEN;
                    stack.difs.push(NormalDif {
                        name: dif.name.clone(),
                        ipcp: IpcProcess::new(cfg, now),
                        retry_at: enroll.as_ref().map(|_| now),
                        enroll,
                        enrolling: None,
                        resolving: false,
                        over,
                        keep,
                        backoff: Duration::from_millis(500),
                        last_failure: None,
                        chunk: payload * (65536 / payload).max(1),
                    });
                }
            }
        }
        Ok(stack)
    }

    /// How DIF `dif` reaches `neighbor` through the DIF `via` below it.
    fn plan(
        &self,
        dif: &str,
        shim_index: &BTreeMap<String, usize>,
        via: &str,
        neighbor: &Neighbor,
    ) -> Result<EnrollPlan, FlowError> {
        let name = |p: &str| {
            p.parse()
                .map_err(|e| FlowError::RuntimeDown(format!("DIF {dif:?}: neighbour {p:?}: {e}")))
        };
        if let Some(&shim) = shim_index.get(via) {
            let peer = match neighbor {
                Neighbor::Endpoint(a) => PeerRef::Udp(*a),
                Neighbor::Name(p) => match self.shims[shim].udp_peer(p) {
                    Some(a) => PeerRef::Udp(a),
                    None => PeerRef::Name(name(p)?),
                },
            };
            return Ok(EnrollPlan {
                lower: Lower::Shim(shim),
                peer,
            });
        }
        let lower = self
            .dif_index(via)
            .ok_or_else(|| FlowError::RuntimeDown(format!("DIF {dif:?}: no DIF {via:?}")))?;
        let Neighbor::Name(p) = neighbor else {
            return Err(FlowError::RuntimeDown(format!(
                "DIF {dif:?}: a neighbour over the normal DIF {via:?} is an application name"
            )));
        };
        Ok(EnrollPlan {
            lower: Lower::Dif(lower),
            peer: PeerRef::Name(name(p)?),
        })
    }

    /// A new N-1 port of `dif` on the flow `below`.
    pub(crate) fn bind_n1(&mut self, dif: usize, below: LowerFlow) -> N1Port {
        self.next_n1 += 1;
        let port = N1Port(self.next_n1);
        self.n1.insert(port, (dif, below));
        self.by_lower.insert(below, port);
        port
    }

    /// Forgets an N-1 port and releases the flow below it.
    pub(crate) fn release_n1(&mut self, now: Instant, port: N1Port) {
        if let Some((_, below)) = self.n1.remove(&port) {
            self.by_lower.remove(&below);
            self.release_lower(now, below);
        }
    }

    /// Sends a PDU on N-1 port `port`. A full or closed flow below loses it, as a
    /// link would: the DIF above recovers what it must.
    pub(crate) fn send_n1(&mut self, now: Instant, port: N1Port, pdu: &[u8]) {
        match self.n1.get(&port) {
            Some(&(_, LowerFlow::Shim(shim, id))) => {
                self.shims[shim].send_pdu(id, pdu);
            }
            Some(&(_, LowerFlow::Dif(low, p))) => {
                let _ = self.difs[low].ipcp.write(now, p, pdu);
            }
            None => {}
        }
    }

    /// Releases a flow of the layer below.
    pub(crate) fn release_lower(&mut self, now: Instant, below: LowerFlow) {
        match below {
            LowerFlow::Shim(s, id) => self.shims[s].deallocate(id),
            LowerFlow::Dif(d, p) => self.difs[d].ipcp.deallocate(now, p),
        }
    }

    /// The largest PDU a flow of layer `lower` carries whole.
    pub(crate) fn lower_max_sdu(&self, lower: Lower) -> usize {
        match lower {
            Lower::Shim(s) => self.shims[s].max_sdu(),
            Lower::Dif(d) => self.difs[d]
                .ipcp
                .max_pdu()
                .map_or(1400, |m| m.saturating_sub(PCI_LEN)),
        }
    }

    /// Asks the layer below DIF `dif` named by `plan` for an N-1 flow from this
    /// member to the neighbour of the plan (which serves the DIF's name).
    fn allocate_lower(
        &mut self,
        now: Instant,
        dif: usize,
        plan: &EnrollPlan,
    ) -> Allocation<LowerFlow> {
        let (peer, d) = (&plan.peer, &self.difs[dif]);
        let local = d.ipcp.config().name.clone();
        let remote = ApplicationName::new(d.name.clone());
        match plan.lower {
            Lower::Shim(s) => match self.shims[s].allocate(now, peer, local, remote) {
                Allocation::Started(id) => Allocation::Started(LowerFlow::Shim(s, id)),
                Allocation::Resolving => Allocation::Resolving,
            },
            Lower::Dif(d) => {
                let PeerRef::Name(name) = peer else {
                    return Allocation::Resolving;
                };
                let ipcp = &mut self.difs[d].ipcp;
                if !ipcp.is_enrolled() {
                    return Allocation::Resolving; // goes on once that DIF is joined
                }
                // Unreliable: the DIF above has its own EFCP end to end, and an SDU
                // per PDU keeps its boundaries.
                // To another member: this one may serve the DIF's name too.
                let port = ipcp.allocate_flow_to_other(
                    now,
                    local,
                    name.clone(),
                    false,
                    now + Duration::from_secs(5),
                );
                Allocation::Started(LowerFlow::Dif(d, port))
            }
        }
    }

    /// The DIF with this name.
    pub(crate) fn dif_index(&self, name: &str) -> Option<usize> {
        self.difs.iter().position(|d| d.name == name)
    }

    /// Starts enrolling every DIF whose retry is due.
    pub(crate) fn start_enrollments(&mut self, now: Instant) {
        for i in 0..self.difs.len() {
            let d = &self.difs[i];
            let (Some(_), Some(at)) = (&d.enroll, d.retry_at) else {
                continue;
            };
            if now < at || d.joining() {
                continue;
            }
            self.difs[i].retry_at = None;
            let plan = self.difs[i].enroll.clone().expect("checked above");
            match self.allocate_lower(now, i, &plan) {
                Allocation::Started(f) => self.difs[i].enrolling = Some(f),
                Allocation::Resolving => self.difs[i].resolving = true,
            }
        }
    }

    /// Member `dif` may take newcomers: it is enrolled, and it bootstrapped the DIF,
    /// serves a name, or is a node (a short-lived client is no good neighbour to enroll
    /// through). Its Ethernet shims answer for the DIF's name from then on, and it
    /// registers the DIF's name in the normal DIFs below it.
    pub(crate) fn offer_enrollment(&mut self, now: Instant, dif: usize) {
        let d = &self.difs[dif];
        let long_lived = self.node || d.enroll.is_none() || self.serves_applications(dif);
        if !d.ipcp.is_enrolled() || !long_lived {
            return;
        }
        let name = ApplicationName::new(d.name.clone());
        for i in 0..d.over.len() {
            match self.difs[dif].over[i] {
                Lower::Shim(s) if self.shims[s].is_ethernet() => {
                    self.shims[s].register(name.clone());
                }
                Lower::Shim(_) => {}
                Lower::Dif(low) if self.difs[low].ipcp.is_enrolled() => {
                    let _ = self.difs[low].ipcp.register_for(
                        now,
                        name.clone(),
                        rina_core::ipcp::FlowKinds::UNRELIABLE,
                    );
                }
                Lower::Dif(_) => {}
            }
        }
    }

    /// True if applications registered names in DIF `dif` (not counting the names the
    /// DIFs above it register there to reach each other).
    fn serves_applications(&self, dif: usize) -> bool {
        self.difs[dif]
            .ipcp
            .registrations()
            .iter()
            .any(|n| self.upper_for(Lower::Dif(dif), n).is_none())
    }

    /// Registers, in every normal DIF that is joined, the IPC process names of the
    /// DIFs above it, so that their members can reach each other's (idempotent).
    pub(crate) fn publish_upper_names(&mut self, now: Instant) {
        for up in 0..self.difs.len() {
            let name = self.difs[up].ipcp.config().name.clone();
            for i in 0..self.difs[up].over.len() {
                if let Lower::Dif(low) = self.difs[up].over[i] {
                    if self.difs[low].ipcp.is_enrolled() {
                        let _ = self.difs[low].ipcp.register_for(
                            now,
                            name.clone(),
                            rina_core::ipcp::FlowKinds::UNRELIABLE,
                        );
                    }
                }
            }
        }
    }

    /// The DIF above layer `low` that a flow arriving there for `app` is an N-1 flow
    /// of (`app` is its name or its member's name).
    pub(crate) fn upper_for(&self, low: Lower, app: &ApplicationName) -> Option<usize> {
        self.difs.iter().position(|d| {
            d.over.contains(&low)
                && (d.name == app.process_name && app.process_instance.is_empty()
                    || d.ipcp.config().name == *app)
        })
    }

    /// True if `f` is being made for a DIF above to enroll or keep an adjacency.
    pub(crate) fn is_n1_attempt(&self, f: LowerFlow) -> bool {
        self.difs.iter().any(|d| d.enrolling == Some(f)) || self.keep_allocating(f).is_some()
    }

    /// The normal DIF `low` is joined: the DIFs above waiting for it go on.
    pub(crate) fn lower_joined(&mut self, now: Instant, low: usize) {
        for d in &mut self.difs {
            let waits = |p: &EnrollPlan| p.lower == Lower::Dif(low);
            let idle = d.resolving || (!d.ipcp.is_enrolled() && d.enrolling.is_none());
            if idle && d.enroll.as_ref().is_some_and(waits) {
                d.retry_now(now);
            }
            for k in &mut d.keep {
                if k.state == KeepState::Resolving && waits(&k.plan) {
                    k.state = KeepState::Down;
                    k.retry_at = now;
                }
            }
        }
        for up in 0..self.difs.len() {
            if self.difs[up].over.contains(&Lower::Dif(low)) {
                self.offer_enrollment(now, up);
            }
        }
        self.publish_upper_names(now);
        self.maintain_adjacencies(now);
        self.start_enrollments(now);
    }

    /// The DIFs above a normal DIF that cannot be joined now stop waiting for it: their
    /// own attempt fails with its reason (and is made again once it is joined). True
    /// if any did.
    pub(crate) fn lower_failed(&mut self, now: Instant) -> bool {
        let mut failed = false;
        for up in 0..self.difs.len() {
            let d = &self.difs[up];
            let Some(EnrollPlan {
                lower: Lower::Dif(low),
                ..
            }) = d.enroll
            else {
                continue;
            };
            let l = &self.difs[low];
            if !d.resolving || l.ipcp.is_enrolled() || l.joining() {
                continue;
            }
            let Some(why) = l.last_failure.clone() else {
                continue;
            };
            let why = format!("cannot join DIF {} below it: {why}", l.name);
            self.difs[up].schedule_retry(now, why);
            failed = true;
        }
        failed
    }

    /// The neighbour `name` was found on shim `shim`: the DIFs waiting for it go on.
    pub(crate) fn resolved(&mut self, now: Instant, shim: usize, name: &ApplicationName) {
        for d in &mut self.difs {
            if d.resolving && d.enroll.as_ref().is_some_and(|p| p.waits_for(shim, name)) {
                d.retry_now(now);
            }
            for k in &mut d.keep {
                if k.state == KeepState::Resolving && k.plan.waits_for(shim, name) {
                    k.state = KeepState::Down;
                    k.retry_at = now;
                }
            }
        }
        self.maintain_adjacencies(now);
        self.start_enrollments(now);
    }

    /// Nobody answered for `name` on shim `shim`: the DIFs waiting for it try later.
    pub(crate) fn unresolved(&mut self, now: Instant, shim: usize, name: &ApplicationName) {
        let link = self.shims[shim].describe();
        for d in &mut self.difs {
            for k in &mut d.keep {
                if k.state == KeepState::Resolving && k.plan.waits_for(shim, name) {
                    k.down(now);
                }
            }
            if d.resolving && d.enroll.as_ref().is_some_and(|p| p.waits_for(shim, name)) {
                let why = format!("no member of DIF {} answered for {name} on {link}", d.name);
                d.schedule_retry(now, why);
            }
        }
    }
}

impl Keep {
    fn new(plan: EnrollPlan, now: Instant) -> Self {
        Self {
            plan,
            state: KeepState::Down,
            retry_at: now,
            backoff: KEEP_BACKOFF,
        }
    }

    /// Down, to be tried again after the back-off (which grows).
    fn down(&mut self, now: Instant) {
        self.state = KeepState::Down;
        self.retry_at = now + self.backoff;
        self.backoff = (self.backoff * 2).min(KEEP_BACKOFF_MAX);
    }
}

impl Stack {
    /// Sets up every kept adjacency that is down and due, in the DIFs this process is
    /// a member of.
    pub(crate) fn maintain_adjacencies(&mut self, now: Instant) {
        for i in 0..self.difs.len() {
            if !self.difs[i].ipcp.is_enrolled() {
                continue;
            }
            for k in 0..self.difs[i].keep.len() {
                let keep = &self.difs[i].keep[k];
                if keep.state != KeepState::Down || now < keep.retry_at {
                    continue;
                }
                let plan = keep.plan.clone();
                self.difs[i].keep[k].state = match self.allocate_lower(now, i, &plan) {
                    Allocation::Started(f) => KeepState::Allocating(f),
                    Allocation::Resolving => KeepState::Resolving,
                };
            }
        }
    }

    /// When [`Stack::maintain_adjacencies`] has something to do next.
    pub(crate) fn keep_deadline(&self) -> Option<Instant> {
        self.difs
            .iter()
            .filter(|d| d.ipcp.is_enrolled())
            .flat_map(|d| &d.keep)
            .filter(|k| k.state == KeepState::Down)
            .map(|k| k.retry_at)
            .min()
    }

    /// The kept adjacency (DIF, index) whose N-1 flow `f` is being made.
    pub(crate) fn keep_allocating(&self, f: LowerFlow) -> Option<(usize, usize)> {
        self.difs.iter().enumerate().find_map(|(di, d)| {
            d.keep
                .iter()
                .position(|k| k.state == KeepState::Allocating(f))
                .map(|ki| (di, ki))
        })
    }

    /// The N-1 flow of a kept adjacency could not be made: try later.
    pub(crate) fn keep_failed(&mut self, now: Instant, f: LowerFlow) -> bool {
        let Some((d, k)) = self.keep_allocating(f) else {
            return false;
        };
        self.difs[d].keep[k].down(now);
        true
    }

    /// N-1 port `port` of DIF `dif` is gone: if it carried a kept adjacency, that one
    /// is set up again after its back-off. False if no kept adjacency used it.
    pub(crate) fn keep_lost(&mut self, now: Instant, dif: usize, port: N1Port) -> bool {
        let keep = &mut self.difs[dif].keep;
        match keep.iter_mut().find(|k| k.state == KeepState::Up(port)) {
            Some(k) => {
                k.down(now);
                true
            }
            None => false,
        }
    }

    /// The neighbour on N-1 port `port` of DIF `dif` is up: its kept adjacency, if any,
    /// starts its back-off afresh.
    pub(crate) fn keep_up(&mut self, dif: usize, port: N1Port) {
        if let Some(k) = self.difs[dif]
            .keep
            .iter_mut()
            .find(|k| k.state == KeepState::Up(port))
        {
            k.backoff = KEEP_BACKOFF;
        }
    }
}

impl EnrollPlan {
    fn waits_for(&self, shim: usize, name: &ApplicationName) -> bool {
        self.lower == Lower::Shim(shim) && matches!(&self.peer, PeerRef::Name(n) if n == name)
    }
}

impl NormalDif {
    /// An enrollment is under way (a name being resolved or a shim flow allocated).
    pub(crate) fn joining(&self) -> bool {
        self.enrolling.is_some() || self.resolving
    }

    /// Tries to enroll again at once (what it waited for is there).
    pub(crate) fn retry_now(&mut self, now: Instant) {
        self.resolving = false;
        self.retry_at = Some(now);
    }

    /// Schedules another enrollment attempt with exponential back-off.
    pub(crate) fn schedule_retry(&mut self, now: Instant, why: String) {
        tracing::info!(
            "DIF {}: cannot join: {why}; trying again in {:?}",
            self.name,
            self.backoff
        );
        self.enrolling = None;
        self.resolving = false;
        self.last_failure = Some(why);
        self.retry_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(Duration::from_secs(30));
    }
}

/// EFCP settings for data flows over a path whose largest PDU is `mtu`: a window of
/// about 4 MiB (at least 32 PDUs), far above any path's bandwidth-delay product here,
/// and a send queue of about 256 KiB: what the application wrote beyond that waits in
/// its own socket, whose buffer it sizes (`SO_SNDBUF`), as over TCP.
fn data_efcp(mtu: usize) -> EfcpConfig {
    let mtu = mtu.max(1);
    EfcpConfig {
        max_pdu_size: mtu,
        initial_credit: ((4usize << 20) / mtu).clamp(32, 4096) as u64,
        send_queue_pdus: ((256usize << 10) / mtu).clamp(8, 1024),
        ..EfcpConfig::default()
    }
}
