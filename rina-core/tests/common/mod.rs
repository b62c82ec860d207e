//! Helpers shared by the simulator tests: members, a joined pair, seeds, a lossy link,
//! and a flow between two members.

#![allow(dead_code)]

use std::time::Duration;

use rina_core::ipcp::{Event, FlowKind, IpcpConfig};
use rina_core::sim::{LinkConfig, Sim};
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
        FlowKind::Reliable,
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
pub fn read_all(
    sim: &mut Sim,
    node: usize,
    port: PortId,
) -> (Vec<u8>, rina_core::ipcp::ReadResult) {
    let mut got = Vec::new();
    let now = sim.now();
    loop {
        match sim.node(node).ipcp.read(now, port) {
            rina_core::ipcp::ReadResult::Sdu(v) => got.extend_from_slice(&v),
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
