//! The Ethernet link: two `AF_PACKET` raw sockets per shim DIF, one bound to one
//! interface and to Ethertype 0xD1F0 (`rina_core::shim::eth::ETHERTYPE`) that
//! receives, one of no protocol that sends (so that the frames it sends, when freed,
//! wake nobody).
//!
//! Frames are sent whole (the 14-byte Ethernet header is written here, then the shim
//! headers and the PDU as separate I/O slices: no copy to join them), many in one
//! `sendmmsg` ([`EthLink::send_batch`]), and received many in one `recvmmsg`
//! ([`EthLink::recv_batch`]). Received frames are filtered: only frames addressed to this interface's MAC or to broadcast are
//! passed on. A socket bound to one Ethertype sees no outgoing frames (the kernel
//! shows those only to sockets of every Ethertype), so processes of one host do not
//! reach each other over the interface: they use the UDP shim, or loopback.
//!
//! Opening the socket needs `CAP_NET_RAW`; without it [`EthLink::open`] fails with
//! [`EthError::Permission`], whose message says how to grant it.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rina_core::shim::eth::{Mac, ETHERTYPE};
use rustix::io::Errno;

use crate::batch::{Outcome, Outgoing, BATCH};
use rustix::net::{
    self, addr::SocketAddrArg, AddressFamily, SendAncillaryBuffer, SendFlags, SocketFlags,
    SocketType,
};

/// The most frames [`EthLink::recv_batch`] takes in one system call.
pub const RECV_BATCH: usize = 32;

/// Length of the Ethernet header written in front of every frame.
pub const ETH_HEADER_LEN: usize = 14;

/// Why an interface could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum EthError {
    /// No `CAP_NET_RAW`.
    #[error(
        "raw Ethernet on {interface} needs CAP_NET_RAW: run the program as root, or give it \
         the capability as an ambient capability (for example `setpriv --inh-caps +net_raw \
         --ambient-caps +net_raw -- PROGRAM`, or AmbientCapabilities=CAP_NET_RAW in a systemd \
         unit); file capabilities (setcap) switch LD_PRELOAD off and cannot be used"
    )]
    Permission {
        /// The interface.
        interface: String,
    },
    /// No such interface (or it has no MAC address).
    #[error("no Ethernet interface {0:?} in this network namespace")]
    NoInterface(String),
    /// Anything else.
    #[error("interface {interface}: {source}")]
    Io {
        /// The interface.
        interface: String,
        /// The error.
        source: io::Error,
    },
}

/// A `struct sockaddr_ll` naming the interface, the Ethertype and a MAC address.
#[derive(Clone, Copy, Debug)]
struct LinkAddr {
    ifindex: i32,
    mac: Mac,
}

// SAFETY: `with_sockaddr` passes a pointer to a fully initialised `sockaddr_ll` on its
// own stack frame, with its exact size, valid for the duration of the call.
unsafe impl SocketAddrArg for LinkAddr {
    unsafe fn with_sockaddr<R>(
        &self,
        f: impl FnOnce(*const net::addr::SocketAddrOpaque, net::addr::SocketAddrLen) -> R,
    ) -> R {
        let mut addr = [0u8; 8];
        addr[..6].copy_from_slice(&self.mac);
        let ll = libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as u16,
            sll_protocol: ETHERTYPE.to_be(),
            sll_ifindex: self.ifindex,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 6,
            sll_addr: addr,
        };
        f(
            (&raw const ll).cast(),
            size_of::<libc::sockaddr_ll>() as net::addr::SocketAddrLen,
        )
    }
}

/// An open interface.
#[derive(Debug)]
pub struct EthLink {
    /// Bound to the interface and the Ethertype: receives.
    fd: OwnedFd,
    /// Sends (bound to nothing, of no protocol: receives nothing).
    tx: OwnedFd,
    interface: String,
    ifindex: i32,
    mac: Mac,
    mtu: usize,
}

/// A frame received: the source MAC and where the payload (after the Ethernet
/// header) lies in the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// The sender's MAC.
    pub src: Mac,
    /// Start of the payload in the buffer.
    pub start: usize,
    /// End of the payload in the buffer.
    pub end: usize,
}

/// An interface's index, MAC address and MTU, asked of the kernel on `fd` (in the
/// socket's network namespace, whatever /sys shows).
fn interface_facts(fd: &OwnedFd, interface: &str) -> Result<(i32, Mac, usize), EthError> {
    let missing = || EthError::NoInterface(interface.to_owned());
    if interface.is_empty() || interface.len() >= libc::IFNAMSIZ || interface.contains('\0') {
        return Err(missing());
    }
    // SAFETY: ifreq is plain old data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(interface.bytes()) {
        *d = s as libc::c_char;
    }
    let raw = fd.as_raw_fd();
    let mut ask = |request: libc::c_ulong| {
        // SAFETY: the three SIOCGIF* requests read the name from and write one field
        // of the ifreq we own.
        (unsafe { libc::ioctl(raw, request, &raw mut req) } == 0).then_some(req)
    };
    let index = ask(libc::SIOCGIFINDEX).ok_or_else(missing)?;
    // SAFETY: SIOCGIFINDEX filled the ifindex member of the union.
    let ifindex = unsafe { index.ifr_ifru.ifru_ifindex };
    let hw = ask(libc::SIOCGIFHWADDR).ok_or_else(missing)?;
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
    let hw = unsafe { hw.ifr_ifru.ifru_hwaddr };
    if hw.sa_family != libc::ARPHRD_ETHER {
        return Err(missing()); // not Ethernet (loopback has no MAC)
    }
    let mut mac = [0u8; 6];
    for (m, b) in mac.iter_mut().zip(hw.sa_data.iter()) {
        *m = *b as u8;
    }
    let mtu = ask(libc::SIOCGIFMTU).ok_or_else(missing)?;
    // SAFETY: SIOCGIFMTU filled the mtu member of the union.
    let mtu = unsafe { mtu.ifr_ifru.ifru_mtu };
    Ok((ifindex, mac, usize::try_from(mtu).map_err(|_| missing())?))
}

impl EthLink {
    /// Opens `interface` (in this network namespace) for RINA frames.
    ///
    /// # Errors
    /// [`EthError::Permission`] without `CAP_NET_RAW`, [`EthError::NoInterface`], or
    /// another socket error.
    pub fn open(interface: &str) -> Result<Self, EthError> {
        let io = |source: Errno| match source {
            Errno::PERM | Errno::ACCESS => EthError::Permission {
                interface: interface.to_owned(),
            },
            e => EthError::Io {
                interface: interface.to_owned(),
                source: e.into(),
            },
        };
        let protocol = net::Protocol::from_raw(
            net::RawProtocol::new(u32::from(ETHERTYPE.to_be())).expect("non-zero"),
        );
        let fd = net::socket_with(
            AddressFamily::PACKET,
            SocketType::RAW,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            Some(protocol),
        )
        .map_err(io)?;
        let (ifindex, mac, mtu) = interface_facts(&fd, interface)?;
        let fd = crate::high_fd::move_high(fd);
        crate::size_buffers(&fd);
        net::bind(&fd, &LinkAddr { ifindex, mac }).map_err(io)?;
        // Frames go out on a second socket of no protocol, which receives nothing and
        // is in no epoll set: each sent frame, when freed, wakes the sending socket's
        // waiters to say there is room, and on the receiving socket that woke the
        // runtime's own epoll for every frame.
        let tx = net::socket_with(
            AddressFamily::PACKET,
            SocketType::RAW,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )
        .map_err(io)?;
        let tx = crate::high_fd::move_high(tx);
        crate::size_buffers(&tx);
        Ok(Self {
            fd,
            tx,
            interface: interface.to_owned(),
            ifindex,
            mac,
            mtu,
        })
    }

    /// The interface's name.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The interface's MAC address.
    pub fn mac(&self) -> Mac {
        self.mac
    }

    /// The interface's MTU (the largest frame payload).
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// The socket, for readiness polling.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Sends a frame to `dst`: the Ethernet header, then `header`, then `payload`.
    /// `Ok(false)`: the socket buffer is full (try again when writable).
    ///
    /// # Errors
    /// Any other send error (e.g. the frame is larger than the MTU).
    pub fn send(&self, dst: Mac, header: &[u8], payload: &[u8]) -> io::Result<bool> {
        let eth = self.eth_header(dst);
        let iov = [
            IoSlice::new(&eth),
            IoSlice::new(header),
            IoSlice::new(payload),
        ];
        let to = LinkAddr {
            ifindex: self.ifindex,
            mac: dst,
        };
        let mut control = SendAncillaryBuffer::default();
        match net::sendmsg_addr(&self.tx, &to, &iov, &mut control, SendFlags::empty()) {
            Ok(_) => Ok(true),
            Err(Errno::AGAIN | Errno::NOBUFS) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Sends `frames` in as few system calls as the kernel takes (one `sendmmsg` per
    /// [`crate::batch::BATCH`]). What the socket refuses is lost and counted.
    pub fn send_batch(&self, frames: &[Outgoing<'_, Mac>]) -> Outcome {
        let mut out = Outcome::default();
        for chunk in frames.chunks(BATCH) {
            let mut eth = [[0u8; ETH_HEADER_LEN]; BATCH];
            for (e, f) in eth.iter_mut().zip(chunk) {
                *e = self.eth_header(f.to);
            }
            let iovs: Vec<[IoSlice<'_>; 3]> = eth
                .iter()
                .zip(chunk)
                .map(|(e, f)| {
                    [
                        IoSlice::new(e),
                        IoSlice::new(f.header),
                        IoSlice::new(f.payload),
                    ]
                })
                .collect();
            let slices: Vec<&[IoSlice<'_>]> = iovs.iter().map(|i| &i[..]).collect();
            let to = LinkAddr {
                ifindex: self.ifindex,
                mac: [0xff; 6], // unused: each frame carries its destination
            }
            .as_any();
            let addrs = vec![to; slices.len()];
            let full = [Errno::AGAIN, Errno::NOBUFS];
            let o = crate::batch::send_all(self.tx.as_fd(), &slices, Some(&addrs), &[], &full);
            out.lost += o.lost;
            out.error = out.error.or(o.error);
        }
        out
    }

    fn eth_header(&self, dst: Mac) -> [u8; ETH_HEADER_LEN] {
        let mut eth = [0u8; ETH_HEADER_LEN];
        eth[..6].copy_from_slice(&dst);
        eth[6..12].copy_from_slice(&self.mac);
        eth[12..].copy_from_slice(&ETHERTYPE.to_be_bytes());
        eth
    }

    /// Receives up to [`RECV_BATCH`] frames in one system call (`recvmmsg`), each into
    /// its own `slot`-byte part of `buf` (a slot holds a whole frame: at least
    /// [`EthLink::mtu`] + [`ETH_HEADER_LEN`] bytes), and appends those for this
    /// interface to `out`, their ranges counted from the start of `buf`. Returns how
    /// many frames the call took (filtered or not), `None` when nothing was waiting. Frames addressed elsewhere or truncated are counted in
    /// `dropped`.
    ///
    /// # Errors
    /// Receive errors other than would-block.
    pub fn recv_batch(
        &self,
        buf: &mut [u8],
        slot: usize,
        out: &mut Vec<Received>,
        dropped: &mut u64,
    ) -> io::Result<Option<usize>> {
        let slots = buf.len().checked_div(slot).unwrap_or(0).min(RECV_BATCH);
        if slots == 0 {
            return Err(io::Error::other("receive buffer smaller than a frame"));
        }
        // SAFETY: iovec and mmsghdr are plain old data; all-zero is valid for both.
        let mut iov: [libc::iovec; RECV_BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; RECV_BATCH] = unsafe { std::mem::zeroed() };
        for (i, (v, m)) in iov.iter_mut().zip(msgs.iter_mut()).take(slots).enumerate() {
            v.iov_base = buf[i * slot..].as_mut_ptr().cast();
            v.iov_len = slot;
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
        }
        let n = loop {
            // SAFETY: `msgs[..slots]` each point at one iovec of `iov`, which point at
            // disjoint `slot`-byte parts of `buf`; all outlive the call, and the kernel
            // writes at most `slot` bytes to each. A raw system call, never libc's
            // (hooked) recvmmsg.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_recvmmsg,
                    self.fd.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    slots as libc::c_uint,
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                    std::ptr::null_mut::<libc::timespec>(),
                )
            };
            if r >= 0 {
                break r as usize;
            }
            match Errno::from_io_error(&io::Error::last_os_error()) {
                Some(Errno::AGAIN) => return Ok(None),
                Some(Errno::INTR) => continue,
                _ => return Err(io::Error::last_os_error()),
            }
        };
        for (i, m) in msgs.iter().enumerate().take(n.min(slots)) {
            let len = m.msg_len as usize;
            if len > slot || m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                *dropped += 1; // larger than a slot
                continue;
            }
            let at = i * slot;
            match self.accept(&buf[at..at + len]) {
                Some(src) => out.push(Received {
                    src,
                    start: at + ETH_HEADER_LEN,
                    end: at + len,
                }),
                None => *dropped += 1,
            }
        }
        Ok(Some(n))
    }

    /// The sender of `frame` if it is a RINA frame for this interface.
    fn accept(&self, frame: &[u8]) -> Option<Mac> {
        if frame.len() < ETH_HEADER_LEN {
            return None;
        }
        let dst: Mac = frame[..6].try_into().expect("six bytes");
        let src: Mac = frame[6..12].try_into().expect("six bytes");
        let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
        (ethertype == ETHERTYPE && (dst == self.mac || dst == [0xff; 6])).then_some(src)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_interfaces_are_named() {
        let e = EthLink::open("no-such-if0").unwrap_err();
        assert!(e.to_string().contains("no-such-if0"), "{e}");
        assert!(matches!(
            EthLink::open("../etc"),
            Err(EthError::NoInterface(_))
        ));
    }
}
