//! What a program and its host member say on the local socket: one JSON message per
//! `SOCK_SEQPACKET` record, with the flow's socket ends passed alongside
//! (`SCM_RIGHTS`). Requests carry an id; each answer names the request it answers.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rina_core::efcp::ConnectionStats;
use rustix::io::Errno;
use rustix::net::{
    self, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};

use crate::api::FlowError;

/// The largest message either side sends or takes.
pub(crate) const MAX_MESSAGE: usize = 16 * 1024;
/// The most descriptors one message carries.
const MAX_FDS: usize = 2;

/// A program's request.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// A flow. Descriptors: the runtime's end of the stream's pair, then (for a
    /// nonblocking connect, `held`) a duplicate of the application's end.
    Connect(ConnectMsg),
    /// A registration.
    Listen(ListenMsg),
    /// The datagram socket at this address is closed.
    ReleaseDatagram(SocketAddr),
    /// A stream listener (this abstract name) is closed.
    ListenerClosed(Vec<u8>),
    /// The EFCP figures of a flow.
    FlowStats {
        /// The request's id.
        id: u64,
        /// The DIF's index in the host member (from the flow's name).
        dif: u16,
        /// The flow's port-id.
        port: u32,
    },
}

/// `Request::Connect`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ConnectMsg {
    pub(crate) id: u64,
    pub(crate) dif: String,
    pub(crate) local_app: String,
    pub(crate) remote_app: String,
    /// For a datagram flow: the application's UDP socket; `None`: a stream.
    pub(crate) datagram: Option<SocketAddr>,
    /// For a stream: (local, peer) as the application's end shows them.
    pub(crate) view: Option<(SocketAddr, SocketAddr)>,
    pub(crate) recv_buffer: Option<usize>,
    pub(crate) timeout: Duration,
    /// A nonblocking connect: (filler bytes queued, send buffer to restore).
    pub(crate) held: Option<(usize, Option<usize>)>,
}

/// `Request::Listen`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ListenMsg {
    pub(crate) id: u64,
    pub(crate) dif: String,
    pub(crate) app: String,
    pub(crate) target: Target,
    pub(crate) pool: bool,
    pub(crate) timeout: Duration,
}

/// Where a registered name's flows go.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Target {
    /// The abstract name of a stream listener, and what its accepted ends show.
    Stream {
        name: Vec<u8>,
        local: SocketAddr,
        peers: String,
        v6_only: bool,
        recv_buffer: Option<usize>,
    },
    /// A UDP socket.
    Datagram(SocketAddr),
}

/// The host member's answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Answer {
    /// A connect's: the flow's port-id and, for datagrams, its proxy.
    Flow(u64, Result<(u32, Option<SocketAddr>), FlowError>),
    /// A listen's.
    Listened(u64, Result<(), FlowError>),
    /// A flow's figures.
    Stats(u64, Option<Stats>),
}

/// `rina_core::efcp::ConnectionStats` on the wire ([`Stats`]), each field named once.
macro_rules! stats_on_the_wire {
    ($($f:ident: $t:ty),* $(,)?) => {
        /// `rina_core::efcp::ConnectionStats` on the wire.
        #[derive(Debug, Serialize, Deserialize)]
        pub(crate) struct Stats {
            $($f: $t),*
        }

        impl From<ConnectionStats> for Stats {
            fn from(s: ConnectionStats) -> Self {
                Self { $($f: s.$f),* }
            }
        }

        impl From<Stats> for ConnectionStats {
            fn from(s: Stats) -> Self {
                Self { $($f: s.$f,)* ..Self::default() }
            }
        }
    };
}

stats_on_the_wire!(
    pdus_sent: u64,
    pdus_retransmitted: u64,
    pdus_received: u64,
    duplicates: u64,
    sdus_delivered: u64,
    srtt: Option<Duration>,
    rttvar: Duration,
    bytes_acked: u64,
    bytes_received: u64,
    mss: usize,
    rto: Duration,
    cwnd: u64,
    in_flight: u64,
    malformed: u64,
);

/// Sends `msg` with `fds` as one record; if the other side's buffer is full, waits up
/// to a second for room when `wait` (a program), or fails at once (the host member,
/// whose thread serves everyone).
pub(crate) fn send<T: Serialize>(
    sock: BorrowedFd<'_>,
    msg: &T,
    fds: &[BorrowedFd<'_>],
    wait: bool,
) -> rustix::io::Result<()> {
    let bytes = serde_json::to_vec(msg).map_err(|_| Errno::INVAL)?;
    if bytes.len() > MAX_MESSAGE || fds.len() > MAX_FDS {
        return Err(Errno::MSGSIZE);
    }
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut anc = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !anc.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(Errno::NOBUFS);
    }
    loop {
        match net::sendmsg(
            sock,
            &[IoSlice::new(&bytes)],
            &mut anc,
            SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
        ) {
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) if wait => {
                // The other side is slow to read: wait for room, bounded.
                let mut p = [rustix::event::PollFd::new(
                    &sock,
                    rustix::event::PollFlags::OUT,
                )];
                let t = rustix::time::Timespec {
                    tv_sec: 1,
                    tv_nsec: 0,
                };
                if rustix::event::poll(&mut p, Some(&t))? == 0 {
                    return Err(Errno::AGAIN);
                }
            }
            r => return r.map(drop),
        }
    }
}

/// What one record said.
pub(crate) enum Received<T> {
    /// A message and the descriptors it carried.
    Message(T, Vec<OwnedFd>),
    /// Not a message of ours (too long, cut, undecodable): the session is broken.
    Garbled,
    /// The other side closed.
    Closed,
}

/// Receives one record (`flags`: `DONTWAIT` or empty).
pub(crate) fn recv<T: for<'de> Deserialize<'de>>(
    sock: impl AsFd,
    flags: RecvFlags,
) -> rustix::io::Result<Received<T>> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut anc = RecvAncillaryBuffer::new(&mut space);
    let r = loop {
        match net::recvmsg(
            &sock,
            &mut [IoSliceMut::new(&mut buf)],
            &mut anc,
            flags | RecvFlags::CMSG_CLOEXEC,
        ) {
            Err(Errno::INTR) => {}
            r => break r?,
        }
    };
    let mut fds = Vec::new();
    for m in anc.drain() {
        if let RecvAncillaryMessage::ScmRights(got) = m {
            fds.extend(got.map(shims::high_fd::move_high));
        }
    }
    if r.bytes == 0 && fds.is_empty() {
        return Ok(Received::Closed);
    }
    if r.flags.contains(net::ReturnFlags::TRUNC) || r.flags.contains(net::ReturnFlags::CTRUNC) {
        return Ok(Received::Garbled);
    }
    match serde_json::from_slice(&buf[..r.bytes]) {
        Ok(m) => Ok(Received::Message(m, fds)),
        Err(_) => Ok(Received::Garbled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::{AddressFamily, SocketFlags, SocketType};

    #[test]
    fn a_request_and_its_descriptors_cross_a_seqpacket_pair() {
        let (a, b) = net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let (x, _y) = net::socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let req = Request::FlowStats {
            id: 7,
            dif: 1,
            port: 9,
        };
        send(a.as_fd(), &req, &[x.as_fd()], true).unwrap();
        let Received::Message(Request::FlowStats { id, dif, port }, fds) =
            recv::<Request>(&b, RecvFlags::empty()).unwrap()
        else {
            panic!("not the request");
        };
        assert_eq!((id, dif, port, fds.len()), (7, 1, 9, 1));
        net::sendmsg(
            &a,
            &[IoSlice::new(b"{nonsense")],
            &mut SendAncillaryBuffer::default(),
            SendFlags::empty(),
        )
        .unwrap();
        assert!(matches!(
            recv::<Request>(&b, RecvFlags::empty()).unwrap(),
            Received::Garbled
        ));
        drop(a);
        assert!(matches!(
            recv::<Request>(&b, RecvFlags::empty()).unwrap(),
            Received::Closed
        ));
    }
}
