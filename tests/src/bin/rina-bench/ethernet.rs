//! The Ethernet section of the benchmark: nc over RINA over the Ethernet shim, between
//! two network namespaces joined by a veth pair, against nc over kernel TCP over the
//! same veth (with IPv4 addresses on it for that baseline), interleaved; 64-byte round
//! trips the same way. Needs root (namespaces, raw sockets); skipped otherwise.

use std::process::Stdio;
use std::time::{Duration, Instant};

use rina_e2e::netns::Hosts;
use rina_e2e::*;

use super::{open, Shape};

const SERVER_IP: &str = "10.77.0.1";

fn rules_for(
    dir: &tempfile::TempDir,
    tag: &str,
    port: u16,
    shape: Shape<'_>,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let shim = "[[dif]]\nname = \"eth\"\ntype = \"ethernet\"\ninterface = \"eth0\"\n\n[[dif]]\nname = \"net\"\ntype = \"normal\"\nover = [\"eth\"]\n";
    let s = format!(
        "{shim}bootstrap = true\n\n[[listen]]\non = \"10.9.0.1:{port}\"\ndif = \"net\"\napp = \"bench\"\n"
    );
    let c = format!(
        "{shim}enroll-via = {{ dif = \"eth\" }}\n\n[[connect]]\nto = \"10.9.0.1:{port}\"\ndif = \"net\"\napp = \"bench\"\n"
    );
    (
        rules(dir.path(), &format!("{tag}-s.toml"), &shape(s, true)),
        rules(dir.path(), &format!("{tag}-c.toml"), &shape(c, false)),
    )
}

/// Gbit/s of `head -c MIB | nc -N` from host 1 into `nc -l` on host 0, over RINA (its
/// rules through the shape) or TCP (None).
pub(crate) fn throughput(
    hosts: &Hosts,
    dir: &tempfile::TempDir,
    tag: &str,
    mib: usize,
    rina: Option<Shape<'_>>,
) -> f64 {
    let port = 5000;
    let bytes = mib << 20;
    let (s_rules, c_rules) = rules_for(dir, tag, port, rina.unwrap_or(&open));
    let p = port.to_string();
    let (ip, mut server) = if rina.is_some() {
        let s = Proc::spawn(
            "nc -l",
            &mut hosts.rina_run(
                0,
                &s_rules,
                &["nc", "-l", "10.9.0.1", &p],
                Stdio::null(),
                Stdio::null(),
            ),
        );
        assert!(
            wait_for_rina_listener(s.pid(), Duration::from_secs(10)),
            "rina nc did not listen"
        );
        ("10.9.0.1", s)
    } else {
        let s = Proc::spawn(
            "nc -l",
            hosts
                .command(0, &["nc", "-l", SERVER_IP, &p])
                .stdout(Stdio::null()),
        );
        assert!(
            hosts.wait_listening(0, port, Duration::from_secs(5)),
            "tcp nc did not listen"
        );
        (SERVER_IP, s)
    };
    let runner = if rina.is_some() {
        format!(
            "{} run -c {} -- ",
            rina_e2e::rina().display(),
            c_rules.display()
        )
    } else {
        String::new()
    };
    let script = format!("head -c {bytes} /dev/zero | {runner}nc -N {ip} {p}");
    let start = Instant::now();
    let st = hosts
        .command(1, &["sh", "-c", &script])
        .stdout(Stdio::null())
        .status()
        .expect("client");
    assert!(st.success(), "client failed");
    server.expect_exit(Duration::from_secs(120));
    (bytes as f64 * 8.0) / start.elapsed().as_secs_f64() / 1e9
}

/// Median 64-byte round trip in µs, over RINA or TCP.
fn rtt(hosts: &Hosts, dir: &tempfile::TempDir, tag: &str, count: usize, rina: bool) -> f64 {
    let pingpong = bin_dir().join("pingpong");
    let pp = pingpong.to_str().expect("path");
    let port = 5001;
    let (s_rules, c_rules) = rules_for(dir, tag, port, &open);
    let cnt = count.to_string();
    let (addr, _server, out) = if rina {
        let addr = format!("10.9.0.1:{port}");
        let s = Proc::spawn(
            "pingpong",
            &mut hosts.rina_run(
                0,
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
        let out = hosts
            .rina_run(
                1,
                &c_rules,
                &[pp, "client", &addr, &cnt],
                Stdio::null(),
                Stdio::piped(),
            )
            .output();
        (addr, s, out)
    } else {
        let addr = format!("{SERVER_IP}:{port}");
        let s = Proc::spawn(
            "pingpong",
            hosts
                .command(0, &[pp, "server", &addr])
                .stdout(Stdio::null()),
        );
        assert!(
            hosts.wait_listening(0, port, Duration::from_secs(5)),
            "pingpong did not listen"
        );
        let out = hosts
            .command(1, &[pp, "client", &addr, &cnt])
            .stdout(Stdio::piped())
            .output();
        (addr, s, out)
    };
    let out = out.expect("pingpong client");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("median_us="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "pingpong to {addr} printed {text:?}, stderr {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// The two namespaces joined by a veth pair, with addresses for the TCP baseline; None
/// unless root.
pub(crate) fn hosts(tag: &str) -> Option<Hosts> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let hosts = Hosts::pair(tag);
    // The TCP baseline needs addresses; RINA does not use them.
    hosts.add_address(0, &format!("{SERVER_IP}/24"));
    hosts.add_address(1, "10.77.0.2/24");
    Some(hosts)
}

/// Runs the section and prints its figures.
pub fn section(dir: &tempfile::TempDir, runs: usize, mib: usize, rtt_count: usize) {
    let Some(hosts) = hosts("bench") else {
        println!("Ethernet: skipped (needs root for network namespaces and raw sockets)");
        return;
    };
    super::against_tcp(
        &format!("nc {mib} MiB over a veth pair between two namespaces"),
        "RINA/Ethernet shim",
        runs,
        |run| {
            [
                throughput(&hosts, dir, &format!("eth-t{run}"), mib, None),
                throughput(&hosts, dir, &format!("eth-r{run}"), mib, Some(&open)),
                rtt(&hosts, dir, &format!("eth-pt{run}"), rtt_count, false),
                rtt(&hosts, dir, &format!("eth-pr{run}"), rtt_count, true),
            ]
        },
    );
}
