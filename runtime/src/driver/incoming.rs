//! The flows that come in for a registered name (accept): each gets a socket bound
//! to the abstract name of what the application's end shows ([`crate::view`]) and
//! is offered to its listener; it is answered once the listener took it. A listener
//! whose backlog is full leaves it waiting, as TCP leaves a connection unanswered
//! while its accept queue is full; a listener that is gone refuses it (the peer's
//! connect fails with ECONNREFUSED). The first bytes that rode on the request are
//! queued on the socket before the flow is answered, so the program reads them
//! first, as soon as it accepts.

use std::os::fd::OwnedFd;

use rina_core::node::DifId;
use rina_core::{ApplicationName, Instant, PortId};

use super::sessions::ListenerKey;
use super::Driver;
use crate::api::{FlowKind, ListenTarget};
use crate::datagram;
use crate::view::{self, FlowName, RequestInfo};

/// An incoming stream flow waiting for room in its listener's backlog (the program is
/// slow to accept): offered, not answered yet, as TCP leaves a connection unanswered
/// while its accept queue is full. Never a blocking connect on the runtime thread.
pub(super) struct Waiting {
    dif: DifId,
    port: PortId,
    key: ListenerKey,
    listener: Vec<u8>,
    sock: OwnedFd,
    recv_buffer: Option<usize>,
    /// The first bytes of the stream, which rode on the request.
    first_data: Vec<u8>,
    pub(super) next_try: Instant,
    give_up: Instant,
}

/// How often a waiting flow tries its listener again, and how long it may wait.
const WAIT_RETRY: std::time::Duration = std::time::Duration::from_millis(5);
const WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A flow that came in, as the DIF offers it.
pub(super) struct Offer {
    pub(super) port: PortId,
    /// The registered name it is for.
    pub(super) local_app: ApplicationName,
    pub(super) kind: rina_core::ipcp::FlowKind,
    /// The requester's allocation info.
    pub(super) info: Vec<u8>,
    /// The first bytes of the stream.
    pub(super) first_data: Vec<u8>,
}

impl Driver {
    /// A flow came in for a registered name: its listener takes it, or it is refused.
    pub(super) fn incoming(
        &mut self,
        now: Instant,
        dif: DifId,
        offer: Offer,
        remote_app: &ApplicationName,
    ) {
        let Offer {
            port,
            local_app,
            kind,
            info,
            first_data,
        } = offer;
        let key = (dif, local_app, FlowKind::of(kind));
        let Some(target) = self.listeners.get(&key).cloned() else {
            self.stack.node.ipcp_mut(dif).answer_flow(now, port, false);
            return;
        };
        let result = match &target {
            ListenTarget::Stream(listener, lv) => {
                let name = view::flow_name(&FlowName {
                    pid: std::process::id(),
                    dif: dif.0 as u16,
                    port,
                    view: lv.accepted(remote_app, RequestInfo::decode(&info)),
                });
                flow_socket(&name)
                    .map(|sock| {
                        let w = Waiting {
                            dif,
                            port,
                            key: key.clone(),
                            listener: listener.clone(),
                            sock,
                            recv_buffer: lv.recv_buffer,
                            first_data,
                            next_try: now,
                            give_up: now + WAIT_LIMIT,
                        };
                        self.try_listener(now, w);
                    })
                    .map_err(std::io::Error::from)
            }
            ListenTarget::Forward { to, proxy_protocol } => {
                let mut first = if *proxy_protocol {
                    crate::proxy_header::encode(RequestInfo::decode(&info).as_ref())
                } else {
                    Vec::new()
                };
                first.extend_from_slice(&first_data);
                self.dial(now, dif, port, *to, first)
            }
            ListenTarget::Tunnel => {
                self.tunnel_incoming(now, dif, port, remote_app);
                Ok(())
            }
            ListenTarget::Datagram(app) => datagram::bind_proxy(remote_app, *app).map(|proxy| {
                self.stack.node.ipcp_mut(dif).answer_flow(now, port, true);
                self.add_datagram(dif, port, proxy, *app);
            }),
        };
        if let Err(e) = result {
            self.stack.node.ipcp_mut(dif).answer_flow(now, port, false);
            if let ListenTarget::Forward { to, .. } = target {
                tracing::info!("{}: cannot connect to {to}: {e}", key.1);
            } else {
                tracing::info!(
                    "{}: its listener is closed ({e}); the name is withdrawn",
                    key.1
                );
            }
            if matches!(target, ListenTarget::Stream(..)) {
                self.unlisten(now, &key);
            }
        }
    }

    /// Connects a waiting flow's socket to its listener: taken (the flow is accepted),
    /// no room yet (it waits), or the listener is gone (refused, the name withdrawn).
    fn try_listener(&mut self, now: Instant, mut w: Waiting) {
        use rustix::net::{connect, SocketAddrUnix};
        let to = SocketAddrUnix::new_abstract_name(&w.listener);
        match to.and_then(|a| connect(&w.sock, &a)) {
            Ok(()) | Err(rustix::io::Errno::ISCONN) => {
                self.stack
                    .node
                    .ipcp_mut(w.dif)
                    .answer_flow(now, w.port, true);
                let token = self.add_flow(w.dif, w.port, w.sock, w.recv_buffer);
                // Handed to the program before anything the flow delivers (this turn:
                // the program may have taken the flow already, and even closed it, as
                // a TCP server may close before reading what came with the SYN).
                if let Some(f) = self.flows.get_mut(&token) {
                    f.deliver_first(w.first_data);
                }
            }
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) if now < w.give_up => {
                w.next_try = now + WAIT_RETRY;
                self.waiting.push(w);
            }
            Err(e) => {
                self.stack
                    .node
                    .ipcp_mut(w.dif)
                    .answer_flow(now, w.port, false);
                if !matches!(e, rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) {
                    tracing::info!(
                        "{}: its listener is closed ({e}); the name is withdrawn",
                        w.key.1
                    );
                    self.unlisten(now, &w.key);
                }
            }
        }
    }

    /// Tries again the flows waiting for room in their listener's backlog.
    pub(super) fn retry_waiting(&mut self, now: Instant) {
        if self.waiting.iter().all(|w| w.next_try > now) {
            return;
        }
        for w in std::mem::take(&mut self.waiting) {
            if w.next_try > now {
                self.waiting.push(w);
            } else if self.listeners.contains_key(&w.key) {
                self.try_listener(now, w);
            } else {
                self.stack
                    .node
                    .ipcp_mut(w.dif)
                    .answer_flow(now, w.port, false);
            }
        }
    }

    /// Refuses every flow still waiting for its listener (the stack is handed over).
    pub(super) fn refuse_waiting(&mut self, now: Instant) {
        for w in std::mem::take(&mut self.waiting) {
            self.stack
                .node
                .ipcp_mut(w.dif)
                .answer_flow(now, w.port, false);
        }
    }
}

/// A nonblocking AF_UNIX stream socket bound to the abstract `name` (a flow's, see
/// [`crate::view`]), above the program's descriptors.
fn flow_socket(name: &[u8]) -> rustix::io::Result<OwnedFd> {
    use rustix::net::{self, AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let sock = net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    net::bind(&sock, &SocketAddrUnix::new_abstract_name(name)?)?;
    Ok(shims::high_fd::move_high(sock))
}
