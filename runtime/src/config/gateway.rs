//! The gateway's rules (`rina gateway`): TCP and UDP addresses of this host whose
//! connections and datagram peers go over RINA ([`Ingress`], `[[ingress]]`), and
//! application names whose incoming flows leave RINA as TCP connections or UDP
//! datagrams to an address ([`Egress`], `[[egress]]`).

use std::net::SocketAddr;
use std::time::Duration;

use rina_core::ApplicationName;

use super::{DifIndex, Proto};

/// `[[ingress]]`: each TCP connection to `listen` (each UDP peer that sends to it)
/// gets a flow to `app` in `dif`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ingress {
    /// The address of this host to listen on.
    pub listen: SocketAddr,
    /// TCP (reliable flows) or UDP (unreliable flows).
    pub proto: Proto,
    /// The DIF the flows are allocated in.
    pub dif: DifIndex,
    /// The destination application.
    pub app: ApplicationName,
    /// The source application name the flows carry (default: `gateway`).
    pub local_app: ApplicationName,
    /// Where the rule is (for messages).
    pub line: usize,
}

/// `[[egress]]`: `app` is registered in `dif`; each incoming flow gets a TCP
/// connection (a UDP socket) to `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Egress {
    /// The name registered.
    pub app: ApplicationName,
    /// The DIF it is registered in.
    pub dif: DifIndex,
    /// Where the flows' data goes.
    pub to: SocketAddr,
    /// TCP (reliable flows) or UDP (unreliable flows).
    pub proto: Proto,
    /// Registered as one of a pool (other members may register the name too).
    pub pool: bool,
    /// Each TCP connection opens with a PROXY protocol v2 header naming the address
    /// the client connected from and to (as the ingress side saw them).
    pub proxy_protocol: bool,
    /// Where the rule is (for messages).
    pub line: usize,
}

/// A UDP peer of an ingress rule whose flow carried nothing for this long is
/// forgotten (its flow released), as a NAT forgets an idle UDP mapping.
pub const UDP_IDLE: Duration = Duration::from_secs(60);

/// The source application name of an ingress flow when the rule names none.
pub const DEFAULT_INGRESS_APP: &str = "gateway";
