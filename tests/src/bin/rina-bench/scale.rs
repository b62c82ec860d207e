//! The scale section of the benchmark (issue 12): short-lived nc clients, one after
//! another, each a leaf of the member of a DIF of N `rina node` members (2, 16, 64)
//! farthest from the echo server, against the same clients over kernel TCP.
//!
//! Member 0 bootstraps DIF `net` over a UDP shim on loopback; the others enroll in a
//! random tree of degree at most 4 (a fixed LCG, as in tests/tests/scale.rs). The
//! echo server (Python, threaded: reads to EOF, sends it all back, closes) runs under
//! `rina run` as a leaf of member 0; each client is `nc -N` under `rina run`,
//! enrolling through the deepest member, sending 64 bytes. A client's time is from
//! its spawn to its exit: joining the DIF, allocating the flow, the echo and the
//! teardown. Between the members, the datagrams relayed and the control messages
//! sent (`rina ctl --json` counters, summed over every member) are counted around the
//! clients, and the far member's link-state database is looked at before and after.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rina_e2e::many::{random_tree, udp_member, ECHO_SERVER};
use rina_e2e::*;

use super::median;

/// The sizes of DIF measured.
const SIZES: [usize; 3] = [2, 16, 64];

/// How long one client may take before the run fails.
const CLIENT_LIMIT: Duration = Duration::from_secs(30);

/// The DIF `net` of process `pid`, as `rina ctl --json` shows it.
fn net(pid: u32) -> serde_json::Value {
    ctl_json(pid)["difs"][0].clone()
}

/// A DIF of members with the echo server up as a leaf of member 0.
struct Dif {
    members: Vec<Proc>,
    _server: Proc,
    /// The pid of the deepest member, and its depth.
    far: (u32, usize),
    /// The clients' rules (enrolling through the far member).
    client: PathBuf,
    tcp: u16,
}

impl Dif {
    /// Starts `n` members (files under `dir` named after `tag`), waits until all have
    /// joined, starts the echo server and waits until the far member knows of it and
    /// has every member in its database.
    fn new(dir: &Path, tag: &str, n: usize) -> Self {
        let udp: Vec<u16> = (0..n).map(|_| free_udp_port()).collect();
        let tcp = free_tcp_port();
        let (parent, depth) = random_tree(n);
        let log = |i: usize| dir.join(format!("{tag}-m{i}.log"));
        let members: Vec<Proc> = (0..n)
            .map(|i| {
                let text = udp_member(udp[i], parent[i].map(|p| udp[p]), "");
                start_rina_node(&rules(dir, &format!("{tag}-m{i}.toml"), &text), &log(i))
            })
            .collect();
        let all_joined = || {
            (0..n).all(|i| {
                std::fs::read_to_string(log(i)).is_ok_and(|t| t.contains("enrolled in DIF net "))
            })
        };
        assert!(
            wait_until(Duration::from_secs(60), all_joined),
            "{tag}: the {n} members never all joined"
        );
        let app = |key: &str| {
            format!(
                "[[{key}]]\n{} = \"127.0.0.1:{tcp}\"\ndif = \"net\"\napp = \"echo\"\n",
                if key == "listen" { "on" } else { "to" }
            )
        };
        let server_rules = udp_member(free_udp_port(), Some(udp[0]), &app("listen"));
        let server = spawn_server(
            &rules(dir, &format!("{tag}-server.toml"), &server_rules),
            &["python3", "-c", ECHO_SERVER, &tcp.to_string()],
            Stdio::null(),
            Stdio::null(),
        );
        let far = (0..n).max_by_key(|&i| depth[i]).expect("members");
        let far_pid = members[far].pid();
        let ready = || {
            let d = net(far_pid);
            d["lsdb_size"].as_u64() == Some(n as u64)
                && d["directory"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|e| e["app"] == "echo"))
        };
        assert!(
            wait_until(Duration::from_secs(30), ready),
            "{tag}: the far member never saw the server or every member: {:#}",
            net(far_pid)
        );
        let client_rules = udp_member(0, Some(udp[far]), &app("connect"));
        Self {
            members,
            _server: server,
            far: (far_pid, depth[far]),
            client: rules(dir, &format!("{tag}-client.toml"), &client_rules),
            tcp,
        }
    }

    /// The sum over the members of counter `name` of DIF `net`.
    fn total(&self, name: &str) -> u64 {
        self.members
            .iter()
            .map(|m| net(m.pid())["counters"][name].as_u64().unwrap_or(0))
            .sum()
    }

    /// The far member's link-state database size.
    fn far_lsdb(&self) -> u64 {
        net(self.far.0)["lsdb_size"].as_u64().unwrap_or(0)
    }
}

/// Runs `k` clients one after another, each `nc -N 127.0.0.1 PORT` (under `rina run`
/// with `rules`, or plainly) sending the 64 bytes of `input` and checking the echo:
/// (clients per second, median time of a client in ms).
fn clients(k: usize, port: u16, rules: Option<&Path>, input: &Path) -> (f64, f64) {
    let sent = std::fs::read(input).expect("input");
    let p = port.to_string();
    let args = ["nc", "-N", "127.0.0.1", p.as_str()];
    let mut times = Vec::with_capacity(k);
    let start = Instant::now();
    for i in 0..k {
        let stdin = Stdio::from(std::fs::File::open(input).expect("input"));
        let mut cmd = match rules {
            Some(r) => rina_run(r, &args, stdin, Stdio::piped()),
            None => {
                let mut c = Command::new("nc");
                c.args(&args[1..]).stdin(stdin);
                c
            }
        };
        let t = Instant::now();
        let out = output_within(&mut cmd, CLIENT_LIMIT);
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(
            out.status.success() && out.stdout == sent,
            "client {i} ({}): echo {:?}, stderr {}",
            if rules.is_some() { "rina" } else { "tcp" },
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (k as f64 / start.elapsed().as_secs_f64(), median(&times))
}

/// The same clients over kernel TCP to the same echo server without RINA.
fn tcp_clients(k: usize, input: &Path) -> (f64, f64) {
    let port = free_tcp_port();
    let _server = Proc::spawn(
        "python3 echo",
        Command::new("python3")
            .args(["-c", ECHO_SERVER, &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
    );
    assert!(
        wait_until(Duration::from_secs(10), || tcp_port_in_use(port)),
        "the TCP echo server did not listen"
    );
    clients(k, port, None, input)
}

/// One round at one size, RINA then TCP: [RINA clients/s, TCP clients/s, RINA median
/// ms, TCP median ms, PDUs between members per client, control messages between
/// members per client, far member's database before, after].
fn round(dir: &Path, tag: &str, n: usize, k: usize, input: &Path) -> [f64; 8] {
    let dif = Dif::new(dir, tag, n);
    let lsdb_before = dif.far_lsdb();
    let (pdus, control) = (
        dif.total("pdus_to_members"),
        dif.total("control_to_members"),
    );
    let (rate, ms) = clients(k, dif.tcp, Some(&dif.client), input);
    // Every client gone from its enroller (its flow and its leaf torn down).
    let no_leaves = || {
        net(dif.far.0)["leaves"]
            .as_array()
            .is_some_and(|l| l.is_empty())
    };
    if !wait_until(Duration::from_secs(10), no_leaves) {
        eprintln!(
            "{tag}: clients still leaves of the far member: {:#}",
            net(dif.far.0)
        );
    }
    let pdus = dif.total("pdus_to_members") - pdus;
    let control = dif.total("control_to_members") - control;
    let lsdb_after = dif.far_lsdb();
    drop(dif);
    let (tcp_rate, tcp_ms) = tcp_clients(k, input);
    [
        rate,
        tcp_rate,
        ms,
        tcp_ms,
        pdus as f64 / k as f64,
        control as f64 / k as f64,
        lsdb_before as f64,
        lsdb_after as f64,
    ]
}

/// Short-lived clients through DIFs of 2, 16 and 64 members, `k` per round, against
/// TCP, median of `runs` rounds.
pub(crate) fn section(dir: &tempfile::TempDir, runs: usize, k: usize) {
    let input = dir.path().join("scale-in");
    std::fs::write(&input, format!("{:<63}\n", "sixty-four bytes to echo")).expect("input");
    let mut series = vec![[(); 8].map(|()| Vec::with_capacity(runs)); SIZES.len()];
    let depths = SIZES.map(|n| random_tree(n).1.into_iter().max().unwrap_or(0));
    for run in 0..runs {
        for (s, &n) in SIZES.iter().enumerate() {
            let m = round(dir.path(), &format!("scale{run}-{n}"), n, k, &input);
            eprintln!(
                "scale run {run}, {n} members: rina {:.1}/s ({:.1} ms), tcp {:.1}/s ({:.1} ms), {:.1} PDUs and {:.1} control messages between members per client, far database {}/{}",
                m[0], m[2], m[1], m[3], m[4], m[5], m[6], m[7]
            );
            for (v, x) in series[s].iter_mut().zip(m) {
                v.push(x);
            }
        }
    }
    let med: Vec<[f64; 8]> = series
        .iter()
        .map(|s| s.clone().map(|v| median(&v)))
        .collect();
    println!(
        "{k} short-lived nc clients one after another (64 B echoed), each a leaf of the member farthest from the server, DIF of rina node members over UDP on loopback, against kernel TCP, median of {runs} runs:"
    );
    println!("| N | RINA clients/s | TCP clients/s | ratio | RINA median ms | TCP median ms | PDUs between members per client | control messages per client | far member's database before/after |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (n, m) in SIZES.iter().zip(&med) {
        println!(
            "| {n} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0}/{:.0} |",
            m[0],
            m[1],
            m[0] / m[1],
            m[2],
            m[3],
            m[4],
            m[5],
            m[6],
            m[7]
        );
    }
    println!(
        "  the far member is {} hops from member 0 (N = {})",
        depths.map(|d| d.to_string()).join(", "),
        SIZES.map(|n| n.to_string()).join(", ")
    );
    let (first, last) = (&med[0], &med[med.len() - 1]);
    println!(
        "  RINA clients/s with {} members / with {}: {:.2} (TCP alongside: {:.2})",
        SIZES[SIZES.len() - 1],
        SIZES[0],
        last[0] / first[0],
        last[1] / first[1]
    );
}
