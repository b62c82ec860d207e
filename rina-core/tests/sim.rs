//! Protocol behaviour in the deterministic simulator: enrollment, directory, flow
//! allocation, EFCP under loss, duplication and reordering, relaying and routing.
//! Every failure message carries the seed; `RINA_SIM_SEED=n` replays one seed.

use std::time::Duration;

use rina_core::ipcp::{Event, FlowKind};
use rina_core::sim::{transfer, LinkConfig, Sim};
use rina_core::{Address, ApplicationName};

mod common;
use common::{joined_pair, lossy, member, seeds};

/// 10 MB byte-exact through 10% loss, 5% duplication and reordering, 50 seeds.
#[test]
fn ten_megabytes_through_loss_duplication_and_reordering() {
    let size = if cfg!(debug_assertions) {
        1 << 20
    } else {
        10_000_000
    };
    for seed in seeds(50) {
        let mut sim = Sim::new(seed);
        let a = sim.add_node(member("a", true));
        let b = sim.add_node(member("b", false));
        sim.link(b, a, lossy());
        let data: Vec<u8> = (0..size)
            .map(|i| (i as u64).wrapping_mul(seed | 1).to_le_bytes()[1])
            .collect();
        let report = transfer(&mut sim, b, a, "sink", &data, Duration::from_secs(3600))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            report.retransmissions > 0,
            "seed {seed}: 10% loss must cause retransmissions"
        );
    }
}

/// Corrupted frames are dropped (never a panic), and the transfer still completes.
#[test]
fn corruption_is_survived() {
    for seed in seeds(10) {
        let mut sim = Sim::new(seed);
        let a = sim.add_node(member("a", true));
        let b = sim.add_node(member("b", false));
        sim.link(
            b,
            a,
            LinkConfig {
                corrupt: 0.05,
                ..lossy()
            },
        );
        let data = vec![7u8; 200_000];
        // Without a checksum a flipped bit in a payload may pass unnoticed; we only ask
        // that the stack survives and reports, not that it delivers.
        let _ = transfer(&mut sim, b, a, "sink", &data, Duration::from_secs(600));
    }
}

/// Enrollment over a lossy link: the member gets an address and the directory.
#[test]
fn enrollment_over_lossy_link() {
    for seed in seeds(20) {
        let mut sim = Sim::new(seed);
        let a = sim.add_node(member("a", true));
        let b = sim.add_node(member("b", false));
        let now = sim.now();
        sim.node(a)
            .ipcp
            .register(now, ApplicationName::new("early"))
            .unwrap();
        sim.link(
            b,
            a,
            LinkConfig {
                loss: 0.3,
                ..lossy()
            },
        );
        sim.run_until(rina_core::Instant::from_micros(60_000_000), u64::MAX, |s| {
            s.node(b).ipcp.is_enrolled()
                && !s
                    .node(b)
                    .ipcp
                    .directory()
                    .lookup(&ApplicationName::new("early"))
                    .is_empty()
        })
        .unwrap_or_else(|e| panic!("seed {seed}: stalled at {}: {:#?}", e.now, e.trace));
        let ab = sim.node(b).ipcp.address().unwrap();
        assert_ne!(
            ab,
            Address(1),
            "seed {seed}: the new member got a distinct address"
        );
    }
}

/// A flow to a name nobody registered is refused with NoSuchApplication.
#[test]
fn unknown_application_is_refused() {
    let (mut sim, _, b) = joined_pair(1);
    let now = sim.now();
    let port = sim.node(b).ipcp.allocate_flow(
        now,
        ApplicationName::new("c"),
        ApplicationName::new("nobody"),
        FlowKind::Reliable,
        now + Duration::from_secs(5),
    );
    sim.step();
    let failed = sim.node(b).events.iter().any(|e| matches!(e, Event::FlowAllocationFailed { port: p, error: rina_core::ipcp::AllocError::NoSuchApplication } if *p == port));
    assert!(failed, "events: {:?}", sim.node(b).events);
}

/// Five members in a chain: data crosses three relays; every forwarding table is
/// loop-free and uses shortest paths.
#[test]
fn chain_of_five_relays() {
    for seed in seeds(5) {
        let mut sim = Sim::new(seed);
        let n: Vec<usize> = (0..5)
            .map(|i| sim.add_node(member(&format!("m{i}"), i == 0)))
            .collect();
        for i in 1..5 {
            sim.link(
                n[i],
                n[i - 1],
                LinkConfig {
                    loss: 0.02,
                    ..LinkConfig::default()
                },
            );
        }
        let data = vec![42u8; 300_000];
        transfer(&mut sim, n[4], n[0], "far", &data, Duration::from_secs(600))
            .unwrap_or_else(|e| panic!("{e}"));
        let relayed: u64 = (1..4)
            .map(|i| sim.node(n[i]).ipcp.counters().pdus_relayed)
            .sum();
        assert!(relayed > 0, "seed {seed}: the middle members relayed");
    }
}

/// A member that leaves (goodbye) resets the flows other members had with it, so
/// nobody waits on a peer that is gone.
#[test]
fn goodbye_resets_flows_to_the_leaver() {
    let mut sim = Sim::new(3);
    let a = sim.add_node(member("a", true));
    let b = sim.add_node(member("b", false));
    sim.link(b, a, LinkConfig::default());
    transfer(&mut sim, b, a, "sink", &[1, 2, 3], Duration::from_secs(10)).unwrap();
    let now = sim.now();
    let port = sim.node(b).ipcp.allocate_flow(
        now,
        ApplicationName::new("c"),
        ApplicationName::new("sink"),
        FlowKind::Reliable,
        now + Duration::from_secs(5),
    );
    sim.run_until(rina_core::Instant::from_micros(30_000_000), u64::MAX, |s| {
        s.node(b)
            .events
            .iter()
            .any(|e| matches!(e, Event::FlowAllocated { port: p } if *p == port))
    })
    .unwrap();
    sim.node(a).events.clear();
    let now = sim.now();
    sim.node(b).ipcp.leave(now);
    sim.run_until(rina_core::Instant::from_micros(60_000_000), u64::MAX, |s| {
        s.node(a)
            .events
            .iter()
            .any(|e| matches!(e, Event::FlowClosed { reset: true, .. }))
    })
    .unwrap_or_else(|e| panic!("no reset: {:#?}", e.trace));
}

/// Joining and allocating are cheap (D7): with 1 ms links, a new member that asks for
/// a flow before it is enrolled has it within a few round trips, not after a retry
/// interval: the enroller's snapshot already holds the new adjacency.
#[test]
fn enroll_then_allocate_takes_a_few_round_trips() {
    let mut sim = Sim::new(9);
    let a = sim.add_node(member("a", true));
    let now = sim.now();
    sim.node(a)
        .ipcp
        .register(now, ApplicationName::new("svc"))
        .unwrap();
    let b = sim.add_node(member("b", false));
    sim.link(b, a, LinkConfig::default());
    let port = sim.node(b).ipcp.allocate_flow(
        now,
        ApplicationName::new("c"),
        ApplicationName::new("svc"),
        FlowKind::Reliable,
        now + Duration::from_secs(5),
    );
    sim.run_until(rina_core::Instant::from_micros(5_000_000), u64::MAX, |s| {
        s.node(b)
            .events
            .iter()
            .any(|e| matches!(e, Event::FlowAllocated { port: p } if *p == port))
    })
    .unwrap();
    assert!(
        sim.now() - now < Duration::from_millis(20),
        "took {:?}: {:#?}",
        sim.now() - now,
        sim.trace()
    );
}

/// A pool: two members register the same name; flows to it are spread over both;
/// when one vanishes (its link goes dark, keepalives run out), new flows go to the other.
#[test]
fn pool_spreads_flows_and_survives_a_member() {
    let mut sim = Sim::new(21);
    let a = sim.add_node(member("a", true));
    let b = sim.add_node(member("b", false));
    let c = sim.add_node(member("c", false));
    sim.link(b, a, LinkConfig::default());
    let lc = sim.link(c, a, LinkConfig::default());
    let pool = ApplicationName::new("pool");
    sim.run_until(rina_core::Instant::from_micros(10_000_000), u64::MAX, |s| {
        s.node(b).ipcp.is_enrolled() && s.node(c).ipcp.is_enrolled()
    })
    .unwrap();
    let now = sim.now();
    sim.node(b).ipcp.register(now, pool.clone()).unwrap();
    sim.node(c).ipcp.register(now, pool.clone()).unwrap();
    sim.run_until(rina_core::Instant::from_micros(20_000_000), u64::MAX, |s| {
        s.node(a)
            .ipcp
            .directory()
            .lookup(&ApplicationName::new("pool"))
            .len()
            == 2
    })
    .unwrap();
    let incoming = |sim: &mut Sim, n: usize| {
        let k = sim
            .node(n)
            .events
            .iter()
            .filter(|e| matches!(e, Event::IncomingFlow { .. }))
            .count();
        sim.node(n).events.clear();
        k
    };
    let allocate = |sim: &mut Sim, count: usize| {
        for _ in 0..count {
            let now = sim.now();
            sim.node(a).ipcp.allocate_flow(
                now,
                ApplicationName::new("client"),
                ApplicationName::new("pool"),
                FlowKind::Reliable,
                now + Duration::from_secs(5),
            );
        }
        let until = sim.now() + Duration::from_secs(1);
        sim.run_until(until, u64::MAX, |s| s.now() >= until)
            .unwrap();
    };
    allocate(&mut sim, 20);
    let (on_b, on_c) = (incoming(&mut sim, b), incoming(&mut sim, c));
    assert_eq!(on_b + on_c, 20);
    assert!(on_b >= 3 && on_c >= 3, "spread: {on_b} / {on_c}");
    // c goes dark; after the keepalive bound it is gone from a's directory.
    sim.set_link_up(lc, false);
    let bound = sim.node(a).ipcp.liveness_bound();
    let until = sim.now() + bound + Duration::from_secs(1);
    sim.run_until(until, u64::MAX, |s| s.now() >= until)
        .unwrap();
    assert_eq!(sim.node(a).ipcp.directory().lookup(&pool).len(), 1);
    incoming(&mut sim, b);
    allocate(&mut sim, 10);
    assert_eq!(
        incoming(&mut sim, b),
        10,
        "all new flows go to the member that is left"
    );
}

/// A name registered for one kind of flow refuses the other kind as if it were not
/// registered (TCP and UDP ports of the same number are separate); a datagram flow
/// keeps message boundaries; withdrawing one kind keeps the name, withdrawing the
/// last one removes it from the directory.
#[test]
fn registrations_are_per_flow_kind() {
    use rina_core::ipcp::{AllocError, FlowKinds, ReadResult};
    let mut sim = Sim::new(5);
    let a = sim.add_node(member("a", true));
    let b = sim.add_node(member("b", false));
    sim.link(b, a, LinkConfig::default());
    let svc = ApplicationName::new("svc");
    let now = sim.now();
    sim.node(a)
        .ipcp
        .register_for(now, svc.clone(), FlowKinds::UNRELIABLE)
        .unwrap();
    let until = rina_core::Instant::from_micros(5_000_000);
    sim.run_until(until, u64::MAX, |s| {
        s.node(b).ipcp.is_enrolled() && !s.node(b).ipcp.directory().lookup(&svc).is_empty()
    })
    .unwrap();
    let allocate = |sim: &mut Sim, kind: FlowKind| {
        let now = sim.now();
        let port = sim.node(b).ipcp.allocate_flow(
            now,
            ApplicationName::new("client"),
            ApplicationName::new("svc"),
            kind,
            now + Duration::from_secs(5),
        );
        let until = sim.now() + Duration::from_secs(5);
        sim.run_until(until, u64::MAX, |s| {
            s.node(b).events.iter().any(|e| {
                matches!(e, Event::FlowAllocated { port: p } | Event::FlowAllocationFailed { port: p, .. } if *p == port)
            })
        })
        .unwrap();
        let ev = sim.node(b).events.drain(..).find(|e| {
            matches!(e, Event::FlowAllocated { port: p } | Event::FlowAllocationFailed { port: p, .. } if *p == port)
        });
        (port, ev.unwrap())
    };
    let (_, refused) = allocate(&mut sim, FlowKind::Reliable);
    assert!(
        matches!(
            refused,
            Event::FlowAllocationFailed {
                error: AllocError::NoSuchApplication,
                ..
            }
        ),
        "{refused:?}"
    );
    let (port, ok) = allocate(&mut sim, FlowKind::Unreliable);
    assert!(matches!(ok, Event::FlowAllocated { .. }), "{ok:?}");
    let server_port = sim
        .node(a)
        .events
        .iter()
        .find_map(|e| match e {
            Event::IncomingFlow { port, kind, .. } => {
                assert_eq!(*kind, FlowKind::Unreliable);
                Some(*port)
            }
            _ => None,
        })
        .expect("incoming flow");
    // Three datagrams of different sizes arrive as three SDUs.
    let now = sim.now();
    for n in [1usize, 3000, 17] {
        sim.node(b)
            .ipcp
            .write(now, port, &vec![n as u8; n])
            .unwrap();
    }
    let until = sim.now() + Duration::from_secs(1);
    let mut got = Vec::new();
    sim.run_until(until, u64::MAX, |s| {
        let now = s.now();
        while let ReadResult::Sdu(v) = s.node(a).ipcp.read(now, server_port) {
            got.push(v.len());
        }
        got.len() == 3
    })
    .unwrap();
    assert_eq!(got, [1, 3000, 17]);

    // Adding the reliable kind: accepted now. Removing the unreliable kind keeps the
    // name; removing the last kind withdraws it everywhere.
    let now = sim.now();
    sim.node(a)
        .ipcp
        .register_for(now, svc.clone(), FlowKinds::RELIABLE)
        .unwrap();
    assert!(sim
        .node(a)
        .ipcp
        .register_for(now, svc.clone(), FlowKinds::ALL)
        .is_err());
    let (_, ok) = allocate(&mut sim, FlowKind::Reliable);
    assert!(matches!(ok, Event::FlowAllocated { .. }), "{ok:?}");
    let now = sim.now();
    sim.node(a)
        .ipcp
        .unregister_for(now, &svc, FlowKinds::UNRELIABLE);
    assert!(sim.node(a).ipcp.is_registered(&svc));
    let (_, refused) = allocate(&mut sim, FlowKind::Unreliable);
    assert!(
        matches!(refused, Event::FlowAllocationFailed { .. }),
        "{refused:?}"
    );
    let now = sim.now();
    sim.node(a)
        .ipcp
        .unregister_for(now, &svc, FlowKinds::RELIABLE);
    let until = sim.now() + Duration::from_secs(1);
    sim.run_until(until, u64::MAX, |s| {
        s.node(b).ipcp.directory().lookup(&svc).is_empty()
    })
    .unwrap();
}

/// The true shortest distances from every node of a graph (by node index).
fn distances(n: usize, edges: &[(usize, usize)]) -> Vec<Vec<Option<usize>>> {
    let mut adj = vec![Vec::new(); n];
    for &(a, b) in edges {
        adj[a].push(b);
        adj[b].push(a);
    }
    (0..n)
        .map(|s| {
            let mut d = vec![None; n];
            d[s] = Some(0);
            let mut q = std::collections::VecDeque::from([s]);
            while let Some(u) = q.pop_front() {
                for &v in &adj[u] {
                    if d[v].is_none() {
                        d[v] = Some(d[u].unwrap() + 1);
                        q.push_back(v);
                    }
                }
            }
            d
        })
        .collect()
}

/// Checks every member's forwarding table against the true topology: each reachable
/// destination has an entry, and its next hop is a neighbour one step closer (so every
/// path is a shortest path, hence loop-free). `Err` says which entry is wrong.
fn check_tables(sim: &mut Sim, nodes: &[usize], edges: &[(usize, usize)]) -> Result<(), String> {
    let dist = distances(nodes.len(), edges);
    let addr: Vec<Address> = nodes
        .iter()
        .map(|&i| {
            sim.node(i)
                .ipcp
                .address()
                .ok_or(format!("node {i} not enrolled"))
        })
        .collect::<Result<_, _>>()?;
    let index_of = |a: Address| addr.iter().position(|&x| x == a);
    for (u, &node) in nodes.iter().enumerate() {
        let ipcp = &sim.node(node).ipcp;
        let via: std::collections::BTreeMap<rina_core::N1Port, Address> = ipcp
            .neighbors()
            .into_iter()
            .map(|(p, _, a)| (p, a))
            .collect();
        for (d, _) in addr.iter().enumerate().filter(|&(d, _)| d != u) {
            let Some(total) = dist[u][d] else { continue };
            let port = ipcp
                .forwarding_table()
                .get(&addr[d])
                .ok_or(format!("node {u} has no route to node {d}"))?;
            let hop = via
                .get(port)
                .and_then(|&a| index_of(a))
                .ok_or(format!("node {u}: route to {d} via an unknown port"))?;
            if dist[hop][d] != Some(total - 1) {
                return Err(format!(
                    "node {u}: route to {d} ({total} hops) goes via {hop}, {:?} hops away",
                    dist[hop][d]
                ));
            }
        }
    }
    Ok(())
}

/// Builds a DIF over `edges` (node 0 bootstraps; each node enrolls over its first edge
/// to an earlier node, the other edges are added once everybody is a member), and
/// runs until every forwarding table matches the true shortest paths.
fn converge(seed: u64, n: usize, edges: &[(usize, usize)]) -> (Sim, Vec<usize>) {
    let mut sim = Sim::new(seed);
    let nodes: Vec<usize> = (0..n)
        .map(|i| sim.add_node(member(&format!("m{i}"), i == 0)))
        .collect();
    let mut later = Vec::new();
    let mut joined = vec![false; n];
    joined[0] = true;
    for &(a, b) in edges {
        let (new, old) = if a > b { (a, b) } else { (b, a) };
        if !joined[new] && joined[old] {
            joined[new] = true;
            sim.link(nodes[new], nodes[old], LinkConfig::default());
        } else {
            later.push((a, b));
        }
    }
    assert!(
        joined.iter().all(|&j| j),
        "seed {seed}: the edges must connect the graph in order"
    );
    let limit = rina_core::Instant::from_micros(600_000_000);
    sim.run_until(limit, u64::MAX, |s| {
        nodes.iter().all(|&i| s.node(i).ipcp.is_enrolled())
    })
    .unwrap_or_else(|e| panic!("seed {seed}: enrollment: {:#?}", e.trace));
    for (a, b) in later {
        sim.link(nodes[a], nodes[b], LinkConfig::default());
    }
    let mut last = Ok(());
    let done = sim.run_until(limit, u64::MAX, |s| {
        last = check_tables(s, &nodes, edges);
        last.is_ok()
    });
    assert!(done.is_ok(), "seed {seed}, {n} members: {last:?}");
    (sim, nodes)
}

/// Rings, meshes and random graphs up to 100 members converge to forwarding tables
/// that match a brute-force shortest-path computation (so they are loop-free).
#[test]
fn routing_converges_to_shortest_paths() {
    // A ring of 12 (each new member after the previous; the closing edge later).
    let ring: Vec<(usize, usize)> = (1..12).map(|i| (i - 1, i)).chain([(11, 0)]).collect();
    converge(1, 12, &ring);
    // A 6x6 grid mesh.
    let mut grid = Vec::new();
    for r in 0..6 {
        for c in 0..6 {
            let i = r * 6 + c;
            if c > 0 {
                grid.push((i - 1, i));
            }
            if r > 0 {
                grid.push((i - 6, i));
            }
        }
    }
    converge(2, 36, &grid);
    // Random connected graphs up to 100 members: a random tree plus random chords.
    for (seed, n) in seeds(4)
        .into_iter()
        .map(|s| (s, [30, 60, 80, 100][s as usize % 4]))
    {
        let mut rng = rina_core::rand::Rng::new(seed.wrapping_add(1000));
        let mut edges: Vec<(usize, usize)> =
            (1..n).map(|i| (rng.below(i as u64) as usize, i)).collect();
        for _ in 0..n {
            let (a, b) = (rng.below(n as u64) as usize, rng.below(n as u64) as usize);
            if a != b && !edges.contains(&(a, b)) && !edges.contains(&(b, a)) {
                edges.push((a, b));
            }
        }
        converge(seed, n, &edges);
    }
}

/// A ring of 16 loses a link (it goes dark: no goodbye): within the keepalive bound
/// both ends withdraw it, and every table converges to the shortest paths of the ring
/// without it; a new link between the two ends brings the tables back to the ring's.
#[test]
fn routes_heal_after_a_link_failure() {
    let ring: Vec<(usize, usize)> = (1..16).map(|i| (i - 1, i)).chain([(15, 0)]).collect();
    let (mut sim, nodes) = converge(3, 16, &ring);
    // The link between members 7 and 8 is the 8th one created (index 7).
    let broken = 7;
    sim.set_link_up(broken, false);
    let start = sim.now();
    let without: Vec<(usize, usize)> = ring.iter().copied().filter(|&e| e != (7, 8)).collect();
    let limit = start + Duration::from_secs(120);
    let mut last = Ok(());
    sim.run_until(limit, u64::MAX, |s| {
        last = check_tables(s, &nodes, &without);
        last.is_ok()
    })
    .unwrap_or_else(|_| panic!("no convergence after the failure: {last:?}"));
    let took = sim.now() - start;
    let bound = sim.node(nodes[7]).ipcp.liveness_bound();
    assert!(
        took <= bound + Duration::from_secs(1),
        "took {took:?} (bound {bound:?})"
    );
    sim.link(nodes[8], nodes[7], LinkConfig::default());
    let limit = sim.now() + Duration::from_secs(60);
    sim.run_until(limit, u64::MAX, |s| {
        last = check_tables(s, &nodes, &ring);
        last.is_ok()
    })
    .unwrap_or_else(|_| panic!("no convergence after the repair: {last:?}"));
}

/// The TTL bounds every PDU's life: a relay decrements it, in place or on a copy, and
/// drops a PDU whose TTL would reach zero, so no PDU loops forever.
#[test]
fn relays_decrement_the_ttl_and_drop_an_exhausted_pdu() {
    use rina_core::wire::{Pci, PduType};
    let mut sim = Sim::new(4);
    let a = sim.add_node(member("a", true));
    let b = sim.add_node(member("b", false));
    let c = sim.add_node(member("c", false));
    sim.link(b, a, LinkConfig::default());
    sim.link(c, b, LinkConfig::default());
    sim.run_until(rina_core::Instant::from_micros(10_000_000), u64::MAX, |s| {
        s.node(c).ipcp.is_enrolled() && s.node(b).ipcp.forwarding_table().len() == 2
    })
    .unwrap();
    let (from_a, to_c) = {
        let n = sim.node(a).ipcp.address().unwrap();
        let far = sim.node(c).ipcp.address().unwrap();
        (n, far)
    };
    let pft = sim.node(b).ipcp.forwarding_table().clone();
    let (port_a, port_c) = (pft[&from_a], pft[&to_c]);
    let pdu = |ttl: u8| {
        Pci {
            pdu_type: PduType::Data,
            flags: 0,
            ttl,
            dst_addr: to_c,
            src_addr: from_a,
            dst_cep: rina_core::CepId(9),
            src_cep: rina_core::CepId(9),
            seq: 1,
        }
        .to_pdu(b"payload")
    };
    let now = sim.now();
    let ipcp = &mut sim.node(b).ipcp;
    let before = ipcp.counters();
    // In place: TTL 2 goes on toward c with TTL 1; TTL 1 is dropped.
    let mut two = pdu(2);
    assert_eq!(
        ipcp.handle_pdu_in_place(now, port_a, &mut two),
        Some(port_c)
    );
    assert_eq!(Pci::parse(&two).unwrap().0.ttl, 1);
    let mut one = pdu(1);
    assert_eq!(ipcp.handle_pdu_in_place(now, port_a, &mut one), None);
    // On a copy: the same.
    ipcp.handle_pdu(now, port_a, &pdu(2));
    ipcp.handle_pdu(now, port_a, &pdu(1));
    let mut buf = Vec::new();
    let mut relayed = Vec::new();
    while let Some(p) = ipcp.poll_transmit(now, &mut buf) {
        if let Ok((pci, payload)) = Pci::parse(&buf) {
            if pci.pdu_type == PduType::Data && payload == b"payload" {
                relayed.push((p, pci.ttl));
            }
        }
    }
    assert_eq!(relayed, [(port_c, 1)]);
    let after = ipcp.counters();
    assert_eq!(after.pdus_relayed - before.pdus_relayed, 2);
    assert_eq!(after.pdus_dropped - before.pdus_dropped, 2);
}

/// A member that has just joined through a relay allocates a flow at once: its request,
/// relayed (in place) by the member it joined through, does not overtake that member's
/// advertisement of the new adjacency, so the answer finds its way back without a
/// retry.
#[test]
fn a_flow_right_after_joining_through_a_relay_needs_no_retry() {
    for seed in seeds(5) {
        let (mut sim, a, b) = joined_pair(seed);
        let c = sim.add_node(member("c", false));
        let now = sim.now();
        sim.node(a)
            .ipcp
            .register(now, ApplicationName::new("sink"))
            .unwrap();
        sim.link(c, b, LinkConfig::default());
        sim.run_until(now + Duration::from_secs(10), u64::MAX, |s| {
            s.node(c).ipcp.is_enrolled()
        })
        .unwrap();
        let start = sim.now();
        let port = sim.node(c).ipcp.allocate_flow(
            start,
            ApplicationName::new("c"),
            ApplicationName::new("sink"),
            FlowKind::Reliable,
            start + Duration::from_secs(5),
        );
        sim.run_until(start + Duration::from_secs(5), u64::MAX, |s| {
            s.node(c)
                .events
                .iter()
                .any(|e| matches!(e, Event::FlowAllocated { port: p } if *p == port))
        })
        .unwrap_or_else(|e| panic!("seed {seed}: stalled at {}: {:#?}", e.now, e.trace));
        let took = sim.now().saturating_duration_since(start);
        // Two hops of 1 ms each way: a few ms, not a 500 ms retry.
        assert!(
            took < Duration::from_millis(50),
            "seed {seed}: took {took:?}"
        );
    }
}

/// A flow "to another member" never comes back to the requester, even when it
/// registered the name too (a DIF above asks for its N-1 flows this way); with no other
/// registrant it is refused.
#[test]
fn a_flow_to_another_member_never_loops_back() {
    let (mut sim, a, b) = joined_pair(5);
    let now = sim.now();
    let name = ApplicationName::new("top");
    sim.node(b).ipcp.register(now, name.clone()).unwrap();
    let ask = |sim: &mut Sim| {
        let now = sim.now();
        sim.node(b).ipcp.allocate_flow_to_other(
            now,
            ApplicationName::new("b.top"),
            ApplicationName::new("top"),
            FlowKind::Unreliable,
            now + Duration::from_secs(5),
        )
    };
    // Only b serves "top": refused, not a flow to itself.
    let port = ask(&mut sim);
    sim.run_until(now + Duration::from_secs(5), u64::MAX, |s| {
        s.node(b).events.iter().any(|e| {
            matches!(e, Event::FlowAllocationFailed { port: p, error: rina_core::ipcp::AllocError::NoSuchApplication } if *p == port)
        })
    })
    .unwrap_or_else(|e| panic!("{:#?}", e.trace));
    assert!(!sim
        .node(b)
        .events
        .iter()
        .any(|e| matches!(e, Event::IncomingFlow { .. })));
    // a serves it too: every such flow goes to a, whatever the CEP-id picks.
    let now = sim.now();
    sim.node(a).ipcp.register(now, name).unwrap();
    sim.run_until(now + Duration::from_secs(5), u64::MAX, |s| {
        s.node(b)
            .ipcp
            .directory()
            .lookup(&ApplicationName::new("top"))
            .len()
            == 2
    })
    .unwrap();
    for _ in 0..8 {
        let port = ask(&mut sim);
        let start = sim.now();
        sim.run_until(start + Duration::from_secs(5), u64::MAX, |s| {
            s.node(b)
                .events
                .iter()
                .any(|e| matches!(e, Event::FlowAllocated { port: p } if *p == port))
        })
        .unwrap_or_else(|e| panic!("{:#?}", e.trace));
    }
    assert!(!sim
        .node(b)
        .events
        .iter()
        .any(|e| matches!(e, Event::IncomingFlow { .. })));
    let at_a = sim
        .node(a)
        .events
        .iter()
        .filter(|e| matches!(e, Event::IncomingFlow { .. }))
        .count();
    assert_eq!(at_a, 8);
}
