//! Hosts for end-to-end tests: network namespaces joined by a veth pair or by a bridge,
//! with no IP address anywhere unless a test adds one. Names are unique per test and
//! process, so tests run in parallel and twice; everything (the processes inside
//! included) is removed when the value is dropped, also when the test fails.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::output_within;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The interface every host has toward the others.
pub const IFACE: &str = "eth0";

/// A member's rules: an Ethernet shim on [`IFACE`] and a normal DIF `net` over it
/// (bootstrap, or enrolled through any member found by broadcast), then `extra`.
pub fn eth_member(bootstrap: bool, extra: &str) -> String {
    let join = if bootstrap {
        "bootstrap = true"
    } else {
        "enroll-via = { dif = \"eth\" }"
    };
    format!(
        "[[dif]]\nname = \"eth\"\ntype = \"ethernet\"\ninterface = \"{IFACE}\"\n\n\
         [[dif]]\nname = \"net\"\ntype = \"normal\"\nover = [\"eth\"]\n{join}\n\n{extra}"
    )
}

/// A set of hosts (network namespaces).
#[derive(Debug)]
pub struct Hosts {
    hosts: Vec<String>,
    /// The namespace holding the bridge, if the hosts share one.
    hub: Option<String>,
}

fn ip(args: &[&str]) {
    let out = output_within(
        Command::new("ip").args(args).stdin(Stdio::null()),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Hosts {
    fn names(tag: &str, n: usize) -> Vec<String> {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        (0..n)
            .map(|i| format!("rina-{tag}-{pid}-{id}-h{i}"))
            .collect()
    }

    fn create(names: &[String]) {
        for n in names {
            ip(&["netns", "add", n]);
            ip(&["-n", n, "link", "set", "lo", "up"]);
            // No IPv6 either: an interface coming up would get a link-local address
            // and send router solicitations.
            let st = output_within(
                Command::new("ip")
                    .args(["netns", "exec", n, "sysctl", "-qw"])
                    .args([
                        "net.ipv6.conf.all.disable_ipv6=1",
                        "net.ipv6.conf.default.disable_ipv6=1",
                    ])
                    .stdin(Stdio::null()),
                Duration::from_secs(30),
            )
            .status;
            assert!(st.success(), "cannot switch IPv6 off in {n}");
        }
    }

    /// Two hosts joined by a veth pair (`eth0` on each side).
    pub fn pair(tag: &str) -> Self {
        let hosts = Self::names(tag, 2);
        let me = Self { hosts, hub: None };
        Self::create(&me.hosts);
        let (a, b) = (&me.hosts[0], &me.hosts[1]);
        ip(&[
            "-n", a, "link", "add", IFACE, "type", "veth", "peer", "name", IFACE, "netns", b,
        ]);
        for h in &me.hosts {
            ip(&["-n", h, "link", "set", IFACE, "up"]);
        }
        me
    }

    /// `n` hosts on one bridge (in a hub namespace of its own), `eth0` on each.
    pub fn bridge(tag: &str, n: usize) -> Self {
        let mut names = Self::names(tag, n + 1);
        let hub = names.pop().expect("the hub");
        let me = Self {
            hosts: names,
            hub: Some(hub.clone()),
        };
        Self::create(&me.hosts);
        Self::create(std::slice::from_ref(&hub));
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        for (i, h) in me.hosts.iter().enumerate() {
            let port = format!("p{i}");
            ip(&[
                "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", IFACE, "netns", h,
            ]);
            ip(&["-n", &hub, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &hub, "link", "set", &port, "up"]);
            ip(&["-n", h, "link", "set", IFACE, "up"]);
        }
        me
    }

    /// The namespace of host `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.hosts[i]
    }

    /// `program args...` inside host `i`.
    pub fn command(&self, i: usize, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.hosts[i]]).args(args);
        c.stdin(Stdio::null()).stderr(Stdio::piped());
        c.env_remove("RINA_LOG");
        c
    }

    /// `rina run -c RULES -- args...` inside host `i`.
    pub fn rina_run(
        &self,
        i: usize,
        rules: &Path,
        args: &[&str],
        stdin: Stdio,
        stdout: Stdio,
    ) -> Command {
        let rina = crate::rina();
        let mut all: Vec<&str> = vec![
            rina.to_str().expect("path"),
            "run",
            "-c",
            rules.to_str().expect("path"),
            "--",
        ];
        all.extend_from_slice(args);
        let mut c = self.command(i, &all);
        c.stdin(stdin).stdout(stdout);
        c
    }

    /// Adds an IP address to host `i`'s `eth0` (for TCP baselines).
    pub fn add_address(&self, i: usize, cidr: &str) {
        ip(&["-n", &self.hosts[i], "addr", "add", cidr, "dev", IFACE]);
    }

    /// Starts capturing the first 64 bytes of every frame on host `i`'s `eth0` into
    /// `pcap` (tcpdump; its stderr in `err`), once it listens. Stop it with
    /// [`Capture::finish`].
    pub fn capture(&self, i: usize, pcap: &Path, err: &Path) -> Capture {
        let file = pcap.to_str().expect("a UTF-8 path");
        let mut c = self.command(
            i,
            &["tcpdump", "-i", IFACE, "-nn", "-U", "-s", "64", "-w", file],
        );
        c.stdout(Stdio::null())
            .stderr(std::fs::File::create(err).expect("create the capture's stderr"));
        let proc = crate::Proc::spawn("tcpdump", &mut c);
        assert!(
            crate::wait_until(Duration::from_secs(10), || std::fs::read_to_string(err)
                .is_ok_and(|t| t.contains("listening on"))),
            "tcpdump did not start"
        );
        Capture {
            proc,
            pcap: pcap.to_owned(),
        }
    }

    /// Waits (up to `limit`) until something in host `i` listens on TCP port `port`.
    pub fn wait_listening(&self, i: usize, port: u16, limit: Duration) -> bool {
        let filter = format!("sport = :{port}");
        crate::wait_until(limit, || {
            let out = output_within(
                &mut self.command(i, &["ss", "-Hltn", &filter]),
                Duration::from_secs(10),
            );
            !out.stdout.is_empty()
        })
    }

    /// The MAC address of host `i`'s `eth0`.
    pub fn mac(&self, i: usize) -> String {
        let out = output_within(
            &mut self.command(i, &["cat", &format!("/sys/class/net/{IFACE}/address")]),
            Duration::from_secs(10),
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain(self.hub.iter()) {
            // Every process still in the namespace goes first (by pid), then the
            // namespace, and with it its interfaces. (Bounded like every wait: an `ip`
            // that hung would fail the test, or abort it if it already failed, rather
            // than hang it.)
            let pids = output_within(
                Command::new("ip")
                    .args(["netns", "pids", ns])
                    .stdin(Stdio::null()),
                Duration::from_secs(30),
            );
            for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    // SAFETY: sending SIGKILL to a process of the test's namespace.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            let _ = output_within(
                Command::new("ip")
                    .args(["netns", "del", ns])
                    .stdin(Stdio::null()),
                Duration::from_secs(30),
            );
        }
    }
}

/// A tcpdump capture running in a host ([`Hosts::capture`]).
#[derive(Debug)]
pub struct Capture {
    proc: crate::Proc,
    pcap: std::path::PathBuf,
}

impl Capture {
    /// Stops the capture and checks that it holds at least `frames` RINA frames
    /// (Ethertype 0xD1F0) and no IP packet or ARP.
    pub fn expect_only_rina(self, frames: usize) {
        let count = self.finish();
        let rina = count("ether proto 0xd1f0");
        assert!(rina > frames, "only {rina} RINA frames captured");
        assert_eq!(count("ip or ip6 or arp"), 0, "IP on the wire");
    }

    /// Stops the capture (it writes out what it captured) and returns a counter of
    /// the packets matching a tcpdump filter in it.
    pub fn finish(mut self) -> impl Fn(&str) -> usize {
        // SAFETY: SIGINT to our own child: tcpdump writes out what it captured and exits.
        unsafe { libc::kill(self.proc.pid() as i32, libc::SIGINT) };
        self.proc.expect_exit(Duration::from_secs(10));
        let pcap = self.pcap;
        move |filter: &str| {
            let out = output_within(
                Command::new("tcpdump")
                    .arg("-nn")
                    .arg("-r")
                    .arg(&pcap)
                    .arg(filter)
                    .stdin(Stdio::null()),
                Duration::from_secs(30),
            );
            String::from_utf8_lossy(&out.stdout).lines().count()
        }
    }
}
