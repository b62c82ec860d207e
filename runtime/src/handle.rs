//! [`Handle`]: the application threads' side of the runtime, and the checks made
//! before it starts (each UDP shim's endpoint can be had: its address is local and its
//! port free, or held by another RINA member to join through).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::api::{Command, ConnectRequest, FlowError, FlowInfo, ListenRequest, Reply};
use crate::config::{Config, DifKind, StackMode};
use crate::driver;
use crate::host::client::Client;
use crate::host::wire::Request;

/// A running runtime (one per process), or a session with the host member that serves
/// the process (`stack = "host"`). Cheap to clone; safe to use from any thread.
#[derive(Clone, Debug)]
pub struct Handle {
    inner: Inner,
    pid: u32,
    config: Arc<Config>,
}

#[derive(Clone, Debug)]
enum Inner {
    /// The process's own stack.
    Embedded(Arc<driver::Shared>),
    /// The host member's.
    Host(Arc<Client>),
}

impl Handle {
    /// Starts the runtime thread for `config` in this process. `program` names the
    /// process in default IPC process names and the management socket.
    ///
    /// # Errors
    /// [`FlowError::RuntimeDown`] if a shim cannot be opened (address not local, port
    /// held by a program that runs no RINA stack, no such interface, no permission) or
    /// the thread cannot be started. Its text names the DIF, the endpoint and the
    /// reason (`DIF udp0: UDP 127.0.0.1:7000: cannot bind: ...`).
    /// With `stack = "host"`, no stack starts: a session with the host member opens.
    pub fn start(config: Arc<Config>, program: &str) -> Result<Self, FlowError> {
        if let StackMode::Host(at) = &config.settings.stack {
            let client = Client::open(at, program)?;
            return Ok(Self {
                inner: Inner::Host(Arc::new(client)),
                pid: std::process::id(),
                config,
            });
        }
        Self::spawn(config, program, false)
    }

    /// True if the host member serves this process (it runs no stack of its own).
    pub fn is_host_session(&self) -> bool {
        matches!(self.inner, Inner::Host(_))
    }

    /// Reads the results of nonblocking connects the host member has sent (nothing to
    /// do for a stack of the process's own, which reports them itself).
    pub fn settle(&self) {
        if let Inner::Host(c) = &self.inner {
            c.settle();
        }
    }

    /// Starts a node: a runtime with no application, a long-lived member of every DIF
    /// of `config` that takes newcomers and relays (`rina node`). It joins at once.
    ///
    /// # Errors
    /// As [`Handle::start`]; also if another process holds one of its UDP endpoints
    /// (a node is the member others enroll through there: it never joins through the
    /// holder on a port of its own choosing).
    pub fn start_node(config: Arc<Config>, program: &str) -> Result<Self, FlowError> {
        Self::spawn(config, program, true)
    }

    fn spawn(config: Arc<Config>, program: &str, node: bool) -> Result<Self, FlowError> {
        crate::log::init();
        let inner = preflight(&config, node)
            .and_then(|()| driver::spawn(config.clone(), program, node))
            .inspect_err(|e| {
                let why = match e {
                    FlowError::RuntimeDown(why) => why.clone(),
                    other => other.to_string(),
                };
                tracing::error!("{program}: cannot start the RINA stack: {why}");
            })?;
        Ok(Self {
            inner: Inner::Embedded(inner),
            pid: std::process::id(),
            config,
        })
    }

    /// The process that started this runtime (a fork child must start its own).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `buf` on stream flow `port` of DIF `dif` (an index into the rules' DIFs)
    /// from the calling thread, if inline sends are on and nothing the application
    /// wrote before is still on its way through the flow's socket (see
    /// `driver/inline.rs`), whose runtime end is bound to `name` (the caller's end's
    /// peer name). `None`: write to the socket as usual. The caller checks that this is
    /// its own process's runtime ([`Handle::pid`]).
    pub fn send_inline(
        &self,
        dif: usize,
        port: rina_core::PortId,
        name: &[u8],
        buf: &[u8],
    ) -> Option<usize> {
        match &self.inner {
            Inner::Embedded(d) => d.send_inline(dif, port, name, buf),
            Inner::Host(_) => None,
        }
    }

    /// Runs the receiving side of the stack on the calling thread, if inline receives
    /// are on and the stack is free now (see `driver/inline_recv.rs`); true if it ran.
    /// The caller checks that this is its own process's runtime ([`Handle::pid`]).
    pub fn receive_inline(&self) -> bool {
        match &self.inner {
            Inner::Embedded(d) => d.receive_inline(),
            Inner::Host(_) => false,
        }
    }

    /// True if [`Handle::receive_inline`] can run here: inline receives are on and the
    /// stack is this process's own (a host member's runs in another process).
    pub fn can_receive_inline(&self) -> bool {
        matches!(self.inner, Inner::Embedded(_)) && crate::inline_receives()
    }

    /// True while the runtime thread runs (false once it stopped, e.g. after its flows
    /// were handed to a keeper before an exec that then failed).
    pub fn is_running(&self) -> bool {
        match &self.inner {
            Inner::Embedded(d) => d.is_alive(),
            Inner::Host(c) => c.is_up(),
        }
    }

    fn driver(&self) -> Option<&Arc<driver::Shared>> {
        match &self.inner {
            Inner::Embedded(d) => Some(d),
            Inner::Host(_) => None,
        }
    }

    /// The rules this runtime runs.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Allocates a flow and pumps it through `req.socket`. Blocks up to `req.timeout`.
    ///
    /// # Errors
    /// A [`FlowError`] whose [`FlowError::errno`] the hook returns.
    pub fn connect(&self, req: ConnectRequest) -> Result<FlowInfo, FlowError> {
        if let Inner::Host(c) = &self.inner {
            return c.connect(&self.config, req);
        }
        let timeout = req.timeout;
        self.call(timeout, |r| Command::Connect(req, r))
    }

    /// True if a stream connect to `app` in `dif` may return before its flow is up,
    /// its first bytes riding on the request ([`crate::AppEnd::StreamEarly`]): a flow
    /// to it was made before and the directory still lists it. Never for a session
    /// with the host member.
    pub fn may_connect_early(
        &self,
        dif: crate::config::DifIndex,
        app: &rina_core::ApplicationName,
    ) -> bool {
        match &self.inner {
            Inner::Embedded(d) => d.is_alive() && d.knows(dif, app),
            Inner::Host(_) => false,
        }
    }

    /// Starts allocating a flow and returns at once; `done` is called with the result
    /// (on the runtime thread, so it must be quick and must not call back into the
    /// runtime). If the runtime is not running, `done` is called here.
    pub fn connect_then(
        &self,
        req: ConnectRequest,
        done: impl FnOnce(Result<FlowInfo, FlowError>) + Send + 'static,
    ) {
        let d = match &self.inner {
            Inner::Host(c) => return c.connect_then(&self.config, req, Box::new(done)),
            Inner::Embedded(d) => d,
        };
        let down = || FlowError::RuntimeDown("the runtime thread has stopped".into());
        let reply = Reply::then(done, Err(down()));
        if !d.post(Command::Connect(req, reply.clone())) {
            reply.send(Err(down()));
        }
    }

    /// Registers a name and hands incoming flows to the listener. Blocks up to
    /// `req.timeout`.
    ///
    /// # Errors
    /// A [`FlowError`] whose [`FlowError::errno`] the hook returns.
    pub fn listen(&self, req: ListenRequest) -> Result<(), FlowError> {
        if let Inner::Host(c) = &self.inner {
            return c.listen(&self.config, req);
        }
        let timeout = req.timeout;
        self.call(timeout, |r| Command::Listen(req, r))
    }

    /// Tells the runtime that the application's datagram socket at `app` (as given
    /// in [`crate::AppEnd::Datagram`]) is closed: its flows are deallocated and its
    /// registrations withdrawn. Does not wait.
    pub fn release_datagram(&self, app: SocketAddr) {
        match &self.inner {
            Inner::Embedded(d) => drop(d.post(Command::ReleaseDatagram(app))),
            Inner::Host(c) => c.tell(&Request::ReleaseDatagram(app)),
        }
    }

    /// Called at process exit: lets every flow deliver what the application wrote
    /// (bounded by the rules' `linger`), says goodbye to the neighbours, and stops.
    /// A process the host member serves has nothing to do: its flows are the host
    /// member's, and go on as TCP connections do.
    pub fn exit(&self) {
        let Some(d) = self.driver() else { return };
        let linger = self.config.settings.linger;
        let reply = Reply::new();
        if d.post(Command::Exit(linger, reply.clone())) {
            let _ = reply.wait(linger.saturating_add(Duration::from_secs(1)));
        }
    }

    /// Called before the process execs: the stack's stream flows and listeners go to
    /// a keeper process that serves them while other processes (the new program
    /// among them) hold their sockets; this process's runtime stops.
    /// Nothing to hand over when the host member serves the process.
    pub fn hand_over(&self) {
        let Some(d) = self.driver() else { return };
        let linger = self.config.settings.linger;
        let reply = Reply::new();
        if d.post(Command::HandOver(linger, reply.clone())) {
            let _ = reply.wait(Duration::from_secs(5));
        }
    }

    /// Tells the runtime that the application closed a stream listener (its abstract
    /// name): its names are withdrawn unless another process still holds it. Does not
    /// wait.
    pub fn listener_closed(&self, name: Vec<u8>) {
        match &self.inner {
            Inner::Embedded(d) => drop(d.post(Command::ListenerClosed(name))),
            Inner::Host(c) => c.tell(&Request::ListenerClosed(name)),
        }
    }

    /// The EFCP figures of flow `port` of DIF `dif` (the index a flow's name carries,
    /// see [`crate::view::FlowName`]); `None` if there is no such flow or the runtime
    /// does not answer within a second.
    pub fn flow_stats(
        &self,
        dif: u16,
        port: rina_core::PortId,
    ) -> Option<rina_core::efcp::ConnectionStats> {
        let d = match &self.inner {
            Inner::Host(c) => return c.flow_stats(dif, port.0),
            Inner::Embedded(d) => d,
        };
        let reply = Reply::new();
        if !d.post(Command::FlowStats(dif, port, reply.clone())) {
            return None;
        }
        reply.wait(Duration::from_secs(1)).flatten()
    }

    /// The largest SDU one PDU of DIF `dif` carries (what a datagram may be without
    /// being split); `None` for a host session, a DIF this runtime does not run, or
    /// no answer within a second.
    pub fn pdu_payload(&self, dif: crate::config::DifIndex) -> Option<usize> {
        let d = self.driver()?;
        let reply = Reply::new();
        if !d.post(Command::PduPayload(dif, reply.clone())) {
            return None;
        }
        reply.wait(Duration::from_secs(1)).flatten()
    }

    /// Carries a TUN device's packets over flows (`rina tun`). Blocks up to
    /// `req.timeout` for the tunnel's name to be registered.
    ///
    /// # Errors
    /// As [`Handle::listen`]; [`FlowError::RuntimeDown`] for a host session.
    pub fn tunnel(&self, req: crate::api::TunnelRequest) -> Result<(), FlowError> {
        let timeout = req.timeout;
        self.call(timeout, |r| Command::Tunnel(req, r))
    }

    fn call<T>(
        &self,
        timeout: Duration,
        make: impl FnOnce(Reply<Result<T, FlowError>>) -> Command,
    ) -> Result<T, FlowError> {
        let Some(d) = self.driver() else {
            return Err(FlowError::RuntimeDown("no stack in this process".into()));
        };
        let reply = Reply::new();
        if !d.post(make(reply.clone())) {
            return Err(FlowError::RuntimeDown(
                "the runtime thread has stopped".into(),
            ));
        }
        // The runtime enforces `timeout` itself; the extra second only guards against
        // a runtime thread that died.
        reply
            .wait(timeout.saturating_add(Duration::from_secs(1)))
            .unwrap_or(Err(FlowError::TimedOut))
    }
}

/// Checks each UDP shim's endpoint before the stack starts, so that a start-up that
/// cannot work fails at once with its reason: the address must be local, and the port
/// free or held by another RINA member (a fork child's parent, another server of the
/// same rules, a keeper), through which the stack then joins. A node must hold its
/// endpoints itself.
fn preflight(config: &Config, node: bool) -> Result<(), FlowError> {
    for d in &config.difs {
        let DifKind::Udp(u) = &d.kind else { continue };
        let why = match probe_bind(u.bind) {
            Ok(()) => continue,
            Err(e) if e == rustix::io::Errno::ADDRINUSE => {
                let holders = udp_holders(u.bind);
                let named = holders.as_ref().map(|h| describe_holders(h));
                if node {
                    format!(
                        "cannot bind: {}{}; a node needs its own endpoint (stop the other process or choose another port)",
                        std::io::Error::from(e),
                        named.map_or(String::new(), |n| format!(" (held by {n})"))
                    )
                } else if let Some(h) = holders.filter(|h| !h.is_empty()) {
                    if holder_runs_a_stack(&h, u.bind) {
                        continue;
                    }
                    format!(
                        "cannot bind: {}; held by {}, which runs no RINA stack (stop it or choose another port)",
                        std::io::Error::from(e),
                        describe_holders(&h)
                    )
                } else {
                    // The holder cannot be told (another user's process): assume a
                    // member and join through it, as the driver does.
                    continue;
                }
            }
            Err(e) => format!("cannot bind: {}", std::io::Error::from(e)),
        };
        return Err(FlowError::RuntimeDown(format!(
            "DIF {}: UDP {}: {why}",
            d.name, u.bind
        )));
    }
    Ok(())
}

/// True if no socket holds the UDP address `app` any more (an application's datagram
/// socket that was closed).
pub(crate) fn nobody_holds(app: SocketAddr) -> bool {
    probe_bind(app).is_ok()
}

/// Binds (and closes) a UDP socket at `addr`, with direct system calls (never through
/// the interposer's hooks).
fn probe_bind(addr: SocketAddr) -> rustix::io::Result<()> {
    use rustix::net::{self, AddressFamily, SocketFlags, SocketType};
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let fd = net::socket_with(family, SocketType::DGRAM, SocketFlags::CLOEXEC, None)?;
    net::bind(&fd, &addr)
}

/// The processes (pid, name) holding a UDP socket that keeps `addr` from being bound
/// (same port; same address, a wildcard, or any address if `addr` is a wildcard),
/// from `/proc/net/udp{,6}` and each process's descriptors. `None` when the socket
/// is not found or a process holding it cannot be told (its descriptors unreadable).
fn udp_holders(addr: SocketAddr) -> Option<Vec<(u32, String)>> {
    let mut inodes = std::collections::BTreeSet::new();
    for (file, v6) in [("/proc/net/udp", false), ("/proc/net/udp6", true)] {
        let Ok(t) = std::fs::read_to_string(file) else {
            continue;
        };
        for l in t.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (Some(local), Some(inode)) = (f.get(1), f.get(9)) else {
                continue;
            };
            let Some((ip, port)) = local.split_once(':') else {
                continue;
            };
            if u16::from_str_radix(port, 16).ok() != Some(addr.port()) {
                continue;
            }
            let Some(ip) = proc_ip(ip, v6) else { continue };
            let ours = addr.ip().to_canonical();
            if ip.is_unspecified() || ours.is_unspecified() || ip.to_canonical() == ours {
                if let Ok(i) = inode.parse::<u64>() {
                    inodes.insert(i);
                }
            }
        }
    }
    inodes.remove(&0);
    if inodes.is_empty() {
        return None;
    }
    let mut holders = Vec::new();
    let mut unreadable = false;
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(e.path().join("fd")) else {
            unreadable = true;
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|l| {
                l.to_str()
                    .and_then(|l| l.strip_prefix("socket:["))
                    .and_then(|l| l.strip_suffix(']'))
                    .and_then(|i| i.parse::<u64>().ok())
                    .is_some_and(|i| inodes.contains(&i))
            })
        });
        if holds {
            let name = std::fs::read_to_string(e.path().join("comm"))
                .map(|c| c.trim_end().to_owned())
                .unwrap_or_default();
            holders.push((pid, name));
        }
    }
    (!holders.is_empty() || !unreadable).then_some(holders)
}

/// An address as `/proc/net/udp{,6}` prints it: each 32-bit word in hex, in the
/// machine's byte order.
fn proc_ip(hex: &str, v6: bool) -> Option<IpAddr> {
    let word = |i: usize| {
        hex.get(i * 8..i * 8 + 8)
            .and_then(|w| u32::from_str_radix(w, 16).ok())
            .map(u32::to_ne_bytes)
    };
    if v6 {
        let mut b = [0u8; 16];
        for i in 0..4 {
            b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
        }
        Some(IpAddr::from(b))
    } else {
        Some(IpAddr::from(word(0)?))
    }
}

/// True if one of `holders` of `addr` runs a RINA stack (serves a management socket),
/// or is this process, or lets go of the port. A member that has just bound its
/// endpoint serves its management socket a moment later (and one starting at the same
/// time holds the port only for its own check): looked for over 300 ms.
fn holder_runs_a_stack(holders: &[(u32, String)], addr: SocketAddr) -> bool {
    let me = std::process::id();
    if holders.iter().any(|&(p, _)| p == me) {
        return true;
    }
    for _ in 0..15 {
        let stacks = crate::report::list_processes();
        if holders.iter().any(|(p, _)| stacks.contains(p)) || probe_bind(addr).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// `pid 12 (python3), pid 13 (python3)`, or `another process`.
fn describe_holders(holders: &[(u32, String)]) -> String {
    if holders.is_empty() {
        return "another process".to_owned();
    }
    holders
        .iter()
        .map(|(p, n)| format!("pid {p} ({n})"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_of_a_busy_udp_port_are_found() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let at = s.local_addr().unwrap();
        assert_eq!(
            probe_bind(at),
            Err(rustix::io::Errno::ADDRINUSE),
            "the port is held"
        );
        let h = udp_holders(at).expect("this process holds it");
        assert!(h.iter().any(|&(p, _)| p == std::process::id()), "{h:?}");
        assert!(
            holder_runs_a_stack(&h, at),
            "this process counts as a member"
        );
        let free = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let free_at = free.local_addr().unwrap();
        drop(free);
        assert_eq!(probe_bind(free_at), Ok(()));
        if cfg!(target_endian = "little") {
            assert_eq!(
                proc_ip("0100007F", false),
                Some(IpAddr::from([127, 0, 0, 1]))
            );
            assert_eq!(
                proc_ip("00000000000000000000000001000000", true),
                Some(IpAddr::from(std::net::Ipv6Addr::LOCALHOST))
            );
        }
    }
}
