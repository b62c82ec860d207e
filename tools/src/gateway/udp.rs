//! UDP ingress: each client address that sends to an ingress rule's UDP socket gets
//! an unreliable flow to the rule's application. The flow's application socket is a
//! UDP socket of this process on loopback, connected to the runtime's proxy for the
//! flow (as an interposed program's socket is, see the runtime's `datagram.rs`):
//! datagrams from the client go out through it, and what comes back is sent to the
//! client from the rule's address, so the client sees its replies come from where it
//! sent.
//!
//! Bounded as a NAT is: at most [`MAX_PEERS`] clients at a time (datagrams from
//! more are dropped), at most [`MAX_QUEUED`] datagrams held per client while its
//! flow is being made ([`MAX_QUEUED_BYTES`] for all), and a client silent both ways
//! for [`UDP_IDLE`] is forgotten (its flow released). A client whose flow is refused is not asked for again for
//! [`REFUSED_HOLD`]; its datagrams are dropped meanwhile, as a network drops them.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use runtime::config::UDP_IDLE;
use runtime::{AppEnd, ConnectRequest, FlowError, FlowInfo, Handle};
use rustix::event::{epoll, eventfd, EventfdFlags};
use rustix::net::{self, RecvFlags, SendFlags, SocketFlags};

use super::{Bound, TOKEN_PEER};

/// Clients served at a time, over every UDP ingress rule.
pub(super) const MAX_PEERS: usize = 4096;
/// Datagrams held per client while its flow is being made.
pub(super) const MAX_QUEUED: usize = 64;
/// Bytes held for all clients while their flows are being made (UDP sources are
/// easily forged: what they make this process hold is bounded).
pub(super) const MAX_QUEUED_BYTES: usize = 16 << 20;
/// How long a client whose flow was refused is not asked for again.
pub(super) const REFUSED_HOLD: Duration = Duration::from_secs(1);
/// How often idle clients are looked for.
const SWEEP: Duration = Duration::from_secs(1);

/// Flows made (or refused) for clients, as the runtime reports them.
type Done = Arc<Mutex<Vec<(u64, Result<FlowInfo, FlowError>)>>>;

enum State {
    /// The flow is being made: datagrams wait.
    Asking(Vec<Vec<u8>>),
    /// The flow is up: the socket is connected to its proxy.
    Up,
    /// The flow was refused (or could not be used) at this time.
    Refused(Instant),
}

struct Peer {
    rule: usize,
    client: SocketAddr,
    /// The flow's application socket.
    sock: OwnedFd,
    app: SocketAddr,
    state: State,
    last: Instant,
}

/// Every UDP client of every UDP ingress rule.
pub(super) struct Peers {
    waker: Arc<OwnedFd>,
    done: Done,
    peers: HashMap<u64, Peer>,
    by_client: HashMap<(usize, SocketAddr), u64>,
    next: u64,
    next_sweep: Instant,
    /// Bytes held in [`State::Asking`] queues.
    queued: usize,
    buf: Vec<u8>,
}

impl Peers {
    pub(super) fn new() -> std::io::Result<Self> {
        let waker = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Self {
            waker: Arc::new(waker),
            done: Arc::default(),
            peers: HashMap::new(),
            by_client: HashMap::new(),
            next: 0,
            next_sweep: Instant::now() + SWEEP,
            queued: 0,
            buf: vec![0; 65536],
        })
    }

    /// What wakes the loop when a client's flow is made.
    pub(super) fn waker(&self) -> &OwnedFd {
        &self.waker
    }

    /// The loop's time-out: the next sweep, while there are clients.
    pub(super) fn next_expiry_ms(&self) -> Option<u64> {
        if self.peers.is_empty() {
            return None;
        }
        let left = self.next_sweep.saturating_duration_since(Instant::now());
        Some(left.as_millis() as u64 + 1)
    }

    /// Datagrams from clients on rule `index`'s socket.
    pub(super) fn take_clients(&mut self, handle: &Handle, index: usize, rules: &[Bound]) {
        let Some(b) = rules.get(index) else { return };
        loop {
            let (n, from) = match net::recvfrom(&b.sock, &mut self.buf, RecvFlags::DONTWAIT) {
                Ok((n, _, Some(from))) => (n, from),
                Ok(_) | Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return,
            };
            let Ok(client) = SocketAddr::try_from(from) else {
                continue;
            };
            let id = match self.by_client.get(&(index, client)) {
                Some(&id) => id,
                None => match self.add(handle, b, index, client) {
                    Some(id) => id,
                    None => continue,
                },
            };
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            let data = &self.buf[..n];
            match &mut p.state {
                State::Asking(q) if q.len() < MAX_QUEUED && self.queued + n <= MAX_QUEUED_BYTES => {
                    self.queued += n;
                    q.push(data.to_vec());
                }
                State::Up => {
                    p.last = Instant::now();
                    let _ = net::send(&p.sock, data, SendFlags::DONTWAIT);
                }
                State::Asking(_) | State::Refused(_) => {}
            }
        }
    }

    /// A new client: its socket, and the flow asked for.
    fn add(&mut self, handle: &Handle, b: &Bound, index: usize, client: SocketAddr) -> Option<u64> {
        if self.peers.len() >= MAX_PEERS {
            return None;
        }
        let (sock, app) = loopback_socket()?;
        let id = self.next;
        self.next += 1;
        let req = ConnectRequest {
            dif: b.rule.dif,
            local_app: b.rule.local_app.clone(),
            remote_app: b.rule.app.clone(),
            end: AppEnd::Datagram(app),
            view: None,
            recv_buffer: None,
            timeout: handle.config().settings.connect_timeout,
        };
        self.peers.insert(
            id,
            Peer {
                rule: index,
                client,
                sock,
                app,
                state: State::Asking(Vec::new()),
                last: Instant::now(),
            },
        );
        self.by_client.insert((index, client), id);
        let (done, waker) = (self.done.clone(), self.waker.clone());
        handle.connect_then(req, move |r| {
            done.lock().push((id, r));
            let _ = rustix::io::write(&*waker, &1u64.to_ne_bytes());
        });
        Some(id)
    }

    /// The flows made (or refused) since the last call.
    pub(super) fn settle(&mut self, handle: &Handle, epoll: &OwnedFd, rules: &[Bound]) {
        let mut b = [0u8; 8];
        let _ = rustix::io::read(&*self.waker, &mut b);
        let done: Vec<_> = std::mem::take(&mut *self.done.lock());
        for (id, r) in done {
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            let now = Instant::now();
            let queued = match std::mem::replace(&mut p.state, State::Refused(now)) {
                State::Asking(q) => q,
                other => {
                    p.state = other;
                    continue;
                }
            };
            self.queued -= queued.iter().map(Vec::len).sum::<usize>();
            p.last = now;
            let Ok(FlowInfo {
                proxy: Some(proxy), ..
            }) = r
            else {
                if r.is_ok() {
                    handle.release_datagram(p.app);
                }
                if let Err(e) = &r {
                    let rule = rules.get(p.rule).map_or(0, |b| b.rule.line);
                    eprintln!(
                        "rina gateway: no flow for UDP client {} (ingress rule on line {rule}): {e}",
                        p.client
                    );
                }
                continue;
            };
            let watched = epoll::add(
                epoll,
                &p.sock,
                epoll::EventData::new_u64(TOKEN_PEER | id),
                epoll::EventFlags::IN,
            );
            if net::connect(&p.sock, &proxy).is_err() || watched.is_err() {
                // The flow is up but cannot be used: it goes now (refused meanwhile).
                let _ = epoll::delete(epoll, p.sock.as_fd());
                handle.release_datagram(p.app);
                continue;
            }
            p.state = State::Up;
            for d in queued {
                let _ = net::send(&p.sock, &d, SendFlags::DONTWAIT);
            }
        }
    }

    /// Datagrams the flow of client `id` delivered: to the client, from its rule's
    /// address.
    pub(super) fn take_flow(&mut self, id: u64, rules: &[Bound]) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(b) = rules.get(p.rule) else { return };
        loop {
            match net::recv(&p.sock, &mut self.buf, RecvFlags::DONTWAIT) {
                Ok((n, _)) => {
                    p.last = Instant::now();
                    let _ = net::sendto(&b.sock, &self.buf[..n], SendFlags::DONTWAIT, &p.client);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return,
            }
        }
    }

    /// Forgets the clients silent for [`UDP_IDLE`] (their flows are released) and
    /// the refusals older than [`REFUSED_HOLD`].
    pub(super) fn expire(&mut self, handle: &Handle, epoll: &OwnedFd) {
        let now = Instant::now();
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP;
        let gone: Vec<u64> = self
            .peers
            .iter()
            .filter(|(_, p)| match p.state {
                State::Up => now.duration_since(p.last) >= UDP_IDLE,
                State::Refused(at) => now.duration_since(at) >= REFUSED_HOLD,
                State::Asking(_) => false,
            })
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            if let Some(p) = self.peers.remove(&id) {
                self.by_client.remove(&(p.rule, p.client));
                if matches!(p.state, State::Up) {
                    let _ = epoll::delete(epoll, p.sock.as_fd());
                    handle.release_datagram(p.app);
                }
            }
        }
    }
}

/// A client's flow's application socket: a nonblocking UDP socket on 127.0.0.1 with a
/// port of the kernel's choice, and its address.
fn loopback_socket() -> Option<(OwnedFd, SocketAddr)> {
    let sock = net::socket_with(
        net::AddressFamily::INET,
        net::SocketType::DGRAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .ok()?;
    net::bind(&sock, &SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).ok()?;
    let at = net::getsockname(&sock)
        .ok()
        .and_then(|a| SocketAddr::try_from(a).ok())?;
    Some((sock, at))
}
