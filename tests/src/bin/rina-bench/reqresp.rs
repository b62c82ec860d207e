//! The request/response section of the benchmark: `reqresp` (64-byte requests and
//! responses over persistent connections, plain and pipelined, 1 and 20 connections)
//! over RINA (UDP shim on loopback) against kernel TCP on loopback, interleaved:
//! requests per second and CPU (client + server processes) per request. Also the
//! reading of a process's CPU time from /proc, which the HTTP section uses too.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use rina_e2e::*;

use super::{median, open, pair_files};

/// How long each case counts (after the client's warm-up).
const SECONDS: u64 = 3;

/// The cases: (connections, requests outstanding on each, quiet connections held
/// open beside them: a server's idle keep-alive clients, which must not slow the
/// others).
const CASES: [(usize, usize, usize); 5] =
    [(1, 1, 0), (1, 16, 0), (20, 1, 0), (20, 16, 0), (1, 1, 500)];

/// One measurement: requests per second, CPU µs (client + server) per request.
type Figure = (f64, f64);

/// Requests per second and CPU per request for each case, TCP then RINA, interleaved,
/// `runs` times; prints each run on stderr and the medians on stdout.
pub(crate) fn section(dir: &tempfile::TempDir, runs: usize) {
    // [case][0 = TCP, 1 = RINA] -> one figure per run.
    let mut all: Vec<[Vec<Figure>; 2]> = CASES.iter().map(|_| [vec![], vec![]]).collect();
    for run in 0..runs {
        for (c, &(conns, depth, idle)) in CASES.iter().enumerate() {
            let tcp = measure(dir, None, conns, depth, idle);
            let rina = measure(dir, Some(&format!("rr{run}{c}")), conns, depth, idle);
            eprintln!(
                "reqresp run {run}, {}: tcp {:.0} req/s {:.1} us/req; rina {:.0} req/s {:.1} us/req",
                case_name(conns, depth, idle),
                tcp.0,
                tcp.1,
                rina.0,
                rina.1
            );
            all[c][0].push(tcp);
            all[c][1].push(rina);
        }
    }
    println!(
        "64 B request/response over persistent connections, {SECONDS} s each, median of {runs} runs [min-max]:"
    );
    println!("| case | TCP req/s | RINA req/s | ratio | TCP us CPU/req | RINA us CPU/req |");
    println!("|---|---|---|---|---|---|");
    for (&(conns, depth, idle), [t, r]) in CASES.iter().zip(&all) {
        let rate = |v: &[Figure]| v.iter().map(|f| f.0).collect::<Vec<_>>();
        let cpu = |v: &[Figure]| v.iter().map(|f| f.1).collect::<Vec<_>>();
        let ratio = median(&rate(r)) / median(&rate(t));
        println!(
            "| {} | {} | {} | {ratio:.2} | {} | {} |",
            case_name(conns, depth, idle),
            spread(&rate(t), 0),
            spread(&rate(r), 0),
            spread(&cpu(t), 1),
            spread(&cpu(r), 1)
        );
    }
}

/// How a case reads in the table.
fn case_name(conns: usize, depth: usize, idle: usize) -> String {
    match idle {
        0 => format!("{conns} conn x depth {depth}"),
        n => format!("{conns} conn x depth {depth}, {n} idle"),
    }
}

/// `median [min–max]` of `v` with `places` decimals.
pub(crate) fn spread(v: &[f64], places: usize) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.places$} [{min:.places$}–{max:.places$}]", median(v))
}

/// CPU µs process `pid` used so far (see [`process_cpu`]).
pub(crate) fn proc_cpu_us(pid: u32) -> f64 {
    process_cpu(pid).as_secs_f64() * 1e6
}

/// The figure after `key` in `text` (a `key=value` word).
pub(crate) fn figure(text: &str, key: &str) -> Option<f64> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|v| v.parse().ok())
}

/// A `reqresp server` on a fresh port, plain or (`tag`: rules files) over RINA: the
/// server, its address and, over RINA, the client's rules.
fn start_server(dir: &tempfile::TempDir, tag: Option<&str>) -> (Proc, String, Option<PathBuf>) {
    let bin = bin_dir().join("reqresp");
    let bin = bin.to_str().expect("path");
    let port = free_tcp_port();
    let addr = format!("127.0.0.1:{port}");
    let Some(tag) = tag else {
        let s = Proc::spawn(
            "reqresp server",
            Command::new(bin)
                .args(["server", &addr])
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
        );
        assert!(
            wait_until(Duration::from_secs(5), || tcp_port_in_use(port)),
            "reqresp server did not listen"
        );
        return (s, addr, None);
    };
    let (s_rules, c_rules) = pair_files(dir, tag, port, &open);
    let s = Proc::spawn(
        "rina reqresp server",
        &mut rina_run(
            &s_rules,
            &[bin, "server", &addr],
            Stdio::null(),
            Stdio::null(),
        ),
    );
    assert!(
        wait_for_rina_listener(s.pid(), Duration::from_secs(10)),
        "rina reqresp server did not listen"
    );
    (s, addr, Some(c_rules))
}

/// One case, plain TCP or (`tag`) over RINA: requests per second and CPU µs per
/// request, the client's and the server's over the client's counted seconds.
fn measure(
    dir: &tempfile::TempDir,
    tag: Option<&str>,
    conns: usize,
    depth: usize,
    idle: usize,
) -> Figure {
    let (mut server, addr, c_rules) = start_server(dir, tag);
    let bin = bin_dir().join("reqresp");
    let (secs, conns, depth) = (SECONDS.to_string(), conns.to_string(), depth.to_string());
    let idle = idle.to_string();
    let args = [
        bin.to_str().expect("path"),
        "client",
        &addr,
        &secs,
        &conns,
        &depth,
        &idle,
    ];
    let mut client = Proc::spawn("reqresp client", &mut over(c_rules.as_deref(), &args));
    let fail = |client: &mut Proc, server: &mut Proc, what: &str| -> ! {
        panic!(
            "reqresp client {what}; client stderr: {}; server stderr: {}",
            client.kill_and_stderr(),
            server.kill_and_stderr()
        )
    };
    let limit = Duration::from_secs(30);
    if client.stdout_until("measuring\n", limit).is_none() {
        fail(&mut client, &mut server, "did not start counting");
    }
    let server_cpu0 = proc_cpu_us(server.pid());
    let Some(text) = client.stdout_until("\n", limit + Duration::from_secs(SECONDS)) else {
        fail(&mut client, &mut server, "did not report");
    };
    let server_cpu = proc_cpu_us(server.pid()) - server_cpu0;
    if client.wait_timeout(limit).is_none() {
        fail(&mut client, &mut server, "did not exit");
    }
    let (Some(rps), Some(cpu), Some(n)) = (
        figure(&text, "rps="),
        figure(&text, "cpu_us="),
        figure(&text, "requests="),
    ) else {
        fail(&mut client, &mut server, &format!("printed {text:?}"));
    };
    (rps, (cpu + server_cpu) / n.max(1.0))
}
