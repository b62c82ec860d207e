//! Protocol behaviour in the deterministic simulator: enrollment, directory, flow
//! allocation, EFCP under loss, duplication and reordering, relaying and routing.
//! Every failure message carries the seed; `RINA_SIM_SEED=n` replays one seed.

use std::time::Duration;

use rina_core::ipcp::{Event, IpcpConfig};
use rina_core::sim::{transfer, LinkConfig, Sim};
use rina_core::{Address, ApplicationName};

fn member(name: &str, bootstrap: bool) -> IpcpConfig {
    let mut c = IpcpConfig::new("net", ApplicationName::new(name), 0);
    if bootstrap {
        c.bootstrap = Some(Address(1));
    }
    c
}

fn seeds(n: u64) -> Vec<u64> {
    match std::env::var("RINA_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("RINA_SIM_SEED is a number")],
        Err(_) => (0..n).collect(),
    }
}

fn lossy() -> LinkConfig {
    LinkConfig {
        delay: Duration::from_millis(5),
        jitter: Duration::from_millis(10),
        loss: 0.10,
        duplicate: 0.05,
        corrupt: 0.0,
        mtu: 1500,
    }
}

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
    let mut sim = Sim::new(1);
    let a = sim.add_node(member("a", true));
    let b = sim.add_node(member("b", false));
    sim.link(b, a, LinkConfig::default());
    sim.run_until(rina_core::Instant::from_micros(10_000_000), u64::MAX, |s| {
        s.node(b).ipcp.is_enrolled()
    })
    .unwrap();
    let now = sim.now();
    let port = sim.node(b).ipcp.allocate_flow(
        now,
        ApplicationName::new("c"),
        ApplicationName::new("nobody"),
        true,
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
        true,
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
        true,
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
                true,
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

/// A peer that finished sending and then left (goodbye right after its last ack): the
/// receiver still reads every byte and the end of stream; nothing is reset.
#[test]
fn goodbye_after_end_of_stream_loses_nothing() {
    let mut sim = Sim::new(5);
    let a = sim.add_node(member("a", true));
    let b = sim.add_node(member("b", false));
    sim.link(b, a, LinkConfig::default());
    sim.run_until(rina_core::Instant::from_micros(10_000_000), u64::MAX, |s| {
        s.node(b).ipcp.is_enrolled()
    })
    .unwrap();
    let now = sim.now();
    sim.node(a)
        .ipcp
        .register(now, ApplicationName::new("sink"))
        .unwrap();
    sim.run_until(rina_core::Instant::from_micros(20_000_000), u64::MAX, |s| {
        !s.node(b)
            .ipcp
            .directory()
            .lookup(&ApplicationName::new("sink"))
            .is_empty()
    })
    .unwrap();
    let now = sim.now();
    let port = sim.node(b).ipcp.allocate_flow(
        now,
        ApplicationName::new("c"),
        ApplicationName::new("sink"),
        true,
        now + Duration::from_secs(5),
    );
    sim.run_until(rina_core::Instant::from_micros(30_000_000), u64::MAX, |s| {
        s.node(b)
            .events
            .iter()
            .any(|e| matches!(e, Event::FlowAllocated { .. }))
    })
    .unwrap();
    let data = vec![9u8; 50_000];
    let now = sim.now();
    sim.node(b).ipcp.write(now, port, &data).unwrap();
    sim.node(b).ipcp.close_write(now, port);
    // a's application does not read yet; b waits for its acks, then leaves.
    sim.run_until(rina_core::Instant::from_micros(40_000_000), u64::MAX, |s| {
        s.node(b).ipcp.is_send_done(port)
    })
    .unwrap();
    let now = sim.now();
    sim.node(b).ipcp.leave(now);
    let until = sim.now() + Duration::from_secs(1);
    sim.run_until(until, u64::MAX, |s| s.now() >= until)
        .unwrap();
    let incoming = sim.node(a).events.iter().find_map(|e| match e {
        Event::IncomingFlow { port, .. } => Some(*port),
        _ => None,
    });
    let ap = incoming.expect("incoming flow");
    assert!(
        !sim.node(a)
            .events
            .iter()
            .any(|e| matches!(e, Event::FlowClosed { reset: true, .. })),
        "reset"
    );
    let mut got = Vec::new();
    let now = sim.now();
    loop {
        match sim.node(a).ipcp.read(now, ap) {
            rina_core::ipcp::ReadResult::Sdu(v) => got.extend_from_slice(&v),
            rina_core::ipcp::ReadResult::Eof => break,
            other => panic!("{other:?} after {} bytes", got.len()),
        }
    }
    assert_eq!(got, data);
    // Its own sending side counts as done: an exit drain does not wait for a peer
    // that left.
    sim.node(a).ipcp.close_write(now, ap);
    assert!(sim.node(a).ipcp.is_send_done(ap));
    assert!(sim.node(a).ipcp.is_finished(ap));
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
    let allocate = |sim: &mut Sim, reliable: bool| {
        let now = sim.now();
        let port = sim.node(b).ipcp.allocate_flow(
            now,
            ApplicationName::new("client"),
            ApplicationName::new("svc"),
            reliable,
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
    let (_, refused) = allocate(&mut sim, true);
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
    let (port, ok) = allocate(&mut sim, false);
    assert!(matches!(ok, Event::FlowAllocated { .. }), "{ok:?}");
    let server_port = sim
        .node(a)
        .events
        .iter()
        .find_map(|e| match e {
            Event::IncomingFlow { port, reliable, .. } => {
                assert!(!reliable);
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
    let (_, ok) = allocate(&mut sim, true);
    assert!(matches!(ok, Event::FlowAllocated { .. }), "{ok:?}");
    let now = sim.now();
    sim.node(a)
        .ipcp
        .unregister_for(now, &svc, FlowKinds::UNRELIABLE);
    assert!(sim.node(a).ipcp.is_registered(&svc));
    let (_, refused) = allocate(&mut sim, false);
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
