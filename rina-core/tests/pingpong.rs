//! Small messages one at a time (a request, its answer, then the next) through heavy
//! loss both ways: every exchange completes, byte-exact, within a bound of simulated
//! time (30 s each), for many seeds. Loss recovery here rests on timers and on the few
//! PDUs in flight, not on a stream of later data, so it is only as good as the
//! round-trip estimate and the timers: the estimate stays near the true round trip
//! however many retransmissions there are (the acknowledgement's echo names the first
//! transmission it answers), and a lost last PDU is probed after two round trips
//! instead of waiting for the backed-off timeout. Simulated time of the median run of
//! 200 exchanges: 35 s before the echo (an acknowledgement that came back with a
//! retransmission timed the PDUs sent before it from their first sending, and the
//! timeout grew to its 4 s cap), 7 s with the echo, 2 s with the tail-loss probe.

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

/// The longest round trip the path can show: 1 ms each way, plus the longest delay of
/// an acknowledgement (2 ms).
const LONGEST_ROUND_TRIP: Duration = Duration::from_millis(4);

/// 200 exchanges of 60 bytes each way with 20% of frames lost both ways, 200 seeds.
#[test]
fn request_and_answer_one_at_a_time_through_twenty_percent_loss() {
    let mut totals = Vec::new();
    for seed in seeds(200) {
        let mut sim = Sim::new(seed);
        let a = sim.add_node(member("a", true));
        let b = sim.add_node(member("b", false));
        let link = sim.link(b, a, LinkConfig::default());
        sim.run_until(common::at(10), u64::MAX, |s| s.node(b).ipcp.is_enrolled())
            .unwrap();
        let (c, s) = connected_flow(&mut sim, b, a, "echo");
        sim.set_link_loss(link, 0.20);
        let start = sim.now();
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
            for (node, port) in [(b, c), (a, s)] {
                let srtt = sim.node(node).ipcp.flow_stats(port).and_then(|f| f.srtt);
                assert!(
                    srtt.is_none_or(|t| t <= 2 * LONGEST_ROUND_TRIP),
                    "seed {seed}, exchange {i}: smoothed round trip {srtt:?} on a path of \
                     at most {LONGEST_ROUND_TRIP:?}"
                );
            }
        }
        totals.push(sim.now() - start);
        for (node, port) in [(b, c), (a, s)] {
            let f = sim.node(node).ipcp.flow_stats(port).expect("flow");
            assert!(f.srtt.is_some(), "seed {seed}: never a round-trip sample");
        }
        let lost = sim.frames.1;
        assert!(lost > 40, "seed {seed}: only {lost} frames lost");
    }
    totals.sort();
    let median = totals[totals.len() / 2];
    assert!(
        median <= Duration::from_secs(5),
        "the median run of 200 exchanges took {median:?} (p90 {:?})",
        totals[totals.len() * 9 / 10]
    );
}
