//! The plain-data types of the EFCP interface: endpoints, settings, errors,
//! deliveries and statistics.

use std::time::Duration;

use crate::{Address, CepId};

/// One end of a connection: an IPC process address and a CEP-id within it.
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
    /// True: retransmission, in-order delivery, window flow control and congestion
    /// control. False: none of those (datagrams, duplicates dropped).
    pub reliable: bool,
    /// Largest whole PDU (PCI and payload) the N-1 path carries. Larger SDUs are
    /// fragmented.
    pub max_pdu_size: usize,
    /// Largest SDU [`send`](super::Connection::send) takes.
    pub max_sdu_size: usize,
    /// Receive window, in PDUs.
    pub initial_credit: u64,
    /// Retransmission timeout before any RTT sample.
    pub initial_rto: Duration,
    /// Lower bound of the retransmission timeout.
    pub min_rto: Duration,
    /// Upper bound of the retransmission timeout (after back-off too).
    pub max_rto: Duration,
    /// Longest an acknowledgement is delayed (the A timer).
    pub ack_delay: Duration,
    /// Retransmission timeouts in a row without ack progress before the connection
    /// fails (the peer is gone).
    pub max_rtx: u32,
    /// Bound on PDUs accepted by `send` but not yet sent.
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

/// Why [`send`](super::Connection::send) refused an SDU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The send queue is full; retry once the peer acknowledges (see `can_send`).
    #[error("send queue full")]
    WouldBlock,
    /// The SDU is larger than `max_sdu_size`.
    #[error("SDU larger than max_sdu_size")]
    TooLarge,
    /// The sending side was closed with `close_send`, or the connection failed.
    #[error("connection closed for sending")]
    Closed,
}

/// What [`recv`](super::Connection::recv) hands to the application.
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
    /// Data was retransmitted `max_rtx` times without any progress: the peer is gone.
    RetransmissionsExhausted,
}

/// Counters and estimates of one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// DT PDUs sent, first transmissions and retransmissions (control excluded).
    pub pdus_sent: u64,
    /// DT PDUs retransmitted.
    pub pdus_retransmitted: u64,
    /// DT PDUs received (duplicates included).
    pub pdus_received: u64,
    /// DT PDUs received more than once.
    pub duplicates: u64,
    /// SDUs handed to the application.
    pub sdus_delivered: u64,
    /// Smoothed round-trip time, once measured.
    pub srtt: Option<Duration>,
    /// Its variation (RFC 6298's `rttvar`), zero before the first sample.
    pub rttvar: Duration,
    /// Payload bytes the peer acknowledged (cumulatively).
    pub bytes_acked: u64,
    /// Payload bytes received in order.
    pub bytes_received: u64,
    /// Payload bytes per PDU (the segment size).
    pub mss: usize,
    /// Current retransmission timeout (with back-off).
    pub rto: Duration,
    /// Congestion window, in PDUs.
    pub cwnd: u64,
    /// PDUs sent and neither acknowledged nor deemed lost.
    pub in_flight: u64,
    /// PDUs ignored as malformed (bad control body, acknowledgement of data never
    /// sent, PDU type this connection does not take).
    pub malformed: u64,
    /// Retransmissions found needless afterwards (the original had arrived).
    pub spurious_retransmissions: u64,
    /// Retransmission timer expiries (window probes included).
    pub timeouts: u64,
    /// Loss events that shrank the congestion window.
    pub loss_events: u64,
    /// Tail-loss probes sent (each in place of a retransmission timeout).
    pub tail_probes: u64,
}
