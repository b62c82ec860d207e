//! Flows that leave RINA as TCP connections (a gateway's egress,
//! [`ListenTarget::Forward`](crate::api::ListenTarget::Forward)): each incoming flow
//! gets a nonblocking connect to the rule's address. The flow is answered once the
//! connection is up, so that a server that refuses (or cannot be reached in time)
//! refuses the flow, and the ingress side resets its client's connection, as a TCP
//! proxy does. The connection then serves as the flow's application socket; with the
//! PROXY protocol on, a v2 header goes first.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rina_core::node::DifId;
use rina_core::{Instant, PortId};
use rustix::event::epoll;
use rustix::net::{self, AddressFamily, SocketFlags, SocketType};

use super::{Driver, TOKEN_DIAL, TOKEN_MASK};

/// How long a connection to an egress's server may take before its flow is refused:
/// less than a requester's default connect time-out (10 s), which also covers the
/// allocation's round trips, so that the answer comes while someone waits for it.
const DIAL_LIMIT: Duration = Duration::from_secs(8);
/// Connections on their way at once: past it, flows are refused (no resources), so
/// that no member can make this process open sockets without bound.
const MAX_DIALING: usize = 1024;

/// A flow whose TCP connection is on its way.
pub(super) struct Dialing {
    dif: DifId,
    port: PortId,
    sock: OwnedFd,
    /// What goes to the server first: the PROXY header, then the first bytes that
    /// rode on the request.
    first: Vec<u8>,
    to: SocketAddr,
    pub(super) give_up: Instant,
}

impl Driver {
    /// Starts the connection of an incoming flow to `to`, which gets `first` before
    /// anything the flow delivers; `Err` if it cannot even start (the flow is then
    /// refused).
    pub(super) fn dial(
        &mut self,
        now: Instant,
        dif: DifId,
        port: PortId,
        to: SocketAddr,
        first: Vec<u8>,
    ) -> std::io::Result<()> {
        if self.dialing.len() >= MAX_DIALING {
            return Err(std::io::Error::other(format!(
                "{MAX_DIALING} connections are on their way already"
            )));
        }
        let family = if to.is_ipv4() {
            AddressFamily::INET
        } else {
            AddressFamily::INET6
        };
        let sock = net::socket_with(
            family,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )?;
        let _ = net::sockopt::set_tcp_nodelay(&sock, true);
        match net::connect(&sock, &to) {
            Ok(()) | Err(rustix::io::Errno::INPROGRESS) => {}
            Err(e) => return Err(e.into()),
        }
        let token = TOKEN_DIAL | (self.next_flow & TOKEN_MASK);
        self.next_flow += 1;
        epoll::add(
            &self.epoll,
            &sock,
            epoll::EventData::new_u64(token),
            epoll::EventFlags::OUT | epoll::EventFlags::ET,
        )?;
        self.dialing.insert(
            token,
            Dialing {
                dif,
                port,
                sock,
                first,
                to,
                give_up: now + DIAL_LIMIT,
            },
        );
        Ok(())
    }

    /// The connection behind `token` is up or failed: the flow is answered.
    pub(super) fn dialed(&mut self, now: Instant, token: u64) {
        let Some(d) = self.dialing.remove(&token) else {
            return;
        };
        let _ = epoll::delete(&self.epoll, &d.sock);
        let ipcp = self.stack.node.ipcp_mut(d.dif);
        match net::sockopt::socket_error(&d.sock) {
            Ok(Ok(())) => {
                ipcp.answer_flow(now, d.port, true);
                let token = self.add_flow(d.dif, d.port, d.sock, None);
                if let Some(f) = self.flows.get_mut(&token) {
                    f.deliver_first(d.first);
                }
            }
            Ok(Err(e)) | Err(e) => {
                tracing::info!("flow {}: cannot connect to {}: {e}", d.port, d.to);
                ipcp.answer_flow(now, d.port, false);
            }
        }
    }

    /// Refuses the flows whose connections took too long.
    pub(super) fn expire_dials(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .dialing
            .iter()
            .filter(|(_, d)| d.give_up <= now)
            .map(|(&t, _)| t)
            .collect();
        for token in late {
            if let Some(d) = self.dialing.remove(&token) {
                let _ = epoll::delete(&self.epoll, &d.sock);
                tracing::info!("flow {}: connecting to {} timed out", d.port, d.to);
                self.stack
                    .node
                    .ipcp_mut(d.dif)
                    .answer_flow(now, d.port, false);
            }
        }
    }

    /// When the next connection times out.
    pub(super) fn dial_deadline(&self) -> Option<Instant> {
        self.dialing.values().map(|d| d.give_up).min()
    }
}
