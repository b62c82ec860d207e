//! The Ethernet link: one `AF_PACKET` raw socket per shim DIF, bound to one
//! interface and to Ethertype 0xD1F0 (`rina_core::shim::eth::ETHERTYPE`).
//!
//! Frames are sent whole (the 14-byte Ethernet header is written here, then the shim
//! headers and the PDU as separate I/O slices: no copy to join them). Received frames
//! are filtered: only frames addressed to this interface's MAC or to broadcast are
//! passed on. A socket bound to one Ethertype sees no outgoing frames (the kernel
//! shows those only to sockets of every Ethertype), so processes of one host do not
//! reach each other over the interface: they use the UDP shim, or loopback.
//!
//! Opening the socket needs `CAP_NET_RAW`; without it [`EthLink::open`] fails with
//! [`EthError::Permission`], whose message says how to grant it.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rina_core::shim::eth::{Mac, ETHERTYPE};
use rustix::net::{
    self, addr::SocketAddrArg, AddressFamily, RecvFlags, SendAncillaryBuffer, SendFlags,
    SocketFlags, SocketType,
};

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
    fd: OwnedFd,
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
    let raw = std::os::fd::AsRawFd::as_raw_fd(fd);
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
        let io = |source: rustix::io::Errno| match source {
            rustix::io::Errno::PERM | rustix::io::Errno::ACCESS => EthError::Permission {
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
        Ok(Self {
            fd,
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
        let mut eth = [0u8; ETH_HEADER_LEN];
        eth[..6].copy_from_slice(&dst);
        eth[6..12].copy_from_slice(&self.mac);
        eth[12..].copy_from_slice(&ETHERTYPE.to_be_bytes());
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
        match net::sendmsg_addr(&self.fd, &to, &iov, &mut control, SendFlags::empty()) {
            Ok(_) => Ok(true),
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::NOBUFS) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Receives one frame for this interface into `buf`. `Ok(None)`: nothing waiting.
    /// Frames addressed elsewhere, of another Ethertype, or truncated are skipped and
    /// counted in `dropped`.
    ///
    /// # Errors
    /// Receive errors other than would-block.
    pub fn recv(&self, buf: &mut [u8], dropped: &mut u64) -> io::Result<Option<Received>> {
        loop {
            let n = match net::recv(&self.fd, &mut *buf, RecvFlags::TRUNC) {
                Ok((_, n)) => n,
                Err(rustix::io::Errno::AGAIN) => return Ok(None),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            };
            if n > buf.len() || n < ETH_HEADER_LEN {
                *dropped += 1; // larger than our buffer, or not even a header
                continue;
            }
            let frame = &buf[..n];
            let dst: Mac = frame[..6].try_into().expect("six bytes");
            let src: Mac = frame[6..12].try_into().expect("six bytes");
            let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
            if ethertype != ETHERTYPE || (dst != self.mac && dst != [0xff; 6]) {
                *dropped += 1;
                continue;
            }
            return Ok(Some(Received {
                src,
                start: ETH_HEADER_LEN,
                end: n,
            }));
        }
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
