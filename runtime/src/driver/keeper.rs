//! The keeper: the stack outliving the process that made it, for as long as other
//! processes hold its flows' sockets.
//!
//! The stack lives in the process (D3), but a flow's socket can be held by other
//! processes: `ncat -e` forks a child that execs the command with the socket on its
//! stdin and stdout, then exits; `busybox nc -l -e` execs in place; a daemon forks and
//! lets its parent exit. When such a process exits (with live children) or execs, the
//! runtime thread forks a **keeper**: a process holding only the runtime's own fds,
//! running the same event loop. The original process goes on exiting or exec'ing at
//! once. The keeper serves every stream flow until the other side of its socket is
//! closed by every holder (a real end of stream, not a guess), delivers what was
//! written (bounded by `linger`), withdraws a name once no process holds its listener,
//! says goodbye to its neighbours and exits.
//!
//! Datagram flows are released at hand-over: the keeper cannot tell when a UDP socket
//! held elsewhere is closed.

use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use rina_core::node::DifId;
use rina_core::Instant;
use rustix::event::epoll;

use super::{Driver, Shared, TOKEN_FLOW};
use crate::api::{FlowError, FlowKind, ListenTarget, Reply};

/// How often the keeper looks for listeners nobody holds any more.
const LISTENER_CHECK: Duration = Duration::from_millis(250);

/// The keeper's state.
#[derive(Debug)]
pub(super) struct Keeper {
    linger: Duration,
    /// When to look at the listeners again.
    next_check: Instant,
    /// Set once every flow's application side is closed: when to stop waiting for the
    /// peers' acknowledgements.
    drain_deadline: Option<Instant>,
}

/// True if this process has child processes (which may hold flows' sockets).
pub(super) fn has_children() -> bool {
    use rustix::process::{waitid, WaitId, WaitIdOptions};
    let opts = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    !matches!(waitid(WaitId::All, opts), Err(rustix::io::Errno::CHILD))
}

impl Driver {
    /// Something a keeper would serve: a stream flow or a stream listener.
    pub(super) fn has_streams(&self) -> bool {
        !self.flows.is_empty() || self.listeners.keys().any(|k| k.2 == FlowKind::Stream)
    }

    /// Hands the stack over to a keeper process (see the module docs), or, when there
    /// is nothing to keep, leaves the DIFs. `reply` is answered in this process once
    /// it may exit or exec; this runtime thread then stops.
    pub(super) fn hand_over(&mut self, now: Instant, linger: Duration, reply: Reply<()>) {
        self.release_datagrams(now);
        self.refuse_waiting(now);
        self.fail_early(now);
        for (_, p) in std::mem::take(&mut self.pending_connects) {
            p.reply
                .send(Err(FlowError::RuntimeDown("the process is exiting".into())));
        }
        for l in std::mem::take(&mut self.pending_listens) {
            l.reply
                .send(Err(FlowError::RuntimeDown("the process is exiting".into())));
        }
        let _ = self.flush(now);
        if !self.has_streams() {
            self.leave(now);
            reply.send(());
            self.stopped = true;
            return;
        }
        // The parent stops posting: a late command fails at once instead of waiting.
        self.shared
            .alive
            .store(false, std::sync::atomic::Ordering::Release);
        match fork_keeper() {
            -1 => {
                self.shared
                    .alive
                    .store(true, std::sync::atomic::Ordering::Release);
                tracing::warn!(
                    "cannot fork a keeper: {}; draining here",
                    std::io::Error::last_os_error()
                );
                for f in self.flows.values_mut() {
                    f.readable = true;
                }
                self.exiting = Some((now + linger, reply));
            }
            0 => {
                tracing::info!("keeper process {} serves the flows", std::process::id());
                self.become_keeper(now, linger);
            }
            _ => {
                tracing::info!("flows handed to a keeper process");
                reply.send(());
                self.stopped = true;
            }
        }
    }

    /// In the forked child: keep only the runtime's fds, detach, and go on serving.
    fn become_keeper(&mut self, now: Instant, linger: Duration) {
        let _ = rustix::process::setsid();
        own_signals();
        let mut keep: BTreeSet<RawFd> = self.flows.values().map(|f| f.sock.as_raw_fd()).collect();
        keep.extend(self.stack.links.iter().map(|l| l.fd().as_raw_fd()));
        keep.extend(crate::log::file_fd());
        close_all_but(&keep);
        // The command queue and waker belong to the exiting process (its threads may
        // still post to them, and a lock in the copied queue may be held by a thread
        // that does not exist here): the keeper gets its own, and forgets the old ones
        // without touching them (their fd was closed above).
        let Ok(fresh) = Shared::new() else {
            // SAFETY: leaving the keeper without the application's exit handlers.
            unsafe { libc::_exit(1) };
        };
        std::mem::forget(std::mem::replace(&mut self.shared, fresh));
        // The inline sends' timer was the exiting process's too (closed above): a
        // keeper has no application threads, so it needs none.
        std::mem::forget(self.timer.take());
        // The management socket was the exiting process's: the keeper has its own.
        std::mem::forget(self.mgmt.take());
        self.mgmt = super::mgmt::listener(std::process::id()).ok();
        // A fresh epoll instance, not shared with the exiting process.
        let Ok(ep) = super::new_epoll(&self.shared, self.mgmt.as_ref(), &self.stack) else {
            // SAFETY: leaving the keeper without running the application's exit
            // handlers; the flows end as if the process had been killed.
            unsafe { libc::_exit(1) };
        };
        for (&token, f) in &mut self.flows {
            debug_assert_eq!(token & !super::TOKEN_MASK, TOKEN_FLOW);
            let data = epoll::EventData::new_u64(token);
            let _ = epoll::add(&ep, &f.sock, data, super::FLOW_EVENTS);
            f.readable = true;
            f.writable = true;
            f.watching_room = false;
        }
        // Every flow is pumped on the keeper's first turn (not only those the fresh
        // epoll set reports).
        self.active.extend(self.flows.keys().copied());
        self.active_datagrams.extend(self.datagrams.keys().copied());
        // The old epoll fd was closed with everything else; forget it without closing
        // it again.
        std::mem::forget(std::mem::replace(&mut self.epoll, ep));
        self.keeper = Some(Keeper {
            linger,
            next_check: now,
            drain_deadline: None,
        });
    }

    /// In a keeper: withdraws names nobody listens for any more; true when nothing
    /// is left to serve (or the last deliveries ran out of time).
    pub(super) fn keeper_done(&mut self, now: Instant) -> bool {
        let Some(k) = &mut self.keeper else {
            return false;
        };
        if now >= k.next_check {
            k.next_check = now + LISTENER_CHECK;
            let live = live_listeners();
            let gone: Vec<_> = self
                .listeners
                .iter()
                .filter(|(_, t)| matches!(t, ListenTarget::Stream(n, _) if !live.contains(n)))
                .map(|(key, _)| key.clone())
                .collect();
            for key in gone {
                tracing::info!(
                    "{}: no process holds its listener any more; the name is withdrawn",
                    key.1
                );
                self.unlisten(now, &key);
            }
        }
        if self.listeners.is_empty() && self.flows.values().all(|f| f.app_eof || f.reset) {
            let Some(k) = &mut self.keeper else {
                return false;
            };
            let deadline = *k.drain_deadline.get_or_insert(now + k.linger);
            let delivered = self
                .flows
                .values()
                .all(|f| f.is_drained(self.stack.node.dif(f.dif).ipcp()));
            return delivered || now >= deadline;
        }
        false
    }

    /// The keeper's next timer.
    pub(super) fn keeper_deadline(&self) -> Option<Instant> {
        let k = self.keeper.as_ref()?;
        rina_core::time::earliest(Some(k.next_check), k.drain_deadline)
    }

    /// Says goodbye to every neighbour (best effort) and sends it: top DIF first, each
    /// goodbye sent before the DIF below says its own (after which the flows that
    /// would carry the goodbyes above are gone at the neighbours).
    pub(super) fn leave(&mut self, now: Instant) {
        let difs: Vec<DifId> = self.stack.node.difs().map(|(id, _)| id).collect();
        for &d in difs.iter().rev() {
            self.stack.node.leave(now, d);
            let _ = self.flush(now);
        }
    }

    /// Deallocates every datagram flow and withdraws every datagram registration.
    fn release_datagrams(&mut self, now: Instant) {
        let apps: BTreeSet<std::net::SocketAddr> = self
            .datagrams
            .values()
            .map(|f| f.app)
            .chain(self.listeners.values().filter_map(|t| match t {
                ListenTarget::Datagram(a) => Some(*a),
                ListenTarget::Stream(..) | ListenTarget::Forward { .. } | ListenTarget::Tunnel => {
                    None
                }
            }))
            .collect();
        for app in apps {
            self.release_datagram(now, app);
        }
    }
}

/// Forks the keeper twice over, so that it is nobody's child (a program that execs
/// or waits for its children must not find it): returns 0 in the keeper, its pid (of
/// the intermediate process, already reaped) in this process, -1 on failure.
fn fork_keeper() -> libc::pid_t {
    // SAFETY: fork from the runtime thread. The child runs only this thread's code on
    // the runtime's own state, leaves with _exit, and never returns into the
    // application's code; locks the interposer holds are released by its atfork
    // handlers, malloc's by glibc's.
    match unsafe { libc::fork() } {
        -1 => -1,
        0 => {
            // SAFETY: as above, once more; the intermediate process leaves at once.
            match unsafe { libc::fork() } {
                0 => 0,
                // SAFETY: ending the intermediate process without exit handlers.
                _ => unsafe { libc::_exit(0) },
            }
        }
        pid => {
            let mut status = 0;
            // SAFETY: reaping our own child; a handler of the application's that reaped
            // it first only makes this return ECHILD.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            pid
        }
    }
}

/// The keeper's signals: the program's handlers (copied by fork, code of a program
/// that is not running here) are reset to the default actions, and SIGTERM and SIGINT
/// are unblocked, so that the keeper can be stopped like any daemon; every other
/// signal stays blocked, as in the runtime thread it was forked from.
fn own_signals() {
    for sig in 1..libc::SIGRTMAX() {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: resetting a disposition to the default; invalid numbers fail.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
    // SAFETY: sigset_t is plain data initialised by sigemptyset; the mask call reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

/// Closes every fd of this process but `keep`, and puts /dev/null on 0, 1 and 2 (so
/// that nothing the application left behind is held open, pipes to a parent shell
/// or test harness included).
fn close_all_but(keep: &BTreeSet<RawFd>) {
    let fds: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => (0..1024).collect(),
    };
    for fd in fds {
        if !keep.contains(&fd) {
            // SAFETY: closing fds of this (forked) process that the runtime does not
            // own; nothing in the keeper uses them.
            unsafe { libc::close(fd) };
        }
    }
    // SAFETY: opening /dev/null; the lowest free fds are 0, 1 and 2 if they were closed.
    unsafe {
        for fd in 0..3 {
            if !keep.contains(&fd) {
                let n = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
                if n >= 0 && n != fd {
                    libc::dup2(n, fd);
                    libc::close(n);
                }
            }
        }
    }
}

/// The abstract names of the AF_UNIX sockets listening on this host.
pub(super) fn live_listeners() -> BTreeSet<Vec<u8>> {
    let Ok(t) = std::fs::read_to_string("/proc/net/unix") else {
        return BTreeSet::new();
    };
    t.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Num RefCount Protocol Flags Type St Inode Path; flag 00010000: listening.
            let (flags, path) = (f.get(3)?, f.get(7)?);
            (flags.ends_with("10000") && path.starts_with('@'))
                .then(|| path.as_bytes()[1..].to_vec())
        })
        .collect()
}
