//! The settings of one IPC process.

use std::time::Duration;

use crate::efcp::EfcpConfig;
use crate::{Address, ApplicationName};

/// Configuration of one IPC process.
#[derive(Clone, Debug)]
pub struct IpcpConfig {
    /// The DIF's name.
    pub dif: String,
    /// This IPC process's name.
    pub name: ApplicationName,
    /// `Some(address)`: this member bootstraps the DIF with that address.
    pub bootstrap: Option<Address>,
    /// Seed for CEP-ids, addresses and jitter.
    pub seed: u64,
    /// EFCP settings of reliable data flows (`max_pdu_size` is set per path).
    pub data_efcp: EfcpConfig,
    /// EFCP settings of the per-neighbour management connections.
    pub mgmt_efcp: EfcpConfig,
    /// How long an enrollee waits for its enroller.
    pub enrollment_timeout: Duration,
    /// Interval between keepalives on each N-1 port.
    pub keepalive_interval: Duration,
    /// Keepalive intervals without any traffic before a neighbour is declared lost.
    pub keepalive_misses: u32,
    /// Interval between retries of an unanswered flow request.
    pub flow_request_retry: Duration,
    /// How long a gracefully closed connection lingers to answer retransmissions.
    pub close_linger: Duration,
    /// False (the default): a flow request for a registered name is accepted at once.
    /// True: [`Event::IncomingFlow`](super::Event::IncomingFlow) asks first, and the
    /// requester gets its answer when the driver calls
    /// [`IpcProcess::answer_flow`](super::IpcProcess::answer_flow) (a closed listener
    /// then refuses).
    pub ask_before_accepting: bool,
    /// This member's key in a secured DIF (what it may register is checked with it).
    pub key: Option<crate::secure::PublicKey>,
    /// Access control of a secured DIF (`None`: open, no checks).
    pub access: Option<super::Access>,
    /// A leaf member: it relays for no one, enrolls as a leaf of its enroller, takes
    /// no newcomers and holds no link-state database (see `leaves.rs`).
    pub leaf: bool,
    /// Routes are computed at most once per this interval: a burst of advertisements
    /// within it costs one computation, at its end (SPF hold-down).
    pub route_hold: Duration,
    /// This member re-advertises itself this often, so that its advertisement never
    /// ages out while it lives.
    pub lsa_refresh: Duration,
    /// An advertisement not refreshed for this long is forgotten.
    pub lsa_max_age: Duration,
}

impl IpcpConfig {
    /// Defaults for a member of `dif` named `name`.
    pub fn new(dif: impl Into<String>, name: ApplicationName, seed: u64) -> Self {
        Self {
            dif: dif.into(),
            name,
            bootstrap: None,
            seed,
            data_efcp: EfcpConfig::default(),
            mgmt_efcp: EfcpConfig {
                initial_credit: 64,
                ..EfcpConfig::default()
            },
            enrollment_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(2),
            keepalive_misses: 3,
            flow_request_retry: Duration::from_millis(500),
            close_linger: Duration::from_secs(2),
            ask_before_accepting: false,
            key: None,
            access: None,
            leaf: false,
            route_hold: Duration::from_millis(10),
            lsa_refresh: Duration::from_secs(600),
            lsa_max_age: Duration::from_secs(1800),
        }
    }
}
