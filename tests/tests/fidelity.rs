//! Fidelity (issue 9): to every program a flow is a TCP connection.
//!
//! - Signals: a server that listens under a rule (so the stack's thread runs), then
//!   blocks SIGHUP and reads it from a signalfd, gets `kill -HUP` from the signalfd
//!   and exits 0 (`tests/programs/fidelity_sighup.c`); the stack's threads must not
//!   take it.
//! - A flow's fd in another process (`tests/programs/fidelity_fd_handover.py`): after
//!   exec, in a fork child, and passed over `SCM_RIGHTS` to a process started before
//!   the flow existed, the fd shows INET addresses (the peer in `100.64.0.0/10`, the
//!   listener's port as its own), `TCP_NODELAY` sets and reads back, and it echoes.
//! - `TCP_INFO` (`tests/programs/fidelity_tcp_info.c`): with the full size, a shorter
//!   one and a large buffer, the length is the kernel's (measured in the same program
//!   over kernel TCP), no byte past it is written, the state is ESTABLISHED and the
//!   round trip, segment size and byte counts are set after traffic.
//! - Three connections open at once from one client (`tests/programs/fidelity_peers.py`):
//!   three distinct peer tuples at the server, one address outside loopback, each equal
//!   to its `getpeername` and to the client's `getsockname`.
//! - A listen rule's `peers = "192.0.2.7"`: the server sees exactly that address.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use rina_e2e::*;

/// How long any one process of these tests may run.
const BOUND: Duration = Duration::from_secs(60);

/// A process whose stdout and stderr go to files of the test's directory.
struct Logged {
    proc: Proc,
    out: PathBuf,
    err: PathBuf,
}

impl Logged {
    /// Starts `cmd` as `name`, its stdout and stderr into `dir/name.out` and `.err`.
    fn spawn(dir: &Path, name: &str, cmd: &mut Command) -> Self {
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        cmd.stdout(stdout_to(&out)).stderr(stdout_to(&err));
        Self {
            proc: Proc::spawn(name, cmd),
            out,
            err,
        }
    }

    /// Starts `args` under `rules` (stdin empty).
    fn run(dir: &Path, name: &str, rules: &Path, args: &[&str]) -> Self {
        Self::spawn(
            dir,
            name,
            &mut rina_run(rules, args, Stdio::null(), Stdio::null()),
        )
    }

    /// Starts a server under `rules` and waits (bounded) until it has registered.
    fn server(dir: &Path, name: &str, rules: &Path, args: &[&str]) -> Self {
        let mut s = Self::run(dir, name, rules, args);
        if !wait_for_rina_listener(s.proc.pid(), Duration::from_secs(10)) {
            s.proc.kill_and_stderr();
            panic!("{name} never listened: {}", s.output());
        }
        s
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Both outputs, for messages.
    fn output(&self) -> String {
        format!(
            "stdout:\n{}stderr:\n{}",
            self.stdout(),
            std::fs::read_to_string(&self.err).unwrap_or_default()
        )
    }

    /// Waits (bounded) for the exit: the status and stdout; panics with the outputs
    /// (after killing it) past the bound.
    fn finish(&mut self, name: &str) -> (ExitStatus, String) {
        match self.proc.wait_timeout(BOUND) {
            Some(st) => (st, self.stdout()),
            None => {
                self.proc.kill_and_stderr();
                panic!("{name} did not exit within {BOUND:?}: {}", self.output())
            }
        }
    }

    /// Waits (bounded) for a successful exit and returns stdout.
    fn success(&mut self, name: &str) -> String {
        let (st, out) = self.finish(name);
        assert!(st.success(), "{name}: {st:?}\n{}", self.output());
        out
    }
}

fn compile(dir: &Path, src: &str) -> PathBuf {
    compile_c(dir, src, &[])
}

/// A daemon that blocks SIGHUP after its first matching call (the stack's thread runs
/// by then) and reads it from a signalfd: `kill -HUP` reaches the signalfd and the
/// process exits 0. Before the fix the stack's thread, blocking nothing, took the
/// signal and the process died of it (exit 129).
#[test]
fn sighup_blocked_after_listen_is_read_from_a_signalfd() {
    let dir = temp_dir();
    let bin = compile(dir.path(), "fidelity_sighup.c");
    let p = pair(dir.path(), "sighup");
    let port = p.port.to_string();
    let mut server = Logged::server(
        dir.path(),
        "sighup",
        &p.server,
        &[bin.to_str().unwrap(), &port],
    );
    let ready = wait_until(Duration::from_secs(10), || {
        server.stdout().contains("ready\n") || has_exited(server.proc.pid())
    });
    assert!(
        ready && server.stdout().contains("ready\n"),
        "never ready: {}",
        server.output()
    );
    // The stack's thread runs beside the program's one, so the kernel could hand
    // it the signal.
    let threads =
        std::fs::read_dir(format!("/proc/{}/task", server.proc.pid())).map_or(0, Iterator::count);
    assert!(
        threads >= 2,
        "{threads} thread(s): the stack runs no thread"
    );
    let pid = libc::pid_t::try_from(server.proc.pid()).expect("a pid");
    // SAFETY: a signal to our own child, which has not been reaped (Proc reaps it).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0, "kill -HUP");
    let (st, out) = server.finish("sighup");
    assert!(
        st.success(),
        "exit {st:?} (129 means SIGHUP killed it)\n{}",
        server.output()
    );
    assert_eq!(out, "ready\ngot SIGHUP\n", "{}", server.output());
}

/// The server of `fidelity_fd_handover.py` in `mode` hands the accepted flow to
/// another process, which checks the fd's addresses and options and echoes; the
/// client gets its bytes back.
fn handover(mode: &str) {
    assert!(have("python3"));
    let dir = temp_dir();
    let p = pair(dir.path(), &format!("handover-{mode}"));
    let port = p.port.to_string();
    let script = program("fidelity_fd_handover.py");
    let script = script.to_str().unwrap();
    let mut server = Logged::server(
        dir.path(),
        "server",
        &p.server,
        &["python3", script, "server", &port, mode],
    );
    let mut client = Logged::run(
        dir.path(),
        "client",
        &p.client,
        &["python3", script, "client", &port, "200000"],
    );
    let client_out = client.success("client");
    let (st, server_out) = server.finish("server");
    println!("{mode}: server:\n{server_out}client: {client_out}");
    let failed: Vec<&str> = server_out
        .lines()
        .filter(|l| l.contains(" FAIL: "))
        .collect();
    assert!(
        failed.is_empty() && st.success(),
        "{mode}: the process that got the fd saw {failed:?} (exit {st:?})\n{}",
        server.output()
    );
    for check in ["family", "getpeername", "getsockname", "nodelay"] {
        assert!(
            server_out.contains(&format!("{check} ok: ")),
            "{mode}: {check} not checked\n{}",
            server.output()
        );
    }
    assert!(
        server_out.contains("echoed 200000\n"),
        "{mode}: {}",
        server.output()
    );
    assert_eq!(
        client_out,
        "echoed 200000 of 200000 intact\n",
        "{mode}: {}",
        client.output()
    );
}

/// The server execs a new program with the flow's fd (as servers that re-exec
/// themselves per connection do).
#[test]
fn flow_fd_after_exec_shows_tcp() {
    handover("exec");
}

/// The server forks; the child serves the flow, the parent closes its copy.
#[test]
fn flow_fd_in_a_fork_child_shows_tcp() {
    handover("fork");
}

/// The server passes the flow's fd over a socket pair (`SCM_RIGHTS`) to a process it
/// started before the flow existed.
#[test]
fn flow_fd_passed_over_scm_rights_shows_tcp() {
    handover("scm");
}

/// `key=value` fields of the line of `out` that starts with `label `.
fn fields<'a>(out: &'a str, label: &str) -> std::collections::BTreeMap<&'a str, &'a str> {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{label} ")))
        .unwrap_or_else(|| panic!("no {label} line in:\n{out}"));
    line.split_whitespace()
        .skip(1)
        .filter_map(|f| f.split_once('='))
        .collect()
}

/// A numeric field (panics with the line if it is absent or not a number).
fn num(f: &std::collections::BTreeMap<&str, &str>, key: &str) -> u64 {
    f.get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} is not a number in {f:?}"))
}

/// `getsockopt(TCP_INFO)` on a flow after 64 KiB each way, with the full size, a
/// shorter size and a large buffer: the length the kernel would give (its size is
/// measured in the same program over kernel TCP), nothing written past it, and the
/// figures of a live connection.
#[test]
fn tcp_info_is_filled_like_the_kernel_does() {
    assert!(have("python3"));
    let dir = temp_dir();
    let bin = compile(dir.path(), "fidelity_tcp_info.c");
    let p = pair(dir.path(), "tcp-info");
    let port = p.port.to_string();
    let echo = format!(
        r#"
import socket
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", {port})); l.listen(1); l.settimeout(30)
c, _ = l.accept(); c.settimeout(30)
while True:
    b = c.recv(65536)
    if not b: break
    c.sendall(b)
"#
    );
    let mut server = Logged::server(dir.path(), "echo", &p.server, &["python3", "-c", &echo]);
    let mut client = Logged::run(
        dir.path(),
        "tcp_info",
        &p.client,
        &[bin.to_str().unwrap(), &port],
    );
    let out = client.success("tcp_info");
    server.success("echo");
    println!("{out}");
    let ctx = client.output();

    let kernel = fields(&out, "kernel");
    let kernel_size = num(&kernel, "size");
    let struct_size = num(&kernel, "sizeof");
    assert_eq!(
        num(&kernel, "struct_len"),
        struct_size.min(kernel_size),
        "the kernel's own answer\n{ctx}"
    );
    let expected = [
        ("full", struct_size.min(kernel_size)),
        ("short", 72), // offsetof(struct tcp_info, tcpi_rttvar)
        ("big", kernel_size),
    ];
    for (label, len) in expected {
        let f = fields(&out, label);
        assert!(
            !f.contains_key("error"),
            "{label}: getsockopt failed\n{ctx}"
        );
        assert_eq!(num(&f, "len"), len, "{label}: returned length\n{ctx}");
        assert_eq!(
            num(&f, "untouched"),
            1,
            "{label}: bytes past the returned length were written\n{ctx}"
        );
        assert_eq!(num(&f, "state"), 1, "{label}: not ESTABLISHED\n{ctx}");
        assert!(num(&f, "rtt") > 0, "{label}: no round-trip time\n{ctx}");
        assert!(num(&f, "snd_mss") > 0, "{label}: no segment size\n{ctx}");
        if label != "short" {
            assert!(num(&f, "bytes_acked") > 0, "{label}: nothing acked\n{ctx}");
            assert!(
                num(&f, "bytes_received") > 0,
                "{label}: nothing received\n{ctx}"
            );
            assert!(num(&f, "snd_cwnd") > 0, "{label}: no window\n{ctx}");
            num(&f, "rttvar");
            num(&f, "total_retrans");
        } else {
            assert_eq!(f.get("rttvar"), Some(&"-"), "{label}\n{ctx}");
        }
    }
}

/// An address and port.
type Tuple = (IpAddr, u16);

/// One connection as one end saw it: at the server (the accept tuple, getpeername),
/// from its `accepted` lines; at the client (its getsockname, the peer the server
/// said it saw), from its `sockname` lines.
type Seen = Vec<(Tuple, Tuple)>;

/// The `label` lines of `out` (`label IP PORT other IP PORT`).
fn tuples(out: &str, label: &str, other: &str) -> Seen {
    let parse = |ip: &str, port: &str| -> Tuple {
        (
            ip.parse()
                .unwrap_or_else(|_| panic!("{ip:?} is not an address in:\n{out}")),
            port.parse()
                .unwrap_or_else(|_| panic!("{port:?} is not a port in:\n{out}")),
        )
    };
    out.lines()
        .filter(|l| l.starts_with(&format!("{label} ")))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            assert!(w.len() == 6 && w[3] == other, "odd line {l:?}");
            (parse(w[1], w[2]), parse(w[4], w[5]))
        })
        .collect()
}

/// Runs `fidelity_peers.py` with `n` connections open at once, the server under
/// `p.server`: the server's and the client's tuples.
fn peers(dir: &Path, p: &Pair, n: usize) -> (Seen, Seen) {
    assert!(have("python3"));
    let script = program("fidelity_peers.py");
    let script = script.to_str().unwrap();
    let (port, n_s) = (p.port.to_string(), n.to_string());
    let mut server = Logged::server(
        dir,
        "server",
        &p.server,
        &["python3", script, "server", &port, &n_s],
    );
    let mut client = Logged::run(
        dir,
        "client",
        &p.client,
        &["python3", script, "client", &port, &n_s],
    );
    let c = client.success("client");
    let s = server.success("server");
    println!("server:\n{s}client:\n{c}");
    let seen = tuples(&s, "accepted", "getpeername");
    let mine = tuples(&c, "sockname", "seen");
    assert_eq!(seen.len(), n, "{}", server.output());
    assert_eq!(mine.len(), n, "{}", client.output());
    for (accepted, named) in &seen {
        assert_eq!(accepted, named, "accept and getpeername differ\n{s}");
    }
    (seen, mine)
}

/// Three connections open at once from one client process: three distinct peer
/// tuples at the server (one address, three ports), each what `getpeername` says and
/// what the client's `getsockname` says; the address is not a loopback one.
#[test]
fn concurrent_connections_have_distinct_peer_tuples() {
    let dir = temp_dir();
    let p = pair(dir.path(), "three");
    let (seen, mine) = peers(dir.path(), &p, 3);
    let tuples: BTreeSet<Tuple> = seen.iter().map(|(a, _)| *a).collect();
    assert_eq!(tuples.len(), 3, "three distinct tuples: {seen:?}");
    let ports: BTreeSet<u16> = seen.iter().map(|(a, _)| a.1).collect();
    assert_eq!(ports.len(), 3, "three distinct ports: {seen:?}");
    let ips: BTreeSet<IpAddr> = seen.iter().map(|(a, _)| a.0).collect();
    assert_eq!(
        ips.len(),
        1,
        "one remote application, one address: {seen:?}"
    );
    let ip = *ips.first().unwrap();
    assert!(
        !ip.is_loopback() && !ip.is_unspecified(),
        "a remote peer shows at a loopback address: {ip}"
    );
    let shared: IpAddr = "100.64.0.0".parse().unwrap();
    match (ip, shared) {
        (IpAddr::V4(a), IpAddr::V4(b)) => assert_eq!(
            u32::from(a) >> 22,
            u32::from(b) >> 22,
            "{ip} is not in 100.64.0.0/10"
        ),
        _ => panic!("{ip} is not IPv4"),
    }
    for (me, told) in &mine {
        assert_eq!(me, told, "the client's getsockname and the server's peer");
    }
    let client_side: BTreeSet<Tuple> = mine.iter().map(|(m, _)| *m).collect();
    assert_eq!(
        client_side, tuples,
        "the client's own tuples are the server's peers"
    );
}

/// A listen rule's `peers = "192.0.2.7"`: the server sees that address for every
/// peer (two connections open at once, still on distinct ports).
#[test]
fn listen_rule_fixes_the_peer_address() {
    let dir = temp_dir();
    let p = pair(dir.path(), "fixed");
    // The server's rules end with its [[listen]] table.
    let mut text = std::fs::read_to_string(&p.server).unwrap();
    text.push_str("peers = \"192.0.2.7\"\n");
    std::fs::write(&p.server, text).unwrap();
    let (seen, _) = peers(dir.path(), &p, 2);
    let fixed: IpAddr = "192.0.2.7".parse().unwrap();
    for (accepted, _) in &seen {
        assert_eq!(accepted.0, fixed, "the rule's address: {seen:?}");
    }
    let ports: BTreeSet<u16> = seen.iter().map(|(a, _)| a.1).collect();
    assert_eq!(ports.len(), 2, "distinct ports: {seen:?}");
}
