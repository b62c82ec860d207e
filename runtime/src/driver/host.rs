//! The host member's service to the programs of its host (`[host]`, see
//! [`crate::host`]): a `SOCK_SEQPACKET` listener, one session per program process,
//! each request checked against the `[[host.allow]]` rules with the program's
//! credentials (`SO_PEERCRED`), then served as the process's own stack would serve it.
//!
//! A session's end changes nothing for its flows (they are the host member's, and end
//! when every holder of their sockets closed them); the names it registered are
//! withdrawn unless another process still holds the listener (a daemon's child).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use parking_lot::Mutex;
use rina_core::{ApplicationName, Instant, PortId};
use rustix::event::epoll;
use rustix::net::{self, AddressFamily, RecvFlags, SocketFlags, SocketType};

use super::host_state::Registration;
use super::{Driver, TOKEN_HOST, TOKEN_MASK};
use crate::api::{AppEnd, ConnectRequest, FlowError, FlowInfo, ListenRequest, ListenTarget, Reply};
use crate::config::{groups_of, name_of, Config, DifIndex, HostService, HostSocket, Peer};
use crate::host::wire::{self, Answer, ConnectMsg, ListenMsg, Received, Request, Target};
use crate::report::ProgramReport;
use crate::view::{FlowView, ListenView};

/// Sessions served at once; more wait in the listener's backlog.
const MAX_SESSIONS: usize = 4096;

/// The service: its listener, the rules, the sessions.
pub(super) struct Service {
    listener: OwnedFd,
    rules: HostService,
    /// The host member's DIFs by name.
    difs: Vec<String>,
    sessions: BTreeMap<u64, Session>,
    next: u64,
    /// The names registered for programs, kept in `state` across restarts.
    pub(super) remembered: Arc<Mutex<Vec<Registration>>>,
    state: Arc<std::path::PathBuf>,
    /// What a previous host member registered, to register again.
    pub(super) to_restore: Vec<Registration>,
    /// Those to try again at `retry_at`.
    pub(super) retry: Arc<Mutex<Vec<Registration>>>,
    pub(super) retry_at: Instant,
}

/// One program process's session.
struct Session {
    sock: Arc<OwnedFd>,
    peer: Peer,
    /// What it made, for `rina ctl` and for its end (filled from the replies).
    made: Arc<Mutex<Made>>,
}

#[derive(Default)]
struct Made {
    /// (DIF, name) registered.
    names: BTreeSet<(String, String)>,
    /// Stream listeners (abstract names) behind those names.
    listeners: BTreeSet<Vec<u8>>,
    /// Datagram sockets with flows or names.
    datagrams: BTreeSet<SocketAddr>,
    /// Flows it asked for (allocated).
    flows: usize,
}

/// Binds the host member's socket. A path where a socket nobody listens at remains
/// (a host member that was killed) is taken over; one where a host member answers is
/// not.
pub(super) fn open(rules: &HostService, config: &Config) -> Result<Service, FlowError> {
    let why = |e: String| {
        FlowError::RuntimeDown(format!("cannot serve programs at {}: {e}", rules.socket))
    };
    let sock = net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .map_err(|e| why(e.to_string()))?;
    let addr = crate::host::client::address(&rules.socket).map_err(|e| why(e.to_string()))?;
    if let HostSocket::Path(p) = &rules.socket {
        if p.exists() {
            if crate::host::client::Client::open(&rules.socket, "node").is_ok() {
                return Err(why("another host member serves there".into()));
            }
            let _ = std::fs::remove_file(p);
        }
    }
    net::bind(&sock, &addr).map_err(|e| match e {
        rustix::io::Errno::ADDRINUSE => why("another host member serves there".into()),
        e => why(std::io::Error::from(e).to_string()),
    })?;
    if let HostSocket::Path(p) = &rules.socket {
        // Anyone may connect: the rules decide what each user may do.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o666));
    }
    net::listen(&sock, 128).map_err(|e| why(e.to_string()))?;
    let state = super::host_state::path(rules);
    let to_restore = super::host_state::load(&state);
    Ok(Service {
        // Kept (in the file too) until their programs no longer hold them.
        remembered: Arc::new(Mutex::new(to_restore.clone())),
        state: Arc::new(state),
        to_restore,
        retry: Arc::default(),
        retry_at: Instant::ZERO,
        listener: shims::high_fd::move_high(sock),
        rules: rules.clone(),
        difs: config.difs.iter().map(|d| d.name.clone()).collect(),
        sessions: BTreeMap::new(),
        next: 1,
    })
}

impl Service {
    /// The host member's DIF of this name.
    pub(super) fn dif_index(&self, name: &str) -> Option<DifIndex> {
        self.difs.iter().position(|d| d == name).map(DifIndex)
    }

    /// The listener, to watch.
    pub(super) fn listener(&self) -> &OwnedFd {
        &self.listener
    }

    /// What `rina ctl` shows of each program served (each user's name looked up once).
    pub(super) fn report(&self) -> Vec<ProgramReport> {
        let mut users = BTreeMap::new();
        self.sessions
            .values()
            .map(|s| {
                let m = s.made.lock();
                let uid = s.peer.uid;
                ProgramReport {
                    pid: s.peer.pid,
                    uid,
                    user: users
                        .entry(uid)
                        .or_insert_with(|| name_of("/etc/passwd", uid))
                        .clone(),
                    names: m.names.iter().map(|(d, n)| format!("{n} in {d}")).collect(),
                    flows: m.flows,
                }
            })
            .collect()
    }
}

impl Driver {
    /// The listener or a session is readable.
    pub(super) fn serve_host(&mut self, now: Instant, token: u64) {
        let n = token & TOKEN_MASK;
        if n == 0 {
            self.accept_sessions();
            return;
        }
        loop {
            let Some(s) = self.host.as_ref().and_then(|h| h.sessions.get(&n)) else {
                return;
            };
            let sock = s.sock.clone();
            match wire::recv::<Request>(&*sock, RecvFlags::DONTWAIT) {
                Ok(Received::Message(req, fds)) => self.host_request(now, n, req, fds),
                Err(rustix::io::Errno::AGAIN) => return,
                Err(rustix::io::Errno::INTR) => {}
                Ok(Received::Garbled | Received::Closed) | Err(_) => {
                    self.end_session(now, n);
                    return;
                }
            }
        }
    }

    fn accept_sessions(&mut self) {
        let Some(h) = self.host.as_mut() else { return };
        loop {
            let Ok(c) = net::accept_with(&h.listener, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC)
            else {
                return;
            };
            if h.sessions.len() >= MAX_SESSIONS {
                // Closed at once: the program's call fails (ENETDOWN) rather than wait.
                tracing::warn!("host: {MAX_SESSIONS} programs attached already; one more refused");
                continue;
            }
            let Ok(cred) = net::sockopt::socket_peercred(&c) else {
                continue;
            };
            let pid = cred.pid.as_raw_nonzero().get() as u32;
            // A process's other groups are read only if a rule names groups.
            let gid = cred.gid.as_raw();
            let peer = Peer {
                pid,
                uid: cred.uid.as_raw(),
                gids: if h.rules.allow.iter().any(|a| !a.groups.is_empty()) {
                    groups_of(pid, gid)
                } else {
                    vec![gid]
                },
            };
            let c = shims::high_fd::move_high(c);
            let n = h.next;
            h.next += 1;
            let token = TOKEN_HOST | (n & TOKEN_MASK);
            if epoll::add(
                &self.epoll,
                &c,
                epoll::EventData::new_u64(token),
                epoll::EventFlags::IN,
            )
            .is_err()
            {
                continue;
            }
            tracing::debug!("host: program {pid} (uid {}) attached", peer.uid);
            h.sessions.insert(
                n,
                Session {
                    sock: Arc::new(c),
                    peer,
                    made: Arc::default(),
                },
            );
        }
    }

    /// A program's process ended its session (exited, or its last holder closed it):
    /// the names whose listeners no process holds any more are withdrawn, and the
    /// datagram sockets no process holds any more released.
    fn end_session(&mut self, now: Instant, n: u64) {
        let Some(s) = self.host.as_mut().and_then(|h| h.sessions.remove(&n)) else {
            return;
        };
        let _ = epoll::delete(&self.epoll, &*s.sock);
        tracing::debug!("host: program {} detached", s.peer.pid);
        let made = std::mem::take(&mut *s.made.lock());
        // Only a session that registered names changes what is remembered.
        let registered = !made.names.is_empty();
        for name in made.listeners {
            self.listener_closed(now, &name);
        }
        for app in made.datagrams {
            if crate::handle::nobody_holds(app) {
                self.release_datagram(now, app);
            }
        }
        if let Some(h) = self.host.as_ref().filter(|_| registered) {
            super::host_state::save(&h.state, &mut h.remembered.lock());
        }
    }

    fn host_request(&mut self, now: Instant, n: u64, req: Request, fds: Vec<OwnedFd>) {
        let Some(h) = self.host.as_ref() else { return };
        let Some(s) = h.sessions.get(&n) else { return };
        let (sock, made, peer) = (s.sock.clone(), s.made.clone(), s.peer.clone());
        match req {
            Request::Connect(m) => {
                let id = m.id;
                let answer = {
                    let sock = sock.clone();
                    move |r: Result<FlowInfo, FlowError>| {
                        let r = r.map(|f| (f.port.0, f.proxy));
                        let _ = wire::send(sock.as_fd(), &Answer::Flow(id, r), &[], false);
                    }
                };
                match self.host_connect(&peer, m, fds) {
                    Ok(req) => {
                        let datagram = match &req.end {
                            AppEnd::Datagram(a) => Some(*a),
                            _ => None,
                        };
                        let reply = Reply::then(
                            move |r: Result<FlowInfo, FlowError>| {
                                if r.is_ok() {
                                    let mut m = made.lock();
                                    m.flows += 1;
                                    m.datagrams.extend(datagram);
                                }
                                answer(r);
                            },
                            Err(FlowError::RuntimeDown("the host member stopped".into())),
                        );
                        self.connect(now, req, reply);
                    }
                    Err(e) => answer(Err(e)),
                }
            }
            Request::Listen(m) => self.host_listen_request(now, &sock, &made, &peer, m),
            Request::ReleaseDatagram(app) => {
                if crate::handle::nobody_holds(app) {
                    self.release_datagram(now, app);
                }
            }
            Request::ListenerClosed(name) => self.listener_closed(now, &name),
            Request::FlowStats { id, dif, port } => {
                let stats = self.flow_stats(dif, PortId(port)).map(Into::into);
                let _ = wire::send(sock.as_fd(), &Answer::Stats(id, stats), &[], false);
            }
        }
    }

    /// A program's `listen`: checked, then served; once registered, remembered (for
    /// `rina ctl`, the session's end, and a restart).
    fn host_listen_request(
        &mut self,
        now: Instant,
        sock: &Arc<OwnedFd>,
        made: &Arc<Mutex<Made>>,
        peer: &Peer,
        m: ListenMsg,
    ) {
        let (sock, made) = (sock.clone(), made.clone());
        let id = m.id;
        let answer = move |r: Result<(), FlowError>| {
            let _ = wire::send(sock.as_fd(), &Answer::Listened(id, r), &[], false);
        };
        let registration = Registration {
            uid: peer.uid,
            gids: peer.gids.clone(),
            listen: m.clone(),
            tries: 0,
        };
        let keep = self
            .host
            .as_ref()
            .map(|h| (h.remembered.clone(), h.state.clone()));
        match self.host_listen(peer, m) {
            Ok((req, dif)) => {
                let what = (dif, req.app.to_string(), req.target.clone());
                let reply = Reply::then(
                    move |r: Result<(), FlowError>| {
                        if r.is_ok() {
                            let mut m = made.lock();
                            let (dif, app, target) = what;
                            match target {
                                ListenTarget::Stream(name, _) => m.listeners.insert(name),
                                ListenTarget::Datagram(a) => m.datagrams.insert(a),
                                ListenTarget::Forward { .. } | ListenTarget::Tunnel => false,
                            };
                            m.names.insert((dif, app));
                            drop(m);
                            if let Some((remembered, state)) = keep {
                                let mut r = remembered.lock();
                                r.push(registration);
                                super::host_state::save(&state, &mut r);
                            }
                        }
                        answer(r);
                    },
                    Err(FlowError::RuntimeDown("the host member stopped".into())),
                );
                self.listen(now, req, reply);
            }
            Err(e) => answer(Err(e)),
        }
    }

    /// The DIF a program names, if it may use it (and register `name` in it).
    fn host_dif(&self, peer: &Peer, dif: &str, name: Option<&str>) -> Result<DifIndex, FlowError> {
        let Some(h) = self.host.as_ref() else {
            return Err(FlowError::RuntimeDown("not a host member".into()));
        };
        if let Err(why) = h.rules.permits(peer, dif, name) {
            let what = name.map_or_else(
                || format!("use DIF {dif}"),
                |n| format!("register {n} in DIF {dif}"),
            );
            let line = format!(
                "rina node: refused program {} (user {}) to {what}: {why}\n",
                peer.pid,
                name_of("/etc/passwd", peer.uid)
            );
            tracing::warn!("{}", line.trim_end());
            let _ = rustix::io::write(rustix::stdio::stderr(), line.as_bytes());
            return Err(FlowError::NotAllowed(why));
        }
        h.dif_index(dif)
            .ok_or_else(|| FlowError::NoSuchDif(dif.to_owned()))
    }

    fn host_connect(
        &self,
        peer: &Peer,
        m: ConnectMsg,
        fds: Vec<OwnedFd>,
    ) -> Result<ConnectRequest, FlowError> {
        let dif = self.host_dif(peer, &m.dif, None)?;
        let mut fds = fds.into_iter();
        let end = match (m.datagram, fds.next(), fds.next(), m.held) {
            (Some(a), None, None, None) => AppEnd::Datagram(a),
            (None, Some(rt), None, None) => AppEnd::Stream(rt),
            (None, Some(rt), Some(app), Some((filler, send_buffer))) => AppEnd::StreamHeld(
                rt,
                crate::pending::Held::from_parts(app, filler, send_buffer),
            ),
            _ => return Err(FlowError::NoResources),
        };
        let req = ConnectRequest {
            dif,
            local_app: app_name(&m.local_app)?,
            remote_app: app_name(&m.remote_app)?,
            end,
            view: m.view.map(|(local, peer)| FlowView { local, peer }),
            recv_buffer: m.recv_buffer,
            timeout: m.timeout,
        };
        Ok(req)
    }

    pub(super) fn host_listen(
        &self,
        peer: &Peer,
        m: ListenMsg,
    ) -> Result<(ListenRequest, String), FlowError> {
        let dif = self.host_dif(peer, &m.dif, Some(&m.app))?;
        let target = match m.target {
            Target::Stream {
                name,
                local,
                peers,
                v6_only,
                recv_buffer,
            } => ListenTarget::Stream(
                name,
                ListenView {
                    local,
                    peers: peers.parse().map_err(|_| FlowError::NoResources)?,
                    v6_only,
                    recv_buffer,
                },
            ),
            Target::Datagram(a) => ListenTarget::Datagram(a),
        };
        let req = ListenRequest {
            dif,
            app: app_name(&m.app)?,
            target,
            pool: m.pool,
            timeout: m.timeout,
        };
        Ok((req, m.dif))
    }
}

fn app_name(s: &str) -> Result<ApplicationName, FlowError> {
    s.parse()
        .map_err(|e| FlowError::NotAllowed(format!("invalid application name {s:?}: {e}")))
}
