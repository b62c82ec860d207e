//! The process's rules and runtime.
//!
//! The rules are loaded once, from the library constructor ([`load_rules`]); a bad
//! rules file stops the program with the error (file:line:col), before it does
//! anything (D4). The runtime is started lazily by the first call a rule matches
//! ([`runtime()`]), never in the constructor; a fork child that makes RINA calls starts
//! its own. At exit the runtime drains what the application wrote. A runtime that
//! cannot start says why on stderr, once per process.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use once_cell::sync::OnceCell;
use parking_lot::Mutex;
use runtime::config::{self, Config};
use runtime::{FlowError, Handle};

use crate::sys;

static RULES: OnceCell<Arc<Config>> = OnceCell::new();
static ACTIVE: AtomicBool = AtomicBool::new(false);
static RUNTIME: Mutex<Option<Handle>> = Mutex::new(None);
/// The process whose runtime `RUNTIME` holds (0: none yet).
static RUNTIME_PID: AtomicU32 = AtomicU32::new(0);
static ATEXIT: std::sync::Once = std::sync::Once::new();
/// The process that last said why its stack cannot be had (see `say_once`).
static SAID: AtomicU32 = AtomicU32::new(0);

/// True if this process has rules (otherwise every call passes to libc).
#[inline]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Acquire)
}

/// The rules, if any.
pub fn rules() -> Option<&'static Arc<Config>> {
    RULES.get()
}

/// The program's short name (argv\[0\]'s basename), for per-program rules.
pub fn program_name() -> String {
    sys::program_short_name().map_or_else(|| "program".into(), |n| n.to_string_lossy().into_owned())
}

/// Finds and loads the rules; exits the process on an invalid file.
pub fn load_rules() {
    if RULES.get().is_some() {
        return;
    }
    let program = program_name();
    let Some(path) = config::locate(&program, &|k| std::env::var(k).ok()) else {
        return;
    };
    match config::load(&path) {
        Ok(c) => {
            // Raw Ethernet needs CAP_NET_RAW: without it the program stops here, with
            // the reason and how to grant it, rather than fail at its first call.
            if let Some(why) = c.missing_net_raw() {
                stop(&format!(
                    "rina: {}: {why}\nrina: {program} stopped: nothing was sent\n",
                    path.display()
                ));
            }
            let _ = RULES.set(Arc::new(c));
            ACTIVE.store(true, Ordering::Release);
        }
        Err(e) => stop(&format!(
            "rina: {e}\nrina: {program} stopped: the rules are invalid, nothing was sent\n"
        )),
    }
}

/// Writes `msg` to stderr and ends the program (fail closed).
fn stop(msg: &str) -> ! {
    sys::stderr(msg);
    sys::exit_now(1)
}

/// The runtime of this process, started on first use.
///
/// # Errors
/// [`FlowError::RuntimeDown`] if it cannot start (no rules, a shim cannot bind).
pub fn runtime() -> Result<Handle, FlowError> {
    let Some(rules) = rules() else {
        return Err(FlowError::RuntimeDown("no rules".into()));
    };
    let mut slot = RUNTIME.lock();
    let pid = std::process::id();
    // A runtime that stopped (its flows went to a keeper before an exec that failed)
    // is replaced; the new one joins through the keeper, which holds the endpoints.
    if let Some(h) = slot.as_ref().filter(|h| h.pid() == pid && h.is_running()) {
        return Ok(h.clone());
    }
    let h = Handle::start(rules.clone(), &program_name()).inspect_err(say_once)?;
    // Said again if the stack (a host member) goes away later.
    SAID.store(0, Ordering::Release);
    *slot = Some(h.clone());
    RUNTIME_PID.store(pid, Ordering::Release);
    ATEXIT.call_once(|| sys::at_exit(at_exit));
    Ok(h)
}

/// Says on stderr, once per process, why the stack cannot start (the calls the rules
/// send to RINA fail with [`FlowError::errno`], `ENETDOWN`, each time): the program,
/// the DIF, the endpoint and the reason.
fn say_once(e: &FlowError) {
    let pid = std::process::id();
    if SAID.swap(pid, Ordering::AcqRel) == pid {
        return;
    }
    let why = match e {
        FlowError::RuntimeDown(why) => why.clone(),
        other => other.to_string(),
    };
    let program = program_name();
    let errno = if e.errno() == libc::ENETDOWN {
        " (ENETDOWN)"
    } else {
        ""
    };
    let what = if served_by_host() {
        "cannot reach the host member"
    } else {
        "cannot start the RINA stack"
    };
    let msg = format!(
        "rina: {program}: {what}: {why}\n\
         rina: {program}: the calls its rules send to RINA fail{errno}; nothing goes over TCP/IP\n"
    );
    sys::stderr(&msg);
}

/// True if this process started a runtime (not a fork or vfork child of one), without
/// taking a lock.
pub fn owns_runtime() -> bool {
    let pid = RUNTIME_PID.load(Ordering::Acquire);
    pid != 0 && pid == std::process::id()
}

/// The runtime of this process if it runs (never starts one).
pub fn running_runtime() -> Option<Handle> {
    runtime_of(std::process::id())
}

/// The runtime of process `pid` (this one, the caller says) if it runs.
pub fn runtime_of(pid: u32) -> Option<Handle> {
    RUNTIME.lock().clone().filter(|h| h.pid() == pid)
}

/// The runtime to tell that a socket of ours was closed: this process's own, or a
/// session with the host member that serves the program (opened if need be: the
/// socket may have come by exec or fork).
pub fn runtime_to_tell() -> Option<Handle> {
    if let Some(h) = running_runtime() {
        return Some(h);
    }
    served_by_host().then(runtime).and_then(Result::ok)
}

/// True if the rules say the host member serves this program (`stack = "host"`).
fn served_by_host() -> bool {
    rules().is_some_and(|r| matches!(r.settings.stack, config::StackMode::Host(_)))
}

/// Reads the results of nonblocking connects the host member sent; true if the host
/// member serves this process (a stack of its own reports them itself: nothing to do).
pub fn settle() -> bool {
    if !served_by_host() {
        return false;
    }
    if let Some(h) = running_runtime() {
        h.settle();
    }
    true
}

/// Holds this module's lock across `fork` (see [`crate::hold_across_fork`]).
pub fn register_atfork() {
    crate::hold_across_fork!(RUNTIME);
}

extern "C" fn at_exit() {
    let _ = std::panic::catch_unwind(|| {
        let h = RUNTIME.lock().clone();
        if let Some(h) = h.filter(|h| h.pid() == std::process::id()) {
            h.exit();
        }
    });
}
