//! Early connects: a stream connect that returns before its flow is up, so that the
//! program's first bytes ride on the flow request (as TCP Fast Open's ride on its SYN)
//! and a request/answer over a new flow costs one round trip, not two.
//!
//! The interposer asks for one only when [`Hints`] says the destination is known: a
//! flow to it was made before in this process, and the directory still lists it. Then
//! `connect` installs the application's end at once and returns 0; the runtime peeks
//! at what the program wrote meanwhile (waiting up to [`GRACE`] for a client that
//! speaks first), sends the request with as much of it as fits one PDU, and reads
//! those bytes off the socket only once the flow is up. If the flow is refused after
//! all (the destination left between two connects), the application's end is reset:
//! its next read or write fails with ECONNRESET, as a TCP connection reset by its
//! peer, and `SO_ERROR` says why.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rina_core::node::DifId;
use rina_core::{ApplicationName, Instant};
use rustix::event::epoll;
use rustix::net::{self, RecvFlags, SendFlags};

use super::sessions::PendingConnect;
use super::{Driver, TOKEN_EARLY, TOKEN_MASK};
use crate::api::{AppEnd, ConnectRequest, FlowError, FlowInfo, Reply};
use crate::config::DifIndex;

/// How long an early connect waits for the program's first bytes before its request
/// goes without them (a program that waits for its server to speak first pays it once:
/// then [`Hints`] remembers not to wait for that destination).
pub(super) const GRACE: Duration = Duration::from_millis(1);

/// The most destinations remembered; a program that reaches more starts over.
const MAX_HINTS: usize = 256;

/// What this process knows of the destinations it reached: shared with application
/// threads, which ask it in `connect` without waking the runtime thread.
#[derive(Debug, Default)]
pub(crate) struct Hints {
    /// (DIF, destination) -> the program spoke first on the last early connect to it.
    known: BTreeMap<(DifIndex, ApplicationName), bool>,
}

impl Hints {
    /// True if a connect to `app` in `dif` may return before its flow is up.
    pub(crate) fn knows(&self, dif: DifIndex, app: &ApplicationName) -> bool {
        // Cloning a name is what a lookup by a borrowed pair costs; connect is rare
        // next to the data it carries.
        self.known.contains_key(&(dif, app.clone()))
    }

    fn speaks_first(&self, dif: DifIndex, app: &ApplicationName) -> bool {
        self.known.get(&(dif, app.clone())).copied().unwrap_or(true)
    }

    fn learn(&mut self, dif: DifIndex, app: &ApplicationName, speaks_first: bool) {
        if self.known.len() >= MAX_HINTS && !self.knows(dif, app) {
            self.known.clear();
        }
        self.known.insert((dif, app.clone()), speaks_first);
    }

    fn forget(&mut self, dif: DifIndex, app: &ApplicationName) {
        self.known.remove(&(dif, app.clone()));
    }
}

/// An early connect waiting for the program's first bytes.
pub(super) struct Parked {
    req: ConnectRequest,
    reply: Reply<Result<FlowInfo, FlowError>>,
    deadline: Instant,
    readable: bool,
}

impl Driver {
    /// An early connect (its end is [`AppEnd::StreamEarly`]): its request goes now if
    /// the program wrote already or is known not to speak first, else once it writes
    /// or the grace is over.
    pub(super) fn connect_early(
        &mut self,
        now: Instant,
        req: ConnectRequest,
        reply: Reply<Result<FlowInfo, FlowError>>,
    ) {
        let AppEnd::StreamEarly(sock, _) = &req.end else {
            return self.start_connect(now, req, reply, &[]);
        };
        let wait = self
            .shared
            .hints
            .lock()
            .speaks_first(req.dif, &req.remote_app)
            && !has_data(sock);
        let token = TOKEN_EARLY | (self.next_flow & TOKEN_MASK);
        let watched = wait
            && epoll::add(
                &self.epoll,
                sock,
                epoll::EventData::new_u64(token),
                epoll::EventFlags::IN | epoll::EventFlags::RDHUP | epoll::EventFlags::ET,
            )
            .is_ok();
        if !watched {
            return self.send_early(now, req, reply);
        }
        self.next_flow += 1;
        let parked = Parked {
            req,
            reply,
            deadline: now + GRACE,
            readable: false,
        };
        self.parked.insert(token, parked);
    }

    /// The socket of a parked connect has something to read.
    pub(super) fn early_readable(&mut self, token: u64) {
        if let Some(p) = self.parked.get_mut(&token) {
            p.readable = true;
        }
    }

    /// Sends the requests of the parked connects whose program wrote or whose grace
    /// is over.
    pub(super) fn start_parked(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .parked
            .iter()
            .filter(|(_, p)| p.readable || p.deadline <= now)
            .map(|(&t, _)| t)
            .collect();
        for token in due {
            let Some(p) = self.parked.remove(&token) else {
                continue;
            };
            if let AppEnd::StreamEarly(sock, _) = &p.req.end {
                let _ = epoll::delete(&self.epoll, sock);
            }
            self.send_early(now, p.req, p.reply);
        }
    }

    /// True while an early connect is parked or waits for its flow: the program
    /// believes what it wrote is on its way, so an exit waits for it (bounded by the
    /// linger).
    pub(super) fn early_pending(&self) -> bool {
        !self.parked.is_empty() || self.pending_connects.values().any(PendingConnect::is_early)
    }

    /// Fails every parked or pending early connect (the stack is handed over to a
    /// keeper, which cannot take them): the program's ends are reset, the flows
    /// asked for released.
    pub(super) fn fail_early(&mut self, now: Instant) {
        for (_, p) in std::mem::take(&mut self.parked) {
            if let AppEnd::StreamEarly(sock, _) = &p.req.end {
                let _ = epoll::delete(&self.epoll, sock);
            }
            p.reply
                .send(Err(FlowError::RuntimeDown("the process is exiting".into())));
            dispose(p.req.end);
        }
        let early: Vec<_> = self
            .pending_connects
            .iter()
            .filter(|(_, p)| p.is_early())
            .map(|(&k, _)| k)
            .collect();
        for (dif, port) in early {
            if let Some(p) = self.pending_connects.remove(&(dif, port)) {
                self.stack.node.ipcp_mut(dif).deallocate(now, port);
                p.reply
                    .send(Err(FlowError::RuntimeDown("the process is exiting".into())));
                dispose(p.end);
            }
        }
    }

    /// Sends the parked connects' requests on the next turn (the program exits: it
    /// writes nothing more).
    pub(super) fn hurry_parked(&mut self) {
        for p in self.parked.values_mut() {
            p.readable = true;
        }
    }

    /// The earliest grace deadline of the parked connects.
    pub(super) fn parked_deadline(&self) -> Option<Instant> {
        self.parked.values().map(|p| p.deadline).min()
    }

    /// Sends an early connect's request with what the program wrote so far (peeked:
    /// it stays on the socket until the flow is up), and learns whether it spoke first.
    fn send_early(
        &mut self,
        now: Instant,
        req: ConnectRequest,
        reply: Reply<Result<FlowInfo, FlowError>>,
    ) {
        let mut buf = std::mem::take(&mut self.io);
        let n = match &req.end {
            AppEnd::StreamEarly(sock, _) => peek(sock, &mut buf),
            _ => 0,
        };
        self.shared
            .hints
            .lock()
            .learn(req.dif, &req.remote_app, n > 0);
        self.start_connect(now, req, reply, &buf[..n]);
        self.io = buf;
    }

    /// Remembers that a stream flow to `app` in `dif` was made (a later connect to it
    /// may be early).
    pub(super) fn reached(&self, dif: DifIndex, app: &ApplicationName) {
        let mut hints = self.shared.hints.lock();
        if !hints.knows(dif, app) {
            hints.learn(dif, app, true);
        }
    }

    /// Forgets `app` in `dif` (a flow to it was refused).
    pub(super) fn unreachable(&self, dif: DifIndex, app: &ApplicationName) {
        self.shared.hints.lock().forget(dif, app);
    }

    /// Forgets the destinations the directory no longer lists, once it changed.
    pub(super) fn prune_hints(&mut self) {
        let mut changed = false;
        for (DifId(i), d) in self.stack.node.difs() {
            if self.directory_changes.len() <= i {
                self.directory_changes.resize(i + 1, 0);
            }
            let now = d.ipcp().directory().changes();
            changed |= now != self.directory_changes[i];
            self.directory_changes[i] = now;
        }
        if !changed {
            return;
        }
        let mut hints = self.shared.hints.lock();
        let stack = &self.stack;
        hints.known.retain(|(index, app), _| {
            stack
                .dif_of(*index)
                .and_then(|d| stack.node.get_dif(d))
                .is_some_and(|d| !d.ipcp().directory().lookup(app).is_empty())
        });
    }
}

/// Lets go of the application's side of a connect that failed: an early connect's
/// end is reset (its program saw the connect succeed: it must not read a clean end of
/// stream); any other end just closes.
pub(super) fn dispose(end: AppEnd) {
    if let AppEnd::StreamEarly(sock, app) = end {
        reset(sock, app);
    }
}

/// Resets the application's end of an early connect whose flow was refused: a byte
/// left unread on the runtime's end when it closes makes the kernel report
/// ECONNRESET to the application's end (whether or not the program wrote).
pub(super) fn reset(sock: OwnedFd, app_side: OwnedFd) {
    let _ = net::send(&app_side, &[0], SendFlags::DONTWAIT | SendFlags::NOSIGNAL);
    drop(sock);
    drop(app_side);
}

fn has_data(sock: &OwnedFd) -> bool {
    let mut b = [0u8; 1];
    matches!(
        net::recv(sock, &mut b, RecvFlags::PEEK | RecvFlags::DONTWAIT),
        Ok((_, n)) if n > 0
    )
}

/// Copies up to a request's worth of what is queued on `sock` into `buf`, leaving it
/// queued.
fn peek(sock: &OwnedFd, buf: &mut [u8]) -> usize {
    let n = buf.len().min(rina_core::wire::mgmt::MAX_FIRST_DATA);
    match net::recv(sock, &mut buf[..n], RecvFlags::PEEK | RecvFlags::DONTWAIT) {
        Ok((_, got)) => got,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap()
    }

    /// What a refused early connect leaves the program: its next read fails with
    /// ECONNRESET, wrote it first or not.
    #[test]
    fn a_reset_end_reads_econnreset() {
        for wrote in [false, true] {
            let (app, rt) = pair();
            if wrote {
                net::send(&app, b"GET /", SendFlags::empty()).unwrap();
            }
            let dup = app.try_clone().unwrap();
            reset(rt, dup);
            let mut b = [0u8; 8];
            assert_eq!(
                net::recv(&app, &mut b, RecvFlags::DONTWAIT).map(|r| r.1),
                Err(rustix::io::Errno::CONNRESET),
                "wrote first: {wrote}"
            );
        }
    }

    /// Peeked bytes stay queued; once the flow is up they are read off, and what the
    /// program wrote after them comes next.
    #[test]
    fn carried_bytes_leave_the_socket_once_allocated() {
        let (app, rt) = pair();
        net::send(&app, b"hello", SendFlags::empty()).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(peek(&rt, &mut buf), 5);
        assert!(has_data(&rt));
        net::send(&app, b" world", SendFlags::empty()).unwrap();
        crate::pending::skip(&rt, 3);
        let (_, n) = net::recv(&rt, &mut buf, RecvFlags::DONTWAIT).unwrap();
        assert_eq!(&buf[..n], b"lo world");
    }

    #[test]
    fn hints_learn_forget_and_stay_bounded() {
        let mut h = Hints::default();
        let app = |i: usize| ApplicationName::new(format!("app{i}"));
        assert!(!h.knows(DifIndex(0), &app(0)));
        h.learn(DifIndex(0), &app(0), false);
        assert!(h.knows(DifIndex(0), &app(0)));
        assert!(!h.knows(DifIndex(1), &app(0)), "per DIF");
        assert!(!h.speaks_first(DifIndex(0), &app(0)));
        h.forget(DifIndex(0), &app(0));
        assert!(!h.knows(DifIndex(0), &app(0)));
        for i in 0..MAX_HINTS * 2 {
            h.learn(DifIndex(0), &app(i), true);
        }
        assert!(h.known.len() <= MAX_HINTS);
    }
}
