//! The application's sessions: the flows it asked for (connect) and the names it
//! registered (listen), from the command to the socket the application holds; the
//! flows that come in for those names are in `incoming.rs`.
//!
//! A stream flow's socket is bound to an abstract name that says what the
//! application's end shows ([`crate::view`]). A listener that is gone withdraws its
//! name.

use std::os::fd::OwnedFd;

use rina_core::ipcp::AllocError;
use rina_core::node::DifId;
use rina_core::{ApplicationName, Instant, PortId};
use rustix::event::epoll;

use super::{Driver, FLOW_EVENTS, TOKEN_DATAGRAM, TOKEN_FLOW, TOKEN_MASK};
use crate::api::{
    AppEnd, ConnectRequest, FlowError, FlowInfo, FlowKind, ListenRequest, ListenTarget, Reply,
};
use crate::datagram::{self, DatagramFlow};
use crate::pump::AppFlow;
use crate::view::{self, FlowName, FlowView, RequestInfo};

/// A connect waiting for its flow.
pub(super) struct PendingConnect {
    pub(super) dif: DifId,
    /// The DIF as the rules number it.
    index: crate::config::DifIndex,
    remote_app: ApplicationName,
    pub(super) end: AppEnd,
    view: Option<FlowView>,
    recv_buffer: Option<usize>,
    /// Bytes of the stream the request carried (still on the socket until the flow
    /// is up: `early.rs`).
    carried: usize,
    pub(super) reply: Reply<Result<FlowInfo, FlowError>>,
}

impl PendingConnect {
    /// An early connect's (see `early.rs`).
    pub(super) fn is_early(&self) -> bool {
        matches!(self.end, AppEnd::StreamEarly(..))
    }
}

/// A listen waiting for its DIF to be joined.
pub(super) struct PendingListen {
    dif: DifId,
    req: ListenRequest,
    pub(super) deadline: Instant,
    pub(super) reply: Reply<Result<(), FlowError>>,
}

/// A registered name's listener, by (DIF, name, kind of flow).
pub(super) type ListenerKey = (DifId, ApplicationName, FlowKind);

impl Driver {
    pub(super) fn connect(
        &mut self,
        now: Instant,
        mut req: ConnectRequest,
        reply: Reply<Result<FlowInfo, FlowError>>,
    ) {
        // The runtime's end of the pair costs the program none of its descriptors.
        req.end = match req.end {
            AppEnd::Stream(sock) => AppEnd::Stream(shims::high_fd::move_high(sock)),
            AppEnd::StreamHeld(sock, held) => {
                AppEnd::StreamHeld(shims::high_fd::move_high(sock), held)
            }
            // Moved already, by `pending::early_end`.
            end @ (AppEnd::StreamEarly(..) | AppEnd::Datagram(_)) => end,
        };
        if matches!(req.end, AppEnd::StreamEarly(..)) {
            return self.connect_early(now, req, reply);
        }
        self.start_connect(now, req, reply, &[]);
    }

    /// Asks for the flow of a connect, its request carrying as much of `first_data` as
    /// fits.
    pub(super) fn start_connect(
        &mut self,
        now: Instant,
        req: ConnectRequest,
        reply: Reply<Result<FlowInfo, FlowError>>,
        first_data: &[u8],
    ) {
        let Some(dif) = self.stack.dif_of(req.dif) else {
            reply.send(Err(FlowError::NoSuchDif(format!("#{}", req.dif.0))));
            return super::early::dispose(req.end);
        };
        let name = self.stack.node.dif(dif).name();
        tracing::debug!("allocating a flow to {} in DIF {name}", req.remote_app);
        let info = req.view.map_or_else(Vec::new, |v| {
            RequestInfo {
                src: v.local,
                dst: v.peer,
            }
            .encode()
        });
        // A DIF waiting to try joining again tries now (what failed may be up by now).
        let (port, carried) = self.stack.node.allocate(
            now,
            dif,
            req.local_app,
            req.remote_app.clone(),
            req.end.kind().flow_kind(),
            now + req.timeout,
            info,
            first_data,
        );
        self.pending_connects.insert(
            (dif, port),
            PendingConnect {
                dif,
                index: req.dif,
                carried,
                remote_app: req.remote_app,
                end: req.end,
                view: req.view,
                recv_buffer: req.recv_buffer,
                reply,
            },
        );
    }

    /// A flow asked for is up: its application end starts moving data.
    pub(super) fn flow_allocated(&mut self, now: Instant, dif: DifId, port: PortId) {
        tracing::debug!("flow {port} allocated");
        let Some(p) = self.pending_connects.remove(&(dif, port)) else {
            self.stack.node.ipcp_mut(dif).deallocate(now, port);
            return;
        };
        if matches!(p.end, AppEnd::Stream(_) | AppEnd::StreamHeld(..)) {
            self.reached(p.index, &p.remote_app);
        }
        let proxy = match p.end {
            AppEnd::StreamEarly(sock, _app) => {
                // The bytes its request carried leave the socket.
                crate::pending::skip(&sock, p.carried);
                self.name_flow_socket(&sock, dif, port, p.view);
                self.add_flow(dif, port, sock, p.recv_buffer);
                None
            }
            AppEnd::Stream(sock) => {
                self.name_flow_socket(&sock, dif, port, p.view);
                self.add_flow(dif, port, sock, p.recv_buffer);
                None
            }
            AppEnd::StreamHeld(sock, held) => {
                self.name_flow_socket(&sock, dif, port, p.view);
                // Who waits learns the result before the application's end turns
                // writable.
                p.reply.send(Ok(FlowInfo { port, proxy: None }));
                crate::pending::release(held, &sock);
                self.add_flow(dif, port, sock, p.recv_buffer);
                return;
            }
            AppEnd::Datagram(app) => match datagram::bind_proxy(&p.remote_app, app) {
                Ok(proxy) => Some(self.add_datagram(dif, port, proxy, app)),
                Err(e) => {
                    self.stack.node.ipcp_mut(dif).deallocate(now, port);
                    p.reply.send(Err(FlowError::NoResources));
                    tracing::warn!("cannot bind a datagram proxy: {e}");
                    return;
                }
            },
        };
        p.reply.send(Ok(FlowInfo { port, proxy }));
    }

    /// Binds the runtime's end of a stream flow to the name that tells whoever holds
    /// the application's end what it shows (best effort: without it, only this
    /// process's interposer knows).
    fn name_flow_socket(&self, sock: &OwnedFd, dif: DifId, port: PortId, v: Option<FlowView>) {
        let Some(view) = v else {
            return;
        };
        let name = view::flow_name(&FlowName {
            pid: std::process::id(),
            dif: dif.0 as u16,
            port,
            view,
        });
        let bound = rustix::net::SocketAddrUnix::new_abstract_name(&name)
            .and_then(|a| rustix::net::bind(sock, &a));
        if let Err(e) = bound {
            tracing::debug!("cannot name flow {port}'s socket: {e}");
        }
    }

    /// A flow asked for could not be made: the caller learns why.
    pub(super) fn allocation_failed(&mut self, dif: DifId, port: PortId, error: AllocError) {
        tracing::debug!("flow {port} not allocated: {error}");
        if let Some(p) = self.pending_connects.remove(&(dif, port)) {
            if matches!(
                error,
                AllocError::NoSuchApplication | AllocError::Denied | AllocError::Unreachable
            ) {
                self.unreachable(p.index, &p.remote_app);
            }
            let why = self
                .stack
                .node
                .dif(p.dif)
                .last_failure()
                .map_or_else(|| error.to_string(), str::to_owned);
            // The socket's record says why before an early connect's end is reset.
            p.reply.send(Err(match error {
                AllocError::NoSuchApplication => FlowError::NoSuchApplication,
                AllocError::Unreachable => FlowError::Unreachable(why),
                AllocError::TimedOut => FlowError::TimedOut,
                AllocError::Denied => FlowError::Denied,
                AllocError::NoResources => FlowError::NoResources,
            }));
            super::early::dispose(p.end);
        }
    }

    pub(super) fn listen(
        &mut self,
        now: Instant,
        req: ListenRequest,
        reply: Reply<Result<(), FlowError>>,
    ) {
        let Some(dif) = self.stack.dif_of(req.dif) else {
            reply.send(Err(FlowError::NoSuchDif(format!("#{}", req.dif.0))));
            return;
        };
        self.stack.node.join_now(now, dif);
        let deadline = now + req.timeout;
        self.pending_listens.push(PendingListen {
            dif,
            req,
            deadline,
            reply,
        });
        self.expire_listens(now);
    }

    /// Registers the pending listens whose DIF is joined; fails the expired ones.
    pub(super) fn expire_listens(&mut self, now: Instant) {
        let pending = std::mem::take(&mut self.pending_listens);
        for l in pending {
            let d = self.stack.node.dif(l.dif);
            if d.ipcp().is_enrolled() {
                let r = self.register(now, l.dif, &l.req);
                l.reply.send(r);
            } else if now >= l.deadline || d.stalled() {
                let why = d
                    .last_failure()
                    .unwrap_or("not enrolled in time")
                    .to_owned();
                let name = d.name().to_owned();
                self.say_once(&format!("cannot join DIF {name}: {why}"));
                l.reply.send(Err(FlowError::Unreachable(why)));
            } else {
                self.pending_listens.push(l);
            }
        }
    }

    /// Registers a listen's name in its (joined) DIF, unless another member holds it
    /// and they do not both serve it as a pool.
    fn register(&mut self, now: Instant, dif: DifId, req: &ListenRequest) -> Result<(), FlowError> {
        let d = self.stack.node.dif(dif);
        let ipcp = d.ipcp();
        let me = ipcp.address();
        // A holder this member cannot reach (it vanished) does not count.
        let reachable = |a| ipcp.reaches(a);
        let holder = ipcp
            .directory()
            .holders(&req.app)
            .into_iter()
            .find(|&(a, pool)| Some(a) != me && reachable(a) && !(pool && req.pool));
        if let Some((a, pool)) = holder {
            let why = format!(
                "{} is registered in DIF {} by member {a}{}",
                req.app,
                d.name(),
                if pool {
                    " as a pool (this listen rule has no `pool = true`)"
                } else {
                    " (two servers share a name only if both listen rules say `pool = true`)"
                }
            );
            tracing::warn!("listen refused: {why}");
            return Err(FlowError::NameInUse(why));
        }
        let kind = req.target.kind();
        let kinds = rina_core::ipcp::FlowKinds::of(kind.flow_kind());
        // Registering again behind a new target (the old one closed) is fine.
        // Its member takes newcomers from now on.
        let r = self
            .stack
            .node
            .register(now, dif, req.app.clone(), kinds, req.pool);
        if r == Err(rina_core::ipcp::RegisterError::NotAllowed) {
            let why = format!(
                "DIF {}: this member's key may not register {} (the DIF's security rules)",
                self.stack.node.dif(dif).name(),
                req.app
            );
            tracing::warn!("listen refused: {why}");
            return Err(FlowError::NotAllowed(why));
        }
        self.listeners
            .insert((dif, req.app.clone(), kind), req.target.clone());
        Ok(())
    }

    /// Fails pending connects and listens of DIFs that cannot currently join.
    pub(super) fn fail_pending(&mut self, now: Instant) {
        let keys: Vec<(DifId, PortId)> = self.pending_connects.keys().copied().collect();
        for (dif, port) in keys {
            let d = self.stack.node.dif(dif);
            if d.ipcp().is_enrolled() || d.joining() {
                continue;
            }
            let why = d.last_failure().unwrap_or_default().to_owned();
            let name = d.name().to_owned();
            self.stack.node.ipcp_mut(dif).deallocate(now, port);
            if let Some(p) = self.pending_connects.remove(&(dif, port)) {
                self.say_once(&format!("cannot join DIF {name}: {why}"));
                p.reply.send(Err(FlowError::Unreachable(why)));
                super::early::dispose(p.end);
            }
        }
        self.expire_listens(now);
    }

    /// Tells the program's user why a call of its failed, on its standard error, once
    /// per reason (a log nobody enabled would say nothing).
    fn say_once(&mut self, what: &str) {
        if self.node || !self.said.insert(what.to_owned()) {
            return;
        }
        let line = format!("rina: {}: {what}\n", self.program);
        let _ = rustix::io::write(rustix::stdio::stderr(), line.as_bytes());
    }

    /// Withdraws a registration of one kind.
    pub(super) fn unlisten(&mut self, now: Instant, key: &ListenerKey) {
        if self.listeners.remove(key).is_some() {
            let kinds = rina_core::ipcp::FlowKinds::of(key.2.flow_kind());
            self.stack
                .node
                .ipcp_mut(key.0)
                .unregister_for(now, &key.1, kinds);
        }
    }

    /// The application closed a stream listener: its names are withdrawn unless some
    /// process (a fork child, say) still holds it.
    pub(super) fn listener_closed(&mut self, now: Instant, name: &[u8]) {
        if super::keeper::live_listeners().contains(name) {
            return;
        }
        let keys: Vec<ListenerKey> = self
            .listeners
            .iter()
            .filter(|(_, t)| matches!(t, ListenTarget::Stream(n, _) if n == name))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            tracing::info!("{}: its listener was closed; the name is withdrawn", key.1);
            self.unlisten(now, &key);
        }
    }

    /// The application closed its datagram socket at `app`.
    pub(super) fn release_datagram(&mut self, now: Instant, app: std::net::SocketAddr) {
        let gone: Vec<u64> = self
            .datagrams
            .iter()
            .filter(|(_, f)| f.app == app)
            .map(|(&t, _)| t)
            .collect();
        // What the application sent just before it closed its socket goes out first
        // (a server that answers and exits closes its socket at once).
        for token in &gone {
            if let Some(f) = self.datagrams.get_mut(token) {
                f.take_last(now, self.stack.node.ipcp_mut(f.dif), &mut self.io);
            }
        }
        if !gone.is_empty() {
            let _ = self.flush(now);
        }
        for token in gone {
            self.end_datagram(now, token);
        }
        let keys: Vec<_> = self
            .listeners
            .iter()
            .filter(|(_, t)| **t == ListenTarget::Datagram(app))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.unlisten(now, &key);
        }
    }

    pub(super) fn add_datagram(
        &mut self,
        dif: DifId,
        port: PortId,
        proxy: shims::udp::UdpLink,
        app: std::net::SocketAddr,
    ) -> std::net::SocketAddr {
        let token = TOKEN_DATAGRAM | (self.next_flow & TOKEN_MASK);
        self.next_flow += 1;
        let local = proxy.local_addr();
        let flags = epoll::EventFlags::IN | epoll::EventFlags::OUT | epoll::EventFlags::ET;
        if let Err(e) = epoll::add(
            &self.epoll,
            proxy.fd(),
            epoll::EventData::new_u64(token),
            flags,
        ) {
            tracing::warn!("cannot watch a datagram proxy: {e}");
        }
        self.datagrams
            .insert(token, DatagramFlow::new(dif, port, proxy, app));
        self.active_datagrams.insert(token);
        self.by_port.insert((dif, port), token);
        local
    }

    /// Serves a stream flow through `sock`, the runtime's end of the application's
    /// socket; `recv_buffer`: what the application asked to have queued toward it.
    pub(super) fn add_flow(
        &mut self,
        dif: DifId,
        port: PortId,
        sock: OwnedFd,
        recv_buffer: Option<usize>,
    ) -> u64 {
        let token = TOKEN_FLOW | (self.next_flow & TOKEN_MASK);
        self.next_flow += 1;
        let _ = rustix::io::ioctl_fionbio(&sock, true);
        super::set_send_buffer(&sock, recv_buffer);
        if let Err(e) = epoll::add(
            &self.epoll,
            &sock,
            epoll::EventData::new_u64(token),
            FLOW_EVENTS,
        ) {
            tracing::warn!("cannot watch a flow socket: {e}");
        }
        self.flows.insert(token, AppFlow::new(dif, port, sock));
        self.active.insert(token);
        self.by_port.insert((dif, port), token);
        token
    }

    /// The EFCP figures of flow `port` of DIF `dif`.
    pub(super) fn flow_stats(
        &self,
        dif: u16,
        port: PortId,
    ) -> Option<rina_core::efcp::ConnectionStats> {
        let dif = self.stack.node.get_dif(DifId(usize::from(dif)))?;
        dif.ipcp().flow_stats(port)
    }
}
