//! Flows: allocation (request/response between the two members), the EFCP connection
//! that carries each flow, reading, writing, half-close and deallocation.
//!
//! The requester looks the destination up in the directory (no entry: the flow is
//! refused at once with [`AllocError::NoSuchApplication`]), sends a routed
//! `FlowRequest` carrying both names and its CEP-id, and retries every
//! `flow_request_retry` until its deadline. The responder answers with its own CEP-id,
//! or a refusal, and answers a repeated request with the same response.

use crate::efcp::{Connection, Delivery, Endpoint, SendError};
use crate::time::{earliest, Instant};
use crate::wire::mgmt::{MgmtMessage, ResultCode};
use crate::wire::Pci;
use crate::{Address, ApplicationName, CepId, PortId};

use super::{AllocError, Event, IpcProcess};

/// How soon a flow request is retried while its destination has no route.
const NO_ROUTE_RETRY: std::time::Duration = std::time::Duration::from_millis(20);

/// Why a write was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The send queue is full: wait for [`Event::Writable`].
    #[error("the flow cannot take more data now")]
    WouldBlock,
    /// The SDU is larger than the flow's largest SDU.
    #[error("SDU too large")]
    TooLarge,
    /// The flow is closed for writing, broken, or does not exist.
    #[error("the flow is closed")]
    Closed,
}

/// What a read returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadResult {
    /// An SDU.
    Sdu(Vec<u8>),
    /// The peer finished sending.
    Eof,
    /// Nothing now: wait for [`Event::Readable`].
    WouldBlock,
    /// The flow is broken or does not exist.
    Closed,
}

/// A one-line view of a flow for observability.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowSummary {
    /// The flow.
    pub port: PortId,
    /// Local application.
    pub local_app: ApplicationName,
    /// Remote application.
    pub remote_app: ApplicationName,
    /// Remote member, when known.
    pub remote_addr: Option<Address>,
    /// State name.
    pub state: &'static str,
}

#[derive(Debug)]
pub(super) enum FlowState {
    /// Waiting for the responder.
    Requested {
        deadline: Instant,
        next_try: Instant,
        sent: bool,
    },
    /// Carrying data.
    Up(Box<Connection>),
    /// Closed gracefully; lingers to answer retransmissions until the instant.
    Lingering(Box<Connection>, Instant),
    /// Reset (the peer deallocated it, left, or stopped answering): nothing more is
    /// sent or received, but what had arrived in order (and the end of stream, if it
    /// had) is still read, as TCP lets a program read what came before a reset. Gone
    /// at [`IpcProcess::deallocate`].
    Reset(Box<Connection>),
}

#[derive(Debug)]
pub(super) struct Flow {
    pub(super) local_app: ApplicationName,
    pub(super) remote_app: ApplicationName,
    pub(super) local_cep: CepId,
    pub(super) remote_addr: Option<Address>,
    pub(super) reliable: bool,
    pub(super) state: FlowState,
    /// A `Readable` event is outstanding (not yet answered by a read that found nothing).
    readable_signalled: bool,
    /// A write was refused; signal `Writable` when room appears.
    want_writable: bool,
    /// The peer left after sending everything: what this side sends cannot be
    /// delivered, so its sending side counts as done.
    peer_left: bool,
    /// For an incoming flow: the requester's CEP-id (its key in the incoming index).
    requester_cep: Option<CepId>,
    /// A requested flow that must reach another member (see
    /// [`IpcProcess::allocate_flow_to_other`]).
    elsewhere: bool,
}

impl Flow {
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            FlowState::Requested {
                deadline, next_try, ..
            } => Some((*deadline).min(*next_try)),
            FlowState::Up(c) => c.poll_timeout(),
            FlowState::Lingering(c, until) => earliest(c.poll_timeout(), Some(*until)),
            FlowState::Reset(_) => None,
        }
    }

    fn conn_mut(&mut self) -> Option<&mut Connection> {
        match &mut self.state {
            FlowState::Up(c) | FlowState::Lingering(c, _) => Some(c),
            FlowState::Requested { .. } | FlowState::Reset(_) => None,
        }
    }
}

impl IpcProcess {
    /// Starts allocating a flow from `local_app` to `remote_app`; the outcome comes as
    /// [`Event::FlowAllocated`] or [`Event::FlowAllocationFailed`] by `deadline`.
    pub fn allocate_flow(
        &mut self,
        now: Instant,
        local_app: ApplicationName,
        remote_app: ApplicationName,
        reliable: bool,
        deadline: Instant,
    ) -> PortId {
        self.request_flow(now, local_app, remote_app, reliable, deadline, false)
    }

    /// As [`IpcProcess::allocate_flow`], to a registrant of `remote_app` on another
    /// member: never this one, even if it registered the name too. A DIF above uses it
    /// for its N-1 flows (its members register the DIF's name here, and a member is not
    /// its own neighbour). With no other registrant the flow fails with
    /// [`AllocError::NoSuchApplication`].
    pub fn allocate_flow_to_other(
        &mut self,
        now: Instant,
        local_app: ApplicationName,
        remote_app: ApplicationName,
        reliable: bool,
        deadline: Instant,
    ) -> PortId {
        self.request_flow(now, local_app, remote_app, reliable, deadline, true)
    }

    fn request_flow(
        &mut self,
        now: Instant,
        local_app: ApplicationName,
        remote_app: ApplicationName,
        reliable: bool,
        deadline: Instant,
        elsewhere: bool,
    ) -> PortId {
        let port = self.fresh_port();
        let cep = self.fresh_cep();
        self.cep_to_port.insert(cep, port);
        self.flows.insert(
            port,
            Flow {
                local_app,
                remote_app,
                local_cep: cep,
                remote_addr: None,
                reliable,
                state: FlowState::Requested {
                    deadline,
                    next_try: now,
                    sent: false,
                },
                readable_signalled: false,
                want_writable: false,
                peer_left: false,
                requester_cep: None,
                elsewhere,
            },
        );
        self.try_request(now, port);
        port
    }

    /// Sends (or re-sends) the flow request of `port` if it is due.
    fn try_request(&mut self, now: Instant, port: PortId) {
        self.try_request_now(now, port);
        self.reschedule(port);
    }

    fn try_request_now(&mut self, now: Instant, port: PortId) {
        let retry = self.cfg.flow_request_retry;
        let Some(f) = self.flows.get(&port) else {
            return;
        };
        let FlowState::Requested {
            deadline,
            next_try,
            sent,
        } = f.state
        else {
            return;
        };
        if now >= deadline {
            let error = if !self.is_enrolled() {
                AllocError::Unreachable
            } else if sent {
                AllocError::TimedOut
            } else {
                AllocError::Unreachable
            };
            self.fail_flow(port, error);
            return;
        }
        if !self.is_enrolled() {
            // Wait for enrollment (which kicks every request) or the deadline.
            if let Some(f) = self.flows.get_mut(&port) {
                f.state = FlowState::Requested {
                    deadline,
                    next_try: deadline,
                    sent,
                };
            }
            return;
        }
        if now < next_try {
            return;
        }
        let mut candidates = self.directory.lookup(&f.remote_app);
        if f.elsewhere {
            candidates.retain(|&a| Some(a) != self.address);
        }
        if candidates.is_empty() {
            self.fail_flow(port, AllocError::NoSuchApplication);
            return;
        }
        // Spread flows over a pool of registrants: pick by CEP-id.
        let dst = candidates[f.local_cep.0 as usize % candidates.len()];
        let msg = MgmtMessage::FlowRequest {
            src_app: f.local_app.clone(),
            dst_app: f.remote_app.clone(),
            src_cep: f.local_cep.0,
            reliable: f.reliable,
        };
        let routed = self.send_routed(dst, &msg);
        // No route yet (routing is converging): look again soon rather than after a
        // whole retry interval.
        let next_try = now
            + if routed {
                retry
            } else {
                retry.min(NO_ROUTE_RETRY)
            };
        if let Some(f) = self.flows.get_mut(&port) {
            f.remote_addr = Some(dst);
            f.state = FlowState::Requested {
                deadline,
                next_try,
                sent: sent || routed,
            };
        }
    }

    /// Sends every pending flow request now (after enrollment).
    pub(super) fn kick_flow_requests(&mut self, now: Instant) {
        let pending: Vec<PortId> = self
            .flows
            .iter()
            .filter(|(_, f)| matches!(f.state, FlowState::Requested { .. }))
            .map(|(&p, _)| p)
            .collect();
        for port in pending {
            if let Some(FlowState::Requested { next_try, .. }) =
                self.flows.get_mut(&port).map(|f| &mut f.state)
            {
                *next_try = now;
            }
            self.try_request(now, port);
        }
    }

    fn fail_flow(&mut self, port: PortId, error: AllocError) {
        self.schedule.remove(port);
        if let Some(f) = self.flows.remove(&port) {
            self.cep_to_port.remove(&f.local_cep);
        }
        self.events
            .push_back(Event::FlowAllocationFailed { port, error });
    }

    pub(super) fn on_routed_mgmt(&mut self, now: Instant, src: Address, msg: MgmtMessage) {
        match msg {
            MgmtMessage::FlowRequest {
                src_app,
                dst_app,
                src_cep,
                reliable,
            } => {
                self.on_flow_request(now, src, src_app, dst_app, CepId(src_cep), reliable);
            }
            MgmtMessage::FlowResponse {
                result,
                src_cep,
                dst_cep,
            } => {
                self.on_flow_response(now, src, result, CepId(src_cep), CepId(dst_cep));
            }
            MgmtMessage::FlowDeallocate { dst_cep } => {
                let port = self.cep_to_port.get(&CepId(dst_cep)).copied();
                // Only from the peer of the flow: anyone else's is dropped.
                let from_peer = port
                    .and_then(|p| self.flows.get(&p))
                    .is_some_and(|f| f.remote_addr == Some(src));
                match port {
                    Some(port) if from_peer => self.reset_flow(port),
                    _ => self.counters.pdus_dropped += 1,
                }
            }
            _ => self.counters.pdus_dropped += 1,
        }
    }

    fn on_flow_request(
        &mut self,
        now: Instant,
        src: Address,
        src_app: ApplicationName,
        dst_app: ApplicationName,
        src_cep: CepId,
        reliable: bool,
    ) {
        // A repeated request gets the same answer.
        let existing = self
            .incoming
            .get(&(src, src_cep))
            .and_then(|p| self.flows.get(p))
            .filter(|f| matches!(&f.state, FlowState::Up(c) if c.remote().cep == src_cep));
        if let Some(f) = existing {
            let resp = MgmtMessage::FlowResponse {
                result: ResultCode::Ok,
                src_cep: src_cep.0,
                dst_cep: f.local_cep.0,
            };
            self.send_routed(src, &resp);
            return;
        }
        if !self
            .registered
            .get(&dst_app)
            .is_some_and(|k| k.accepts(reliable))
        {
            let resp = MgmtMessage::FlowResponse {
                result: ResultCode::NoSuchName,
                src_cep: src_cep.0,
                dst_cep: 0,
            };
            self.send_routed(src, &resp);
            return;
        }
        let (Some(me), port, cep) = (self.address, self.fresh_port(), self.fresh_cep()) else {
            return;
        };
        let conn = self.new_connection(
            now,
            Endpoint { addr: me, cep },
            Endpoint {
                addr: src,
                cep: src_cep,
            },
            reliable,
        );
        self.cep_to_port.insert(cep, port);
        self.incoming.insert((src, src_cep), port);
        self.flows.insert(
            port,
            Flow {
                local_app: dst_app.clone(),
                remote_app: src_app.clone(),
                local_cep: cep,
                remote_addr: Some(src),
                reliable,
                state: FlowState::Up(Box::new(conn)),
                readable_signalled: false,
                want_writable: false,
                peer_left: false,
                requester_cep: Some(src_cep),
                elsewhere: false,
            },
        );
        let resp = MgmtMessage::FlowResponse {
            result: ResultCode::Ok,
            src_cep: src_cep.0,
            dst_cep: cep.0,
        };
        self.send_routed(src, &resp);
        self.reschedule(port);
        self.events.push_back(Event::IncomingFlow {
            port,
            local_app: dst_app,
            remote_app: src_app,
            reliable,
        });
    }

    fn on_flow_response(
        &mut self,
        now: Instant,
        src: Address,
        result: ResultCode,
        my_cep: CepId,
        their_cep: CepId,
    ) {
        let Some(&port) = self.cep_to_port.get(&my_cep) else {
            return;
        };
        let Some(f) = self.flows.get(&port) else {
            return;
        };
        if !matches!(f.state, FlowState::Requested { .. }) {
            return;
        }
        let error = match result {
            ResultCode::Ok => None,
            ResultCode::NoSuchName => Some(AllocError::NoSuchApplication),
            ResultCode::Denied | ResultCode::WrongDif => Some(AllocError::Denied),
            ResultCode::NoResources => Some(AllocError::NoResources),
        };
        if let Some(e) = error {
            self.fail_flow(port, e);
            return;
        }
        let (Some(me), reliable) = (self.address, f.reliable) else {
            return;
        };
        let conn = self.new_connection(
            now,
            Endpoint {
                addr: me,
                cep: my_cep,
            },
            Endpoint {
                addr: src,
                cep: their_cep,
            },
            reliable,
        );
        if let Some(f) = self.flows.get_mut(&port) {
            f.remote_addr = Some(src);
            f.state = FlowState::Up(Box::new(conn));
        }
        self.reschedule(port);
        self.events.push_back(Event::FlowAllocated { port });
    }

    fn new_connection(
        &self,
        now: Instant,
        local: Endpoint,
        remote: Endpoint,
        reliable: bool,
    ) -> Connection {
        let mut cfg = self.cfg.data_efcp.clone();
        cfg.reliable = reliable;
        // The smallest MTU among the N-1 ports bounds the PDU size on any path.
        if let Some(m) = self.path_mtu() {
            cfg.max_pdu_size = m;
        }
        Connection::new(cfg, local, remote, now)
    }

    /// Cuts every connection's PDUs to at most `max` bytes from now on.
    pub(super) fn limit_pdu_size(&mut self, max: usize) {
        for f in self.flows.values_mut() {
            if let Some(c) = f.conn_mut() {
                c.limit_max_pdu_size(max);
            }
        }
    }

    /// The largest PDU every N-1 port of this member carries.
    pub(super) fn local_max_pdu(&self) -> Option<usize> {
        self.neighbors.values().map(|n| n.mgmt_mtu()).min()
    }

    /// The largest PDU of the DIF: what every N-1 port of every member carries (as
    /// advertised), so that a PDU fits whatever path it takes, now or after a change
    /// of routes.
    pub(super) fn path_mtu(&self) -> Option<usize> {
        let advertised = self
            .lsdb
            .all()
            .filter(|l| l.max_pdu > 0)
            .map(|l| l.max_pdu as usize);
        self.local_max_pdu().into_iter().chain(advertised).min()
    }

    pub(super) fn on_flow_pdu(&mut self, now: Instant, pci: &Pci, payload: &[u8]) {
        let Some(&port) = self.cep_to_port.get(&pci.dst_cep) else {
            self.counters.pdus_dropped += 1;
            return;
        };
        let Some(f) = self.flows.get_mut(&port) else {
            return;
        };
        let Some(c) = f.conn_mut() else {
            self.counters.pdus_dropped += 1;
            return;
        };
        if c.remote().addr != pci.src_addr || c.remote().cep != pci.src_cep {
            self.counters.pdus_dropped += 1;
            return;
        }
        c.handle_pdu(now, pci, payload);
        self.after_flow_input(port);
        self.reschedule(port);
    }

    /// Re-reads `port`'s timers and marks it ready to send: call after anything that
    /// changed the flow.
    fn reschedule(&mut self, port: PortId) {
        match self.flows.get(&port) {
            Some(f) => self.schedule.update(port, f.poll_timeout()),
            None => self.schedule.remove(port),
        }
    }

    /// Emits `Readable`, `Writable` and `FlowClosed` as the connection's state changed.
    fn after_flow_input(&mut self, port: PortId) {
        let Some(f) = self.flows.get_mut(&port) else {
            return;
        };
        let FlowState::Up(c) = &mut f.state else {
            return;
        };
        if c.failure().is_some() {
            self.reset_flow(port);
            return;
        }
        if c.has_delivery() && !f.readable_signalled {
            f.readable_signalled = true;
            self.events.push_back(Event::Readable { port });
        }
        if f.want_writable && c.can_send() {
            f.want_writable = false;
            self.events.push_back(Event::Writable { port });
        }
    }

    /// Writes one SDU to the flow.
    ///
    /// # Errors
    /// [`WriteError::WouldBlock`] when the send queue is full ([`Event::Writable`]
    /// follows), [`WriteError::TooLarge`], or [`WriteError::Closed`].
    pub fn write(&mut self, now: Instant, port: PortId, sdu: &[u8]) -> Result<(), WriteError> {
        let Some(f) = self.flows.get_mut(&port) else {
            return Err(WriteError::Closed);
        };
        let FlowState::Up(c) = &mut f.state else {
            return Err(WriteError::Closed);
        };
        let r = match c.send(now, sdu) {
            Ok(()) => Ok(()),
            Err(SendError::WouldBlock) => {
                f.want_writable = true;
                Err(WriteError::WouldBlock)
            }
            Err(SendError::TooLarge) => Err(WriteError::TooLarge),
            Err(SendError::Closed) => Err(WriteError::Closed),
        };
        if r.is_ok() {
            self.reschedule(port);
        }
        r
    }

    /// True if the flow can take another SDU now.
    pub fn can_write(&self, port: PortId) -> bool {
        matches!(self.flows.get(&port).map(|f| &f.state), Some(FlowState::Up(c)) if c.can_send())
    }

    /// Marks the end of what this side sends (a half-close): the peer reads EOF after
    /// the data written before.
    pub fn close_write(&mut self, now: Instant, port: PortId) {
        if let Some(FlowState::Up(c)) = self.flows.get_mut(&port).map(|f| &mut f.state) {
            c.close_send(now);
            self.reschedule(port);
        }
    }

    /// Reads the next SDU of the flow.
    pub fn read(&mut self, now: Instant, port: PortId) -> ReadResult {
        let Some(f) = self.flows.get_mut(&port) else {
            return ReadResult::Closed;
        };
        if let FlowState::Reset(c) = &mut f.state {
            // What arrived before the reset, then the end: nothing to open or ack.
            return match c.recv(now) {
                Some(Delivery::Sdu(v)) => ReadResult::Sdu(v),
                Some(Delivery::Eof) => ReadResult::Eof,
                None => ReadResult::Closed,
            };
        }
        let FlowState::Up(c) = &mut f.state else {
            return ReadResult::Closed;
        };
        let r = match c.recv(now) {
            Some(Delivery::Sdu(v)) => ReadResult::Sdu(v),
            Some(Delivery::Eof) => ReadResult::Eof,
            None => {
                f.readable_signalled = false;
                return ReadResult::WouldBlock;
            }
        };
        // Consuming opens the window: an update may be due.
        self.reschedule(port);
        r
    }

    /// True when everything written (and the end-of-stream mark) was acknowledged and
    /// the peer's end of stream was read: the flow can be deallocated gracefully.
    pub fn is_finished(&self, port: PortId) -> bool {
        self.is_send_done(port)
            && matches!(self.flows.get(&port).map(|f| &f.state), Some(FlowState::Up(c)) if c.is_recv_done())
    }

    /// True when everything written and the end-of-stream mark were acknowledged, or
    /// the peer left after sending everything (nothing more can be delivered to it).
    pub fn is_send_done(&self, port: PortId) -> bool {
        match self.flows.get(&port) {
            Some(f) => matches!(&f.state, FlowState::Up(c) if c.is_send_done() || f.peer_left),
            None => false,
        }
    }

    /// Releases the flow. A finished flow lingers briefly to answer retransmissions; an
    /// unfinished one is reset and the peer is told.
    pub fn deallocate(&mut self, now: Instant, port: PortId) {
        let finished = self.is_finished(port);
        let linger = self.cfg.close_linger;
        let Some(f) = self.flows.get_mut(&port) else {
            return;
        };
        let state = core::mem::replace(
            &mut f.state,
            FlowState::Requested {
                deadline: now,
                next_try: now,
                sent: false,
            },
        );
        match state {
            FlowState::Up(c) if finished => f.state = FlowState::Lingering(c, now + linger),
            // A reset flow: the peer knows already.
            FlowState::Reset(_) => self.drop_flow(port),
            FlowState::Up(c) => {
                let (dst, cep) = (c.remote().addr, c.remote().cep);
                self.drop_flow(port);
                self.send_routed(dst, &MgmtMessage::FlowDeallocate { dst_cep: cep.0 });
            }
            _ => self.drop_flow(port),
        }
        self.reschedule(port);
    }

    /// The member at `a` left. Lingering flows just go; flows whose peer had finished
    /// sending (its end of stream is here) stay, so the application reads everything
    /// that arrived; the others are reset.
    pub(super) fn reset_flows_to(&mut self, a: Address) {
        let gone: Vec<PortId> = self
            .flows
            .iter()
            .filter(|(_, f)| f.remote_addr == Some(a))
            .filter(|(_, f)| !matches!(&f.state, FlowState::Up(c) if c.is_recv_complete()))
            .map(|(&p, _)| p)
            .collect();
        for f in self.flows.values_mut().filter(|f| f.remote_addr == Some(a)) {
            f.peer_left = true;
        }
        for port in gone {
            self.reset_flow(port);
        }
    }

    /// The flow ends without a graceful close (the peer reset it, left, or stopped
    /// answering). A flow that was up keeps what had arrived in order, if anything, for
    /// the application to read ([`FlowState::Reset`]) and [`Event::FlowClosed`] says it
    /// is reset; a lingering one just goes; a flow still being allocated fails.
    pub(super) fn reset_flow(&mut self, port: PortId) {
        let Some(f) = self.flows.get_mut(&port) else {
            return;
        };
        let state = core::mem::replace(
            &mut f.state,
            FlowState::Requested {
                deadline: Instant::ZERO,
                next_try: Instant::ZERO,
                sent: false,
            },
        );
        match state {
            FlowState::Up(c) => {
                // Out of the indexes (nothing more is received), kept for reading if
                // there is anything to read.
                let f = self.unindex_flow(port);
                if let Some(f) = f.filter(|_| c.has_delivery()) {
                    self.flows.insert(
                        port,
                        Flow {
                            state: FlowState::Reset(c),
                            ..f
                        },
                    );
                }
                self.events
                    .push_back(Event::FlowClosed { port, reset: true });
            }
            FlowState::Requested { .. } => self.fail_flow(port, AllocError::Unreachable),
            FlowState::Lingering(..) | FlowState::Reset(_) => self.drop_flow(port),
        }
    }

    fn drop_flow(&mut self, port: PortId) {
        let _ = self.unindex_flow(port);
    }

    /// Takes the flow out of the table, the schedule and every index.
    fn unindex_flow(&mut self, port: PortId) -> Option<Flow> {
        self.schedule.remove(port);
        let f = self.flows.remove(&port)?;
        self.cep_to_port.remove(&f.local_cep);
        if let (Some(a), Some(cep)) = (f.remote_addr, f.requester_cep) {
            if self.incoming.get(&(a, cep)) == Some(&port) {
                self.incoming.remove(&(a, cep));
            }
        }
        Some(f)
    }

    /// Every flow, for observability.
    pub fn flows(&self) -> Vec<FlowSummary> {
        self.flows
            .iter()
            .map(|(&port, f)| FlowSummary {
                port,
                local_app: f.local_app.clone(),
                remote_app: f.remote_app.clone(),
                remote_addr: f.remote_addr,
                state: match f.state {
                    FlowState::Requested { .. } => "allocating",
                    FlowState::Up(_) => "up",
                    FlowState::Lingering(..) => "closing",
                    FlowState::Reset(_) => "reset",
                },
            })
            .collect()
    }

    /// EFCP statistics of a flow.
    pub fn flow_stats(&self, port: PortId) -> Option<crate::efcp::ConnectionStats> {
        match &self.flows.get(&port)?.state {
            FlowState::Up(c) | FlowState::Lingering(c, _) | FlowState::Reset(c) => Some(c.stats()),
            FlowState::Requested { .. } => None,
        }
    }

    pub(super) fn flows_timeout(&mut self, now: Instant) {
        for port in self.schedule.due(now) {
            let Some(f) = self.flows.get_mut(&port) else {
                continue;
            };
            match &mut f.state {
                FlowState::Requested { .. } => self.try_request(now, port),
                FlowState::Up(c) => {
                    c.handle_timeout(now);
                    self.after_flow_input(port);
                }
                FlowState::Lingering(c, until) => {
                    c.handle_timeout(now);
                    if now >= *until || c.failure().is_some() {
                        self.drop_flow(port);
                    }
                }
                FlowState::Reset(_) => {}
            }
            self.reschedule(port);
        }
    }

    /// The next PDU of any flow, round-robin: the PDU is in `buf`; returns the flow and
    /// the destination address.
    pub(super) fn poll_flows_transmit(
        &mut self,
        now: Instant,
        buf: &mut Vec<u8>,
    ) -> Option<(PortId, Address)> {
        let mut cursor = self.tx_cursor;
        for _ in 0..self.schedule.ready_len() {
            let port = self.schedule.next_ready(PortId(cursor))?;
            cursor = port.0.wrapping_add(1);
            let Some(c) = self.flows.get_mut(&port).and_then(Flow::conn_mut) else {
                self.schedule.idle(port);
                continue;
            };
            if c.poll_transmit(now, buf) {
                let dst = c.remote().addr;
                self.tx_cursor = cursor;
                // Sending arms timers, and may have freed room in the send queue.
                let deadline = self.flows.get(&port).and_then(Flow::poll_timeout);
                self.schedule.set_deadline(port, deadline);
                self.after_flow_input(port);
                return Some((port, dst));
            }
            let deadline = self.flows.get(&port).and_then(Flow::poll_timeout);
            self.schedule.set_deadline(port, deadline);
            self.schedule.idle(port);
        }
        None
    }
}

impl super::neighbor::Neighbor {
    /// The N-1 MTU of this neighbour's port.
    pub(super) fn mgmt_mtu(&self) -> usize {
        self.mtu
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipcp::IpcpConfig;

    /// Every way an incoming flow goes (deallocated while up, after lingering, reset by
    /// the peer) leaves no trace in the indexes: a long-running server does not grow.
    #[test]
    fn incoming_flows_leave_no_index_entries() {
        let mut cfg = IpcpConfig::new("net", ApplicationName::new("srv"), 1);
        cfg.bootstrap = Some(Address(1));
        let now = Instant::ZERO;
        let mut ipcp = IpcProcess::new(cfg, now);
        ipcp.register(now, ApplicationName::new("svc")).unwrap();
        let svc = || ApplicationName::new("svc");
        let cli = || ApplicationName::new("cli");
        let mut ports = Vec::new();
        for i in 0..6u32 {
            ipcp.on_flow_request(now, Address(9), cli(), svc(), CepId(100 + i), true);
            ports.push(*ipcp.incoming.get(&(Address(9), CepId(100 + i))).unwrap());
        }
        // A repeated request finds the same flow.
        ipcp.on_flow_request(now, Address(9), cli(), svc(), CepId(100), true);
        assert_eq!(ipcp.flows.len(), 6);
        ipcp.deallocate(now, ports[0]); // unfinished: reset
        ipcp.deallocate(now, ports[1]);
        let dealloc = MgmtMessage::FlowDeallocate {
            dst_cep: ipcp.flows[&ports[2]].local_cep.0,
        };
        ipcp.on_routed_mgmt(now, Address(9), dealloc);
        ipcp.reset_flows_to(Address(9));
        assert!(ipcp.flows.is_empty());
        assert!(ipcp.incoming.is_empty(), "{:?}", ipcp.incoming);
        assert!(ipcp.cep_to_port.is_empty());
        assert_eq!(ipcp.schedule.next(), None);
    }
}
