//! The runtime thread: one event loop per process (DESIGN.md D3).
//!
//! It waits on an epoll set holding the command eventfd, every shim socket and every
//! application-side socket (edge-triggered), with the earliest protocol deadline as
//! its time-out. Each turn feeds inputs to the shims and IPC processes, then repeats
//! "pump sockets, send PDUs, handle events" until nothing moves. Application threads
//! reach it only through [`Shared::post`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rina_core::ipcp::Event;
use rina_core::node::{DifId, LinkId};
use rina_core::{Instant, PortId};
use rustix::event::{epoll, eventfd, EventfdFlags};

use crate::api::{Command, FlowError, ListenTarget, Reply};
use crate::config::Config;
use crate::datagram::DatagramFlow;
use crate::pump::AppFlow;
use crate::stack::{BuildError, Stack};

mod keeper;
mod links;
mod mgmt;
mod sessions;

use sessions::{ListenerKey, PendingConnect, PendingListen, Waiting};

const TOKEN_WAKER: u64 = 0;
const TOKEN_SHIM: u64 = 1 << 56;
const TOKEN_FLOW: u64 = 2 << 56;
const TOKEN_DATAGRAM: u64 = 3 << 56;
const TOKEN_MGMT: u64 = 4 << 56;
const TOKEN_MASK: u64 = (1 << 56) - 1;

/// What the epoll set watches on a stream flow's socket (edge-triggered).
const FLOW_EVENTS: epoll::EventFlags = epoll::EventFlags::IN
    .union(epoll::EventFlags::OUT)
    .union(epoll::EventFlags::RDHUP)
    .union(epoll::EventFlags::ET);

thread_local! {
    static RUNTIME_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// True on a runtime thread. The interposer passes every call made there straight to
/// libc: the runtime's own sockets are never the application's.
pub fn on_runtime_thread() -> bool {
    RUNTIME_THREAD
        .try_with(std::cell::Cell::get)
        .unwrap_or(false)
}

/// State shared between the runtime thread and application threads.
#[derive(Debug)]
pub(crate) struct Shared {
    commands: Mutex<VecDeque<Command>>,
    waker: OwnedFd,
    alive: AtomicBool,
}

impl Shared {
    /// A fresh command queue and waker.
    fn new() -> rustix::io::Result<Arc<Self>> {
        let waker =
            shims::high_fd::move_high(eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?);
        Ok(Arc::new(Self {
            commands: Mutex::new(VecDeque::new()),
            waker,
            alive: AtomicBool::new(true),
        }))
    }

    /// True while the runtime thread takes commands.
    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Posts a command; false if the runtime thread is gone.
    pub(crate) fn post(&self, cmd: Command) -> bool {
        if !self.alive.load(Ordering::Acquire) {
            return false;
        }
        self.commands.lock().push_back(cmd);
        let _ = rustix::io::write(&self.waker, &1u64.to_ne_bytes());
        true
    }
}

/// Starts the runtime thread.
pub(crate) fn spawn(
    config: Arc<Config>,
    program: &str,
    node: bool,
) -> Result<Arc<Shared>, FlowError> {
    crate::log::init();
    let down = |what: &str, e: rustix::io::Errno| FlowError::RuntimeDown(format!("{what}: {e}"));
    let shared = Shared::new().map_err(|e| down("eventfd", e))?;
    let clock = std::time::Instant::now();
    let seed = seed();
    let stack = match Stack::build(&config, program, Instant::ZERO, seed, node) {
        Ok(s) => s,
        // Another process with these rules holds the endpoints (a fork child's parent,
        // a second server of a pool): join as one more member, through it.
        Err(BuildError::EndpointInUse(e)) => {
            tracing::info!("{e}; joining through the member that holds it");
            let child = config.for_fork_child(std::process::id());
            Stack::build(&child, program, Instant::ZERO, seed, node)?
        }
        Err(e) => return Err(e.into()),
    };
    // The management socket: a stack that cannot serve one still runs.
    let mgmt = mgmt::listener(std::process::id())
        .inspect_err(|e| tracing::warn!("no management socket: {e}"))
        .ok();
    let epoll = new_epoll(&shared, mgmt.as_ref(), &stack).map_err(|e| down("epoll", e))?;
    let mut driver = Driver {
        shared: shared.clone(),
        program: program.to_owned(),
        mgmt,
        epoll,
        clock,
        stack,
        flows: BTreeMap::new(),
        datagrams: BTreeMap::new(),
        by_port: BTreeMap::new(),
        next_flow: 1,
        pending_connects: BTreeMap::new(),
        pending_listens: Vec::new(),
        listeners: BTreeMap::new(),
        waiting: Vec::new(),
        exiting: None,
        stopped: false,
        keeper: None,
        rx: vec![0u8; 65536],
        tx: Vec::with_capacity(65536),
        io: vec![0u8; 65536],
        busy: false,
        missed_wakeups: 0,
        strict: std::env::var_os("RINA_STRICT").is_some_and(|v| v != "0"),
        node,
        said: BTreeSet::new(),
    };
    // The thread starts with every signal blocked (it inherits this thread's mask): the
    // program's signals are the program's, whichever thread it leaves them to (D3).
    let spawned = with_signals_blocked(|| {
        std::thread::Builder::new()
            .name("rina-runtime".into())
            .spawn(move || {
                RUNTIME_THREAD.with(|t| t.set(true));
                driver.run();
                driver.shared.alive.store(false, Ordering::Release);
            })
    });
    spawned.map_err(|e| FlowError::RuntimeDown(format!("cannot start the runtime thread: {e}")))?;
    Ok(shared)
}

/// Runs `f` with every signal blocked in this thread (so that threads it starts begin
/// with all signals blocked), then restores the mask.
fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: sigset_t is plain data that sigfillset initialises; pthread_sigmask only
    // reads `all` and writes `old`, both ours.
    let old = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        old
    };
    let r = f();
    // SAFETY: restoring the mask read above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    r
}

/// An epoll set watching the waker, the management socket and every shim.
fn new_epoll(
    shared: &Shared,
    mgmt: Option<&OwnedFd>,
    stack: &Stack,
) -> rustix::io::Result<OwnedFd> {
    let ep = shims::high_fd::move_high(epoll::create(epoll::CreateFlags::CLOEXEC)?);
    let watch = |fd: std::os::fd::BorrowedFd<'_>, token: u64| {
        epoll::add(
            &ep,
            fd,
            epoll::EventData::new_u64(token),
            epoll::EventFlags::IN,
        )
    };
    watch(shared.waker.as_fd(), TOKEN_WAKER)?;
    if let Some(m) = mgmt {
        watch(m.as_fd(), TOKEN_MGMT)?;
    }
    for (i, l) in stack.links.iter().enumerate() {
        watch(l.fd(), TOKEN_SHIM | i as u64)?;
    }
    Ok(ep)
}

fn seed() -> u64 {
    let mut b = [0u8; 8];
    if rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).is_err() {
        return u64::from(std::process::id()) ^ 0x5eed;
    }
    u64::from_ne_bytes(b)
}

struct Driver {
    shared: Arc<Shared>,
    /// The program's name, for reports.
    program: String,
    /// The management socket's listener.
    mgmt: Option<OwnedFd>,
    epoll: OwnedFd,
    clock: std::time::Instant,
    stack: Stack,
    /// Stream flows by token.
    flows: BTreeMap<u64, AppFlow>,
    /// Datagram flows by token.
    datagrams: BTreeMap<u64, DatagramFlow>,
    /// (DIF, port-id) -> token (of either kind).
    by_port: BTreeMap<(DifId, PortId), u64>,
    next_flow: u64,
    pending_connects: BTreeMap<(DifId, PortId), PendingConnect>,
    pending_listens: Vec<PendingListen>,
    /// Incoming stream flows waiting for room in their listener's backlog.
    waiting: Vec<Waiting>,
    /// (DIF, application, kind) -> where its incoming flows go.
    listeners: BTreeMap<ListenerKey, ListenTarget>,
    /// Set when the process exits: the deadline and who waits.
    exiting: Option<(Instant, Reply<()>)>,
    /// The process no longer needs this thread (the stack went to a keeper, or there
    /// was nothing to keep).
    stopped: bool,
    /// Set in a keeper process (see `keeper.rs`).
    keeper: Option<keeper::Keeper>,
    rx: Vec<u8>,
    tx: Vec<u8>,
    io: Vec<u8>,
    /// The last turn stopped at its bound with work left.
    busy: bool,
    /// Times the loop found core output pending before a wait (see `output_left`).
    missed_wakeups: u64,
    /// `RINA_STRICT` was set: a missed wake-up aborts (tests).
    strict: bool,
    /// A node (`rina node`): it says nothing on standard error of its own.
    node: bool,
    /// What was said on standard error already (see `sessions.rs`).
    said: BTreeSet<String>,
}

impl Driver {
    fn now(&self) -> Instant {
        Instant::from_micros(self.clock.elapsed().as_micros() as u64)
    }

    fn run(&mut self) {
        let mut events = Vec::with_capacity(256);
        loop {
            // After a hand-over, a keeper process owns the flows: this thread must not
            // touch them again, not even for a turn.
            if self.stopped {
                return;
            }
            let now = self.now();
            self.turn(now);
            if self.stopped || self.exit_done(now) {
                return;
            }
            if self.keeper_done(now) {
                tracing::info!("keeper done: every flow delivered, no listener left");
                self.leave(now);
                // SAFETY: the keeper ends here, without the application's exit
                // handlers (it is a copy of a process that already exited or exec'd).
                unsafe { libc::_exit(0) };
            }
            let timeout = if self.busy || self.output_left() {
                // More to do right away: look at the sockets without waiting.
                Some(Duration::ZERO)
            } else {
                self.next_deadline()
                    .map(|t| t.saturating_duration_since(self.now()))
            };
            let ts = timeout.map(|d| rustix::time::Timespec {
                tv_sec: d.as_secs() as i64,
                tv_nsec: i64::from(d.subsec_nanos()),
            });
            events.clear();
            match epoll::wait(&self.epoll, spare(&mut events), ts.as_ref()) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    tracing::error!("epoll_wait failed: {e}; the runtime stops");
                    return;
                }
            }
            let now = self.now();
            for ev in &events {
                if self.stopped {
                    return;
                }
                let token = ev.data.u64();
                match token & !TOKEN_MASK {
                    TOKEN_WAKER if token == TOKEN_WAKER => self.take_commands(now),
                    TOKEN_SHIM => {
                        let link = LinkId((token & TOKEN_MASK) as usize);
                        let flags = ev.flags;
                        if flags.contains(epoll::EventFlags::ERR) {
                            self.link_error(link);
                        }
                        self.receive_link(now, link);
                    }
                    TOKEN_MGMT => self.serve_mgmt(),
                    TOKEN_DATAGRAM => {
                        if let Some(f) = self.datagrams.get_mut(&token) {
                            let fl = ev.flags;
                            f.readable |=
                                fl.intersects(epoll::EventFlags::IN | epoll::EventFlags::ERR);
                            f.writable |=
                                fl.intersects(epoll::EventFlags::OUT | epoll::EventFlags::ERR);
                        }
                    }
                    TOKEN_FLOW => {
                        if let Some(f) = self.flows.get_mut(&token) {
                            let fl = ev.flags;
                            if fl.intersects(
                                epoll::EventFlags::IN
                                    | epoll::EventFlags::RDHUP
                                    | epoll::EventFlags::HUP
                                    | epoll::EventFlags::ERR,
                            ) {
                                f.readable = true;
                            }
                            if fl.intersects(
                                epoll::EventFlags::OUT
                                    | epoll::EventFlags::HUP
                                    | epoll::EventFlags::ERR,
                            ) {
                                f.writable = true;
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut t = self.stack.node.poll_timeout();
        for l in &self.pending_listens {
            t = rina_core::time::earliest(t, Some(l.deadline));
        }
        for w in &self.waiting {
            t = rina_core::time::earliest(t, Some(w.next_try));
        }
        if let Some((deadline, _)) = &self.exiting {
            t = rina_core::time::earliest(t, Some(*deadline));
        }
        rina_core::time::earliest(t, self.keeper_deadline())
    }

    /// Timers, then work until nothing moves (bounded, so commands and I/O get turns).
    fn turn(&mut self, now: Instant) {
        self.stack.node.handle_timeout(now);
        self.expire_listens(now);
        self.retry_waiting(now);
        // Until nothing moves and the core has nothing more to say (handling a PDU this
        // member sent to itself, say, makes events and no transmission): bounded, so
        // that commands and I/O get turns; `busy` then skips the next wait.
        self.busy = true;
        for _ in 0..256 {
            let mut progress = self.handle_node_events(now);
            progress |= self.pump_flows(now);
            progress |= self.flush(now);
            if !progress && !self.stack.node.has_pending_output() {
                self.busy = false;
                break;
            }
        }
    }

    /// Checks, before the loop waits, that the core has nothing left for it. Anything
    /// left is a missed wake-up (a bug: `turn` drains everything): it is counted and
    /// logged, the wait is skipped, and with `RINA_STRICT` set the process aborts so
    /// that tests fail on it.
    fn output_left(&mut self) -> bool {
        if !self.stack.node.has_pending_output() {
            return false;
        }
        self.missed_wakeups += 1;
        tracing::error!("the runtime was about to sleep with work pending in the core");
        if self.strict {
            let msg = b"rina: runtime bug: about to sleep with core output pending\n";
            let _ = rustix::io::write(rustix::stdio::stderr(), msg);
            std::process::abort();
        }
        true
    }

    fn take_commands(&mut self, now: Instant) {
        let mut b = [0u8; 8];
        let _ = rustix::io::read(&self.shared.waker, &mut b);
        let cmds: Vec<Command> = self.shared.commands.lock().drain(..).collect();
        let mut cmds = cmds.into_iter();
        while let Some(c) = cmds.next() {
            if self.stopped || self.keeper.is_some() {
                // A hand-over happened: in this process the commands that follow are
                // answered by dropping them (their replies say the runtime is down); a
                // keeper must not touch them at all (their sockets were closed when it
                // started, and they belong to the exiting process).
                let rest: Vec<Command> = cmds.collect();
                if self.keeper.is_some() {
                    std::mem::forget(rest);
                }
                return;
            }
            match c {
                Command::Connect(req, reply) => self.connect(now, req, reply),
                Command::Listen(req, reply) => self.listen(now, req, reply),
                Command::ReleaseDatagram(app) => self.release_datagram(now, app),
                Command::ListenerClosed(name) => self.listener_closed(now, &name),
                Command::FlowStats(dif, port, reply) => reply.send(self.flow_stats(dif, port)),
                // Children may hold flows' sockets: they are served by a keeper.
                Command::Exit(linger, reply) if self.has_streams() && keeper::has_children() => {
                    self.hand_over(now, linger, reply);
                }
                Command::Exit(linger, reply) => {
                    for f in self.flows.values_mut() {
                        f.readable = true;
                    }
                    self.exiting = Some((now + linger, reply));
                }
                Command::HandOver(linger, reply) => self.hand_over(now, linger, reply),
            }
        }
    }

    /// An event of DIF `dif` about the applications' flows.
    fn on_flow_event(&mut self, now: Instant, dif: DifId, ev: Event) {
        match ev {
            Event::FlowAllocated { port } => self.flow_allocated(now, dif, port),
            Event::FlowAllocationFailed { port, error } => {
                self.allocation_failed(dif, port, error);
            }
            Event::IncomingFlow {
                port,
                local_app,
                remote_app,
                reliable,
                info,
            } => self.incoming(now, dif, port, local_app, &remote_app, reliable, &info),
            Event::Readable { .. } | Event::Writable { .. } => {}
            // The node's own (enrollment, neighbours).
            Event::Enrolled { .. }
            | Event::EnrollmentFailed { .. }
            | Event::NeighborUp { .. }
            | Event::NeighborLost { .. } => {}
            Event::FlowClosed { port, reset } => {
                let Some(&token) = self.by_port.get(&(dif, port)) else {
                    return;
                };
                tracing::debug!("flow {port} closed (reset: {reset})");
                if let Some(f) = self.flows.get_mut(&token) {
                    // What arrived before the reset is still delivered (see pump.rs).
                    f.reset = true;
                    f.writable = true;
                } else {
                    let _ = self.forget_flow(token);
                }
            }
        }
    }

    fn pump_flows(&mut self, now: Instant) -> bool {
        let exiting = self.exiting.is_some();
        let mut progress = false;
        let mut finished = Vec::new();
        for (&token, f) in &mut self.flows {
            let chunk = self.stack.node.dif(f.dif).stream_sdu();
            let ipcp = self.stack.node.ipcp_mut(f.dif);
            let out = f.pump(now, ipcp, &mut self.io, chunk, exiting);
            progress |= out.progress;
            if out.broken || f.is_over(ipcp) {
                finished.push(token);
            }
        }
        for token in finished {
            if let Some((dif, port, sock)) = self.forget_flow(token) {
                if let Some(sock) = sock {
                    // Whatever the application still holds ends here (EOF, EPIPE).
                    let _ = rustix::net::shutdown(&sock, rustix::net::Shutdown::Both);
                }
                self.stack.node.ipcp_mut(dif).deallocate(now, port);
                progress = true;
            }
        }
        let mut closed = Vec::new();
        for (&token, f) in &mut self.datagrams {
            let out = f.pump(now, self.stack.node.ipcp_mut(f.dif), &mut self.io);
            progress |= out.progress;
            if out.closed {
                closed.push(token);
            }
        }
        for token in closed {
            progress |= self.forget_flow(token).is_some();
        }
        progress
    }

    /// Stops serving the flow behind `token` (stream or datagram): out of the tables
    /// and the epoll set. Its DIF and port-id, and a stream's socket.
    fn forget_flow(&mut self, token: u64) -> Option<(DifId, PortId, Option<OwnedFd>)> {
        let (dif, port, sock) = if let Some(f) = self.flows.remove(&token) {
            let _ = epoll::delete(&self.epoll, &f.sock);
            (f.dif, f.port, Some(f.sock))
        } else {
            let f = self.datagrams.remove(&token)?;
            let _ = epoll::delete(&self.epoll, f.proxy.fd());
            (f.dif, f.port, None)
        };
        self.by_port.remove(&(dif, port));
        Some((dif, port, sock))
    }

    /// True when the exit drain is over (everything sent, or the linger ran out).
    fn exit_done(&mut self, now: Instant) -> bool {
        let Some((deadline, _)) = &self.exiting else {
            return false;
        };
        let drained = self
            .flows
            .values()
            .all(|f| f.is_drained(self.stack.node.dif(f.dif).ipcp()));
        if !drained && now < *deadline {
            return false;
        }
        self.leave(now);
        if let Some((_, reply)) = self.exiting.take() {
            reply.send(());
        }
        true
    }
}

/// Bytes an application-side socket may queue in the kernel (each way; the kernel
/// doubles it for its bookkeeping): large enough that the runtime and the application
/// wake each other rarely, and, with the flow's window, about what a loopback TCP
/// connection holds between two programs at most (its buffers grow to 4 MiB to send
/// and 6 MiB to receive): about 8 MiB each way, so a program that stops reading pushes
/// back on its peer as over TCP.
pub const APP_SOCKET_BUFFER: usize = 1 << 20;

/// Sets the socket's send buffer to `size`, by default [`APP_SOCKET_BUFFER`] (forced
/// when privileged).
pub(crate) fn set_send_buffer(sock: &impl AsFd, size: Option<usize>) {
    use rustix::net::sockopt;
    let size = size.unwrap_or(APP_SOCKET_BUFFER);
    if sockopt::set_socket_send_buffer_size_force(sock, size).is_err() {
        let _ = sockopt::set_socket_send_buffer_size(sock, size);
    }
}

/// An epoll event buffer with spare capacity.
fn spare(v: &mut Vec<epoll::Event>) -> rustix::buffer::SpareCapacity<'_, epoll::Event> {
    rustix::buffer::spare_capacity(v)
}
