//! Application-side stream sockets: moving bytes between a flow and the kernel socket whose
//! other end the application holds, with back-pressure both ways.
//!
//! The runtime reads from the socket only while the flow can take another SDU (EFCP's
//! send queue and window), and takes an SDU from the flow only when the socket can
//! take it (at most one SDU is held back, when the socket took part of one). A full
//! socket therefore stops the receive window, and a closed window stops reading the
//! application: memory stays bounded and nothing is dropped.

use std::os::fd::OwnedFd;

use rina_core::ipcp::{IpcProcess, ReadResult, WriteError};
use rina_core::node::DifId;
use rina_core::{Instant, PortId};
use rustix::io::Errno;
use rustix::net::{self, RecvFlags, SendFlags, Shutdown};

/// One flow's application-side socket.
#[derive(Debug)]
pub(crate) struct AppFlow {
    pub(crate) dif: DifId,
    pub(crate) port: PortId,
    pub(crate) sock: OwnedFd,
    /// The socket may have data to read (edge-triggered: until a read would block).
    pub(crate) readable: bool,
    /// The socket may take data.
    pub(crate) writable: bool,
    /// The flow may have data or its end for the socket (the stack said `Readable`),
    /// until a read finds nothing.
    deliverable: bool,
    /// The epoll set watches for room in the socket (it was full).
    pub(crate) watching_room: bool,
    /// The application finished writing (EOF read); the flow carries its end mark.
    pub(crate) app_eof: bool,
    /// The peer finished writing; the socket was shut down for writing.
    pub(crate) peer_eof: bool,
    /// The application closed its end (writes fail with EPIPE): what it wrote before
    /// is still read and sent; what arrives is taken and dropped, as a closed TCP
    /// socket drops it.
    pub(crate) app_gone: bool,
    /// The peer reset the flow: what had arrived before is still delivered, then the
    /// socket is shut down both ways (reads end, writes fail).
    pub(crate) reset: bool,
    /// After a reset: everything that had arrived was handed to the socket.
    pub(crate) drained: bool,
    /// The socket is a TCP connection closed with a reset (`SO_LINGER` 0): it is
    /// closed, not shut down, when the flow is forgotten.
    pub(crate) aborted: bool,
    /// Bytes read from the application and written to the flow.
    sent: u64,
    /// Bytes of an SDU the socket has not yet taken, from `held_at`.
    held: Vec<u8>,
    held_at: usize,
}

/// What pumping a flow found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PumpOutcome {
    /// Something moved.
    pub(crate) progress: bool,
    /// The flow is broken (the application vanished mid-stream, or the flow closed).
    pub(crate) broken: bool,
}

impl AppFlow {
    pub(crate) fn new(dif: DifId, port: PortId, sock: OwnedFd) -> Self {
        Self {
            dif,
            port,
            sock,
            readable: true,
            writable: true,
            deliverable: true,
            watching_room: false,
            app_eof: false,
            peer_eof: false,
            app_gone: false,
            reset: false,
            drained: false,
            aborted: false,
            sent: 0,
            held: Vec::new(),
            held_at: 0,
        }
    }

    /// Gives the application `data` ahead of anything the flow delivers (the first
    /// bytes of the stream, which came with the flow request). Call before any pump.
    pub(crate) fn deliver_first(&mut self, data: Vec<u8>) {
        debug_assert!(self.held.is_empty());
        self.held = data;
        self.held_at = 0;
    }

    /// The stack has something for this flow's socket, or may have.
    pub(crate) fn may_deliver(&mut self) {
        self.deliverable = true;
    }

    /// Nothing can move until an event says so: the socket had nothing more to read
    /// and has room, the flow had nothing to deliver, and neither side has ended. A
    /// turn skips such a flow, so that a process with many quiet flows does not pay for
    /// each of them on every message of the others.
    pub(crate) fn is_idle(&self) -> bool {
        !self.readable
            && !self.deliverable
            && self.writable
            && !self.watching_room
            && self.held.is_empty()
            && !(self.app_eof || self.peer_eof || self.app_gone || self.reset)
    }

    /// Both directions are done and the flow has delivered everything.
    pub(crate) fn is_finished(&self, ipcp: &IpcProcess) -> bool {
        self.app_eof && self.peer_eof && self.held.is_empty() && ipcp.is_finished(self.port)
    }

    /// Nothing more will move: finished gracefully; or the application is gone and
    /// what it wrote was delivered; or the flow was reset and what had arrived is in
    /// the socket.
    pub(crate) fn is_over(&self, ipcp: &IpcProcess) -> bool {
        self.is_finished(ipcp)
            || (self.app_gone && self.app_eof && ipcp.is_send_done(self.port))
            || (self.reset && self.drained && self.held.is_empty())
    }

    /// True when the exit drain need not wait for this flow any more.
    pub(crate) fn is_drained(&self, ipcp: &IpcProcess) -> bool {
        self.reset || (self.app_eof && ipcp.is_send_done(self.port))
    }

    /// Moves what can move, in both directions. `chunk` is the SDU size for streams;
    /// `exiting`: the application is gone, so a socket with nothing more to read
    /// counts as end of stream.
    pub(crate) fn pump(
        &mut self,
        now: Instant,
        ipcp: &mut IpcProcess,
        buf: &mut [u8],
        chunk: usize,
        exiting: bool,
    ) -> PumpOutcome {
        let mut out = PumpOutcome::default();
        self.flow_to_app(now, ipcp, &mut out);
        self.app_to_flow(now, ipcp, buf, chunk, exiting, &mut out);
        out
    }

    /// Flow -> application socket.
    fn flow_to_app(&mut self, now: Instant, ipcp: &mut IpcProcess, out: &mut PumpOutcome) {
        if self.app_gone {
            self.discard(now, ipcp, out);
            return;
        }
        if self.peer_eof && !self.reset {
            return;
        }
        loop {
            if !self.writable {
                return;
            }
            if self.held_at < self.held.len() {
                match net::send(
                    &self.sock,
                    &self.held[self.held_at..],
                    SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
                ) {
                    Ok(n) => {
                        out.progress = true;
                        self.held_at += n;
                        if self.held_at < self.held.len() {
                            continue;
                        }
                        self.held.clear();
                        self.held_at = 0;
                    }
                    Err(Errno::AGAIN) => {
                        self.writable = false;
                        return;
                    }
                    Err(Errno::INTR) => continue,
                    // A TCP connection (a gateway's) reset by its server: the flow
                    // is reset too.
                    Err(Errno::CONNRESET) if abort_if_inet(&self.sock) => {
                        self.aborted = true;
                        out.broken = true;
                        return;
                    }
                    Err(_) => {
                        // The application closed its end: nothing it wrote is lost
                        // (it is still read and sent), what comes is dropped.
                        out.progress = true;
                        self.app_gone = true;
                        self.held.clear();
                        self.held_at = 0;
                        self.discard(now, ipcp, out);
                        return;
                    }
                }
            }
            match ipcp.read(now, self.port) {
                ReadResult::Sdu(sdu) => {
                    out.progress = true;
                    self.held = sdu;
                    self.held_at = 0;
                }
                ReadResult::Eof if !self.peer_eof => {
                    tracing::debug!("flow {}: end of stream from the peer", self.port);
                    out.progress = true;
                    self.peer_eof = true;
                    let _ = net::shutdown(&self.sock, Shutdown::Write);
                    if !self.reset {
                        return;
                    }
                }
                ReadResult::WouldBlock => {
                    self.deliverable = false;
                    return;
                }
                ReadResult::Eof | ReadResult::Closed if self.reset => {
                    // Everything that came before the reset is in the socket: reads
                    // end there, writes fail. A TCP connection (a gateway's) is reset
                    // in turn, as a TCP proxy passes a reset on.
                    out.progress |= !self.drained;
                    self.drained = true;
                    self.aborted = abort_if_inet(&self.sock);
                    if !self.aborted {
                        let _ = net::shutdown(&self.sock, Shutdown::Both);
                    }
                    return;
                }
                ReadResult::Eof | ReadResult::Closed => {
                    out.broken = true;
                    return;
                }
            }
        }
    }

    /// Takes what the flow delivers and drops it (nobody reads it any more), so that
    /// the peer is never stuck behind a closed window.
    fn discard(&mut self, now: Instant, ipcp: &mut IpcProcess, out: &mut PumpOutcome) {
        loop {
            match ipcp.read(now, self.port) {
                ReadResult::Sdu(_) => out.progress = true,
                ReadResult::Eof => {
                    out.progress |= !self.peer_eof;
                    self.peer_eof = true;
                    if self.reset {
                        self.drained = true;
                        return;
                    }
                }
                ReadResult::WouldBlock => return,
                ReadResult::Closed => {
                    out.progress |= !self.drained;
                    self.drained = true;
                    if !self.reset {
                        out.broken = true;
                    }
                    return;
                }
            }
        }
    }

    /// Application socket -> flow.
    fn app_to_flow(
        &mut self,
        now: Instant,
        ipcp: &mut IpcProcess,
        buf: &mut [u8],
        chunk: usize,
        exiting: bool,
        out: &mut PumpOutcome,
    ) {
        if self.app_eof || self.reset {
            return;
        }
        let limit = chunk.min(buf.len());
        // A shut window leaves `readable` set: the flow then stays out of idleness
        // (`is_idle`) and is pumped every turn until the window opens, for the stack
        // says nothing when it does (its `Writable` follows only a refused write).
        while self.readable && ipcp.can_write(self.port) {
            match net::recv(&self.sock, &mut buf[..limit], RecvFlags::DONTWAIT) {
                Ok((_, 0)) => {
                    self.end_of_app_data(now, ipcp);
                    out.progress = true;
                    return;
                }
                Ok((_, n)) => {
                    out.progress = true;
                    match ipcp.write(now, self.port, &buf[..n.min(limit)]) {
                        Ok(()) => self.sent += n.min(limit) as u64,
                        Err(WriteError::WouldBlock) => {
                            // can_write said yes: cannot happen; keep the bytes safe anyway.
                            debug_assert!(false, "write refused after can_write");
                            return;
                        }
                        Err(WriteError::TooLarge | WriteError::Closed) => {
                            out.broken = true;
                            return;
                        }
                    }
                }
                Err(Errno::AGAIN) => {
                    self.readable = false;
                    if exiting {
                        self.end_of_app_data(now, ipcp);
                        out.progress = true;
                    }
                    return;
                }
                Err(Errno::INTR) => {}
                // A TCP connection (a gateway's) reset by its client: the flow is
                // reset (deallocated unfinished). An AF_UNIX end reads ECONNRESET when
                // the program closed without reading: what it wrote is still sent.
                Err(Errno::CONNRESET) if abort_if_inet(&self.sock) => {
                    self.aborted = true;
                    out.broken = true;
                    return;
                }
                Err(_) => {
                    self.end_of_app_data(now, ipcp);
                    return;
                }
            }
        }
    }

    fn end_of_app_data(&mut self, now: Instant, ipcp: &mut IpcProcess) {
        tracing::debug!(
            "flow {}: the application finished writing ({} bytes)",
            self.port,
            self.sent
        );
        self.app_eof = true;
        self.readable = false;
        ipcp.close_write(now, self.port);
    }
}

/// If `sock` is a TCP connection (not the AF_UNIX end of an interposed program), makes
/// its close send a reset (`SO_LINGER` 0): true if so.
fn abort_if_inet(sock: &OwnedFd) -> bool {
    use rustix::net::{sockopt, AddressFamily};
    let inet = sockopt::socket_domain(sock)
        .is_ok_and(|d| d == AddressFamily::INET || d == AddressFamily::INET6);
    inet && sockopt::set_socket_linger(sock, Some(std::time::Duration::ZERO)).is_ok()
}
