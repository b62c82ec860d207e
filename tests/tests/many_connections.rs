//! Many connections opened at once by one program: 200 threads each connect, set
//! `TCP_NODELAY` and exchange requests at once, over RINA. The interposer's socket
//! table sweeps the entries of closed sockets while it grows; a sweep used to drop
//! the entries other threads recorded while it read `/proc/self/fd`, and the
//! `setsockopt` of such a connection then failed with EOPNOTSUPP (about one run in
//! five of this test). `reqresp` checks every answer against its request.

use std::process::Stdio;
use std::time::Duration;

use rina_e2e::*;

#[test]
fn two_hundred_connections_opened_at_once_all_work() {
    let dir = temp_dir();
    let p = pair(dir.path(), "many-conns");
    let load = bin_dir().join("reqresp");
    let load = load.to_str().expect("path");
    let addr = format!("127.0.0.1:{}", p.port);
    let mut srv = Proc::spawn(
        "reqresp server",
        &mut rina_run(
            &p.server,
            &[load, "server", &addr],
            Stdio::null(),
            Stdio::null(),
        ),
    );
    assert!(
        wait_for_rina_listener(srv.pid(), Duration::from_secs(15)),
        "the server never listened: {}",
        srv.kill_and_stderr()
    );
    for round in 0..2 {
        let out = output_within(
            &mut rina_run(
                &p.client,
                &[load, "client", &addr, "1", "200", "1"],
                Stdio::null(),
                Stdio::piped(),
            ),
            Duration::from_secs(120),
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && said.contains("rps="),
            "round {round}: {said} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    srv.kill_and_stderr();
}
