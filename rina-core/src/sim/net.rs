//! A deterministic network of whole stacks: [`Net`] drives [`Node`]s (each with its
//! shim layers and normal DIFs, DIFs over DIFs included) over in-memory UDP paths
//! that carry what the UDP shim carries: datagrams between endpoints, delayed,
//! jittered, lost, duplicated, or cut. A datagram to an endpoint nobody holds is
//! reported back to its sender as unreachable, as the kernel's ICMP error does on a
//! real link. Hosts crash and restart with fresh state under the same names. Nothing
//! reads a clock; a failing case replays from its seed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::time::Duration;

use core::net::SocketAddr;

use super::{LinkConfig, Stalled};
use crate::node::{LinkAddr, LinkId, Node, NodeEvent};
use crate::rand::Rng;
use crate::time::{earliest, Instant};

/// A datagram in flight: arrival, order of sending, from, to, bytes.
type Datagram = (Instant, u64, SocketAddr, SocketAddr, Vec<u8>);

/// One host of the network: a node and the UDP endpoints of its links.
#[derive(Debug)]
pub struct Host {
    /// Its stack.
    pub node: Node,
    /// What its node reported, oldest first (tests consume them).
    pub events: VecDeque<NodeEvent>,
    /// Its links' endpoints.
    endpoints: Vec<(LinkId, SocketAddr)>,
}

/// The network.
#[derive(Debug)]
pub struct Net {
    now: Instant,
    seed: u64,
    hosts: Vec<Option<Host>>,
    /// Endpoint -> (host, link).
    at: BTreeMap<SocketAddr, (usize, LinkId)>,
    queue: BinaryHeap<Reverse<Datagram>>,
    order: u64,
    path: LinkConfig,
    rng: Rng,
    /// Pairs of endpoints (lower first) whose path is cut.
    cut: BTreeSet<(SocketAddr, SocketAddr)>,
    trace: VecDeque<String>,
    buf: Vec<u8>,
    /// Datagrams delivered, lost.
    pub datagrams: (u64, u64),
    /// When set, every datagram put on a path is copied here (a capture, for tests
    /// that look at the wire).
    pub tap: Option<Vec<Vec<u8>>>,
}

impl Net {
    /// An empty network whose paths all behave as `path`; its dice derive from `seed`.
    pub fn new(seed: u64, path: LinkConfig) -> Self {
        Self {
            now: Instant::ZERO,
            seed,
            hosts: Vec::new(),
            at: BTreeMap::new(),
            queue: BinaryHeap::new(),
            order: 0,
            path,
            rng: Rng::new(seed ^ 0x6E65_7473_696D),
            cut: BTreeSet::new(),
            trace: VecDeque::new(),
            buf: Vec::new(),
            datagrams: (0, 0),
            tap: None,
        }
    }

    /// Virtual time now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The seed (print it when a test fails).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The last trace lines (events with their virtual times).
    pub fn trace(&self) -> Vec<String> {
        self.trace.iter().cloned().collect()
    }

    /// Adds a host whose links sit at `endpoints`; its index.
    pub fn add_host(&mut self, node: Node, endpoints: Vec<(LinkId, SocketAddr)>) -> usize {
        self.hosts.push(None);
        let h = self.hosts.len() - 1;
        self.restart(h, node, endpoints);
        h
    }

    /// Host `h` crashes: its state is gone, and datagrams to its endpoints find nobody.
    pub fn crash(&mut self, h: usize) {
        if let Some(old) = self.hosts[h].take() {
            for (_, a) in old.endpoints {
                self.at.remove(&a);
            }
            self.log(format!("{} host {h}: crashed", self.now));
        }
    }

    /// Host `h` starts afresh with `node` (a restarted member: same names, no state).
    pub fn restart(&mut self, h: usize, node: Node, endpoints: Vec<(LinkId, SocketAddr)>) {
        self.crash(h);
        for &(link, a) in &endpoints {
            self.at.insert(a, (h, link));
        }
        self.hosts[h] = Some(Host {
            node,
            events: VecDeque::new(),
            endpoints,
        });
    }

    /// Host `h` (panics if it crashed).
    pub fn host(&mut self, h: usize) -> &mut Host {
        self.hosts[h].as_mut().expect("the host is up")
    }

    /// True while host `h` is up.
    pub fn is_up(&self, h: usize) -> bool {
        self.hosts.get(h).is_some_and(Option::is_some)
    }

    /// Cuts the path between endpoints `a` and `b` (datagrams are lost both ways), or
    /// mends it.
    pub fn set_path_up(&mut self, a: SocketAddr, b: SocketAddr, up: bool) {
        let pair = if a <= b { (a, b) } else { (b, a) };
        if up {
            self.cut.remove(&pair);
        } else {
            self.cut.insert(pair);
        }
        self.log(format!("{} path {a} <-> {b} up: {up}", self.now));
    }

    fn log(&mut self, s: String) {
        if self.trace.len() == 64 {
            self.trace.pop_front();
        }
        self.trace.push_back(s);
    }

    /// Sends what every host has to send and collects what they report.
    fn flush(&mut self) {
        for h in 0..self.hosts.len() {
            loop {
                let now = self.now;
                let Some(host) = self.hosts[h].as_mut() else {
                    break;
                };
                let mut moved = false;
                let mut lines = Vec::new();
                while let Some(ev) = host.node.poll_event(now) {
                    moved = true;
                    lines.push(format!("{now} host {h}: {ev:?}"));
                    host.events.push_back(ev);
                }
                let mut out = Vec::new();
                while let Some(t) = host.node.poll_transmit(now, &mut self.buf) {
                    moved = true;
                    let from = host.endpoints.iter().find(|e| e.0 == t.link).map(|e| e.1);
                    if let (Some(from), LinkAddr::Udp(to)) = (from, t.to) {
                        let mut d = t.header.as_slice().to_vec();
                        d.extend_from_slice(&self.buf[t.payload]);
                        out.push((t.link, from, to, d));
                    }
                }
                for line in lines {
                    self.log(line);
                }
                for (link, from, to, d) in out {
                    self.send(h, link, from, to, d);
                }
                let Some(host) = self.hosts[h].as_ref() else {
                    break;
                };
                if !moved && !host.node.has_pending_output() {
                    break;
                }
            }
        }
    }

    /// Puts a datagram on the path from `from` (host `h`, its `link`) to `to`.
    fn send(&mut self, h: usize, link: LinkId, from: SocketAddr, to: SocketAddr, d: Vec<u8>) {
        if let Some(tap) = &mut self.tap {
            tap.push(d.clone());
        }
        let pair = if from <= to { (from, to) } else { (to, from) };
        if self.cut.contains(&pair) || d.len() > self.path.mtu || self.rng.chance(self.path.loss) {
            self.datagrams.1 += 1;
            return;
        }
        if !self.at.contains_key(&to) {
            // Nobody holds the endpoint: the sender hears so (ICMP port unreachable).
            self.datagrams.1 += 1;
            if let Some(host) = self.hosts[h].as_mut() {
                host.node.peer_unreachable(link, LinkAddr::Udp(to));
            }
            return;
        }
        let copies = if self.rng.chance(self.path.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = if self.path.jitter.is_zero() {
                Duration::ZERO
            } else {
                Duration::from_micros(self.rng.below(self.path.jitter.as_micros() as u64))
            };
            self.order += 1;
            let at = self.now + self.path.delay + jitter;
            self.queue
                .push(Reverse((at, self.order, from, to, d.clone())));
        }
    }

    /// Advances to the next arrival or deadline and handles everything due then. False
    /// when idle.
    pub fn step(&mut self) -> bool {
        self.flush();
        let mut next = self.queue.peek().map(|Reverse(d)| d.0);
        for host in self.hosts.iter().flatten() {
            next = earliest(next, host.node.poll_timeout());
        }
        let Some(next) = next else { return false };
        self.now = self.now.max(next);
        while self.queue.peek().is_some_and(|Reverse(d)| d.0 <= self.now) {
            let Some(Reverse((_, _, from, to, mut d))) = self.queue.pop() else {
                break;
            };
            let Some(&(h, link)) = self.at.get(&to) else {
                self.datagrams.1 += 1;
                continue; // its host crashed on the way
            };
            self.datagrams.0 += 1;
            let now = self.now;
            let Some(host) = self.hosts[h].as_mut() else {
                continue;
            };
            // A PDU relayed at once leaves from the same buffer, as in the runtime.
            if let Some(t) = host
                .node
                .handle_link(now, link, LinkAddr::Udp(from), &mut d)
            {
                let out = host.endpoints.iter().find(|e| e.0 == t.link).map(|e| e.1);
                if let (Some(out_from), LinkAddr::Udp(next_to)) = (out, t.to) {
                    let mut fwd = t.header.as_slice().to_vec();
                    fwd.extend_from_slice(&d[t.payload]);
                    self.send(h, t.link, out_from, next_to, fwd);
                }
            }
        }
        let now = self.now;
        for host in self.hosts.iter_mut().flatten() {
            if host.node.poll_timeout().is_some_and(|t| t <= now) {
                host.node.handle_timeout(now);
            }
        }
        self.flush();
        true
    }

    /// Steps until `done` holds, failing past virtual time `limit`.
    ///
    /// # Errors
    /// [`Stalled`] with the time reached and the tail of the trace.
    pub fn run_until(
        &mut self,
        limit: Instant,
        done: impl FnMut(&mut Self) -> bool,
    ) -> Result<(), Stalled> {
        super::run_until(self, limit, 10_000_000, done)
    }

    /// Runs until virtual time `until` (or until idle).
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        let _ = self.run_until(until, |n| n.now >= until);
    }
}

impl super::Stepped for Net {
    fn now(&self) -> Instant {
        self.now
    }
    fn trace(&self) -> Vec<String> {
        Net::trace(self)
    }
    fn step(&mut self) -> bool {
        Net::step(self)
    }
}
