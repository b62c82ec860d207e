//! The runtime's API for the interposer: allocate a flow onto a socket, register a
//! name behind a listener, and drain at exit.
//!
//! Calls are made from application threads. Each call posts a command to the one
//! runtime thread (waking it through an eventfd) and waits, bounded, for its reply.
//! Nothing here re-enters libc socket calls that an LD_PRELOAD hook could intercept:
//! all I/O is done with raw system calls (rustix).

use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use rina_core::{ApplicationName, PortId};

use crate::config::DifIndex;

/// Whether a flow carries a byte stream or datagrams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FlowKind {
    /// A reliable, in-order byte stream (`SOCK_STREAM`, an AF_UNIX stream socket).
    Stream,
    /// Datagrams with boundaries kept, unreliable (`SOCK_DGRAM`, the application's own
    /// UDP socket and a proxy socket on loopback; see `datagram.rs`).
    Datagram,
}

impl FlowKind {
    /// The kind of flow the DIF provides for it: reliable for a stream, unreliable
    /// for datagrams.
    pub fn flow_kind(self) -> rina_core::ipcp::FlowKind {
        match self {
            Self::Stream => rina_core::ipcp::FlowKind::Reliable,
            Self::Datagram => rina_core::ipcp::FlowKind::Unreliable,
        }
    }

    /// The application's side of a flow of `kind`.
    pub fn of(kind: rina_core::ipcp::FlowKind) -> Self {
        match kind {
            rina_core::ipcp::FlowKind::Reliable => Self::Stream,
            rina_core::ipcp::FlowKind::Unreliable => Self::Datagram,
        }
    }
}

/// Where the data of a flow goes on the application's side.
#[derive(Debug)]
pub enum AppEnd {
    /// A byte stream: the runtime's end of the socket pair whose other end the
    /// application holds.
    Stream(std::os::fd::OwnedFd),
    /// A byte stream whose application end is held unwritable until the flow is up
    /// (a nonblocking connect in progress; see [`crate::pending`]).
    StreamHeld(std::os::fd::OwnedFd, crate::pending::Held),
    /// A byte stream whose application end the program holds already, connected as
    /// far as it can tell (an early connect: see `driver/early.rs`); the second fd is
    /// a duplicate of the application's end, to reset it if the flow is refused.
    StreamEarly(std::os::fd::OwnedFd, std::os::fd::OwnedFd),
    /// Datagrams: the address of the application's UDP socket, as a proxy on loopback
    /// reaches it (see [`crate::datagram::app_address`]). The reply carries the proxy's
    /// address, which the application's socket sends to.
    Datagram(std::net::SocketAddr),
}

impl AppEnd {
    /// The kind of flow this end carries.
    pub fn kind(&self) -> FlowKind {
        match self {
            Self::Stream(_) | Self::StreamHeld(..) | Self::StreamEarly(..) => FlowKind::Stream,
            Self::Datagram(_) => FlowKind::Datagram,
        }
    }
}

/// Asks for a flow to `remote_app` whose data the runtime moves to and from `end`.
#[derive(Debug)]
pub struct ConnectRequest {
    /// The normal DIF to allocate in (a rule's).
    pub dif: DifIndex,
    /// The name of the local application (source of the flow).
    pub local_app: ApplicationName,
    /// The destination application.
    pub remote_app: ApplicationName,
    /// The application's side of the flow (its kind is the flow's kind).
    pub end: AppEnd,
    /// For a stream: the addresses the application's end shows (sent to the other end
    /// as the flow's allocation info, and carried by the runtime's end's name).
    pub view: Option<crate::view::FlowView>,
    /// For a stream: the receive buffer the application asked for (`SO_RCVBUF`), which
    /// bounds what the runtime queues toward it; `None`: the default.
    pub recv_buffer: Option<usize>,
    /// Upper bound on the whole allocation, including joining the DIF.
    pub timeout: Duration,
}

/// Where incoming flows for a registered name go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenTarget {
    /// Stream flows: the runtime connects to the AF_UNIX listener bound at this
    /// abstract address (without the leading NUL) once per flow, from a socket whose
    /// name says what the accepted socket shows (see [`crate::view`]).
    Stream(Vec<u8>, crate::view::ListenView),
    /// Datagram flows: each gets a proxy socket sending to this application UDP
    /// socket address.
    Datagram(std::net::SocketAddr),
    /// Stream flows, each carried on a TCP connection the runtime makes to `to` (a
    /// gateway's egress; see `driver/dial.rs`): answered once the connection is up,
    /// refused if it cannot be made. With `proxy_protocol`, the connection opens with
    /// a PROXY protocol v2 header naming the requester's addresses
    /// ([`crate::proxy_header`]).
    Forward {
        /// The TCP server.
        to: std::net::SocketAddr,
        /// Send a PROXY v2 header first.
        proxy_protocol: bool,
    },
    /// Datagram flows whose SDUs are IP packets for this runtime's tunnel device
    /// ([`TunnelRequest`]).
    Tunnel,
}

/// Asks the runtime to carry the IP packets of a TUN device (`rina tun`; see
/// `driver/tunnel.rs`): its name is registered, and packets go by destination over an
/// unreliable flow per peer tunnel.
#[derive(Debug)]
pub struct TunnelRequest {
    /// The normal DIF the flows are in.
    pub dif: DifIndex,
    /// The tunnel's name, addresses and peers.
    pub config: crate::config::tun::TunConfig,
    /// The device, nonblocking: a read gives one packet, a write takes one.
    pub device: std::os::fd::OwnedFd,
    /// Bytes before each packet's IP header (a `virtio_net_hdr` with offloads).
    pub header: usize,
    /// Upper bound on the registration and on each flow's allocation.
    pub timeout: Duration,
}

impl ListenTarget {
    /// The kind of flow the target takes.
    pub fn kind(&self) -> FlowKind {
        match self {
            Self::Stream(..) | Self::Forward { .. } => FlowKind::Stream,
            Self::Datagram(_) | Self::Tunnel => FlowKind::Datagram,
        }
    }
}

/// Asks the runtime to register `app` in `dif` for one kind of flow and to hand each
/// incoming flow of that kind to `target`.
#[derive(Debug)]
pub struct ListenRequest {
    /// The normal DIF to register in (a rule's).
    pub dif: DifIndex,
    /// The name to register.
    pub app: ApplicationName,
    /// Where incoming flows go.
    pub target: ListenTarget,
    /// Serve the name as one of a pool: others may register it too if they say so
    /// as well (flows are spread over them); otherwise a name another member holds is
    /// refused ([`FlowError::NameInUse`]).
    pub pool: bool,
    /// Upper bound on the registration, including joining the DIF.
    pub timeout: Duration,
}

/// A flow that was allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowInfo {
    /// The flow's port-id in this process.
    pub port: PortId,
    /// For a datagram flow: the proxy's address, which the application's socket
    /// sends to (and receives from).
    pub proxy: Option<std::net::SocketAddr>,
}

/// Why a flow or registration could not be made. Each maps to the errno a socket
/// program expects (DESIGN.md D5).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum FlowError {
    /// No application is registered under the name.
    #[error("no application is registered under that name")]
    NoSuchApplication,
    /// The destination cannot be reached, or this member could not join the DIF.
    #[error("the DIF cannot reach the destination: {0}")]
    Unreachable(String),
    /// The allocation did not complete in time.
    #[error("flow allocation timed out")]
    TimedOut,
    /// The name is registered by another member (and not as a pool both share).
    #[error("the name is already registered: {0}")]
    NameInUse(String),
    /// This member may not register the name (a secured DIF's rules).
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// The destination refused for lack of resources.
    #[error("no resources")]
    NoResources,
    /// The destination refused access.
    #[error("access denied")]
    Denied,
    /// The rules name a DIF this runtime does not have.
    #[error("no DIF named {0:?}")]
    NoSuchDif(String),
    /// The runtime is not running (failed to start, or stopped).
    #[error("the RINA runtime is not running: {0}")]
    RuntimeDown(String),
}

impl FlowError {
    /// The errno a socket program expects for this error.
    pub fn errno(&self) -> i32 {
        match self {
            Self::NoSuchApplication => libc::ECONNREFUSED,
            Self::Unreachable(_) | Self::NoSuchDif(_) => libc::ENETUNREACH,
            Self::TimedOut => libc::ETIMEDOUT,
            Self::NameInUse(_) => libc::EADDRINUSE,
            Self::NoResources => libc::ENOBUFS,
            Self::Denied | Self::NotAllowed(_) => libc::EACCES,
            Self::RuntimeDown(_) => libc::ENETDOWN,
        }
    }
}

/// A command for the runtime thread.
#[derive(Debug)]
pub(crate) enum Command {
    Connect(ConnectRequest, Reply<Result<FlowInfo, FlowError>>),
    Listen(ListenRequest, Reply<Result<(), FlowError>>),
    /// The application's datagram socket at this address is closed: release its flows
    /// and registrations.
    ReleaseDatagram(std::net::SocketAddr),
    /// The application closed a stream listener (its abstract name): if no process
    /// holds it any more, its name is withdrawn.
    ListenerClosed(Vec<u8>),
    /// The EFCP figures of a flow (for `TCP_INFO`).
    FlowStats(u16, PortId, Reply<Option<rina_core::efcp::ConnectionStats>>),
    /// The largest SDU one PDU of a DIF carries.
    PduPayload(DifIndex, Reply<Option<usize>>),
    Tunnel(TunnelRequest, Reply<Result<(), FlowError>>),
    /// Drain every flow (bounded by `linger`), say goodbye to neighbours, stop.
    Exit(Duration, Reply<()>),
    /// The process is about to exec: hand the flows to a keeper process, stop.
    HandOver(Duration, Reply<()>),
}

/// What the runtime does with a result: hand it to a caller waiting in
/// [`Reply::wait`], or call a function with it (on the runtime thread).
type Then<T> = Box<dyn FnOnce(T) + Send>;

/// A one-shot reply slot shared by the caller and the runtime thread.
pub(crate) struct Reply<T>(Arc<ReplyInner<T>>);

struct ReplyInner<T> {
    slot: Mutex<Option<T>>,
    ready: Condvar,
    /// The function to call, and the value it gets if the reply is dropped unsent
    /// (the command was dropped: the runtime stopped).
    then: Mutex<Option<(Then<T>, T)>>,
}

impl<T> Drop for ReplyInner<T> {
    fn drop(&mut self) {
        if let Some((f, unsent)) = self.then.get_mut().take() {
            f(unsent);
        }
    }
}

impl<T> std::fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply")
    }
}

impl<T> Clone for Reply<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Reply<T> {
    pub(crate) fn new() -> Self {
        Self(Arc::new(ReplyInner {
            slot: Mutex::new(None),
            ready: Condvar::new(),
            then: Mutex::new(None),
        }))
    }

    /// A reply that calls `f` with the value instead of waking a waiter; with
    /// `unsent` if it is dropped without a value.
    pub(crate) fn then(f: impl FnOnce(T) + Send + 'static, unsent: T) -> Self {
        let r = Self::new();
        *r.0.then.lock() = Some((Box::new(f), unsent));
        r
    }

    /// Delivers the value: calls the function, or wakes the caller.
    pub(crate) fn send(&self, v: T) {
        let then = self.0.then.lock().take();
        if let Some((f, _)) = then {
            f(v);
            return;
        }
        *self.0.slot.lock() = Some(v);
        self.0.ready.notify_all();
    }

    /// Waits up to `timeout` for the value.
    pub(crate) fn wait(&self, timeout: Duration) -> Option<T> {
        let mut slot = self.0.slot.lock();
        let deadline = std::time::Instant::now() + timeout;
        while slot.is_none() {
            if self.0.ready.wait_until(&mut slot, deadline).timed_out() {
                break;
            }
        }
        slot.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping() {
        assert_eq!(FlowError::NoSuchApplication.errno(), libc::ECONNREFUSED);
        assert_eq!(FlowError::TimedOut.errno(), libc::ETIMEDOUT);
        assert_eq!(
            FlowError::Unreachable(String::new()).errno(),
            libc::ENETUNREACH
        );
        assert_eq!(
            FlowError::NameInUse(String::new()).errno(),
            libc::EADDRINUSE
        );
    }
}
