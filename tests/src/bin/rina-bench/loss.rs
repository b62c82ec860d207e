//! The loss section of the benchmark: goodput of one bulk transfer under random packet
//! loss, nc over kernel TCP against nc over RINA (a normal DIF over the UDP shim),
//! between two network namespaces joined by a veth pair (MTU 1500), interleaved.
//!
//! Reproduce (as root): `cargo build --release --workspace`, then
//! `target/release/rina-bench --runs 3 --sections loss`.
//!
//! Each transfer is `head -c 64MiB /dev/zero | nc -N` from host 1 into `nc -l` on host 0
//! (which counts the bytes it gets and throws them away), timed from the client's start
//! until both ends exit; MB/s is 10^6 bytes per second of goodput. A transfer that does
//! not end within [`LIMIT`] (or delivers short) counts as 0 MB/s. TCP goes between the
//! addresses of the veth (10.78.0.1, 10.78.0.2); RINA's UDP shim binds the same
//! addresses, and its rules map 10.9.0.1:5000 (no route) to the flow.
//!
//! The loss: an nftables `netdev` table on each host's `eth0`, hook **ingress**, rule
//! `numgen random mod 100 < N drop`, so both directions (data and acknowledgements) lose
//! N% of their packets, on the wire as it were: the sender's stack never hears of it
//! (an `output` hook would fail the `sendmsg` with EPERM, which TCP takes as a local
//! congestion signal and retries at once, and which the UDP shim would see as an error).
//! TCP and RINA see the very same table, made afresh (counters at 0) before each
//! transfer.
//!
//! Packets are MTU-sized for both. veth does GSO and passes a GSO skb to its peer whole,
//! so by default TCP's "packets" are up to 64 KB and one drop costs about 44 segments:
//! measured with the `counter` rules below, 64 MiB with the defaults crossed as 3432
//! packets, 2769 of them over 1500 bytes (and 69640592 bytes in 47472 packets after).
//! ethtool is not installed, so each `eth0` gets `ip link set eth0 gso_max_size 1500
//! gso_max_segs 1`: TCP then builds one-segment skbs, and the counters show no packet
//! over 1500 bytes (`meta length > 1500`), data packets averaging about 1467 bytes
//! (MSS 1448). The UDP shim's MTU is 1452 by default on a non-loopback address (its
//! datagrams at most 1452 + 8 + 20 = 1480 bytes on the wire); the counters show no
//! packet over 1500 bytes and no IP fragment (`ip frag-off & 0x3fff != 0`), data
//! packets averaging about 1480 bytes. Each transfer's line (stderr) prints these
//! counters, so a change in either is seen (its mean counts both directions, the
//! acknowledgements too), and the packets the hosts dropped outside the rule (UDP
//! receive buffers, CPU backlogs; see [`dropped_elsewhere`]).
//!
//! The table (stdout): per loss, the median of the runs and [min–max] of TCP's and
//! RINA's MB/s, of the per-run ratio RINA/TCP, and the median retransmissions.
//!
//! Retransmissions: TCP's are `RetransSegs` of host 1's `/proc/net/snmp` (before and
//! after); RINA's are the sending flow's `pdus_retransmitted` from `rina ctl --json` in
//! host 1, polled every 200 ms (so the last moments of a transfer may be missing: a
//! lower bound).

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rina_e2e::netns::Hosts;
use rina_e2e::*;

/// Bytes per transfer.
const MIB: usize = 64;
/// Percent of packets dropped, each way.
const LOSSES: [u32; 3] = [0, 1, 5];
/// The longest a transfer may take (both ends exited).
const LIMIT: Duration = Duration::from_secs(120);
const SERVER_IP: &str = "10.78.0.1";
const CLIENT_IP: &str = "10.78.0.2";
/// The address the RINA rules map (nothing routes it: a transfer there is RINA's).
const RINA_IP: &str = "10.9.0.1";
const PORT: u16 = 5000;
const SHIM_PORT: u16 = 7000;

/// What the `counter` rules of both hosts saw during one transfer, in rule order: all
/// packets, those over 1500 bytes, IP fragments, dropped.
#[derive(Clone, Copy, Debug, Default)]
struct Wire {
    packets: u64,
    bytes: u64,
    oversize: u64,
    fragments: u64,
    dropped: u64,
}

/// What the sending stack's flows say of their loss recovery (`rina ctl --json`),
/// summed over its flows.
#[derive(Clone, Copy, Debug, Default)]
struct Recovery {
    retrans: u64,
    timeouts: u64,
    tail_probes: u64,
    loss_events: u64,
    needless: u64,
}

/// One transfer: goodput and the sender's retransmissions.
#[derive(Clone, Copy, Debug)]
struct Sample {
    mbps: f64,
    retrans: u64,
    /// RINA's sender only.
    recovery: Option<Recovery>,
    /// Dropped by the hosts outside the loss rule (see [`dropped_elsewhere`]).
    other: u64,
    wire: Wire,
}

/// The two hosts, addressed, with GSO cut to one segment; None unless root.
fn hosts() -> Option<Hosts> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let hosts = Hosts::pair("loss");
    hosts.add_address(0, &format!("{SERVER_IP}/24"));
    hosts.add_address(1, &format!("{CLIENT_IP}/24"));
    for i in 0..2 {
        let args = ["ip", "link", "set", "dev", netns::IFACE, "gso_max_size"];
        let mut c = hosts.command(i, &args);
        c.args(["1500", "gso_max_segs", "1"]);
        let out = output_within(&mut c, Duration::from_secs(30));
        assert!(
            out.status.success(),
            "gso_max_segs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Some(hosts)
}

/// Makes the loss table afresh on both hosts: `pct`% dropped on ingress of `eth0`.
pub(crate) fn set_loss(hosts: &Hosts, dir: &tempfile::TempDir, pct: u32) {
    let script = format!(
        "table netdev loss\ndelete table netdev loss\ntable netdev loss {{\n\
         chain in {{\ntype filter hook ingress device \"{}\" priority 0;\n\
         counter\nmeta length > 1500 counter\nip frag-off & 0x3fff != 0 counter\n\
         numgen random mod 100 < {pct} counter drop\n}}\n}}\n",
        netns::IFACE
    );
    let file = rules(dir.path(), &format!("loss{pct}.nft"), &script);
    for i in 0..2 {
        let mut c = hosts.command(i, &["nft", "-f", file.to_str().expect("path")]);
        let out = output_within(&mut c, Duration::from_secs(30));
        assert!(
            out.status.success(),
            "nft: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The counters of the loss tables of both hosts, summed.
fn wire(hosts: &Hosts) -> Wire {
    let mut w = Wire::default();
    for i in 0..2 {
        let out = output_within(
            &mut hosts.command(i, &["nft", "list", "table", "netdev", "loss"]),
            Duration::from_secs(30),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let counters = text.lines().filter_map(|l| {
            let n = |k: &str| {
                let rest = l.split(k).nth(1)?;
                rest.split_whitespace().next()?.parse::<u64>().ok()
            };
            Some((n("counter packets ")?, n(" bytes ")?))
        });
        for (k, (p, b)) in counters.enumerate() {
            match k {
                0 => (w.packets, w.bytes) = (w.packets + p, w.bytes + b),
                1 => w.oversize += p,
                2 => w.fragments += p,
                _ => w.dropped += p,
            }
        }
    }
    w
}

/// Counter `field` of protocol `proto` (`Tcp`, `Udp`) in host `i`'s `/proc/net/snmp`.
fn snmp(hosts: &Hosts, i: usize, proto: &str, field: &str) -> u64 {
    let out = output_within(
        &mut hosts.command(i, &["cat", "/proc/net/snmp"]),
        Duration::from_secs(10),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rows = text.lines().filter(|l| l.starts_with(&format!("{proto}:")));
    let (Some(names), Some(values)) = (rows.next(), rows.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == field)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Packets the hosts dropped outside the loss rule: UDP datagrams with no room in a
/// receive buffer (both hosts), and packets with no room in a CPU's backlog (the
/// second column of `/proc/net/softnet_stat`: the whole machine's, not only these
/// hosts').
fn dropped_elsewhere(hosts: &Hosts) -> u64 {
    let backlog: u64 = std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok())
        .sum();
    backlog
        + (0..2)
            .map(|i| snmp(hosts, i, "Udp", "RcvbufErrors"))
            .sum::<u64>()
}

/// The loss recovery of the flows of the stacks in host `i` (`rina ctl --json`).
fn rina_recovery(hosts: &Hosts, i: usize) -> Option<Recovery> {
    let bin = rina();
    let mut c = hosts.command(i, &[bin.to_str().expect("path"), "ctl", "--json"]);
    let out = output_within(&mut c, Duration::from_secs(10));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let each = |v: &serde_json::Value, k: &str| v[k].as_array().cloned().unwrap_or_default();
    let mut sum = Recovery::default();
    for stack in v.as_array()? {
        for dif in each(stack, "difs") {
            for f in each(&dif, "flows") {
                let n = |k: &str| f[k].as_u64().unwrap_or(0);
                sum.retrans += n("pdus_retransmitted");
                sum.timeouts += n("timeouts");
                sum.tail_probes += n("tail_probes");
                sum.loss_events += n("loss_events");
                sum.needless += n("spurious_retransmissions");
            }
        }
    }
    Some(sum)
}

/// The rules of the RINA side: (server's, client's), written into `dir`.
fn rina_rules(dir: &tempfile::TempDir) -> (std::path::PathBuf, std::path::PathBuf) {
    let (s, c) = pair_rules(SHIM_PORT, 0, PORT, "bench");
    let (app, shim) = (format!("127.0.0.1:{PORT}"), "127.0.0.1:");
    let s = s.replace(&app, &format!("{RINA_IP}:{PORT}"));
    let c = c.replace(&app, &format!("{RINA_IP}:{PORT}"));
    let s = s.replace(shim, &format!("{SERVER_IP}:"));
    let c = c.replace("127.0.0.1:0\"", &format!("{CLIENT_IP}:0\""));
    let c = c.replace(shim, &format!("{SERVER_IP}:"));
    (
        rules(dir.path(), "loss-s.toml", &s),
        rules(dir.path(), "loss-c.toml", &c),
    )
}

/// Starts `nc -l` in host 0 (over RINA or TCP), in a process group of its own, and
/// waits until it listens; its stdout is counted by a thread (the receiver's answer).
fn start_server(
    hosts: &Hosts,
    rules: Option<&std::path::Path>,
) -> (Proc, std::sync::mpsc::Receiver<u64>) {
    let p = PORT.to_string();
    let mut cmd = match rules {
        Some(r) => hosts.rina_run(
            0,
            r,
            &["nc", "-l", RINA_IP, &p],
            Stdio::null(),
            Stdio::piped(),
        ),
        None => {
            let mut c = hosts.command(0, &["nc", "-l", SERVER_IP, &p]);
            c.stdout(Stdio::piped());
            c
        }
    };
    let mut server = Proc::spawn("nc -l", cmd.process_group(0));
    let listening = match rules {
        Some(_) => wait_for_rina_listener(server.pid(), Duration::from_secs(10)),
        None => wait_until(Duration::from_secs(10), || {
            let out = output_within(
                &mut hosts.command(0, &["ss", "-Htln"]),
                Duration::from_secs(10),
            );
            String::from_utf8_lossy(&out.stdout).contains(&format!("{SERVER_IP}:{p}"))
        }),
    };
    if !listening {
        panic!("nc -l did not listen: {}", server.kill_and_stderr());
    }
    let mut out = server.take_stdout().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::io::copy(&mut out, &mut std::io::sink()).unwrap_or(0));
    });
    (server, rx)
}

/// Kills what is left of process group `p` (the process and what it started).
fn kill_group(p: &mut Proc) {
    if p.pid() != 0 {
        // SAFETY: SIGKILL to the process group of our own child (its id is the child's).
        unsafe { libc::kill(-(p.pid() as i32), libc::SIGKILL) };
    }
}

/// One transfer from host 1 to host 0, over RINA (`rules`: the server's and the
/// client's) or TCP (None).
fn transfer(hosts: &Hosts, rules: Option<&(std::path::PathBuf, std::path::PathBuf)>) -> Sample {
    let bytes = MIB << 20;
    let (mut server, got) = start_server(hosts, rules.map(|r| r.0.as_path()));
    let (runner, ip) = match rules {
        Some((_, c)) => (
            format!("{} run -c {} -- ", rina().display(), c.display()),
            RINA_IP,
        ),
        None => (String::new(), SERVER_IP),
    };
    let script = format!("head -c {bytes} /dev/zero | {runner}nc -N {ip} {PORT}");
    let (tcp_before, other_before) = (
        snmp(hosts, 1, "Tcp", "RetransSegs"),
        dropped_elsewhere(hosts),
    );
    let start = Instant::now();
    let mut client = Proc::spawn(
        "nc -N",
        hosts
            .command(1, &["sh", "-c", &script])
            .stdout(Stdio::null())
            .process_group(0),
    );
    let done = AtomicBool::new(false);
    let (ended, rina_seen) = std::thread::scope(|s| {
        let poll = s.spawn(|| {
            let mut seen = Recovery::default();
            while rules.is_some() && !done.load(Ordering::Relaxed) {
                // The flow is gone once the transfer ends: keep the last figures.
                if let Some(r) = rina_recovery(hosts, 1).filter(|r| r.retrans >= seen.retrans) {
                    seen = r;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            seen
        });
        let ended = client.wait_timeout(LIMIT).is_some()
            && server
                .wait_timeout(LIMIT.saturating_sub(start.elapsed()))
                .is_some();
        done.store(true, Ordering::Relaxed);
        (ended, poll.join().unwrap_or_default())
    });
    let secs = start.elapsed().as_secs_f64();
    kill_group(&mut client);
    kill_group(&mut server);
    if !ended {
        eprintln!(
            "  transfer did not end within {LIMIT:?}; client: {}; server: {}",
            client.kill_and_stderr(),
            server.kill_and_stderr()
        );
    }
    let received = got.recv_timeout(STDERR_BOUND).unwrap_or(0);
    let whole = ended && received == bytes as u64;
    if ended && !whole {
        eprintln!("  short transfer: {received} of {bytes} bytes");
    }
    Sample {
        mbps: if whole {
            bytes as f64 / secs / 1e6
        } else {
            0.0
        },
        retrans: match rules {
            Some(_) => rina_seen.retrans,
            None => snmp(hosts, 1, "Tcp", "RetransSegs").saturating_sub(tcp_before),
        },
        recovery: rules.map(|_| rina_seen),
        other: dropped_elsewhere(hosts).saturating_sub(other_before),
        wire: wire(hosts),
    }
}

/// A sample as one line: goodput, retransmissions and what the counters saw.
fn show(s: &Sample) -> String {
    let w = s.wire;
    let mean = w.bytes.checked_div(w.packets).unwrap_or(0);
    let recovery = s.recovery.map_or_else(String::new, |r| {
        format!(
            " ({} timeouts, {} tail probes, {} loss events, {} found needless)",
            r.timeouts, r.tail_probes, r.loss_events, r.needless
        )
    });
    format!(
        "{:.1} MB/s, {} retransmitted{recovery}, {} of {} packets dropped (+{} elsewhere), \
         mean {mean} B, >1500 B: {}, fragments: {}",
        s.mbps, s.retrans, w.dropped, w.packets, s.other, w.oversize, w.fragments
    )
}

/// Median and [min–max] of `v`, with `digits` decimals.
fn spread(v: &[f64], digits: usize) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(
        "{:.digits$} [{min:.digits$}–{max:.digits$}]",
        super::median(v)
    )
}

/// Runs the section and prints its figures.
pub(crate) fn section(dir: &tempfile::TempDir, runs: usize) {
    let Some(hosts) = hosts() else {
        println!("Loss: skipped (needs root for network namespaces and nftables)");
        return;
    };
    let rina = rina_rules(dir);
    // Per loss: per run, (TCP, RINA).
    let mut all: Vec<Vec<(Sample, Sample)>> = vec![Vec::new(); LOSSES.len()];
    for run in 0..runs {
        for (k, &pct) in LOSSES.iter().enumerate() {
            set_loss(&hosts, dir, pct);
            let tcp = transfer(&hosts, None);
            set_loss(&hosts, dir, pct);
            let r = transfer(&hosts, Some(&rina));
            eprintln!("loss {pct}%, run {run}: tcp {}", show(&tcp));
            eprintln!("loss {pct}%, run {run}: rina {}", show(&r));
            all[k].push((tcp, r));
        }
    }
    println!(
        "nc {MIB} MiB over a veth (MTU 1500) with random loss each way, median of {runs} \
         runs [min–max]:"
    );
    println!(
        "  loss  {:<22}{:<26}{:<20}retransmitted TCP / RINA",
        "TCP MB/s", "RINA/UDP shim MB/s", "ratio (per run)"
    );
    for (k, pct) in LOSSES.iter().enumerate() {
        let pick =
            |f: &dyn Fn(&(Sample, Sample)) -> f64| -> Vec<f64> { all[k].iter().map(f).collect() };
        let (t, r) = (pick(&|s| s.0.mbps), pick(&|s| s.1.mbps));
        let ratio = pick(&|s| {
            if s.0.mbps > 0.0 {
                s.1.mbps / s.0.mbps
            } else {
                0.0
            }
        });
        println!(
            "  {:<6}{:<22}{:<26}{:<20}{:.0} / {:.0}",
            format!("{pct}%"),
            spread(&t, 1),
            spread(&r, 1),
            spread(&ratio, 2),
            super::median(&pick(&|s| s.0.retrans as f64)),
            super::median(&pick(&|s| s.1.retrans as f64)),
        );
    }
}
