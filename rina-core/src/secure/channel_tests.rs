//! Two channels over an in-memory flow that loses, repeats and reorders messages.

use std::time::Duration;

use super::*;
use crate::rand::Rng;
use crate::secure::{Credentials, Limits};

struct End {
    ch: Channel,
    sec: Security,
    rng: SecureRng,
    counters: Counters,
    got: Vec<Vec<u8>>,
    events: Vec<ChannelEvent>,
}

fn key(n: u8) -> [u8; 32] {
    [n; 32]
}

fn security(me: u8, trusts: &[u8], psk: Option<[u8; 32]>, limits: Limits) -> Security {
    Security {
        creds: Credentials::new(&key(me), psk.as_ref()),
        trusted: trusts
            .iter()
            .map(|&k| Credentials::new(&key(k), None).public())
            .collect(),
        limits,
        access: Default::default(),
    }
}

impl End {
    fn new(sec: Security, initiator: bool, seed: u8, now: Instant) -> Self {
        let mut rng = SecureRng::from_seed([seed; 32]);
        let mut counters = Counters::default();
        let ch = if initiator {
            let mut cx = Ctx {
                sec: &sec,
                rng: &mut rng,
                counters: &mut counters,
                now,
            };
            Channel::initiator(&mut cx)
        } else {
            Channel::responder(now + sec.limits.unproven_for)
        };
        Self {
            ch,
            sec,
            rng,
            counters,
            got: Vec::new(),
            events: Vec::new(),
        }
    }

    fn cx(&mut self, now: Instant) -> (&mut Channel, Ctx<'_>) {
        (
            &mut self.ch,
            Ctx {
                sec: &self.sec,
                rng: &mut self.rng,
                counters: &mut self.counters,
                now,
            },
        )
    }

    fn receive(&mut self, now: Instant, mut msg: Vec<u8>) {
        let (ch, mut cx) = self.cx(now);
        if let Some(r) = ch.handle(&mut cx, &mut msg) {
            self.got.push(msg[r].to_vec());
        }
        while let Some(e) = self.ch.poll_event() {
            self.events.push(e);
        }
    }

    fn tick(&mut self, now: Instant) {
        let (ch, mut cx) = self.cx(now);
        if ch.poll_timeout(cx.sec).is_some_and(|t| t <= now) {
            ch.handle_timeout(&mut cx);
        }
        ch.rekey_if_due(&mut cx);
        while let Some(e) = self.ch.poll_event() {
            self.events.push(e);
        }
    }
}

/// A flow between two ends: each message is lost, doubled or held back by chance.
struct Flow {
    rng: Rng,
    loss: f64,
    in_flight: Vec<(bool, Vec<u8>)>,
}

impl Flow {
    fn send(&mut self, to_b: bool, msg: Vec<u8>) {
        if self.rng.chance(self.loss) {
            return;
        }
        if self.rng.chance(self.loss) {
            self.in_flight.push((to_b, msg.clone()));
        }
        self.in_flight.push((to_b, msg));
    }

    /// Moves everything each end has to send, delivering in a shuffled order.
    fn run(&mut self, a: &mut End, b: &mut End, now: Instant) {
        for _ in 0..8 {
            while let Some(m) = a.ch.poll_transmit() {
                self.send(true, m);
            }
            while let Some(m) = b.ch.poll_transmit() {
                self.send(false, m);
            }
            if self.in_flight.is_empty() {
                return;
            }
            let mut batch = std::mem::take(&mut self.in_flight);
            if batch.len() > 1 && self.rng.chance(self.loss) {
                let i = self.rng.below(batch.len() as u64) as usize;
                batch.swap(0, i);
            }
            for (to_b, m) in batch {
                if to_b {
                    b.receive(now, m);
                } else {
                    a.receive(now, m);
                }
            }
        }
    }
}

fn pdu(i: usize) -> Vec<u8> {
    format!("pdu number {i}").into_bytes()
}

/// Runs a handshake and `n` PDUs each way over a flow losing `loss`; returns the ends.
fn exchange(seed: u64, loss: f64, limits: Limits, n: usize) -> (End, End) {
    let mut now = Instant::ZERO;
    let mut a = End::new(security(1, &[2], None, limits), true, seed as u8, now);
    let mut b = End::new(security(2, &[1], None, limits), false, !seed as u8, now);
    let mut flow = Flow {
        rng: Rng::new(seed),
        loss,
        in_flight: Vec::new(),
    };
    let mut sent = 0;
    for _ in 0..20_000 {
        flow.run(&mut a, &mut b, now);
        if a.ch.is_up() && b.ch.is_up() && sent < n {
            for (from, to_b) in [(&mut a, true), (&mut b, false)] {
                let mut m = pdu(sent);
                if from.ch.seal(&mut m) {
                    flow.send(to_b, m);
                }
            }
            sent += 1;
        }
        if sent == n && flow.in_flight.is_empty() {
            break;
        }
        now += Duration::from_millis(5);
        a.tick(now);
        b.tick(now);
    }
    (a, b)
}

#[test]
fn trusted_members_handshake_and_pdus_cross_sealed() {
    let (a, b) = exchange(1, 0.0, Limits::default(), 50);
    assert_eq!(
        a.events.first(),
        Some(&ChannelEvent::Up(b.sec.creds.public()))
    );
    assert_eq!(
        b.events.first(),
        Some(&ChannelEvent::Up(a.sec.creds.public()))
    );
    let want: Vec<_> = (0..50).map(pdu).collect();
    assert_eq!(a.got, want);
    assert_eq!(b.got, want);
    assert_eq!((a.counters.opens_failed, b.counters.opens_failed), (0, 0));
}

#[test]
fn handshakes_and_rekeying_survive_loss_duplication_and_reordering() {
    let limits = Limits {
        rekey_after_messages: 40,
        ..Limits::default()
    };
    for seed in 0..30 {
        let (a, b) = exchange(seed, 0.1, limits, 400);
        assert!(
            a.ch.is_up() && b.ch.is_up(),
            "seed {seed}: {:?} {:?}",
            a.events,
            b.events
        );
        // Lost PDUs stay lost (the flow below is unreliable); what arrives is whole,
        // once, and rekeying happened many times without ending the flow.
        for got in [&a.got, &b.got] {
            assert!(got.len() > 250, "seed {seed}: {} of 400", got.len());
            let mut unique = got.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), got.len(), "seed {seed}: a PDU twice");
            assert!(got.iter().all(|p| p.starts_with(b"pdu number ")));
        }
        // 800 messages at 40 a session; a lost handshake message waits 250 ms (100
        // messages here) to be sent again.
        assert!(a.counters.handshakes >= 5, "seed {seed}: {:?}", a.counters);
        assert!(!a
            .events
            .iter()
            .chain(&b.events)
            .any(|e| !matches!(e, ChannelEvent::Up(_))));
    }
}

#[test]
fn an_untrusted_key_is_refused_and_its_maker_told() {
    let now = Instant::ZERO;
    let limits = Limits::default();
    // b trusts only key 9; a (key 1) is not it.
    let mut a = End::new(security(1, &[2], None, limits), true, 1, now);
    let mut b = End::new(security(2, &[9], None, limits), false, 2, now);
    let mut flow = Flow {
        rng: Rng::new(1),
        loss: 0.0,
        in_flight: Vec::new(),
    };
    let mut t = now;
    for _ in 0..100 {
        flow.run(&mut a, &mut b, t);
        t += Duration::from_millis(100);
        a.tick(t);
        b.tick(t);
    }
    assert_eq!(b.events, vec![ChannelEvent::Refused(a.sec.creds.public())]);
    assert_eq!(b.counters.handshakes_refused, 1);
    assert!(
        matches!(a.events[..], [ChannelEvent::Failed(w)] if w.contains("did not accept our key"))
    );
    // And the other way: a does not trust b.
    let mut a = End::new(security(1, &[9], None, limits), true, 1, now);
    let mut b = End::new(security(2, &[1], None, limits), false, 2, now);
    flow.run(&mut a, &mut b, now);
    assert_eq!(a.events, vec![ChannelEvent::Refused(b.sec.creds.public())]);
    assert!(b.events.is_empty() && !b.ch.is_up());
}

#[test]
fn a_wrong_dif_secret_gets_no_answer() {
    let now = Instant::ZERO;
    let limits = Limits::default();
    let mut a = End::new(security(1, &[2], Some([7; 32]), limits), true, 1, now);
    let mut b = End::new(security(2, &[1], Some([8; 32]), limits), false, 2, now);
    let mut bytes_in = 0;
    let mut t = now;
    for _ in 0..100 {
        while let Some(m) = a.ch.poll_transmit() {
            bytes_in += m.len();
            b.receive(t, m);
        }
        assert_eq!(b.ch.poll_transmit(), None, "no reply without the secret");
        t += Duration::from_millis(100);
        a.tick(t);
    }
    assert!(bytes_in > 0);
    assert_eq!(b.counters.handshakes_refused, 4);
    assert!(matches!(a.events[..], [ChannelEvent::Failed(w)] if w.contains("no answer")));
}

#[test]
fn no_answer_is_larger_than_what_caused_it() {
    let now = Instant::ZERO;
    let limits = Limits::default();
    let mut a = End::new(security(1, &[2], None, limits), true, 1, now);
    let mut b = End::new(security(2, &[1], None, limits), false, 2, now);
    let init = a.ch.poll_transmit().unwrap();
    b.receive(now, init.clone());
    let resp = b.ch.poll_transmit().unwrap();
    assert!(resp.len() <= init.len(), "{} > {}", resp.len(), init.len());
    // The same initiation again: the same response, no new handshake.
    b.receive(now, init);
    assert_eq!(b.ch.poll_transmit(), Some(resp));
}

#[test]
fn replays_and_flipped_bits_are_dropped_and_counted() {
    let (mut a, mut b) = exchange(3, 0.0, Limits::default(), 1);
    let mut m = b"the real one".to_vec();
    assert!(a.ch.seal(&mut m));
    b.receive(Instant::ZERO, m.clone());
    b.receive(Instant::ZERO, m.clone());
    let mut flipped = b"another one".to_vec();
    assert!(a.ch.seal(&mut flipped));
    flipped[12] ^= 1;
    b.receive(Instant::ZERO, flipped);
    assert_eq!(b.got.last().map(Vec::as_slice), Some(&b"the real one"[..]));
    assert_eq!(b.got.len(), 2);
    assert_eq!((b.counters.replays, b.counters.opens_failed), (1, 1));
}

#[test]
fn a_closed_flow_says_so_and_only_with_the_key() {
    let (mut a, mut b) = exchange(4, 0.0, Limits::default(), 1);
    // A forged close (right type, wrong key) changes nothing.
    let mut forged = vec![0x13u8; 26];
    forged[1..9].copy_from_slice(&99u64.to_be_bytes());
    b.receive(Instant::ZERO, forged);
    assert!(b.events.len() == 1 && b.counters.opens_failed == 1);
    let close = a.ch.close().unwrap();
    b.receive(Instant::ZERO, close);
    assert_eq!(
        b.events.last(),
        Some(&ChannelEvent::Closed("the neighbour closed the flow"))
    );
}

proptest::proptest! {
    /// Any bytes into a responder, an initiator and a pair with a session (before and
    /// after its handshake): never a panic, never a PDU for the IPC process.
    #[test]
    fn any_bytes_open_nothing(msgs in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120), 1..12)) {
        let (mut a, mut b) = exchange(5, 0.0, Limits::default(), 0);
        let now = Instant::ZERO;
        let mut fresh_a = End::new(security(1, &[2], None, Limits::default()), true, 1, now);
        let mut fresh_b = End::new(security(2, &[1], None, Limits::default()), false, 2, now);
        for m in msgs {
            for end in [&mut a, &mut b, &mut fresh_a, &mut fresh_b] {
                let before = end.got.len();
                end.receive(now, m.clone());
                proptest::prop_assert_eq!(end.got.len(), before);
                while end.ch.poll_transmit().is_some() {}
            }
        }
    }
}

/// An attacker on the flow during a rekeying: a forged final message and a replay of
/// the first initiation reach the responder before the real messages. Neither spoils
/// the handshake in progress: the rekeying finishes and nothing ends the flow.
#[test]
fn forged_and_replayed_handshake_messages_do_not_spoil_a_rekeying() {
    let limits = Limits {
        rekey_after_messages: 3,
        ..Limits::default()
    };
    let mut now = Instant::ZERO;
    let mut a = End::new(security(1, &[2], None, limits), true, 1, now);
    let mut b = End::new(security(2, &[1], None, limits), false, 2, now);
    let first_initiation = a.ch.poll_transmit().unwrap();
    b.receive(now, first_initiation.clone());
    let mut flow = Flow {
        rng: Rng::new(9),
        loss: 0.0,
        in_flight: Vec::new(),
    };
    flow.run(&mut a, &mut b, now);
    assert!(a.ch.is_up() && b.ch.is_up());
    // Enough traffic for a rekeying: the new initiation waits in a's outbox.
    for i in 0..4 {
        let mut m = pdu(i);
        assert!(a.ch.seal(&mut m));
        b.receive(now, m);
    }
    a.tick(now);
    let real = a.ch.poll_transmit().expect("a new initiation");
    assert_eq!(real[0], INITIATION);
    // The real initiation is answered; then the attack, before the real final.
    b.receive(now, real);
    let response = b.ch.poll_transmit().expect("a response");
    let mut junk = vec![FINAL];
    junk.extend([7u8; 64]);
    b.receive(now, junk);
    b.receive(now, first_initiation);
    let junk_answers = std::iter::from_fn(|| b.ch.poll_transmit()).count();
    assert!(junk_answers <= 1, "only the replayed initiation's answer");
    a.receive(now, response);
    for _ in 0..200 {
        flow.run(&mut a, &mut b, now);
        now += Duration::from_millis(5);
        a.tick(now);
        b.tick(now);
    }
    assert_eq!(a.counters.handshakes, 2, "{:?}", a.counters);
    assert_eq!(b.counters.handshakes, 2, "{:?}", b.counters);
    let only_up = |e: &Vec<ChannelEvent>| e.iter().all(|e| matches!(e, ChannelEvent::Up(_)));
    assert!(
        only_up(&a.events) && only_up(&b.events),
        "{:?} {:?}",
        a.events,
        b.events
    );
}

#[test]
fn a_handshake_for_one_dif_does_not_finish_in_another() {
    let now = Instant::ZERO;
    let limits = Limits::default();
    let mut sa = security(1, &[2], None, limits);
    sa.creds = sa.creds.for_dif("red");
    let mut sb = security(2, &[1], None, limits);
    sb.creds = sb.creds.for_dif("blue");
    let mut a = End::new(sa, true, 1, now);
    let mut b = End::new(sb, false, 2, now);
    let mut flow = Flow {
        rng: Rng::new(3),
        loss: 0.0,
        in_flight: Vec::new(),
    };
    flow.run(&mut a, &mut b, now);
    assert!(!a.ch.is_up() && !b.ch.is_up());
    assert!(a.counters.handshakes_refused + b.counters.handshakes_refused >= 1);
}
