//! Flow allocation: the request/response between the two members.
//!
//! The requester looks the destination up in the directory (no entry: the flow is
//! refused at once with [`AllocError::NoSuchApplication`]), sends a routed
//! `FlowRequest` carrying both names, its CEP-id, the application's allocation info
//! and, for a reliable flow, maybe the first bytes of its stream (as TCP Fast Open's
//! SYN carries data: [`IpcProcess::allocate_flow_with_first_data`]), and retries every
//! `flow_request_retry` until its deadline. The responder answers with its own CEP-id,
//! or a refusal, and answers a repeated request with the same response; the first
//! data of a request goes to its application once, with [`Event::IncomingFlow`]. With [`IpcpConfig::ask_before_accepting`] it asks the driver first
//! ([`IpcProcess::answer_flow`]).
//!
//! [`IpcpConfig::ask_before_accepting`]: super::IpcpConfig::ask_before_accepting

use crate::efcp::{Connection, Endpoint};
use crate::time::Instant;
use crate::wire::mgmt::{MgmtMessage, ResultCode, MAX_FIRST_DATA, MAX_FLOW_INFO};
use crate::wire::pci::PCI_LEN;
use crate::{Address, ApplicationName, CepId, PortId};

use super::flows::{Flow, FlowState};
use super::responder::FlowRequest;
use super::{AllocError, Event, FlowKind, IpcProcess};

/// How soon a flow request is retried while its destination has no route.
const NO_ROUTE_RETRY: std::time::Duration = std::time::Duration::from_millis(20);

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
        info: Vec<u8>,
    ) -> PortId {
        let first_data = &[];
        self.allocate_flow_with_first_data(
            now, local_app, remote_app, kind, deadline, info, first_data,
        )
        .0
    }

    /// As [`IpcProcess::allocate_flow_with_info`] for a reliable flow, whose request
    /// also carries the first bytes of its stream: as many of `data` as fit one PDU on
    /// the DIF's paths with the rest of the request (at most [`MAX_FIRST_DATA`]). The
    /// destination application gets them in [`Event::IncomingFlow`], ahead of anything
    /// written to the flow; the requester must not write them again. Returns the flow
    /// and how many bytes of `data` it took (none for an unreliable flow, or while the
    /// DIF's MTU is not known).
    #[allow(clippy::too_many_arguments)]
    pub fn allocate_flow_with_first_data(
        &mut self,
        now: Instant,
        local_app: ApplicationName,
        remote_app: ApplicationName,
        kind: FlowKind,
        deadline: Instant,
        mut info: Vec<u8>,
        data: &[u8],
    ) -> (PortId, usize) {
        info.truncate(MAX_FLOW_INFO);
        let room = if kind.is_reliable() && !data.is_empty() {
            self.first_data_room(&local_app, &remote_app, info.len())
        } else {
            0
        };
        let taken = data.len().min(room);
        let port = self.new_request(now, local_app, remote_app, kind, deadline, false, info);
        if let Some(f) = self.flows.get_mut(&port) {
            f.first_data = data[..taken].to_vec();
        }
        self.try_request(now, port);
        (port, taken)
    }

    /// How many bytes of first data a request between these names, with `info_len`
    /// bytes of info, can carry in one PDU that fits the DIF's paths.
    fn first_data_room(
        &self,
        local_app: &ApplicationName,
        remote_app: &ApplicationName,
        info_len: usize,
    ) -> usize {
        let Some(mtu) = self.path_mtu() else {
            return 0;
        };
        let bare = MgmtMessage::FlowRequest {
            src_app: local_app.clone(),
            dst_app: remote_app.clone(),
            src_cep: 0,
            reliable: true,
            info: vec![0; info_len],
            first_data: Vec::new(),
        };
        mtu.saturating_sub(PCI_LEN + bare.encode().len())
            .min(MAX_FIRST_DATA)
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
        let port = self.new_request(now, local_app, remote_app, kind, deadline, true, Vec::new());
        self.try_request(now, port);
        port
    }

    /// A requested flow, not tried yet.
    #[allow(clippy::too_many_arguments)]
    fn new_request(
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
                first_data: Vec::new(),
            },
        );
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
        // Spread flows over a pool of registrants: pick by CEP-id. A request that
        // carried first data goes on to the member it went to: another would hand
        // the same bytes to a second server.
        let dst = match f.remote_addr {
            Some(a) if !f.first_data.is_empty() => a,
            _ => candidates[f.local_cep.0 as usize % candidates.len()],
        };
        let msg = MgmtMessage::FlowRequest {
            src_app: f.local_app.clone(),
            dst_app: f.remote_app.clone(),
            src_cep: f.local_cep.0,
            reliable: f.kind.is_reliable(),
            info: f.info.clone(),
            first_data: f.first_data.clone(),
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
                first_data,
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
                    first_data,
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

    fn on_flow_response(
        &mut self,
        now: Instant,
        src: Address,
        result: ResultCode,
        my_cep: CepId,
        their_cep: CepId,
    ) {
        let Some(&port) = self.cep_to_port.get(&my_cep) else {
            if result == ResultCode::Ok {
                // A flow this member gave up on (its deadline passed) was accepted
                // late: the responder is told, so that it does not hold it (a
                // gateway's egress, a connection to its server) until it times out.
                // Only a flow of the responder's with this member as its peer ends.
                self.send_routed(
                    src,
                    &MgmtMessage::FlowDeallocate {
                        dst_cep: their_cep.0,
                    },
                );
            }
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
            if !f.first_data.is_empty() {
                self.counters.flows_with_first_data += 1;
                f.first_data = Vec::new(); // delivered: the responder took the request
            }
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
