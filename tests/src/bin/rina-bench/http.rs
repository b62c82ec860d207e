//! The HTTP section of the benchmark: `httpload` requests (one connection, over RINA
//! one flow, per request) from 8 threads and from 1 thread, and `curl` processes one
//! after another, over RINA against kernel TCP on loopback; and the runners for them,
//! which take the RINA side's rules through a [`Shape`] (the secured section uses them).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rina_e2e::*;

use super::{median, open, pair_files, Shape};

/// Requests per second over HTTP (8 threads, 1 thread), curl processes per second:
/// RINA against TCP, interleaved, medians.
pub(crate) fn section(dir: &tempfile::TempDir, runs: usize, seconds: u64) {
    let (mut rps, mut alloc, mut curls) = (
        [Vec::new(), Vec::new()],
        [Vec::new(), Vec::new()],
        [Vec::new(), Vec::new()],
    );
    for run in 0..runs {
        for (i, rina) in [None, Some::<Shape<'_>>(&open)].into_iter().enumerate() {
            let tag = format!("http{run}{i}");
            rps[i].push(httpload(
                dir,
                &tag,
                rina,
                &["client", "{addr}", &seconds.to_string(), "8"],
                "rps=",
            ));
            alloc[i].push(httpload(
                dir,
                &format!("{tag}c"),
                rina,
                &["client", "{addr}", &seconds.to_string(), "1"],
                "rps=",
            ));
            curls[i].push(curl_rate(dir, &format!("{tag}u"), rina, 100));
        }
        eprintln!(
            "run {run}: http x8 tcp {:.0} rina {:.0} req/s; x1 tcp {:.0} rina {:.0} req/s; curl tcp {:.1} rina {:.1}/s",
            rps[0][run], rps[1][run], alloc[0][run], alloc[1][run], curls[0][run], curls[1][run]
        );
    }
    println!("HTTP, one connection (one flow) per request, median of {runs} runs:");
    for (what, v, unit) in [
        ("8 client threads, 1 KiB answers", &rps, "req/s"),
        ("1 client thread (one at a time) ", &alloc, "req/s"),
        ("curl processes, one at a time   ", &curls, "req/s"),
    ] {
        let (t, r) = (median(&v[0]), median(&v[1]));
        println!(
            "  {what}  TCP {t:.1} {unit}   RINA {r:.1} {unit}   ratio {:.2}",
            r / t
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
    let (_server, c_rules, addr) = load_server(dir, tag, rina);
    let load = bin_dir().join("httpload");
    let mut args = vec![load.to_str().expect("path")];
    let client: Vec<String> = client.iter().map(|a| a.replace("{addr}", &addr)).collect();
    args.extend(client.iter().map(String::as_str));
    // Bounded like every wait on a child (a run is seconds long).
    let out = output_within(
        &mut over(c_rules.as_deref(), &args),
        Duration::from_secs(300),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "httpload printed {text:?}, stderr {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// `count` curl processes one after another (each starts, joins the DIF when over
/// RINA, makes one flow, fetches 1 KiB): processes per second.
pub(crate) fn curl_rate(
    dir: &tempfile::TempDir,
    tag: &str,
    rina: Option<Shape<'_>>,
    count: usize,
) -> f64 {
    let (_server, c_rules, addr) = load_server(dir, tag, rina);
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
    count as f64 / start.elapsed().as_secs_f64()
}
