//! The HTTP section of the benchmark: `httpload` requests (one connection, over RINA
//! one flow, per request) from 8 threads and from 1 thread, and `curl` processes one
//! after another, over RINA against kernel TCP on loopback, with the CPU (client and
//! server processes) per request; and the runners for them, which take the RINA side's
//! rules through a [`Shape`] (the secured section uses them).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rina_e2e::*;

use super::reqresp::{figure, proc_cpu_us};
use super::{median, open, pair_files, Shape};

/// Requests per second over HTTP (8 threads, 1 thread), curl processes per second,
/// each with the CPU (client + server processes) per request: RINA against TCP,
/// interleaved, medians.
pub(crate) fn section(dir: &tempfile::TempDir, runs: usize, seconds: u64) {
    // [what][0 = TCP, 1 = RINA] -> (per second, CPU µs per request) per run.
    let mut m: [[Vec<(f64, f64)>; 2]; 3] = Default::default();
    let secs = seconds.to_string();
    for run in 0..runs {
        for (i, rina) in [None, Some::<Shape<'_>>(&open)].into_iter().enumerate() {
            let tag = format!("http{run}{i}");
            let x8 = ["client", "{addr}", &secs, "8"];
            m[0][i].push(httpload_cpu(dir, &tag, rina, &x8));
            let x1 = ["client", "{addr}", &secs, "1"];
            m[1][i].push(httpload_cpu(dir, &format!("{tag}c"), rina, &x1));
            m[2][i].push(curl_rate_cpu(dir, &format!("{tag}u"), rina, 100));
        }
        let f = |w: usize, i: usize| m[w][i][run];
        eprintln!(
            "run {run}: http x8 tcp {:.0} rina {:.0} req/s; x1 tcp {:.0} rina {:.0} req/s; curl tcp {:.1} rina {:.1}/s; \
             us CPU/req x8 tcp {:.1} rina {:.1}, x1 tcp {:.1} rina {:.1}, curl tcp {:.0} rina {:.0}",
            f(0, 0).0, f(0, 1).0, f(1, 0).0, f(1, 1).0, f(2, 0).0, f(2, 1).0,
            f(0, 0).1, f(0, 1).1, f(1, 0).1, f(1, 1).1, f(2, 0).1, f(2, 1).1
        );
    }
    println!("HTTP, one connection (one flow) per request, median of {runs} runs:");
    for (what, v) in [
        ("8 client threads, 1 KiB answers", &m[0]),
        ("1 client thread (one at a time) ", &m[1]),
        ("curl processes, one at a time   ", &m[2]),
    ] {
        let med =
            |i: usize, k: usize| median(&v[i].iter().map(|f| [f.0, f.1][k]).collect::<Vec<_>>());
        let (t, r) = (med(0, 0), med(1, 0));
        println!(
            "  {what}  TCP {t:.1} req/s   RINA {r:.1} req/s   ratio {:.2}   CPU/req TCP {:.1} us   RINA {:.1} us",
            r / t,
            med(0, 1),
            med(1, 1)
        );
    }
}

/// A server under rules (or plain) for `port`: the server process and, for RINA, the
/// client's rules.
fn serve(
    dir: &tempfile::TempDir,
    tag: &str,
    rina: Option<Shape<'_>>,
    port: u16,
    args: &[&str],
) -> (Proc, Option<PathBuf>) {
    let Some(shape) = rina else {
        let s = Proc::spawn(
            args[0],
            Command::new(args[0])
                .args(&args[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
        );
        assert!(
            wait_until(Duration::from_secs(5), || tcp_port_in_use(port)),
            "{} did not listen",
            args[0]
        );
        return (s, None);
    };
    let (s_rules, c_rules) = pair_files(dir, tag, port, shape);
    let s = Proc::spawn(
        args[0],
        &mut rina_run(&s_rules, args, Stdio::null(), Stdio::null()),
    );
    assert!(
        wait_for_rina_listener(s.pid(), Duration::from_secs(10)),
        "{} did not listen",
        args[0]
    );
    (s, Some(c_rules))
}

/// An `httpload server` (1 KiB answers) on a fresh port, under rules or plain: the
/// server process, for RINA the client's rules, and its address.
fn load_server(
    dir: &tempfile::TempDir,
    tag: &str,
    rina: Option<Shape<'_>>,
) -> (Proc, Option<PathBuf>, String) {
    let load = bin_dir().join("httpload");
    let port = free_tcp_port();
    let addr = format!("127.0.0.1:{port}");
    let args = [load.to_str().expect("path"), "server", &addr, "1024"];
    let (server, c_rules) = serve(dir, tag, rina, port, &args);
    (server, c_rules, addr)
}

/// Runs `httpload` against an `httpload server`; returns the figure after `key`.
pub(crate) fn httpload(
    dir: &tempfile::TempDir,
    tag: &str,
    rina: Option<Shape<'_>>,
    client: &[&str],
    key: &str,
) -> f64 {
    let (text, _) = httpload_text(dir, tag, rina, client);
    figure(&text, key).unwrap_or_else(|| panic!("httpload printed {text:?}"))
}

/// Runs `httpload` against an `httpload server`: requests per second and CPU µs per
/// request, the client's and the server's (from /proc, over the client's run).
fn httpload_cpu(
    dir: &tempfile::TempDir,
    tag: &str,
    rina: Option<Shape<'_>>,
    client: &[&str],
) -> (f64, f64) {
    let (text, server_cpu) = httpload_text(dir, tag, rina, client);
    let key = |k: &str| figure(&text, k).unwrap_or_else(|| panic!("httpload printed {text:?}"));
    let (rps, cpu, ok) = (key("rps="), key("cpu_us="), key("ok="));
    (rps, (cpu + server_cpu) / ok.max(1.0))
}

/// Runs `httpload` against an `httpload server`: what the client printed, and the
/// server's CPU µs over the client's run.
fn httpload_text(
    dir: &tempfile::TempDir,
    tag: &str,
    rina: Option<Shape<'_>>,
    client: &[&str],
) -> (String, f64) {
    let (server, c_rules, addr) = load_server(dir, tag, rina);
    let load = bin_dir().join("httpload");
    let mut args = vec![load.to_str().expect("path")];
    let client: Vec<String> = client.iter().map(|a| a.replace("{addr}", &addr)).collect();
    args.extend(client.iter().map(String::as_str));
    let cpu0 = proc_cpu_us(server.pid());
    // Bounded like every wait on a child (a run is seconds long).
    let out = output_within(
        &mut over(c_rules.as_deref(), &args),
        Duration::from_secs(300),
    );
    let server_cpu = proc_cpu_us(server.pid()) - cpu0;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("rps="),
        "httpload printed {text:?}, stderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (text, server_cpu)
}

/// `count` curl processes one after another (each starts, joins the DIF when over
/// RINA, makes one flow, fetches 1 KiB): processes per second.
pub(crate) fn curl_rate(
    dir: &tempfile::TempDir,
    tag: &str,
    rina: Option<Shape<'_>>,
    count: usize,
) -> f64 {
    curl_rate_cpu(dir, tag, rina, count).0
}

/// [`curl_rate`], and the CPU µs per request: the curl processes' (reaped children of
/// this process, getrusage) and the server's (from /proc).
fn curl_rate_cpu(
    dir: &tempfile::TempDir,
    tag: &str,
    rina: Option<Shape<'_>>,
    count: usize,
) -> (f64, f64) {
    let (server, c_rules, addr) = load_server(dir, tag, rina);
    let (server0, children0) = (proc_cpu_us(server.pid()), children_cpu_us());
    let url = format!("http://{addr}/");
    let args = ["curl", "-sS", "-o", "/dev/null", "--max-time", "10", &url];
    let start = Instant::now();
    for _ in 0..count {
        let st = match &c_rules {
            None => Command::new("curl").args(&args[1..]).status(),
            Some(r) => rina_run(r, &args, Stdio::null(), Stdio::null()).status(),
        }
        .expect("curl");
        assert!(st.success(), "curl failed");
    }
    let rate = count as f64 / start.elapsed().as_secs_f64();
    let cpu = proc_cpu_us(server.pid()) - server0 + children_cpu_us() - children0;
    (rate, cpu / count as f64)
}

/// The CPU time (user + system) of this process's reaped children so far, in µs.
fn children_cpu_us() -> f64 {
    // SAFETY: getrusage fills the zeroed plain C structure it is given, alive here.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru
    };
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    us(ru.ru_utime) + us(ru.ru_stime)
}
