//! The tunnel (`rina tun`): nc throughput and 64-byte round trips of plain TCP inside
//! the tunnel (over the Ethernet shim on a veth pair between two namespaces), against
//! the same programs over TCP on the veth itself (with IPv4 addresses on it for that
//! baseline), interleaved. Needs root; skipped otherwise.

use std::process::Stdio;
use std::time::{Duration, Instant};

use rina_e2e::netns::{Hosts, IFACE};
use rina_e2e::*;

/// The veth's addresses (the baseline) and the tunnel's.
const VETH: [&str; 2] = ["10.66.0.1", "10.66.0.2"];
const TUNNEL: [&str; 2] = ["10.77.0.1", "10.77.0.2"];

/// Prints the section's medians: on a veth of the common Ethernet MTU (1500), the
/// figure the aim is judged on, then of jumbo frames (9000), as data-centre links
/// have, then at MTU 1500 with 1% of the frames each way dropped (nftables, on
/// ingress of each end: TCP's own 64 kB batches cross a veth whole, so it loses
/// 1% of those), for both TCP and the tunnel.
pub(crate) fn section(dir: &tempfile::TempDir, runs: usize, mib: usize, rtt_count: usize) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("tunnel: skipped (needs root for namespaces, raw sockets and TUN)");
        return;
    }
    for (mtu, loss) in [(1500, 0), (9000, 0), (1500, 1)] {
        on_veth(dir, mtu, loss, runs, mib, rtt_count);
    }
}

fn on_veth(
    dir: &tempfile::TempDir,
    mtu: u32,
    loss: u32,
    runs: usize,
    mib: usize,
    rtt_count: usize,
) {
    let hosts = Hosts::pair(&format!("tunb{}", hosts_tag(mtu, loss)));
    for (i, addr) in VETH.iter().enumerate() {
        let st = hosts
            .command(i, &["ip", "link", "set", IFACE, "mtu", &mtu.to_string()])
            .status()
            .expect("ip");
        assert!(st.success(), "cannot set the veth's MTU to {mtu}");
        hosts.add_address(i, &format!("{addr}/24"));
    }
    let _tunnels: Vec<Proc> = (0..2)
        .map(|i| start(&hosts, dir, &hosts_tag(mtu, loss), i))
        .collect();
    let lossy = if loss > 0 {
        super::loss::set_loss(&hosts, dir, loss);
        format!(", {loss}% of frames dropped")
    } else {
        String::new()
    };
    super::against_tcp(
        &format!("nc {mib} MiB inside rina tun (Ethernet shim, veth MTU {mtu}{lossy})"),
        "tunnel",
        runs,
        |_| {
            [
                throughput(&hosts, VETH[0], mib),
                throughput(&hosts, TUNNEL[0], mib),
                rtt(&hosts, VETH[0], rtt_count),
                rtt(&hosts, TUNNEL[0], rtt_count),
            ]
        },
    );
}

/// What names a variant's hosts and files.
fn hosts_tag(mtu: u32, loss: u32) -> String {
    format!("{}{loss}", mtu / 1000)
}

/// Starts host `i`'s tunnel and waits until its device is up.
fn start(hosts: &Hosts, dir: &tempfile::TempDir, tag: &str, i: usize) -> Proc {
    let join = if i == 0 {
        "bootstrap = true"
    } else {
        "enroll-via = { dif = \"eth\" }"
    };
    let text = format!(
        "[[dif]]\nname = \"eth\"\ntype = \"ethernet\"\ninterface = \"{IFACE}\"\n\n\
         [[dif]]\nname = \"net\"\ntype = \"normal\"\nover = [\"eth\"]\n{join}\n\n\
         [tun]\ndif = \"net\"\napp = \"tun{i}\"\naddresses = [\"{}/24\"]\n\n\
         [[tun.peer]]\napp = \"tun{}\"\nroutes = [\"{}/32\"]\n",
        TUNNEL[i],
        1 - i,
        TUNNEL[1 - i]
    );
    let r = rules(dir.path(), &format!("tun{i}-{tag}.toml"), &text);
    let err = dir.path().join(format!("tun{i}-{tag}.err"));
    let p = Proc::spawn(
        "rina tun",
        hosts
            .command(
                i,
                &[rina().to_str().unwrap(), "tun", "-c", r.to_str().unwrap()],
            )
            .stdout(Stdio::null())
            .stderr(stdout_to(&err)),
    );
    let up = wait_until(Duration::from_secs(15), || {
        std::fs::read_to_string(&err).is_ok_and(|t| t.contains("stops it"))
    });
    assert!(up, "rina tun {i} never came up");
    p
}

/// Gbit/s of `head -c MIB | nc -N` from host 1 into `nc -l` on `ip` in host 0.
fn throughput(hosts: &Hosts, ip: &str, mib: usize) -> f64 {
    let bytes = mib << 20;
    let mut server = Proc::spawn(
        "nc -l",
        hosts
            .command(0, &["nc", "-l", ip, "5000"])
            .stdout(Stdio::null()),
    );
    assert!(
        hosts.wait_listening(0, 5000, Duration::from_secs(5)),
        "nc did not listen on {ip}"
    );
    let script = format!("head -c {bytes} /dev/zero | nc -N {ip} 5000");
    let start = Instant::now();
    let st = hosts
        .command(1, &["sh", "-c", &script])
        .stdout(Stdio::null())
        .status()
        .expect("client");
    assert!(st.success(), "nc to {ip} failed");
    server.expect_exit(Duration::from_secs(120));
    (bytes as f64 * 8.0) / start.elapsed().as_secs_f64() / 1e9
}

/// Median 64-byte round trip in µs from host 1 to a pingpong server on `ip` in host 0.
fn rtt(hosts: &Hosts, ip: &str, count: usize) -> f64 {
    let pingpong = bin_dir().join("pingpong");
    let pp = pingpong.to_str().expect("path");
    let addr = format!("{ip}:5001");
    let _server = Proc::spawn(
        "pingpong",
        hosts
            .command(0, &[pp, "server", &addr])
            .stdout(Stdio::null()),
    );
    assert!(
        hosts.wait_listening(0, 5001, Duration::from_secs(5)),
        "pingpong did not listen on {addr}"
    );
    let out = output_within(
        hosts
            .command(1, &[pp, "client", &addr, &count.to_string()])
            .stdout(Stdio::piped()),
        Duration::from_secs(120),
    );
    super::pingpong_median(&out)
}
