//! Datagram sockets (`SOCK_DGRAM`): the application keeps its own UDP socket; each
//! flow is reached through a proxy UDP socket on loopback that the runtime owns (see
//! `runtime::datagram`).
//!
//! - `bind` on an address a listen rule matches registers the name and binds the
//!   socket to a loopback address instead; each incoming flow's proxy sends from the
//!   remote application's synthetic address (`127.128.0.0/9`), which `recvfrom` shows
//!   and `sendto` or `connect` use natively.
//! - `connect`, and `sendto`/`sendmsg` with an address, to an address a connect rule
//!   matches allocate an unreliable flow (once per socket and destination) and send
//!   to its proxy instead; `recvfrom`/`recvmsg` show the proxy as the address the
//!   application sent to.
//! - `close` of the last fd of such a socket releases its flows and registrations.
//!
//! Traffic never leaves loopback: a rule's address is never sent to over IP (D4).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{c_int, socklen_t, AF_INET6};
use once_cell::sync::Lazy;
use parking_lot::{Condvar, Mutex};
use runtime::api::{AppEnd, ConnectRequest, ListenRequest, ListenTarget};
use runtime::config::{Config, Decision, Proto};
use runtime::datagram::app_address;

use crate::ops::{local_app, Outcome};
use crate::sockets::{self, Datagram, Meta, Role};
use crate::state;
use crate::synthetic;
use crate::sys::sockaddr::{self as sa_conv, AddrBuf};
use crate::sys::{self, sockopt_int};

/// Proxy address -> the address the application sent to (for `recvfrom`).
static PROXIES: Lazy<Mutex<BTreeMap<SocketAddr, SocketAddr>>> =
    Lazy::new(|| Mutex::new(BTreeMap::new()));
/// Address shown to a server (its listen rule's peer range) -> the proxy of an
/// incoming flow it came from (for `sendto` and `connect` back).
static SHOWN: Lazy<Mutex<BTreeMap<SocketAddr, SocketAddr>>> =
    Lazy::new(|| Mutex::new(BTreeMap::new()));
/// Entries in [`SHOWN`] (read without the lock).
static SHOWN_COUNT: AtomicUsize = AtomicUsize::new(0);

/// The proxy behind an address shown to a server for an incoming flow's peer (no
/// lock taken while there is none).
pub fn proxy_of_shown(sa: SocketAddr) -> Option<SocketAddr> {
    if SHOWN_COUNT.load(Ordering::Acquire) == 0 {
        return None;
    }
    SHOWN.lock().get(&canonical(sa)).copied()
}

/// `connect` of a UDP socket to `peer` (a connect rule's address, or the address
/// shown for an incoming flow's peer): the kernel socket connects to the flow's
/// proxy; `getpeername` answers `peer`.
pub fn connect_via(fd: c_int, family: c_int, peer: SocketAddr, proxy: SocketAddr) -> Outcome {
    if let Err(e) = sys::connect_inet(fd, proxy, family) {
        return Outcome::Fail(e);
    }
    sockets::update(fd, |m| {
        if let Role::Datagram(d) = &mut m.role {
            d.peer = Some(peer);
        }
    });
    Outcome::Done(0)
}

/// An IPv4-mapped address as plain IPv4; anything else unchanged.
fn canonical(sa: SocketAddr) -> SocketAddr {
    match sa {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => sa,
        },
        SocketAddr::V4(_) => sa,
    }
}

fn v6_only(fd: c_int, family: c_int) -> bool {
    family == AF_INET6 && sockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) == Some(1)
}

/// The socket's address as a proxy reaches it, binding it first if it is not bound:
/// to loopback when it is to receive a registered name's flows (`private`), else to
/// the wildcard address, as the kernel's own automatic bind would.
fn app_end(fd: c_int, family: c_int, private: bool) -> Result<SocketAddr, c_int> {
    let v6_only = v6_only(fd, family);
    let local = sys::inet_name(fd)?;
    if local.port() == 0 {
        let ip = match (private, family == AF_INET6, v6_only) {
            (true, false, _) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            (true, true, false) => IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped()),
            (true, true, true) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            (false, false, _) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            (false, true, _) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        sys::bind_inet(fd, SocketAddr::new(ip, 0), family)?;
        return Ok(app_address(sys::inet_name(fd)?, v6_only));
    }
    Ok(app_address(local, v6_only))
}

/// `bind` of a UDP socket: a listen rule's address registers the name; the socket is
/// bound to a loopback address the proxies send to.
pub fn bind(fd: c_int, family: c_int, sa: SocketAddr, rules: &Config) -> Outcome {
    if sa.port() == 0 {
        return Outcome::Pass;
    }
    let (rule, app) = match rules.match_listen(sa, Proto::Udp) {
        Decision::Pass => return Outcome::Pass,
        Decision::Deny => return Outcome::Fail(libc::EACCES),
        Decision::Rina { rule, app } => (rule, app),
    };
    if sockets::get(fd).is_some() || sys::inet_name(fd).is_ok_and(|l| l.port() != 0) {
        return Outcome::Fail(libc::EINVAL); // already bound
    }
    let handle = match state::runtime() {
        Ok(h) => h,
        Err(e) => return Outcome::Fail(e.errno()),
    };
    let app_addr = match app_end(fd, family, true) {
        Ok(a) => a,
        Err(e) => return Outcome::Fail(e),
    };
    let req = ListenRequest {
        dif: rule.target.dif,
        app,
        target: ListenTarget::Datagram(app_addr),
        pool: rule.target.pool,
        timeout: rules.settings.connect_timeout,
    };
    if let Err(e) = handle.listen(req) {
        // The socket was bound to loopback for the proxies: give the application an
        // unbound one back, so that it can try again.
        unbind(fd, family);
        return Outcome::Fail(e.errno());
    }
    sockets::set(
        fd,
        Meta {
            family,
            local: sa,
            role: Role::Datagram(Datagram {
                app: Some(app_addr),
                registered: true,
                peers: Some(rule.target.peers),
                ..Datagram::default()
            }),
            options: BTreeMap::new(),
        },
    );
    Outcome::Done(0)
}

/// Replaces `fd` with a fresh, unbound UDP socket of `family` (same O_NONBLOCK and
/// FD_CLOEXEC).
fn unbind(fd: c_int, family: c_int) {
    if let Ok(s) = sys::socket(family, libc::SOCK_DGRAM) {
        let _ = sys::install(s, fd); // closed either way
    }
}

/// Routes being made: (socket, destination) -> the process making it. Two threads
/// sending to a new destination at once must not make two flows: the second waits for
/// the first. No lock is held while the runtime works (a fork from the runtime thread
/// takes this one); a marker left by another process (a fork child's copy) is ignored.
static ROUTING: Mutex<BTreeMap<(sockets::Key, SocketAddr), u32>> = Mutex::new(BTreeMap::new());
static ROUTED: Condvar = Condvar::new();

/// The proxy through which `fd` reaches `dst`, allocating the flow on first use.
fn route(
    fd: c_int,
    family: c_int,
    dst: SocketAddr,
    rule: &runtime::config::Rule,
    app: rina_core::ApplicationName,
    rules: &Config,
) -> Result<SocketAddr, c_int> {
    let meta = sockets::get(fd);
    let known = match &meta {
        Some(Meta {
            role: Role::Datagram(d),
            ..
        }) => d,
        Some(_) => return Err(libc::EINVAL),
        None => &Datagram::default(),
    };
    if let Some(&proxy) = known.routes.get(&dst) {
        return Ok(proxy);
    }
    let key = sockets::key(fd).ok_or(libc::EBADF)?;
    let pid = std::process::id();
    {
        let mut making = ROUTING.lock();
        let wait = rules.settings.connect_timeout;
        while making.get(&(key, dst)) == Some(&pid) {
            if ROUTED.wait_for(&mut making, wait).timed_out() {
                return Err(libc::ETIMEDOUT);
            }
        }
        // Another thread may have made the route while this one waited.
        if let Some(Role::Datagram(d)) = sockets::get(fd).map(|m| m.role) {
            if let Some(&proxy) = d.routes.get(&dst) {
                return Ok(proxy);
            }
        }
        making.insert((key, dst), pid);
    }
    let made = make_route(fd, family, dst, rule, app, rules, known.app);
    ROUTING.lock().remove(&(key, dst));
    ROUTED.notify_all();
    made
}

/// Allocates the flow from `fd` to `dst` and records its proxy.
fn make_route(
    fd: c_int,
    family: c_int,
    dst: SocketAddr,
    rule: &runtime::config::Rule,
    app: rina_core::ApplicationName,
    rules: &Config,
    app_addr: Option<SocketAddr>,
) -> Result<SocketAddr, c_int> {
    let handle = state::runtime().map_err(|e| e.errno())?;
    let app_addr = match app_addr {
        Some(a) => a,
        None => app_end(fd, family, false)?,
    };
    let info = handle
        .connect(ConnectRequest {
            dif: rule.target.dif,
            local_app: local_app(rule),
            remote_app: app,
            end: AppEnd::Datagram(app_addr),
            view: None,
            recv_buffer: None,
            timeout: rules.settings.connect_timeout,
        })
        .map_err(|e| e.errno())?;
    let proxy = info.proxy.ok_or(libc::EIO)?;
    {
        let mut p = PROXIES.lock();
        p.insert(proxy, dst);
    }
    let updated = sockets::update(fd, |m| {
        if let Role::Datagram(d) = &mut m.role {
            d.routes.insert(dst, proxy);
        }
    });
    if updated.is_none() {
        let local = sys::inet_name(fd)?;
        let mut routes = BTreeMap::new();
        routes.insert(dst, proxy);
        sockets::set(
            fd,
            Meta {
                family,
                local,
                role: Role::Datagram(Datagram {
                    app: Some(app_addr),
                    routes,
                    ..Datagram::default()
                }),
                options: BTreeMap::new(),
            },
        );
    }
    Ok(proxy)
}

/// `connect` of a UDP socket.
pub fn connect(
    fd: c_int,
    family: c_int,
    sa: SocketAddr,
    decision: Decision<'_>,
    rules: &Config,
) -> Outcome {
    let (rule, app) = match decision {
        Decision::Pass => return Outcome::Pass,
        Decision::Deny => return Outcome::Fail(libc::ECONNREFUSED),
        Decision::Rina { rule, app } => (rule, app),
    };
    match route(fd, family, sa, rule, app, rules) {
        Ok(proxy) => connect_via(fd, family, sa, proxy),
        Err(e) => Outcome::Fail(e),
    }
}

/// Where a datagram addressed to `addr` must really go.
#[derive(Debug)]
pub enum Target {
    /// Send it as the application asked.
    Pass,
    /// Send it to this address (a proxy) instead.
    Proxy(libc::sockaddr_storage, socklen_t),
    /// Fail with this errno.
    Fail(c_int),
}

/// The destination for `sendto`/`sendmsg` of `fd` to `sa` (`None`: not an INET
/// address).
pub fn send_target(fd: c_int, sa: Option<SocketAddr>) -> Target {
    let Some(sa) = sa else {
        return Target::Pass;
    };
    if synthetic::is_proxy(sa) {
        return Target::Pass;
    }
    if let Some(proxy) = proxy_of_shown(sa) {
        let family = sockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN).unwrap_or(libc::AF_INET);
        let (st, len) = sa_conv::encode(proxy, family);
        return Target::Proxy(st, len);
    }
    let Some(rules) = state::rules() else {
        return Target::Pass;
    };
    let decision = crate::ops::decide_connect(rules, sa, Proto::Udp);
    if decision == Decision::Pass {
        return Target::Pass;
    }
    let Some((family, libc::SOCK_DGRAM)) = crate::ops::inet_socket(fd) else {
        return Target::Pass;
    };
    let (rule, app) = match decision {
        Decision::Pass => return Target::Pass,
        Decision::Deny => return Target::Fail(libc::ECONNREFUSED),
        Decision::Rina { rule, app } => (rule, app),
    };
    match route(fd, family, sa, rule, app, rules) {
        Ok(proxy) => {
            let (st, len) = sa_conv::encode(proxy, family);
            Target::Proxy(st, len)
        }
        Err(e) => Target::Fail(e),
    }
}

/// After `recvfrom`/`recvmsg` on `fd`: a datagram from the proxy of a flow the
/// application addressed by another name shows that name; one from the proxy of an
/// incoming flow of a registered socket shows at its listen rule's peer range (not on
/// loopback), and `sendto` or `connect` to that address reach the proxy. `out` is the
/// caller's buffer, wrapped before the call.
pub fn show_source(fd: c_int, out: &AddrBuf<'_>) {
    let Some(sa) = out.written() else {
        return;
    };
    if !synthetic::is_proxy(sa) {
        return;
    }
    let family = if sa.is_ipv6() {
        AF_INET6
    } else {
        libc::AF_INET
    };
    let sent_to = PROXIES.lock().get(&canonical(sa)).copied();
    let shown = match sent_to {
        Some(shown) => shown,
        None => {
            let Some(Meta {
                role: Role::Datagram(d),
                ..
            }) = sockets::get(fd)
            else {
                return;
            };
            let Some(peers) = d.peers.filter(|_| d.registered) else {
                return;
            };
            let v6 = family == AF_INET6;
            let shown = synthetic::shown_for_proxy(sa, &peers, v6, v6_only(fd, family));
            let Some(shown) = shown else {
                return;
            };
            let fresh = {
                let mut t = SHOWN.lock();
                let fresh = t.insert(canonical(shown), sa).is_none();
                SHOWN_COUNT.store(t.len(), Ordering::Release);
                fresh
            };
            if fresh {
                // Forgotten with the socket (see `release`).
                sockets::update(fd, |m| {
                    if let Role::Datagram(d) = &mut m.role {
                        d.shown.push(canonical(shown));
                    }
                });
            }
            shown
        }
    };
    out.write(shown, family);
}

/// `getsockname`/`getpeername` of a datagram socket: `None` to ask the kernel.
pub fn name(d: &Datagram, local: SocketAddr, peer: bool) -> Option<SocketAddr> {
    if peer {
        d.peer
    } else {
        d.registered.then_some(local)
    }
}

/// After the last fd of a datagram socket of ours was closed: releases its flows.
pub fn release(k: sockets::Key, d: Datagram) {
    sockets::remove_key(k);
    // One lock at a time (the atfork handlers take them in their own order).
    {
        let mut p = PROXIES.lock();
        for proxy in d.routes.values() {
            p.remove(proxy);
        }
    }
    {
        let mut t = SHOWN.lock();
        for shown in &d.shown {
            t.remove(shown);
        }
        SHOWN_COUNT.store(t.len(), Ordering::Release);
    }
    if let (Some(app), Some(h)) = (d.app, state::runtime_to_tell()) {
        h.release_datagram(app);
    }
}

/// Holds this module's locks across `fork` (see [`crate::hold_across_fork`]).
pub fn register_atfork() {
    crate::hold_across_fork!(PROXIES);
    crate::hold_across_fork!(SHOWN);
}
