//! The secured section of the benchmark (issue 11): what sealing every PDU of a DIF
//! costs. It owns the secured rules (two member keys made once by `rina keygen`, each
//! member trusting the other's) and the three-way comparison, each run interleaved:
//! nc throughput and 64-byte round trips over the secured DIF, over the same DIF open
//! and over kernel TCP on loopback (UDP shim); flow allocations per second (`httpload`,
//! one thread, one flow per request; TCP for scale); members joining per second (`curl`
//! processes one after another, each enrolling: a Noise handshake when secured); and,
//! as root, the throughput comparison over the Ethernet shim between two namespaces.
//! The measurements are those of the other sections (`main.rs`, `http.rs`,
//! `ethernet.rs`), given the secured rules through a [`Shape`].

use std::path::Path;

use rina_e2e::*;

use super::{ethernet, http, medians, nc_throughput, open, rtt, Shape};

/// The shape that secures the normal DIF of [`pair_rules`] (or of the Ethernet rules):
/// a `[dif.security]` section (this member's key, trusting the other's) after the
/// DIFs, before the first listen or connect rule.
fn secure(dir: &Path) -> impl Fn(String, bool) -> String {
    let (server_key, server_pub) = keygen(dir, "bench-server");
    let (client_key, client_pub) = keygen(dir, "bench-client");
    move |text, server| {
        let (key, peer) = if server {
            (&server_key, &client_pub)
        } else {
            (&client_key, &server_pub)
        };
        let at = text.rfind("\n[[").expect("a rule after the DIFs");
        let (difs, rules) = text.split_at(at);
        format!("{difs}\n[dif.security]\nkey = {key:?}\ntrust = [{peer:?}]\n{rules}")
    }
}

/// The figures of a run (each TCP where there is one, open, secured) and their digits.
const FIGURES: [(&str, usize); 5] = [
    ("nc throughput, loopback (Gbit/s)", 2),
    ("64 B round trip, loopback (µs)", 1),
    ("flow allocations (req/s, 1 thread)", 0),
    ("members joining (curl processes/s)", 1),
    ("nc throughput, Ethernet (Gbit/s)", 2),
];

/// Options of the section.
struct Opts {
    mib: usize,
    rtt_count: usize,
    http_seconds: String,
}

/// One run: for each of [`FIGURES`], TCP (NaN where there is none), open, secured
/// (open first in even runs, secured first in odd ones).
fn run_once(
    dir: &tempfile::TempDir,
    o: &Opts,
    run: usize,
    sealed: Shape<'_>,
    hosts: Option<&netns::Hosts>,
) -> [f64; 15] {
    let sides: [(&str, Option<Shape<'_>>); 3] =
        [("t", None), ("o", Some(&open)), ("s", Some(sealed))];
    // Open and secured take turns at going first.
    let order = if run.is_multiple_of(2) {
        [0, 1, 2]
    } else {
        [0, 2, 1]
    };
    let mut m = [f64::NAN; 15];
    for i in order {
        let (side, shape) = sides[i];
        let tag = |what: &str| format!("sec{run}{side}{what}");
        let (nc, pp) = (tag("n"), tag("p"));
        m[i] = nc_throughput(dir, o.mib, shape.map(|s| (nc.as_str(), s)));
        m[3 + i] = rtt(dir, o.rtt_count, shape.map(|s| (pp.as_str(), s)));
        let client = ["client", "{addr}", &o.http_seconds, "1"];
        m[6 + i] = http::httpload(dir, &tag("h"), shape, &client, "rps=");
        if shape.is_some() {
            m[9 + i] = http::curl_rate(dir, &tag("u"), shape, 100);
        }
        if let Some(h) = hosts {
            m[12 + i] = ethernet::throughput(h, dir, &tag("e"), o.mib, shape);
        }
    }
    m
}

/// Runs the section and prints its figures as a table, with the aims.
pub fn section(
    dir: &tempfile::TempDir,
    runs: usize,
    mib: usize,
    rtt_count: usize,
    http_seconds: u64,
) {
    let sealed = secure(dir.path());
    let hosts = ethernet::hosts("bsec");
    let o = Opts {
        mib,
        rtt_count,
        http_seconds: http_seconds.to_string(),
    };
    // Each run's figures, then its secured/open ratios and round trip difference: on a
    // noisy machine their medians say more than ratios of medians.
    let m = medians(
        runs,
        |run| {
            let m = run_once(dir, &o, run, &sealed, hosts.as_ref());
            let mut all = [f64::NAN; 21];
            all[..15].copy_from_slice(&m);
            for i in 0..5 {
                all[15 + i] = m[3 * i + 2] / m[3 * i + 1];
            }
            all[20] = m[5] - m[4];
            all
        },
        |run, m| eprintln!("secured, run {run}: {m:.2?}"),
    );
    println!("Secured DIF (issue 11), nc {mib} MiB, median of {runs} runs (TCP, open, secured):");
    println!("| figure | TCP | open | secured | secured/open | per run | secured/TCP |");
    println!("|---|---|---|---|---|---|---|");
    for (i, &(name, digits)) in FIGURES.iter().enumerate() {
        let [t, o, s] = [m[3 * i], m[3 * i + 1], m[3 * i + 2]];
        if o.is_nan() {
            println!("| {name} | skipped (needs root) | | | | | |");
            continue;
        }
        let (tcp, vs_tcp) = if t.is_nan() {
            ("–".into(), "–".into())
        } else {
            (format!("{t:.digits$}"), format!("{:.2}", s / t))
        };
        println!(
            "| {name} | {tcp} | {o:.digits$} | {s:.digits$} | {:.2} | {:.2} | {vs_tcp} |",
            s / o,
            m[15 + i]
        );
    }
    let (ratio, extra) = (m[15], m[20]);
    println!(
        "aims (medians of each run's figure): secured/open throughput {ratio:.2} (aim ≥ 0.80: {}); secured - open round trip {extra:.1} µs (aim ≤ 10: {})",
        if ratio >= 0.8 { "met" } else { "not met" },
        if extra <= 10.0 { "met" } else { "not met" }
    );
}
