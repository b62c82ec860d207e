//! Leaves whose enroller dies: they enroll again through an adjacency they kept, keep
//! their address (a host route the new enroller advertises), and their flows go on.

mod common;

use std::time::Duration;

use common::{connected_flow, member, read_all, seeds};
use rina_core::ipcp::{IpcpConfig, ReadResult, WriteError};
use rina_core::sim::{LinkConfig, Sim};

fn cfg(name: &str, bootstrap: bool, leaf: bool) -> IpcpConfig {
    let mut c = member(name, bootstrap);
    c.leaf = leaf;
    c.keepalive_interval = Duration::from_millis(200);
    c
}

/// S bootstraps; A and B enroll through it. Leaf L enrolls through A and keeps an
/// idle adjacency with B. Mid-transfer to S, A is killed: L enrolls again through B
/// with the same address, and the transfer completes byte-exact.
#[test]
fn a_leaf_whose_enroller_dies_keeps_its_address_and_its_flows() {
    for seed in seeds(5) {
        let mut sim = Sim::new(seed);
        let s = sim.add_node(cfg("s", true, false));
        let a = sim.add_node(cfg("a", false, false));
        let b = sim.add_node(cfg("b", false, false));
        sim.link(a, s, LinkConfig::default());
        sim.link(b, s, LinkConfig::default());
        let until = sim.now() + Duration::from_secs(5);
        sim.run_until(until, u64::MAX, |x| {
            x.node(a).ipcp.is_enrolled() && x.node(b).ipcp.is_enrolled()
        })
        .unwrap();
        let l = sim.add_node(cfg("l", false, true));
        sim.link(l, a, LinkConfig::default());
        let until = sim.now() + Duration::from_secs(5);
        sim.run_until(until, u64::MAX, |x| x.node(l).ipcp.is_enrolled())
            .unwrap();
        sim.link(l, b, LinkConfig::default());
        let addr = sim.node(l).ipcp.address().unwrap();
        assert!(sim.node(a).ipcp.leaves().iter().any(|&(x, _)| x == addr));
        let (cp, sp) = connected_flow(&mut sim, l, s, "svc");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (mut sent, mut got, mut killed) = (0, Vec::new(), false);
        let deadline = sim.now() + Duration::from_secs(30);
        while got.len() < data.len() {
            assert!(
                sim.now() < deadline,
                "seed {seed}: {} of {} bytes",
                got.len(),
                data.len()
            );
            let now = sim.now();
            while sent < data.len() {
                let end = (sent + 2000).min(data.len());
                match sim.node(l).ipcp.write(now, cp, &data[sent..end]) {
                    Ok(()) => sent = end,
                    Err(WriteError::WouldBlock) => break,
                    Err(e) => panic!("seed {seed}: {e}"),
                }
            }
            if !killed && sent > data.len() / 3 {
                sim.retire(a);
                killed = true;
            }
            let next = sim.now() + Duration::from_millis(20);
            sim.advance_to(next);
            let (bytes, end) = read_all(&mut sim, s, sp);
            got.extend_from_slice(&bytes);
            assert!(
                matches!(end, ReadResult::WouldBlock),
                "seed {seed}: {end:?}"
            );
        }
        assert!(got == data, "seed {seed}: the bytes differ");
        // L kept its address; B carries it as a host route, which S follows.
        assert_eq!(sim.node(l).ipcp.address(), Some(addr), "seed {seed}");
        assert!(sim.node(b).ipcp.leaves().iter().any(|&(x, _)| x == addr));
        let via_b = sim.node(s).ipcp.forwarding_table().get(&addr).copied();
        let b_addr = sim.node(b).ipcp.address().unwrap();
        let to_b = sim.node(s).ipcp.forwarding_table().get(&b_addr).copied();
        assert!(
            via_b.is_some() && via_b == to_b,
            "seed {seed}: {via_b:?} {to_b:?}"
        );
    }
}

/// A leaf hears of no routing change, yet a member that vanished leaves its
/// directory too: its enroller passes on the removals it makes (within the bound of
/// 2.25 liveness bounds), so a leaf's new flows do not go to a name's dead holder.
#[test]
fn a_leaf_forgets_the_names_of_a_member_that_vanished() {
    for seed in seeds(3) {
        let mut sim = Sim::new(seed);
        let s = sim.add_node(cfg("s", true, false));
        let a = sim.add_node(cfg("a", false, false));
        let x = sim.add_node(cfg("x", false, false));
        sim.link(a, s, LinkConfig::default());
        sim.link(x, s, LinkConfig::default());
        let l = sim.add_node(cfg("l", false, true));
        sim.link(l, a, LinkConfig::default());
        let svc = rina_core::ApplicationName::new("svc");
        let until = sim.now() + Duration::from_secs(5);
        sim.run_until(until, u64::MAX, |z| {
            [a, x, l].iter().all(|&n| z.node(n).ipcp.is_enrolled())
        })
        .unwrap();
        let now = sim.now();
        sim.node(x).ipcp.register(now, svc.clone()).unwrap();
        let until = sim.now() + Duration::from_secs(5);
        sim.run_until(until, u64::MAX, |z| {
            !z.node(l).ipcp.directory().lookup(&svc).is_empty()
        })
        .unwrap();
        let killed = sim.now();
        sim.retire(x);
        let bound = Duration::from_millis(200 * 3 * 9 / 4 + 100);
        let until = killed + bound;
        sim.run_until(until, u64::MAX, |z| {
            z.node(l).ipcp.directory().lookup(&svc).is_empty()
        })
        .unwrap_or_else(|e| panic!("seed {seed}: the leaf still knows svc at {}", e.now));
    }
}

/// A leaf's enroller that leaves (a server that bootstrapped the DIF, exiting) ends
/// the leaf's flows to it at once, as a member's goodbye ends its neighbours' flows:
/// the leaf does not wait for a linger to run out.
#[test]
fn a_leaf_hears_its_enroller_leave() {
    for seed in seeds(3) {
        let mut sim = Sim::new(seed);
        let s = sim.add_node(cfg("s", true, false));
        let l = sim.add_node(cfg("l", false, true));
        sim.link(l, s, LinkConfig::default());
        let (cp, _) = connected_flow(&mut sim, l, s, "svc");
        let now = sim.now();
        sim.node(s).ipcp.leave(now);
        let until = now + Duration::from_millis(50);
        sim.run_until(until, u64::MAX, |z| {
            z.node(l).events.iter().any(|e| {
                *e == rina_core::ipcp::Event::FlowClosed {
                    port: cp,
                    reset: true,
                }
            })
        })
        .unwrap_or_else(|e| panic!("seed {seed}: the flow still open at {}", e.now));
    }
}
