//! Harness for end-to-end tests: finds the built `rina` command and interposer, runs
//! programs under them with per-test rules, ports and temporary files, bounds every
//! wait, and kills every process it started (by pid) when the test ends, even when it
//! fails.

pub mod many;
pub mod netns;

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The directory holding the built binaries (`target/<profile>`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    // Tests run from target/<profile>/deps/, binaries from target/<profile>/.
    let dir = exe.parent().expect("target dir");
    let dir = if dir.ends_with("deps") {
        dir.parent().expect("target dir")
    } else {
        dir
    };
    dir.to_path_buf()
}

/// The `rina` command.
pub fn rina() -> PathBuf {
    let p = bin_dir().join("rina");
    assert!(
        p.exists(),
        "{} not built: run the tests with `cargo test --workspace`",
        p.display()
    );
    p
}

/// The interposer library.
pub fn interposer() -> PathBuf {
    let p = bin_dir().join("librina_interposer.so");
    assert!(
        p.exists(),
        "{} not built: run `cargo build --release --workspace` first (README)",
        p.display()
    );
    p
}

/// True if `program` is on PATH.
pub fn have(program: &str) -> bool {
    output_within(
        Command::new("sh")
            .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
            .stdin(Stdio::null()),
        Duration::from_secs(10),
    )
    .status
    .success()
}

/// A port for a test: the next of this test binary's own block below the kernel's
/// ephemeral range (so that no port a test was given is handed again to another test
/// of the binary, nor picked by the kernel for a socket bound to port 0, as a port
/// merely bound once and released could be), skipping ports `free` says are taken.
fn next_port(free: impl Fn(u16) -> bool) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // 20000..32500: fifty blocks of 250, one per test binary by its pid.
    const FIRST: u32 = 20_000;
    const BLOCKS: u32 = 50;
    const BLOCK: u32 = 250;
    let base = FIRST + (std::process::id() % BLOCKS) * BLOCK;
    for _ in 0..BLOCK {
        let p = (base + NEXT.fetch_add(1, Ordering::Relaxed) % BLOCK) as u16;
        if free(p) {
            return p;
        }
    }
    panic!("every port of this test binary's block {base}.. is taken");
}

/// A free UDP port on 127.0.0.1, from this test binary's own block of ports.
pub fn free_udp_port() -> u16 {
    next_port(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok())
}

/// A free TCP port on 127.0.0.1, from this test binary's own block of ports.
pub fn free_tcp_port() -> u16 {
    next_port(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
}

/// A temporary directory for one test, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rina-e2e-")
        .tempdir()
        .expect("temp dir")
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

/// A child process that is killed (SIGKILL, by pid) and reaped when dropped.
#[derive(Debug)]
pub struct Proc {
    child: Option<Child>,
    name: String,
}

impl Proc {
    /// Starts `cmd`.
    pub fn spawn(name: &str, cmd: &mut Command) -> Self {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self {
            child: Some(child),
            name: name.to_owned(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        // A quick command is seen to end within about a millisecond (the benchmark
        // times convergence through `rina ctl`); a long one is looked at every 10 ms.
        let mut nap = Duration::from_micros(500);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(10));
        }
    }

    /// Waits for exit, panicking (after killing it) past `timeout`.
    pub fn expect_exit(&mut self, timeout: Duration) -> ExitStatus {
        match self.wait_timeout(timeout) {
            Some(st) => st,
            None => {
                let stderr = self.kill_and_stderr();
                panic!(
                    "{} did not exit within {timeout:?}; stderr: {stderr}",
                    self.name
                )
            }
        }
    }

    /// Kills the process and returns what it wrote to a piped stderr (read within
    /// [`STDERR_BOUND`]).
    pub fn kill_and_stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            s = stderr_text(read_async(c.stderr.take()));
        }
        s
    }

    /// What it wrote to a piped stderr (after it exited; read within
    /// [`STDERR_BOUND`]).
    pub fn stderr(&mut self) -> String {
        let e = self.child.as_mut().and_then(|c| c.stderr.take());
        if e.is_none() {
            return String::new();
        }
        stderr_text(read_async(e))
    }

    /// Reads a piped stdout to its end, within `limit`: past it the process is killed
    /// and the test fails with its stderr (a child that hangs never hangs the test).
    pub fn stdout_within(&mut self, limit: Duration) -> String {
        let Some(out) = self.take_stdout() else {
            return String::new();
        };
        match read_async(Some(out)).recv_timeout(limit) {
            Ok(s) => String::from_utf8_lossy(&s).into_owned(),
            Err(_) => {
                let err = self.kill_and_stderr();
                panic!(
                    "{} wrote no end of output within {limit:?}; stderr: {err}",
                    self.name
                )
            }
        }
    }

    /// Reads a piped stdout until what it wrote contains `needle` (a "ready" line),
    /// within `limit`, and leaves the pipe open for the rest: what it read, or `None`
    /// if its output ended first or the limit passed (the caller fails the test, with
    /// [`Proc::kill_and_stderr`], which also ends the read).
    pub fn stdout_until(&mut self, needle: &str, limit: Duration) -> Option<String> {
        let mut out = self.take_stdout()?;
        let needle = needle.to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut text, mut b) = (String::new(), [0u8; 256]);
            while !text.contains(&needle) {
                match out.read(&mut b) {
                    Ok(n) if n > 0 => text.push_str(&String::from_utf8_lossy(&b[..n])),
                    _ => break,
                }
            }
            let found = text.contains(&needle);
            let _ = tx.send((found.then_some(text), out));
        });
        let (text, out) = rx.recv_timeout(limit).ok()?;
        if let Some(c) = self.child.as_mut() {
            c.stdout = Some(out);
        }
        text
    }

    /// Closes a piped stdin (the process sees its end).
    pub fn close_stdin(&mut self) {
        if let Some(c) = self.child.as_mut() {
            drop(c.stdin.take());
        }
    }

    /// Takes a piped stdout.
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.as_mut()?.stdout.take()
    }

    /// Takes a piped stdin (dropping it closes the child's stdin).
    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.as_mut()?.stdin.take()
    }

    /// Resident memory (KiB) now, from /proc.
    pub fn rss_kib(&self) -> Option<u64> {
        self.status_kib("VmRSS:")
    }

    /// The most resident memory (KiB) it has had, from /proc.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.status_kib("VmHWM:")
    }

    /// A figure in KiB of /proc/PID/status, by its key.
    fn status_kib(&self, key: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

/// A Python TCP echo server (`python3 -c PY_ECHO_SERVER HOST PORT`): every
/// connection's bytes come straight back, as they come, a thread per connection.
pub const PY_ECHO_SERVER: &str = r#"
import socket, sys, threading
l = socket.socket(); l.bind((sys.argv[1], int(sys.argv[2]))); l.listen(1024)
def serve(c):
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    c.close()
while True:
    c, _ = l.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// How long reading a stderr to its end may take once the process exited or was
/// killed (only a process it left behind, holding the pipe, makes it take long).
pub const STDERR_BOUND: Duration = Duration::from_secs(10);

/// Reads `pipe` (if any) to its end on a thread of its own: the receiver gets what it
/// read, so that a wait on it can be bounded (`recv_timeout`).
fn read_async(pipe: Option<impl Read + Send + 'static>) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut v);
        }
        let _ = tx.send(v);
    });
    rx
}

/// A stderr read by [`read_async`], waited for within [`STDERR_BOUND`].
fn stderr_text(rx: std::sync::mpsc::Receiver<Vec<u8>>) -> String {
    match rx.recv_timeout(STDERR_BOUND) {
        Ok(v) => String::from_utf8_lossy(&v).into_owned(),
        Err(_) => format!("(its stderr did not end within {STDERR_BOUND:?})"),
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// True if process `pid` has exited (it is gone, or a zombie nobody reaped yet).
pub fn has_exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// Polls `f` every 10 ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Abstract AF_UNIX sockets in the LISTEN state whose name starts with `prefix`, in
/// the network namespace of process `pid` (abstract names are per namespace; the
/// interposer's listeners are named `rina-listen/<pid>/...`).
pub fn abstract_listeners_of(pid: u32, prefix: &str) -> Vec<String> {
    let Ok(t) = std::fs::read_to_string(format!("/proc/{pid}/net/unix")) else {
        return Vec::new();
    };
    t.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Num RefCount Protocol Flags Type St Inode Path; Flags 00010000 = listening.
            let (flags, path) = (f.get(3)?, f.get(7)?);
            (flags.ends_with("10000") && path.starts_with('@') && path[1..].starts_with(prefix))
                .then(|| path.to_string())
        })
        .collect()
}

/// Abstract AF_UNIX listeners whose name starts with `prefix`, in this process's
/// network namespace.
pub fn abstract_listeners(prefix: &str) -> Vec<String> {
    abstract_listeners_of(std::process::id(), prefix)
}

/// Waits until the process `pid` has an interposer listener (its name is registered),
/// in whatever network namespace it runs.
pub fn wait_for_rina_listener(pid: u32, timeout: Duration) -> bool {
    wait_until(timeout, || {
        !abstract_listeners_of(pid, &format!("rina-listen/{pid}/")).is_empty()
    })
}

/// True if any TCP socket uses `port` (listening or connected), per `ss`. Sockets in
/// TIME-WAIT are left out: an earlier program's connection on a port that is free again
/// (a benchmark's TCP baseline, say) is not one of this test's.
pub fn tcp_port_in_use(port: u16) -> bool {
    let filter = format!("( sport = :{port} or dport = :{port} )");
    let out = output_within(
        Command::new("ss").args(["-Htan", "exclude", "time-wait", &filter]),
        Duration::from_secs(10),
    );
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

/// What `rina ctl PID --json` says of process `pid` (panics if it says nothing).
pub fn ctl_json(pid: u32) -> serde_json::Value {
    let out = output_within(
        Command::new(rina()).args(["ctl", &pid.to_string(), "--json"]),
        Duration::from_secs(10),
    );
    assert!(
        out.status.success(),
        "rina ctl {pid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("rina ctl prints JSON")
}

/// Runs `cmd` to its end within `limit`, its stdout and stderr captured, as
/// `Command::output` does but bounded: past the limit the process is killed by its pid
/// and the test fails with what it wrote. Every wait of a test on a command's end goes
/// through here (for its status alone too: `.status` of the result). Unlike
/// `Command::output`, stdin is inherited unless `cmd` sets it, and a stdout or stderr
/// `cmd` sets is replaced by a pipe.
pub fn output_within(cmd: &mut Command, limit: Duration) -> std::process::Output {
    let name = cmd.get_program().to_string_lossy().into_owned();
    let deadline = Instant::now() + limit;
    let left = || deadline.saturating_duration_since(Instant::now());
    let mut p = Proc::spawn(&name, cmd.stdout(Stdio::piped()).stderr(Stdio::piped()));
    let child = p.child.as_mut().expect("just started");
    let (out, err) = (
        read_async(child.stdout.take()),
        read_async(child.stderr.take()),
    );
    let stdout = out.recv_timeout(limit);
    let status = p.wait_timeout(left());
    let stderr = err.recv_timeout(left());
    match (stdout, status, stderr) {
        (Ok(stdout), Some(status), Ok(stderr)) => std::process::Output {
            status,
            stdout,
            stderr,
        },
        (stdout, _, stderr) => {
            // Killed, it ends its output (unless it left a process holding it).
            p.kill_and_stderr();
            let text = |r: Result<Vec<u8>, _>| match r {
                Ok(v) => String::from_utf8_lossy(&v).into_owned(),
                Err(_) => format!("(did not end within {STDERR_BOUND:?} of the kill)"),
            };
            let stdout = stdout.or_else(|_| out.recv_timeout(STDERR_BOUND));
            let stderr = stderr.or_else(|_| err.recv_timeout(STDERR_BOUND));
            panic!(
                "{name} did not end within {limit:?}; stdout: {}\nstderr: {}",
                text(stdout),
                text(stderr)
            )
        }
    }
}

/// Runs `args` over RINA with `rules` to its end within `limit` (stdin empty, stdout
/// and stderr captured; see [`output_within`]).
pub fn run_within(rules: &Path, args: &[&str], limit: Duration) -> std::process::Output {
    output_within(&mut over(Some(rules), args), limit)
}

/// A program with its arguments, over RINA under `rules` (through `rina run`), or
/// plainly (kernel TCP/IP) without; stdin empty, stdout and stderr piped.
pub fn over(rules: Option<&Path>, args: &[&str]) -> Command {
    match rules {
        Some(r) => rina_run(r, args, Stdio::null(), Stdio::piped()),
        None => {
            let mut c = Command::new(args[0]);
            c.args(&args[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            c
        }
    }
}

/// Writes a rules file into `dir` and returns its path.
pub fn rules(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write rules");
    p
}

/// `rina run -c RULES -- args...`, with stdin/stdout from files and stderr piped.
pub fn rina_run(rules: &Path, args: &[&str], stdin: Stdio, stdout: Stdio) -> Command {
    let mut c = Command::new(rina());
    c.arg("run").arg("-c").arg(rules).arg("--").args(args);
    c.stdin(stdin).stdout(stdout).stderr(Stdio::piped());
    c.env_remove("RINA_LOG");
    // A runtime that would sleep with work pending aborts instead (see the driver).
    c.env("RINA_STRICT", "1");
    c
}

/// Rules (written into `dir` as `name`) that send every loopback listen and connect of
/// one process through RINA: listen `127.0.0.1:*` registers `p{port}`, connect
/// `127.0.0.1:*` allocates a flow to `p{port}`; the process bootstraps its DIF alone.
pub fn loopback_rules(dir: &Path, name: &str) -> PathBuf {
    rules(
        dir,
        name,
        &format!(
            r#"
[[dif]]
name = "udp"
type = "udp"
bind = "127.0.0.1:{udp}"

[[dif]]
name = "net"
type = "normal"
over = ["udp"]
bootstrap = true

[[listen]]
on = "127.0.0.1:*"
dif = "net"
app = "p{{port}}"

[[connect]]
to = "127.0.0.1:*"
dif = "net"
app = "p{{port}}"
"#,
            udp = free_udp_port()
        ),
    )
}

/// A test program of this crate (`tests/programs/NAME`).
pub fn program(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("programs")
        .join(name)
}

/// Opens a file for a child's stdin.
pub fn stdin_from(p: &Path) -> Stdio {
    Stdio::from(std::fs::File::open(p).expect("open input"))
}

/// Creates a file for a child's stdout.
pub fn stdout_to(p: &Path) -> Stdio {
    Stdio::from(std::fs::File::create(p).expect("create output"))
}

/// Rules for a two-member DIF over a UDP shim on loopback: a bootstrap server that
/// registers `app` behind `listen` and a client that enrolls through it and sends
/// `connect` to `app`.
pub fn pair_rules(server_udp: u16, client_udp: u16, tcp_port: u16, app: &str) -> (String, String) {
    let server = format!(
        r#"
[[dif]]
name = "udp"
type = "udp"
bind = "127.0.0.1:{server_udp}"

[[dif]]
name = "net"
type = "normal"
over = ["udp"]
ipcp = "server.net"
bootstrap = true

[[listen]]
on = "127.0.0.1:{tcp_port}"
dif = "net"
app = "{app}"
"#
    );
    let client = format!(
        r#"
[[dif]]
name = "udp"
type = "udp"
bind = "127.0.0.1:{client_udp}"

[[dif]]
name = "net"
type = "normal"
over = ["udp"]
enroll-via = {{ dif = "udp", neighbor = "127.0.0.1:{server_udp}" }}

[[connect]]
to = "127.0.0.1:{tcp_port}"
dif = "net"
app = "{app}"
"#
    );
    (server, client)
}

/// A server/client pair of rules files in `dir` for application `app` on a fresh TCP
/// port, over fresh UDP ports (see [`pair_rules`]).
#[derive(Debug)]
pub struct Pair {
    /// The TCP port the rules map.
    pub port: u16,
    /// The server's rules (bootstrap member, listen rule).
    pub server: PathBuf,
    /// The client's rules (enrolls through the server, connect rule).
    pub client: PathBuf,
}

/// Writes a [`Pair`] of rules files.
pub fn pair(dir: &Path, app: &str) -> Pair {
    let port = free_tcp_port();
    let (s, c) = pair_rules(free_udp_port(), free_udp_port(), port, app);
    Pair {
        port,
        server: rules(dir, &format!("{app}-server.toml"), &s),
        client: rules(dir, &format!("{app}-client.toml"), &c),
    }
}

/// Runs a server under `rina run` and waits (bounded) until it has registered its name
/// and listens; panics with its stderr otherwise.
pub fn spawn_server(rules: &Path, args: &[&str], stdin: Stdio, stdout: Stdio) -> Proc {
    listening(args[0], &mut rina_run(rules, args, stdin, stdout))
}

/// As [`spawn_server`], with its log (`RINA_LOG=info`) written to `log`.
pub fn spawn_logged_server(
    rules: &Path,
    log: &Path,
    args: &[&str],
    stdin: Stdio,
    stdout: Stdio,
) -> Proc {
    let mut cmd = rina_run(rules, args, stdin, stdout);
    cmd.env("RINA_LOG", "info").env("RINA_LOG_FILE", log);
    listening(args[0], &mut cmd)
}

/// Starts `cmd` and waits (bounded) until it listens; panics with its stderr otherwise.
pub fn listening(name: &str, cmd: &mut Command) -> Proc {
    let mut p = Proc::spawn(name, cmd);
    if !wait_for_rina_listener(p.pid(), Duration::from_secs(15)) {
        panic!("{name} never listened: {}", p.kill_and_stderr());
    }
    p
}

/// Random bytes both ways for an nc-to-nc exchange, in files of a test's directory:
/// the client sends `up`, the server `down`.
#[derive(Debug)]
pub struct Exchange {
    /// What the client sends.
    pub up: Vec<u8>,
    /// What the server sends.
    pub down: Vec<u8>,
    dir: PathBuf,
}

impl Exchange {
    /// `len` bytes each way (seeds `seed` and `seed + 1`), written into `dir`.
    pub fn new(dir: &Path, len: usize, seed: u64) -> Self {
        let (up, down) = (random_bytes(len, seed), random_bytes(len, seed + 1));
        std::fs::write(dir.join("up"), &up).expect("write up");
        std::fs::write(dir.join("down"), &down).expect("write down");
        Self {
            up,
            down,
            dir: dir.to_owned(),
        }
    }

    /// The server's stdin (what it sends) and stdout (what it received).
    pub fn server_io(&self) -> (Stdio, Stdio) {
        (
            stdin_from(&self.dir.join("down")),
            stdout_to(&self.dir.join("s.out")),
        )
    }

    /// The client's stdin and stdout.
    pub fn client_io(&self) -> (Stdio, Stdio) {
        (
            stdin_from(&self.dir.join("up")),
            stdout_to(&self.dir.join("c.out")),
        )
    }

    /// Both ends exit with success (bounded) and each received, byte for byte, what
    /// the other sent.
    pub fn check(&self, client: &mut Proc, server: &mut Proc) {
        for (p, who) in [(client, "client"), (server, "server")] {
            let st = p.expect_exit(Duration::from_secs(60));
            assert!(st.success(), "{who}: {st:?}: {}", p.stderr());
        }
        let got = |f: &str| std::fs::read(self.dir.join(f)).expect("read output");
        let up = got("s.out");
        assert!(
            up == self.up,
            "bytes to the server differ: {} of {} bytes",
            up.len(),
            self.up.len()
        );
        let down = got("c.out");
        assert!(
            down == self.down,
            "bytes to the client differ: {} of {} bytes",
            down.len(),
            self.down.len()
        );
    }
}

/// Runs `cmd` (a client under rules, logging to `log`) and checks that it fails the
/// way an unreachable network does: nonzero exit, "Network is unreachable" from the
/// program within 15 s, and `why` in the log.
pub fn expect_unreachable(cmd: &mut Command, log: &Path, why: &str) {
    let start = Instant::now();
    let out = output_within(
        cmd.env("RINA_LOG", "info").env("RINA_LOG_FILE", log),
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("Network is unreachable"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "took {:?}",
        start.elapsed()
    );
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(text.contains(why), "{text}");
}

/// Compiles `tests/programs/SRC` with gcc (and `extra` flags, `-static` say) into
/// `dir`: the binary's path.
pub fn compile_c(dir: &Path, src: &str, extra: &[&str]) -> PathBuf {
    assert!(have("gcc"), "gcc is needed");
    let bin = dir.join(src.trim_end_matches(".c"));
    let out = output_within(
        Command::new("gcc")
            .arg("-O1")
            .args(extra)
            .arg("-o")
            .arg(&bin)
            .arg(program(src))
            .stdin(Stdio::null()),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "gcc {src}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// Starts `rina gateway` with `text` as its rules (`{name}.toml` in `dir`, its stderr
/// and log beside them; `RINA_STRICT` if `strict`) and waits (bounded) until it said
/// what it serves and joined DIF `net`; panics with both otherwise.
pub fn rina_gateway(dir: &Path, name: &str, text: &str, strict: bool) -> Proc {
    let rules = rules(dir, &format!("{name}.toml"), text);
    let (err, log) = (
        dir.join(format!("{name}.err")),
        dir.join(format!("{name}.log")),
    );
    let mut cmd = Command::new(rina());
    cmd.args(["gateway", "-c"])
        .arg(&rules)
        .env("RINA_LOG", "info")
        .env("RINA_LOG_FILE", &log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stdout_to(&err));
    if strict {
        cmd.env("RINA_STRICT", "1");
    }
    let mut p = Proc::spawn(name, &mut cmd);
    let read = |f: &PathBuf| std::fs::read_to_string(f).unwrap_or_default();
    let ready = wait_until(Duration::from_secs(15), || {
        read(&err).contains("rina gateway ") && read(&log).contains("enrolled in DIF net ")
    });
    if !ready {
        let _ = p.kill_and_stderr();
        panic!("{name} never got ready: {}\n{}", read(&err), read(&log));
    }
    p
}

/// Starts `rina node -c RULES` (logging to `log`).
pub fn start_rina_node(rules: &Path, log: &Path) -> Proc {
    Proc::spawn(
        "rina node",
        Command::new(rina())
            .args(["node", "-c"])
            .arg(rules)
            .env("RINA_LOG", "info")
            .env("RINA_LOG_FILE", log)
            .env("RINA_STRICT", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )
}

/// Starts `rina node -c RULES` (logging to `log`) and waits (bounded) until it has
/// joined DIF `dif`; panics with its stderr and log otherwise.
pub fn rina_node(rules: &Path, log: &Path, dif: &str) -> Proc {
    let mut p = start_rina_node(rules, log);
    let joined = wait_until(Duration::from_secs(15), || {
        std::fs::read_to_string(log).is_ok_and(|t| t.contains(&format!("enrolled in DIF {dif} ")))
    });
    if !joined {
        panic!(
            "node never joined {dif}: {}\n{}",
            p.kill_and_stderr(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    p
}

/// A new key pair in `dir`: (private key file, public key).
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let file = dir.join(format!("{name}.key"));
    let out = output_within(
        Command::new(rina())
            .arg("keygen")
            .arg(&file)
            .stdin(Stdio::null()),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (file, String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// This process's CPU time so far (user + system), in µs (for benchmarks' CPU per
/// request).
pub fn cpu_us() -> f64 {
    // SAFETY: getrusage fills the zeroed plain C structure it is given, alive here.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    us(ru.ru_utime) + us(ru.ru_stime)
}

/// CPU time (user + system, all threads) process `pid` used so far, from
/// `/proc/PID/stat` (clock-tick resolution).
pub fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
    // After the parenthesised command name: state (field 3), ..., utime (14), stime (15).
    let rest = stat.rsplit_once(')').expect("stat format").1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
}
