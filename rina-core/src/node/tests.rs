//! A node under a flood of flows that never say who they are: what they cost is
//! bounded, and nothing sent back outweighs what came in.

use core::net::SocketAddr;

use crate::ipcp::IpcpConfig;
use crate::node::{DifConfig, Layer, LinkAddr, Node};
use crate::shim::ShimConfig;
use crate::wire::codec::Writer;
use crate::wire::mgmt::put_name;
use crate::{Address, ApplicationName, Instant};

/// A shim allocation request for `dst` from flow `src_id`, as anyone can send one.
fn alloc_request(src_id: u32, dst: &str) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(0); // management
    w.u8(1); // version
    w.u8(1); // allocation request
    w.u32(src_id);
    put_name(&mut w, &ApplicationName::new("x"));
    put_name(&mut w, &ApplicationName::new(dst));
    w.into_inner()
}

#[test]
fn a_flood_of_silent_flows_costs_bounded_state_and_no_amplification() {
    let mut node = Node::new(true);
    let link = node.add_udp_link("udp".into(), "UDP test".into(), ShimConfig::default(), 7);
    let mut ipcp = IpcpConfig::new("net", ApplicationName::new("server"), 7);
    ipcp.bootstrap = Some(Address(1));
    let dif = node
        .add_dif(
            Instant::ZERO,
            DifConfig {
                ipcp,
                over: vec![Layer::Link(link)],
                enroll: None,
                neighbors: vec![],
                security: None,
            },
        )
        .unwrap();
    let attacker: SocketAddr = "10.0.0.66:4000".parse().unwrap();
    let (mut bytes_in, mut bytes_out, mut most_state) = (0usize, 0usize, 0usize);
    let mut buf = Vec::new();
    let mut now = Instant::ZERO;
    for i in 0..60_000u32 {
        let mut d = alloc_request(i + 1, "net");
        bytes_in += d.len();
        assert!(node
            .handle_link(now, link, LinkAddr::Udp(attacker), &mut d)
            .is_none());
        while node.poll_event(now).is_some() {}
        while let Some(t) = node.poll_transmit(now, &mut buf) {
            bytes_out += t.header.as_slice().len() + t.payload.len();
        }
        if i % 1000 == 0 {
            now += std::time::Duration::from_millis(100);
            node.handle_timeout(now);
        }
        let state = node.n1_count() + node.link_flow_count(link);
        most_state = most_state.max(state);
    }
    // Time passes: the silent ones still held are dropped without a word.
    for _ in 0..100 {
        now += std::time::Duration::from_millis(200);
        node.handle_timeout(now);
        while node.poll_event(now).is_some() {}
        while let Some(t) = node.poll_transmit(now, &mut buf) {
            bytes_out += t.header.as_slice().len() + t.payload.len();
        }
    }
    assert!(
        bytes_out <= bytes_in,
        "sent back {bytes_out} bytes for {bytes_in} received"
    );
    assert!(
        most_state <= 2 * 64 + 2,
        "state grew to {most_state} entries"
    );
    assert_eq!(node.n1_count(), 0, "silent flows are dropped in the end");
    assert_eq!(node.link_flow_count(link), 0);
    assert!(node.dif(dif).ipcp().neighbors().is_empty());
}
