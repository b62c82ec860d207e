//! Starting the runtime thread: the state it shares with application threads (the
//! command queue and its waker), the stack built from the rules, the epoll set, and
//! the thread itself, which starts with every signal blocked.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rina_core::Instant;
use rustix::event::{epoll, eventfd, EventfdFlags};

use super::{mgmt, Driver, TOKEN_MGMT, TOKEN_SHIM, TOKEN_WAKER};
use crate::api::{Command, FlowError};
use crate::config::Config;
use crate::stack::{BuildError, Stack};

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
    pub(super) commands: Mutex<VecDeque<Command>>,
    pub(super) waker: OwnedFd,
    pub(super) alive: AtomicBool,
    /// The destinations a connect may reach early (`early.rs`).
    pub(super) hints: Mutex<super::early::Hints>,
    /// The stack, for application threads that send on a flow themselves
    /// (`inline.rs`); set only when that is on.
    pub(super) stack: std::sync::OnceLock<std::sync::Weak<Mutex<Driver>>>,
}

impl Shared {
    /// A fresh command queue and waker.
    pub(super) fn new() -> rustix::io::Result<Arc<Self>> {
        let waker =
            shims::high_fd::move_high(eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?);
        Ok(Arc::new(Self {
            commands: Mutex::new(VecDeque::new()),
            waker,
            alive: AtomicBool::new(true),
            hints: Mutex::new(super::early::Hints::default()),
            stack: std::sync::OnceLock::new(),
        }))
    }

    /// True if a connect to `app` in `dif` may be early (see `early.rs`).
    pub(crate) fn knows(
        &self,
        dif: crate::config::DifIndex,
        app: &rina_core::ApplicationName,
    ) -> bool {
        self.hints.lock().knows(dif, app)
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
        self.wake();
        true
    }

    /// Wakes the runtime thread (it then takes a turn).
    pub(super) fn wake(&self) {
        let _ = rustix::io::write(&self.waker, &1u64.to_ne_bytes());
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
    let stack = build_stack(&config, program, seed, node)?;
    // The management socket: a stack that cannot serve one still runs.
    let mgmt = mgmt::listener(std::process::id())
        .inspect_err(|e| tracing::warn!("no management socket: {e}"))
        .ok();
    let epoll = new_epoll(&shared, mgmt.as_ref(), &stack).map_err(|e| down("epoll", e))?;
    let host = host_service(&config, node, &epoll)?;
    // Without a timer fd, inline sends stay off (a deadline they set could not reach
    // the sleeping thread); the stack runs as before.
    let timer = (super::inline::enabled() || super::inline_recv::enabled())
        .then(|| timer(&epoll))
        .and_then(|t| {
            t.inspect_err(|e| tracing::warn!("no timer fd ({e}): inline sends off"))
                .ok()
        });
    let driver = Driver {
        shared: shared.clone(),
        program: program.to_owned(),
        mgmt,
        epoll,
        clock,
        stack,
        flows: BTreeMap::new(),
        active: BTreeSet::new(),
        active_datagrams: BTreeSet::new(),
        datagrams: BTreeMap::new(),
        by_port: BTreeMap::new(),
        next_flow: 1,
        pending_connects: BTreeMap::new(),
        parked: BTreeMap::new(),
        directory_changes: Vec::new(),
        pending_listens: Vec::new(),
        listeners: BTreeMap::new(),
        waiting: Vec::new(),
        dialing: BTreeMap::new(),
        tunnel: None,
        exiting: None,
        stopped: false,
        keeper: None,
        rx: Default::default(),
        tx: Vec::with_capacity(65536),
        transmits: Default::default(),
        io: vec![0u8; 65536],
        busy: false,
        missed_wakeups: 0,
        strict: std::env::var_os("RINA_STRICT").is_some_and(|v| v != "0"),
        spin: super::spin::Spin::from_env(),
        node,
        said: BTreeSet::new(),
        next_trust_check: Instant::ZERO,
        host,
        asleep_until: None,
        timer,
        inline_sends: 0,
        inline_timer_wakes: 0,
        inline_receives: 0,
        flow_pumps: 0,
    };
    let driver = Arc::new(Mutex::new(driver));
    if driver.lock().timer.is_some() {
        let _ = shared.stack.set(Arc::downgrade(&driver));
    }
    // The thread starts with every signal blocked (it inherits this thread's mask): the
    // program's signals are the program's, whichever thread it leaves them to (D3).
    let spawned = with_signals_blocked(|| {
        std::thread::Builder::new()
            .name("rina-runtime".into())
            .spawn(move || {
                RUNTIME_THREAD.with(|t| t.set(true));
                super::run(&driver);
                driver.lock().shared.alive.store(false, Ordering::Release);
            })
    });
    spawned.map_err(|e| FlowError::RuntimeDown(format!("cannot start the runtime thread: {e}")))?;
    Ok(shared)
}

/// The stack the rules describe, as one more member of a DIF whose endpoints another
/// process holds if need be.
fn build_stack(config: &Config, program: &str, seed: u64, node: bool) -> Result<Stack, FlowError> {
    match Stack::build(config, program, Instant::ZERO, seed, node) {
        Ok(s) => Ok(s),
        // Another process with these rules holds the endpoints (a fork child's parent,
        // a second server of a pool): join as one more member, through it.
        Err(BuildError::EndpointInUse(e)) => {
            tracing::info!("{e}; joining through the member that holds it");
            let pid = std::process::id();
            let child =
                config
                    .for_fork_child(pid)
                    .with_fresh_member_names(program, pid, seed as u16);
            Ok(Stack::build(&child, program, Instant::ZERO, seed, node)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// A host member's service to the programs of its host, watched by `epoll` (none for
/// a process that is not a host member).
fn host_service(
    config: &Config,
    node: bool,
    epoll: &OwnedFd,
) -> Result<Option<super::host::Service>, FlowError> {
    let Some(rules) = config.host.as_ref().filter(|_| node) else {
        return Ok(None);
    };
    let service = super::host::open(rules, config)?;
    epoll::add(
        epoll,
        service.listener(),
        epoll::EventData::new_u64(super::TOKEN_HOST),
        epoll::EventFlags::IN,
    )
    .map_err(|e| FlowError::RuntimeDown(format!("epoll: {e}")))?;
    Ok(Some(service))
}

/// A timer fd in `epoll` (see `inline.rs`).
fn timer(epoll: &OwnedFd) -> rustix::io::Result<OwnedFd> {
    use rustix::time::{TimerfdClockId, TimerfdFlags};
    let t = rustix::time::timerfd_create(
        TimerfdClockId::Monotonic,
        TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
    )?;
    let t = shims::high_fd::move_high(t);
    epoll::add(
        epoll,
        &t,
        epoll::EventData::new_u64(super::TOKEN_TIMER),
        epoll::EventFlags::IN,
    )?;
    Ok(t)
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
pub(super) fn new_epoll(
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
