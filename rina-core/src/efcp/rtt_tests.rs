//! Round-trip timing by the acknowledgement's echo: a retransmission is marked, the
//! acknowledgement it causes times nothing (not even PDUs first sent before it, which
//! Karn's rule alone would time from their first sending), and a late acknowledgement
//! of a first transmission still times it from that first sending.

use super::tests::{at, control, deliver, drain, feed, ms, pair};
use super::*;
use crate::wire::pci::flags;

/// PDU 0 at 0 ms and PDU 1 at 100 ms arrive but their acknowledgements are lost; the
/// timer resends PDU 0 at 200 ms. The acknowledgement that answers the resent PDU
/// covers PDU 1 too, yet gives no sample (the path's round trip is 2 ms, and PDU 1 was
/// sent 102 ms before). The next first transmission gives the true round trip.
#[test]
fn an_acknowledgement_caused_by_a_retransmission_times_nothing() {
    let (mut a, mut b) = pair(EfcpConfig::default());
    a.send(at(0), b"zero").unwrap();
    deliver(at(0), &mut a, &mut b, |_| false);
    assert_eq!(control(&drain(at(2), &mut b)[0]).echo, Some(0));
    a.send(at(100), b"one").unwrap();
    deliver(at(100), &mut a, &mut b, |_| false);
    assert_eq!(control(&drain(at(102), &mut b)[0]).echo, Some(1));
    // Both acknowledgements were lost: the timer resends PDU 0, marked.
    a.handle_timeout(at(200));
    let again = drain(at(200), &mut a);
    assert_eq!(again.len(), 1);
    let pci = feed(at(201), &mut b, &again[0]);
    assert_eq!((pci.seq, pci.flags & flags::RTX), (0, flags::RTX));
    let ack = drain(at(201), &mut b);
    assert_eq!((control(&ack[0]).ack, control(&ack[0]).echo), (2, None));
    feed(at(202), &mut a, &ack[0]);
    assert_eq!(a.stats().bytes_acked, 7, "both acknowledged");
    assert_eq!(a.stats().srtt, None, "no sample from this acknowledgement");
    // A first transmission, answered after the A timer: 2 ms.
    a.send(at(300), b"two").unwrap();
    deliver(at(300), &mut a, &mut b, |_| false);
    let ack = drain(at(302), &mut b);
    assert_eq!(control(&ack[0]).echo, Some(2));
    feed(at(302), &mut a, &ack[0]);
    assert_eq!(a.stats().srtt, Some(ms(2)));
}

/// The acknowledgement of PDU 0's first transmission is slow (300 ms, past the 200 ms
/// timeout): it arrives after the resend, and the round trip is timed from the first
/// sending, so the estimate learns the path is slow instead of staying wrong.
#[test]
fn a_late_acknowledgement_times_the_first_transmission() {
    let (mut a, mut b) = pair(EfcpConfig::default());
    a.send(at(0), b"zero").unwrap();
    deliver(at(0), &mut a, &mut b, |_| false);
    let late = drain(at(2), &mut b);
    a.handle_timeout(at(200));
    assert_eq!(drain(at(200), &mut a).len(), 1, "resent (and lost)");
    feed(at(300), &mut a, &late[0]);
    assert_eq!(a.stats().srtt, Some(ms(300)));
    assert_eq!(a.poll_timeout(), None, "all acknowledged");
}

/// A duplicate arriving between the first transmission and the acknowledgement takes
/// the echo away: the acknowledgement may be answering the duplicate.
#[test]
fn a_duplicate_clears_the_echo() {
    let (mut a, mut b) = pair(EfcpConfig::default());
    a.send(at(0), b"zero").unwrap();
    let first = drain(at(0), &mut a);
    feed(at(1), &mut b, &first[0]);
    feed(at(1), &mut b, &first[0]);
    let ack = drain(at(1), &mut b);
    assert_eq!(ack.len(), 1);
    assert_eq!((control(&ack[0]).ack, control(&ack[0]).echo), (1, None));
}

/// The echo of a PDU that arrived above a hole is SACKed, not cumulatively
/// acknowledged: it still times the round trip.
#[test]
fn a_sacked_echo_is_a_sample() {
    let (mut a, mut b) = pair(EfcpConfig::default());
    for m in [b"zero", b"one_", b"two_"] {
        a.send(at(0), m).unwrap();
    }
    deliver(at(0), &mut a, &mut b, |p| p.seq == 0);
    let ack = drain(at(1), &mut b);
    let c = control(&ack[0]);
    assert_eq!(
        (c.ack, c.echo, c.sacks.as_slice()),
        (0, Some(2), &[(1, 3)][..])
    );
    feed(at(1), &mut a, &ack[0]);
    assert_eq!(a.stats().srtt, Some(ms(1)));
}
