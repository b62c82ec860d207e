//! The benchmark: nc over RINA (UDP shim on loopback) against nc over kernel TCP on
//! loopback, in one run, interleaved, several runs, medians.
//!
//! `cargo run --release -p rina-e2e --bin rina-bench -- [--mib 256] [--runs 5] [--rtt-count 10000] [--http-seconds 3] [--scale-clients 100] [--sections loopback,reqresp,http,ethernet,loss,relays,passthrough,secured,scale,host,gateway,tunnel]`
//!
//! Throughput: `nc -N` sends MiB of zeros into `nc -l` (output discarded); the time is
//! from the client's start to both processes' exit. Round trip: `pingpong` sends 64-byte
//! messages one at a time and reports the median. Ethernet: the same two figures over
//! the Ethernet shim between two network namespaces (see `ethernet.rs`). Relays: the
//! same through chains of relays, and routing convergence in a ring (see `relays.rs`). Scale: short-lived
//! clients through DIFs of 2, 16 and 64 members (see `scale.rs`). HTTP: `httpload` requests (one
//! connection, over RINA one flow, per request) from 8 threads, and from 1 thread (one
//! request at a time: a flow allocation plus a round trip each), and `curl` processes
//! one after another (see `http.rs`). Each against the same over kernel TCP on
//! loopback, interleaved. Secured: these figures over a secured DIF, over the same DIF
//! open and over TCP (see `secured.rs`). Host: short-lived clients, throughput and round
//! trips through a host member against the embedded stack and TCP (see `host.rs`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rina_e2e::*;

mod ethernet;
mod gateway;
mod host;
mod http;
mod loss;
mod relays;
mod reqresp;
mod scale;
mod secured;
mod tunnel;

/// What `--help` prints.
const USAGE: &str = "usage: rina-bench [--mib N] [--runs N] [--rtt-count N] [--http-seconds N] \
[--scale-clients N] [--sections loopback,reqresp,http,ethernet,loss,relays,passthrough,secured,scale,host,gateway,tunnel]

Runs each section against kernel TCP in the same run, several runs, and prints the
medians and ratios (see BENCHMARKS.md). Defaults: --mib 256 --runs 5 --rtt-count 10000
--http-seconds 3 --scale-clients 100, every section. Needs the release build of the
workspace, and root for the ethernet section.
";

/// The options it knows (each takes a value).
const OPTIONS: &[&str] = &[
    "--mib",
    "--runs",
    "--rtt-count",
    "--http-seconds",
    "--scale-clients",
    "--sections",
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return;
    }
    // Anything else it does not know is a mistake: say so rather than run for minutes.
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if !OPTIONS.contains(&a.as_str()) || it.next().is_none() {
            eprint!("rina-bench: unexpected argument {a:?}\n{USAGE}");
            std::process::exit(2);
        }
    }
    let opt = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let mib = opt("--mib", 256);
    let runs = opt("--runs", 5);
    let rtt_count = opt("--rtt-count", 10_000);
    let http_seconds = opt("--http-seconds", 3);
    let scale_clients = opt("--scale-clients", 100);
    let dir = temp_dir();

    let sections = args
        .iter()
        .position(|a| a == "--sections")
        .and_then(|i| args.get(i + 1))
        .map_or(
            "loopback,reqresp,http,ethernet,loss,relays,passthrough,secured,scale,host,gateway,tunnel",
            String::as_str,
        )
        .to_owned();
    let wants = |name: &str| sections.split(',').any(|s| s == name);
    if wants("loopback") {
        loopback_section(&dir, runs, mib, rtt_count);
    }
    if wants("reqresp") {
        reqresp::section(&dir, runs);
    }
    if wants("http") {
        http::section(&dir, runs, http_seconds as u64);
    }
    if wants("ethernet") {
        ethernet::section(&dir, runs, mib, rtt_count);
    }
    if wants("loss") {
        loss::section(&dir, runs);
    }
    if wants("relays") {
        relays::section(&dir, runs, mib, rtt_count);
    }
    if wants("passthrough") {
        passthrough_section(&dir, runs, mib);
    }
    if wants("secured") {
        secured::section(&dir, runs, mib, rtt_count, http_seconds as u64);
    }
    if wants("scale") {
        scale::section(&dir, runs, scale_clients);
    }
    if wants("host") {
        host::section(&dir, runs, scale_clients, mib, rtt_count);
    }
    if wants("gateway") {
        gateway::section(&dir, runs, mib, rtt_count);
    }
    if wants("tunnel") {
        tunnel::section(&dir, runs, mib, rtt_count);
    }
}

/// nc throughput and 64-byte round trips over the UDP shim on loopback, against TCP.
fn loopback_section(dir: &tempfile::TempDir, runs: usize, mib: usize, rtt_count: usize) {
    against_tcp(
        &format!("nc {mib} MiB over loopback"),
        "RINA/UDP shim",
        runs,
        |run| {
            [
                nc_throughput(dir, mib, None),
                nc_throughput(dir, mib, Some((&format!("nc{run}"), &open))),
                rtt(dir, rtt_count, None),
                rtt(dir, rtt_count, Some((&format!("pp{run}"), &open))),
            ]
        },
    );
}

/// Runs `measure` `runs` times (it gives TCP and RINA throughput in Gbit/s, then TCP
/// and RINA round trips in µs, in one run, interleaved) and prints the medians and the
/// ratios RINA/TCP; `rina` names the RINA side.
pub(crate) fn against_tcp(
    title: &str,
    rina: &str,
    runs: usize,
    measure: impl FnMut(usize) -> [f64; 4],
) {
    let [tt, rt, tr, rr] = medians(runs, measure, |run, m| {
        eprintln!(
            "{title}, run {run}: tcp {:.2} Gbit/s, rina {:.2} Gbit/s; rtt tcp {:.1} us, rina {:.1} us",
            m[0], m[1], m[2], m[3]
        );
    });
    println!("{title}, median of {runs} runs:");
    println!(
        "  throughput  TCP {tt:.2} Gbit/s   {rina} {rt:.2} Gbit/s   ratio {:.2}",
        rt / tt
    );
    println!(
        "  64 B RTT    TCP {tr:.1} us   {rina} {rr:.1} us   ratio {:.2}",
        rr / tr
    );
}

/// Runs `measure` `runs` times, shows each run's figures (`show`), and returns the
/// median of each figure.
pub(crate) fn medians<const N: usize>(
    runs: usize,
    mut measure: impl FnMut(usize) -> [f64; N],
    show: impl Fn(usize, &[f64; N]),
) -> [f64; N] {
    let mut series = [(); N].map(|()| Vec::with_capacity(runs));
    for run in 0..runs {
        let m = measure(run);
        show(run, &m);
        for (s, v) in series.iter_mut().zip(m) {
            s.push(v);
        }
    }
    series.map(|s| median(&s))
}

/// What becomes of a member's rules text (`true`: the server's) before it is written:
/// [`open`] leaves it as it is; `secured.rs` adds a `[dif.security]` section.
pub(crate) type Shape<'a> = &'a dyn Fn(String, bool) -> String;

/// The open DIF: rules as [`pair_rules`] writes them.
pub(crate) fn open(text: String, _server: bool) -> String {
    text
}

/// [`pair_rules`] for `app` and TCP `port` through `shape`, written as `{app}-s.toml`
/// and `{app}-c.toml` (the client's UDP port is the kernel's choice).
fn pair_files(
    dir: &tempfile::TempDir,
    app: &str,
    port: u16,
    shape: Shape<'_>,
) -> (PathBuf, PathBuf) {
    let (s, c) = pair_rules(free_udp_port(), 0, port, app);
    (
        rules(dir.path(), &format!("{app}-s.toml"), &shape(s, true)),
        rules(dir.path(), &format!("{app}-c.toml"), &shape(c, false)),
    )
}

/// Pass-through: a program doing only plain TCP under the interposer (rules loaded,
/// none matching) against the same program without it.
fn passthrough_section(dir: &tempfile::TempDir, runs: usize, mib: usize) {
    let rules = pair(dir.path(), "unmatched").client;
    let (mut plain_c, mut pre_c, mut plain_t, mut pre_t) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        plain_c.push(connect_rate(None));
        pre_c.push(connect_rate(Some(&rules)));
        plain_t.push(plain_nc(mib, None));
        pre_t.push(plain_nc(mib, Some(&rules)));
    }
    let (pc, ic) = (median(&plain_c), median(&pre_c));
    let (pt, it) = (median(&plain_t), median(&pre_t));
    println!("pass-through (plain TCP, rules loaded but not matching), median of {runs} runs:");
    println!(
        "  connect+close   without {pc:.0}/s   with interposer {ic:.0}/s   ratio {:.3}",
        ic / pc
    );
    println!(
        "  nc {mib} MiB      without {pt:.2} Gbit/s   with interposer {it:.2} Gbit/s   ratio {:.3}",
        it / pt
    );
}

/// Connections per second of a Python loop doing connect + close to a local TCP
/// listener, optionally under the interposer with `rules`.
fn connect_rate(rules: Option<&std::path::Path>) -> f64 {
    let script = r#"
import socket, time
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(4096)
addr = l.getsockname(); n = 3000
t = time.perf_counter()
for _ in range(n):
    s = socket.create_connection(addr); s.close(); l.accept()[0].close()
print(n / (time.perf_counter() - t))
"#;
    let mut c = Command::new("python3");
    c.args(["-c", script]);
    if let Some(r) = rules {
        c.env("LD_PRELOAD", interposer()).env("RINA_CONFIG", r);
    }
    let out = c.output().expect("python3");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("connect_rate: {}", String::from_utf8_lossy(&out.stderr)))
}

/// Gbit/s of nc over plain TCP, optionally with both ends under the interposer.
fn plain_nc(mib: usize, rules: Option<&std::path::Path>) -> f64 {
    let port = free_tcp_port();
    let p = port.to_string();
    let bytes = mib << 20;
    let mut server = Command::new("nc");
    server
        .args(["-l", "127.0.0.1", &p])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let mut env = String::new();
    if let Some(r) = rules {
        server.env("LD_PRELOAD", interposer()).env("RINA_CONFIG", r);
        env = format!(
            "LD_PRELOAD={} RINA_CONFIG={} ",
            interposer().display(),
            r.display()
        );
    }
    let mut server = Proc::spawn("nc -l", &mut server);
    assert!(
        wait_until(Duration::from_secs(5), || tcp_port_in_use(port)),
        "nc did not listen"
    );
    let start = Instant::now();
    let cmd = format!("head -c {bytes} /dev/zero | {env}nc -N 127.0.0.1 {p}");
    assert!(Command::new("sh")
        .args(["-c", &cmd])
        .status()
        .expect("client")
        .success());
    server.expect_exit(Duration::from_secs(120));
    (bytes as f64 * 8.0) / start.elapsed().as_secs_f64() / 1e9
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

/// Gbit/s of one nc transfer; `rina`: Some((app, shape)) to go over RINA (see
/// [`pair_files`]).
pub(crate) fn nc_throughput(
    dir: &tempfile::TempDir,
    mib: usize,
    rina: Option<(&str, Shape<'_>)>,
) -> f64 {
    let port = free_tcp_port();
    let p = port.to_string();
    let bytes = mib << 20;
    let shell_client = format!("head -c {bytes} /dev/zero | {{}} nc -N 127.0.0.1 {p}");
    let (mut server, client_cmd) = match rina {
        None => {
            let s = Proc::spawn(
                "nc -l",
                Command::new("nc")
                    .args(["-l", "127.0.0.1", &p])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null()),
            );
            assert!(
                wait_until(Duration::from_secs(5), || tcp_port_in_use(port)),
                "tcp nc did not listen"
            );
            (s, shell_client.replace("{}", ""))
        }
        Some((app, shape)) => {
            let (s_rules, c_rules) = pair_files(dir, app, port, shape);
            let s = Proc::spawn(
                "rina nc -l",
                &mut rina_run(
                    &s_rules,
                    &["nc", "-l", "127.0.0.1", &p],
                    Stdio::null(),
                    Stdio::null(),
                ),
            );
            assert!(
                wait_for_rina_listener(s.pid(), Duration::from_secs(10)),
                "rina nc did not listen"
            );
            let runner = format!(
                "{} run -c {} --",
                rina_e2e::rina().display(),
                c_rules.display()
            );
            (s, shell_client.replace("{}", &runner))
        }
    };
    let start = Instant::now();
    let st = Command::new("sh")
        .args(["-c", &client_cmd])
        .stdout(Stdio::null())
        .status()
        .expect("client");
    assert!(st.success(), "client failed");
    server.expect_exit(Duration::from_secs(120));
    let secs = start.elapsed().as_secs_f64();
    (bytes as f64 * 8.0) / secs / 1e9
}

/// Median 64-byte round trip in µs; `rina` as for [`nc_throughput`].
pub(crate) fn rtt(dir: &tempfile::TempDir, count: usize, rina: Option<(&str, Shape<'_>)>) -> f64 {
    let pingpong = bin_dir().join("pingpong");
    let port = free_tcp_port();
    let addr = format!("127.0.0.1:{port}");
    let pp = pingpong.to_str().expect("path");
    let cnt = count.to_string();
    let (_server, out) = match rina {
        None => {
            let s = Proc::spawn("pingpong server", Command::new(pp).args(["server", &addr]));
            assert!(
                wait_until(Duration::from_secs(5), || tcp_port_in_use(port)),
                "pingpong did not listen"
            );
            (s, Command::new(pp).args(["client", &addr, &cnt]).output())
        }
        Some((app, shape)) => {
            let (s_rules, c_rules) = pair_files(dir, app, port, shape);
            let s = Proc::spawn(
                "rina pingpong server",
                &mut rina_run(
                    &s_rules,
                    &[pp, "server", &addr],
                    Stdio::null(),
                    Stdio::null(),
                ),
            );
            assert!(
                wait_for_rina_listener(s.pid(), Duration::from_secs(10)),
                "rina pingpong did not listen"
            );
            (
                s,
                rina_run(
                    &c_rules,
                    &[pp, "client", &addr, &cnt],
                    Stdio::null(),
                    Stdio::piped(),
                )
                .output(),
            )
        }
    };
    pingpong_median(&out.expect("pingpong client"))
}

/// The median round trip in µs that a pingpong client printed.
pub(crate) fn pingpong_median(out: &std::process::Output) -> f64 {
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("median_us="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "pingpong printed {text:?}, stderr {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}
