//! Trace-style tests: two connections driven by hand at explicit times, asserting on
//! the PDUs (decoded from their bytes) that pass between them.

use std::time::Duration;

use super::*;
use crate::wire::control::ControlRepr;
use crate::wire::pci::flags;
use crate::{Address, CepId};

pub(super) const A: Endpoint = Endpoint {
    addr: Address(1),
    cep: CepId(10),
};
pub(super) const B: Endpoint = Endpoint {
    addr: Address(2),
    cep: CepId(20),
};

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(super) fn at(millis: u64) -> Instant {
    Instant::ZERO + ms(millis)
}

pub(super) fn pair(cfg: EfcpConfig) -> (Connection, Connection) {
    (
        Connection::new(cfg.clone(), A, B, Instant::ZERO),
        Connection::new(cfg, B, A, Instant::ZERO),
    )
}

/// Every PDU `from` has to send now, as bytes.
pub(super) fn drain(now: Instant, from: &mut Connection) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while from.poll_transmit(now, &mut buf) {
        out.push(buf.clone());
        assert!(out.len() < 100_000, "poll_transmit never stops");
    }
    out
}

/// Hands one encoded PDU to `to`.
#[track_caller]
pub(super) fn feed(now: Instant, to: &mut Connection, pdu: &[u8]) -> Pci {
    let (pci, payload) = Pci::parse(pdu).expect("a PDU the connection wrote parses");
    assert_eq!(pci.dst_cep, to.local().cep, "addressed to the peer");
    to.handle_pdu(now, &pci, payload);
    pci
}

/// Moves every PDU `from` has into `to`, except those `lose` picks; returns the PCIs
/// of all of them, lost ones included.
#[track_caller]
pub(super) fn deliver(
    now: Instant,
    from: &mut Connection,
    to: &mut Connection,
    mut lose: impl FnMut(&Pci) -> bool,
) -> Vec<Pci> {
    let mut seen = Vec::new();
    for pdu in drain(now, from) {
        let (pci, payload) = Pci::parse(&pdu).expect("valid PDU");
        if !lose(&pci) {
            to.handle_pdu(now, &pci, payload);
        }
        seen.push(pci);
    }
    seen
}

/// Exchanges PDUs both ways until both sides are quiet.
pub(super) fn exchange(now: Instant, a: &mut Connection, b: &mut Connection) {
    for _ in 0..1000 {
        let n = deliver(now, a, b, |_| false).len() + deliver(now, b, a, |_| false).len();
        if n == 0 {
            return;
        }
    }
    panic!("no quiescence");
}

pub(super) fn read_all(now: Instant, c: &mut Connection) -> (Vec<u8>, bool) {
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

pub(super) fn data_seqs(pcis: &[Pci]) -> Vec<u64> {
    pcis.iter()
        .filter(|p| p.pdu_type == PduType::Data)
        .map(|p| p.seq)
        .collect()
}

pub(super) fn control(pdu: &[u8]) -> ControlRepr {
    let (pci, body) = Pci::parse(pdu).unwrap();
    assert_eq!(pci.pdu_type, PduType::Control);
    ControlRepr::parse(body).unwrap()
}

#[test]
fn pci_carries_endpoints_ttl_and_drf() {
    let (mut a, _) = pair(EfcpConfig::default());
    a.send(at(0), b"hi").unwrap();
    a.send(at(0), b"there").unwrap();
    let pdus = drain(at(0), &mut a);
    assert_eq!(pdus.len(), 2);
    #[rustfmt::skip]
    let first = [
        2, 0x80, flags::FIRST | flags::LAST | flags::DRF, 64,
        0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 20, 0, 0, 0, 10,
        0, 0, 0, 0, 0, 0, 0, 0,
        b'h', b'i',
    ];
    assert_eq!(pdus[0], first);
    let (pci, payload) = Pci::parse(&pdus[1]).unwrap();
    assert_eq!(
        (pci.seq, pci.flags, payload),
        (1, flags::FIRST | flags::LAST, &b"there"[..])
    );
}

#[test]
fn sixty_kib_sdu_is_fragmented_and_reassembled() {
    let cfg = EfcpConfig {
        max_pdu_size: 1500,
        ..EfcpConfig::default()
    };
    let (mut a, mut b) = pair(cfg);
    let sdu: Vec<u8> = (0..60 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    a.send(at(0), &sdu).unwrap();
    // Rounds limited by the congestion window (16, then 32 after the acks), each
    // delivered backwards: reassembly waits for the whole run.
    let mut pdus = Vec::new();
    for round in 0..2 {
        let mut burst = drain(at(round), &mut a);
        pdus.extend(burst.clone());
        burst.reverse();
        for pdu in &burst {
            assert!(!b.has_delivery());
            feed(at(round), &mut b, pdu);
        }
        deliver(at(round) + ms(2), &mut b, &mut a, |_| false);
    }
    let n = (60 * 1024usize).div_ceil(1500 - PCI_LEN);
    assert_eq!(pdus.len(), n);
    for (i, pdu) in pdus.iter().enumerate() {
        assert!(pdu.len() <= 1500);
        let (pci, _) = Pci::parse(pdu).unwrap();
        let expect = match i {
            0 => flags::FIRST | flags::DRF,
            _ if i == n - 1 => flags::LAST,
            _ => 0,
        };
        assert_eq!((pci.seq, pci.flags), (i as u64, expect), "fragment {i}");
    }
    assert_eq!(b.recv(at(1)), Some(Delivery::Sdu(sdu)));
    assert_eq!(b.recv(at(1)), None);
    // The acks free the sender.
    deliver(at(1), &mut b, &mut a, |_| false);
    assert_eq!(a.stats().in_flight, 0);
}

#[test]
fn eof_follows_the_data_and_completes_both_sides() {
    let (mut a, mut b) = pair(EfcpConfig::default());
    a.send(at(0), b"hello").unwrap();
    a.close_send(at(0));
    assert_eq!(a.send(at(0), b"late"), Err(SendError::Closed));
    let sent = deliver(at(0), &mut a, &mut b, |_| false);
    assert_eq!(sent.len(), 2);
    assert_eq!((sent[1].seq, sent[1].flags), (1, flags::EOF));
    assert!(b.is_recv_complete() && !b.is_recv_done());
    // The end of stream is acknowledged at once, without the A timer.
    assert_eq!(deliver(at(0), &mut b, &mut a, |_| false).len(), 1);
    assert!(a.is_send_done());
    assert_eq!(b.recv(at(0)), Some(Delivery::Sdu(b"hello".to_vec())));
    assert_eq!(b.recv(at(0)), Some(Delivery::Eof));
    assert_eq!(b.recv(at(0)), None);
    assert!(b.is_recv_done());
    assert_eq!(
        a.poll_timeout(),
        None,
        "no timer once everything is acknowledged"
    );
}

#[test]
fn rto_retransmits_a_dropped_pdu() {
    let (mut a, mut b) = pair(EfcpConfig::default());
    a.send(at(0), b"one").unwrap();
    let original = drain(at(0), &mut a);
    assert_eq!(original.len(), 1, "dropped on the way");
    assert_eq!(a.poll_timeout(), Some(at(200)), "initial RTO");
    a.handle_timeout(at(199));
    assert!(drain(at(199), &mut a).is_empty(), "not yet");
    a.handle_timeout(at(200));
    let again = drain(at(200), &mut a);
    let mut marked = original[0].clone();
    marked[2] |= flags::RTX;
    assert_eq!(again, [marked], "the same PDU, marked as a retransmission");
    assert_eq!(a.poll_timeout(), Some(at(600)), "backed off to 400 ms");
    feed(at(210), &mut b, &again[0]);
    deliver(at(212), &mut b, &mut a, |_| false);
    assert_eq!(b.recv(at(212)), Some(Delivery::Sdu(b"one".to_vec())));
    let s = a.stats();
    assert_eq!((s.pdus_sent, s.pdus_retransmitted), (2, 1));
    assert_eq!(s.srtt, None, "Karn: no sample from a retransmitted PDU");
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn sack_triggers_fast_retransmit_of_the_hole() {
    let (mut a, mut b) = pair(EfcpConfig::default());
    for i in 0..10u8 {
        a.send(at(0), &[i]).unwrap();
    }
    let sent = deliver(at(0), &mut a, &mut b, |p| p.seq == 2);
    assert_eq!(data_seqs(&sent), (0..10).collect::<Vec<_>>());
    // Out-of-order arrivals are acknowledged at once, each with the SACK so far.
    let acks = drain(at(5), &mut b);
    assert_eq!(acks.len(), 1, "acks coalesce until polled");
    assert_eq!(
        control(&acks[0]),
        ControlRepr {
            ack: 2,
            rwe: 256,
            echo: Some(9),
            sacks: vec![(3, 10)]
        }
    );
    feed(at(5), &mut a, &acks[0]);
    // Seven PDUs past the hole: seq 2 goes again at once, long before the RTO.
    let rtx = deliver(at(5), &mut a, &mut b, |_| false);
    assert_eq!(data_seqs(&rtx), [2]);
    assert_eq!(a.stats().pdus_retransmitted, 1);
    let acks = drain(at(5), &mut b);
    assert_eq!(
        control(&acks[0]),
        ControlRepr {
            ack: 10,
            rwe: 256,
            echo: None,
            sacks: vec![]
        }
    );
    feed(at(5), &mut a, &acks[0]);
    assert_eq!(read_all(at(5), &mut b).0, (0..10u8).collect::<Vec<_>>());
    assert_eq!(a.stats().in_flight, 0);
    assert_eq!(a.stats().srtt, Some(ms(5)));
}

#[test]
fn two_sacked_pdus_are_not_enough_for_fast_retransmit() {
    let (mut a, mut b) = pair(EfcpConfig::default());
    for i in 0..10u8 {
        a.send(at(0), &[i]).unwrap();
    }
    deliver(at(0), &mut a, &mut b, |p| p.seq == 2 || p.seq > 4);
    deliver(at(5), &mut b, &mut a, |_| false);
    assert!(
        drain(at(5), &mut a).is_empty(),
        "only 3 and 4 above the hole"
    );
    assert_eq!(a.stats().in_flight, 6, "2 and 5..10");
}

#[test]
fn duplicates_are_delivered_once_and_acknowledged() {
    let (mut a, mut b) = pair(EfcpConfig::default());
    a.send(at(0), b"x").unwrap();
    let pdu = drain(at(0), &mut a).remove(0);
    feed(at(0), &mut b, &pdu);
    assert!(
        drain(at(0), &mut b).is_empty(),
        "in order: the ack waits for the A timer"
    );
    feed(at(1), &mut b, &pdu);
    let acks = drain(at(1), &mut b);
    assert_eq!(acks.len(), 1, "a duplicate is acknowledged at once");
    assert_eq!(control(&acks[0]).ack, 1);
    assert_eq!(read_all(at(1), &mut b), (b"x".to_vec(), false));
    let s = b.stats();
    assert_eq!((s.pdus_received, s.duplicates, s.sdus_delivered), (2, 1, 1));
}

#[test]
fn black_holed_peer_fails_after_max_rtx() {
    let cfg = EfcpConfig {
        max_rtx: 3,
        ..EfcpConfig::default()
    };
    let (mut a, _) = pair(cfg);
    a.send(at(0), b"void").unwrap();
    let mut t = at(0);
    let mut sends = Vec::new();
    while a.failure().is_none() {
        sends.push((t, drain(t, &mut a).len()));
        t = a.poll_timeout().expect("a timer while data is outstanding");
        a.handle_timeout(t);
        assert!(sends.len() < 100);
    }
    // 200 ms, then backed off: 400, 800.
    assert_eq!(
        sends,
        [(at(0), 1), (at(200), 1), (at(600), 1), (at(1400), 1)]
    );
    assert_eq!(t, at(3000));
    assert_eq!(a.failure(), Some(Failure::RetransmissionsExhausted));
    assert_eq!(a.send(t, b"more"), Err(SendError::Closed));
    assert!(!a.can_send());
    assert!(drain(t, &mut a).is_empty());
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn empty_sdu_is_delivered() {
    let (mut a, mut b) = pair(EfcpConfig::default());
    a.send(at(0), b"").unwrap();
    exchange(at(0), &mut a, &mut b);
    assert_eq!(b.recv(at(0)), Some(Delivery::Sdu(Vec::new())));
}

#[test]
fn unreliable_delivers_what_arrives_without_duplicates() {
    let cfg = EfcpConfig {
        reliable: false,
        max_pdu_size: 100 + PCI_LEN,
        ..EfcpConfig::default()
    };
    let (mut a, mut b) = pair(cfg);
    a.send(at(0), &[1; 50]).unwrap();
    a.send(at(0), &[2; 150]).unwrap(); // two fragments
    a.send(at(0), &[3; 50]).unwrap();
    a.send(at(0), &[4; 150]).unwrap(); // two fragments
    a.close_send(at(0));
    let pdus = drain(at(0), &mut a);
    assert_eq!(pdus.len(), 7);
    assert!(a.is_send_done(), "sent is done when unreliable");
    assert_eq!(a.poll_timeout(), None, "no timers");
    // Lose SDU 2's second fragment, duplicate SDU 3, reorder SDU 4's fragments.
    for i in [0, 1, 3, 3, 5, 4, 6] {
        feed(at(1), &mut b, &pdus[i]);
    }
    assert!(drain(at(1), &mut b).is_empty(), "no acknowledgements");
    assert_eq!(b.recv(at(1)), Some(Delivery::Sdu(vec![1; 50])));
    assert_eq!(b.recv(at(1)), Some(Delivery::Sdu(vec![3; 50])));
    assert_eq!(b.recv(at(1)), Some(Delivery::Sdu(vec![4; 150])));
    assert_eq!(b.recv(at(1)), Some(Delivery::Eof));
    assert_eq!(b.recv(at(1)), None);
    assert!(b.is_recv_done());
    assert_eq!(b.stats().duplicates, 1);
}

#[test]
fn garbage_is_counted_and_ignored() {
    let (mut a, mut b) = pair(EfcpConfig::default());
    a.send(at(0), b"data").unwrap();
    drain(at(0), &mut a);
    let ctrl = |body: &[u8]| {
        let mut pdu = vec![0; PCI_LEN];
        Pci {
            pdu_type: PduType::Control,
            flags: 0,
            ttl: 1,
            dst_addr: A.addr,
            src_addr: B.addr,
            dst_cep: A.cep,
            src_cep: B.cep,
            seq: 0,
        }
        .emit(&mut pdu);
        pdu.extend_from_slice(body);
        pdu
    };
    feed(at(1), &mut a, &ctrl(b"\x01\x02"));
    let mut beyond = Vec::new();
    ControlRepr {
        ack: 5,
        rwe: 1 << 40,
        echo: None,
        sacks: vec![],
    }
    .emit(&mut beyond);
    feed(at(1), &mut a, &ctrl(&beyond));
    let mut mgmt = ctrl(b"");
    mgmt[1] = PduType::Management.code();
    feed(at(1), &mut a, &mgmt);
    assert_eq!(a.stats().malformed, 3);
    assert_eq!(a.stats().in_flight, 1, "nothing was acknowledged");
    // A data PDU far past the window is dropped, and answered with the window.
    let mut far = ctrl(b"x");
    far[12..16].copy_from_slice(&B.cep.0.to_be_bytes());
    far[1] = PduType::Data.code();
    far[2] = flags::FIRST | flags::LAST;
    far[20..28].copy_from_slice(&u64::MAX.to_be_bytes());
    feed(at(1), &mut b, &far);
    assert!(!b.has_delivery());
    assert_eq!(
        control(&drain(at(1), &mut b)[0]),
        ControlRepr {
            ack: 0,
            rwe: 256,
            echo: None,
            sacks: vec![]
        }
    );
}

proptest::proptest! {
    /// Arbitrary PDUs never panic a connection, reliable or not.
    #[test]
    fn arbitrary_pdus_never_panic(
        reliable: bool,
        pdus in proptest::collection::vec(
            (0usize..3, 0u8..16, proptest::num::u64::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..80)),
            0..40,
        ),
    ) {
        let cfg = EfcpConfig { reliable, initial_credit: 8, ..EfcpConfig::default() };
        let (mut a, _) = pair(cfg);
        a.send(at(0), &[9; 3000]).unwrap();
        let mut buf = Vec::new();
        for (i, (t, fl, seq, payload)) in pdus.into_iter().enumerate() {
            let now = at(i as u64);
            let pci = Pci {
                pdu_type: [PduType::Data, PduType::Control, PduType::Management][t],
                flags: fl,
                ttl: 1,
                dst_addr: A.addr,
                src_addr: B.addr,
                dst_cep: A.cep,
                src_cep: B.cep,
                seq: seq % 64,
            };
            a.handle_pdu(now, &pci, &payload);
            a.handle_timeout(now);
            while a.poll_transmit(now, &mut buf) {}
            while a.recv(now).is_some() {}
        }
    }
}
