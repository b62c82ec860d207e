//! The decisions behind the hooks. Each function returns an [`Outcome`]: pass the call
//! to libc, or the value (or errno) to return. They take the caller's addresses already
//! read, and its output buffers wrapped ([`crate::sys::sockaddr`]); every system call
//! they make goes through [`crate::sys`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};

use libc::{c_int, AF_INET, AF_INET6, SOCK_STREAM};
use rina_core::ApplicationName;
use runtime::api::{AppEnd, ConnectRequest, ListenRequest, ListenTarget};
use runtime::config::{Decision, Proto};
use runtime::view::{self, FlowView, ListenView};

use crate::connecting::{deferred, Deferred};
use crate::sockets::{self, Meta, Role};
use crate::state;
use crate::synthetic;
use crate::sys::sockaddr::{AddrBuf, OptBuf};
use crate::sys::{self, install, sockopt_int};

/// What a hook does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Call libc's function.
    Pass,
    /// Return this value.
    Done(c_int),
    /// Return -1 with this errno.
    Fail(c_int),
}

static NEXT_LISTENER: AtomicU32 = AtomicU32::new(1);

/// The family and type (`SOCK_STREAM` or `SOCK_DGRAM`) of an INET socket, `None`
/// for anything else.
pub(crate) fn inet_socket(fd: c_int) -> Option<(c_int, c_int)> {
    let family = sockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    let ty = sockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE)?;
    ((family == AF_INET || family == AF_INET6) && (ty == SOCK_STREAM || ty == libc::SOCK_DGRAM))
        .then_some((family, ty))
}

/// Lets the application queue `size` bytes toward the runtime (what it asked for
/// with `SO_SNDBUF`), by default [`runtime::APP_SOCKET_BUFFER`] so that the two wake
/// each other rarely (forced when privileged).
pub(crate) fn set_send_buffer(fd: c_int, size: Option<usize>) {
    let v = size
        .unwrap_or(runtime::APP_SOCKET_BUFFER)
        .min(c_int::MAX as usize) as c_int;
    for opt in [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF] {
        if sys::set_sockopt_int(fd, libc::SOL_SOCKET, opt, v) {
            return;
        }
    }
}

fn loopback(family: c_int) -> IpAddr {
    if family == AF_INET6 {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }
}

/// Where a connect (or datagram) to `sa` on a `proto` socket goes: a resolved host
/// name's rule, else the connect rules.
pub(crate) fn decide_connect(
    rules: &'static runtime::config::Config,
    sa: SocketAddr,
    proto: Proto,
) -> Decision<'static> {
    crate::names::decide(sa, proto).unwrap_or_else(|| rules.match_connect(sa, proto))
}

/// The name this process presents as the source of flows made by `rule`.
pub(crate) fn local_app(rule: &runtime::config::Rule) -> ApplicationName {
    rule.target
        .local_app
        .clone()
        .unwrap_or_else(|| ApplicationName::new(state::program_name()))
}

/// `bind` to `sa` (`None`: not an INET address): a listen rule's address is recorded,
/// not bound.
pub fn bind(fd: c_int, sa: Option<SocketAddr>) -> Outcome {
    let Some(mut sa) = sa else {
        return Outcome::Pass;
    };
    let Some(rules) = state::rules() else {
        return Outcome::Pass;
    };
    let Some((family, ty)) = inet_socket(fd) else {
        return Outcome::Pass;
    };
    if ty == libc::SOCK_DGRAM {
        return crate::dgram::bind(fd, family, sa, rules);
    }
    match rules.match_listen(sa, Proto::Tcp) {
        Decision::Pass => Outcome::Pass,
        Decision::Deny => Outcome::Fail(libc::EACCES),
        Decision::Rina { .. } => {
            if sockets::get(fd).is_some() {
                return Outcome::Fail(libc::EINVAL); // already bound
            }
            if sa.port() == 0 {
                sa.set_port(synthetic::ephemeral_port());
            }
            sockets::set(
                fd,
                Meta {
                    family,
                    local: sa,
                    role: Role::Bound,
                    options: Default::default(),
                },
            );
            Outcome::Done(0)
        }
    }
}

/// `listen`: register the name, and put an AF_UNIX listener behind the fd.
pub fn listen(fd: c_int, backlog: c_int) -> Outcome {
    let Some(meta) = sockets::get(fd) else {
        return Outcome::Pass;
    };
    match meta.role {
        Role::Bound => {}
        Role::Listening => return Outcome::Done(0),
        Role::Connected { .. } | Role::Connecting { .. } | Role::Refused { .. } => {
            return Outcome::Fail(libc::EINVAL)
        }
        Role::Datagram(_) => return Outcome::Pass, // the kernel says EOPNOTSUPP
    }
    let Some(rules) = state::rules() else {
        return Outcome::Pass;
    };
    let Decision::Rina { rule, app } = rules.match_listen(meta.local, Proto::Tcp) else {
        return Outcome::Fail(libc::EACCES);
    };
    // What the program set on its socket before: kept, and what accepted flows show.
    let options = crate::options::snapshot(fd);
    let (_, recv_buffer) = crate::options::buffers_set(fd);
    let v6_only = meta.family == AF_INET6
        && sockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) == Some(1);
    let lv = ListenView {
        local: meta.local,
        peers: rule.target.peers,
        v6_only,
        recv_buffer,
    };
    let handle = match state::runtime() {
        Ok(h) => h,
        Err(e) => return Outcome::Fail(e.errno()),
    };
    let name = format!(
        "rina-listen/{}/{}",
        std::process::id(),
        NEXT_LISTENER.fetch_add(1, Ordering::Relaxed)
    );
    let lfd = match sys::unix_listener(name.as_bytes(), backlog) {
        Ok(l) => l,
        Err(e) => return Outcome::Fail(e),
    };
    let req = ListenRequest {
        dif: rule.target.dif,
        app,
        target: ListenTarget::Stream(name.into_bytes(), lv),
        pool: rule.target.pool,
        timeout: rules.settings.connect_timeout,
    };
    if let Err(e) = handle.listen(req) {
        return Outcome::Fail(e.errno()); // the listener is closed
    }
    if let Err(e) = install(lfd, fd) {
        return Outcome::Fail(e);
    }
    sockets::set(
        fd,
        Meta {
            role: Role::Listening,
            options,
            ..meta
        },
    );
    Outcome::Done(0)
}

/// `connect` to `sa` (`None`: not an INET address): allocate a flow and put one end
/// of a socket pair behind the fd.
pub fn connect(fd: c_int, sa: Option<SocketAddr>) -> Outcome {
    let Some(sa) = sa else {
        return Outcome::Pass;
    };
    let Some(rules) = state::rules() else {
        return Outcome::Pass;
    };
    // A datagram server connecting back to a peer it was shown (`nc -u -l`).
    if let Some(proxy) = crate::dgram::proxy_of_shown(sa) {
        if let Some((family, libc::SOCK_DGRAM)) = inet_socket(fd) {
            return crate::dgram::connect_via(fd, family, sa, proxy);
        }
    }
    // Matching costs no system call and fills no template: calls no rule can match
    // leave at once; the others are decided once their socket's kind is known.
    if !rules.connect_may_match(sa) {
        return Outcome::Pass;
    }
    // A socket we took over is no longer an INET socket: answer from its record.
    let known = sockets::get(fd);
    match known.as_ref().map(|m| &m.role) {
        Some(Role::Connected { .. }) => return Outcome::Fail(libc::EISCONN),
        Some(Role::Connecting { .. }) => return Outcome::Fail(libc::EALREADY),
        Some(&Role::Refused { error }) if error != 0 => {
            // The result of the attempt, once, as TCP reports it; then a new try.
            sockets::update(fd, |m| m.role = Role::Refused { error: 0 });
            return Outcome::Fail(error);
        }
        Some(Role::Listening) => return Outcome::Fail(libc::EISCONN),
        _ => {}
    }
    let family = match inet_socket(fd) {
        Some((family, libc::SOCK_DGRAM)) => {
            if synthetic::is_proxy(sa) {
                return Outcome::Pass; // a flow's proxy: the kernel connects to it
            }
            let decision = decide_connect(rules, sa, Proto::Udp);
            return crate::dgram::connect(fd, family, sa, decision, rules);
        }
        Some((family, _)) => family,
        // A socket that failed a nonblocking connect earlier, tried again.
        None if known.is_some() => known.as_ref().map_or(AF_INET, |m| m.family),
        None => return Outcome::Pass,
    };
    connect_stream(fd, family, sa, known, rules)
}

/// `connect` of a stream socket (`known`: its record) to `sa`, once its family is
/// known: a flow, if a rule says so.
fn connect_stream(
    fd: c_int,
    family: c_int,
    sa: SocketAddr,
    known: Option<Meta>,
    rules: &'static runtime::config::Config,
) -> Outcome {
    let decision = decide_connect(rules, sa, Proto::Tcp);
    let (rule, app) = match decision {
        Decision::Pass => return Outcome::Pass,
        Decision::Deny => return Outcome::Fail(libc::ECONNREFUSED),
        Decision::Rina { rule, app } => (rule, app),
    };
    let handle = match state::runtime() {
        Ok(h) => h,
        Err(e) => return Outcome::Fail(e.errno()),
    };
    // What this end shows: the address it bound (kept, as TCP keeps it), else its own
    // address as servers show it and an ephemeral port; the peer as it was named.
    let local_app = local_app(rule);
    let bound = match &known {
        // Bound to an address a listen rule matches: recorded, not bound in the kernel.
        Some(Meta {
            role: Role::Bound,
            local,
            ..
        }) => Some(*local),
        _ => bound_address(fd),
    };
    let local = bound.unwrap_or_else(|| synthetic::own_address(&local_app, family == AF_INET6));
    // A destination reached before, still in the directory: connect returns at once
    // and the first bytes ride on the flow request (runtime's `driver/early.rs`).
    let early = handle.may_connect_early(rule.target.dif, &app);
    let flow_view = FlowView { local, peer: sa };
    let options = crate::options::snapshot(fd);
    let (send_buffer, recv_buffer) = crate::options::buffers_set(fd);
    // The runtime takes its end; the application's goes behind the fd.
    let (app_end, rt_end) = match sys::stream_pair() {
        Ok(p) => p,
        Err(e) => return Outcome::Fail(e),
    };
    let req = ConnectRequest {
        dif: rule.target.dif,
        local_app,
        remote_app: app,
        end: AppEnd::Stream(rt_end),
        view: Some(flow_view),
        recv_buffer,
        timeout: rules.settings.connect_timeout,
    };
    let meta = Meta {
        family,
        local,
        role: Role::Connecting { peer: sa },
        options,
    };
    let how = if early {
        Some(Deferred::Early)
    } else {
        sys::is_nonblocking(fd).then_some(Deferred::InProgress)
    };
    if let Some(how) = how {
        return deferred(how, fd, meta, app_end, req, send_buffer, &handle);
    }
    if let Err(e) = handle.connect(req) {
        return Outcome::Fail(e.errno()); // our end of the pair is closed
    }
    set_send_buffer(app_end.as_raw_fd(), send_buffer);
    if let Err(e) = install(app_end, fd) {
        return Outcome::Fail(e);
    }
    sockets::set(
        fd,
        Meta {
            role: Role::Connected { peer: sa },
            ..meta
        },
    );
    Outcome::Done(0)
}

/// The address an INET socket was bound to (port non-zero), as it shows it, with an
/// unspecified address replaced by the one a connection from it shows; `None` if it
/// is not bound.
fn bound_address(fd: c_int) -> Option<SocketAddr> {
    let mut sa = sys::inet_name(fd).ok().filter(|a| a.port() != 0)?;
    if sa.ip().is_unspecified() {
        let family = if sa.is_ipv6() { AF_INET6 } else { AF_INET };
        sa.set_ip(loopback(family));
    }
    Some(sa)
}

/// `accept`/`accept4` on a listener we installed: learn the flow's peer from the
/// abstract address the runtime connected from; `out` gets the peer it shows.
pub fn accept(fd: c_int, out: &AddrBuf<'_>, flags: c_int) -> Outcome {
    let Some(meta) = sockets::get(fd) else {
        return Outcome::Pass;
    };
    match meta.role {
        Role::Listening => {}
        Role::Datagram(_) => return Outcome::Pass, // the kernel says EOPNOTSUPP
        _ => return Outcome::Fail(libc::EINVAL),
    }
    if out.lacks_len() {
        return Outcome::Fail(libc::EFAULT);
    }
    let (nfd, from) = match sys::accept_unix(fd, flags) {
        Ok(a) => a,
        Err(e) => return Outcome::Fail(e),
    };
    set_send_buffer(nfd, None);
    // The runtime connected from a socket whose name says what this end shows.
    let shown = from.and_then(|n| view::parse_flow_name(&n)).map(|f| f.view);
    let (local, peer) = shown.map_or(
        (meta.local, SocketAddr::new(loopback(meta.family), 0)),
        |v| (v.local, v.peer),
    );
    sockets::set(
        nfd,
        Meta {
            family: meta.family,
            local,
            role: Role::Connected { peer },
            // Accepted sockets inherit their listener's options, as TCP's do.
            options: meta.options.clone(),
        },
    );
    out.write(peer, meta.family);
    Outcome::Done(nfd)
}

/// `getsockname` / `getpeername` for our sockets, into `out`.
pub fn name(fd: c_int, out: &AddrBuf<'_>, peer: bool) -> Outcome {
    let Some(meta) = sockets::get(fd) else {
        return Outcome::Pass;
    };
    if out.is_null() {
        return Outcome::Fail(libc::EFAULT);
    }
    let sa = match (&meta.role, peer) {
        (Role::Datagram(d), _) => match crate::dgram::name(d, meta.local, peer) {
            Some(sa) => sa,
            None => return Outcome::Pass,
        },
        (Role::Connected { peer }, true) => *peer,
        (_, true) => return Outcome::Fail(libc::ENOTCONN),
        (_, false) => meta.local,
    };
    out.write(sa, meta.family);
    Outcome::Done(0)
}

/// `getsockopt` for our stream sockets: answer as a TCP socket would
/// ([`crate::options`]), into `out`.
pub fn getsockopt(fd: c_int, level: c_int, name: c_int, out: &OptBuf<'_>) -> Outcome {
    let Some(meta) = sockets::get(fd).filter(|m| !matches!(m.role, Role::Datagram(_))) else {
        return Outcome::Pass; // not ours, or a real UDP socket
    };
    crate::options::get(fd, &meta, level, name, out)
}

/// `setsockopt` for our stream sockets ([`crate::options`]); `val` is the caller's
/// value (`None`: a null pointer with a length, EFAULT).
pub fn setsockopt(fd: c_int, level: c_int, name: c_int, val: Option<&[u8]>) -> Outcome {
    if sockets::get(fd).is_none_or(|m| matches!(m.role, Role::Bound | Role::Datagram(_))) {
        return Outcome::Pass; // still a real INET socket
    }
    crate::options::set(fd, level, name, val)
}

/// `socket`: forget anything recorded for a reused inode.
pub fn after_socket(fd: c_int) {
    if fd >= 0 && sockets::get(fd).is_some() {
        sockets::remove(fd);
    }
}
