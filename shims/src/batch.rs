//! Batched sends: the PDUs a loop turn has ready leave in one `sendmmsg` per up to
//! [`BATCH`] datagrams or frames instead of one `sendmsg` each. On this kind of
//! machine a system call costs about 0.3 µs before it does anything, and the
//! Ethernet shim sends one frame per PDU of at most 1500 bytes, so a stream of 60 kB
//! SDUs made 42 system calls per SDU.
//!
//! What the socket refuses is lost, as on a link: the DIF above recovers what it must.

use std::io::IoSlice;
use std::os::fd::BorrowedFd;

use rustix::io::Errno;
use rustix::net::{self, MMsgHdr, SendAncillaryBuffer, SendFlags};

/// The most messages one `sendmmsg` carries (the kernel's own limit is 1024).
pub const BATCH: usize = 64;

/// One datagram or frame to send: to whom (a socket address, a MAC), the shim
/// headers, then the PDU.
#[derive(Clone, Copy, Debug)]
pub struct Outgoing<'a, A> {
    /// The destination.
    pub to: A,
    /// Written first.
    pub header: &'a [u8],
    /// Written after the header.
    pub payload: &'a [u8],
}

/// What became of a batch.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Messages the socket refused (its buffer was full, or the message too large).
    pub lost: usize,
    /// The first error other than a full buffer, for a message.
    pub error: Option<Errno>,
}

/// Sends the messages whose I/O slices are `iovs` (one entry per message), each to
/// `addrs[i]` when `addrs` is given (else to the socket's bound or connected peer).
/// `stale` errors belong to an earlier message (a UDP peer's ICMP refusal, reported on
/// the next send, which it stops): the message is sent again, once. `full` errors
/// lose that message and the rest.
pub(crate) fn send_all(
    fd: BorrowedFd<'_>,
    iovs: &[&[IoSlice<'_>]],
    addrs: Option<&[net::SocketAddrAny]>,
    stale: &[Errno],
    full: &[Errno],
) -> Outcome {
    let mut out = Outcome::default();
    let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> = iovs
        .iter()
        .map(|_| SendAncillaryBuffer::default())
        .collect();
    let mut msgs: Vec<MMsgHdr<'_>> = match addrs {
        Some(addrs) => iovs
            .iter()
            .zip(addrs)
            .zip(controls.iter_mut())
            .map(|((iov, addr), control)| MMsgHdr::new_with_addr(addr, iov, control))
            .collect(),
        None => iovs
            .iter()
            .zip(controls.iter_mut())
            .map(|(iov, control)| MMsgHdr::new(iov, control))
            .collect(),
    };
    let mut at = 0;
    let mut again = None;
    while at < msgs.len() {
        let end = msgs.len().min(at + BATCH);
        match net::sendmmsg(fd, &mut msgs[at..end], SendFlags::empty()) {
            Ok(0) => {
                out.lost += msgs.len() - at;
                break;
            }
            Ok(n) => at += n,
            Err(Errno::INTR) => {}
            Err(e) if full.contains(&e) => {
                out.lost += msgs.len() - at;
                break;
            }
            // The first message of the call failed alone, for an earlier one.
            Err(e) if stale.contains(&e) && again != Some(at) => again = Some(at),
            Err(e) => {
                out.lost += 1;
                out.error.get_or_insert(e);
                at += 1;
            }
        }
    }
    out
}
