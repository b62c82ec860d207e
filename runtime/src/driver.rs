//! The runtime thread: one event loop per process (DESIGN.md D3).
//!
//! It waits on an epoll set holding the command eventfd, every shim socket and every
//! application-side socket (edge-triggered), with the earliest protocol deadline as
//! its time-out. Each turn feeds inputs to the shims and IPC processes, then repeats
//! "pump sockets, send PDUs, handle events" until nothing moves. Application threads
//! reach it through [`Shared::post`] (commands), and the stack itself only to send a
//! small write inline (`inline.rs`): the stack is behind a lock that the thread holds
//! except while it waits, and that they only ever try.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use std::time::Duration;

use rina_core::node::{DifId, LinkId};
use rina_core::{Instant, PortId};
use rustix::event::epoll;

use crate::api::{Command, ListenTarget, Reply};
use crate::datagram::DatagramFlow;
use crate::pump::AppFlow;
use crate::stack::Stack;

mod dial;
mod early;
mod flows;
mod host;
mod host_state;
mod incoming;
mod inline;
mod inline_recv;
mod keeper;
mod links;
mod mgmt;
mod sessions;
mod spin;
mod start;
mod trust;
mod tunnel;

pub(crate) use flows::set_send_buffer;
pub use flows::APP_SOCKET_BUFFER;
pub use inline::{enabled as inline_sends, INLINE_MAX};
pub use inline_recv::enabled as inline_receives;
pub use spin::Spin;
use start::new_epoll;
pub use start::on_runtime_thread;
pub(crate) use start::{spawn, Shared};

use incoming::Waiting;
use sessions::{ListenerKey, PendingConnect, PendingListen};

const TOKEN_WAKER: u64 = 0;
const TOKEN_SHIM: u64 = 1 << 56;
const TOKEN_FLOW: u64 = 2 << 56;
const TOKEN_DATAGRAM: u64 = 3 << 56;
const TOKEN_MGMT: u64 = 4 << 56;
const TOKEN_HOST: u64 = 5 << 56;
const TOKEN_EARLY: u64 = 6 << 56;
const TOKEN_DIAL: u64 = 7 << 56;
const TOKEN_TUNNEL: u64 = 8 << 56;
const TOKEN_TIMER: u64 = 9 << 56;
const TOKEN_MASK: u64 = (1 << 56) - 1;

/// What the epoll set watches on a stream flow's socket (edge-triggered). Room to
/// write is watched only while the socket is full ([`FLOW_EVENTS_FULL`]): otherwise
/// every read by the application (which frees room) would wake this thread for
/// nothing.
const FLOW_EVENTS: epoll::EventFlags = epoll::EventFlags::IN
    .union(epoll::EventFlags::RDHUP)
    .union(epoll::EventFlags::ET);
/// [`FLOW_EVENTS`] and room to write, while the socket is full.
const FLOW_EVENTS_FULL: epoll::EventFlags = FLOW_EVENTS.union(epoll::EventFlags::OUT);

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
    /// The stream flows a turn pumps: those an event touched since, and those not idle
    /// after their last pump (`AppFlow::is_idle`); a turn costs nothing per quiet flow.
    active: BTreeSet<u64>,
    /// The same for datagram flows.
    active_datagrams: BTreeSet<u64>,
    /// Datagram flows by token.
    datagrams: BTreeMap<u64, DatagramFlow>,
    /// (DIF, port-id) -> token (of either kind).
    by_port: BTreeMap<(DifId, PortId), u64>,
    next_flow: u64,
    pending_connects: BTreeMap<(DifId, PortId), PendingConnect>,
    /// Early connects waiting for the program's first bytes, by token (`early.rs`).
    parked: BTreeMap<u64, early::Parked>,
    /// Each DIF's directory change count when the hints were last checked.
    directory_changes: Vec<u64>,
    pending_listens: Vec<PendingListen>,
    /// Incoming stream flows waiting for room in their listener's backlog.
    waiting: Vec<Waiting>,
    /// Incoming stream flows whose TCP connections are on their way (`dial.rs`).
    dialing: BTreeMap<u64, dial::Dialing>,
    /// The TUN device whose packets this runtime carries (`tunnel.rs`).
    tunnel: Option<tunnel::Tunnel>,
    /// (DIF, application, kind) -> where its incoming flows go.
    listeners: BTreeMap<ListenerKey, ListenTarget>,
    /// Set when the process exits: the deadline and who waits.
    exiting: Option<(Instant, Reply<()>)>,
    /// The process no longer needs this thread (the stack went to a keeper, or there
    /// was nothing to keep).
    stopped: bool,
    /// Set in a keeper process (see `keeper.rs`).
    keeper: Option<keeper::Keeper>,
    rx: crate::link::Received,
    tx: Vec<u8>,
    /// PDUs waiting for their links until the end of `flush`.
    transmits: crate::transmits::Transmits,
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
    /// When the trust directories are read next (`trust.rs`).
    next_trust_check: Instant,
    /// A host member's service to the programs of its host (`host.rs`).
    host: Option<host::Service>,
    /// How long to poll before sleeping (`spin.rs`).
    spin: Spin,
    /// Until when the thread sleeps while it waits (`None`: until an event), set before
    /// each wait: an application thread, which only holds the stack while the thread
    /// waits, sets its timer if a send of its own armed an earlier deadline
    /// (`inline.rs`).
    asleep_until: Option<Instant>,
    /// A timer fd in the epoll set, that an application thread sets to a deadline its
    /// send armed (`inline.rs`; only when inline sends are on).
    timer: Option<OwnedFd>,
    /// Writes sent inline so far, and wake-ups by the timer they set (for reports).
    inline_sends: u64,
    inline_timer_wakes: u64,
    /// Receiving turns run by application threads (`inline_recv.rs`).
    inline_receives: u64,
    /// Times a turn pumped a stream flow (for reports: quiet flows are not pumped).
    flow_pumps: u64,
}

impl Driver {
    fn now(&self) -> Instant {
        Instant::from_micros(self.clock.elapsed().as_micros() as u64)
    }

    /// The loop before a wait: a turn, then how long the wait may be. `None`: the
    /// loop ends.
    fn before_wait(&mut self) -> Option<Option<Duration>> {
        // After a hand-over, a keeper process owns the flows: this thread must not
        // touch them again, not even for a turn.
        if self.stopped {
            return None;
        }
        let now = self.now();
        self.turn(now);
        if self.stopped || self.exit_done(now) {
            return None;
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
        self.asleep_until = timeout.map(|t| self.now() + t);
        Some(timeout)
    }

    /// What epoll said, after a wait.
    fn after_wait(&mut self, events: &[epoll::Event]) {
        let now = self.now();
        for ev in events {
            if self.stopped {
                return;
            }
            let (token, flags) = (ev.data.u64(), ev.flags);
            self.on_ready(now, token, flags);
        }
    }

    /// What epoll said of the socket behind `token`.
    fn on_ready(&mut self, now: Instant, token: u64, flags: epoll::EventFlags) {
        use epoll::EventFlags as F;
        match token & !TOKEN_MASK {
            TOKEN_WAKER if token == TOKEN_WAKER => self.take_commands(now),
            TOKEN_SHIM => {
                let link = LinkId((token & TOKEN_MASK) as usize);
                if flags.contains(F::ERR) {
                    self.link_error(link);
                }
                self.receive_link(now, link);
            }
            TOKEN_MGMT => self.serve_mgmt(),
            TOKEN_HOST => self.serve_host(now, token),
            TOKEN_EARLY => self.early_readable(token),
            TOKEN_DIAL => self.dialed(now, token),
            TOKEN_TUNNEL => self.tunnel_readable(),
            TOKEN_TIMER => self.timer_fired(),
            TOKEN_DATAGRAM => {
                if let Some(f) = self.datagrams.get_mut(&token) {
                    self.active_datagrams.insert(token);
                    f.readable |= flags.intersects(F::IN | F::ERR);
                    f.writable |= flags.intersects(F::OUT | F::ERR);
                }
            }
            TOKEN_FLOW => {
                if let Some(f) = self.flows.get_mut(&token) {
                    self.active.insert(token);
                    f.readable |= flags.intersects(F::IN | F::RDHUP | F::HUP | F::ERR);
                    f.writable |= flags.intersects(F::OUT | F::HUP | F::ERR);
                }
            }
            _ => {}
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
        t = rina_core::time::earliest(t, self.parked_deadline());
        t = rina_core::time::earliest(t, self.dial_deadline());
        if let Some((deadline, _)) = &self.exiting {
            t = rina_core::time::earliest(t, Some(*deadline));
        }
        t = rina_core::time::earliest(t, self.trust_deadline());
        rina_core::time::earliest(t, self.keeper_deadline())
    }

    /// Timers, then work until nothing moves (bounded, so commands and I/O get turns).
    fn turn(&mut self, now: Instant) {
        self.stack.node.handle_timeout(now);
        self.check_trust(now);
        self.expire_listens(now);
        self.restore_host(now);
        self.retry_waiting(now);
        self.expire_dials(now);
        self.start_parked(now);
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
        self.prune_hints();
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
                Command::Tunnel(req, reply) => self.start_tunnel(now, req, reply),
                Command::PduPayload(dif, reply) => reply.send(
                    self.stack
                        .dif_of(dif)
                        .map(|d| self.stack.node.dif(d).pdu_payload()),
                ),
                // Children may hold flows' sockets: they are served by a keeper.
                Command::Exit(linger, reply) if self.has_streams() && keeper::has_children() => {
                    self.hand_over(now, linger, reply);
                }
                Command::Exit(linger, reply) => {
                    for f in self.flows.values_mut() {
                        f.readable = true;
                    }
                    self.hurry_parked();
                    self.exiting = Some((now + linger, reply));
                }
                Command::HandOver(linger, reply) => self.hand_over(now, linger, reply),
            }
        }
    }
}

/// The runtime thread's loop: a turn, then a wait for events, until the process no
/// longer needs it. The stack is locked except while the thread waits (so that an
/// application thread may send on a flow itself meanwhile: `inline.rs`).
fn run(stack: &Mutex<Driver>) {
    let mut events = Vec::with_capacity(256);
    let mut d = stack.lock();
    loop {
        let Some(timeout) = d.before_wait() else {
            return;
        };
        let budget = d.spin.budget();
        events.clear();
        let epoll = d.epoll.as_raw_fd();
        let waited = MutexGuard::unlocked(&mut d, || {
            // SAFETY: the epoll set is the driver's, which the thread's `Arc` keeps
            // alive, and it is never replaced or closed while the loop runs.
            let epoll = unsafe { BorrowedFd::borrow_raw(epoll) };
            wait(epoll, &mut events, timeout, budget)
        });
        match waited {
            Ok(w) => d.spin.record(w),
            Err(e) => {
                tracing::error!("epoll_wait failed: {e}; the runtime stops");
                return;
            }
        }
        d.after_wait(&events);
    }
}

/// Waits for events up to `timeout` (`None`: until one comes): first spinning for
/// `budget`, unless the wait is shorter, then sleeping.
fn wait(
    epoll: BorrowedFd<'_>,
    events: &mut Vec<epoll::Event>,
    mut timeout: Option<Duration>,
    budget: Duration,
) -> rustix::io::Result<spin::Waited> {
    if !budget.is_zero() && timeout.is_none_or(|t| t > budget) {
        let start = std::time::Instant::now();
        loop {
            epoll_wait(epoll, events, Some(Duration::ZERO))?;
            if !events.is_empty() {
                return Ok(spin::Waited::Caught);
            }
            if start.elapsed() >= budget {
                break;
            }
            std::thread::yield_now();
        }
        timeout = timeout.map(|t| t.saturating_sub(start.elapsed()));
        let start = std::time::Instant::now();
        epoll_wait(epoll, events, timeout)?;
        return Ok(spin::Waited::MissedThenSlept(slept(events, timeout, start)));
    }
    let start = std::time::Instant::now();
    epoll_wait(epoll, events, timeout)?;
    Ok(spin::Waited::Slept(slept(events, timeout, start)))
}

/// How long a wait that an event ended lasted (`None`: its time-out ended it, or it
/// was a poll).
fn slept(
    events: &[epoll::Event],
    timeout: Option<Duration>,
    start: std::time::Instant,
) -> Option<Duration> {
    (!events.is_empty() && !timeout.is_some_and(|t| t.is_zero())).then(|| start.elapsed())
}

/// `d` as a `Timespec` (one past `i64::MAX` seconds saturates there).
pub(crate) fn timespec(d: Duration) -> rustix::time::Timespec {
    rustix::time::Timespec::try_from(d).unwrap_or(rustix::time::Timespec {
        tv_sec: i64::MAX,
        tv_nsec: 0,
    })
}

/// `epoll_wait` for at most `timeout` (`None`: no limit); an interrupted wait is an
/// empty one.
fn epoll_wait(
    epoll: BorrowedFd<'_>,
    events: &mut Vec<epoll::Event>,
    timeout: Option<Duration>,
) -> rustix::io::Result<()> {
    let ts = timeout.map(timespec);
    match epoll::wait(epoll, spare(events), ts.as_ref()) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e),
    }
}

/// An epoll event buffer with spare capacity.
fn spare(v: &mut Vec<epoll::Event>) -> rustix::buffer::SpareCapacity<'_, epoll::Event> {
    rustix::buffer::spare_capacity(v)
}
