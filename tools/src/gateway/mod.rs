//! `rina gateway -c RULES`: carries TCP connections and UDP datagrams of programs
//! that run nothing of ours (static binaries, Go programs, other hosts) over RINA.
//!
//! - Egress (`[[egress]]`): the runtime registers the name and makes a TCP
//!   connection (a UDP proxy socket) to the rule's address for each incoming flow
//!   (`runtime::ListenTarget::Forward`, `driver/dial.rs`).
//! - Ingress (`[[ingress]]`): this module listens on the rules' addresses; each TCP
//!   connection becomes the application socket of a flow to the rule's application
//!   (`tcp.rs`, no copy in this process: the runtime pumps the connection itself),
//!   each UDP peer gets an unreliable flow (`udp.rs`).
//!
//! One event loop thread serves every ingress address; SIGINT or SIGTERM stops the
//! gateway after the flows have delivered what they hold (the rules' `linger`).

mod tcp;
mod udp;

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runtime::config::{Config, Ingress, Proto};
use runtime::{Handle, ListenRequest, ListenTarget};
use rustix::event::epoll;

/// Runs the gateway of `rules` until SIGINT or SIGTERM.
pub fn gateway(rules: &Path) -> ExitCode {
    let c = match crate::load_rules(rules) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if c.ingress.is_empty() && c.egress.is_empty() {
        eprintln!(
            "rina gateway: {}: no [[ingress]] or [[egress]] rules: nothing to carry",
            rules.display()
        );
        return ExitCode::from(2);
    }
    if let Some(why) = c.missing_net_raw() {
        eprintln!("rina gateway: {}: {why}", rules.display());
        return ExitCode::from(1);
    }
    // The ingress addresses first: a port another program holds is said before the
    // stack starts (and the DIF sees no member that goes away at once).
    let listeners = match bind_all(&c.ingress) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("rina gateway: {e}");
            return ExitCode::from(1);
        }
    };
    let set = crate::block_stop_signals();
    let c = Arc::new(c);
    let handle = match Handle::start_node(c.clone(), "gateway") {
        Ok(h) => h,
        Err(e) => {
            eprintln!(
                "rina gateway: cannot start the RINA stack: {}",
                crate::why(e)
            );
            return ExitCode::from(1);
        }
    };
    for e in &c.egress {
        let target = match e.proto {
            Proto::Tcp => ListenTarget::Forward {
                to: e.to,
                proxy_protocol: e.proxy_protocol,
            },
            Proto::Udp => ListenTarget::Datagram(e.to),
        };
        let req = ListenRequest {
            dif: e.dif,
            app: e.app.clone(),
            target,
            pool: e.pool,
            timeout: c.settings.connect_timeout,
        };
        if let Err(err) = handle.listen(req) {
            eprintln!(
                "rina gateway: cannot register {} in DIF {} (egress rule on line {}): {}",
                e.app,
                c.dif_name(e.dif),
                e.line,
                crate::why(err)
            );
            handle.exit();
            return ExitCode::from(1);
        }
    }
    let ingress = Loop::new(handle.clone(), listeners);
    let ingress = match ingress {
        Ok(l) => l,
        Err(e) => {
            eprintln!("rina gateway: cannot start its event loop: {e}");
            handle.exit();
            return ExitCode::from(1);
        }
    };
    eprintln!("rina gateway {}: {}", std::process::id(), banner(&c));
    let spawned = std::thread::Builder::new()
        .name("rina-gateway".into())
        .spawn(move || ingress.run());
    if let Err(e) = spawned {
        eprintln!("rina gateway: cannot start its event loop: {e}");
        handle.exit();
        return ExitCode::from(1);
    }
    let sig = crate::wait_for_stop(&set);
    eprintln!(
        "rina gateway {}: stopping (signal {sig})",
        std::process::id()
    );
    handle.exit();
    ExitCode::SUCCESS
}

/// What the gateway does, in one line.
fn banner(c: &Config) -> String {
    let mut parts: Vec<String> = c
        .ingress
        .iter()
        .map(|i| {
            format!(
                "{} {} -> {} in {}",
                i.proto,
                i.listen,
                i.app,
                c.dif_name(i.dif)
            )
        })
        .collect();
    parts.extend(c.egress.iter().map(|e| {
        format!(
            "{} in {} -> {} {}{}",
            e.app,
            c.dif_name(e.dif),
            e.proto,
            e.to,
            if e.proxy_protocol { " (PROXY v2)" } else { "" }
        )
    }));
    format!("{}; SIGINT or SIGTERM stops it", parts.join(", "))
}

/// One ingress rule's socket: a TCP listener or a UDP socket.
pub(crate) struct Bound {
    rule: Ingress,
    sock: OwnedFd,
}

/// Binds every ingress address (nonblocking), or says which cannot be had.
fn bind_all(rules: &[Ingress]) -> Result<Vec<Bound>, String> {
    use rustix::net::{self, sockopt, AddressFamily, SocketFlags, SocketType};
    let mut out = Vec::new();
    for rule in rules {
        let family = if rule.listen.is_ipv4() {
            AddressFamily::INET
        } else {
            AddressFamily::INET6
        };
        let kind = match rule.proto {
            Proto::Tcp => SocketType::STREAM,
            Proto::Udp => SocketType::DGRAM,
        };
        let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
        let what = |e: rustix::io::Errno| {
            format!(
                "{} {} (ingress rule on line {}): {}",
                rule.proto,
                rule.listen,
                rule.line,
                std::io::Error::from(e)
            )
        };
        let sock = net::socket_with(family, kind, flags, None).map_err(what)?;
        if rule.proto == Proto::Tcp {
            sockopt::set_socket_reuseaddr(&sock, true).map_err(what)?;
        }
        net::bind(&sock, &rule.listen).map_err(what)?;
        if rule.proto == Proto::Tcp {
            net::listen(&sock, 1024).map_err(what)?;
        }
        out.push(Bound {
            rule: rule.clone(),
            sock,
        });
    }
    Ok(out)
}

/// Epoll tokens: a listener or UDP socket by its rule's index, a UDP peer's socket by
/// its own number, the wake-up of flows made for UDP peers.
const TOKEN_RULE: u64 = 1 << 56;
const TOKEN_PEER: u64 = 2 << 56;
const TOKEN_WAKE: u64 = 3 << 56;
const TOKEN_MASK: u64 = (1 << 56) - 1;

/// How long a listener rests when the process is out of descriptors.
const REST: Duration = Duration::from_millis(100);

/// The ingress event loop.
struct Loop {
    handle: Handle,
    epoll: OwnedFd,
    rules: Vec<Bound>,
    udp: udp::Peers,
    /// Listeners not watched until then (out of descriptors), by rule.
    resting: Vec<(usize, Instant)>,
}

impl Loop {
    fn new(handle: Handle, rules: Vec<Bound>) -> std::io::Result<Self> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        for (i, b) in rules.iter().enumerate() {
            epoll::add(
                &epoll,
                &b.sock,
                epoll::EventData::new_u64(TOKEN_RULE | i as u64),
                epoll::EventFlags::IN,
            )?;
        }
        let udp = udp::Peers::new()?;
        epoll::add(
            &epoll,
            udp.waker(),
            epoll::EventData::new_u64(TOKEN_WAKE),
            epoll::EventFlags::IN,
        )?;
        Ok(Self {
            handle,
            epoll,
            rules,
            udp,
            resting: Vec::new(),
        })
    }

    fn run(mut self) {
        let mut events = Vec::with_capacity(256);
        loop {
            events.clear();
            self.wake_rested();
            let rest = self
                .resting
                .iter()
                .map(|(_, at)| at.saturating_duration_since(Instant::now()).as_millis() as u64 + 1)
                .min();
            let timeout = match (self.udp.next_expiry_ms(), rest) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let got = epoll::wait(
                &self.epoll,
                rustix::buffer::spare_capacity(&mut events),
                timeout
                    .map(|ms| rustix::event::Timespec {
                        tv_sec: (ms / 1000) as i64,
                        tv_nsec: ((ms % 1000) * 1_000_000) as i64,
                    })
                    .as_ref(),
            );
            if let Err(e) = got {
                if e != rustix::io::Errno::INTR {
                    eprintln!("rina gateway: its event loop failed: {e}; stopping");
                    // SAFETY: a signal to this process, which the main thread waits for
                    // (it stops the gateway as SIGTERM from outside would).
                    unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
                    return;
                }
            }
            for ev in &events {
                let token = ev.data.u64();
                let index = (token & TOKEN_MASK) as usize;
                match token & !TOKEN_MASK {
                    TOKEN_RULE => self.on_rule(index),
                    TOKEN_PEER => self.udp.take_flow(index as u64, &self.rules),
                    TOKEN_WAKE => self.udp.settle(&self.handle, &self.epoll, &self.rules),
                    _ => {}
                }
            }
            self.udp.expire(&self.handle, &self.epoll);
        }
    }

    /// Watches again the listeners whose rest is over.
    fn wake_rested(&mut self) {
        let now = Instant::now();
        let (done, resting): (Vec<_>, Vec<_>) =
            self.resting.drain(..).partition(|(_, at)| *at <= now);
        self.resting = resting;
        for (i, _) in done {
            let data = epoll::EventData::new_u64(TOKEN_RULE | i as u64);
            let _ = epoll::add(
                &self.epoll,
                &self.rules[i].sock,
                data,
                epoll::EventFlags::IN,
            );
        }
    }

    /// A listener has connections to accept, or a UDP socket datagrams to read.
    fn on_rule(&mut self, index: usize) {
        let Some(b) = self.rules.get(index) else {
            return;
        };
        match b.rule.proto {
            Proto::Tcp => {
                if !tcp::accept_all(&self.handle, &b.rule, b.sock.as_fd()) {
                    // Out of descriptors: the listener rests a while, not watched.
                    let _ = epoll::delete(&self.epoll, &b.sock);
                    self.resting.push((index, Instant::now() + REST));
                }
            }
            Proto::Udp => self.udp.take_clients(&self.handle, index, &self.rules),
        }
    }
}
