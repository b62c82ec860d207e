//! Flows' data path: the EFCP connection that carries each flow once it is up,
//! reading, writing, half-close, deallocation and reset, the flows' timers and
//! transmissions. How flows are set up is in `allocation.rs`.

use crate::efcp::{Connection, Delivery, SendError};
use crate::time::{earliest, Instant};
use crate::wire::mgmt::MgmtMessage;
use crate::wire::Pci;
use crate::{Address, ApplicationName, CepId, PortId};

use super::{AllocError, Event, FlowKind, IpcProcess};

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
    /// An incoming flow the driver has not answered yet
    /// ([`IpcpConfig::ask_before_accepting`](super::IpcpConfig::ask_before_accepting)).
    Offered(Box<Connection>),
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
    pub(super) kind: FlowKind,
    pub(super) state: FlowState,
    /// A `Readable` event is outstanding (not yet answered by a read that found nothing).
    pub(super) readable_signalled: bool,
    /// A write was refused; signal `Writable` when room appears.
    pub(super) want_writable: bool,
    /// The peer left after sending everything: what this side sends cannot be
    /// delivered, so its sending side counts as done.
    pub(super) peer_left: bool,
    /// For an incoming flow: the requester's CEP-id (its key in the incoming index).
    pub(super) requester_cep: Option<CepId>,
    /// A requested flow that must reach another member (see
    /// [`IpcProcess::allocate_flow_to_other`]).
    pub(super) elsewhere: bool,
    /// A requested flow: the allocation info its requests carry.
    pub(super) info: Vec<u8>,
    /// A requested flow: the first bytes of its stream, which its requests carry
    /// until one is answered.
    pub(super) first_data: Vec<u8>,
}

impl Flow {
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            FlowState::Requested {
                deadline, next_try, ..
            } => Some((*deadline).min(*next_try)),
            FlowState::Up(c) => c.poll_timeout(),
            FlowState::Lingering(c, until) => earliest(c.poll_timeout(), Some(*until)),
            FlowState::Reset(_) | FlowState::Offered(_) => None,
        }
    }

    fn conn_mut(&mut self) -> Option<&mut Connection> {
        match &mut self.state {
            FlowState::Up(c) | FlowState::Lingering(c, _) => Some(c),
            FlowState::Requested { .. } | FlowState::Reset(_) | FlowState::Offered(_) => None,
        }
    }
}

impl IpcProcess {
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
    pub(super) fn reschedule(&mut self, port: PortId) {
        match self.flows.get(&port) {
            Some(f) => self.schedule.update(port, f.poll_timeout()),
            None => self.schedule.remove(port),
        }
    }

    /// Emits `Readable`, `Writable` and `FlowClosed` as the connection's state changed.
    pub(super) fn after_flow_input(&mut self, port: PortId) {
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
            FlowState::Offered(c) => {
                f.state = FlowState::Offered(c);
                self.answer_flow(now, port, false);
            }
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
            // Reset already (the peer's deallocation, then its goodbye): what it keeps
            // for the application stays until the application has read it.
            FlowState::Reset(c) => f.state = FlowState::Reset(c),
            FlowState::Lingering(..) | FlowState::Offered(_) => self.drop_flow(port),
        }
    }

    pub(super) fn drop_flow(&mut self, port: PortId) {
        let _ = self.unindex_flow(port);
    }

    /// Takes the flow out of the table, the schedule and every index.
    pub(super) fn unindex_flow(&mut self, port: PortId) -> Option<Flow> {
        self.schedule.remove(port);
        let f = self.flows.remove(&port)?;
        self.cep_to_port.remove(&f.local_cep);
        if let (Some(a), Some(cep)) = (f.remote_addr, f.requester_cep) {
            if self.incoming.get(&(a, cep)) == Some(&port) {
                self.incoming.remove(&(a, cep));
            }
            // A flow that was up is spent; one refused before that is not (a retry of
            // its request, its answer lost, is refused again).
            if !matches!(f.state, FlowState::Offered(_)) {
                self.spent.insert(self.clock, (a, cep));
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
                    FlowState::Offered(_) => "offered",
                },
            })
            .collect()
    }

    /// EFCP statistics of a flow.
    pub fn flow_stats(&self, port: PortId) -> Option<crate::efcp::ConnectionStats> {
        match &self.flows.get(&port)?.state {
            FlowState::Up(c) | FlowState::Lingering(c, _) | FlowState::Reset(c) => Some(c.stats()),
            FlowState::Requested { .. } | FlowState::Offered(_) => None,
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
                FlowState::Reset(_) | FlowState::Offered(_) => {}
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
