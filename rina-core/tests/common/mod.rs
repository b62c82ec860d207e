//! Helpers shared by the simulator tests: members, a joined pair, seeds, a lossy link,
//! and a flow between two members.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use rina_core::ipcp::{Event, FlowKind, FlowKinds, IpcpConfig, ReadResult};
use rina_core::node::{DifConfig, DifId, Layer, LinkId, Node, NodeEvent, Peer, Plan};
use rina_core::shim::ShimConfig;
use rina_core::sim::{LinkConfig, Net, Sim};
use rina_core::{Address, ApplicationName, Instant, PortId};

pub fn member(name: &str, bootstrap: bool) -> IpcpConfig {
    let mut c = IpcpConfig::new("net", ApplicationName::new(name), 0);
    if bootstrap {
        c.bootstrap = Some(Address(1));
    }
    c
}

/// A simulator with two members, `a` (bootstrap) and `b`, enrolled over a link.
pub fn joined_pair(seed: u64) -> (Sim, usize, usize) {
    let mut sim = Sim::new(seed);
    let a = sim.add_node(member("a", true));
    let b = sim.add_node(member("b", false));
    sim.link(b, a, LinkConfig::default());
    sim.run_until(Instant::from_micros(10_000_000), u64::MAX, |s| {
        s.node(b).ipcp.is_enrolled()
    })
    .unwrap();
    (sim, a, b)
}

// The tests may read the environment (rina-core/clippy.toml bans it in the library):
// RINA_SIM_SEED replays one seed.
#[allow(clippy::disallowed_methods)]
pub fn seeds(n: u64) -> Vec<u64> {
    match std::env::var("RINA_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("RINA_SIM_SEED is a number")],
        Err(_) => (0..n).collect(),
    }
}

pub fn lossy() -> LinkConfig {
    LinkConfig {
        delay: Duration::from_millis(5),
        jitter: Duration::from_millis(10),
        loss: 0.10,
        duplicate: 0.05,
        corrupt: 0.0,
        mtu: 1500,
    }
}

/// Registers `app` at `server`, allocates a reliable flow to it from `client` and
/// waits until it is up at both ends: (the client's port, the server's port).
pub fn connected_flow(sim: &mut Sim, client: usize, server: usize, app: &str) -> (PortId, PortId) {
    connected_flow_of(sim, client, server, app, FlowKind::Reliable)
}

/// As [`connected_flow`], for a flow of `kind`.
pub fn connected_flow_of(
    sim: &mut Sim,
    client: usize,
    server: usize,
    app: &str,
    kind: FlowKind,
) -> (PortId, PortId) {
    let app = ApplicationName::new(app);
    let now = sim.now();
    sim.node(server).ipcp.register(now, app.clone()).unwrap();
    let until = sim.now() + Duration::from_secs(10);
    sim.run_until(until, u64::MAX, |s| {
        !s.node(client).ipcp.directory().lookup(&app).is_empty()
    })
    .unwrap();
    let now = sim.now();
    let port = sim.node(client).ipcp.allocate_flow(
        now,
        ApplicationName::new("c"),
        app,
        kind,
        now + Duration::from_secs(5),
    );
    let until = sim.now() + Duration::from_secs(10);
    sim.run_until(until, u64::MAX, |s| {
        s.node(client)
            .events
            .iter()
            .any(|e| matches!(e, Event::FlowAllocated { port: p } if *p == port))
    })
    .unwrap();
    let incoming = sim.node(server).events.iter().rev().find_map(|e| match e {
        Event::IncomingFlow { port, .. } => Some(*port),
        _ => None,
    });
    (port, incoming.expect("incoming flow"))
}

/// Reads everything `port` of `node` delivers now: the bytes, and how it ended.
pub fn read_all(sim: &mut Sim, node: usize, port: PortId) -> (Vec<u8>, ReadResult) {
    let mut got = Vec::new();
    let now = sim.now();
    loop {
        match sim.node(node).ipcp.read(now, port) {
            ReadResult::Sdu(v) => got.extend_from_slice(&v),
            other => return (got, other),
        }
    }
}

/// Runs the simulator for `d` of virtual time.
pub fn run_for(sim: &mut Sim, d: Duration) {
    let until = sim.now() + d;
    sim.run_until(until, u64::MAX, |s| s.now() >= until)
        .unwrap();
}

/// The instant `s` seconds after the simulator's start.
pub fn at(s: u64) -> Instant {
    Instant::from_micros(s * 1_000_000)
}

/// Host `client` allocates a flow to `echo` (registered at `server`) in `d` and sends
/// `len` bytes: they arrive whole.
pub fn transfer(net: &mut Net, d: DifId, server: usize, client: usize, len: usize) {
    transfer_with(net, d, server, client, len, |_| {});
}

/// As [`transfer`]; `midway` runs once a third of the bytes are written (a crash, a
/// link going down).
pub fn transfer_with(
    net: &mut Net,
    d: DifId,
    server: usize,
    client: usize,
    len: usize,
    midway: impl FnOnce(&mut Net),
) {
    let mut midway = Some(midway);
    let seed = net.seed();
    let app = ApplicationName::new("echo");
    let now = net.now();
    net.host(server)
        .node
        .register(now, d, app.clone(), FlowKinds::RELIABLE, false)
        .unwrap();
    run_net(net, 30, "the client sees echo", |n| {
        sees(n, client, d, &app)
    });
    let now = net.now();
    let (port, _) = net.host(client).node.allocate(
        now,
        d,
        ApplicationName::new("client"),
        app,
        FlowKind::Reliable,
        now + Duration::from_secs(10),
        Vec::new(),
        &[],
    );
    run_net(net, 30, "the flow is up", |n| {
        n.host(client)
            .events
            .iter()
            .any(|e| *e == NodeEvent::Flow(d, Event::FlowAllocated { port }))
    });
    let incoming: PortId = net
        .host(server)
        .events
        .iter()
        .find_map(|e| match e {
            NodeEvent::Flow(x, Event::IncomingFlow { port, .. }) if *x == d => Some(*port),
            _ => None,
        })
        .unwrap_or_else(|| panic!("seed {seed}: no incoming flow"));
    let data: Vec<u8> = (0..len as u32)
        .map(|i| (i * 13 + seed as u32) as u8)
        .collect();
    let (mut sent, mut got) = (0, Vec::new());
    let limit = net.now() + Duration::from_secs(120);
    while got.len() < data.len() {
        assert!(
            net.now() < limit,
            "seed {seed}: {} of {} bytes",
            got.len(),
            data.len()
        );
        let now = net.now();
        while sent < data.len() {
            let end = (sent + 4096).min(data.len());
            if net
                .host(client)
                .node
                .ipcp_mut(d)
                .write(now, port, &data[sent..end])
                .is_err()
            {
                break;
            }
            sent = end;
        }
        if sent > data.len() / 3 {
            if let Some(f) = midway.take() {
                f(net);
            }
        }
        while let ReadResult::Sdu(v) = net.host(server).node.ipcp_mut(d).read(now, incoming) {
            got.extend_from_slice(&v);
        }
        net.step();
    }
    assert!(got == data, "seed {seed}: the bytes differ");
}

/// Runs `net` until `done` or `secs` of virtual time pass; the seed and the trace on
/// failure.
pub fn run_net(net: &mut Net, secs: u64, what: &str, done: impl FnMut(&mut Net) -> bool) {
    let limit = net.now() + Duration::from_secs(secs);
    if let Err(e) = net.run_until(limit, done) {
        panic!(
            "seed {}: {what}: not done by {}\n{}",
            net.seed(),
            e.now,
            e.trace.join("\n")
        );
    }
}

/// A member `name` of DIF `dif` over `over`: it bootstraps with `address`, or
/// enrolls through `via`.
pub fn dif(dif: &str, name: &str, seed: u64, over: Layer, join: Result<u32, Peer>) -> DifConfig {
    let mut ipcp = IpcpConfig::new(dif, ApplicationName::new(name), seed);
    let enroll = match join {
        Ok(a) => {
            ipcp.bootstrap = Some(Address(a));
            None
        }
        Err(peer) => Some(Plan { lower: over, peer }),
    };
    DifConfig {
        ipcp,
        over: vec![over],
        enroll,
        neighbors: Vec::new(),
        security: None,
        role: Default::default(),
    }
}

/// The UDP endpoint of host `h`.
pub fn ep(h: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, h], 7000))
}

/// A path with a little delay, jitter (reordering) and loss.
pub fn path() -> LinkConfig {
    LinkConfig {
        delay: Duration::from_millis(1),
        jitter: Duration::from_millis(2),
        loss: 0.01,
        ..LinkConfig::default()
    }
}

/// A node with one UDP link.
pub fn udp_node(seed: u64, long_lived: bool) -> (Node, LinkId) {
    let mut node = Node::new(long_lived);
    let place = format!("UDP sim {seed}");
    let link = node.add_udp_link("udp".into(), place, ShimConfig::default(), seed);
    (node, link)
}

pub fn by_name(n: &str) -> Peer {
    Peer::Name(ApplicationName::new(n))
}

pub fn joined(net: &mut Net, h: usize, d: DifId) -> bool {
    net.is_up(h) && net.host(h).node.dif(d).ipcp().is_enrolled()
}

/// Three levels of DIFs on three hosts A, B, C (hosts 0, 1, 2): `low` over UDP, `mid`
/// over `low`, `top` over `mid` (A and C only). A and C each reach only B in `low` and
/// `mid`, so what A and C say to each other in `top` crosses B's `mid` member, a relay
/// that is no member of `top`. `security(dif, host)` secures a DIF at a host (1, 2,
/// 3). Returns once C joined `top` with B its only neighbour in `mid`.
pub fn three_levels(
    seed: u64,
    path: LinkConfig,
    security: impl Fn(&str, u8) -> Option<rina_core::secure::Security>,
) -> Net {
    let mut net = Net::new(seed, path);
    let (low, mid, top) = (DifId(0), DifId(1), DifId(2));
    for (h, name) in [(1u8, "a"), (2, "b"), (3, "c")] {
        let s = seed ^ u64::from(h) << 40;
        let (mut node, link) = udp_node(s, h == 2);
        node.seed_security([h; 32]);
        let b = h == 2;
        let levels = [
            (
                "low",
                Layer::Link(link),
                if b { Ok(1) } else { Err(Peer::Udp(ep(2))) },
            ),
            (
                "mid",
                Layer::Dif(low),
                if b { Ok(1) } else { Err(by_name("mid")) },
            ),
            (
                "top",
                Layer::Dif(mid),
                if h == 1 { Ok(1) } else { Err(by_name("top")) },
            ),
        ];
        // B is no member of top.
        for (i, (d, over, join)) in levels.into_iter().enumerate().take(if b { 2 } else { 3 }) {
            let cfg = DifConfig {
                security: security(d, h),
                role: Default::default(),
                ..dif(d, &format!("{name}.{d}"), s + i as u64, over, join)
            };
            node.add_dif(net.now(), cfg).unwrap();
        }
        net.add_host(node, vec![(link, ep(h))]);
    }
    run_net(&mut net, 60, "C joins top through B", |n| joined(n, 2, top));
    // C's only neighbour in mid is B: top's traffic is relayed there.
    let mid_neighbors: Vec<String> = net
        .host(2)
        .node
        .dif(mid)
        .ipcp()
        .neighbors()
        .into_iter()
        .map(|(_, n, _)| n.to_string())
        .collect();
    assert_eq!(mid_neighbors, ["b.mid"], "seed {seed}");
    net
}

/// True if host `h` knows a member of DIF `d` where `app` is registered.
pub fn sees(net: &mut Net, h: usize, d: DifId, app: &ApplicationName) -> bool {
    let ipcp = net.host(h).node.dif(d).ipcp();
    !ipcp.directory().lookup(app).is_empty()
}
