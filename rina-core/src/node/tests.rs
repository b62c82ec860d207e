//! A node under a flood of flows that never say who they are (or start handshakes
//! they never finish): what they cost is bounded, and nothing sent back outweighs
//! what came in.

use core::net::SocketAddr;

use crate::ipcp::IpcpConfig;
use crate::node::{DifConfig, DifId, Layer, LinkAddr, LinkId, Node};
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

/// A bootstrap member of DIF `net` (secured by `security`) over one UDP link, and the
/// attacker's endpoint.
fn server(security: Option<crate::secure::Security>) -> (Node, LinkId, DifId, LinkAddr) {
    let mut node = Node::new(true);
    node.seed_security([3; 32]);
    let link = node.add_udp_link("udp".into(), "UDP test".into(), ShimConfig::default(), 7);
    let mut ipcp = IpcpConfig::new("net", ApplicationName::new("server"), 7);
    ipcp.bootstrap = Some(Address(1));
    let cfg = DifConfig {
        ipcp,
        over: vec![Layer::Link(link)],
        enroll: None,
        neighbors: vec![],
        security,
        role: Default::default(),
    };
    let dif = node.add_dif(Instant::ZERO, cfg).unwrap();
    let attacker: SocketAddr = "10.0.0.66:4000".parse().unwrap();
    (node, link, dif, LinkAddr::Udp(attacker))
}

/// What a flood cost: bytes in and out, and the most state held.
#[derive(Default)]
struct Cost {
    bytes_in: usize,
    bytes_out: usize,
    most_state: usize,
}

impl Cost {
    /// Hands `d` to the node and takes what it sends back (returned).
    fn exchange(
        &mut self,
        node: &mut Node,
        link: LinkId,
        from: LinkAddr,
        now: Instant,
        mut d: Vec<u8>,
    ) -> Vec<Vec<u8>> {
        self.bytes_in += d.len();
        assert!(node.handle_link(now, link, from, &mut d).is_none());
        self.drain(node, now)
    }

    /// What the node sends now.
    fn drain(&mut self, node: &mut Node, now: Instant) -> Vec<Vec<u8>> {
        let (mut buf, mut out) = (Vec::new(), Vec::new());
        while node.poll_event(now).is_some() {}
        while let Some(t) = node.poll_transmit(now, &mut buf) {
            self.bytes_out += t.header.as_slice().len() + t.payload.len();
            out.push(buf[t.payload].to_vec());
        }
        out
    }

    /// After forged request `i`: 100 ms pass every thousand; the state held is noted.
    fn tick(&mut self, node: &mut Node, link: LinkId, i: u32, now: &mut Instant) {
        if i.is_multiple_of(1000) {
            *now += std::time::Duration::from_millis(100);
            node.handle_timeout(*now);
        }
        let state = node.n1_count() + node.link_flow_count(link);
        self.most_state = self.most_state.max(state);
    }

    /// Time passes (20 s): what is still held unproven is dropped without a word.
    fn pass_time(&mut self, node: &mut Node, now: &mut Instant) {
        for _ in 0..100 {
            *now += std::time::Duration::from_millis(200);
            node.handle_timeout(*now);
            self.drain(node, *now);
        }
    }

    /// Nothing outweighed what came in; state stayed bounded and is all gone.
    fn check(&self, node: &Node, link: LinkId) {
        let (i, o, m) = (self.bytes_in, self.bytes_out, self.most_state);
        assert!(o <= i, "sent back {o} bytes for {i} received");
        assert!(m <= 2 * 64 + 2, "state grew to {m} entries");
        assert_eq!((node.n1_count(), node.link_flow_count(link)), (0, 0));
    }
}

#[test]
fn a_flood_of_silent_flows_costs_bounded_state_and_no_amplification() {
    let (mut node, link, dif, attacker) = server(None);
    let (mut cost, mut now) = (Cost::default(), Instant::ZERO);
    for i in 0..60_000u32 {
        cost.exchange(&mut node, link, attacker, now, alloc_request(i + 1, "net"));
        cost.tick(&mut node, link, i, &mut now);
    }
    cost.pass_time(&mut node, &mut now);
    cost.check(&node, link);
    assert!(node.dif(dif).ipcp().neighbors().is_empty());
}

/// A secured DIF under 60,000 forged allocation requests, 1,000 of them followed by a
/// valid handshake initiation from a key it does not trust: the node answers each
/// with no more bytes than it got, holds at most [`super::MAX_UNPROVEN`] unproven
/// ports, and forgets them all.
#[test]
fn a_flood_of_handshakes_costs_bounded_state_and_no_amplification() {
    use crate::secure::wire::RESPONSE;
    use crate::secure::{Channel, Counters, Credentials, Ctx, Limits, SecureRng, Security};
    let sec = |me: u8, peer: u8| Security {
        creds: Credentials::new(&[me; 32], None),
        trusted: [Credentials::new(&[peer; 32], None).public()].into(),
        limits: Limits::default(),
        access: Default::default(),
    };
    let (mut node, link, dif, attacker) = server(Some(sec(1, 2)));
    // The attacker: key 66, which the node does not trust.
    let (asec, mut arng, mut acount) = (
        sec(66, 1),
        SecureRng::from_seed([66; 32]),
        Counters::default(),
    );
    let (mut cost, mut now, mut responses) = (Cost::default(), Instant::ZERO, 0);
    for i in 0..60_000u32 {
        let answers = cost.exchange(&mut node, link, attacker, now, alloc_request(i + 1, "net"));
        if i % 60 == 0 {
            // The allocation's answer names the node's flow id: an initiation on it.
            let resp = answers
                .iter()
                .find(|a| a.len() >= 14 && a[..6] == [0, 0, 0, 0, 1, 2]);
            let mut d = resp.expect("an allocation answer")[10..14].to_vec();
            let mut cx = Ctx {
                sec: &asec,
                rng: &mut arng,
                counters: &mut acount,
                now,
            };
            d.extend(Channel::initiator(&mut cx).poll_transmit().unwrap());
            let answers = cost.exchange(&mut node, link, attacker, now, d);
            responses += answers
                .iter()
                .filter(|a| a.first() == Some(&RESPONSE))
                .count();
        }
        cost.tick(&mut node, link, i, &mut now);
    }
    cost.pass_time(&mut node, &mut now);
    cost.check(&node, link);
    assert!(node.dif(dif).ipcp().neighbors().is_empty());
    let counters = node.security_counters(dif).unwrap();
    assert_eq!(counters.handshakes, 0);
    // Under load one address starts PER_SECOND handshakes a second: 1,000 initiations
    // in 6 s of forged traffic get at most about 60 answers (and no Diffie-Hellman).
    let most = super::throttle::LOAD + 7 * super::throttle::PER_SECOND as usize;
    assert!(responses <= most, "{responses} responses");
    assert!(counters.handshakes_limited >= 900, "{counters:?}");
}
