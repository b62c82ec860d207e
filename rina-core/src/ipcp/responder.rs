//! The responder's side of flow allocation: a flow request that arrives is answered
//! (refused when nothing is registered under the name or the DIF's access rules say
//! no), or offered to the driver with the requester's allocation info and first data
//! ([`Event::IncomingFlow`]); a repeated request gets the same answer, and its first
//! data is not delivered again.

use crate::efcp::Endpoint;
use crate::time::Instant;
use crate::wire::mgmt::{MgmtMessage, ResultCode};
use crate::{Address, ApplicationName, CepId, PortId};

use super::flows::{Flow, FlowState};
use super::{Event, FlowKind, IpcProcess};

/// A flow request as it arrived.
#[derive(Debug)]
pub(super) struct FlowRequest {
    pub(super) src_app: ApplicationName,
    pub(super) dst_app: ApplicationName,
    pub(super) src_cep: CepId,
    pub(super) kind: FlowKind,
    pub(super) info: Vec<u8>,
    pub(super) first_data: Vec<u8>,
}

impl IpcProcess {
    pub(super) fn on_flow_request(&mut self, now: Instant, src: Address, req: FlowRequest) {
        // A repeated request gets the same answer (none yet while it is offered).
        let existing = self
            .incoming
            .get(&(src, req.src_cep))
            .and_then(|p| self.flows.get(p));
        match existing.map(|f| (&f.state, f.local_cep)) {
            Some((FlowState::Up(c), cep)) if c.remote().cep == req.src_cep => {
                self.respond(src, ResultCode::Ok, req.src_cep, cep);
                return;
            }
            Some((FlowState::Offered(_), _)) => return,
            _ => {}
        }
        if !self
            .registered
            .get(&req.dst_app)
            .is_some_and(|k| k.accepts(req.kind))
        {
            self.respond(src, ResultCode::NoSuchName, req.src_cep, CepId(0));
            return;
        }
        if let Some(why) = self.allocation_refused(src, &req.dst_app) {
            self.respond(src, ResultCode::Denied, req.src_cep, CepId(0));
            return self.refuse_claim(why);
        }
        self.new_incoming(now, src, req);
    }

    /// A flow for a request that may be served: up at once and answered, or offered
    /// to the driver first; the driver hears of it either way.
    fn new_incoming(&mut self, now: Instant, src: Address, req: FlowRequest) {
        let FlowRequest {
            src_app,
            dst_app,
            src_cep,
            kind,
            info,
            first_data,
        } = req;
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
                first_data: Vec::new(),
            },
        );
        if !ask {
            self.respond(src, ResultCode::Ok, src_cep, cep);
            self.reschedule(port);
        }
        // Only a reliable flow's stream has a start to carry.
        let first_data = if kind.is_reliable() {
            first_data
        } else {
            Vec::new()
        };
        self.counters.first_data_received += first_data.len() as u64;
        self.events.push_back(Event::IncomingFlow {
            port,
            local_app: dst_app,
            remote_app: src_app,
            kind,
            info,
            first_data,
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
            first_data: Vec::new(),
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
