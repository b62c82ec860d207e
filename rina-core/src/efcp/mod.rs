//! EFCP: one connection, the data transfer (DTP) and its control (DTCP).
//!
//! A [`Connection`] joins two CEP-ids. In reliable mode it gives in-order, exactly-once
//! delivery of SDUs: 64-bit sequence numbers (one per PDU; a fragment is a PDU; the
//! end-of-stream mark is a PDU), cumulative and selective acknowledgements, loss
//! detection by time order of delivery (a PDU sent before one that was delivered, by
//! more than a quarter of the smoothed RTT, is lost) plus a retransmission timer with
//! RFC 6298 estimates and Karn's rule, window flow control driven by the receiving
//! application's reads, and a congestion window (slow start, then additive increase,
//! halved on a loss event at most once per window). In unreliable mode it sends
//! without acknowledgements and delivers complete SDUs in arrival order, without
//! duplicates.
//!
//! SDUs larger than a PDU's payload are fragmented (`FIRST`/`LAST` flags) and
//! reassembled. Memory is bounded: the send queue by `send_queue_pdus`, the
//! retransmission queue by the window, the receive side by the credit.
//!
//! Sans-I/O: inputs [`Connection::send`], [`Connection::recv`],
//! [`Connection::handle_pdu`], [`Connection::handle_timeout`]; outputs
//! [`Connection::poll_transmit`] and [`Connection::poll_timeout`].

mod receiver;
mod sender;
#[cfg(test)]
mod tests;

use std::time::Duration;

use crate::time::{earliest, Instant};
use crate::wire::{Pci, PduType, PCI_LEN};
use crate::{Address, CepId};

use receiver::Receiver;
use sender::Sender;

/// One end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The IPC process address.
    pub addr: Address,
    /// The connection endpoint id.
    pub cep: CepId,
}

/// Settings of one connection.
#[derive(Clone, Debug)]
pub struct EfcpConfig {
    /// Retransmission, in-order delivery, flow and congestion control.
    pub reliable: bool,
    /// Largest whole PDU (PCI and payload) the path carries.
    pub max_pdu_size: usize,
    /// Largest SDU `send` takes.
    pub max_sdu_size: usize,
    /// Receive window, in PDUs.
    pub initial_credit: u64,
    /// Retransmission timeout before any RTT sample.
    pub initial_rto: Duration,
    /// Lower bound of the retransmission timeout.
    pub min_rto: Duration,
    /// Upper bound of the retransmission timeout.
    pub max_rto: Duration,
    /// Longest an acknowledgement is delayed (the A timer).
    pub ack_delay: Duration,
    /// Retransmissions of one PDU without progress before the connection fails.
    pub max_rtx: u32,
    /// PDUs `send` may queue beyond what the windows let out.
    pub send_queue_pdus: usize,
}

impl Default for EfcpConfig {
    fn default() -> Self {
        Self {
            reliable: true,
            max_pdu_size: 1452,
            max_sdu_size: 1 << 20,
            initial_credit: 256,
            initial_rto: Duration::from_millis(200),
            min_rto: Duration::from_millis(10),
            max_rto: Duration::from_secs(4),
            ack_delay: Duration::from_millis(2),
            max_rtx: 12,
            send_queue_pdus: 256,
        }
    }
}

/// Why `send` refused an SDU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The send queue is full; try again after the peer acknowledges.
    #[error("send queue full")]
    WouldBlock,
    /// Larger than `max_sdu_size`.
    #[error("SDU too large")]
    TooLarge,
    /// The sending side was closed, or the connection failed.
    #[error("connection closed for sending")]
    Closed,
}

/// What `recv` hands to the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A whole SDU.
    Sdu(Vec<u8>),
    /// The peer finished sending; nothing follows.
    Eof,
}

/// Why a connection failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A PDU was retransmitted `max_rtx` times with no progress: the peer is gone.
    RetransmissionsExhausted,
}

/// Counters and estimates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// PDUs sent (first transmissions and retransmissions, control excluded).
    pub pdus_sent: u64,
    /// Retransmissions.
    pub pdus_retransmitted: u64,
    /// DT PDUs received.
    pub pdus_received: u64,
    /// DT PDUs received more than once.
    pub duplicates: u64,
    /// SDUs handed to the application.
    pub sdus_delivered: u64,
    /// Smoothed round-trip time.
    pub srtt: Option<Duration>,
    /// Current retransmission timeout.
    pub rto: Duration,
    /// Congestion window, PDUs.
    pub cwnd: u64,
    /// PDUs sent and not yet acknowledged.
    pub in_flight: u64,
}

/// One EFCP connection. See the [module docs](self).
#[derive(Debug)]
pub struct Connection {
    cfg: EfcpConfig,
    local: Endpoint,
    remote: Endpoint,
    tx: Sender,
    rx: Receiver,
    ctrl_seq: u64,
}

impl Connection {
    /// A connection from `local` to `remote`.
    pub fn new(cfg: EfcpConfig, local: Endpoint, remote: Endpoint, now: Instant) -> Self {
        let tx = Sender::new(&cfg, now);
        let rx = Receiver::new(&cfg);
        Self {
            cfg,
            local,
            remote,
            tx,
            rx,
            ctrl_seq: 0,
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

    /// Changes the largest PDU (new PDUs only).
    pub fn set_max_pdu_size(&mut self, n: usize) {
        self.cfg.max_pdu_size = n.max(PCI_LEN + 1);
    }

    fn payload_size(&self) -> usize {
        self.cfg.max_pdu_size.saturating_sub(PCI_LEN).max(1)
    }

    /// Room for another SDU in the send queue.
    pub fn can_send(&self) -> bool {
        self.tx.can_send(&self.cfg)
    }

    /// Queues an SDU, fragmenting it to the PDU size.
    ///
    /// # Errors
    /// [`SendError::WouldBlock`] when the queue is full, [`SendError::TooLarge`],
    /// [`SendError::Closed`] after `close_send` or a failure.
    pub fn send(&mut self, now: Instant, sdu: &[u8]) -> Result<(), SendError> {
        let _ = now;
        if sdu.len() > self.cfg.max_sdu_size {
            return Err(SendError::TooLarge);
        }
        if self.tx.closed() || self.tx.failure.is_some() {
            return Err(SendError::Closed);
        }
        if !self.can_send() {
            return Err(SendError::WouldBlock);
        }
        self.tx.queue_sdu(sdu, self.payload_size());
        Ok(())
    }

    /// Queues the end-of-stream mark after everything queued so far.
    pub fn close_send(&mut self, now: Instant) {
        let _ = now;
        self.tx.queue_eof();
    }

    /// The next SDU (or the end of stream) for the application; consuming it may
    /// open the peer's window.
    pub fn recv(&mut self, now: Instant) -> Option<Delivery> {
        self.rx.recv(&self.cfg, now)
    }

    /// True if `recv` would return something.
    pub fn has_delivery(&self) -> bool {
        self.rx.has_delivery()
    }

    /// Handles a DT or control PDU addressed to this connection.
    pub fn handle_pdu(&mut self, now: Instant, pci: &Pci, payload: &[u8]) {
        match pci.pdu_type {
            PduType::Data => self.rx.on_data(&self.cfg, now, pci, payload),
            PduType::Control => {
                if self.cfg.reliable {
                    self.tx.on_control(&self.cfg, now, payload);
                }
            }
            PduType::Management => {}
        }
    }

    /// Runs the timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tx.on_timeout(&self.cfg, now);
        self.rx.on_timeout(now);
    }

    /// When `handle_timeout` must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        earliest(self.tx.poll_timeout(), self.rx.poll_timeout())
    }

    /// Writes the next PDU to send into `buf` (cleared first); false if none is ready.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> bool {
        buf.clear();
        let base = Pci {
            pdu_type: PduType::Control,
            flags: 0,
            ttl: crate::wire::pci::DEFAULT_TTL,
            dst_addr: self.remote.addr,
            src_addr: self.local.addr,
            dst_cep: self.remote.cep,
            src_cep: self.local.cep,
            seq: 0,
        };
        if self.cfg.reliable {
            if let Some(ctrl) = self.rx.poll_ack(now) {
                self.ctrl_seq += 1;
                buf.resize(PCI_LEN, 0);
                Pci {
                    seq: self.ctrl_seq,
                    ..base
                }
                .emit(buf);
                ctrl.emit(buf);
                return true;
            }
        }
        self.tx.poll_transmit(&self.cfg, now, base, buf)
    }

    /// Everything queued, and the end-of-stream mark, was acknowledged (reliable) or
    /// sent (unreliable).
    pub fn is_send_done(&self) -> bool {
        self.tx.is_done()
    }

    /// `recv` returned the end of stream.
    pub fn is_recv_done(&self) -> bool {
        self.rx.eof_delivered()
    }

    /// The peer's end of stream has arrived (everything it sent is here), whether or
    /// not the application has read it yet.
    pub fn is_recv_complete(&self) -> bool {
        self.rx.eof_received()
    }

    /// Why the connection failed, if it did.
    pub fn failure(&self) -> Option<Failure> {
        self.tx.failure
    }

    /// Counters and estimates.
    pub fn stats(&self) -> ConnectionStats {
        let mut s = self.tx.stats();
        self.rx.fill_stats(&mut s);
        s
    }
}
