//! The applications' flows in the loop: their events, pumping their sockets, and
//! the drain at exit.

use std::os::fd::{AsFd, OwnedFd};

use rina_core::ipcp::Event;
use rina_core::node::DifId;
use rina_core::{Instant, PortId};
use rustix::event::epoll;

use super::{incoming, Driver};

impl Driver {
    /// An event of DIF `dif` about the applications' flows.
    pub(super) fn on_flow_event(&mut self, now: Instant, dif: DifId, ev: Event) {
        match ev {
            Event::FlowAllocated { port } if self.tunnel_allocated(now, dif, port, true) => {}
            Event::FlowAllocationFailed { port, .. }
                if self.tunnel_allocated(now, dif, port, false) => {}
            Event::FlowAllocated { port } => self.flow_allocated(now, dif, port),
            Event::FlowAllocationFailed { port, error } => {
                self.allocation_failed(dif, port, error);
            }
            Event::IncomingFlow {
                port,
                local_app,
                remote_app,
                kind,
                info,
                first_data,
            } => {
                let offer = incoming::Offer {
                    port,
                    local_app,
                    kind,
                    info,
                    first_data,
                };
                self.incoming(now, dif, offer, &remote_app);
            }
            Event::Readable { port } | Event::Writable { port } => {
                let Some(&token) = self.by_port.get(&(dif, port)) else {
                    return;
                };
                if let Some(f) = self.flows.get_mut(&token) {
                    f.may_deliver();
                    self.active.insert(token);
                } else if let Some(f) = self.datagrams.get_mut(&token) {
                    f.may_deliver();
                    self.active_datagrams.insert(token);
                }
            }
            // The node's own (enrollment, neighbours).
            Event::Enrolled { .. }
            | Event::EnrollmentFailed { .. }
            | Event::NeighborUp { .. }
            | Event::NeighborLost { .. }
            | Event::NeighborRefused { .. }
            | Event::AccessRefused { .. } => {}
            Event::FlowClosed { port, .. } if self.tunnel_closed(dif, port) => {
                self.stack.node.ipcp_mut(dif).deallocate(now, port);
            }
            Event::FlowClosed { port, reset } => {
                let Some(&token) = self.by_port.get(&(dif, port)) else {
                    return;
                };
                tracing::debug!("flow {port} closed (reset: {reset})");
                if let Some(f) = self.flows.get_mut(&token) {
                    self.active.insert(token);
                    // What arrived before the reset is still delivered (see pump.rs).
                    f.reset = true;
                    f.writable = true;
                } else if let Some(f) = self.datagrams.get_mut(&token) {
                    // Datagrams that arrived before the end are delivered too, as far
                    // as the application's socket takes them now (what it cannot take
                    // is lost, as UDP loses it): a server that answers and exits at
                    // once lost its last answer here before.
                    f.writable = true;
                    let _ = f.pump(now, self.stack.node.ipcp_mut(dif), &mut self.io);
                    self.end_datagram(now, token);
                }
            }
        }
    }

    pub(super) fn pump_flows(&mut self, now: Instant) -> bool {
        let exiting = self.exiting.is_some();
        let mut progress = self.pump_tunnel(now);
        let mut finished = Vec::new();
        for token in to_pump(&self.flows, &self.active, exiting) {
            let Some(f) = self.flows.get_mut(&token) else {
                self.active.remove(&token);
                continue;
            };
            self.flow_pumps += 1;
            let chunk = self.stack.node.dif(f.dif).stream_sdu();
            let ipcp = self.stack.node.ipcp_mut(f.dif);
            let out = f.pump(now, ipcp, &mut self.io, chunk, exiting);
            progress |= out.progress;
            if f.watching_room == f.writable {
                // Full: watch for room; room again: stop watching (see FLOW_EVENTS).
                f.watching_room = !f.writable;
                let events = if f.watching_room {
                    super::FLOW_EVENTS_FULL
                } else {
                    super::FLOW_EVENTS
                };
                let data = epoll::EventData::new_u64(token);
                let _ = epoll::modify(&self.epoll, &f.sock, data, events);
            }
            if out.broken || f.is_over(ipcp) {
                finished.push((token, f.aborted));
            } else if f.is_idle() {
                self.active.remove(&token);
            }
        }
        for (token, aborted) in finished {
            if let Some((dif, port, sock)) = self.forget_flow(token) {
                if let Some(sock) = sock.filter(|_| !aborted) {
                    // Whatever the application still holds ends here (EOF, EPIPE); an
                    // aborted TCP connection is reset as it closes instead.
                    let _ = rustix::net::shutdown(&sock, rustix::net::Shutdown::Both);
                }
                self.stack.node.ipcp_mut(dif).deallocate(now, port);
                progress = true;
            }
        }
        let mut closed = Vec::new();
        for token in to_pump(&self.datagrams, &self.active_datagrams, exiting) {
            let Some(f) = self.datagrams.get_mut(&token) else {
                self.active_datagrams.remove(&token);
                continue;
            };
            self.flow_pumps += 1;
            let out = f.pump(now, self.stack.node.ipcp_mut(f.dif), &mut self.io);
            progress |= out.progress;
            if out.closed {
                closed.push(token);
            } else if f.is_idle() {
                self.active_datagrams.remove(&token);
            }
        }
        for token in closed {
            progress |= self.end_datagram(now, token);
        }
        progress
    }

    /// Stops serving the datagram flow behind `token` and releases its port; false if
    /// there was none.
    pub(super) fn end_datagram(&mut self, now: Instant, token: u64) -> bool {
        let Some((dif, port, _)) = self.forget_flow(token) else {
            return false;
        };
        self.stack.node.ipcp_mut(dif).deallocate(now, port);
        true
    }

    /// Stops serving the flow behind `token` (stream or datagram): out of the tables
    /// and the epoll set. Its DIF and port-id, and a stream's socket.
    pub(super) fn forget_flow(&mut self, token: u64) -> Option<(DifId, PortId, Option<OwnedFd>)> {
        self.active.remove(&token);
        self.active_datagrams.remove(&token);
        let (dif, port, sock) = if let Some(f) = self.flows.remove(&token) {
            let _ = epoll::delete(&self.epoll, &f.sock);
            (f.dif, f.port, Some(f.sock))
        } else {
            let f = self.datagrams.remove(&token)?;
            let _ = epoll::delete(&self.epoll, f.proxy.fd());
            (f.dif, f.port, None)
        };
        self.by_port.remove(&(dif, port));
        Some((dif, port, sock))
    }

    /// True when the exit drain is over (everything sent, or the linger ran out).
    pub(super) fn exit_done(&mut self, now: Instant) -> bool {
        let Some((deadline, _)) = &self.exiting else {
            return false;
        };
        // An early connect still on its way holds bytes the program wrote, too.
        let drained = !self.early_pending()
            && self
                .flows
                .values()
                .all(|f| f.is_drained(self.stack.node.dif(f.dif).ipcp()));
        if !drained && now < *deadline {
            return false;
        }
        self.leave(now);
        if let Some((_, reply)) = self.exiting.take() {
            reply.send(());
        }
        true
    }
}

/// Bytes an application-side socket may queue in the kernel (each way; the kernel
/// doubles it for its bookkeeping): large enough that the runtime and the application
/// wake each other rarely, and, with the flow's window, about what a loopback TCP
/// connection holds between two programs at most (its buffers grow to 4 MiB to send
/// and 6 MiB to receive): about 8 MiB each way, so a program that stops reading pushes
/// back on its peer as over TCP.
pub const APP_SOCKET_BUFFER: usize = 1 << 20;

/// Sets the socket's send buffer to `size`, by default [`APP_SOCKET_BUFFER`] (forced
/// when privileged).
pub(crate) fn set_send_buffer(sock: &impl AsFd, size: Option<usize>) {
    use rustix::net::sockopt;
    let size = size.unwrap_or(APP_SOCKET_BUFFER);
    if sockopt::set_socket_send_buffer_size_force(sock, size).is_err() {
        let _ = sockopt::set_socket_send_buffer_size(sock, size);
    }
}

/// The flows of `all` a turn pumps: those in `active`, or every one while the process
/// exits (its drain reads every socket to its end). A pumped flow stays in `active`
/// until it is idle.
fn to_pump<V>(
    all: &std::collections::BTreeMap<u64, V>,
    active: &std::collections::BTreeSet<u64>,
    exiting: bool,
) -> Vec<u64> {
    if exiting {
        all.keys().copied().collect()
    } else {
        active.iter().copied().collect()
    }
}
