//! Small messages one at a time (a request, its answer, then the next) through heavy
//! loss both ways: every exchange completes, byte-exact, within a bound of simulated
//! time (30 s each), for many seeds. Loss recovery here rests on timers and on the few
//! PDUs in flight, not on a stream of later data. (The worst exchange over 200 seeds
//! took 24 s: an acknowledgement that rides on a retransmitted answer gives a round-trip
//! sample that includes the peer's timeout, and the RTO grows with it.)

use std::time::Duration;

use rina_core::ipcp::ReadResult;
use rina_core::sim::{LinkConfig, Sim};

mod common;
use common::{connected_flow, member, seeds};

/// Runs the simulator until `node` has read `want` bytes from `port` (at most 30 s of
/// simulated time): the bytes, or `None` if they did not come.
fn read_exact(sim: &mut Sim, node: usize, port: rina_core::PortId, want: usize) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let until = sim.now() + Duration::from_secs(30);
    let r = sim.run_until(until, u64::MAX, |s| {
        let now = s.now();
        while let ReadResult::Sdu(v) = s.node(node).ipcp.read(now, port) {
            got.extend_from_slice(&v);
        }
        got.len() >= want
    });
    r.ok().map(|()| got)
}

/// 200 exchanges of 60 bytes each way with 20% of frames lost both ways, 50 seeds.
#[test]
fn request_and_answer_one_at_a_time_through_twenty_percent_loss() {
    for seed in seeds(50) {
        let mut sim = Sim::new(seed);
        let a = sim.add_node(member("a", true));
        let b = sim.add_node(member("b", false));
        let link = sim.link(b, a, LinkConfig::default());
        sim.run_until(common::at(10), u64::MAX, |s| s.node(b).ipcp.is_enrolled())
            .unwrap();
        let (c, s) = connected_flow(&mut sim, b, a, "echo");
        sim.set_link_loss(link, 0.20);
        for i in 0..200u32 {
            let msg: Vec<u8> = format!("{i:06}").repeat(10).into_bytes();
            let now = sim.now();
            sim.node(b).ipcp.write(now, c, &msg).unwrap();
            let got = read_exact(&mut sim, a, s, msg.len())
                .unwrap_or_else(|| panic!("seed {seed}: request {i} stalled"));
            assert_eq!(got, msg, "seed {seed}: request {i}");
            let now = sim.now();
            sim.node(a).ipcp.write(now, s, &got).unwrap();
            let back = read_exact(&mut sim, b, c, msg.len())
                .unwrap_or_else(|| panic!("seed {seed}: answer {i} stalled"));
            assert_eq!(back, msg, "seed {seed}: answer {i}");
        }
        let lost = sim.frames.1;
        assert!(lost > 40, "seed {seed}: only {lost} frames lost");
    }
}
