//! TCP segmentation for the tunnel, and its reverse. The device gives a TCP stream's
//! data as one packet of up to 64 kB (TSO, after its `virtio_net_hdr`); it leaves as
//! one SDU per segment ([`segment`]), so a frame lost on the way loses one segment, as
//! on a link, not the whole batch (which TCP would take for the loss of forty). On
//! the far side the segments of a batch that arrive together are joined again
//! ([`Joiner`], as the kernel's GRO joins them), so the device is still written once
//! per batch. Each segment, and each joined packet, asks the kernel to fill in the
//! TCP checksum (`NEEDS_CSUM`, the pseudo-header's sum in the field), as the batch
//! the device gave did.

/// Bytes of the `virtio_net_hdr` before each packet.
pub(super) const VNET_HDR: usize = 10;
/// `virtio_net_hdr` flag: the checksum is to be filled in.
pub(super) const NEEDS_CSUM: u8 = 0x01;
/// `gso_type`: none, TCP over IPv4, TCP over IPv6.
pub(super) const GSO_NONE: u8 = 0;
pub(super) const GSO_TCPV4: u8 = 1;
pub(super) const GSO_TCPV6: u8 = 4;
/// TCP flags.
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const URG: u8 = 0x20;
const CWR: u8 = 0x80;
/// The largest IP packet (its length field).
const IP_MAX: usize = 65_535;

/// Where the headers of a TCP packet (after its `virtio_net_hdr`) end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    v6: bool,
    /// The IP header's length (the TCP header's offset in the IP packet).
    ip: usize,
    /// The IP and TCP headers' length (the payload's offset).
    headers: usize,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn le16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// The layout of `ip` if it is a TCP packet without IPv6 extension headers whose
/// headers it holds whole.
fn tcp_layout(ip: &[u8]) -> Option<Layout> {
    let (v6, at) = match ip.first()? >> 4 {
        4 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if ihl < 20 || *ip.get(9)? != 6 {
                return None;
            }
            (false, ihl)
        }
        6 if *ip.get(6)? == 6 => (true, 40),
        _ => return None,
    };
    let doff = usize::from(ip.get(at + 12)? >> 4) * 4;
    let headers = at + doff;
    (doff >= 20 && headers <= ip.len()).then_some(Layout {
        v6,
        ip: at,
        headers,
    })
}

/// `(layout, segment size)` of `packet` (a `header`-byte `virtio_net_hdr` then an
/// IP packet) if it is a TSO batch of more than one segment (without the header,
/// the device gives no batches).
fn batch(packet: &[u8], header: usize) -> Option<(Layout, usize)> {
    if header != VNET_HDR {
        return None;
    }
    let gso = *packet.get(1)?;
    if gso != GSO_TCPV4 && gso != GSO_TCPV6 {
        return None;
    }
    let ip = packet.get(VNET_HDR..)?;
    let mss = le16(packet, 4);
    let l = tcp_layout(ip)?;
    let several = ip.len() - l.headers > mss;
    (mss > 0 && l.v6 == (gso == GSO_TCPV6) && several).then_some((l, mss))
}

/// How many SDUs `packet` (after its `header`-byte `virtio_net_hdr`) leaves as: its
/// segments if it is a TSO batch, else one.
pub(super) fn count(packet: &[u8], header: usize) -> usize {
    batch(packet, header).map_or(1, |(l, mss)| {
        (packet.len() - VNET_HDR - l.headers).div_ceil(mss)
    })
}

/// Segment `k` (of [`count`]) of `packet` into `out`: the packet itself if it is not
/// a TSO batch; else the batch's headers, made those of its `k`th segment, and that
/// segment's payload.
pub(super) fn segment(packet: &[u8], header: usize, k: usize, out: &mut Vec<u8>) {
    out.clear();
    let Some((l, mss)) = batch(packet, header) else {
        out.extend_from_slice(packet);
        return;
    };
    let payload = &packet[VNET_HDR + l.headers..];
    let start = (k * mss).min(payload.len());
    let chunk = &payload[start..(start + mss).min(payload.len())];
    let last = start + chunk.len() == payload.len();
    out.extend_from_slice(&packet[..VNET_HDR + l.headers]);
    out.extend_from_slice(chunk);
    let ip = &mut out[VNET_HDR..];
    if !l.v6 {
        let id = be16(ip, 4).wrapping_add(k as u16);
        put16(ip, 4, id);
    }
    let tcp = l.ip;
    let seq = u32::from_be_bytes(ip[tcp + 4..tcp + 8].try_into().expect("4 bytes"));
    let seq = seq.wrapping_add((k * mss) as u32);
    ip[tcp + 4..tcp + 8].copy_from_slice(&seq.to_be_bytes());
    if !last {
        ip[tcp + 13] &= !(FIN | PSH);
    }
    if k > 0 {
        ip[tcp + 13] &= !CWR;
    }
    finish(out, l, None);
}

/// Sets the lengths, the IPv4 header checksum, the TCP checksum's pseudo-header sum
/// and the `virtio_net_hdr` of `packet`: one segment, or (`mss`) a batch of them.
fn finish(packet: &mut [u8], l: Layout, mss: Option<usize>) {
    let ip = &mut packet[VNET_HDR..];
    let tcp_len = ip.len() - l.ip;
    if l.v6 {
        put16(ip, 4, tcp_len as u16);
    } else {
        put16(ip, 2, ip.len() as u16);
        put16(ip, 10, 0);
        let sum = !fold(sum16(&ip[..l.ip]));
        put16(ip, 10, sum);
    }
    let pseudo = if l.v6 {
        sum16(&ip[8..40]) + tcp_len as u32 + 6
    } else {
        sum16(&ip[12..20]) + tcp_len as u32 + 6
    };
    put16(ip, l.ip + 16, fold(pseudo));
    let (gso, size) = match mss {
        Some(m) if l.v6 => (GSO_TCPV6, m),
        Some(m) => (GSO_TCPV4, m),
        None => (GSO_NONE, 0),
    };
    let mut hdr = [0u8; VNET_HDR];
    hdr[0] = NEEDS_CSUM;
    hdr[1] = gso;
    hdr[2..4].copy_from_slice(&(l.headers as u16).to_le_bytes());
    hdr[4..6].copy_from_slice(&(size as u16).to_le_bytes());
    hdr[6..8].copy_from_slice(&(l.ip as u16).to_le_bytes());
    hdr[8..10].copy_from_slice(&16u16.to_le_bytes());
    packet[..VNET_HDR].copy_from_slice(&hdr);
}

/// The sum of `b` as big-endian 16-bit words (an odd last byte padded with zero).
fn sum16(b: &[u8]) -> u32 {
    let mut s = 0u32;
    let mut words = b.chunks_exact(2);
    for w in &mut words {
        s += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        s += u32::from(*last) << 8;
    }
    s
}

/// `s` folded to 16 bits, ones' complement.
fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The run of segments being joined.
#[derive(Debug)]
struct Run {
    l: Layout,
    /// The first segment's payload size: every one but the last has it.
    mss: usize,
    next_seq: u32,
    segments: usize,
    /// A shorter segment, or one with PSH, ended the run.
    closed: bool,
}

/// Joins consecutive segments of one TCP stream (as [`segment`] made them) into one
/// packet for the device; anything else passes as it is.
#[derive(Debug, Default)]
pub(super) struct Joiner {
    buf: Vec<u8>,
    run: Option<Run>,
}

impl Joiner {
    /// Takes `sdu` (a `virtio_net_hdr` then an IP packet): joined to the run, or the
    /// run is written (`write`) and `sdu` starts the next one or is written itself.
    pub(super) fn add(&mut self, sdu: &[u8], write: &mut impl FnMut(&[u8])) {
        let seg = joinable(sdu);
        if let (Some(run), Some((l, len))) = (&mut self.run, seg) {
            if continues(&self.buf, run, sdu, l, len) {
                self.buf.extend_from_slice(&sdu[VNET_HDR + l.headers..]);
                let flags = sdu[VNET_HDR + l.ip + 13];
                self.buf[VNET_HDR + l.ip + 13] |= flags & PSH;
                run.next_seq = run.next_seq.wrapping_add(len as u32);
                run.segments += 1;
                run.closed = len < run.mss || flags & PSH != 0;
                return;
            }
        }
        self.flush(write);
        match seg {
            Some((l, len)) => {
                self.buf.clear();
                self.buf.extend_from_slice(sdu);
                let tcp = &sdu[VNET_HDR + l.ip..];
                let seq = u32::from_be_bytes(tcp[4..8].try_into().expect("4 bytes"));
                self.run = Some(Run {
                    l,
                    mss: len,
                    next_seq: seq.wrapping_add(len as u32),
                    segments: 1,
                    closed: tcp[13] & PSH != 0,
                });
            }
            None => write(sdu),
        }
    }

    /// Writes the run, if any.
    pub(super) fn flush(&mut self, write: &mut impl FnMut(&[u8])) {
        let Some(run) = self.run.take() else { return };
        if run.segments > 1 {
            finish(&mut self.buf, run.l, Some(run.mss));
        }
        write(&self.buf);
    }
}

/// `(layout, payload length)` of `sdu` if it is a data segment that may be joined:
/// one TCP segment with a payload, whose checksum is left to the kernel, carrying
/// only ACK (and PSH). A packet without a `virtio_net_hdr` never is: its first byte,
/// the IP version's, is never `NEEDS_CSUM`.
fn joinable(sdu: &[u8]) -> Option<(Layout, usize)> {
    if sdu.len() <= VNET_HDR || sdu[0] != NEEDS_CSUM || sdu[1] != GSO_NONE {
        return None;
    }
    let ip = &sdu[VNET_HDR..];
    let l = tcp_layout(ip)?;
    let flags = ip[l.ip + 13];
    let len = ip.len() - l.headers;
    let plain = flags & (FIN | SYN | RST | URG) == 0 && flags & ACK != 0;
    (plain && len > 0).then_some((l, len))
}

/// True if segment `sdu` (of layout `l`, `len` payload bytes) continues `run`, whose
/// packet so far is `buf`: the same stream and headers (but for lengths, the IPv4
/// id and checksums, sequence number and PSH), the next sequence number, a payload of
/// at most the run's segment size, and room under the IP length limit.
fn continues(buf: &[u8], run: &Run, sdu: &[u8], l: Layout, len: usize) -> bool {
    if run.closed || l != run.l || len > run.mss || buf.len() - VNET_HDR + len > IP_MAX {
        return false;
    }
    let (a, b) = (&buf[VNET_HDR..], &sdu[VNET_HDR..]);
    let t = l.ip;
    let seq = u32::from_be_bytes(b[t + 4..t + 8].try_into().expect("4 bytes"));
    let same_ip = if l.v6 {
        a[..4] == b[..4] && a[6..40] == b[6..40]
    } else {
        a[..2] == b[..2] && a[6..10] == b[6..10] && a[12..l.ip] == b[12..l.ip]
    };
    let same_tcp = a[t..t + 4] == b[t..t + 4]
        && a[t + 8..t + 12] == b[t + 8..t + 12]
        && (a[t + 13] | PSH) == (b[t + 13] | PSH)
        && a[t + 14..t + 16] == b[t + 14..t + 16]
        && a[t + 18..l.headers] == b[t + 18..l.headers];
    same_ip && same_tcp && seq == run.next_seq
}

#[cfg(test)]
#[path = "segment_tests.rs"]
mod tests;
