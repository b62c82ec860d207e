//! The gateway pair (`rina gateway`): nc throughput and 64-byte round trips from a
//! plain TCP client through an ingress gateway, a DIF over the UDP shim on loopback
//! and an egress gateway to a plain TCP server, against the client and server over
//! TCP directly, in the same run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rina_e2e::*;

use super::{against_tcp, nc_throughput, rtt};

/// Prints the section's medians.
pub(crate) fn section(dir: &tempfile::TempDir, runs: usize, mib: usize, rtt_count: usize) {
    against_tcp(
        &format!("nc {mib} MiB through a gateway pair"),
        "gateways",
        runs,
        |run| {
            [
                nc_throughput(dir, mib, None),
                gateway_nc(dir.path(), mib, run),
                rtt(dir, rtt_count, None),
                gateway_rtt(dir.path(), rtt_count, run),
            ]
        },
    );
}

/// A running gateway pair: the ingress's TCP port.
struct Pair {
    _egress: Proc,
    _ingress: Proc,
    port: u16,
}

/// An egress gateway to 127.0.0.1:`server` and an ingress gateway to it.
fn pair(dir: &Path, server: u16, run: usize) -> Pair {
    let udp = free_udp_port();
    let egress =
        format!("[[egress]]\napp = \"bench\"\ndif = \"net\"\nto = \"127.0.0.1:{server}\"\n");
    let e = rina_gateway(
        dir,
        &format!("gw-e{run}"),
        &many::udp_member(udp, None, &egress),
        false,
    );
    let port = free_tcp_port();
    let ingress =
        format!("[[ingress]]\nlisten = \"127.0.0.1:{port}\"\ndif = \"net\"\napp = \"bench\"\n");
    let i = rina_gateway(
        dir,
        &format!("gw-i{run}"),
        &many::udp_member(free_udp_port(), Some(udp), &ingress),
        false,
    );
    assert!(
        wait_until(Duration::from_secs(5), || tcp_port_in_use(port)),
        "the ingress gateway did not listen"
    );
    Pair {
        _egress: e,
        _ingress: i,
        port,
    }
}

/// Gbit/s of `nc -N` into `nc -l` through a gateway pair.
fn gateway_nc(dir: &Path, mib: usize, run: usize) -> f64 {
    let server_port = free_tcp_port();
    let mut server = Proc::spawn(
        "nc -l",
        Command::new("nc")
            .args(["-l", "127.0.0.1", &server_port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
    );
    assert!(
        wait_until(Duration::from_secs(5), || tcp_port_in_use(server_port)),
        "nc did not listen"
    );
    let gw = pair(dir, server_port, run);
    let bytes = mib << 20;
    let start = Instant::now();
    let cmd = format!("head -c {bytes} /dev/zero | nc -N 127.0.0.1 {}", gw.port);
    let st = Command::new("sh")
        .args(["-c", &cmd])
        .stdout(Stdio::null())
        .status()
        .expect("client");
    assert!(st.success(), "nc through the gateways failed");
    server.expect_exit(Duration::from_secs(120));
    (bytes as f64 * 8.0) / start.elapsed().as_secs_f64() / 1e9
}

/// Median 64-byte round trip in µs through a gateway pair.
fn gateway_rtt(dir: &Path, count: usize, run: usize) -> f64 {
    let pingpong = bin_dir().join("pingpong");
    let server_port = free_tcp_port();
    let _server = Proc::spawn(
        "pingpong server",
        Command::new(&pingpong).args(["server", &format!("127.0.0.1:{server_port}")]),
    );
    assert!(
        wait_until(Duration::from_secs(5), || tcp_port_in_use(server_port)),
        "pingpong did not listen"
    );
    let gw = pair(dir, server_port, run);
    let out = output_within(
        Command::new(&pingpong).args([
            "client",
            &format!("127.0.0.1:{}", gw.port),
            &count.to_string(),
        ]),
        Duration::from_secs(120),
    );
    super::pingpong_median(&out)
}
