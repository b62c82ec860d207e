//! Trace-style tests of one connection pair, at explicit times, plus a seeded lossy
//! link model moving megabytes byte-exact.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use super::*;
use crate::rand::Rng;
use crate::wire::pci::flags;

fn pair(cfg: EfcpConfig) -> (Connection, Connection) {
    let a = Endpoint {
        addr: Address(1),
        cep: CepId(10),
    };
    let b = Endpoint {
        addr: Address(2),
        cep: CepId(20),
    };
    (
        Connection::new(cfg.clone(), a, b, Instant::ZERO),
        Connection::new(cfg, b, a, Instant::ZERO),
    )
}

/// Moves every PDU `from` has to send into `to`, except those `drop` picks; returns
/// the number moved.
fn deliver(
    now: Instant,
    from: &mut Connection,
    to: &mut Connection,
    mut drop: impl FnMut(&Pci) -> bool,
) -> usize {
    let mut buf = Vec::new();
    let mut n = 0;
    while from.poll_transmit(now, &mut buf) {
        let (pci, payload) = Pci::parse(&buf).expect("valid PDU");
        assert_eq!(pci.dst_cep, to.local().cep);
        if !drop(&pci) {
            to.handle_pdu(now, &pci, payload);
            n += 1;
        }
    }
    n
}

fn exchange(now: Instant, a: &mut Connection, b: &mut Connection) {
    for _ in 0..64 {
        if deliver(now, a, b, |_| false) + deliver(now, b, a, |_| false) == 0 {
            return;
        }
    }
}

fn read_all(c: &mut Connection, now: Instant) -> (Vec<u8>, bool) {
    let mut v = Vec::new();
    let mut eof = false;
    while let Some(d) = c.recv(now) {
        match d {
            Delivery::Sdu(s) => v.extend_from_slice(&s),
            Delivery::Eof => eof = true,
        }
    }
    (v, eof)
}

#[test]
fn large_sdu_is_fragmented_and_reassembled() {
    let (mut a, mut b) = pair(EfcpConfig {
        max_pdu_size: 1500,
        ..EfcpConfig::default()
    });
    let sdu: Vec<u8> = (0..60 * 1024).map(|i| i as u8).collect();
    let mut t = Instant::ZERO;
    a.send(t, &sdu).unwrap();
    let mut sizes = Vec::new();
    let mut buf = Vec::new();
    for _ in 0..16 {
        while a.poll_transmit(t, &mut buf) {
            sizes.push(buf.len());
            let (pci, payload) = Pci::parse(&buf).unwrap();
            b.handle_pdu(t, &pci, payload);
        }
        t += Duration::from_millis(3); // the delayed ack fires
        deliver(t, &mut b, &mut a, |_| false);
    }
    assert_eq!(sizes.len(), (60 * 1024usize).div_ceil(1500 - PCI_LEN));
    assert!(sizes.iter().all(|&s| s <= 1500));
    assert_eq!(b.recv(t), Some(Delivery::Sdu(sdu)));
    assert_eq!(b.recv(t), None);
}

#[test]
fn window_closes_without_reads_and_reopens() {
    let cfg = EfcpConfig {
        initial_credit: 8,
        send_queue_pdus: 64,
        ..EfcpConfig::default()
    };
    let (mut a, mut b) = pair(cfg);
    let t = Instant::ZERO;
    for i in 0..20u8 {
        a.send(t, &[i; 100]).unwrap();
    }
    exchange(t, &mut a, &mut b);
    // Only the credit got through while nobody reads.
    assert_eq!(b.stats().pdus_received, 8);
    let (got, _) = read_all(&mut b, t);
    assert_eq!(got.len(), 800);
    exchange(t, &mut a, &mut b);
    let (got, _) = read_all(&mut b, t);
    assert_eq!(got.len(), 800);
    exchange(t, &mut a, &mut b);
    let (got, _) = read_all(&mut b, t);
    assert_eq!(got, (16..20u8).flat_map(|i| [i; 100]).collect::<Vec<_>>());
}

#[test]
fn eof_follows_data_and_completes_both_sides() {
    let (mut a, mut b) = pair(EfcpConfig::default());
    let t = Instant::ZERO;
    a.send(t, b"hello").unwrap();
    a.close_send(t);
    assert_eq!(a.send(t, b"late"), Err(SendError::Closed));
    exchange(t, &mut a, &mut b);
    assert_eq!(read_all(&mut b, t), (b"hello".to_vec(), true));
    assert!(b.is_recv_done());
    exchange(t + Duration::from_millis(5), &mut a, &mut b);
    assert!(a.is_send_done());
}

#[test]
fn lost_pdu_is_retransmitted_after_rto() {
    let (mut a, mut b) = pair(EfcpConfig::default());
    let t = Instant::ZERO;
    a.send(t, b"one").unwrap();
    assert_eq!(deliver(t, &mut a, &mut b, |_| true), 0, "dropped");
    assert!(b.recv(t).is_none());
    let rto = a.poll_timeout().unwrap();
    assert_eq!(rto, t + EfcpConfig::default().initial_rto);
    a.handle_timeout(rto);
    exchange(rto, &mut a, &mut b);
    assert_eq!(b.recv(rto), Some(Delivery::Sdu(b"one".to_vec())));
    assert_eq!(a.stats().pdus_retransmitted, 1);
}

#[test]
fn sack_triggers_fast_retransmit_of_the_hole() {
    let (mut a, mut b) = pair(EfcpConfig::default());
    let mut t = Instant::ZERO;
    for i in 0..10u8 {
        a.send(t, &[i]).unwrap();
    }
    // Drop seq 2 only.
    deliver(t, &mut a, &mut b, |p| {
        p.pdu_type == PduType::Data && p.seq == 2
    });
    t += Duration::from_millis(10);
    // The receiver's SACK shows 3..10 arrived: 2 is lost and resent before any RTO.
    exchange(t, &mut a, &mut b);
    let (got, _) = read_all(&mut b, t);
    assert_eq!(got, (0..10u8).collect::<Vec<_>>());
    assert_eq!(a.stats().pdus_retransmitted, 1);
    assert!(t < Instant::ZERO + EfcpConfig::default().initial_rto);
}

#[test]
fn duplicates_are_delivered_once() {
    let (mut a, mut b) = pair(EfcpConfig::default());
    let t = Instant::ZERO;
    a.send(t, b"x").unwrap();
    let mut buf = Vec::new();
    assert!(a.poll_transmit(t, &mut buf));
    let (pci, payload) = Pci::parse(&buf).unwrap();
    b.handle_pdu(t, &pci, payload);
    b.handle_pdu(t, &pci, payload);
    assert_eq!(read_all(&mut b, t), (b"x".to_vec(), false));
    assert_eq!(b.stats().duplicates, 1);
}

#[test]
fn black_holed_peer_fails_after_max_rtx() {
    let cfg = EfcpConfig {
        max_rtx: 3,
        ..EfcpConfig::default()
    };
    let (mut a, _) = pair(cfg);
    let mut t = Instant::ZERO;
    a.send(t, b"void").unwrap();
    let mut buf = Vec::new();
    let mut sends = 0;
    while a.failure().is_none() {
        while a.poll_transmit(t, &mut buf) {
            sends += 1;
        }
        t = a.poll_timeout().expect("a timer while data is outstanding");
        a.handle_timeout(t);
        assert!(sends < 100);
    }
    assert_eq!(sends, 4, "one transmission and three retransmissions");
    assert_eq!(a.failure(), Some(Failure::RetransmissionsExhausted));
    assert_eq!(a.send(t, b"more"), Err(SendError::Closed));
}

#[test]
fn unreliable_delivers_what_arrives_without_duplicates() {
    let (mut a, mut b) = pair(EfcpConfig {
        reliable: false,
        max_pdu_size: 100 + PCI_LEN,
        ..EfcpConfig::default()
    });
    let t = Instant::ZERO;
    a.send(t, &[1; 50]).unwrap();
    a.send(t, &[2; 150]).unwrap(); // two fragments
    a.send(t, &[3; 50]).unwrap();
    let mut buf = Vec::new();
    let mut pdus = Vec::new();
    while a.poll_transmit(t, &mut buf) {
        pdus.push(buf.clone());
    }
    assert_eq!(pdus.len(), 4);
    // Lose the second fragment of SDU 2; duplicate SDU 3.
    for i in [0, 1, 3, 3] {
        let (pci, payload) = Pci::parse(&pdus[i]).unwrap();
        b.handle_pdu(t, &pci, payload);
    }
    assert_eq!(b.recv(t), Some(Delivery::Sdu(vec![1; 50])));
    assert_eq!(b.recv(t), Some(Delivery::Sdu(vec![3; 50])));
    assert_eq!(b.recv(t), None);
    assert_eq!(b.stats().duplicates, 1);
}

/// Frames in flight: (arrival time, order, to_b, bytes).
type Flight = BinaryHeap<Reverse<(Instant, u64, bool, Vec<u8>)>>;

fn lossy_transfer(seed: u64, size: usize) -> (Duration, u64) {
    let mut rng = Rng::new(seed);
    let cfg = EfcpConfig {
        max_pdu_size: 1400,
        initial_credit: 512,
        send_queue_pdus: 512,
        ..EfcpConfig::default()
    };
    let (mut a, mut b) = pair(cfg);
    let data: Vec<u8> = (0..size)
        .map(|i| (i as u64 ^ seed).wrapping_mul(31) as u8)
        .collect();
    let mut sent = 0;
    let mut got = Vec::with_capacity(size);
    let mut eof = false;
    let mut now = Instant::ZERO;
    let mut flight: Flight = BinaryHeap::new();
    let mut order = 0;
    let mut buf = Vec::new();
    let limit = Instant::ZERO + Duration::from_secs(3600);
    while !(eof && a.is_send_done()) {
        assert!(
            now < limit,
            "seed {seed}: no progress, {} of {size} bytes",
            got.len()
        );
        while sent < size && a.can_send() {
            let end = (sent + 8000).min(size);
            a.send(now, &data[sent..end]).unwrap();
            sent = end;
            if sent == size {
                a.close_send(now);
            }
        }
        for (conn, to_b) in [(&mut a, true), (&mut b, false)] {
            while conn.poll_transmit(now, &mut buf) {
                if rng.chance(0.10) {
                    continue;
                }
                let copies = if rng.chance(0.05) { 2 } else { 1 };
                for _ in 0..copies {
                    order += 1;
                    let delay = Duration::from_micros(1000 + rng.below(19_000));
                    flight.push(Reverse((now + delay, order, to_b, buf.clone())));
                }
            }
        }
        while let Some(d) = b.recv(now) {
            match d {
                Delivery::Sdu(s) => got.extend_from_slice(&s),
                Delivery::Eof => eof = true,
            }
        }
        let next = [
            flight.peek().map(|Reverse(f)| f.0),
            a.poll_timeout(),
            b.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { break };
        now = now.max(next);
        while flight.peek().is_some_and(|Reverse(f)| f.0 <= now) {
            let Reverse((_, _, to_b, bytes)) = flight.pop().unwrap();
            let (pci, payload) = Pci::parse(&bytes).unwrap();
            if to_b {
                b.handle_pdu(now, &pci, payload)
            } else {
                a.handle_pdu(now, &pci, payload)
            }
        }
        a.handle_timeout(now);
        b.handle_timeout(now);
        assert!(a.failure().is_none(), "seed {seed}: sender failed");
    }
    assert_eq!(got.len(), size, "seed {seed}");
    assert!(got == data, "seed {seed}: bytes differ");
    (now - Instant::ZERO, a.stats().pdus_retransmitted)
}

#[test]
fn megabytes_through_loss_duplication_and_reordering() {
    let size = if cfg!(debug_assertions) {
        2 << 20
    } else {
        10 << 20
    };
    for seed in 0..20 {
        let (_, rtx) = lossy_transfer(seed, size);
        assert!(rtx > 0, "seed {seed}");
    }
}

#[test]
fn eof_flag_constant_is_distinct() {
    assert_eq!(flags::ALL.count_ones(), 4);
}

/// The end of stream is acknowledged at once (not after the ack delay): a peer that
/// exits right after reading it must not leave the sender waiting.
#[test]
fn end_of_stream_is_acknowledged_at_once() {
    let (mut a, mut b) = pair(EfcpConfig::default());
    let t = Instant::ZERO;
    a.send(t, b"last words").unwrap();
    a.close_send(t);
    deliver(t, &mut a, &mut b, |_| false);
    // Same instant: the ack goes out without waiting for the A timer.
    assert!(deliver(t, &mut b, &mut a, |_| false) > 0);
    assert!(a.is_send_done());
}
