//! Segmentation and joining: segments with the right headers and checksums, joined
//! back into the batch they came from, a lost one leaving two runs, and no input
//! that panics.

use super::*;

/// A TSO batch: `virtio_net_hdr`, an IPv4 (or IPv6) header, a TCP header with 12
/// bytes of options (flags ACK|PSH, sequence number just below the wrap), `payload`.
fn tso(v6: bool, mss: usize, payload: &[u8]) -> Vec<u8> {
    let mut ip = if v6 {
        let mut h = vec![0u8; 40];
        h[0] = 0x60;
        h[6] = 6;
        h[7] = 64;
        h[8..24].copy_from_slice(&[0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        h[24..40].copy_from_slice(&[0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        h
    } else {
        let mut h = vec![0u8; 20];
        h[0] = 0x45;
        h[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        h[6] = 0x40; // DF
        h[8] = 64;
        h[9] = 6;
        h[12..16].copy_from_slice(&[10, 77, 0, 1]);
        h[16..20].copy_from_slice(&[10, 77, 0, 2]);
        h
    };
    let ip_len = ip.len();
    let mut tcp = vec![0u8; 32];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&5000u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&0xffff_f000u32.to_be_bytes());
    tcp[8..12].copy_from_slice(&77u32.to_be_bytes());
    tcp[12] = 8 << 4;
    tcp[13] = ACK | PSH;
    tcp[14..16].copy_from_slice(&512u16.to_be_bytes());
    tcp[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 7]);
    ip.extend_from_slice(&tcp);
    ip.extend_from_slice(payload);
    let mut p = vec![0u8; VNET_HDR];
    p[0] = NEEDS_CSUM;
    p[1] = if v6 { GSO_TCPV6 } else { GSO_TCPV4 };
    p[2..4].copy_from_slice(&((ip_len + 32) as u16).to_le_bytes());
    p[4..6].copy_from_slice(&(mss as u16).to_le_bytes());
    p[6..8].copy_from_slice(&(ip_len as u16).to_le_bytes());
    p[8..10].copy_from_slice(&16u16.to_le_bytes());
    p.extend_from_slice(&ip);
    p
}

fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// What the kernel does with `NEEDS_CSUM`, then the check a receiver makes: the TCP
/// checksum completed from the pseudo-header sum in its field, verified.
fn checksum_ok(packet: &[u8]) -> bool {
    let ip = &packet[VNET_HDR..];
    let l = tcp_layout(ip).expect("a TCP packet");
    let mut tcp = ip[l.ip..].to_vec();
    let done = !fold(sum16(&tcp));
    tcp[16..18].copy_from_slice(&done.to_be_bytes());
    let pseudo = if l.v6 {
        sum16(&ip[8..40])
    } else {
        sum16(&ip[12..20])
    } + tcp.len() as u32
        + 6;
    fold(pseudo + sum16(&tcp)) == 0xffff
}

fn split(p: &[u8]) -> Vec<Vec<u8>> {
    (0..count(p, VNET_HDR))
        .map(|k| {
            let mut out = Vec::new();
            segment(p, VNET_HDR, k, &mut out);
            out
        })
        .collect()
}

fn join(segments: &[&Vec<u8>]) -> Vec<Vec<u8>> {
    let mut j = Joiner::default();
    let mut written = Vec::new();
    let mut write = |b: &[u8]| written.push(b.to_vec());
    for s in segments {
        j.add(s, &mut write);
    }
    j.flush(&mut write);
    written
}

#[test]
fn a_batch_leaves_as_segments_with_their_own_headers() {
    for v6 in [false, true] {
        let payload = bytes(3500);
        let p = tso(v6, 1000, &payload);
        let segs = split(&p);
        assert_eq!(segs.len(), 4);
        for (k, s) in segs.iter().enumerate() {
            let ip = &s[VNET_HDR..];
            let l = tcp_layout(ip).unwrap();
            let len = if k < 3 { 1000 } else { 500 };
            assert_eq!(ip.len(), l.headers + len);
            assert_eq!(&ip[l.headers..], &payload[k * 1000..k * 1000 + len]);
            if v6 {
                assert_eq!(usize::from(be16(ip, 4)), 32 + len);
            } else {
                assert_eq!(usize::from(be16(ip, 2)), 52 + len);
                assert_eq!(be16(ip, 4), 0x1234 + k as u16);
                assert_eq!(fold(sum16(&ip[..20])), 0xffff, "IPv4 header checksum");
            }
            let seq = u32::from_be_bytes(ip[l.ip + 4..l.ip + 8].try_into().unwrap());
            assert_eq!(seq, 0xffff_f000u32.wrapping_add(k as u32 * 1000));
            let flags = ip[l.ip + 13];
            assert_eq!(flags, if k == 3 { ACK | PSH } else { ACK });
            assert_eq!(&s[..2], &[NEEDS_CSUM, GSO_NONE]);
            assert!(checksum_ok(s), "segment {k} (v6 {v6})");
        }
    }
}

#[test]
fn segments_that_arrive_together_are_joined_back() {
    for v6 in [false, true] {
        let payload = bytes(3500);
        let p = tso(v6, 1000, &payload);
        let segs = split(&p);
        let joined = join(&segs.iter().collect::<Vec<_>>());
        assert_eq!(joined.len(), 1);
        let j = &joined[0];
        assert_eq!(j.len(), p.len());
        // The batch as the device gave it, but for the checksum field (now the
        // pseudo-header sum of the whole) and the IPv4 length and header checksum.
        assert_eq!(&j[..VNET_HDR], &p[..VNET_HDR]);
        let (a, b) = (&j[VNET_HDR..], &p[VNET_HDR..]);
        let l = tcp_layout(a).unwrap();
        assert_eq!(&a[l.headers..], &payload[..]);
        assert_eq!(&a[l.ip..l.ip + 16], &b[l.ip..l.ip + 16]);
        assert_eq!(&a[l.ip + 18..l.headers], &b[l.ip + 18..l.headers]);
        assert!(checksum_ok(j));
    }
}

#[test]
fn a_lost_segment_leaves_two_runs_and_nothing_is_misjoined() {
    let payload = bytes(5000);
    let segs = split(&tso(false, 1000, &payload));
    let joined = join(&[&segs[0], &segs[1], &segs[3], &segs[4]]);
    assert_eq!(joined.len(), 2);
    let body = |p: &Vec<u8>| {
        let ip = &p[VNET_HDR..];
        ip[tcp_layout(ip).unwrap().headers..].to_vec()
    };
    assert_eq!(body(&joined[0]), &payload[..2000]);
    assert_eq!(body(&joined[1]), &payload[3000..]);
    assert_eq!(joined[0][1], GSO_TCPV4);
    assert!(joined.iter().all(|j| checksum_ok(j)));
    // Out of order, or of another batch (other options): not joined.
    assert_eq!(join(&[&segs[1], &segs[0]]).len(), 2);
    let mut later = segs[1].clone();
    later[VNET_HDR + 20 + 31] = 8; // another timestamp
    assert_eq!(join(&[&segs[0], &later]).len(), 2);
}

#[test]
fn other_packets_pass_as_they_are() {
    let p = tso(false, 1000, &bytes(800)); // one segment's worth: not a batch
    assert_eq!(count(&p, VNET_HDR), 1);
    let mut out = Vec::new();
    segment(&p, VNET_HDR, 0, &mut out);
    assert_eq!(out, p);
    let mut syn = split(&tso(false, 100, &bytes(300)))[0].clone();
    syn[VNET_HDR + 20 + 13] = SYN | ACK;
    assert_eq!(join(&[&syn, &syn]), vec![syn.clone(), syn]);
    let ping = vec![0u8; VNET_HDR + 28];
    assert_eq!(join(&[&ping]), vec![ping]);
}

#[test]
fn no_input_makes_it_panic() {
    let mut seed = 7u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let base = tso(false, 100, &bytes(700));
    let mut out = Vec::new();
    let mut j = Joiner::default();
    let mut sink = |_: &[u8]| {};
    for _ in 0..20_000 {
        let mut p = base.clone();
        for _ in 0..(next() % 6) {
            let at = (next() as usize) % p.len();
            p[at] = next() as u8;
        }
        p.truncate((next() as usize) % (base.len() + 1));
        for k in 0..count(&p, VNET_HDR).min(10) {
            segment(&p, VNET_HDR, k, &mut out);
            j.add(&out, &mut sink);
        }
        j.add(&p, &mut sink);
    }
    j.flush(&mut sink);
}
