//! Scale, in the simulator: leaves cost the DIF nothing when they come and go, the
//! link-state database holds live members only, and routes are computed once per
//! topology change, not per leaf.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use rina_core::ipcp::{Event, FlowKind, IpcpConfig, ReadResult};
use rina_core::rand::Rng;
use rina_core::sim::{LinkConfig, Sim};
use rina_core::{Address, ApplicationName};

/// Keepalives of the scale test: rare, so that what the links carry is what joins
/// and leaves cost.
const RARE: Duration = Duration::from_secs(600);

/// A member of the test DIF, with keepalives every `keepalive`.
fn cfg(name: String, bootstrap: bool, leaf: bool, keepalive: Duration) -> IpcpConfig {
    let mut c = IpcpConfig::new("net", ApplicationName::new(name), 0);
    if bootstrap {
        c.bootstrap = Some(Address(1));
    }
    c.leaf = leaf;
    c.keepalive_interval = keepalive;
    c
}

/// Runs in steps of 50 ms of virtual time until `done` holds, at most `limit`.
fn settle(sim: &mut Sim, limit: Duration, what: &str, mut done: impl FnMut(&Sim) -> bool) {
    let until = sim.now() + limit;
    while !done(sim) {
        assert!(
            sim.now() < until,
            "seed {}: {what}: not done by {}",
            sim.seed(),
            sim.now()
        );
        let next = sim.now() + Duration::from_millis(50);
        sim.advance_to(next);
    }
}

/// A DIF of full members: a random graph of degree at most 4.
struct Dif {
    sim: Sim,
    members: Vec<usize>,
    /// Links between members (leaves' links are not among them).
    links: Vec<usize>,
    rng: Rng,
    keepalive: Duration,
}

impl Dif {
    /// `n` members: each enrolls through a random earlier one with room (50 at a
    /// time), then `n / 8` more adjacencies between members with room.
    fn build(seed: u64, n: usize, keepalive: Duration) -> Self {
        let mut sim = Sim::new(seed);
        let mut rng = Rng::new(seed ^ 0x5ca1e);
        let mut degree = vec![0usize; n];
        let mut members = vec![sim.add_node(cfg("m0".into(), true, false, keepalive))];
        let mut links = Vec::new();
        let mut pairs = BTreeSet::new();
        while members.len() < n {
            // Up to 50 at a time, each through an enrolled member with room.
            let enrolled = members.len();
            for _ in 0..50.min(n - enrolled) {
                let room: Vec<usize> = (0..enrolled).filter(|&j| degree[j] < 4).collect();
                let Some(&j) = room.get(rng.below(room.len().max(1) as u64) as usize) else {
                    break;
                };
                let k = members.len();
                let node = sim.add_node(cfg(format!("m{k}"), false, false, keepalive));
                members.push(node);
                links.push(sim.link(node, members[j], LinkConfig::default()));
                pairs.insert((j, k));
                degree[j] += 1;
                degree[k] += 1;
            }
            let joining = members.clone();
            settle(&mut sim, Duration::from_secs(30), "a wave joins", |s| {
                joining.iter().all(|&m| s.peek(m).ipcp.is_enrolled())
            });
        }
        for _ in 0..members.len() / 8 {
            let (a, b) = (
                rng.below(members.len() as u64) as usize,
                rng.below(members.len() as u64) as usize,
            );
            if a == b || degree[a] >= 4 || degree[b] >= 4 || !pairs.insert((a.min(b), a.max(b))) {
                continue;
            }
            links.push(sim.link(members[a], members[b], LinkConfig::default()));
            degree[a] += 1;
            degree[b] += 1;
        }
        let mut dif = Self {
            sim,
            members,
            links,
            rng,
            keepalive,
        };
        dif.converge("the DIF converges");
        dif
    }

    /// Waits until every member's database holds exactly the live members and each
    /// reaches every other.
    fn converge(&mut self, what: &str) {
        let done = self.converged();
        settle(&mut self.sim, Duration::from_secs(60), what, done);
    }

    /// True when every member's database holds exactly the live members and each
    /// reaches every other.
    fn converged(&self) -> impl Fn(&Sim) -> bool {
        let live: BTreeSet<Address> = self
            .members
            .iter()
            .map(|&m| self.sim.peek(m).ipcp.address().expect("enrolled"))
            .collect();
        let members = self.members.clone();
        move |s: &Sim| {
            members.iter().all(|&m| {
                let i = &s.peek(m).ipcp;
                i.lsdb_len() == live.len()
                    && i.lsdb_members().into_iter().collect::<BTreeSet<_>>() == live
                    && i.forwarding_table().len() == live.len() - 1
            })
        }
    }

    fn member_frames(&self) -> (u64, u64) {
        self.links.iter().fold((0, 0), |(f, n), &l| {
            let s = self.sim.link_stats(l);
            (f + s.frames, n + s.neighbor_frames)
        })
    }

    fn computations(&self) -> Vec<u64> {
        self.members
            .iter()
            .map(|&m| self.sim.peek(m).ipcp.counters().route_computations)
            .collect()
    }
}

/// What one wave of leaves cost the links between members.
#[derive(Debug)]
struct Wave {
    /// Frames of the members' management connections (enrollment, directory, link
    /// state), per leaf that joined and left.
    control_per_leaf: f64,
    /// Every frame (the flows' data included), per leaf.
    frames_per_leaf: f64,
}

impl Dif {
    /// `count` leaves join, each through a random member; each allocates a flow to
    /// `echo` (at member `server`), sends 64 bytes that arrive whole, closes the flow
    /// and leaves with a goodbye; then they are gone.
    fn wave(&mut self, wave: usize, count: usize, server: usize) -> Wave {
        let before = self.member_frames();
        let echo = ApplicationName::new("echo");
        let mut leaves = Vec::new();
        for k in 0..count {
            let j = self.members[self.rng.below(self.members.len() as u64) as usize];
            let leaf =
                self.sim
                    .add_node(cfg(format!("leaf{wave}.{k}"), false, true, self.keepalive));
            self.sim.link(leaf, j, LinkConfig::default());
            leaves.push(leaf);
        }
        settle(&mut self.sim, Duration::from_secs(30), "leaves join", |s| {
            leaves.iter().all(|&l| s.peek(l).ipcp.is_enrolled())
        });
        let now = self.sim.now();
        let ports: Vec<_> = leaves
            .iter()
            .map(|&l| {
                let ipcp = &mut self.sim.node(l).ipcp;
                let me = ApplicationName::new(format!("client{l}"));
                ipcp.allocate_flow(
                    now,
                    me,
                    echo.clone(),
                    FlowKind::Reliable,
                    now + Duration::from_secs(20),
                )
            })
            .collect();
        let up = |s: &Sim, l: usize, p| {
            s.peek(l)
                .events
                .iter()
                .any(|e| *e == Event::FlowAllocated { port: p })
        };
        settle(
            &mut self.sim,
            Duration::from_secs(30),
            "flows are up",
            |s| leaves.iter().zip(&ports).all(|(&l, &p)| up(s, l, p)),
        );
        let now = self.sim.now();
        for (&l, &p) in leaves.iter().zip(&ports) {
            let msg = format!("{l:>64}");
            self.sim.node(l).ipcp.write(now, p, msg.as_bytes()).unwrap();
        }
        // The server reads every flow's 64 bytes: each leaf's, whole.
        let mut got = BTreeSet::new();
        let mut incoming = Vec::new();
        let until = self.sim.now() + Duration::from_secs(30);
        while got.len() < leaves.len() {
            assert!(
                self.sim.now() < until,
                "seed {}: the server got {} of {}",
                self.sim.seed(),
                got.len(),
                leaves.len()
            );
            let next = self.sim.now() + Duration::from_millis(50);
            self.sim.advance_to(next);
            let now = self.sim.now();
            let srv = self.sim.node(server);
            while let Some(e) = srv.events.pop_front() {
                if let Event::IncomingFlow { port, .. } = e {
                    incoming.push(port);
                }
            }
            incoming.retain(|&p| match srv.ipcp.read(now, p) {
                ReadResult::Sdu(v) => {
                    let text = String::from_utf8(v).expect("text");
                    assert_eq!(text.len(), 64, "whole");
                    got.insert(text.trim().parse::<usize>().expect("a leaf"));
                    srv.ipcp.deallocate(now, p);
                    false
                }
                _ => true,
            });
        }
        assert_eq!(got, leaves.iter().copied().collect(), "every leaf's bytes");
        let now = self.sim.now();
        for (&l, &p) in leaves.iter().zip(&ports) {
            let ipcp = &mut self.sim.node(l).ipcp;
            ipcp.deallocate(now, p);
            ipcp.leave(now);
        }
        // Their goodbyes reach their enrollers; then the leaves are gone.
        let members = self.members.clone();
        settle(
            &mut self.sim,
            Duration::from_secs(30),
            "the leaves are forgotten",
            |s| members.iter().all(|&m| s.peek(m).ipcp.leaves().is_empty()),
        );
        for &l in &leaves {
            self.sim.retire(l);
        }
        let after = self.member_frames();
        Wave {
            control_per_leaf: (after.1 - before.1) as f64 / count as f64,
            frames_per_leaf: (after.0 - before.0) as f64 / count as f64,
        }
    }
}

/// Waves of leaves in a DIF of `n` members: what each leaf costs the links between
/// members, and route computations before and after.
fn leaves_in_waves(seed: u64, n: usize, waves: usize, per_wave: usize) -> Vec<Wave> {
    let mut dif = Dif::build(seed, n, RARE);
    let server = dif.members[n / 2];
    let now = dif.sim.now();
    dif.sim
        .node(server)
        .ipcp
        .register(now, ApplicationName::new("echo"))
        .unwrap();
    let members = dif.members.clone();
    settle(
        &mut dif.sim,
        Duration::from_secs(10),
        "echo is known",
        |s| {
            members.iter().all(|&m| {
                !s.peek(m)
                    .ipcp
                    .directory()
                    .lookup(&ApplicationName::new("echo"))
                    .is_empty()
            })
        },
    );
    let computed = dif.computations();
    let costs: Vec<Wave> = (0..waves).map(|w| dif.wave(w, per_wave, server)).collect();
    // Routes were not computed once more for any leaf, at any member.
    assert_eq!(
        dif.computations(),
        computed,
        "seed {seed}: leaves cost route computations"
    );
    // Every member's database holds exactly the live members, and its directory
    // only the server's name (the leaves registered nothing).
    dif.converge("the databases hold the members only");
    for &m in &dif.members {
        let i = &dif.sim.peek(m).ipcp;
        assert_eq!(i.directory().live().count(), 1, "seed {seed}");
    }
    // A change of topology costs each member a computation or two, however many
    // advertisements it brings.
    let before = dif.computations();
    let (a, b) = (dif.members[1], dif.members[n - 1]);
    let link = dif.sim.link(a, b, LinkConfig::default());
    dif.links.push(link);
    settle(
        &mut dif.sim,
        Duration::from_secs(10),
        "the adjacency is up",
        |s| {
            s.peek(a).ipcp.neighbors().len() == s.peek(a).ipcp.neighbors().len().max(1)
                && s.peek(b)
                    .ipcp
                    .neighbors()
                    .iter()
                    .any(|n| Some(n.2) == s.peek(a).ipcp.address())
        },
    );
    let t = dif.sim.now() + Duration::from_secs(1);
    dif.sim.advance_to(t);
    dif.converge("a new adjacency is known");
    let after = dif.computations();
    let most = before
        .iter()
        .zip(&after)
        .map(|(x, y)| y - x)
        .max()
        .unwrap_or(0);
    assert!(
        (1..=3).contains(&most),
        "seed {seed}: {most} computations for one change"
    );
    costs
}

/// 1,000 members and 10,000 leaves in waves of 500, against 100 members and 1,000
/// leaves: a leaf's join and leave cost the links between members no control frame
/// (at most a small constant), the same at both sizes.
#[test]
fn leaves_cost_the_dif_nothing_at_a_thousand_members() {
    for (n, waves) in [(100, 2), (1000, 20)] {
        let costs = leaves_in_waves(7, n, waves, 500);
        let control = costs.iter().map(|w| w.control_per_leaf).fold(0.0, f64::max);
        let frames = costs.iter().map(|w| w.frames_per_leaf).sum::<f64>() / costs.len() as f64;
        println!("{n} members: control frames per leaf at most {control:.2}, every frame {frames:.1} per leaf");
        assert!(control <= 1.0, "{n} members: {costs:?}");
    }
}

impl Dif {
    /// The member with address `a`.
    fn by_address(&self, a: Address) -> usize {
        *self
            .members
            .iter()
            .find(|&&m| self.sim.peek(m).ipcp.address() == Some(a))
            .expect("a member")
    }

    /// A member from the `from`th on whose going leaves the others connected (it has
    /// one neighbour).
    fn outermost(&self, from: usize) -> usize {
        *self.members[from..]
            .iter()
            .find(|&&m| self.sim.peek(m).ipcp.neighbors().len() == 1)
            .expect("a member with one neighbour")
    }

    /// Member `m` stops without a word (its links go down with it): its neighbour
    /// members, in enrollment order.
    fn kill(&mut self, m: usize) -> Vec<usize> {
        let neighbors: Vec<usize> = self
            .sim
            .peek(m)
            .ipcp
            .neighbors()
            .into_iter()
            .map(|(_, _, a)| self.by_address(a))
            .collect();
        self.sim.retire(m);
        self.members.retain(|&x| x != m);
        neighbors
    }

    /// A member named `name` starts with no state: it enrolls through the first of
    /// `neighbors` and says hello to the others.
    fn start(&mut self, name: &str, neighbors: &[usize]) -> usize {
        let node = self
            .sim
            .add_node(cfg(name.into(), false, false, self.keepalive));
        self.links
            .push(self.sim.link(node, neighbors[0], LinkConfig::default()));
        settle(&mut self.sim, Duration::from_secs(10), "it enrolls", |s| {
            s.peek(node).ipcp.is_enrolled()
        });
        for &n in &neighbors[1..] {
            self.links
                .push(self.sim.link(node, n, LinkConfig::default()));
        }
        self.members.push(node);
        node
    }

    /// True when no member but `except` has `gone` in its database or directory, and
    /// the directory lists `app` exactly at `holders`.
    fn forgotten(
        &self,
        gone: Address,
        app: &ApplicationName,
        holders: &[Address],
    ) -> impl Fn(&Sim) -> bool {
        let members = self.members.clone();
        let (app, holders) = (app.clone(), holders.to_vec());
        move |s: &Sim| {
            members.iter().all(|&m| {
                let i = &s.peek(m).ipcp;
                i.lsdb_members().iter().all(|&a| a != gone)
                    && i.directory().live().all(|(_, a)| a != gone)
                    && i.directory().lookup(&app) == holders
            })
        }
    }
}

/// Members killed without a goodbye are forgotten by every member, database and
/// directory, within the documented bound (2.25 liveness bounds after they went
/// silent, plus flooding); one restarted at once with the same name replaces its
/// old state everywhere; one that says goodbye is withdrawn everywhere at once, and
/// the withdrawals themselves are gone after the hold time.
#[test]
fn the_database_holds_live_members_only() {
    for seed in common::seeds(3) {
        let keepalive = Duration::from_millis(200);
        let mut dif = Dif::build(seed, 60, keepalive);
        let liveness = keepalive * 3;
        let bound = liveness * 9 / 4 + Duration::from_millis(100);
        let svc = ApplicationName::new("svc");
        // Killed: a member that serves a name.
        let victim = dif.outermost(10);
        let gone = dif.sim.peek(victim).ipcp.address().unwrap();
        let now = dif.sim.now();
        dif.sim
            .node(victim)
            .ipcp
            .register(now, svc.clone())
            .unwrap();
        let done = dif.forgotten(Address(0), &svc, &[gone]);
        settle(&mut dif.sim, Duration::from_secs(5), "svc is known", done);
        let killed = dif.sim.now();
        dif.kill(victim);
        let done = dif.forgotten(gone, &svc, &[]);
        settle(
            &mut dif.sim,
            Duration::from_secs(30),
            "the killed member is forgotten",
            done,
        );
        let took = dif.sim.now() - killed;
        println!(
            "seed {seed}: a killed member was forgotten everywhere in {took:?} (bound {bound:?})"
        );
        assert!(took <= bound, "seed {seed}: {took:?}");
        dif.converge("the rest converges");

        // Killed and started again at once with the same name and no state: its old
        // state is replaced everywhere within the bound.
        let victim = dif.members[29];
        let name = dif.sim.peek(victim).ipcp.config().name.process_name.clone();
        let old = dif.sim.peek(victim).ipcp.address().unwrap();
        let now = dif.sim.now();
        dif.sim
            .node(victim)
            .ipcp
            .register(now, svc.clone())
            .unwrap();
        let done = dif.forgotten(gone, &svc, &[old]);
        settle(&mut dif.sim, Duration::from_secs(5), "svc is known", done);
        let neighbors = dif.kill(victim);
        let restarted = dif.sim.now();
        let node = dif.start(&name, &neighbors);
        let fresh = dif.sim.peek(node).ipcp.address().unwrap();
        let now = dif.sim.now();
        dif.sim.node(node).ipcp.register(now, svc.clone()).unwrap();
        let done = dif.forgotten(old, &svc, &[fresh]);
        settle(
            &mut dif.sim,
            Duration::from_secs(30),
            "the restarted member replaces its old state",
            done,
        );
        let took = dif.sim.now() - restarted;
        println!("seed {seed}: a restarted member replaced its old state everywhere in {took:?}");
        assert!(took <= bound, "seed {seed}: {took:?}");
        dif.converge("the restarted member is known");

        // Leaves with a goodbye: withdrawn everywhere by the flood (long before any
        // liveness bound), and the withdrawals are gone after the hold time.
        let leaver = dif.outermost(30);
        let left = dif.sim.peek(leaver).ipcp.address().unwrap();
        let now = dif.sim.now();
        dif.sim.node(leaver).ipcp.leave(now);
        let t = now + Duration::from_millis(5);
        dif.sim.advance_to(t);
        dif.kill(leaver);
        let members = dif.members.clone();
        settle(
            &mut dif.sim,
            Duration::from_secs(5),
            "the leaver is withdrawn",
            |s| {
                members
                    .iter()
                    .all(|&m| !s.peek(m).ipcp.lsdb_members().contains(&left))
            },
        );
        let took = dif.sim.now() - now;
        assert!(
            took < liveness,
            "seed {seed}: withdrawn only after {took:?}"
        );
        dif.converge("the withdrawals are forgotten");
        let took = dif.sim.now() - now;
        assert!(
            took <= bound,
            "seed {seed}: withdrawals forgotten after {took:?}"
        );
    }
}
