//! Flow allocation in the simulator: the requester's allocation info reaches the
//! responder; a responder that asks before accepting answers when its driver decides
//! (a refusal reads as "no such application"); the directory says which registrants
//! serve a name as one of a pool; the first data of a request reaches the responder
//! once, ahead of the stream, through loss and duplication.

use std::time::Duration;

use rina_core::ipcp::{AllocError, Event, FlowKind, FlowKinds};
use rina_core::sim::{LinkConfig, Sim};
use rina_core::{ApplicationName, PortId};

mod common;
use common::{lossy, member, run_for, seeds};

/// Two joined members; the server (bootstrap) asks before accepting flows and has
/// registered "svc"; the client knows it.
fn asking_pair(seed: u64) -> (Sim, usize, usize) {
    asking_pair_over(seed, LinkConfig::default())
}

/// As [`asking_pair`], over a link like `link`.
fn asking_pair_over(seed: u64, link: LinkConfig) -> (Sim, usize, usize) {
    let mut sim = Sim::new(seed);
    let mut cfg = member("server", true);
    cfg.ask_before_accepting = true;
    let server = sim.add_node(cfg);
    let client = sim.add_node(member("client", false));
    sim.link(client, server, link);
    let until = sim.now() + Duration::from_secs(10);
    sim.run_until(until, u64::MAX, |s| s.node(client).ipcp.is_enrolled())
        .unwrap();
    let now = sim.now();
    sim.node(server)
        .ipcp
        .register(now, ApplicationName::new("svc"))
        .unwrap();
    let until = sim.now() + Duration::from_secs(10);
    sim.run_until(until, u64::MAX, |s| {
        !s.node(client)
            .ipcp
            .directory()
            .lookup(&ApplicationName::new("svc"))
            .is_empty()
    })
    .unwrap();
    (sim, server, client)
}

/// Asks for a flow to "svc" with `info`, runs until the server is offered it: the
/// client's port, the offered port and the info the server read.
fn offer(sim: &mut Sim, server: usize, client: usize, info: &[u8]) -> (PortId, PortId, Vec<u8>) {
    let now = sim.now();
    let port = sim.node(client).ipcp.allocate_flow_with_info(
        now,
        ApplicationName::new("c"),
        ApplicationName::new("svc"),
        FlowKind::Reliable,
        now + Duration::from_secs(5),
        info.to_vec(),
    );
    let until = sim.now() + Duration::from_secs(5);
    let found = |s: &mut Sim| {
        s.node(server).events.iter().rev().find_map(|e| match e {
            Event::IncomingFlow { port, info, .. } => Some((*port, info.clone())),
            _ => None,
        })
    };
    sim.run_until(until, u64::MAX, |s| found(s).is_some())
        .unwrap();
    let (offered, info) = found(sim).unwrap();
    sim.node(server).events.clear();
    (port, offered, info)
}

fn allocated(sim: &mut Sim, client: usize, port: PortId) -> Option<Result<(), AllocError>> {
    sim.node(client).events.iter().find_map(|e| match e {
        Event::FlowAllocated { port: p } if *p == port => Some(Ok(())),
        Event::FlowAllocationFailed { port: p, error } if *p == port => Some(Err(*error)),
        _ => None,
    })
}

/// A flow accepted after its requester gave up (its deadline passed): the responder
/// is told and its side ends, instead of staying up with nobody at the other end.
#[test]
fn a_flow_accepted_after_its_requester_gave_up_ends() {
    for seed in seeds(10) {
        let (mut sim, server, client) = asking_pair(seed);
        let (port, offered, _) = offer(&mut sim, server, client, b"");
        run_for(&mut sim, Duration::from_secs(6));
        assert!(
            matches!(allocated(&mut sim, client, port), Some(Err(_))),
            "seed {seed}: the requester did not give up"
        );
        let now = sim.now();
        sim.node(server).ipcp.answer_flow(now, offered, true);
        run_for(&mut sim, Duration::from_millis(500));
        let ended = sim
            .node(server)
            .events
            .iter()
            .any(|e| matches!(e, Event::FlowClosed { port, .. } if *port == offered));
        assert!(ended, "seed {seed}: the responder's side stayed up");
    }
}

#[test]
fn an_offered_flow_is_up_once_accepted_and_refused_otherwise() {
    for seed in seeds(10) {
        let (mut sim, server, client) = asking_pair(seed);
        // Accepted: the requester hears nothing until then, however long it waits
        // (its retries find the flow still offered), then the flow carries data.
        let (port, offered, info) = offer(&mut sim, server, client, b"who I am");
        assert_eq!(info, b"who I am", "seed {seed}");
        run_for(&mut sim, Duration::from_millis(1200));
        assert_eq!(allocated(&mut sim, client, port), None, "seed {seed}");
        let now = sim.now();
        sim.node(server).ipcp.answer_flow(now, offered, true);
        run_for(&mut sim, Duration::from_millis(100));
        assert_eq!(
            allocated(&mut sim, client, port),
            Some(Ok(())),
            "seed {seed}"
        );
        let now = sim.now();
        sim.node(client).ipcp.write(now, port, b"hello").unwrap();
        run_for(&mut sim, Duration::from_millis(100));
        let now = sim.now();
        assert_eq!(
            sim.node(server).ipcp.read(now, offered),
            rina_core::ipcp::ReadResult::Sdu(b"hello".to_vec()),
            "seed {seed}"
        );
        // Refused: the requester learns that nobody serves the name.
        let (port, offered, info) = offer(&mut sim, server, client, b"");
        assert!(info.is_empty());
        let now = sim.now();
        sim.node(server).ipcp.answer_flow(now, offered, false);
        run_for(&mut sim, Duration::from_millis(100));
        assert_eq!(
            allocated(&mut sim, client, port),
            Some(Err(AllocError::NoSuchApplication)),
            "seed {seed}"
        );
        assert!(
            sim.node(server)
                .ipcp
                .flows()
                .iter()
                .all(|f| f.port != offered),
            "seed {seed}: the refused flow stayed"
        );
    }
}

#[test]
fn the_directory_says_who_serves_a_name_as_a_pool() {
    let mut sim = Sim::new(3);
    let a = sim.add_node(member("a", true));
    let b = sim.add_node(member("b", false));
    let c = sim.add_node(member("c", false));
    sim.link(b, a, LinkConfig::default());
    sim.link(c, a, LinkConfig::default());
    let until = sim.now() + Duration::from_secs(10);
    sim.run_until(until, u64::MAX, |s| {
        s.node(b).ipcp.is_enrolled() && s.node(c).ipcp.is_enrolled()
    })
    .unwrap();
    let now = sim.now();
    let name = ApplicationName::new("web");
    sim.node(a)
        .ipcp
        .register_with(now, name.clone(), FlowKinds::ALL, true)
        .unwrap();
    sim.node(b)
        .ipcp
        .register_with(now, name.clone(), FlowKinds::ALL, false)
        .unwrap();
    run_for(&mut sim, Duration::from_millis(500));
    let (aa, ba) = (
        sim.node(a).ipcp.address().unwrap(),
        sim.node(b).ipcp.address().unwrap(),
    );
    let mut want = vec![(aa, true), (ba, false)];
    want.sort();
    assert_eq!(sim.node(c).ipcp.directory().holders(&name), want);
    // Withdrawn: gone from the holders everywhere.
    let now = sim.now();
    sim.node(a).ipcp.unregister(now, &name);
    run_for(&mut sim, Duration::from_millis(500));
    assert_eq!(
        sim.node(c).ipcp.directory().holders(&name),
        vec![(ba, false)]
    );
}

/// A request's first data reaches the responder's application once (retried and
/// duplicated requests do not deliver it again), and what the requester writes after
/// it follows it: the stream is byte-exact. The request takes one PDU's worth.
#[test]
fn first_data_rides_on_the_request_once_ahead_of_the_stream() {
    for seed in seeds(20) {
        let (mut sim, server, client) = asking_pair_over(seed, lossy());
        let stream: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
        let now = sim.now();
        let (port, taken) = sim.node(client).ipcp.allocate_flow_with_first_data(
            now,
            ApplicationName::new("c"),
            ApplicationName::new("svc"),
            FlowKind::Reliable,
            now + Duration::from_secs(30),
            Vec::new(),
            &stream,
        );
        assert!(
            (1000..1500).contains(&taken),
            "seed {seed}: one PDU's worth on a 1500-byte link, took {taken}"
        );
        let offered = |s: &mut Sim| {
            s.node(server).events.iter().find_map(|e| match e {
                Event::IncomingFlow {
                    port, first_data, ..
                } => Some((*port, first_data.clone())),
                _ => None,
            })
        };
        let until = sim.now() + Duration::from_secs(20);
        sim.run_until(until, u64::MAX, |s| offered(s).is_some())
            .unwrap();
        let (their_port, first) = offered(&mut sim).unwrap();
        assert_eq!(first, stream[..taken], "seed {seed}");
        let now = sim.now();
        sim.node(server).ipcp.answer_flow(now, their_port, true);
        let until = sim.now() + Duration::from_secs(20);
        sim.run_until(until, u64::MAX, |s| allocated(s, client, port).is_some())
            .unwrap();
        assert_eq!(
            allocated(&mut sim, client, port),
            Some(Ok(())),
            "seed {seed}"
        );
        for chunk in stream[taken..].chunks(700) {
            let now = sim.now();
            sim.node(client).ipcp.write(now, port, chunk).unwrap();
        }
        // Long enough for every retried or duplicated request to arrive.
        run_for(&mut sim, Duration::from_secs(5));
        let incoming = sim
            .node(server)
            .events
            .iter()
            .filter(|e| matches!(e, Event::IncomingFlow { .. }))
            .count();
        assert_eq!(incoming, 1, "seed {seed}: the request was offered again");
        let mut got = first;
        loop {
            let now = sim.now();
            match sim.node(server).ipcp.read(now, their_port) {
                rina_core::ipcp::ReadResult::Sdu(b) => got.extend_from_slice(&b),
                _ => break,
            }
        }
        assert!(
            got == stream,
            "seed {seed}: {} of {} bytes, or not in order",
            got.len(),
            stream.len()
        );
        let (sent, received) = (
            sim.node(client).ipcp.counters().flows_with_first_data,
            sim.node(server).ipcp.counters().first_data_received,
        );
        assert_eq!((sent, received), (1, taken as u64), "seed {seed}");
    }
}

/// A datagram flow's request carries no first data: there is no stream to start.
#[test]
fn an_unreliable_flow_takes_no_first_data() {
    let (mut sim, _server, client) = asking_pair(1);
    let now = sim.now();
    let (_, taken) = sim.node(client).ipcp.allocate_flow_with_first_data(
        now,
        ApplicationName::new("c"),
        ApplicationName::new("svc"),
        FlowKind::Unreliable,
        now + Duration::from_secs(5),
        Vec::new(),
        b"hello",
    );
    assert_eq!(taken, 0);
}

/// A neighbour of another release (PCI version 1, before the round-trip echo) is told
/// apart from noise: its PDUs are counted as malformed, and it is reported once, with
/// both versions, however many it sends.
#[test]
fn a_neighbour_of_another_pci_version_is_reported_once() {
    use rina_core::ipcp::IpcProcess;
    use rina_core::{Instant, N1Port};
    let mut m = IpcProcess::new(member("a", true), Instant::ZERO);
    m.add_n1_port(Instant::ZERO, N1Port(7), 1500, false);
    while m.poll_event().is_some() {}
    let mut old = vec![0u8; 40];
    old[0] = 1;
    old[1] = 0x40;
    for _ in 0..3 {
        m.handle_pdu(Instant::ZERO, N1Port(7), &old);
    }
    let said: Vec<String> = std::iter::from_fn(|| m.poll_event())
        .filter_map(|e| match e {
            Event::AccessRefused { why } => Some(why),
            _ => None,
        })
        .collect();
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains("N-1 port 7")
            && said[0].contains("PCI version 1")
            && said[0].contains("version 2"),
        "{}",
        said[0]
    );
    assert_eq!(m.counters().pdus_malformed, 3);
}
