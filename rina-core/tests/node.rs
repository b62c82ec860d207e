//! Whole stacks in the simulator: nodes with shim layers and normal DIFs (DIFs over
//! DIFs), joined over in-memory UDP paths, from a seed. Every failure message carries
//! the seed; `RINA_SIM_SEED=n` replays one seed.

use std::time::Duration;

use rina_core::ipcp::{Event, FlowKind, FlowKinds};
use rina_core::node::{DifId, Layer, NodeEvent, Peer};
use rina_core::sim::Net;
use rina_core::{ApplicationName, Instant};

mod common;
use common::{
    by_name, dif, ep, joined, path, run_net as run, seeds, sees, three_levels, transfer, udp_node,
};

/// Three levels of DIFs on three hosts: `low` over UDP, `mid` over `low`, `top` over
/// `mid`. A and C each reach only B in `low` and `mid`, so what A and C say to each
/// other in `top` crosses B's `mid` member, a relay that is no member of `top`.
/// Bytes cross whole and in order.
#[test]
fn three_levels_with_a_relay_in_the_middle() {
    for seed in seeds(5) {
        let mut net = three_levels(seed, path(), |_, _| None);
        let (mid, top, a, b, c) = (DifId(1), DifId(2), 0, 1, 2);
        let relayed_before = net.host(b).node.dif(mid).ipcp().counters().pdus_relayed;
        transfer(&mut net, top, a, c, 200_000);
        let relayed = net.host(b).node.dif(mid).ipcp().counters().pdus_relayed - relayed_before;
        println!(
            "seed {seed}: at {}, {relayed} PDUs relayed by B in mid",
            net.now()
        );
        assert!(
            relayed > 100,
            "seed {seed}: B's mid member relayed {relayed} PDUs"
        );
    }
}

/// B's path to A is cut: B loses its neighbour and sets the adjacency up again with
/// back-off (0.5 s, 1 s, 2 s ... up to 30 s) rather than at once and for ever; once
/// the path is back, so is the neighbour, and the back-off starts afresh.
#[test]
fn a_lost_neighbour_is_joined_again_with_back_off() {
    for seed in seeds(5) {
        let mut net = Net::new(seed, path());
        let d = DifId(0);
        let (mut na, la) = udp_node(seed, true);
        let (mut nb, lb) = udp_node(seed + 1, false);
        na.add_dif(Instant::ZERO, dif("net", "a", seed, Layer::Link(la), Ok(1)))
            .unwrap();
        nb.add_dif(
            Instant::ZERO,
            dif("net", "b", seed + 1, Layer::Link(lb), Err(Peer::Udp(ep(1)))),
        )
        .unwrap();
        let a = net.add_host(na, vec![(la, ep(1))]);
        let b = net.add_host(nb, vec![(lb, ep(2))]);
        run(&mut net, 30, "B joins", |n| joined(n, b, d));
        let _ = a;
        net.host(b).events.clear();
        net.set_path_up(ep(1), ep(2), false);
        net.run_for(Duration::from_secs(120));
        let delays: Vec<u64> = net
            .host(b)
            .events
            .iter()
            .filter_map(|e| match e {
                NodeEvent::AdjacencyDown { retry_in, .. } => Some(retry_in.as_millis() as u64),
                _ => None,
            })
            .collect();
        assert!(
            delays.len() >= 6 && delays.len() <= 12,
            "seed {seed}: {} attempts in 120 s: {delays:?}",
            delays.len()
        );
        let expected = [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000];
        assert_eq!(delays, expected[..delays.len()], "seed {seed}");
        assert!(
            net.host(b)
                .events
                .iter()
                .any(|e| matches!(e, NodeEvent::NeighborLost { .. })),
            "seed {seed}: B never noticed"
        );
        net.host(b).events.clear();
        net.set_path_up(ep(1), ep(2), true);
        run(&mut net, 40, "the neighbour comes back", |n| {
            n.host(b)
                .events
                .iter()
                .any(|e| matches!(e, NodeEvent::NeighborUp { .. }))
        });
        // Up again: the next loss waits the initial delay.
        net.host(b).events.clear();
        net.set_path_up(ep(1), ep(2), false);
        run(&mut net, 30, "lost again", |n| {
            n.host(b)
                .events
                .iter()
                .any(|e| matches!(e, NodeEvent::AdjacencyDown { .. }))
        });
        let first = net.host(b).events.iter().find_map(|e| match e {
            NodeEvent::AdjacencyDown { retry_in, .. } => Some(*retry_in),
            _ => None,
        });
        assert_eq!(first, Some(Duration::from_millis(500)), "seed {seed}");
    }
}

/// B registers a name, crashes and starts again at once with the same member name and
/// endpoint and no state. It joins again, registers again, and C's flow to the name
/// reaches the new B, not the stale one.
#[test]
fn a_restarted_member_replaces_its_stale_state() {
    for seed in seeds(5) {
        let mut net = Net::new(seed, path());
        let d = DifId(0);
        let member = |h: u8, name: &str, s: u64| {
            let (mut node, l) = udp_node(s, h == 1);
            let join = if h == 1 { Ok(1) } else { Err(Peer::Udp(ep(1))) };
            node.add_dif(Instant::ZERO, dif("net", name, s, Layer::Link(l), join))
                .unwrap();
            (node, vec![(l, ep(h))])
        };
        let (n, e) = member(1, "a", seed);
        let a = net.add_host(n, e);
        let (n, e) = member(2, "b", seed + 1);
        let b = net.add_host(n, e);
        let (n, e) = member(3, "c", seed + 2);
        let c = net.add_host(n, e);
        run(&mut net, 30, "B and C join", |n| {
            joined(n, b, d) && joined(n, c, d)
        });
        let app = ApplicationName::new("svc");
        let register = |net: &mut Net| {
            let now = net.now();
            net.host(b)
                .node
                .register(now, d, app.clone(), FlowKinds::RELIABLE, false)
                .unwrap();
        };
        register(&mut net);
        run(&mut net, 30, "C sees svc", |n| sees(n, c, d, &app));
        let old = net.host(b).node.dif(d).ipcp().address();
        // The same member name and endpoint; a new seed, as a restarted process draws
        // one from the system (so its shim flow ids differ from the stale ones).
        let (n, e) = member(2, "b", seed ^ 0xB0B);
        let crashed = net.now();
        net.restart(b, n, e);
        run(&mut net, 30, "B joins again", |n| joined(n, b, d));
        let rejoin = net.now() - crashed;
        println!("seed {seed}: B joined again {rejoin:?} after it restarted");
        register(&mut net);
        let new = net.host(b).node.dif(d).ipcp().address();
        run(&mut net, 30, "C sees svc at the new B", |n| {
            n.host(c).node.dif(d).ipcp().directory().lookup(&app) == [new.unwrap()]
        });
        let now = net.now();
        let (port, _) = net.host(c).node.allocate(
            now,
            d,
            ApplicationName::new("client"),
            app.clone(),
            FlowKind::Reliable,
            now + Duration::from_secs(20),
            Vec::new(),
            &[],
        );
        run(&mut net, 60, "C's flow reaches the new B", |n| {
            n.host(b)
                .events
                .iter()
                .any(|e| matches!(e, NodeEvent::Flow(_, Event::IncomingFlow { .. })))
        });
        run(&mut net, 30, "C's flow is up", |n| {
            n.host(c)
                .events
                .iter()
                .any(|e| *e == NodeEvent::Flow(d, Event::FlowAllocated { port }))
        });
        // A took the new B's adjacency in place of the stale one at once (not after
        // the stale one's keepalives ran out), and knows the name at the new address.
        assert!(
            rejoin < Duration::from_secs(1),
            "seed {seed}: B joined again only after {rejoin:?}"
        );
        let names: Vec<String> = net
            .host(a)
            .node
            .dif(d)
            .ipcp()
            .neighbors()
            .into_iter()
            .map(|(_, name, _)| name.to_string())
            .collect();
        assert_eq!(
            names.iter().filter(|x| *x == "b").count(),
            1,
            "seed {seed}: {names:?}"
        );
        // Every member forgets the stale B, in its database and its directory,
        // within the documented bound (a hold time after it became unreachable, plus
        // a sweep: 1.25 liveness bounds).
        let bound = net.host(a).node.dif(d).ipcp().liveness_bound() * 5 / 4;
        let lost_at = net.now();
        run(&mut net, 30, "the stale B is forgotten", |n| {
            [a, b, c].iter().all(|&h| {
                let i = n.host(h).node.dif(d).ipcp();
                !i.lsdb_members().contains(&old.unwrap())
                    && i.directory().lookup(&app) == [new.unwrap()]
            })
        });
        let took = net.now() - lost_at;
        assert!(took <= bound, "seed {seed}: forgotten after {took:?}");
    }
}

/// X joins `low` through an endpoint where nothing listens, and `top` over `low`.
/// `low` fails with the link's reason, and `top` fails at once with "cannot join DIF
/// low below it" and that reason, rather than waiting; once a member of both appears
/// at the endpoint, X joins both.
#[test]
fn a_lower_dif_that_cannot_be_joined_fails_the_difs_above_with_its_reason() {
    for seed in seeds(5) {
        let mut net = Net::new(seed, path());
        let (low, top) = (DifId(0), DifId(1));
        let stack = |h: u8, s: u64| {
            let (mut node, l) = udp_node(s, h == 1);
            let boot = h == 1;
            let jl = if boot { Ok(1) } else { Err(Peer::Udp(ep(1))) };
            let jt = if boot { Ok(1) } else { Err(by_name("top")) };
            node.add_dif(
                Instant::ZERO,
                dif("low", &format!("{h}.low"), s, Layer::Link(l), jl),
            )
            .unwrap();
            node.add_dif(
                Instant::ZERO,
                dif("top", &format!("{h}.top"), s + 1, Layer::Dif(low), jt),
            )
            .unwrap();
            (node, vec![(l, ep(h))])
        };
        let (n, e) = stack(2, seed);
        let x = net.add_host(n, e);
        run(&mut net, 10, "top fails", |n| {
            n.host(x)
                .events
                .iter()
                .any(|e| matches!(e, NodeEvent::JoinFailed { dif, .. } if *dif == top))
        });
        let failures: Vec<(DifId, String)> = net
            .host(x)
            .events
            .iter()
            .filter_map(|e| match e {
                NodeEvent::JoinFailed { dif, why, .. } => Some((*dif, why.clone())),
                _ => None,
            })
            .collect();
        let low_why = format!("nothing listens at {} (port unreachable)", ep(1));
        assert_eq!(
            failures[0],
            (low, low_why.clone()),
            "seed {seed}: {failures:?}"
        );
        let top_why = format!("cannot join DIF low below it: {low_why}");
        assert_eq!(
            failures[1],
            (top, top_why.clone()),
            "seed {seed}: {failures:?}"
        );
        assert_eq!(
            net.host(x).node.dif(top).last_failure(),
            Some(top_why.as_str())
        );
        assert!(!net.host(x).node.dif(top).joining(), "seed {seed}");
        // The member appears: both are joined on the next attempts.
        let (n, e) = stack(1, seed + 7);
        net.add_host(n, e);
        run(&mut net, 120, "X joins both", |n| {
            joined(n, x, low) && joined(n, x, top)
        });
        assert_eq!(
            net.host(x).node.dif(top).last_failure(),
            None,
            "seed {seed}"
        );
    }
}

/// A program's stack (a leaf) enrolls through A and keeps B as an adjacency to fall
/// back on; it opens no N-1 flow to B while A is up. A crashes mid-transfer: the leaf
/// enrolls again through B with the same address, and the transfer completes
/// byte-exact on the same flow.
#[test]
fn a_leaf_falls_back_on_a_kept_adjacency_and_keeps_its_flows() {
    for seed in seeds(3) {
        let mut net = Net::new(seed, path());
        let d = DifId(0);
        let full = |h: u8, name: &str, join: Result<u32, Peer>| {
            let (mut node, l) = udp_node(seed + u64::from(h), true);
            let mut cfg = dif("net", name, seed + u64::from(h), Layer::Link(l), join);
            cfg.ipcp.keepalive_interval = Duration::from_millis(200);
            node.add_dif(Instant::ZERO, cfg).unwrap();
            (node, vec![(l, ep(h))])
        };
        let (n, e) = full(1, "s", Ok(1));
        let s = net.add_host(n, e);
        let (n, e) = full(2, "a", Err(Peer::Udp(ep(1))));
        let a = net.add_host(n, e);
        let (n, e) = full(3, "b", Err(Peer::Udp(ep(1))));
        let b = net.add_host(n, e);
        run(&mut net, 30, "A and B join", |n| {
            joined(n, a, d) && joined(n, b, d)
        });
        let (mut node, l) = udp_node(seed + 4, false);
        let mut cfg = dif(
            "net",
            "leaf",
            seed + 4,
            Layer::Link(l),
            Err(Peer::Udp(ep(2))),
        );
        cfg.ipcp.keepalive_interval = Duration::from_millis(200);
        cfg.neighbors = vec![rina_core::node::Plan {
            lower: Layer::Link(l),
            peer: Peer::Udp(ep(3)),
        }];
        node.add_dif(Instant::ZERO, cfg).unwrap();
        let leaf = net.add_host(node, vec![(l, ep(4))]);
        run(&mut net, 30, "the leaf joins", |n| joined(n, leaf, d));
        let addr = net.host(leaf).node.dif(d).ipcp().address();
        assert!(net.host(leaf).node.dif(d).ipcp().is_leaf());
        let crash_a = move |net: &mut Net| net.crash(a);
        common::transfer_with(&mut net, d, s, leaf, 300_000, crash_a);
        let ipcp = net.host(leaf).node.dif(d).ipcp();
        assert_eq!(
            ipcp.address(),
            addr,
            "seed {seed}: the leaf kept its address"
        );
        let names: Vec<String> = ipcp.neighbors().iter().map(|n| n.1.to_string()).collect();
        assert_eq!(names, ["b"], "seed {seed}");
    }
}
