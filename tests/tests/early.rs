//! Early connects (issue 14): a program that connects again to a destination it
//! reached before gets its connection at once, and its first bytes ride on the flow
//! request, as TCP Fast Open's ride on its SYN (`runtime/src/driver/early.rs`).
//!
//! A client makes twenty connections one after another to an echo server, each with a
//! request of its own length (64 bytes to 19 KiB: some fit the request, some do not),
//! and every echo is byte-exact; the server's counters show bytes that came with flow
//! requests. Then the server closes its listener: once the client's directory no
//! longer lists the name, its next connect fails with ECONNREFUSED, as before (an early
//! connect is made only to a destination the directory lists).
//!
//! A program that writes more than a flow request carries after an early connect and
//! exits before the flow is up (its server is stopped) loses nothing: the exit waits
//! for the flow (bounded by the linger), and the server gets every byte once resumed.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use rina_e2e::*;

/// DIF `net` of `pid`'s report.
fn net(pid: u32) -> serde_json::Value {
    ctl_json(pid)["difs"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["name"] == "net").cloned())
        .unwrap_or_default()
}

/// The echo server of `early_connect.py` under a pair of rules for `app` in `dir`,
/// and a client running it with `args` after its port (both with piped stdin and
/// stdout): (server, client).
fn echo_and_client(dir: &std::path::Path, app: &str, args: &[&str]) -> (Proc, Proc) {
    assert!(have("python3"));
    let p = pair(dir, app);
    let script = program("early_connect.py");
    let (s, port) = (script.to_str().unwrap(), p.port.to_string());
    let server = spawn_server(
        &p.server,
        &["python3", s, "server", &port],
        Stdio::piped(),
        Stdio::piped(),
    );
    let mut argv = vec!["python3", s, args[0], &port];
    argv.extend_from_slice(&args[1..]);
    let client = Proc::spawn(
        "client",
        &mut rina_run(&p.client, &argv, Stdio::piped(), Stdio::piped()),
    );
    (server, client)
}

#[test]
fn repeated_connects_carry_their_first_bytes_and_a_withdrawn_name_is_refused() {
    let dir = temp_dir();
    let (mut server, mut client) = echo_and_client(dir.path(), "early", &["client", "20"]);
    let Some(out) = client.stdout_until("again?", Duration::from_secs(60)) else {
        panic!("client: {}", client.kill_and_stderr());
    };
    assert!(out.contains("ok 20"), "{out}{}", client.kill_and_stderr());
    let received = net(server.pid())["counters"]["first_data_received"]
        .as_u64()
        .unwrap_or(0);
    assert!(received > 0, "no bytes came with a flow request");

    // The listener closes; the name leaves the client's directory.
    let mut server_in = server.take_stdin().unwrap();
    server_in.write_all(b"close\n").unwrap();
    let Some(_) = server.stdout_until("closed", Duration::from_secs(10)) else {
        panic!("server: {}", server.kill_and_stderr());
    };
    let listed = |pid| {
        net(pid)["directory"]
            .as_array()
            .is_some_and(|d| d.iter().any(|e| e["app"] == "early"))
    };
    assert!(
        wait_until(Duration::from_secs(10), || !listed(client.pid())),
        "the client's directory still lists the name"
    );
    let mut client_in = client.take_stdin().unwrap();
    client_in.write_all(b"\n").unwrap();
    let out = client.stdout_within(Duration::from_secs(30));
    assert_eq!(out.trim(), "connect: refused", "{}", client.stderr());
    assert!(client.expect_exit(Duration::from_secs(10)).success());
    drop(server_in);
    assert!(server.expect_exit(Duration::from_secs(10)).success());
}

/// Sends `signal` (`STOP`, `CONT`) to `pid`.
fn signal(pid: u32, signal: &str) {
    let st = output_within(
        std::process::Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]),
        Duration::from_secs(10),
    )
    .status;
    assert!(st.success(), "kill -{signal} {pid}");
}

#[test]
fn an_exit_waits_for_the_early_connects_on_their_way() {
    let dir = temp_dir();
    let (mut server, mut client) = echo_and_client(dir.path(), "late", &["late"]);
    let Some(_) = client.stdout_until("again?", Duration::from_secs(30)) else {
        panic!("client: {}", client.kill_and_stderr());
    };
    // The server (its stack too) stops: the next flow cannot be made for now.
    signal(server.pid(), "STOP");
    let mut client_in = client.take_stdin().unwrap();
    client_in.write_all(b"\n").unwrap();
    let written = client.stdout_until("written", Duration::from_secs(30));
    let waited = client.wait_timeout(Duration::from_secs(1)).is_none();
    signal(server.pid(), "CONT");
    assert!(written.is_some(), "client: {}", client.kill_and_stderr());
    assert!(waited, "the client exited with its flow not made");
    assert!(client.expect_exit(Duration::from_secs(30)).success());
    let Some(_) = server.stdout_until("got 20006", Duration::from_secs(20)) else {
        panic!("server: {}", server.kill_and_stderr());
    };
    drop(client_in);
    server.close_stdin();
    assert!(server.expect_exit(Duration::from_secs(10)).success());
}
