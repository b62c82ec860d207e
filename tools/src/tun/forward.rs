//! The tunnel's event loop: IP packets read from the TUN device go, by their
//! destination's longest route, over one unreliable flow per peer tunnel (allocated on
//! the first packet; packets wait, at most [`MAX_QUEUED`], while it is made); packets
//! that come over any flow (the peers' own flows to this tunnel's name, and the
//! answers on this tunnel's flows) are written to the device.
//!
//! What goes over a flow is what the device reads: a `virtio_net_hdr` and a packet,
//! which may be a TCP stream's segments in one (see `device.rs`).
//!
//! A flow's application socket is a UDP socket on loopback connected to the runtime's
//! proxy for the flow, as an interposed program's is. A peer whose flow is refused is
//! not asked for again for [`REFUSED_HOLD`]; its packets are dropped meanwhile, as a
//! router without a route drops them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use runtime::config::tun::TunConfig;

use super::device::VNET_HDR;
use runtime::{AppEnd, ConnectRequest, FlowError, FlowInfo, Handle};
use rustix::event::{epoll, eventfd, EventfdFlags};
use rustix::net::{self, RecvFlags, SendFlags};

/// Packets held per peer while its flow is being made.
const MAX_QUEUED: usize = 64;
/// How long a peer whose flow was refused is not asked for again.
const REFUSED_HOLD: Duration = Duration::from_secs(1);

const TOKEN_TUN: u64 = 0;
const TOKEN_INCOMING: u64 = 1;
const TOKEN_WAKE: u64 = 2;
/// A peer's socket: this plus the peer's index.
const TOKEN_PEER: u64 = 1 << 32;

/// The destination address of an IPv4 or IPv6 packet.
pub(super) fn destination(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 => {
            let b: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        6 => {
            let b: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

enum State {
    /// No flow yet (or the refusal was long ago).
    Idle,
    /// The flow is being made: packets wait.
    Asking(Vec<Vec<u8>>),
    /// The flow is up: the socket is connected to its proxy.
    Up(OwnedFd),
    /// The flow was refused at this time.
    Refused(Instant),
}

/// Flows made (or refused) for peers, as the runtime reports them.
type Done = Arc<Mutex<Vec<(usize, OwnedFd, Result<FlowInfo, FlowError>)>>>;

/// The loop's state.
pub(super) struct Forwarder {
    handle: Handle,
    config: TunConfig,
    tun: OwnedFd,
    /// Where the peers' own flows to this tunnel deliver.
    incoming: OwnedFd,
    epoll: OwnedFd,
    waker: Arc<OwnedFd>,
    done: Done,
    peers: Vec<State>,
    buf: Vec<u8>,
}

impl Forwarder {
    pub(super) fn new(
        handle: Handle,
        config: TunConfig,
        tun: OwnedFd,
        incoming: OwnedFd,
    ) -> std::io::Result<Self> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let waker = Arc::new(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?);
        for (fd, token) in [
            (&tun, TOKEN_TUN),
            (&incoming, TOKEN_INCOMING),
            (&*waker, TOKEN_WAKE),
        ] {
            epoll::add(
                &epoll,
                fd,
                epoll::EventData::new_u64(token),
                epoll::EventFlags::IN,
            )?;
        }
        let peers = config.peers.iter().map(|_| State::Idle).collect();
        Ok(Self {
            handle,
            config,
            tun,
            incoming,
            epoll,
            waker,
            done: Arc::default(),
            peers,
            buf: vec![0; 65536],
        })
    }

    pub(super) fn run(mut self) {
        let mut events = Vec::with_capacity(64);
        loop {
            events.clear();
            match epoll::wait(
                &self.epoll,
                rustix::buffer::spare_capacity(&mut events),
                None,
            ) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    eprintln!("rina tun: its event loop failed: {e}");
                    return;
                }
            }
            for ev in &events {
                match ev.data.u64() {
                    TOKEN_TUN => self.read_device(),
                    TOKEN_INCOMING => self.write_device(None),
                    TOKEN_WAKE => self.settle(),
                    t => self.write_device(Some((t - TOKEN_PEER) as usize)),
                }
            }
        }
    }

    /// Packets the host sent into the device: each to its peer's flow.
    fn read_device(&mut self) {
        loop {
            let n = match rustix::io::read(&self.tun, &mut self.buf) {
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return,
            };
            let packet = &self.buf[..n];
            let ip = packet.get(VNET_HDR..).unwrap_or_default();
            let Some(i) = destination(ip).and_then(|d| self.config.peer_for(d)) else {
                continue;
            };
            match &mut self.peers[i] {
                State::Up(sock) => {
                    let _ = net::send(sock, packet, SendFlags::DONTWAIT);
                }
                State::Asking(q) if q.len() < MAX_QUEUED => q.push(packet.to_vec()),
                State::Asking(_) => {}
                State::Refused(at) if at.elapsed() < REFUSED_HOLD => {}
                State::Idle | State::Refused(_) => {
                    let first = packet.to_vec();
                    self.ask(i, first);
                }
            }
        }
    }

    /// Asks for the flow to peer `i`, `first` waiting for it.
    fn ask(&mut self, i: usize, first: Vec<u8>) {
        let Some((sock, app)) = crate::loopback::udp_socket() else {
            return;
        };
        self.peers[i] = State::Asking(vec![first]);
        let req = ConnectRequest {
            dif: self.config.dif,
            local_app: self.config.app.clone(),
            remote_app: self.config.peers[i].app.clone(),
            end: AppEnd::Datagram(app),
            view: None,
            recv_buffer: None,
            timeout: self.handle.config().settings.connect_timeout,
        };
        let (done, waker) = (self.done.clone(), self.waker.clone());
        self.handle.connect_then(req, move |r| {
            done.lock().push((i, sock, r));
            let _ = rustix::io::write(&*waker, &1u64.to_ne_bytes());
        });
    }

    /// The flows made (or refused) since the last call.
    fn settle(&mut self) {
        let mut b = [0u8; 8];
        let _ = rustix::io::read(&*self.waker, &mut b);
        let done: Vec<_> = std::mem::take(&mut *self.done.lock());
        for (i, sock, r) in done {
            let queued = match std::mem::replace(&mut self.peers[i], State::Refused(Instant::now()))
            {
                State::Asking(q) => q,
                other => {
                    self.peers[i] = other;
                    continue;
                }
            };
            let proxy = match r {
                Ok(FlowInfo { proxy: Some(p), .. }) => p,
                Ok(_) => continue,
                Err(e) => {
                    eprintln!("rina tun: no flow to {}: {e}", self.config.peers[i].app);
                    continue;
                }
            };
            let token = epoll::EventData::new_u64(TOKEN_PEER + i as u64);
            if net::connect(&sock, &proxy).is_err()
                || epoll::add(&self.epoll, &sock, token, epoll::EventFlags::IN).is_err()
            {
                continue;
            }
            for p in queued {
                let _ = net::send(&sock, &p, SendFlags::DONTWAIT);
            }
            self.peers[i] = State::Up(sock);
        }
    }

    /// Packets that came over a flow (peer `i`'s, or any peer's flow to this tunnel):
    /// into the device.
    fn write_device(&mut self, peer: Option<usize>) {
        let sock = match peer {
            None => &self.incoming,
            Some(i) => match self.peers.get(i) {
                Some(State::Up(s)) => s,
                _ => return,
            },
        };
        loop {
            match net::recv(sock, &mut self.buf, RecvFlags::DONTWAIT) {
                Ok((n, _)) if n > VNET_HDR && destination(&self.buf[VNET_HDR..n]).is_some() => {
                    let _ = rustix::io::write(&self.tun, &self.buf[..n]);
                }
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::destination;

    #[test]
    fn destinations_of_both_families() {
        let mut v4 = vec![0x45u8; 20];
        v4[16..20].copy_from_slice(&[10, 77, 0, 2]);
        assert_eq!(destination(&v4), Some("10.77.0.2".parse().unwrap()));
        let mut v6 = vec![0x60u8; 40];
        v6[24..40].copy_from_slice(&"fd77::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        assert_eq!(destination(&v6), Some("fd77::2".parse().unwrap()));
        assert_eq!(destination(&v4[..19]), None);
        assert_eq!(destination(&[0x50; 40]), None);
        assert_eq!(destination(&[]), None);
    }
}
