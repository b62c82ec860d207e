//! The tail-loss probe: a lost last PDU goes again two round trips (plus the peer's
//! acknowledgement delay) after the last acknowledgement, before the retransmission
//! timeout and without its penalties; several lost ones are found by the probe's SACK;
//! one probe per episode, then the timer; none while recovering.

use super::tests::{at, control, data_seqs, deliver, drain, feed, pair, read_all};
use super::*;
use crate::wire::pci::flags;

/// One exchange that gives a 2 ms round-trip sample (the peer's A timer).
fn measured() -> (Connection, Connection) {
    let (mut a, mut b) = pair(EfcpConfig::default());
    a.send(at(0), b"first").unwrap();
    deliver(at(0), &mut a, &mut b, |_| false);
    deliver(at(2), &mut b, &mut a, |_| false);
    assert_eq!(a.stats().srtt, Some(tests::ms(2)));
    (a, b)
}

/// Three PDUs at 10 ms, the last lost. The acknowledgement of the other two at 12 ms
/// arms the probe for 12 + 2 × 2 + 2 = 18 ms (the timeout would be at 22 ms): the lost
/// PDU goes again then, marked, with no timeout and no loss event, is acknowledged at
/// once (a retransmission), and everything arrives in order.
#[test]
fn a_lost_last_pdu_is_probed_before_the_timeout() {
    let (mut a, mut b) = measured();
    for m in [b"one", b"two", b"thr"] {
        a.send(at(10), m).unwrap();
    }
    let sent = deliver(at(10), &mut a, &mut b, |p| p.seq == 3);
    assert_eq!(data_seqs(&sent), [1, 2, 3]);
    deliver(at(12), &mut b, &mut a, |_| false);
    assert_eq!(a.poll_timeout(), Some(at(18)), "the probe, before the RTO");
    a.handle_timeout(at(18));
    let probe = drain(at(18), &mut a);
    assert_eq!(probe.len(), 1);
    let pci = feed(at(18), &mut b, &probe[0]);
    assert_eq!((pci.seq, pci.flags & flags::RTX), (3, flags::RTX));
    let s = a.stats();
    assert_eq!((s.tail_probes, s.timeouts, s.loss_events), (1, 0, 0));
    let ack = drain(at(18), &mut b);
    assert_eq!(
        control(&ack[0]).echo,
        None,
        "a retransmission is not echoed"
    );
    feed(at(18), &mut a, &ack[0]);
    assert_eq!(
        a.stats().srtt,
        Some(tests::ms(2)),
        "no sample from the probe"
    );
    assert_eq!(a.poll_timeout(), None, "all acknowledged");
    assert_eq!(read_all(at(18), &mut b).0, b"firstonetwothr");
}

/// The probe is lost too: the next event is the retransmission timeout (restarted
/// when the probe went), not a second probe.
#[test]
fn one_probe_per_episode_then_the_timeout() {
    let (mut a, mut b) = measured();
    a.send(at(10), b"one").unwrap();
    deliver(at(10), &mut a, &mut b, |_| true);
    let probe_at = a.poll_timeout().expect("a probe is armed");
    assert_eq!(probe_at, at(16), "10 + 2 x 2 + 2 ms");
    a.handle_timeout(probe_at);
    assert_eq!(drain(probe_at, &mut a).len(), 1, "the probe (lost)");
    let rto = a.stats().rto;
    assert_eq!(a.poll_timeout(), Some(probe_at + rto));
    a.handle_timeout(probe_at + rto);
    let again = drain(probe_at + rto, &mut a);
    assert_eq!(again.len(), 1);
    let s = a.stats();
    assert_eq!((s.tail_probes, s.timeouts), (1, 1));
    feed(probe_at + rto, &mut b, &again[0]);
    assert_eq!(read_all(probe_at + rto, &mut b).0, b"firstone");
}

/// Four PDUs at 10 ms, all lost. The probe at 16 ms resends the last; the peer SACKs
/// it above the hole, and the three before it (sent two round trips earlier) are lost
/// at once: a loss event, and they go again on that acknowledgement, not at the
/// timeout (20 ms, restarted to 26 ms by the probe).
#[test]
fn the_probes_sack_shows_every_lost_pdu_before_it() {
    let (mut a, mut b) = measured();
    for m in [b"one", b"two", b"thr", b"fou"] {
        a.send(at(10), m).unwrap();
    }
    deliver(at(10), &mut a, &mut b, |_| true);
    assert_eq!(a.poll_timeout(), Some(at(16)));
    a.handle_timeout(at(16));
    let probe = deliver(at(16), &mut a, &mut b, |_| false);
    assert_eq!(data_seqs(&probe), [4]);
    let ack = drain(at(17), &mut b);
    assert_eq!(control(&ack[0]).sacks, [(4, 5)]);
    feed(at(17), &mut a, &ack[0]);
    assert_eq!(a.stats().loss_events, 1);
    let again = deliver(at(17), &mut a, &mut b, |_| false);
    assert_eq!(data_seqs(&again), [1, 2, 3]);
    deliver(at(17), &mut b, &mut a, |_| false);
    assert_eq!(read_all(at(17), &mut b).0, b"firstonetwothrfou");
    assert_eq!(a.stats().timeouts, 0);
}

/// Five PDUs, the first lost: the SACK of the other four starts fast recovery, and
/// its retransmission is lost too. The probe armed when they were sent (16 ms) does
/// not go: the timer (restarted by the retransmission at 11 ms: 21 ms) handles it.
#[test]
fn no_probe_while_recovering() {
    let (mut a, mut b) = measured();
    for m in [b"one", b"two", b"thr", b"fou", b"fiv"] {
        a.send(at(10), m).unwrap();
    }
    deliver(at(10), &mut a, &mut b, |p| p.seq == 1);
    deliver(at(11), &mut b, &mut a, |_| false);
    let rtx = deliver(at(11), &mut a, &mut b, |_| true);
    assert_eq!(data_seqs(&rtx), [1], "fast retransmission (lost)");
    assert_eq!(a.poll_timeout(), Some(at(21)), "the timer, no probe");
    a.handle_timeout(at(21));
    deliver(at(21), &mut a, &mut b, |_| false);
    assert_eq!(a.stats().tail_probes, 0);
    assert_eq!(read_all(at(21), &mut b).0, b"firstonetwothrfoufiv");
}

/// A window probe (one PDU past the peer's closed window) arms no tail probe: the
/// peer drops it, and a second copy two round trips later would be dropped as well.
#[test]
fn a_window_probe_arms_no_tail_probe() {
    let cfg = EfcpConfig {
        initial_credit: 1,
        ..EfcpConfig::default()
    };
    let (mut a, mut b) = pair(cfg);
    a.send(at(0), b"first").unwrap();
    deliver(at(0), &mut a, &mut b, |_| false);
    deliver(at(2), &mut b, &mut a, |_| false);
    a.send(at(10), b"one").unwrap();
    assert!(drain(at(10), &mut a).is_empty(), "the window is closed");
    let probe_at = a.poll_timeout().expect("the window probe timer");
    a.handle_timeout(probe_at);
    assert_eq!(drain(probe_at, &mut a).len(), 1, "the window probe");
    assert!(a
        .poll_timeout()
        .is_some_and(|t| t >= probe_at + a.stats().rto));
    assert_eq!(a.stats().tail_probes, 0);
}

/// Two holes, both retransmitted, 1 ms apart; the first retransmission is lost. The
/// SACK of the second (sent after it by more than the reordering window, a quarter of
/// the 2 ms round trip) shows the first lost: it goes a third time at once, not at the
/// timeout (the count rule alone waits for PDUs first sent after it, and there are
/// none).
#[test]
fn a_lost_retransmission_is_found_by_a_later_one() {
    let (mut a, mut b) = measured();
    for m in [b"one", b"two", b"thr", b"fou", b"fiv", b"six"] {
        a.send(at(10), m).unwrap();
    }
    deliver(at(10), &mut a, &mut b, |p| p.seq <= 2);
    deliver(at(11), &mut b, &mut a, |_| false);
    let mut first = Vec::new();
    assert!(a.poll_transmit(at(11), &mut first), "seq 1 again (lost)");
    let second = drain(at(12), &mut a);
    assert_eq!(second.len(), 1);
    assert_eq!(feed(at(12), &mut b, &second[0]).seq, 2);
    deliver(at(12), &mut b, &mut a, |_| false);
    let third = deliver(at(12), &mut a, &mut b, |_| false);
    assert_eq!(
        data_seqs(&third),
        [1],
        "found lost by time, before the timeout"
    );
    deliver(at(12), &mut b, &mut a, |_| false);
    assert_eq!(a.stats().timeouts, 0);
    assert_eq!(read_all(at(12), &mut b).0, b"firstonetwothrfoufivsix");
}
