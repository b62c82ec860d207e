//! Socket options of our stream sockets, answered as a TCP socket would.
//!
//! - When an INET socket becomes an AF_UNIX one (connect, listen), the options the
//!   program may have set before are read from it ([`snapshot`]) and kept in its
//!   record; accepted sockets inherit their listener's, as TCP's do. TCP- and IP-level
//!   options, and the socket-level ones an AF_UNIX socket cannot hold
//!   ([`REMEMBERED`]), are answered from the record and updated by `setsockopt`.
//! - `SO_SNDBUF` set before connect is applied to the application's end of the pair;
//!   `SO_RCVBUF` set before connect or listen goes to the runtime, which sizes its end
//!   with it (the bytes waiting for the program), so a flow holds what a TCP
//!   connection with those buffers would.
//! - `TCP_INFO` is filled from the flow's EFCP figures.

use std::sync::OnceLock;

use std::os::fd::AsRawFd;

use libc::{c_int, IPPROTO_IP, IPPROTO_IPV6, IPPROTO_TCP, SOL_SOCKET};

use crate::ops::Outcome;
use crate::sockets::{Meta, Role};
use crate::sys::sockaddr::OptBuf;
use crate::sys::{self, sockopt_int};

/// Options kept in the record of our sockets, read from the INET socket before it is
/// replaced: (level, name).
pub const REMEMBERED: &[(c_int, c_int)] = &[
    (SOL_SOCKET, libc::SO_REUSEADDR),
    (SOL_SOCKET, libc::SO_REUSEPORT),
    (SOL_SOCKET, libc::SO_KEEPALIVE),
    (SOL_SOCKET, libc::SO_LINGER),
    (SOL_SOCKET, libc::SO_OOBINLINE),
    (SOL_SOCKET, libc::SO_PRIORITY),
    (SOL_SOCKET, libc::SO_DONTROUTE),
    (IPPROTO_TCP, libc::TCP_NODELAY),
    (IPPROTO_TCP, libc::TCP_KEEPIDLE),
    (IPPROTO_TCP, libc::TCP_KEEPINTVL),
    (IPPROTO_TCP, libc::TCP_KEEPCNT),
    (IPPROTO_TCP, libc::TCP_USER_TIMEOUT),
    (IPPROTO_TCP, libc::TCP_CORK),
    (IPPROTO_TCP, libc::TCP_QUICKACK),
    (IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT),
    (IPPROTO_TCP, libc::TCP_DEFER_ACCEPT),
    (IPPROTO_TCP, libc::TCP_CONGESTION),
    (IPPROTO_IP, libc::IP_TOS),
    (IPPROTO_IP, libc::IP_TTL),
    (IPPROTO_IPV6, libc::IPV6_V6ONLY),
    (IPPROTO_IPV6, libc::IPV6_TCLASS),
    (IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS),
];

/// True for the levels answered from the record.
fn tcp_level(level: c_int) -> bool {
    level == IPPROTO_TCP || level == IPPROTO_IP || level == IPPROTO_IPV6
}

/// The remembered options of the INET socket `fd`, before it is replaced.
pub fn snapshot(fd: c_int) -> std::collections::BTreeMap<(c_int, c_int), Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    for &(level, name) in REMEMBERED {
        let mut buf = [0u8; 64];
        if let Some(len) = sys::sockopt_bytes(fd, level, name, &mut buf) {
            out.insert((level, name), buf[..len].to_vec());
        }
    }
    out
}

/// What a fresh TCP socket of this kernel says, read once: its default send and
/// receive buffer sizes (to tell whether a program set them) and the size of the
/// `struct tcp_info` it fills.
struct TcpDefaults {
    sndbuf: c_int,
    rcvbuf: c_int,
    info_len: usize,
}

fn tcp_defaults() -> &'static TcpDefaults {
    static D: OnceLock<TcpDefaults> = OnceLock::new();
    D.get_or_init(|| {
        let mut d = TcpDefaults {
            sndbuf: 0,
            rcvbuf: 0,
            info_len: 232,
        };
        // A probe socket, closed as it drops.
        let Ok(probe) = sys::socket(libc::AF_INET, libc::SOCK_STREAM) else {
            return d;
        };
        let s = probe.as_raw_fd();
        d.sndbuf = sockopt_int(s, SOL_SOCKET, libc::SO_SNDBUF).unwrap_or(0);
        d.rcvbuf = sockopt_int(s, SOL_SOCKET, libc::SO_RCVBUF).unwrap_or(0);
        let mut buf = [0u8; 512];
        if let Some(len) = sys::sockopt_bytes(s, IPPROTO_TCP, libc::TCP_INFO, &mut buf) {
            d.info_len = len;
        }
        d
    })
}

/// Buffer sizes the program set on the INET socket `fd` (as it would pass them to
/// `setsockopt`, so half what the kernel reports), `None` where it kept the default.
pub fn buffers_set(fd: c_int) -> (Option<usize>, Option<usize>) {
    let (snd, rcv) = (tcp_defaults().sndbuf, tcp_defaults().rcvbuf);
    let set = |name, default| {
        sockopt_int(fd, SOL_SOCKET, name)
            .filter(|&v| v != default && v > 0)
            .map(|v| (v / 2) as usize)
    };
    (set(libc::SO_SNDBUF, snd), set(libc::SO_RCVBUF, rcv))
}

/// Answers `v` into the caller's buffer.
fn answer(v: &[u8], out: &OptBuf<'_>) -> Outcome {
    if out.answer(v) {
        Outcome::Done(0)
    } else {
        Outcome::Fail(libc::EFAULT)
    }
}

/// `getsockopt` on our stream socket `fd` described by `meta`, into `out`.
pub fn get(fd: c_int, meta: &Meta, level: c_int, name: c_int, out: &OptBuf<'_>) -> Outcome {
    let int = |v: c_int| answer(&v.to_ne_bytes(), out);
    if let Some(v) = meta.options.get(&(level, name)) {
        return answer(v, out);
    }
    if level == SOL_SOCKET {
        return match name {
            libc::SO_ERROR => match meta.role {
                Role::Refused { error } => {
                    crate::sockets::update(fd, |m| m.role = Role::Refused { error: 0 });
                    int(error)
                }
                Role::Connecting { .. } => int(0),
                _ => Outcome::Pass,
            },
            libc::SO_DOMAIN => int(meta.family),
            libc::SO_TYPE => int(libc::SOCK_STREAM),
            libc::SO_PROTOCOL => int(IPPROTO_TCP),
            libc::SO_ACCEPTCONN => int(c_int::from(meta.role == Role::Listening)),
            _ => Outcome::Pass,
        };
    }
    if level == IPPROTO_TCP && name == libc::TCP_INFO {
        return answer(&tcp_info(fd, &meta.role), out);
    }
    if tcp_level(level) {
        return match (level, name) {
            (IPPROTO_TCP, libc::TCP_MAXSEG) => int(1448),
            _ => int(0),
        };
    }
    Outcome::Pass
}

/// `setsockopt` on our stream socket `fd` (not a bound or datagram one): TCP- and
/// IP-level options and the remembered socket-level ones are kept in its record (the
/// latter also given to the kernel, which may refuse them on an AF_UNIX socket);
/// anything else goes to the kernel. `val` is the caller's value (`None`: a null
/// pointer with a length).
pub fn set(fd: c_int, level: c_int, name: c_int, val: Option<&[u8]>) -> Outcome {
    let remembered = REMEMBERED.contains(&(level, name));
    if !tcp_level(level) && !remembered {
        return Outcome::Pass;
    }
    let Some(val) = val else {
        return Outcome::Fail(libc::EFAULT);
    };
    if level == SOL_SOCKET {
        // The outcome does not matter.
        let _ = sys::set_sockopt_bytes(fd, level, name, val);
    }
    crate::sockets::update(fd, |m| {
        m.options.insert((level, name), val.to_vec());
    });
    Outcome::Done(0)
}

/// Offsets in `struct tcp_info` (linux/tcp.h).
mod at {
    pub const STATE: usize = 0;
    pub const RETRANSMITS: usize = 2;
    pub const SND_MSS: usize = 16;
    pub const RCV_MSS: usize = 20;
    pub const RTT: usize = 68;
    pub const RTTVAR: usize = 72;
    pub const SND_CWND: usize = 80;
    pub const TOTAL_RETRANS: usize = 100;
    pub const BYTES_ACKED: usize = 120;
    pub const BYTES_RECEIVED: usize = 128;
}

/// `struct tcp_info` for our socket `fd`: the state, and for a flow its EFCP figures
/// (round-trip time and variation, congestion window, segment size, retransmissions,
/// bytes acknowledged and received); everything else zero.
fn tcp_info(fd: c_int, role: &Role) -> Vec<u8> {
    let mut b = vec![0u8; tcp_defaults().info_len];
    let put32 = |b: &mut Vec<u8>, at: usize, v: u64| {
        let v = u32::try_from(v).unwrap_or(u32::MAX);
        if let Some(s) = b.get_mut(at..at + 4) {
            s.copy_from_slice(&v.to_ne_bytes());
        }
    };
    let put64 = |b: &mut Vec<u8>, at: usize, v: u64| {
        if let Some(s) = b.get_mut(at..at + 8) {
            s.copy_from_slice(&v.to_ne_bytes());
        }
    };
    b[at::STATE] = match role {
        Role::Listening => 10,                                         // TCP_LISTEN
        Role::Connecting { .. } => 2,                                  // TCP_SYN_SENT
        Role::Refused { .. } => 7,                                     // TCP_CLOSE
        Role::Connected { .. } | Role::Bound | Role::Datagram(_) => 1, // TCP_ESTABLISHED
    };
    if !matches!(role, Role::Connected { .. }) {
        return b;
    }
    let Some(s) = flow_stats(fd) else {
        return b;
    };
    b[at::RETRANSMITS] = 0;
    put32(&mut b, at::SND_MSS, s.mss as u64);
    put32(&mut b, at::RCV_MSS, s.mss as u64);
    put32(&mut b, at::RTT, s.srtt.map_or(0, |t| t.as_micros() as u64));
    put32(&mut b, at::RTTVAR, s.rttvar.as_micros() as u64);
    put32(&mut b, at::SND_CWND, s.cwnd);
    put32(&mut b, at::TOTAL_RETRANS, s.pdus_retransmitted);
    put64(&mut b, at::BYTES_ACKED, s.bytes_acked);
    put64(&mut b, at::BYTES_RECEIVED, s.bytes_received);
    b
}

/// The EFCP figures of the flow behind `fd`, from this process's runtime or from the
/// host member that serves the program (a flow served by another process's stack has
/// none here).
fn flow_stats(fd: c_int) -> Option<rina_core::efcp::ConnectionStats> {
    let f = crate::flow_fd::peer_flow(fd)?;
    let h = crate::state::runtime_to_tell()?;
    if f.pid != std::process::id() && !h.is_host_session() {
        return None;
    }
    h.flow_stats(f.dif, f.port)
}
