//! The host section of the benchmark (issue 13): programs served by a host member
//! (`rina node` with `[host]`; the programs' rules say `stack = "host"`, so they run
//! no stack of their own) against the embedded stack (each program its own) and
//! kernel TCP, in one run, each round interleaving the three, medians over the rounds.
//!
//! Short-lived clients: `nc -N` processes one after another, each sending 64 bytes to
//! the threaded Python echo server and checking the echo (as in `scale.rs`): over TCP;
//! embedded, each client its own stack joining as a leaf of a `rina node` member
//! bootstrapping DIF `net` over UDP on loopback (N = 2 as in `scale.rs`: the member
//! and the server's stack); and with the server and every client served by one host
//! member. A client's time (join + connect latency: spawn, join or open a session,
//! allocate the flow, the echo, teardown, exit) is measured for each client on its
//! own, not derived from the rate. Then nc throughput (MiB of zeros one way, bytes
//! counted at the receiver) and 64-byte round trips (`pingpong`): over TCP, embedded
//! (a server that bootstraps and a client that enrolls through it, as in the loopback
//! section) and through the host member. Each round starts its own members on fresh
//! ports and a fresh abstract socket name; every process is killed when dropped.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rina_e2e::many::{udp_member, ECHO_SERVER};
use rina_e2e::*;

use super::median;

/// How long one client may take before the run fails.
const CLIENT_LIMIT: Duration = Duration::from_secs(30);

/// How long one transfer or round-trip series may take before the run fails.
const TRANSFER_LIMIT: Duration = Duration::from_secs(120);

/// The variants, in the order of a round's figures.
const VARIANTS: [&str; 3] = ["TCP", "embedded", "host member"];

/// One round's figures of one variant: clients/s, median ms per client, MB/s of nc,
/// median 64 B round trip in µs, clients that failed.
type Figures = [f64; 5];

/// The rules of a program served by the host member at `@socket`: connect and listen
/// on 127.0.0.1:`port` go to `echo` in DIF `net`.
fn host_program(dir: &Path, name: &str, socket: &str, port: u16) -> PathBuf {
    let text = format!(
        "[settings]\nstack = \"host\"\nhost-socket = \"@{socket}\"\n\n\
         [[connect]]\nto = \"127.0.0.1:{port}\"\ndif = \"net\"\napp = \"echo\"\n\n\
         [[listen]]\non = \"127.0.0.1:{port}\"\ndif = \"net\"\napp = \"echo\"\n"
    );
    rules(dir, name, &text)
}

/// Connect (`listen`: false) or listen rules for `echo` at 127.0.0.1:`port`.
fn app_rule(listen: bool, port: u16) -> String {
    let (key, field) = if listen {
        ("listen", "on")
    } else {
        ("connect", "to")
    };
    format!("[[{key}]]\n{field} = \"127.0.0.1:{port}\"\ndif = \"net\"\napp = \"echo\"\n")
}

/// A `rina node` member bootstrapping DIF `net` over UDP on loopback (with `[host]`
/// at `@socket` if given), up and, if a host member, listening: (it, its UDP port).
fn member(dir: &Path, tag: &str, socket: Option<&str>) -> (Proc, u16) {
    let udp = free_udp_port();
    let host = socket.map_or(String::new(), |s| format!("[host]\nsocket = \"@{s}\"\n"));
    let text = udp_member(udp, None, &host);
    let log = dir.join(format!("{tag}.log"));
    let mut node = start_rina_node(&rules(dir, &format!("{tag}.toml"), &text), &log);
    let up = || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("enrolled in DIF net "))
            && socket.is_none_or(|s| !abstract_listeners_of(node.pid(), s).is_empty())
    };
    if !wait_until(Duration::from_secs(15), up) {
        panic!(
            "{tag}: the member never came up: {}\n{}",
            node.kill_and_stderr(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    (node, udp)
}

/// Waits (bounded) until member `pid` lists `echo` in its directory; says so if not.
fn wait_for_echo(pid: u32, tag: &str) {
    let known = || {
        ctl_json(pid)["difs"][0]["directory"]
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["app"] == "echo"))
    };
    if !wait_until(Duration::from_secs(15), known) {
        eprintln!(
            "{tag}: member {pid} never listed echo in its directory: {:#}",
            ctl_json(pid)["difs"][0]
        );
    }
}

/// Starts a server (`args`, under `rules` or plainly) on `port` and waits (bounded)
/// until it listens; panics with its stderr otherwise.
fn server(rules: Option<&Path>, args: &[&str], port: u16, stdout: Stdio) -> Proc {
    let mut p = Proc::spawn(args[0], over(rules, args).stdout(stdout));
    let pid = p.pid();
    let ok = match rules {
        Some(_) => wait_for_rina_listener(pid, Duration::from_secs(15)),
        None => wait_until(Duration::from_secs(15), || tcp_port_in_use(port)),
    };
    if !ok {
        panic!("{} never listened: {}", args[0], p.kill_and_stderr());
    }
    p
}

/// Runs `k` clients one after another, each `nc -N 127.0.0.1 PORT` (under `rules` or
/// plainly) sending the 64 bytes of `input` and checking the echo: (clients per
/// second, median ms per client, clients that failed; the first failure is shown).
fn clients(k: usize, port: u16, rules: Option<&Path>, input: &Path, tag: &str) -> [f64; 3] {
    let sent = std::fs::read(input).expect("input");
    let p = port.to_string();
    let args = ["nc", "-N", "127.0.0.1", p.as_str()];
    let (mut times, mut failed) = (Vec::with_capacity(k), 0);
    let start = Instant::now();
    for i in 0..k {
        let stdin = stdin_from(input);
        let t = Instant::now();
        let out = output_within(over(rules, &args).stdin(stdin), CLIENT_LIMIT);
        times.push(t.elapsed().as_secs_f64() * 1e3);
        if !(out.status.success() && out.stdout == sent) {
            failed += 1;
            if failed == 1 {
                eprintln!(
                    "{tag}: client {i} failed: {}, echo {:?}, stderr {}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
    let rate = k as f64 / start.elapsed().as_secs_f64();
    [rate, median(&times), failed as f64]
}

/// The clients of [`clients`] against the echo server on a fresh port, the server
/// under `server_rules` and the clients under `client_rules` (both `None`: TCP); the
/// server is up (and `member`, if given, lists it) before the first client.
fn clients_round(
    k: usize,
    rules: Option<(&Path, &Path)>,
    port: u16,
    member: Option<u32>,
    input: &Path,
    tag: &str,
) -> [f64; 3] {
    let p = port.to_string();
    let _server = server(
        rules.map(|r| r.0),
        &["python3", "-c", ECHO_SERVER, &p],
        port,
        Stdio::null(),
    );
    if let Some(pid) = member {
        wait_for_echo(pid, tag);
    }
    clients(k, port, rules.map(|r| r.1), input, tag)
}

/// MB/s (10^6 bytes) of `nc -N` sending `mib` MiB of zeros into `nc -l` (whose output
/// is counted), from the client's start to both ends' exit; the server under
/// `rules.0`, the client under `rules.1` (`None`: TCP). Says if the count is wrong.
fn nc_mbps(mib: usize, rules: Option<(&Path, &Path)>, port: u16, tag: &str) -> f64 {
    let p = port.to_string();
    let bytes = mib << 20;
    let s_rules = rules.map(|r| r.0);
    let mut srv = server(
        s_rules,
        &["nc", "-l", "127.0.0.1", &p],
        port,
        Stdio::piped(),
    );
    let mut out = srv.take_stdout().expect("piped");
    let counted = std::thread::spawn(move || {
        let (mut buf, mut n) = (vec![0u8; 1 << 16], 0usize);
        while let Ok(m) = out.read(&mut buf) {
            if m == 0 {
                break;
            }
            n += m;
        }
        n
    });
    let runner = rules.map_or(String::new(), |r| {
        format!("{} run -c {} --", rina().display(), r.1.display())
    });
    let cmd = format!("head -c {bytes} /dev/zero | {runner} nc -N 127.0.0.1 {p}");
    let start = Instant::now();
    let client = output_within(
        Command::new("sh").args(["-c", &cmd]).stdin(Stdio::null()),
        TRANSFER_LIMIT,
    );
    let status = srv.expect_exit(TRANSFER_LIMIT);
    let secs = start.elapsed().as_secs_f64();
    let got = counted.join().unwrap_or(0);
    if !client.status.success() || !status.success() || got != bytes {
        eprintln!(
            "{tag}: nc {mib} MiB: client {}, server {status}, {got} of {bytes} bytes received; client stderr {}; server stderr {}",
            client.status,
            String::from_utf8_lossy(&client.stderr),
            srv.stderr()
        );
    }
    got as f64 / secs / 1e6
}

/// Median 64-byte round trip in µs of `pingpong` (`count` round trips), the server
/// under `rules.0` and the client under `rules.1` (`None`: TCP).
fn rtt_us(count: usize, rules: Option<(&Path, &Path)>, port: u16, tag: &str) -> f64 {
    let pingpong = bin_dir().join("pingpong");
    let pp = pingpong.to_str().expect("path");
    let addr = format!("127.0.0.1:{port}");
    let cnt = count.to_string();
    let _srv = server(
        rules.map(|r| r.0),
        &[pp, "server", &addr],
        port,
        Stdio::null(),
    );
    let out = output_within(
        &mut over(rules.map(|r| r.1), &[pp, "client", &addr, &cnt]),
        TRANSFER_LIMIT,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("median_us="))
        .and_then(|v| v.parse().ok());
    v.unwrap_or_else(|| {
        eprintln!(
            "{tag}: pingpong printed {text:?}, {}, stderr {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        f64::NAN
    })
}

/// The rules of both ends for one measurement on a fresh port: `None` for TCP;
/// embedded: a server bootstrapping DIF `net` and a client enrolling through it;
/// host: both served by the host member at `@socket`.
fn ends(dir: &Path, tag: &str, variant: usize, socket: &str) -> (Option<(PathBuf, PathBuf)>, u16) {
    let port = free_tcp_port();
    let files = match variant {
        0 => None,
        1 => {
            let (s, c) = pair_rules(free_udp_port(), 0, port, "echo");
            Some((
                rules(dir, &format!("{tag}-s.toml"), &s),
                rules(dir, &format!("{tag}-c.toml"), &c),
            ))
        }
        _ => {
            let r = host_program(dir, &format!("{tag}-h.toml"), socket, port);
            Some((r.clone(), r))
        }
    };
    (files, port)
}

/// What a round measures.
struct Plan<'a> {
    dir: &'a Path,
    k: usize,
    mib: usize,
    rtt_count: usize,
    input: &'a Path,
}

/// One round: the three variants' clients, then throughputs, then round trips, the
/// variants in an order rotated by `run`. Starts its members and stops them after.
fn round(plan: &Plan<'_>, run: usize) -> [Figures; 3] {
    let dir = plan.dir;
    let socket = format!("rina-bench-host/{}/{run}", std::process::id());
    let (host, _) = member(dir, &format!("host{run}-member"), Some(&socket));
    let (emb, emb_udp) = member(dir, &format!("host{run}-emb"), None);
    let mut figs = [[0.0; 5]; 3];
    let order: Vec<usize> = (0..3).map(|i| (i + run) % 3).collect();
    for &v in &order {
        let tag = format!("host{run}-{}", ["tcp", "emb", "host"][v]);
        let port = free_tcp_port();
        let (files, member_pid) = match v {
            0 => (None, None),
            1 => {
                let text = |listen, via| udp_member(0, Some(via), &app_rule(listen, port));
                let s = rules(dir, &format!("{tag}-cs.toml"), &text(true, emb_udp));
                let c = rules(dir, &format!("{tag}-cc.toml"), &text(false, emb_udp));
                (Some((s, c)), Some(emb.pid()))
            }
            _ => {
                let r = host_program(dir, &format!("{tag}-cl.toml"), &socket, port);
                (Some((r.clone(), r)), Some(host.pid()))
            }
        };
        let r = files.as_ref().map(|(s, c)| (s.as_path(), c.as_path()));
        let [rate, ms, failed] = clients_round(plan.k, r, port, member_pid, plan.input, &tag);
        figs[v][0] = rate;
        figs[v][1] = ms;
        figs[v][4] = failed;
    }
    for &v in &order {
        let tag = format!("host{run}-nc{v}");
        let (files, port) = ends(dir, &tag, v, &socket);
        let r = files.as_ref().map(|(s, c)| (s.as_path(), c.as_path()));
        figs[v][2] = nc_mbps(plan.mib, r, port, &tag);
    }
    for &v in &order {
        let tag = format!("host{run}-pp{v}");
        let (files, port) = ends(dir, &tag, v, &socket);
        let r = files.as_ref().map(|(s, c)| (s.as_path(), c.as_path()));
        figs[v][3] = rtt_us(plan.rtt_count, r, port, &tag);
    }
    figs
}

/// `median [min–max]` of `v`, with `prec` decimals.
fn spread(v: &[f64], prec: usize) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.prec$} [{min:.prec$}–{max:.prec$}]", median(v))
}

/// Short-lived clients, throughput and round trips through a host member, against
/// the embedded stack and TCP: `k` clients per round, `mib` MiB, `rtt_count` round
/// trips, median of `runs` rounds.
pub(crate) fn section(
    dir: &tempfile::TempDir,
    runs: usize,
    k: usize,
    mib: usize,
    rtt_count: usize,
) {
    let input = dir.path().join("host-in");
    std::fs::write(&input, format!("{:<63}\n", "sixty-four bytes to echo")).expect("input");
    let plan = Plan {
        dir: dir.path(),
        k,
        mib,
        rtt_count,
        input: &input,
    };
    // series[variant][figure] over the rounds.
    let mut series: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); 5]; 3];
    for run in 0..runs {
        let figs = round(&plan, run);
        for (v, f) in figs.iter().enumerate() {
            eprintln!(
                "host run {run}, {}: {:.1} clients/s ({:.1} ms median), {:.0} MB/s, rtt {:.1} us, {} clients failed",
                VARIANTS[v], f[0], f[1], f[2], f[3], f[4]
            );
            for (s, x) in series[v].iter_mut().zip(f) {
                s.push(*x);
            }
        }
    }
    print_table(&series, runs, k, mib, rtt_count);
}

/// Prints the medians (with each figure's spread over the rounds) and the ratios to TCP.
fn print_table(series: &[Vec<Vec<f64>>], runs: usize, k: usize, mib: usize, rtt_count: usize) {
    println!(
        "host member: {k} short-lived nc clients one after another (64 B echoed), nc {mib} MiB one way, {rtt_count} 64 B round trips; TCP, embedded stack (a stack per program, over UDP on loopback) and host member (stack = \"host\", one rina node serving server and clients); median [min–max] of {runs} runs:"
    );
    println!("| variant | clients/s | vs TCP | ms per client (measured, median) | 1000/rate ms | nc MB/s | vs TCP | 64 B RTT us | vs TCP | failed clients |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let med = |v: usize, f: usize| median(&series[v][f]);
    for (v, name) in VARIANTS.iter().enumerate() {
        let s = &series[v];
        println!(
            "| {name} | {} | {:.2} | {} | {:.1} | {} | {:.2} | {} | {:.2} | {} |",
            spread(&s[0], 1),
            med(v, 0) / med(0, 0),
            spread(&s[1], 1),
            1000.0 / med(v, 0),
            spread(&s[2], 0),
            med(v, 2) / med(0, 2),
            spread(&s[3], 1),
            med(v, 3) / med(0, 3),
            s[4].iter().sum::<f64>()
        );
    }
    println!(
        "  host member / embedded: clients/s {:.2}, ms per client {:.2}, MB/s {:.2}, RTT {:.2}",
        med(2, 0) / med(1, 0),
        med(2, 1) / med(1, 1),
        med(2, 2) / med(1, 2),
        med(2, 3) / med(1, 3)
    );
}
