//! The responder's side of flow allocation: a flow request that arrives is answered
//! (refused when nothing is registered under the name or the DIF's access rules say
//! no), or offered to the driver with the requester's allocation info and first data
//! ([`Event::IncomingFlow`]); a repeated request gets the same answer, and its first
//! data is not delivered again: not while its flow lives, nor for a while after
//! ([`Spent`]), so that a late copy of a request makes no second flow.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

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

/// The requests whose flows came and went, by the requester's (address, CEP-id),
/// remembered [`Spent::HOLD`] (at most [`Spent::MAX`] of them): a copy of one that
/// arrives late (a retry that crossed its answer, or a copy held in a queue) is
/// dropped, not served as a new flow that would hand its first data to the program a
/// second time. A requester picks a fresh random CEP-id for every flow.
#[derive(Debug, Default)]
pub(super) struct Spent {
    keys: BTreeSet<(Address, CepId)>,
    order: VecDeque<(Instant, (Address, CepId))>,
}

impl Spent {
    /// How long a spent request is remembered: longer than a request lives in the DIF.
    const HOLD: Duration = Duration::from_secs(10);
    /// The most remembered; the oldest go first.
    const MAX: usize = 16 * 1024;

    pub(super) fn insert(&mut self, now: Instant, key: (Address, CepId)) {
        self.expire(now);
        if self.keys.insert(key) {
            self.order.push_back((now, key));
        }
        while self.order.len() > Self::MAX {
            if let Some((_, k)) = self.order.pop_front() {
                self.keys.remove(&k);
            }
        }
    }

    fn contains(&mut self, now: Instant, key: (Address, CepId)) -> bool {
        self.expire(now);
        self.keys.contains(&key)
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(at, k)) = self.order.front() {
            if now.saturating_duration_since(at) < Self::HOLD {
                return;
            }
            self.order.pop_front();
            self.keys.remove(&k);
        }
    }
}

impl IpcProcess {
    pub(super) fn on_flow_request(&mut self, now: Instant, src: Address, req: FlowRequest) {
        if self.spent.contains(now, (src, req.src_cep)) {
            self.counters.pdus_dropped += 1;
            return;
        }
        // A repeated request gets the same answer while its flow lives (none while it
        // is offered or reset): it never makes a second flow.
        let existing = self
            .incoming
            .get(&(src, req.src_cep))
            .and_then(|p| self.flows.get(p));
        match existing.map(|f| (&f.state, f.local_cep)) {
            Some((FlowState::Up(c) | FlowState::Lingering(c, _), cep))
                if c.remote().cep == req.src_cep =>
            {
                self.respond(src, ResultCode::Ok, req.src_cep, cep);
                return;
            }
            Some(_) => return,
            None => {}
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
    /// [`AllocError::NoSuchApplication`](super::AllocError::NoSuchApplication) (as if
    /// nothing were registered) and the flow
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

    /// A bootstrap member at `t0` that registered "svc".
    fn server(t0: Instant) -> IpcProcess {
        let mut cfg = IpcpConfig::new("net", ApplicationName::new("srv"), 1);
        cfg.bootstrap = Some(Address(1));
        let mut ipcp = IpcProcess::new(cfg, t0);
        ipcp.register(t0, ApplicationName::new("svc")).unwrap();
        ipcp
    }

    /// A request from "cli" for a reliable flow to "svc" with requester CEP-id `cep`.
    fn request(cep: u32, first_data: &[u8]) -> FlowRequest {
        FlowRequest {
            src_app: ApplicationName::new("cli"),
            dst_app: ApplicationName::new("svc"),
            src_cep: CepId(cep),
            kind: FlowKind::Reliable,
            info: Vec::new(),
            first_data: first_data.to_vec(),
        }
    }

    /// Every way an incoming flow goes (deallocated while up, after lingering, reset by
    /// the peer) leaves no trace in the indexes: a long-running server does not grow.
    #[test]
    fn incoming_flows_leave_no_index_entries() {
        let now = Instant::ZERO;
        let mut ipcp = server(now);
        let mut ports = Vec::new();
        let req = |cep: u32| request(cep, b"");
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

    /// A late copy of a request whose flow came and went makes no second flow and
    /// hands its first data over no second time (until the hold is over); a request
    /// refused while it was offered is answered again when repeated.
    #[test]
    fn a_late_copy_of_a_spent_request_is_dropped() {
        let t0 = Instant::ZERO;
        let mut ipcp = server(t0);
        let req = |cep: u32| request(cep, b"POST /order");
        let offers = |ipcp: &mut IpcProcess| {
            let n = ipcp
                .events
                .iter()
                .filter(|e| matches!(e, Event::IncomingFlow { first_data, .. } if first_data == b"POST /order"))
                .count();
            ipcp.events.clear();
            n
        };
        ipcp.on_flow_request(t0, Address(9), req(100));
        assert_eq!(offers(&mut ipcp), 1);
        let port = ipcp.incoming[&(Address(9), CepId(100))];
        ipcp.deallocate(t0, port);
        ipcp.handle_timeout(t0 + Duration::from_secs(1));
        assert!(ipcp.flows.is_empty(), "{:?}", ipcp.flows.keys());
        let late = t0 + Duration::from_secs(2);
        ipcp.on_flow_request(late, Address(9), req(100));
        assert_eq!(offers(&mut ipcp), 0, "a late copy was served again");
        assert!(ipcp.flows.is_empty());
        // Another request of the same requester is served.
        ipcp.on_flow_request(late, Address(9), req(101));
        assert_eq!(offers(&mut ipcp), 1);
        // After the hold, a CEP-id may come back.
        let after = t0 + Spent::HOLD + Duration::from_secs(3);
        ipcp.on_flow_request(after, Address(9), req(100));
        assert_eq!(offers(&mut ipcp), 1);
    }

    /// A copy of a request whose flow finished and lingers (answering retransmissions)
    /// is not served as a new flow: its first data goes to the program once.
    #[test]
    fn a_copy_of_a_request_whose_flow_lingers_makes_no_second_flow() {
        let t0 = Instant::ZERO;
        let mut ipcp = server(t0);
        let req = || request(7, b"POST /order");
        ipcp.on_flow_request(t0, Address(9), req());
        let port = ipcp.incoming[&(Address(9), CepId(7))];
        let f = ipcp.flows.get_mut(&port).unwrap();
        let placeholder = FlowState::Requested {
            deadline: t0,
            next_try: t0,
            sent: false,
        };
        if let FlowState::Up(c) = core::mem::replace(&mut f.state, placeholder) {
            f.state = FlowState::Lingering(c, t0 + Duration::from_secs(2));
        }
        ipcp.events.clear();
        ipcp.on_flow_request(t0 + Duration::from_millis(600), Address(9), req());
        assert_eq!(ipcp.flows.len(), 1, "a second flow");
        assert!(
            !ipcp
                .events
                .iter()
                .any(|e| matches!(e, Event::IncomingFlow { .. })),
            "offered again"
        );
    }
}
