//! The relaying section of the benchmark (issue 5): nc throughput and 64-byte round
//! trips through chains of `rina node` relays over UDP on loopback (0, 1, 2 and 4
//! relays), with kernel TCP in the same run for scale; and routing convergence after
//! a link failure in a ring of 16 `rina node` members.
//!
//! The ring's members are joined over UDP on loopback; one link (between the last
//! member and the first) goes through a forwarder in this process, which starts
//! dropping everything to fail the link. Every member is then watched through its
//! management socket until every forwarding table is the one of the remaining line.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rina_e2e::*;

use super::median;

/// A member of DIF "net" over a UDP shim at `udp`: bootstrap, or enroll through the
/// member at UDP port `via`; then `extra` (more keys of the DIF, then rules).
fn member(udp: u16, via: Option<u16>, extra: &str) -> String {
    let join = match via {
        None => "bootstrap = true".to_owned(),
        Some(p) => format!("enroll-via = {{ neighbor = \"127.0.0.1:{p}\" }}"),
    };
    format!(
        "[[dif]]\nname = \"udp\"\ntype = \"udp\"\nbind = \"127.0.0.1:{udp}\"\n\n[[dif]]\nname = \"net\"\ntype = \"normal\"\nover = [\"udp\"]\n{join}\n{extra}"
    )
}

/// A `rina node`, waited for until it has joined (its log beside its rules).
fn node(rules: &Path) -> Proc {
    rina_node(rules, &rules.with_extension("log"), "net")
}

/// A chain: `server` (bootstrap, listening on `tcp`) is started by the caller with
/// [`Chain::server`]'s rules, then [`Chain::relays`] start `relays` nodes, each
/// enrolling through the one before; the client enrolls through the last.
struct Chain {
    ports: Vec<u16>,
    server: PathBuf,
    client: PathBuf,
}

impl Chain {
    fn new(dir: &tempfile::TempDir, tag: &str, relays: usize, tcp: u16) -> Self {
        let ports: Vec<u16> = (0..relays + 2).map(|_| free_udp_port()).collect();
        let listen =
            format!("[[listen]]\non = \"127.0.0.1:{tcp}\"\ndif = \"net\"\napp = \"far\"\n");
        let connect =
            format!("[[connect]]\nto = \"127.0.0.1:{tcp}\"\ndif = \"net\"\napp = \"far\"\n");
        let last = relays + 1;
        Self {
            server: rules(
                dir.path(),
                &format!("{tag}-s.toml"),
                &member(ports[0], None, &listen),
            ),
            client: rules(
                dir.path(),
                &format!("{tag}-c.toml"),
                &member(ports[last], Some(ports[last - 1]), &connect),
            ),
            ports,
        }
    }

    /// Starts the relays (the server must be up).
    fn relays(&self, dir: &tempfile::TempDir, tag: &str) -> Vec<Proc> {
        (1..self.ports.len() - 1)
            .map(|i| {
                let r = rules(
                    dir.path(),
                    &format!("{tag}-r{i}.toml"),
                    &member(self.ports[i], Some(self.ports[i - 1]), ""),
                );
                node(&r)
            })
            .collect()
    }
}

/// Gbit/s of `head -c MIB | nc -N` into `nc -l` through `relays` relays (None: TCP).
fn throughput(dir: &tempfile::TempDir, tag: &str, relays: Option<usize>, mib: usize) -> f64 {
    let tcp = free_tcp_port();
    let p = tcp.to_string();
    let bytes = mib << 20;
    let server_args = ["nc", "-l", "127.0.0.1", &p];
    let (mut server, runner, _relays) = match relays {
        None => {
            let s = Proc::spawn(
                "nc -l",
                Command::new("nc")
                    .args(&server_args[1..])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null()),
            );
            assert!(wait_until(Duration::from_secs(5), || tcp_port_in_use(tcp)));
            (s, String::new(), Vec::new())
        }
        Some(n) => {
            let chain = Chain::new(dir, tag, n, tcp);
            let s = spawn_server(&chain.server, &server_args, Stdio::null(), Stdio::null());
            let relays = chain.relays(dir, tag);
            let runner = format!("{} run -c {} -- ", rina().display(), chain.client.display());
            (s, runner, relays)
        }
    };
    let cmd = format!("head -c {bytes} /dev/zero | {runner}nc -N 127.0.0.1 {p}");
    let start = Instant::now();
    let st = Command::new("sh")
        .args(["-c", &cmd])
        .stdout(Stdio::null())
        .status()
        .expect("client");
    assert!(st.success(), "client failed");
    server.expect_exit(Duration::from_secs(120));
    (bytes as f64 * 8.0) / start.elapsed().as_secs_f64() / 1e9
}

/// Median 64-byte round trip in µs through `relays` relays (None: TCP).
fn rtt(dir: &tempfile::TempDir, tag: &str, relays: Option<usize>, count: usize) -> f64 {
    let pingpong = bin_dir().join("pingpong");
    let pp = pingpong.to_str().expect("path");
    let tcp = free_tcp_port();
    let addr = format!("127.0.0.1:{tcp}");
    let cnt = count.to_string();
    let client = [pp, "client", addr.as_str(), cnt.as_str()];
    let (_server, _relays, out) = match relays {
        None => {
            let s = Proc::spawn("pingpong", Command::new(pp).args(["server", &addr]));
            assert!(wait_until(Duration::from_secs(5), || tcp_port_in_use(tcp)));
            let out = Command::new(pp).args(&client[1..]).output();
            (s, Vec::new(), out)
        }
        Some(n) => {
            let chain = Chain::new(dir, tag, n, tcp);
            let s = spawn_server(
                &chain.server,
                &[pp, "server", &addr],
                Stdio::null(),
                Stdio::null(),
            );
            let relays = chain.relays(dir, tag);
            let out = rina_run(&chain.client, &client, Stdio::null(), Stdio::piped()).output();
            (s, relays, out)
        }
    };
    let out = out.expect("pingpong client");
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

/// Throughput and round trips through 0, 1, 2 and 4 relays, with TCP for scale.
pub(crate) fn section(dir: &tempfile::TempDir, runs: usize, mib: usize, rtt_count: usize) {
    const HOPS: [usize; 4] = [0, 1, 2, 4];
    let mut tput = vec![Vec::new(); HOPS.len() + 1];
    let mut rtts = vec![Vec::new(); HOPS.len() + 1];
    for run in 0..runs {
        let mut line = format!("run {run}:");
        for (i, relays) in std::iter::once(None)
            .chain(HOPS.iter().map(|&h| Some(h)))
            .enumerate()
        {
            let tag = format!("relay{run}-{i}");
            tput[i].push(throughput(dir, &tag, relays, mib));
            rtts[i].push(rtt(dir, &format!("{tag}p"), relays, rtt_count));
            line += &format!(
                " [{}] {:.2} Gbit/s {:.0} us",
                relays.map_or("tcp".to_owned(), |r| format!("{r} relays")),
                tput[i][run],
                rtts[i][run]
            );
        }
        eprintln!("{line}");
    }
    println!("nc {mib} MiB and 64 B round trips through relays (rina node, UDP on loopback), median of {runs} runs:");
    let (t0, r0) = (median(&tput[1]), median(&rtts[1]));
    println!(
        "  TCP            {:.2} Gbit/s   {:.1} us",
        median(&tput[0]),
        median(&rtts[0])
    );
    for (i, relays) in HOPS.iter().enumerate() {
        let (t, r) = (median(&tput[i + 1]), median(&rtts[i + 1]));
        println!(
            "  {relays} relay(s)     {t:.2} Gbit/s ({:.2} of one hop)   {r:.1} us ({:.2}x one hop)",
            t / t0,
            r / r0
        );
    }
    ring_section(dir, runs);
}

/// A UDP forwarder standing for one link: what arrives at `near` from the member that
/// uses it goes to `far` from `out`, and back; once `cut` is set, nothing passes.
struct Link {
    near: u16,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Link {
    fn new(far: u16) -> Self {
        let near = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let out = UdpSocket::bind("127.0.0.1:0").expect("bind");
        out.connect(("127.0.0.1", far)).expect("connect");
        let port = near.local_addr().expect("addr").port();
        let (cut, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let member = Arc::new(std::sync::Mutex::new(None));
        for dir in 0..2 {
            let (near, out) = (
                near.try_clone().expect("clone"),
                out.try_clone().expect("clone"),
            );
            let (cut, stop, member) = (cut.clone(), stop.clone(), member.clone());
            near.set_read_timeout(Some(Duration::from_millis(50))).ok();
            out.set_read_timeout(Some(Duration::from_millis(50))).ok();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if dir == 0 {
                        if let Ok((n, from)) = near.recv_from(&mut buf) {
                            *member.lock().unwrap() = Some(from);
                            if !cut.load(Ordering::Relaxed) {
                                let _ = out.send(&buf[..n]);
                            }
                        }
                    } else if let Ok(n) = out.recv(&mut buf) {
                        let to = *member.lock().unwrap();
                        if let (Some(to), false) = (to, cut.load(Ordering::Relaxed)) {
                            let _ = near.send_to(&buf[..n], to);
                        }
                    }
                }
            });
        }
        Self {
            near: port,
            cut,
            stop,
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Keepalives in the ring: a lost neighbour is noticed within 300 ms.
const RING_KEEPALIVE: &str = "keepalive-interval = \"100ms\"\nkeepalive-misses = 3\n";
const RING: usize = 16;

/// One ring of 16; the link between the last member and the first fails: (time until
/// a member at either end noticed, time until every forwarding table is right).
fn ring_once(dir: &tempfile::TempDir, run: usize) -> (Duration, Duration) {
    let ports: Vec<u16> = (0..RING).map(|_| free_udp_port()).collect();
    let link = Link::new(ports[0]);
    let mut nodes = Vec::new();
    for i in 0..RING {
        let via = (i > 0).then(|| ports[i - 1]);
        let mut extra = RING_KEEPALIVE.to_owned();
        if i == RING - 1 {
            extra += &format!(
                "neighbors = [{{ neighbor = \"127.0.0.1:{}\" }}]\n",
                link.near
            );
        }
        let r = rules(
            dir.path(),
            &format!("ring{run}-{i}.toml"),
            &member(ports[i], via, &extra),
        );
        nodes.push(node(&r));
    }
    let net = |pid: u32| ctl_json(pid)["difs"][0].clone();
    let addresses: Vec<u64> = nodes
        .iter()
        .map(|n| net(n.pid())["address"].as_u64().expect("enrolled"))
        .collect();
    let index = |a: u64| addresses.iter().position(|&x| x == a);
    // Next hop from i to j in the ring (shortest way; none of the tests needs the
    // tie of the opposite member settled) or in the line 0..RING once the link failed.
    let right = |nodes: &[Proc], line: bool| {
        nodes.iter().enumerate().all(|(i, n)| {
            let routes = net(n.pid())["routes"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            routes.len() == RING - 1
                && routes.iter().all(|r| {
                    let (Some(j), Some(h)) = (
                        r["destination"].as_u64().and_then(index),
                        r["next_hop"].as_u64().and_then(index),
                    ) else {
                        return false;
                    };
                    if line {
                        h == if j > i { i + 1 } else { i - 1 }
                    } else {
                        let fwd = (j + RING - i) % RING;
                        match fwd.cmp(&(RING / 2)) {
                            std::cmp::Ordering::Less => h == (i + 1) % RING,
                            std::cmp::Ordering::Greater => h == (i + RING - 1) % RING,
                            std::cmp::Ordering::Equal => {
                                h == (i + 1) % RING || h == (i + RING - 1) % RING
                            }
                        }
                    }
                })
        })
    };
    assert!(
        wait_until(Duration::from_secs(20), || right(&nodes, false)),
        "the ring never converged"
    );
    let ends = [0, RING - 1];
    let cut_at = Instant::now();
    link.cut.store(true, Ordering::Relaxed);
    let mut noticed = None;
    loop {
        if noticed.is_none()
            && ends.iter().any(|&e| {
                net(nodes[e].pid())["neighbors"]
                    .as_array()
                    .is_some_and(|n| n.len() < 2)
            })
        {
            noticed = Some(cut_at.elapsed());
        }
        if let Some(n) = noticed.filter(|_| right(&nodes, true)) {
            return (n, cut_at.elapsed());
        }
        assert!(
            cut_at.elapsed() < Duration::from_secs(30),
            "no convergence after the link failure"
        );
    }
}

/// Routing convergence after a link failure in a ring of 16, median of `runs`.
fn ring_section(dir: &tempfile::TempDir, runs: usize) {
    let (mut noticed, mut converged) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let (n, c) = ring_once(dir, run);
        eprintln!("ring run {run}: link loss noticed after {n:?}, every table right after {c:?}");
        noticed.push(n.as_secs_f64() * 1e3);
        converged.push(c.as_secs_f64() * 1e3);
    }
    println!(
        "ring of {RING} rina node members (UDP on loopback), one link fails, keepalives 100 ms x 3, median of {runs} runs:"
    );
    println!(
        "  loss noticed after {:.0} ms   every forwarding table right after {:.0} ms   ({:.0} ms after the loss was noticed)",
        median(&noticed),
        median(&converged),
        median(&converged) - median(&noticed)
    );
}
