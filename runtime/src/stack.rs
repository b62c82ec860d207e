//! The stack of one process: its shim DIFs (UDP and Ethernet) and normal DIFs, built
//! from the rules, and the glue between shim flows and the N-1 ports of the normal IPC
//! processes.

use std::collections::BTreeMap;
use std::time::Duration;

use rina_core::efcp::EfcpConfig;
use rina_core::ipcp::{IpcProcess, IpcpConfig};
use rina_core::shim::{ShimConfig, ShimFlowId};
use rina_core::wire::PCI_LEN;
use rina_core::{Address, ApplicationName, Instant, N1Port};
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

/// How a normal DIF joins: through a shim, to a neighbour.
#[derive(Clone, Debug)]
pub(crate) struct EnrollPlan {
    pub(crate) shim: usize,
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
    /// The shim flow is being allocated.
    Allocating(ShimFlowId),
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
    /// The shim flow being allocated to enroll, if any.
    pub(crate) enrolling: Option<(usize, ShimFlowId)>,
    /// The neighbour's name is being resolved (Ethernet) before the shim flow.
    pub(crate) resolving: bool,
    /// The shims this DIF is over.
    pub(crate) shims: Vec<usize>,
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
    /// N-1 port -> (DIF, shim, shim flow).
    pub(crate) n1: BTreeMap<N1Port, (usize, usize, ShimFlowId)>,
    /// (shim, shim flow) -> N-1 port.
    pub(crate) by_shim_flow: BTreeMap<(usize, ShimFlowId), N1Port>,
    next_n1: u32,
    /// A node (`rina node`): a long-lived member that takes newcomers in every DIF.
    pub(crate) node: bool,
}

impl Stack {
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
                            "shim DIF {:?}: cannot bind UDP {}: {e}",
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
                        FlowError::RuntimeDown(format!("shim DIF {:?}: {err}", dif.name))
                    })?;
                    shim_index.insert(dif.name.clone(), stack.shims.len());
                    stack.shims.push(Shim::eth(dif.name.clone(), link, seed));
                }
                DifKind::Normal(n) => {
                    let shims: Vec<usize> = n
                        .over
                        .iter()
                        .filter_map(|o| shim_index.get(o).copied())
                        .collect();
                    if shims.len() != n.over.len() {
                        return Err(FlowError::RuntimeDown(format!(
                            "DIF {:?}: only normal DIFs over shim DIFs are supported yet",
                            dif.name
                        ))
                        .into());
                    }
                    let name = n.ipcp_name.clone().unwrap_or_else(|| {
                        ApplicationName::with_instance(
                            format!("{program}.{}", dif.name),
                            std::process::id().to_string(),
                        )
                    });
                    let mut cfg = IpcpConfig::new(dif.name.clone(), name, seed);
                    cfg.enrollment_timeout = n.enrollment_timeout;
                    cfg.keepalive_interval = n.keepalive_interval;
                    cfg.keepalive_misses = n.keepalive_misses;
                    let mtu = shims
                        .iter()
                        .map(|&s| stack.shims[s].max_sdu())
                        .min()
                        .unwrap_or(1400);
                    cfg.data_efcp = data_efcp(mtu);
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
                    // take newcomers (see `Stack::offer_enrollment`).
                    for &s in &shims {
                        stack.shims[s].register(cfg.name.clone());
                        if !stack.shims[s].is_ethernet() {
                            stack.shims[s].register(ApplicationName::new(dif.name.clone()));
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
                        shims,
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

    /// How DIF `dif` reaches `neighbor` through the shim DIF `via`.
    fn plan(
        &self,
        dif: &str,
        shim_index: &BTreeMap<String, usize>,
        via: &str,
        neighbor: &Neighbor,
    ) -> Result<EnrollPlan, FlowError> {
        let shim = *shim_index
            .get(via)
            .ok_or_else(|| FlowError::RuntimeDown(format!("DIF {dif:?}: no shim {via:?}")))?;
        let peer = match neighbor {
            Neighbor::Endpoint(a) => PeerRef::Udp(*a),
            Neighbor::Name(p) => match self.shims[shim].udp_peer(p) {
                Some(a) => PeerRef::Udp(a),
                None => PeerRef::Name(p.parse().map_err(|e| {
                    FlowError::RuntimeDown(format!("DIF {dif:?}: neighbour {p:?}: {e}"))
                })?),
            },
        };
        Ok(EnrollPlan { shim, peer })
    }

    /// A new N-1 port for a shim flow of `dif`.
    pub(crate) fn bind_n1(&mut self, dif: usize, shim: usize, id: ShimFlowId) -> N1Port {
        self.next_n1 += 1;
        let port = N1Port(self.next_n1);
        self.n1.insert(port, (dif, shim, id));
        self.by_shim_flow.insert((shim, id), port);
        port
    }

    /// Forgets an N-1 port and releases its shim flow.
    pub(crate) fn release_n1(&mut self, port: N1Port) {
        if let Some((_, shim, id)) = self.n1.remove(&port) {
            self.by_shim_flow.remove(&(shim, id));
            self.shims[shim].deallocate(id);
        }
    }

    /// The DIF with this name.
    pub(crate) fn dif_index(&self, name: &str) -> Option<usize> {
        self.difs.iter().position(|d| d.name == name)
    }

    /// Starts enrolling every DIF whose retry is due.
    pub(crate) fn start_enrollments(&mut self, now: Instant) {
        for d in &mut self.difs {
            let (Some(plan), Some(at)) = (&d.enroll, d.retry_at) else {
                continue;
            };
            if now < at || d.joining() {
                continue;
            }
            d.retry_at = None;
            match self.shims[plan.shim].allocate(
                now,
                &plan.peer,
                d.ipcp.config().name.clone(),
                ApplicationName::new(d.name.clone()),
            ) {
                Allocation::Started(id) => d.enrolling = Some((plan.shim, id)),
                Allocation::Resolving => d.resolving = true,
            }
        }
    }

    /// Member `dif` may take newcomers: it is enrolled, and it bootstrapped the DIF,
    /// serves a name, or is a node (a short-lived client is no good neighbour to enroll
    /// through).
    /// Its Ethernet shims answer for the DIF's name from then on.
    pub(crate) fn offer_enrollment(&mut self, dif: usize) {
        let d = &self.difs[dif];
        let long_lived = self.node || d.enroll.is_none() || d.ipcp.has_registrations();
        if !d.ipcp.is_enrolled() || !long_lived {
            return;
        }
        let name = ApplicationName::new(d.name.clone());
        for &s in &self.difs[dif].shims {
            if self.shims[s].is_ethernet() {
                self.shims[s].register(name.clone());
            }
        }
    }

    /// The neighbour `name` was found on shim `shim`: the DIFs waiting for it go on.
    pub(crate) fn resolved(&mut self, now: Instant, shim: usize, name: &ApplicationName) {
        for d in &mut self.difs {
            if d.resolving && d.enroll.as_ref().is_some_and(|p| p.waits_for(shim, name)) {
                d.resolving = false;
                d.retry_at = Some(now);
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
                d.resolving = false;
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
        for d in &mut self.difs {
            if !d.ipcp.is_enrolled() {
                continue;
            }
            for k in &mut d.keep {
                if k.state != KeepState::Down || now < k.retry_at {
                    continue;
                }
                k.state = match self.shims[k.plan.shim].allocate(
                    now,
                    &k.plan.peer,
                    d.ipcp.config().name.clone(),
                    ApplicationName::new(d.name.clone()),
                ) {
                    Allocation::Started(id) => KeepState::Allocating(id),
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

    /// The kept adjacency (DIF, index) whose shim flow `id` on `shim` is being made.
    pub(crate) fn keep_allocating(&self, shim: usize, id: ShimFlowId) -> Option<(usize, usize)> {
        self.difs.iter().enumerate().find_map(|(di, d)| {
            d.keep
                .iter()
                .position(|k| k.plan.shim == shim && k.state == KeepState::Allocating(id))
                .map(|ki| (di, ki))
        })
    }

    /// The shim flow of a kept adjacency could not be made: try later.
    pub(crate) fn keep_failed(&mut self, now: Instant, shim: usize, id: ShimFlowId) -> bool {
        let Some((d, k)) = self.keep_allocating(shim, id) else {
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
        self.shim == shim && matches!(&self.peer, PeerRef::Name(n) if n == name)
    }
}

impl NormalDif {
    /// An enrollment is under way (a name being resolved or a shim flow allocated).
    pub(crate) fn joining(&self) -> bool {
        self.enrolling.is_some() || self.resolving
    }

    /// Schedules another enrollment attempt with exponential back-off.
    pub(crate) fn schedule_retry(&mut self, now: Instant, why: String) {
        tracing::info!(
            "DIF {}: cannot join: {why}; trying again in {:?}",
            self.name,
            self.backoff
        );
        self.enrolling = None;
        self.last_failure = Some(why);
        self.retry_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(Duration::from_secs(30));
    }
}

/// EFCP settings for data flows over a path whose largest PDU is `mtu`.
fn data_efcp(mtu: usize) -> EfcpConfig {
    // Keep about 8 MiB in flight at most, at least 64 PDUs.
    let credit = ((8usize << 20) / mtu).clamp(64, 4096) as u64;
    EfcpConfig {
        max_pdu_size: mtu,
        initial_credit: credit,
        send_queue_pdus: credit as usize,
        ..EfcpConfig::default()
    }
}
