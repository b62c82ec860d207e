//! Flow allocation: the request/response between the two members.
//!
//! The requester looks the destination up in the directory (no entry: the flow is
//! refused at once with [`AllocError::NoSuchApplication`]), sends a routed
//! `FlowRequest` carrying both names, its CEP-id and the application's allocation
//! info, and retries every `flow_request_retry` until its deadline. The responder
//! answers with its own CEP-id, or a refusal, and answers a repeated request with the
//! same response. With [`IpcpConfig::ask_before_accepting`] it asks the driver first
//! ([`IpcProcess::answer_flow`]).
//!
//! [`IpcpConfig::ask_before_accepting`]: super::IpcpConfig::ask_before_accepting

use crate::efcp::{Connection, Endpoint};
use crate::time::Instant;
use crate::wire::mgmt::{MgmtMessage, ResultCode, MAX_FLOW_INFO};
use crate::{Address, ApplicationName, CepId, PortId};

use super::flows::{Flow, FlowState};
use super::{AllocError, Event, FlowKind, IpcProcess};

/// How soon a flow request is retried while its destination has no route.
const NO_ROUTE_RETRY: std::time::Duration = std::time::Duration::from_millis(20);

/// A flow request as it arrived.
#[derive(Debug)]
struct FlowRequest {
    src_app: ApplicationName,
    dst_app: ApplicationName,
    src_cep: CepId,
    kind: FlowKind,
    info: Vec<u8>,
}

impl IpcProcess {
    /// Starts allocating a flow from `local_app` to `remote_app`; the outcome comes as
    /// [`Event::FlowAllocated`] or [`Event::FlowAllocationFailed`] by `deadline`.
    pub fn allocate_flow(
        &mut self,
        now: Instant,
        local_app: ApplicationName,
        remote_app: ApplicationName,
        kind: FlowKind,
        deadline: Instant,
    ) -> PortId {
        self.allocate_flow_with_info(now, local_app, remote_app, kind, deadline, Vec::new())
    }

    /// As [`IpcProcess::allocate_flow`], with allocation info for the destination
    /// application (at most [`MAX_FLOW_INFO`] bytes are sent; it reads them in
    /// [`Event::IncomingFlow`]).
    pub fn allocate_flow_with_info(
        &mut self,
        now: Instant,
        local_app: ApplicationName,
        remote_app: ApplicationName,
        kind: FlowKind,
        deadline: Instant,
        mut info: Vec<u8>,
    ) -> PortId {
        info.truncate(MAX_FLOW_INFO);
        self.request_flow(now, local_app, remote_app, kind, deadline, false, info)
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
        kind: FlowKind,
        deadline: Instant,
    ) -> PortId {
        self.request_flow(now, local_app, remote_app, kind, deadline, true, Vec::new())
    }

    #[allow(clippy::too_many_arguments)]
    fn request_flow(
        &mut self,
        now: Instant,
        local_app: ApplicationName,
        remote_app: ApplicationName,
        kind: FlowKind,
        deadline: Instant,
        elsewhere: bool,
        info: Vec<u8>,
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
                kind,
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
                info,
            },
        );
        self.try_request(now, port);
        port
    }

    /// Sends (or re-sends) the flow request of `port` if it is due.
    pub(super) fn try_request(&mut self, now: Instant, port: PortId) {
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
        // Members a route leads to first: a gone member's entries may outlive it a
        // little (and a new member's route may not be there yet: then all are tried).
        if candidates.iter().any(|&a| self.reaches(a)) {
            candidates.retain(|&a| self.reaches(a));
        }
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
            reliable: f.kind.is_reliable(),
            info: f.info.clone(),
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

    pub(super) fn fail_flow(&mut self, port: PortId, error: AllocError) {
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
                info,
            } => {
                let kind = if reliable {
                    FlowKind::Reliable
                } else {
                    FlowKind::Unreliable
                };
                let req = FlowRequest {
                    src_app,
                    dst_app,
                    src_cep: CepId(src_cep),
                    kind,
                    info,
                };
                self.on_flow_request(now, src, req);
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

    fn on_flow_request(&mut self, now: Instant, src: Address, req: FlowRequest) {
        let FlowRequest {
            src_app,
            dst_app,
            src_cep,
            kind,
            info,
        } = req;
        // A repeated request gets the same answer (none yet while it is offered).
        let existing = self
            .incoming
            .get(&(src, src_cep))
            .and_then(|p| self.flows.get(p));
        match existing.map(|f| (&f.state, f.local_cep)) {
            Some((FlowState::Up(c), cep)) if c.remote().cep == src_cep => {
                self.respond(src, ResultCode::Ok, src_cep, cep);
                return;
            }
            Some((FlowState::Offered(_), _)) => return,
            _ => {}
        }
        if !self
            .registered
            .get(&dst_app)
            .is_some_and(|k| k.accepts(kind))
        {
            self.respond(src, ResultCode::NoSuchName, src_cep, CepId(0));
            return;
        }
        if let Some(why) = self.allocation_refused(src, &dst_app) {
            self.respond(src, ResultCode::Denied, src_cep, CepId(0));
            return self.refuse_claim(why);
        }
        let (Some(me), port, cep) = (self.address, self.fresh_port(), self.fresh_cep()) else {
            return;
        };
        let conn = Box::new(self.new_connection(
            now,
            Endpoint { addr: me, cep },
            Endpoint {
                addr: src,
                cep: src_cep,
            },
            kind,
        ));
        let ask = self.cfg.ask_before_accepting;
        self.cep_to_port.insert(cep, port);
        self.incoming.insert((src, src_cep), port);
        self.flows.insert(
            port,
            Flow {
                local_app: dst_app.clone(),
                remote_app: src_app.clone(),
                local_cep: cep,
                remote_addr: Some(src),
                kind,
                state: if ask {
                    FlowState::Offered(conn)
                } else {
                    FlowState::Up(conn)
                },
                readable_signalled: false,
                want_writable: false,
                peer_left: false,
                requester_cep: Some(src_cep),
                elsewhere: false,
                info: Vec::new(),
            },
        );
        if !ask {
            self.respond(src, ResultCode::Ok, src_cep, cep);
            self.reschedule(port);
        }
        self.events.push_back(Event::IncomingFlow {
            port,
            local_app: dst_app,
            remote_app: src_app,
            kind,
            info,
        });
    }

    /// Answers an incoming flow that was offered to the driver
    /// ([`IpcpConfig::ask_before_accepting`](super::IpcpConfig::ask_before_accepting)):
    /// accepted, it is up and the requester is told; refused, the requester gets
    /// [`AllocError::NoSuchApplication`] (as if nothing were registered) and the flow
    /// is gone. Nothing happens for a flow that is not offered.
    pub fn answer_flow(&mut self, now: Instant, port: PortId, accept: bool) {
        let Some(f) = self.flows.get_mut(&port) else {
            return;
        };
        if !matches!(f.state, FlowState::Offered(_)) {
            return;
        }
        let (src, src_cep, cep) = (
            f.remote_addr.unwrap_or(Address::NONE),
            f.requester_cep.unwrap_or(CepId(0)),
            f.local_cep,
        );
        if !accept {
            self.drop_flow(port);
            self.respond(src, ResultCode::NoSuchName, src_cep, CepId(0));
            return;
        }
        let placeholder = FlowState::Requested {
            deadline: now,
            next_try: now,
            sent: false,
        };
        if let FlowState::Offered(c) = core::mem::replace(&mut f.state, placeholder) {
            f.state = FlowState::Up(c);
        }
        self.respond(src, ResultCode::Ok, src_cep, cep);
        self.reschedule(port);
    }

    pub(super) fn respond(
        &mut self,
        dst: Address,
        result: ResultCode,
        src_cep: CepId,
        dst_cep: CepId,
    ) {
        let resp = MgmtMessage::FlowResponse {
            result,
            src_cep: src_cep.0,
            dst_cep: dst_cep.0,
        };
        self.send_routed(dst, &resp);
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
        let (Some(me), kind) = (self.address, f.kind) else {
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
            kind,
        );
        if let Some(f) = self.flows.get_mut(&port) {
            f.remote_addr = Some(src);
            f.state = FlowState::Up(Box::new(conn));
        }
        self.reschedule(port);
        self.events.push_back(Event::FlowAllocated { port });
    }

    pub(super) fn new_connection(
        &self,
        now: Instant,
        local: Endpoint,
        remote: Endpoint,
        kind: FlowKind,
    ) -> Connection {
        let mut cfg = self.cfg.data_efcp.clone();
        cfg.reliable = kind.is_reliable();
        // The smallest MTU among the N-1 ports bounds the PDU size on any path.
        if let Some(m) = self.path_mtu() {
            cfg.max_pdu_size = m;
        }
        Connection::new(cfg, local, remote, now)
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
        let req = |cep: u32| FlowRequest {
            src_app: cli(),
            dst_app: svc(),
            src_cep: CepId(cep),
            kind: FlowKind::Reliable,
            info: Vec::new(),
        };
        for i in 0..6u32 {
            ipcp.on_flow_request(now, Address(9), req(100 + i));
            ports.push(*ipcp.incoming.get(&(Address(9), CepId(100 + i))).unwrap());
        }
        // A repeated request finds the same flow.
        ipcp.on_flow_request(now, Address(9), req(100));
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
