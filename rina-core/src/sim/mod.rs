//! A deterministic network simulator for IPC processes (DESIGN.md D2).
//!
//! [`Sim`] holds IPC processes joined by links that delay, jitter (which reorders),
//! lose, duplicate and corrupt PDUs, limit their size and go up and down. Each
//! direction of each link has its own RNG seeded from (seed, link, direction), so
//! adding a link does not change the dice of the others. Virtual time jumps to the
//! next event: a frame arrival or a protocol deadline. Nothing reads a clock, so a
//! failing case replays exactly from its seed.
//!
//! [`Net`] does the same for whole stacks ([`crate::node::Node`]s: shim layers,
//! normal DIFs, DIFs over DIFs) over in-memory UDP paths.

mod net;
mod scenario;

pub use net::{Host, Net};
pub use scenario::{transfer, TransferReport};

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, VecDeque};
use std::time::Duration;

use crate::ipcp::{Event, IpcProcess, IpcpConfig};
use crate::rand::Rng;
use crate::time::{earliest, Instant};
use crate::N1Port;

/// A frame in flight: arrival, order of sending, node, N-1 port, bytes.
type Frame = (Instant, u64, usize, N1Port, Vec<u8>);

/// Impairments of one link (both directions).
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// One-way delay.
    pub delay: Duration,
    /// Extra random delay in `0..jitter` per frame (reorders frames).
    pub jitter: Duration,
    /// Probability a frame is lost.
    pub loss: f64,
    /// Probability a frame is delivered twice.
    pub duplicate: f64,
    /// Probability one bit of a frame is flipped.
    pub corrupt: f64,
    /// Largest frame; larger ones are dropped.
    pub mtu: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            delay: Duration::from_millis(1),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            corrupt: 0.0,
            mtu: 1500,
        }
    }
}

/// A node of the simulation.
#[derive(Debug)]
pub struct Node {
    /// Its IPC process.
    pub ipcp: IpcProcess,
    /// Events it emitted, oldest first (the scenario consumes them).
    pub events: VecDeque<Event>,
    /// N-1 port -> (link, direction index of the far end).
    ports: Vec<(N1Port, usize, usize)>,
}

#[derive(Debug)]
struct Link {
    ends: [(usize, N1Port); 2],
    cfg: LinkConfig,
    rng: [Rng; 2],
    up: bool,
    stats: LinkStats,
}

/// What one link carried (both directions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames delivered.
    pub frames: u64,
    /// Of them, frames of the neighbours' management connection (enrollment,
    /// directory, link state, keepalives: destination address 0).
    pub neighbor_frames: u64,
}

/// Why [`Sim::run_until`] gave up.
#[derive(Clone, Debug)]
pub struct Stalled {
    /// Virtual time reached.
    pub now: Instant,
    /// The last trace lines.
    pub trace: Vec<String>,
}

/// The simulator.
#[derive(Debug)]
pub struct Sim {
    now: Instant,
    seed: u64,
    nodes: Vec<Node>,
    links: Vec<Link>,
    /// Frames in flight: (arrival, order, node, port, bytes).
    queue: BinaryHeap<Reverse<Frame>>,
    order: u64,
    trace: VecDeque<String>,
    buf: Vec<u8>,
    /// Frames delivered, dropped by the link.
    pub frames: (u64, u64),
    /// Nodes touched since they were last flushed (and a flag per node).
    dirty: Vec<usize>,
    is_dirty: Vec<bool>,
    /// Each node's next deadline, and all of them in order.
    deadline: Vec<Option<Instant>>,
    deadlines: BTreeSet<(Instant, usize)>,
    /// Nodes taken out of the simulation (see [`Sim::retire`]).
    retired: Vec<bool>,
}

impl Sim {
    /// An empty simulation whose randomness derives from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            now: Instant::ZERO,
            seed,
            nodes: Vec::new(),
            links: Vec::new(),
            queue: BinaryHeap::new(),
            order: 0,
            trace: VecDeque::new(),
            buf: Vec::new(),
            frames: (0, 0),
            dirty: Vec::new(),
            is_dirty: Vec::new(),
            deadline: Vec::new(),
            deadlines: BTreeSet::new(),
            retired: Vec::new(),
        }
    }

    /// Virtual time now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The last trace lines (events with their virtual times).
    pub fn trace(&self) -> Vec<String> {
        self.trace.iter().cloned().collect()
    }

    /// The seed (print it when a test fails).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Adds an IPC process; returns its index.
    pub fn add_node(&mut self, mut cfg: IpcpConfig) -> usize {
        cfg.seed ^= self.seed.rotate_left(17)
            ^ (self.nodes.len() as u64).wrapping_mul(0xA24B_AED4_963E_E407);
        self.nodes.push(Node {
            ipcp: IpcProcess::new(cfg, self.now),
            events: VecDeque::new(),
            ports: Vec::new(),
        });
        self.is_dirty.push(false);
        self.deadline.push(None);
        self.retired.push(false);
        let i = self.nodes.len() - 1;
        self.touch(i);
        i
    }

    /// The node at `i` (what the caller does to it is flushed at the next step).
    pub fn node(&mut self, i: usize) -> &mut Node {
        self.touch(i);
        &mut self.nodes[i]
    }

    /// The node at `i`, to look at only.
    pub fn peek(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// Takes node `i` out for good, as a process that exits: its links go down, its
    /// timers stop, and it costs the simulation nothing from now on.
    pub fn retire(&mut self, i: usize) {
        self.retired[i] = true;
        if let Some(t) = self.deadline[i].take() {
            self.deadlines.remove(&(t, i));
        }
        for &(_, link, _) in &self.nodes[i].ports {
            self.links[link].up = false;
        }
    }

    /// What link `link` carried.
    pub fn link_stats(&self, link: usize) -> LinkStats {
        self.links[link].stats
    }

    fn touch(&mut self, i: usize) {
        if !self.is_dirty[i] {
            self.is_dirty[i] = true;
            self.dirty.push(i);
        }
    }

    /// Joins `a` and `b` with a link; `a` initiates (enrolls or says hello).
    pub fn link(&mut self, a: usize, b: usize, cfg: LinkConfig) -> usize {
        let id = self.links.len();
        let pa = N1Port(self.nodes[a].ports.len() as u32 + 1);
        let pb = N1Port(self.nodes[b].ports.len() as u32 + 1);
        self.nodes[a].ports.push((pa, id, 1));
        self.nodes[b].ports.push((pb, id, 0));
        let mut r = Rng::new(self.seed ^ (id as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
        let mtu = cfg.mtu;
        self.links.push(Link {
            ends: [(a, pa), (b, pb)],
            cfg,
            rng: [r.fork(0), r.fork(1)],
            up: true,
            stats: LinkStats::default(),
        });
        self.touch(a);
        self.touch(b);
        let now = self.now;
        self.nodes[b].ipcp.add_n1_port(now, pb, mtu, false);
        self.nodes[a].ipcp.add_n1_port(now, pa, mtu, true);
        id
    }

    /// Takes a link down (frames are lost) or brings it back.
    pub fn set_link_up(&mut self, link: usize, up: bool) {
        self.links[link].up = up;
    }

    /// Sets the probability that a frame on `link` is lost, from now on (both ways).
    pub fn set_link_loss(&mut self, link: usize, loss: f64) {
        self.links[link].cfg.loss = loss;
    }

    fn log(&mut self, s: String) {
        if self.trace.len() == 64 {
            self.trace.pop_front();
        }
        self.trace.push_back(s);
    }

    /// Sends what every node touched has to send, schedules arrivals, collects
    /// events, and notes its next deadline.
    fn flush(&mut self) {
        while let Some(n) = self.dirty.pop() {
            self.is_dirty[n] = false;
            if self.retired[n] {
                continue;
            }
            while let Some(port) = self.nodes[n].ipcp.poll_transmit(self.now, &mut self.buf) {
                let Some(&(_, link, far)) = port_of(&self.nodes[n].ports, port) else {
                    continue;
                };
                let frame = std::mem::take(&mut self.buf);
                self.transmit(link, far, frame);
            }
            while let Some(ev) = self.nodes[n].ipcp.poll_event() {
                let line = format!("{} node {n}: {ev:?}", self.now);
                self.log(line);
                self.nodes[n].events.push_back(ev);
            }
            let next = self.nodes[n].ipcp.poll_timeout();
            if self.deadline[n] != next {
                if let Some(t) = self.deadline[n] {
                    self.deadlines.remove(&(t, n));
                }
                if let Some(t) = next {
                    self.deadlines.insert((t, n));
                }
                self.deadline[n] = next;
            }
        }
    }

    fn transmit(&mut self, link: usize, far: usize, mut frame: Vec<u8>) {
        let now = self.now;
        let l = &mut self.links[link];
        let rng = &mut l.rng[far];
        let (node, port) = l.ends[far];
        if !l.up || frame.len() > l.cfg.mtu || rng.chance(l.cfg.loss) {
            self.frames.1 += 1;
            return;
        }
        if rng.chance(l.cfg.corrupt) && !frame.is_empty() {
            let bit = rng.below(frame.len() as u64 * 8);
            frame[(bit / 8) as usize] ^= 1 << (bit % 8);
        }
        let copies = if rng.chance(l.cfg.duplicate) { 2 } else { 1 };
        for _ in 0..copies {
            let jitter = if l.cfg.jitter.is_zero() {
                Duration::ZERO
            } else {
                Duration::from_micros(rng.below(l.cfg.jitter.as_micros() as u64))
            };
            self.order += 1;
            self.queue.push(Reverse((
                now + l.cfg.delay + jitter,
                self.order,
                node,
                port,
                frame.clone(),
            )));
        }
    }

    /// Advances to the next event and handles everything due then. False when idle
    /// (nothing in flight and no deadline).
    pub fn step(&mut self) -> bool {
        self.flush();
        let Some(next) = self.next_event() else {
            return false;
        };
        self.now = self.now.max(next);
        while self.queue.peek().is_some_and(|Reverse(f)| f.0 <= self.now) {
            let Some(Reverse((_, _, node, port, frame))) = self.queue.pop() else {
                break;
            };
            if self.retired[node] {
                continue;
            }
            self.frames.0 += 1;
            self.count(node, port, &frame);
            self.touch(node);
            // Odd nodes take PDUs in place, as the runtime does from a shim (relayed
            // PDUs leave at once); even ones by reference, as from a DIF below.
            if node % 2 == 1 {
                let mut frame = frame;
                let n = &mut self.nodes[node];
                if let Some(out) = n.ipcp.handle_pdu_in_place(self.now, port, &mut frame) {
                    if let Some(&(_, link, far)) = port_of(&n.ports, out) {
                        self.transmit(link, far, frame);
                    }
                }
            } else {
                self.nodes[node].ipcp.handle_pdu(self.now, port, &frame);
            }
        }
        while let Some(&(t, n)) = self.deadlines.first() {
            if t > self.now {
                break;
            }
            self.deadlines.remove(&(t, n));
            self.deadline[n] = None;
            self.nodes[n].ipcp.handle_timeout(self.now);
            self.touch(n);
        }
        self.flush();
        true
    }

    /// When the next frame arrives or the next deadline is due.
    fn next_event(&self) -> Option<Instant> {
        let next = self.queue.peek().map(|Reverse(f)| f.0);
        earliest(next, self.deadlines.first().map(|&(t, _)| t))
    }

    /// Runs everything due up to `t`, then sets the clock to `t` (a quiet network
    /// does not jump past it).
    pub fn advance_to(&mut self, t: Instant) {
        self.flush();
        while self.next_event().is_some_and(|n| n <= t) {
            self.step();
        }
        self.now = self.now.max(t);
    }

    /// Counts a frame delivered to `node` on `port` in its link's figures.
    fn count(&mut self, node: usize, port: N1Port, frame: &[u8]) {
        if let Some(&(_, link, _)) = port_of(&self.nodes[node].ports, port) {
            let neighbor = crate::wire::Pci::parse(frame)
                .is_ok_and(|(pci, _)| pci.dst_addr == crate::Address::NONE);
            let s = &mut self.links[link].stats;
            s.frames += 1;
            s.neighbor_frames += u64::from(neighbor);
        }
    }

    /// Steps until `done` holds, failing past virtual time `limit` or `max_steps`.
    ///
    /// # Errors
    /// [`Stalled`] with the time reached and the tail of the trace.
    pub fn run_until(
        &mut self,
        limit: Instant,
        max_steps: u64,
        done: impl FnMut(&mut Self) -> bool,
    ) -> Result<(), Stalled> {
        run_until(self, limit, max_steps, done)
    }
}

/// The link of N-1 port `port` (ports are numbered from 1 in the order links were
/// added).
fn port_of(ports: &[(N1Port, usize, usize)], port: N1Port) -> Option<&(N1Port, usize, usize)> {
    ports.get((port.0 as usize).checked_sub(1)?)
}

/// What [`run_until`] needs of a simulation.
trait Stepped {
    fn now(&self) -> Instant;
    fn trace(&self) -> Vec<String>;
    /// Advances to the next event; false when idle.
    fn step(&mut self) -> bool;
}

impl Stepped for Sim {
    fn now(&self) -> Instant {
        self.now
    }
    fn trace(&self) -> Vec<String> {
        Sim::trace(self)
    }
    fn step(&mut self) -> bool {
        Sim::step(self)
    }
}

/// Steps `s` until `done` holds, failing past virtual time `limit` or `max_steps`
/// (a deadline that never moves must fail a test, not hang it).
fn run_until<S: Stepped>(
    s: &mut S,
    limit: Instant,
    max_steps: u64,
    mut done: impl FnMut(&mut S) -> bool,
) -> Result<(), Stalled> {
    for _ in 0..max_steps {
        if done(s) {
            return Ok(());
        }
        if s.now() > limit || !s.step() {
            break;
        }
    }
    if done(s) {
        return Ok(());
    }
    Err(Stalled {
        now: s.now(),
        trace: s.trace(),
    })
}
