//! What a running stack says about itself (DESIGN.md D8): the report its management
//! socket serves and `rina ctl` shows, as plain data with a JSON form.
//!
//! Each process with a runtime listens on the abstract AF_UNIX address
//! [`mgmt_address`]`(pid)`; a client connects, reads the report (JSON) to the end of
//! the stream, and closes. The socket is found through `/proc/net/unix`
//! ([`list_processes`]).

use serde::{Deserialize, Serialize};

/// Everything a process's stack reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The process.
    pub pid: u32,
    /// The program's name (or `node`).
    pub program: String,
    /// True in a keeper process (the stack of a program that exited or exec'd).
    pub keeper: bool,
    /// The shim DIFs.
    pub shims: Vec<ShimReport>,
    /// The normal DIFs.
    pub difs: Vec<DifReport>,
    /// Flows carried for the application (stream and datagram).
    pub app_flows: usize,
    /// Writes the application's threads sent on their stream flows themselves, not
    /// through the runtime thread (`runtime/src/driver/inline.rs`).
    #[serde(default)]
    pub inline_sends: u64,
    /// Times the timer an inline send set woke the runtime thread (a deadline the
    /// thread, asleep, did not know of: a retransmission, say).
    #[serde(default)]
    pub inline_timer_wakes: u64,
    /// Receiving turns the application's threads ran themselves before blocking on an
    /// empty flow (`runtime/src/driver/inline_recv.rs`).
    #[serde(default)]
    pub inline_receives: u64,
    /// Times the runtime pumped a stream flow's socket (a flow with nothing to move is
    /// not pumped: this grows with the traffic, not with the flows held open).
    #[serde(default)]
    pub flow_pumps: u64,
    /// For a host member: the programs it serves.
    #[serde(default)]
    pub programs: Vec<ProgramReport>,
    /// For `rina tun`: what its device and flows carried.
    #[serde(default)]
    pub tunnel: Option<TunnelReport>,
}

/// The packets of a tunnel (`rina tun`), each counted once, when its fate is known:
/// every packet the device gave (`from_device`) went to a flow or was dropped for
/// one of the reasons named (or waits still, for room in its flow), and every SDU of
/// a peer's flow was written to the device or refused. A TCP batch (TSO) leaves as
/// one SDU per segment, and the segments that arrive together are written as one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TunnelReport {
    /// The TUN device.
    pub device: String,
    /// Packets the host gave the tunnel (read from the device).
    pub from_device: u64,
    /// Of those, given to a peer's flow (or queued while it is made).
    pub to_flows: u64,
    /// Dropped: to an address no peer's routes hold.
    pub no_peer: u64,
    /// Dropped: the peer's flow was refused or closed (or refused the packet), or too
    /// many waited while it was made.
    pub no_flow: u64,
    /// Times a packet waited for room in its flow, holding the device's others back
    /// (each went to its flow after, and is counted there too).
    pub waited_for_room: u64,
    /// SDUs sent on the peers' flows (a packet's segments each one).
    pub sdus_sent: u64,
    /// SDUs queued for a flow that was then refused or closed, or that a flow
    /// refused.
    pub sdus_dropped: u64,
    /// SDUs read from the peers' flows.
    pub sdus_received: u64,
    /// Packets written to the device (segments that arrived together joined).
    pub to_device: u64,
    /// SDUs not admitted: from an address not of their peer's routes, or with an
    /// offload header that does not describe them.
    pub not_admitted: u64,
    /// Writes the device refused (its queue full).
    pub device_refused: u64,
}

/// A program a host member serves (one process's session).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgramReport {
    /// Its process.
    pub pid: u32,
    /// Its user.
    pub uid: u32,
    /// Its user's name (or the uid).
    pub user: String,
    /// The names it registered (`name in DIF`).
    pub names: Vec<String>,
    /// The flows it asked for.
    pub flows: usize,
}

/// One shim DIF.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShimReport {
    /// The DIF's name.
    pub name: String,
    /// Where its link is (`UDP 127.0.0.1:7000`, `interface eth0`).
    pub link: String,
    /// The largest SDU its flows carry.
    pub max_sdu: usize,
    /// Datagrams or frames dropped by the link (not ours, truncated).
    pub dropped: u64,
    /// Releases of secured flows ignored (unauthenticated).
    #[serde(default)]
    pub releases_ignored: u64,
}

/// One member of a normal DIF.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DifReport {
    /// The DIF's name.
    pub name: String,
    /// This member's IPC process name.
    pub member: String,
    /// Its address, once enrolled.
    pub address: Option<u32>,
    /// True once it is a member.
    pub enrolled: bool,
    /// Why the last attempt to join failed, if it did.
    pub last_failure: Option<String>,
    /// The DIFs it is over (shims or normal DIFs).
    pub over: Vec<String>,
    /// Its neighbours (adjacencies).
    pub neighbors: Vec<NeighborReport>,
    /// Every member it knows of.
    pub members: Vec<u32>,
    /// The forwarding table: destination -> next hop.
    pub routes: Vec<RouteReport>,
    /// The directory: application -> members.
    pub directory: Vec<DirectoryReport>,
    /// Names registered here.
    pub registered: Vec<String>,
    /// Its flows.
    pub flows: Vec<FlowReport>,
    /// PDU counters.
    pub counters: CountersReport,
    /// Its security (`None`: an open DIF).
    #[serde(default)]
    pub security: Option<SecurityReport>,
    /// True for a leaf member (it relays for no one and has no link-state database).
    #[serde(default)]
    pub leaf: bool,
    /// Entries in its link-state database (withdrawals included).
    #[serde(default)]
    pub lsdb_size: usize,
    /// Entries in its directory (removals not yet forgotten included).
    #[serde(default)]
    pub directory_size: usize,
    /// The leaves enrolled through it: their addresses.
    #[serde(default)]
    pub leaves: Vec<u32>,
}

/// A secured DIF's figures at one member.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityReport {
    /// Handshakes finished (first ones and rekeyings).
    pub handshakes: u64,
    /// Handshakes refused (a key not trusted, a wrong DIF secret, a message that did
    /// not verify).
    pub handshakes_refused: u64,
    /// Sealed messages that did not open (forged, corrupted).
    pub opens_failed: u64,
    /// Sealed messages seen before (replays), dropped.
    pub replays: u64,
    /// Claims refused: a member name or address held by another key, a name the key
    /// may not register.
    #[serde(default)]
    pub refused_claims: u64,
    /// Initiations dropped under load (a peer address past its handshakes a second).
    #[serde(default)]
    pub handshakes_limited: u64,
}

/// A neighbour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NeighborReport {
    /// Its N-1 port here.
    pub port: u32,
    /// Its IPC process name.
    pub name: String,
    /// Its address.
    pub address: u32,
    /// Its key's fingerprint, on a secured DIF (the adjacency is then protected).
    #[serde(default)]
    pub key: Option<String>,
    /// A leaf enrolled through this member.
    #[serde(default)]
    pub leaf: bool,
}

/// A route.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteReport {
    /// The destination member.
    pub destination: u32,
    /// The neighbour it goes through (its address).
    pub next_hop: Option<u32>,
    /// The N-1 port it leaves on.
    pub port: u32,
}

/// A directory entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirectoryReport {
    /// The application.
    pub app: String,
    /// The members where it is registered.
    pub members: Vec<u32>,
}

/// A flow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowReport {
    /// Its port-id.
    pub port: u32,
    /// The local application.
    pub local_app: String,
    /// The remote application.
    pub remote_app: String,
    /// The remote member.
    pub remote_address: Option<u32>,
    /// `allocating`, `up`, `closing`.
    pub state: String,
    /// DT PDUs sent (retransmissions included).
    pub pdus_sent: u64,
    /// DT PDUs retransmitted.
    pub pdus_retransmitted: u64,
    /// DT PDUs received.
    pub pdus_received: u64,
    /// Smoothed round trip, µs.
    pub srtt_us: Option<u64>,
    /// Congestion window, PDUs.
    #[serde(default)]
    pub cwnd: u64,
    /// Loss events that shrank the congestion window.
    #[serde(default)]
    pub loss_events: u64,
    /// Retransmission timer expiries (window probes included).
    #[serde(default)]
    pub timeouts: u64,
    /// Retransmissions found needless afterwards.
    #[serde(default)]
    pub spurious_retransmissions: u64,
    /// The retransmission timeout now (back-off included), µs.
    #[serde(default)]
    pub rto_us: u64,
    /// PDUs sent and neither acknowledged nor deemed lost.
    #[serde(default)]
    pub in_flight: u64,
    /// Payload bytes the peer acknowledged.
    #[serde(default)]
    pub bytes_acked: u64,
    /// Payload bytes received in order.
    #[serde(default)]
    pub bytes_received: u64,
    /// DT PDUs received more than once.
    #[serde(default)]
    pub duplicates: u64,
    /// PDUs ignored as malformed.
    #[serde(default)]
    pub malformed: u64,
    /// Tail-loss probes sent.
    #[serde(default)]
    pub tail_probes: u64,
}

/// PDU counters of a member.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountersReport {
    /// Received on N-1 ports.
    pub pdus_in: u64,
    /// Sent on N-1 ports.
    pub pdus_out: u64,
    /// Relayed to another member.
    pub pdus_relayed: u64,
    /// Malformed.
    pub pdus_malformed: u64,
    /// Dropped (no route, TTL, no such connection).
    pub pdus_dropped: u64,
    /// Sent to full-member neighbours (leaves' N-1 ports left out).
    #[serde(default)]
    pub pdus_to_members: u64,
    /// Management messages sent to full-member neighbours, keepalives left out.
    #[serde(default)]
    pub control_to_members: u64,
    /// Route computations (one per burst of advertisements).
    #[serde(default)]
    pub route_computations: u64,
    /// Flows this member asked for that went up with the program's first bytes on
    /// their request (early connects).
    #[serde(default)]
    pub flows_with_first_data: u64,
    /// Bytes that came with flow requests and went to programs.
    #[serde(default)]
    pub first_data_received: u64,
}

/// How a management socket's refusal starts (its text follows), where a report would
/// be: the asking process is not of the stack's user nor root.
pub const REFUSED: &str = "rina: management: ";

/// The abstract address of process `pid`'s management socket (no leading NUL).
pub fn mgmt_address(pid: u32) -> String {
    format!("rina-mgmt/{pid}")
}

/// The processes with a stack in this network namespace (from `/proc/net/unix`).
pub fn list_processes() -> Vec<u32> {
    let Ok(t) = std::fs::read_to_string("/proc/net/unix") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = t
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(7))
        .filter_map(|p| p.strip_prefix("@rina-mgmt/"))
        .filter_map(|p| p.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Fetches the report of process `pid`.
///
/// # Errors
/// The process has no management socket here, refused this process (another user's
/// stack), or its answer does not parse.
pub fn fetch(pid: u32) -> Result<Report, String> {
    use std::io::Read;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixStream};
    let addr =
        SocketAddr::from_abstract_name(mgmt_address(pid).as_bytes()).map_err(|e| e.to_string())?;
    let mut s = UnixStream::connect_addr(&addr)
        .map_err(|e| format!("process {pid} runs no stack here ({e})"))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .map_err(|e| format!("process {pid}: {e}"))?;
    if let Some(why) = text.strip_prefix(REFUSED) {
        return Err(format!("process {pid}: {}", why.trim_end()));
    }
    serde_json::from_str(&text).map_err(|e| format!("process {pid}: bad report: {e}"))
}
