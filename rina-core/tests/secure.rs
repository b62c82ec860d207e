//! Secured DIFs in the simulator (issue 11): members with trusted keys join and carry
//! flows byte-exact through loss, duplication and reordering while their sessions are
//! replaced many times; a member whose key is not trusted joins nothing and learns why;
//! three levels, each secured, carry a flow whose PDUs a relay of the DIF below sees
//! only sealed. Every failure message carries the seed (`RINA_SIM_SEED=n` replays one).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rina_core::ipcp::{
    AllocError, Event, FlowKind, FlowKinds, NamePattern, NameRule, RegisterError,
};
use rina_core::node::{DifConfig, DifId, Layer, LinkId, Node, NodeEvent, Peer, Plan};
use rina_core::secure::{Credentials, Limits, Security};
use rina_core::shim::ShimConfig;
use rina_core::sim::{LinkConfig, Net};
use rina_core::ApplicationName;

mod common;
use common::{ep, run_net as run, seeds, transfer};

/// A path with delay, jitter (reordering), loss and duplication.
fn path() -> LinkConfig {
    LinkConfig {
        duplicate: 0.02,
        loss: 0.03,
        ..common::path()
    }
}

/// Member `k`'s private key.
fn private(k: u8) -> [u8; 32] {
    [k; 32]
}

fn public(k: u8) -> [u8; 32] {
    Credentials::new(&private(k), None).public()
}

/// Member `me`'s security, trusting `trusts`, with sessions replaced every 300 ms or
/// 64 messages.
fn security(me: u8, trusts: &[u8]) -> Security {
    Security {
        creds: Credentials::new(&private(me), Some(&[42; 32])),
        trusted: trusts.iter().map(|&k| public(k)).collect(),
        limits: Limits {
            rekey_after_time: Duration::from_millis(300),
            rekey_after_messages: 64,
            reject_after_time: Duration::from_secs(5),
            ..Limits::default()
        },
        access: Default::default(),
    }
}

fn node(seed: u64) -> (Node, LinkId) {
    let mut node = Node::new(true);
    node.seed_security([seed as u8; 32]);
    let link = node.add_udp_link(
        "udp".into(),
        format!("UDP sim {seed}"),
        ShimConfig::default(),
        seed,
    );
    (node, link)
}

fn dif(name: &str, seed: u64, over: Layer, join: Result<u32, Peer>, sec: Security) -> DifConfig {
    DifConfig {
        security: Some(sec),
        ..common::dif("net", name, seed, over, join)
    }
}

/// Adds host `h` (at `ep(h)`) with one secured DIF: it bootstraps, or enrolls through
/// `via`.
fn member(
    net: &mut Net,
    seed: u64,
    name: &str,
    via: Option<SocketAddr>,
    sec: Security,
    h: u8,
) -> usize {
    let (mut n, link) = node(seed);
    let join = via.map_or(Ok(1), |v| Err(Peer::Udp(v)));
    n.add_dif(net.now(), dif(name, seed, Layer::Link(link), join, sec))
        .unwrap();
    net.add_host(n, vec![(link, ep(h))])
}

/// Two trusted members join through a lossy, duplicating, reordering path and carry
/// 300 kB byte-exact while their session is replaced every 300 ms.
#[test]
fn trusted_members_join_and_carry_a_flow_while_rekeying() {
    for seed in seeds(5) {
        let mut net = Net::new(seed, path());
        let a = member(&mut net, seed, "a", None, security(1, &[2]), 1);
        let c = member(&mut net, seed + 1, "c", Some(ep(1)), security(2, &[1]), 2);
        run(&mut net, 30, "C joins", |n| {
            n.host(c).node.dif(DifId(0)).ipcp().is_enrolled()
        });
        transfer(&mut net, DifId(0), a, c, 300_000);
        let (ca, cc) = (
            net.host(a).node.security_counters(DifId(0)).unwrap(),
            net.host(c).node.security_counters(DifId(0)).unwrap(),
        );
        println!("seed {seed}: at {}: A {ca:?}, C {cc:?}", net.now());
        // 300 kB is over 200 PDUs each way, and acknowledgements come back.
        assert!(ca.handshakes >= 3, "seed {seed}: sessions replaced: {ca:?}");
        // Between sessions nothing stalls: idle members replace theirs by time.
        let before = ca.handshakes;
        net.run_for(Duration::from_secs(2));
        let after = net
            .host(a)
            .node
            .security_counters(DifId(0))
            .unwrap()
            .handshakes;
        assert!(
            after >= before + 4,
            "seed {seed}: {before} then {after} in 2 s"
        );
        assert!(
            net.host(c).node.dif(DifId(0)).ipcp().is_enrolled(),
            "seed {seed}"
        );
        assert_eq!(
            ca.handshakes_refused + cc.handshakes_refused,
            0,
            "seed {seed}"
        );
        // The path duplicates: replays are seen and dropped.
        assert!(ca.replays + cc.replays > 0, "seed {seed}: {ca:?} {cc:?}");
        let neighbors = net.host(a).node.dif(DifId(0)).ipcp().neighbors();
        assert_eq!(neighbors.len(), 1, "seed {seed}");
        assert_eq!(
            net.host(a).node.neighbor_key(neighbors[0].0),
            Some(public(2))
        );
    }
}

/// A member whose key A does not trust: A refuses its handshake, keeps no neighbour,
/// and the impostor's join fails with the reason.
#[test]
fn an_untrusted_member_joins_nothing_and_is_told_why() {
    for seed in seeds(3) {
        let mut net = Net::new(seed, path());
        let a = member(&mut net, seed, "a", None, security(1, &[2]), 1);
        // Key 9 trusts A, but A does not trust key 9.
        let m = member(
            &mut net,
            seed + 9,
            "mallory",
            Some(ep(1)),
            security(9, &[1]),
            9,
        );
        run(&mut net, 30, "the impostor's join fails", |n| {
            n.host(m)
                .events
                .iter()
                .any(|e| matches!(e, NodeEvent::JoinFailed { .. }))
        });
        let why = net.host(m).events.iter().find_map(|e| match e {
            NodeEvent::JoinFailed { why, .. } => Some(why.clone()),
            _ => None,
        });
        assert!(
            why.as_deref()
                .is_some_and(|w| w.contains("did not accept our key")),
            "seed {seed}: {why:?}"
        );
        net.run_for(Duration::from_secs(5));
        assert!(!net.host(m).node.dif(DifId(0)).ipcp().is_enrolled());
        assert!(
            net.host(a).node.dif(DifId(0)).ipcp().neighbors().is_empty(),
            "seed {seed}"
        );
        let refused = net
            .host(a)
            .node
            .security_counters(DifId(0))
            .unwrap()
            .handshakes_refused;
        assert!(refused >= 1, "seed {seed}");
        let said = net.host(a).events.iter().any(|e| matches!(e, NodeEvent::NeighborRefused { why, .. } if why.contains("is not trusted")));
        assert!(said, "seed {seed}");
    }
}

/// The data's 16-byte runs found in the captured datagrams (none: only ciphertext).
fn leaks(tap: &[Vec<u8>], data: &[u8]) -> usize {
    let runs: std::collections::BTreeSet<&[u8]> = data.windows(16).collect();
    tap.iter()
        .map(|d| d.windows(16).filter(|w| runs.contains(w)).count())
        .sum()
}

/// The bytes `transfer` sends with `seed` (see `common::transfer`).
fn sent(seed: u64, len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i * 13 + seed as u32) as u8)
        .collect()
}

/// Three levels, each secured with its own keys: byte-exact through B's relay, and
/// nothing on the wire is readable, names included.
#[test]
fn three_secured_levels_carry_a_flow_through_a_relay() {
    for seed in seeds(3) {
        // Each DIF has its own keys: member h of DIF d has key 10 * level + h.
        let level = |d: &str| match d {
            "low" => 1,
            "mid" => 2,
            _ => 3,
        };
        let mut net = common::three_levels(seed, path(), |d, h| {
            let l = level(d);
            Some(security(10 * l + h, &[10 * l + 1, 10 * l + 2, 10 * l + 3]))
        });
        net.tap = Some(Vec::new());
        let top = DifId(2);
        transfer(&mut net, top, 0, 2, 100_000);
        let tap = net.tap.take().unwrap();
        assert!(tap.len() > 100, "seed {seed}");
        assert_eq!(leaks(&tap, &sent(seed, 100_000)), 0, "seed {seed}");
        for name in ["a.top", "c.mid", "b.low", "echo"] {
            let found = tap
                .iter()
                .any(|d| d.windows(name.len()).any(|w| w == name.as_bytes()));
            assert!(!found, "seed {seed}: {name:?} on the wire");
        }
        for (h, d) in [(0, 0), (1, 1), (2, 2)] {
            let c = net.host(h).node.security_counters(DifId(d)).unwrap();
            assert!(
                c.handshakes >= 1 && c.handshakes_refused == 0,
                "seed {seed}: {c:?}"
            );
        }
    }
}

/// With `low` and `mid` open and only `top` secured, what B's `mid` member relays
/// crosses the wire as it sees it: it holds none of the flow's bytes (B, no member of
/// `top`, sees only its ciphertext). The same run with `top` open shows them, so the
/// check can fail.
#[test]
fn a_relay_below_sees_only_ciphertext_of_the_dif_above() {
    for seed in seeds(3) {
        let mut seen = Vec::new();
        for secure_top in [true, false] {
            let mut net = common::three_levels(seed, path(), |d, h| {
                (secure_top && d == "top").then(|| security(30 + h, &[31, 33]))
            });
            net.tap = Some(Vec::new());
            transfer(&mut net, DifId(2), 0, 2, 50_000);
            seen.push(leaks(&net.tap.take().unwrap(), &sent(seed, 50_000)));
        }
        assert_eq!(seen[0], 0, "seed {seed}: the relay saw the flow's bytes");
        assert!(
            seen[1] > 1000,
            "seed {seed}: open, the bytes show ({})",
            seen[1]
        );
    }
}

/// `security(me, trusts)` with `web` registrable only by key 1.
fn web_for_key_1(me: u8, trusts: &[u8]) -> Security {
    let mut s = security(me, trusts);
    s.access.names = vec![NameRule {
        pattern: NamePattern::new("web"),
        register: Some(vec![public(1)]),
        allocate: None,
    }];
    s
}

/// Host `h` at `ep(h)`, member `name` of a secured DIF: it bootstraps with address
/// `a` (`Ok(a)`) or enrolls through an endpoint, and keeps adjacencies with `keep`.
fn claimant(
    net: &mut Net,
    name: &str,
    join: Result<u32, SocketAddr>,
    keep: &[SocketAddr],
    sec: Security,
    h: u8,
) -> usize {
    let seed = net.seed() + u64::from(h);
    let (mut n, link) = node(seed);
    let mut cfg = dif(name, seed, Layer::Link(link), join.map_err(Peer::Udp), sec);
    cfg.neighbors = keep
        .iter()
        .map(|&at| Plan {
            lower: Layer::Link(link),
            peer: Peer::Udp(at),
        })
        .collect();
    n.add_dif(net.now(), cfg).unwrap();
    net.add_host(n, vec![(link, ep(h))])
}

/// S (key 1, bootstrap), C (key 2) and M (key 9, trusted by S, its own rules without
/// restrictions), C and M enrolled through S: (S, C, M).
fn trio(net: &mut Net, s_sec: Security, c_sec: Security) -> (usize, usize, usize) {
    let s = claimant(net, "s", Ok(1), &[], s_sec, 1);
    let c = claimant(net, "c", Err(ep(1)), &[], c_sec, 2);
    let m = claimant(net, "m", Err(ep(1)), &[], security(9, &[1]), 9);
    run(net, 30, "C and M join", |n| {
        [c, m]
            .iter()
            .all(|&h| n.host(h).node.dif(DifId(0)).ipcp().is_enrolled())
    });
    (s, c, m)
}

/// Flows from `client` to `app`, one at a time: how many reached each host.
fn flows_reach(net: &mut Net, client: usize, app: &str, n: usize) -> BTreeMap<usize, usize> {
    let d = DifId(0);
    let mut reached = BTreeMap::new();
    for i in 0..n {
        for h in 0..3 {
            net.host(h).events.clear();
        }
        let now = net.now();
        let (port, _) = net.host(client).node.allocate(
            now,
            d,
            ApplicationName::new(format!("client{i}")),
            ApplicationName::new(app),
            FlowKind::Reliable,
            now + Duration::from_secs(10),
            Vec::new(),
            &[],
        );
        run(net, 30, "the flow is up", |n| {
            n.host(client)
                .events
                .iter()
                .any(|e| *e == NodeEvent::Flow(d, Event::FlowAllocated { port }))
        });
        for h in 0..3 {
            let got = net.host(h).events.iter().any(|e| {
                matches!(e, NodeEvent::Flow(_, Event::IncomingFlow { local_app, .. }) if local_app.to_string() == app)
            });
            if got {
                *reached.entry(h).or_default() += 1;
            }
        }
    }
    reached
}

/// S (key 1) serves `web`, which only key 1 may register. M (key 9, trusted, its own
/// rules without the restriction) registers `web` too: S, its neighbour, refuses the
/// entry (counted, said with the key), so C never sees it, and 20 of 20 new flows
/// reach S.
#[test]
fn a_trusted_member_not_allowed_a_name_cannot_take_it() {
    for seed in seeds(3) {
        let mut net = Net::new(seed, path());
        let (s, c, m) = trio(&mut net, web_for_key_1(1, &[2, 9]), web_for_key_1(2, &[1]));
        let now = net.now();
        let web = ApplicationName::new("web");
        net.host(s)
            .node
            .register(now, DifId(0), web.clone(), FlowKinds::RELIABLE, false)
            .unwrap();
        net.host(m)
            .node
            .register(now, DifId(0), web.clone(), FlowKinds::RELIABLE, false)
            .unwrap();
        net.run_for(Duration::from_secs(2));
        let s_addr = net.host(s).node.dif(DifId(0)).ipcp().address().unwrap();
        assert_eq!(
            net.host(c)
                .node
                .dif(DifId(0))
                .ipcp()
                .directory()
                .lookup(&web),
            [s_addr],
            "seed {seed}"
        );
        assert!(
            net.host(s)
                .node
                .dif(DifId(0))
                .ipcp()
                .counters()
                .refused_claims
                >= 1,
            "seed {seed}"
        );
        let said = net.host(s).events.iter().any(|e| {
            matches!(e, NodeEvent::NeighborRefused { why, .. } if why.contains("may not register web"))
        });
        assert!(said, "seed {seed}");
        let reached = flows_reach(&mut net, c, "web", 20);
        assert_eq!(reached, BTreeMap::from([(s, 20)]), "seed {seed}");
        // A member whose own rules carry the restriction is told at once.
        let now = net.now();
        let r = net
            .host(c)
            .node
            .register(now, DifId(0), web.clone(), FlowKinds::RELIABLE, false);
        assert_eq!(r, Err(RegisterError::NotAllowed), "seed {seed}");
    }
}

/// C (key 2) is S's neighbour as `c`. M (key 9, trusted) enrolls through S as `c`,
/// then another M bootstraps at C's address with S as a kept neighbour: both claims
/// are refused, C stays S's neighbour throughout, and flows to C's name reach C.
#[test]
fn a_claim_on_a_name_or_address_evicts_no_one() {
    for seed in seeds(3) {
        let mut net = Net::new(seed, path());
        let s = claimant(&mut net, "s", Ok(1), &[], security(1, &[2, 9]), 1);
        let c = claimant(&mut net, "c", Err(ep(1)), &[], security(2, &[1]), 2);
        run(&mut net, 30, "C joins", |n| {
            n.host(c).node.dif(DifId(0)).ipcp().is_enrolled()
        });
        let now = net.now();
        let app = ApplicationName::new("c-app");
        net.host(c)
            .node
            .register(now, DifId(0), app, FlowKinds::RELIABLE, false)
            .unwrap();
        let c_addr = net.host(c).node.dif(DifId(0)).ipcp().address().unwrap();
        let name_claim = claimant(&mut net, "c", Err(ep(1)), &[], security(9, &[1]), 9);
        let addr_claim = claimant(&mut net, "m", Ok(c_addr.0), &[ep(1)], security(9, &[1]), 8);
        net.run_for(Duration::from_secs(5));
        let sd = net.host(s).node.dif(DifId(0));
        let names: Vec<String> = sd
            .ipcp()
            .neighbors()
            .into_iter()
            .map(|(_, n, _)| n.to_string())
            .collect();
        assert_eq!(names, ["c"], "seed {seed}: S's neighbours");
        assert!(
            sd.ipcp().counters().refused_claims >= 2,
            "seed {seed}: {:?}",
            sd.ipcp().counters()
        );
        assert!(
            !net.host(name_claim).node.dif(DifId(0)).ipcp().is_enrolled(),
            "seed {seed}"
        );
        // C's adjacency never went down (the claimants' own ports did, once refused).
        let c_port = net.host(s).events.iter().find_map(|e| match e {
            NodeEvent::NeighborUp { port, .. } => Some(*port),
            _ => None,
        });
        let lost_c = |e: &NodeEvent| matches!(e, NodeEvent::NeighborLost { port, .. } if Some(*port) == c_port);
        assert!(
            !net.host(s).events.iter().any(lost_c),
            "seed {seed}: {:?}",
            net.host(s).events
        );
        assert!(!net
            .host(addr_claim)
            .node
            .dif(DifId(0))
            .ipcp()
            .neighbors()
            .iter()
            .any(|n| n.1.to_string() == "s"));
        let reached = flows_reach(&mut net, s, "c-app", 5);
        assert_eq!(reached, BTreeMap::from([(c, 5)]), "seed {seed}");
    }
}

/// Flows to `db` are for key 2 (C) only: C gets one, M (key 9, trusted, a neighbour
/// of S too) is refused as access denied, and S counts and says it.
#[test]
fn flows_to_a_name_are_for_the_keys_its_rule_gives() {
    for seed in seeds(3) {
        let mut net = Net::new(seed, path());
        let mut sec = security(1, &[2, 9]);
        sec.access.names = vec![NameRule {
            pattern: NamePattern::new("db"),
            register: None,
            allocate: Some(vec![public(2)]),
        }];
        let (s, c, m) = trio(&mut net, sec, security(2, &[1]));
        let now = net.now();
        let db = ApplicationName::new("db");
        net.host(s)
            .node
            .register(now, DifId(0), db.clone(), FlowKinds::RELIABLE, false)
            .unwrap();
        run(&mut net, 30, "C and M see db", |n| {
            [c, m].iter().all(|&h| common::sees(n, h, DifId(0), &db))
        });
        assert_eq!(
            flows_reach(&mut net, c, "db", 2),
            BTreeMap::from([(s, 2)]),
            "seed {seed}"
        );
        let now = net.now();
        let (port, _) = net.host(m).node.allocate(
            now,
            DifId(0),
            ApplicationName::new("m"),
            db,
            FlowKind::Reliable,
            now + Duration::from_secs(10),
            Vec::new(),
            &[],
        );
        let refused = NodeEvent::Flow(
            DifId(0),
            Event::FlowAllocationFailed {
                port,
                error: AllocError::Denied,
            },
        );
        run(&mut net, 30, "M is refused", |n| {
            n.host(m).events.contains(&refused)
        });
        let said = net.host(s).events.iter().any(|e| {
            matches!(e, NodeEvent::NeighborRefused { why, .. } if why.contains("may not allocate flows to db"))
        });
        assert!(said, "seed {seed}");
    }
}
