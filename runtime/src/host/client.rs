//! A program's side of the host member: one session (a `SOCK_SEQPACKET` connection to
//! the host member's socket) per process, over which its calls go instead of to a
//! stack of its own.
//!
//! Calls are made from application threads. Each sends its request and waits, bounded,
//! for the answer with its id; one waiting thread at a time reads the session and
//! hands the other answers to their callers (and to the callbacks of nonblocking
//! connects). No thread is started: a nonblocking connect's result is read by the next
//! call, or by [`Client::settle`], which the interposer calls before it answers for a
//! connecting socket (the host member sends the result before it makes the socket
//! writable, so it is there to read).

use std::collections::BTreeMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rustix::net::{self, AddressFamily, RecvFlags, SocketAddrUnix, SocketFlags, SocketType};

use super::wire::{self, Answer, ConnectMsg, ListenMsg, Received, Request, Target};
use crate::api::{AppEnd, ConnectRequest, FlowError, FlowInfo, ListenRequest, ListenTarget};
use crate::config::{Config, HostSocket};

type Done = Box<dyn FnOnce(Result<FlowInfo, FlowError>) + Send>;

/// A session with the host member.
pub(crate) struct Client {
    at: HostSocket,
    /// The program's name, for what it says on standard error.
    program: String,
    sock: OwnedFd,
    next_id: AtomicU64,
    broken: AtomicBool,
    state: Mutex<State>,
    arrived: Condvar,
}

#[derive(Default)]
struct State {
    /// Answers read for callers that have not taken them yet.
    answers: BTreeMap<u64, Answer>,
    /// Nonblocking connects waiting for their result.
    pending: BTreeMap<u64, Done>,
    /// A thread is reading the session.
    reading: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host member session at {}", self.at)
    }
}

/// The address of a host member's socket.
pub(crate) fn address(at: &HostSocket) -> rustix::io::Result<SocketAddrUnix> {
    match at {
        HostSocket::Abstract(n) => SocketAddrUnix::new_abstract_name(n.as_bytes()),
        HostSocket::Path(p) => SocketAddrUnix::new(p.as_path()),
    }
}

impl Client {
    /// Opens a session with the host member at `at`.
    ///
    /// # Errors
    /// [`FlowError::RuntimeDown`], naming the socket, if nothing listens there.
    pub(crate) fn open(at: &HostSocket, program: &str) -> Result<Self, FlowError> {
        let down = |e: rustix::io::Errno| {
            FlowError::RuntimeDown(format!(
                "no host member at {at}: {}",
                std::io::Error::from(e)
            ))
        };
        let sock = net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(down)?;
        let sock = shims::high_fd::move_high(sock);
        net::connect(&sock, &address(at).map_err(down)?).map_err(down)?;
        Ok(Self {
            at: at.clone(),
            program: program.to_owned(),
            sock,
            next_id: AtomicU64::new(1),
            broken: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            arrived: Condvar::new(),
        })
    }

    /// False once the host member went away (the next call opens a new session).
    pub(crate) fn is_up(&self) -> bool {
        !self.broken.load(Ordering::Acquire)
    }

    fn gone(&self) -> FlowError {
        FlowError::RuntimeDown(format!("the host member at {} went away", self.at))
    }

    /// Asks for a flow and waits for it.
    pub(crate) fn connect(
        &self,
        config: &Config,
        req: ConnectRequest,
    ) -> Result<FlowInfo, FlowError> {
        let timeout = req.timeout;
        let id = self.id();
        self.send_connect(config, id, req)?;
        match self.wait(id, timeout)? {
            Answer::Flow(_, r) => r.map(flow_info),
            _ => Err(self.gone()),
        }
    }

    /// Asks for a flow; `done` gets the result when a later call (or [`Client::settle`])
    /// reads it.
    pub(crate) fn connect_then(&self, config: &Config, req: ConnectRequest, done: Done) {
        let id = self.id();
        self.state.lock().pending.insert(id, done);
        if let Err(e) = self.send_connect(config, id, req) {
            if let Some(done) = self.state.lock().pending.remove(&id) {
                done(Err(e));
            }
        }
    }

    /// Registers a name.
    pub(crate) fn listen(&self, config: &Config, req: ListenRequest) -> Result<(), FlowError> {
        let id = self.id();
        let target = match req.target {
            ListenTarget::Stream(name, v) => Target::Stream {
                name,
                local: v.local,
                peers: v.peers.to_string(),
                v6_only: v.v6_only,
                recv_buffer: v.recv_buffer,
            },
            ListenTarget::Datagram(a) => Target::Datagram(a),
            ListenTarget::Forward { .. } | ListenTarget::Tunnel => {
                return Err(FlowError::NotAllowed(
                    "a gateway or a tunnel runs a stack of its own, not the host member's".into(),
                ))
            }
        };
        let msg = Request::Listen(ListenMsg {
            id,
            dif: config.dif_name(req.dif).to_owned(),
            app: req.app.to_string(),
            target,
            pool: req.pool,
            timeout: req.timeout,
        });
        self.send(&msg, &[])?;
        match self.wait(id, req.timeout)? {
            Answer::Listened(_, r) => r,
            _ => Err(self.gone()),
        }
    }

    /// Tells the host member something that needs no answer.
    pub(crate) fn tell(&self, msg: &Request) {
        let _ = self.send(msg, &[]);
    }

    /// A flow's EFCP figures.
    pub(crate) fn flow_stats(
        &self,
        dif: u16,
        port: u32,
    ) -> Option<rina_core::efcp::ConnectionStats> {
        let id = self.id();
        self.send(&Request::FlowStats { id, dif, port }, &[]).ok()?;
        match self.wait(id, Duration::from_secs(1)).ok()? {
            Answer::Stats(_, s) => s.map(Into::into),
            _ => None,
        }
    }

    /// Reads what the host member has sent without waiting: the results of nonblocking
    /// connects go to their callbacks.
    pub(crate) fn settle(&self) {
        let mut st = self.state.lock();
        if st.reading || st.pending.is_empty() {
            return;
        }
        loop {
            match wire::recv::<Answer>(&self.sock, RecvFlags::DONTWAIT) {
                Ok(Received::Message(a, _)) => st = self.file(st, a),
                Err(rustix::io::Errno::AGAIN) => return,
                _ => {
                    drop(st);
                    self.broke();
                    return;
                }
            }
        }
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn send_connect(&self, config: &Config, id: u64, req: ConnectRequest) -> Result<(), FlowError> {
        let (fds, datagram, held): (Vec<OwnedFd>, _, _) = match req.end {
            // The host member has no early connects: the duplicate is not needed.
            AppEnd::Stream(fd) | AppEnd::StreamEarly(fd, _) => (vec![fd], None, None),
            AppEnd::StreamHeld(fd, held) => {
                let (app, filler, send_buffer) = held.into_parts();
                (vec![fd, app], None, Some((filler, send_buffer)))
            }
            AppEnd::Datagram(a) => (Vec::new(), Some(a), None),
        };
        let msg = Request::Connect(ConnectMsg {
            id,
            dif: config.dif_name(req.dif).to_owned(),
            local_app: req.local_app.to_string(),
            remote_app: req.remote_app.to_string(),
            datagram,
            view: req.view.map(|v| (v.local, v.peer)),
            recv_buffer: req.recv_buffer,
            timeout: req.timeout,
            held,
        });
        let fds: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
        self.send(&msg, &fds)
    }

    fn send(&self, msg: &Request, fds: &[BorrowedFd<'_>]) -> Result<(), FlowError> {
        if !self.is_up() {
            return Err(self.gone());
        }
        wire::send(self.sock.as_fd(), msg, fds, true).map_err(|e| {
            if e != rustix::io::Errno::AGAIN {
                self.broke();
            }
            self.gone()
        })
    }

    /// Waits up to `timeout` (and a second more: the host member enforces it) for the
    /// answer to request `id`, reading the session when no other thread does.
    fn wait(&self, id: u64, timeout: Duration) -> Result<Answer, FlowError> {
        let deadline = Instant::now() + timeout.saturating_add(Duration::from_secs(1));
        let mut st = self.state.lock();
        loop {
            if let Some(a) = st.answers.remove(&id) {
                return Ok(a);
            }
            if !self.is_up() {
                return Err(self.gone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(FlowError::TimedOut);
            }
            if st.reading {
                self.arrived.wait_for(&mut st, left);
                continue;
            }
            st.reading = true;
            drop(st);
            let got = self.read_one(left);
            st = self.state.lock();
            st.reading = false;
            match got {
                Ok(Some(a)) => st = self.file(st, a),
                Ok(None) => {}
                Err(()) => {
                    drop(st);
                    self.broke();
                    st = self.state.lock();
                }
            }
            self.arrived.notify_all();
        }
    }

    /// One answer, waiting up to `left`; `Ok(None)`: nothing came; `Err`: the session
    /// is broken.
    fn read_one(&self, left: Duration) -> Result<Option<Answer>, ()> {
        use rustix::event::{poll, PollFd, PollFlags};
        let mut p = [PollFd::new(&self.sock, PollFlags::IN)];
        let t = crate::driver::timespec(left);
        match poll(&mut p, Some(&t)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => return Ok(None),
            Ok(_) => {}
            Err(_) => return Err(()),
        }
        match wire::recv::<Answer>(&self.sock, RecvFlags::DONTWAIT) {
            Ok(Received::Message(a, _)) => Ok(Some(a)),
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => Ok(None),
            _ => Err(()),
        }
    }

    /// Files an answer: a nonblocking connect's goes to its callback (called without
    /// the lock), any other waits for its caller.
    fn file<'a>(
        &'a self,
        mut st: parking_lot::MutexGuard<'a, State>,
        a: Answer,
    ) -> parking_lot::MutexGuard<'a, State> {
        let id = match &a {
            Answer::Flow(id, _) | Answer::Listened(id, _) | Answer::Stats(id, _) => *id,
        };
        if let Some(done) = st.pending.remove(&id) {
            drop(st);
            if let Answer::Flow(_, r) = a {
                done(r.map(flow_info));
            }
            return self.state.lock();
        }
        st.answers.insert(id, a);
        st
    }

    /// The host member went away: the program's user is told (once), every waiting
    /// nonblocking connect fails.
    fn broke(&self) {
        if !self.broken.swap(true, Ordering::AcqRel) {
            let line = format!(
                "rina: {}: the host member at {} went away: its flows ended, and the calls its \
                 rules send to RINA fail (ENETDOWN) until it is back (it then registers its \
                 names again); nothing goes over TCP/IP\n",
                self.program, self.at
            );
            let _ = rustix::io::write(rustix::stdio::stderr(), line.as_bytes());
        }
        let pending = std::mem::take(&mut self.state.lock().pending);
        for (_, done) in pending {
            done(Err(self.gone()));
        }
        self.arrived.notify_all();
    }
}

fn flow_info((port, proxy): (u32, Option<std::net::SocketAddr>)) -> FlowInfo {
    FlowInfo {
        port: rina_core::PortId(port),
        proxy,
    }
}
