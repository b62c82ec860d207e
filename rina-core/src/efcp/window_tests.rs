//! Flow control traces: the receive window driven by the reader, window updates,
//! probes of a closed window, and the send queue bound.

use super::tests::{at, control, data_seqs, deliver, drain, exchange, feed, ms, pair, read_all};
use super::*;
use crate::wire::control::ControlRepr;

#[test]
fn window_closes_without_reads_and_reopens_on_reads() {
    let cfg = EfcpConfig {
        initial_credit: 8,
        send_queue_pdus: 64,
        ..EfcpConfig::default()
    };
    let (mut a, mut b) = pair(cfg);
    for i in 0..20u8 {
        a.send(at(0), &[i; 10]).unwrap();
    }
    let sent = deliver(at(0), &mut a, &mut b, |_| false);
    assert_eq!(
        data_seqs(&sent),
        (0..8).collect::<Vec<_>>(),
        "the credit, no more"
    );
    // The receiver acknowledges (after the A timer) but the window stays at 8.
    let acks = drain(at(2), &mut b);
    assert_eq!(acks.len(), 1);
    assert_eq!(
        control(&acks[0]),
        ControlRepr {
            ack: 8,
            rwe: 8,
            echo: Some(7),
            sacks: vec![]
        }
    );
    feed(at(2), &mut a, &acks[0]);
    assert!(drain(at(2), &mut a).is_empty(), "window closed");
    // One read is less than a quarter of the credit: no update yet.
    assert_eq!(b.recv(at(3)), Some(Delivery::Sdu(vec![0; 10])));
    assert!(drain(at(3), &mut b).is_empty());
    assert_eq!(b.recv(at(3)), Some(Delivery::Sdu(vec![1; 10])));
    let update = drain(at(3), &mut b);
    assert_eq!(update.len(), 1);
    assert_eq!(
        control(&update[0]),
        ControlRepr {
            ack: 8,
            rwe: 10,
            echo: None,
            sacks: vec![]
        }
    );
    feed(at(3), &mut a, &update[0]);
    assert_eq!(
        data_seqs(&deliver(at(3), &mut a, &mut b, |_| false)),
        [8, 9]
    );
    // Reading everything as it comes drains the rest.
    let mut got = vec![0; 10];
    got.extend([1; 10]);
    for t in 4..40 {
        got.extend(read_all(at(t), &mut b).0);
        exchange(at(t), &mut a, &mut b);
    }
    assert_eq!(got, (0..20u8).flat_map(|i| [i; 10]).collect::<Vec<_>>());
}

#[test]
fn lost_window_update_is_recovered_by_a_probe() {
    let cfg = EfcpConfig {
        initial_credit: 4,
        ..EfcpConfig::default()
    };
    let (mut a, mut b) = pair(cfg);
    for i in 0..8u8 {
        a.send(at(0), &[i]).unwrap();
    }
    assert_eq!(deliver(at(0), &mut a, &mut b, |_| false).len(), 4);
    exchange(at(0), &mut a, &mut b);
    deliver(at(2), &mut b, &mut a, |_| false); // the delayed ack: window closed
    assert_eq!(read_all(at(3), &mut b).0, [0, 1, 2, 3]);
    assert_eq!(drain(at(3), &mut b).len(), 1, "the window update, lost");
    // After an RTO with nothing in flight, the sender probes with the next PDU.
    let probe_at = a.poll_timeout().expect("probe timer");
    assert!(probe_at > at(3));
    a.handle_timeout(probe_at);
    let probe = deliver(probe_at, &mut a, &mut b, |_| false);
    assert_eq!(data_seqs(&probe), [4]);
    for t in 0..20 {
        let now = probe_at + ms(t);
        a.handle_timeout(now);
        exchange(now, &mut a, &mut b);
    }
    assert_eq!(read_all(probe_at + ms(20), &mut b).0, [4, 5, 6, 7]);
    assert!(a.failure().is_none());
}

#[test]
fn probe_past_a_closed_window_does_not_fail_a_slow_reader() {
    let cfg = EfcpConfig {
        initial_credit: 2,
        max_rtx: 2,
        ..EfcpConfig::default()
    };
    let (mut a, mut b) = pair(cfg);
    for i in 0..4u8 {
        a.send(at(0), &[i]).unwrap();
    }
    let mut t = at(0);
    // Nobody reads for a long while: probes are refused, the peer still answers.
    while t < at(60_000) {
        exchange(t, &mut a, &mut b);
        t = a
            .poll_timeout()
            .unwrap()
            .min(b.poll_timeout().unwrap_or(t + ms(1000)));
        a.handle_timeout(t);
    }
    assert!(a.failure().is_none());
    assert_eq!(
        b.stats().pdus_received - b.stats().duplicates,
        b.stats().pdus_received
    );
    for _ in 0..10 {
        read_all(t, &mut b);
        exchange(t, &mut a, &mut b);
    }
    assert_eq!(b.stats().sdus_delivered, 4);
    assert_eq!(a.stats().cwnd, 16, "probes are not congestion");
}

#[test]
fn send_queue_is_bounded() {
    let cfg = EfcpConfig {
        send_queue_pdus: 3,
        max_sdu_size: 100,
        ..EfcpConfig::default()
    };
    let (mut a, _) = pair(cfg);
    assert_eq!(a.send(at(0), &[0; 101]), Err(SendError::TooLarge));
    for _ in 0..3 {
        assert!(a.can_send());
        a.send(at(0), b"q").unwrap();
    }
    assert!(!a.can_send());
    assert_eq!(a.send(at(0), b"q"), Err(SendError::WouldBlock));
    assert_eq!(drain(at(0), &mut a).len(), 3);
    assert!(a.can_send(), "sent PDUs no longer count");
}

#[test]
fn full_pdus_are_acknowledged_every_second_and_small_ones_by_the_timer() {
    let cfg = EfcpConfig {
        max_pdu_size: 1452,
        initial_credit: 2889,
        send_queue_pdus: 180,
        ..EfcpConfig::default()
    };
    let (mut a, mut b) = pair(cfg);
    // Small requests (64 bytes, one PDU each): the acknowledgement waits for the A
    // timer, so an answer could go with it rather than a PDU of its own.
    for i in 0..8u8 {
        a.send(at(0), &[i; 64]).unwrap();
        deliver(at(0), &mut a, &mut b, |_| false);
        assert!(
            drain(at(0), &mut b).is_empty(),
            "request {i} acknowledged at once"
        );
    }
    assert_eq!(drain(at(2), &mut b).len(), 1, "the A timer");
    // Bulk: full PDUs are acknowledged every second one, whatever the credit.
    a.send(at(3), &[7; 1424 * 6]).unwrap();
    let mut acks = 0;
    for _ in 0..6 {
        let mut buf = Vec::new();
        assert!(a.poll_transmit(at(3), &mut buf));
        feed(at(3), &mut b, &buf);
        acks += drain(at(3), &mut b).len();
    }
    assert_eq!(acks, 3, "one per two full PDUs");
}

#[test]
fn after_a_loss_in_order_pdus_are_acknowledged_at_once() {
    let cfg = EfcpConfig {
        max_pdu_size: 1452,
        initial_credit: 2889,
        ..EfcpConfig::default()
    };
    let (mut a, mut b) = pair(cfg);
    for i in 0..4u8 {
        a.send(at(0), &[i; 64]).unwrap();
    }
    // The first is lost: the others arrive out of order and are acknowledged at once.
    let sent = deliver(at(0), &mut a, &mut b, |p| p.seq == 0);
    assert_eq!(sent.len(), 4);
    let acks = drain(at(0), &mut b);
    assert_eq!(acks.len(), 1);
    feed(at(1), &mut a, &acks[0]);
    // Three SACKed above it: the hole goes again at once.
    let rtx = drain(at(1), &mut a);
    assert_eq!(rtx.len(), 1);
    assert_eq!(Pci::parse(&rtx[0]).map(|p| p.0.seq), Ok(0));
    feed(at(1), &mut b, &rtx[0]);
    assert_eq!(drain(at(1), &mut b).len(), 1, "the gap filled");
    // Small in-order PDUs that would wait for the A timer are acknowledged at once
    // while the sender recovers.
    a.send(at(2), &[9; 64]).unwrap();
    deliver(at(2), &mut a, &mut b, |_| false);
    assert_eq!(drain(at(2), &mut b).len(), 1, "a quick acknowledgement");
}
