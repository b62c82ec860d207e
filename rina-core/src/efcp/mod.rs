//! EFCP: one connection, the data transfer protocol (DTP) and its control (DTCP).
//!
//! A [`Connection`] joins two connection endpoints ([`Endpoint`]: address and
//! CEP-id). Every SDU becomes one or more DT PDUs (`FIRST`/`LAST` flags) of at most
//! `max_pdu_size` bytes; each PDU takes the next 64-bit sequence number from 0, and
//! the first carries `DRF`. [`Connection::close_send`] adds an end-of-stream mark, a
//! PDU of its own with the `EOF` flag.
//!
//! **Reliable mode** (`EfcpConfig::reliable`): in-order, exactly-once delivery.
//! - Acknowledgements are control PDUs ([`ControlRepr`](crate::wire::control)):
//!   cumulative ack, right window edge, the echo of the last first transmission that
//!   arrived, up to 16 SACK ranges (see `receiver.rs`).
//! - Retransmission: fast retransmit on SACK evidence, a tail-loss probe (RFC 8985
//!   §7, `sender/tail.rs`) and a retransmission timer (RFC 6298 estimates, back-off).
//!   Round trips are timed only through the echo, from the echoed PDU's first
//!   sending; retransmissions carry the `RTX` flag and are never echoed (Karn's rule,
//!   without its blind spot). See `sender.rs`.
//! - Flow control is driven by the reading application: the peer may send up to
//!   `credit` PDUs past the first PDU not yet consumed (see `reassembly.rs`); a closed
//!   window is probed after an RTO.
//! - Congestion control: a window in PDUs, slow start then additive increase; a
//!   loss event takes it to 0.7 of itself but not below 1.25 times the measured
//!   bandwidth-delay product (random loss is not congestion); a timeout takes it to
//!   half, again not below that floor (see `congestion.rs`, `rate.rs`).
//! - `max_rtx` timeouts in a row without progress fail the connection.
//!
//! **Unreliable mode**: no acknowledgements, retransmissions or windows; complete
//! SDUs are delivered in arrival order without duplicates (see `unreliable.rs`).
//!
//! Memory is bounded by the configuration: the send queue by `send_queue_pdus` (plus
//! one SDU), what is in flight by the peer's window and the congestion window, the
//! receive side by the credit (plus one SDU being reassembled).
//!
//! Sans-I/O. Inputs: [`Connection::send`], [`Connection::close_send`],
//! [`Connection::recv`], [`Connection::handle_pdu`], [`Connection::handle_timeout`].
//! Outputs: [`Connection::poll_transmit`] (call until it returns false after every
//! input) and [`Connection::poll_timeout`].

mod buffer;
mod config;
mod congestion;
mod ranges;
mod rate;
mod reassembly;
mod receiver;
mod sender;
mod unreliable;

#[cfg(test)]
mod goodput_tests;
#[cfg(test)]
mod lossy_tests;
#[cfg(test)]
mod rtt_tests;
#[cfg(test)]
mod tail_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod window_tests;

pub use config::{ConnectionStats, Delivery, EfcpConfig, Endpoint, Failure, SendError};

use crate::time::{earliest, Instant};
use crate::wire::pci::DEFAULT_TTL;
use crate::wire::{Pci, PduType, PCI_LEN};

use receiver::Receiver;
use sender::Sender;
use unreliable::Unreliable;

/// The receiving half, per mode.
// One per connection, and reliable is the common mode: boxing it would add a pointer
// chase per PDU to save memory only on unreliable connections.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Rx {
    Reliable(Receiver),
    Unreliable(Unreliable),
}

/// One EFCP connection. See the [module docs](self).
///
/// Driving it: after any input, call [`poll_transmit`](Self::poll_transmit) until it
/// returns false and send each PDU; call [`handle_timeout`](Self::handle_timeout) at
/// [`poll_timeout`](Self::poll_timeout) (then `poll_transmit` again); read with
/// [`recv`](Self::recv) while [`has_delivery`](Self::has_delivery).
#[derive(Debug)]
pub struct Connection {
    cfg: EfcpConfig,
    local: Endpoint,
    remote: Endpoint,
    tx: Sender,
    rx: Rx,
    ctrl_seq: u64,
    malformed: u64,
}

impl Connection {
    /// A connection from `local` to `remote`.
    pub fn new(cfg: EfcpConfig, local: Endpoint, remote: Endpoint, now: Instant) -> Self {
        let _ = now; // nothing is timed before the first PDU
        let tx = Sender::new(&cfg);
        let rx = if cfg.reliable {
            Rx::Reliable(Receiver::new(&cfg))
        } else {
            Rx::Unreliable(Unreliable::new(&cfg))
        };
        Self {
            cfg,
            local,
            remote,
            tx,
            rx,
            ctrl_seq: 0,
            malformed: 0,
        }
    }

    /// This end.
    pub fn local(&self) -> Endpoint {
        self.local
    }

    /// The other end.
    pub fn remote(&self) -> Endpoint {
        self.remote
    }

    /// Changes the largest PDU. It applies to SDUs queued from now on; PDUs already
    /// queued keep their size.
    pub fn set_max_pdu_size(&mut self, n: usize) {
        self.cfg.max_pdu_size = n;
    }

    /// Lowers the largest PDU to `n` if it is larger (see
    /// [`set_max_pdu_size`](Self::set_max_pdu_size)).
    pub fn limit_max_pdu_size(&mut self, n: usize) {
        if n < self.cfg.max_pdu_size {
            self.cfg.max_pdu_size = n;
        }
    }

    /// Payload bytes per PDU.
    fn payload_size(&self) -> usize {
        self.cfg.max_pdu_size.saturating_sub(PCI_LEN).max(1)
    }

    /// Room for at least one more SDU (of up to one PDU's payload) in the send queue.
    pub fn can_send(&self) -> bool {
        self.tx.can_send()
    }

    /// Queues an SDU, fragmenting it to the PDU size.
    ///
    /// # Errors
    /// [`SendError::TooLarge`] above `max_sdu_size`; [`SendError::Closed`] after
    /// [`close_send`](Self::close_send) or a failure; [`SendError::WouldBlock`] while
    /// [`can_send`](Self::can_send) is false.
    pub fn send(&mut self, now: Instant, sdu: &[u8]) -> Result<(), SendError> {
        let _ = now; // transmission times are taken in poll_transmit
        if sdu.len() > self.cfg.max_sdu_size {
            return Err(SendError::TooLarge);
        }
        if self.tx.is_closed() {
            return Err(SendError::Closed);
        }
        if !self.tx.can_send() {
            return Err(SendError::WouldBlock);
        }
        let payload = self.payload_size();
        self.tx.queue_sdu(sdu, payload);
        Ok(())
    }

    /// Queues the end-of-stream mark after everything queued so far; `send` fails
    /// with [`SendError::Closed`] from now on.
    pub fn close_send(&mut self, now: Instant) {
        let _ = now;
        self.tx.queue_eof();
    }

    /// The next complete SDU (in order when reliable, in arrival order otherwise), or
    /// [`Delivery::Eof`] once after the last one. Consuming opens the peer's window.
    pub fn recv(&mut self, now: Instant) -> Option<Delivery> {
        match &mut self.rx {
            Rx::Reliable(r) => r.recv(now),
            Rx::Unreliable(u) => u.recv(),
        }
    }

    /// True if [`recv`](Self::recv) would return something.
    pub fn has_delivery(&self) -> bool {
        match &self.rx {
            Rx::Reliable(r) => r.has_delivery(),
            Rx::Unreliable(u) => u.has_delivery(),
        }
    }

    /// Handles a DT or control PDU addressed to this connection. Anything else, or a
    /// malformed body, is counted ([`ConnectionStats::malformed`]) and ignored.
    pub fn handle_pdu(&mut self, now: Instant, pci: &Pci, payload: &[u8]) {
        match (pci.pdu_type, &mut self.rx) {
            (PduType::Data, Rx::Reliable(r)) => r.on_data(now, pci.seq, pci.flags, payload),
            (PduType::Data, Rx::Unreliable(u)) => u.on_data(pci.seq, pci.flags, payload),
            (PduType::Control, Rx::Reliable(_)) => self.tx.on_control(now, payload),
            _ => self.malformed += 1,
        }
    }

    /// Runs the timers that are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tx.on_timeout(now);
        // A due acknowledgement goes out through poll_transmit.
    }

    /// When [`handle_timeout`](Self::handle_timeout) must run next (it may be in the
    /// past when an acknowledgement is due: then `poll_transmit` sends it).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ack = match &self.rx {
            Rx::Reliable(r) => r.poll_timeout(),
            Rx::Unreliable(_) => None,
        };
        earliest(self.tx.poll_timeout(), ack)
    }

    /// Writes the next PDU to send into `buf` (cleared first): a due acknowledgement,
    /// else a retransmission, else new data the windows allow. False if none is ready.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> bool {
        buf.clear();
        let base = Pci {
            pdu_type: PduType::Data,
            flags: 0,
            ttl: DEFAULT_TTL,
            dst_addr: self.remote.addr,
            src_addr: self.local.addr,
            dst_cep: self.remote.cep,
            src_cep: self.local.cep,
            seq: 0,
        };
        if let Rx::Reliable(r) = &mut self.rx {
            if let Some(ctrl) = r.poll_ack(now) {
                buf.resize(PCI_LEN, 0);
                Pci {
                    pdu_type: PduType::Control,
                    seq: self.ctrl_seq,
                    ..base
                }
                .emit(buf);
                ctrl.emit(buf);
                self.ctrl_seq += 1;
                return true;
            }
        }
        self.tx.poll_transmit(now, &base, buf)
    }

    /// `close_send` was called and everything, the end-of-stream mark included, was
    /// acknowledged (reliable) or sent (unreliable). False after a failure.
    pub fn is_send_done(&self) -> bool {
        self.tx.is_done()
    }

    /// [`recv`](Self::recv) returned [`Delivery::Eof`].
    pub fn is_recv_done(&self) -> bool {
        match &self.rx {
            Rx::Reliable(r) => r.eof_delivered(),
            Rx::Unreliable(u) => u.eof_delivered(),
        }
    }

    /// The peer's end of stream arrived (in order, when reliable: everything it sent
    /// is here), whether or not the application has read it yet.
    pub fn is_recv_complete(&self) -> bool {
        match &self.rx {
            Rx::Reliable(r) => r.eof_received(),
            Rx::Unreliable(u) => u.eof_received(),
        }
    }

    /// Why the connection failed, if it did. A failed connection sends nothing more.
    pub fn failure(&self) -> Option<Failure> {
        self.tx.failure()
    }

    /// Counters and estimates.
    pub fn stats(&self) -> ConnectionStats {
        let mut s = ConnectionStats {
            malformed: self.malformed,
            mss: self.payload_size(),
            ..ConnectionStats::default()
        };
        self.tx.fill_stats(&mut s);
        match &self.rx {
            Rx::Reliable(r) => r.fill_stats(&mut s),
            Rx::Unreliable(u) => u.fill_stats(&mut s),
        }
        s
    }
}
