//! A flow costs a program one descriptor, as a TCP connection does (issue 9): the
//! stack's own descriptors (its end of every flow's socket pair, its sockets, epoll,
//! eventfd) are moved above the program's range. A client under the common
//! 1024-descriptor limit opens 1000 connections over TCP and 1000 flows over RINA,
//! with every descriptor it holds below 1024, and `select` works on the last one.
//! Before, the stack's ends lived among the program's: EMFILE came at about 507 flows.

use std::process::{Command, Stdio};
use std::time::Duration;

use rina_e2e::*;

/// Runs the client (under `rules`, or over TCP): its one line of output.
fn client(rules: Option<&std::path::Path>, port: u16) -> String {
    let script = program("many_flows.py");
    let port = port.to_string();
    let args = ["python3", script.to_str().unwrap(), "client", &port, "1000"];
    let mut cmd = over(rules, &args);
    let mut p = Proc::spawn("client", &mut cmd);
    let out = p.stdout_within(Duration::from_secs(120));
    assert!(
        p.expect_exit(Duration::from_secs(120)).success(),
        "{}",
        p.stderr()
    );
    out.trim().to_owned()
}

fn check(line: &str, how: &str) {
    let w: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(w.first(), Some(&"opened"), "{how}: {line}");
    assert_eq!(w[1], "1000", "{how}: {line}");
    let highest: i32 = w[3].parse().unwrap();
    assert!(
        highest < 1024,
        "{how}: descriptor {highest} for a select user: {line}"
    );
    assert_eq!(w[5], "ok", "{how}: select on a flow's descriptor: {line}");
}

#[test]
fn a_thousand_flows_under_a_1024_descriptor_limit() {
    assert!(have("python3"));
    let dir = temp_dir();
    let script = program("many_flows.py");
    // Over kernel TCP, for comparison.
    let port = free_tcp_port();
    let mut tcp_server = Proc::spawn(
        "tcp server",
        Command::new("python3")
            .args([script.to_str().unwrap(), "server", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    if tcp_server
        .stdout_until("listening", Duration::from_secs(30))
        .is_none()
    {
        panic!(
            "the TCP server did not start: {}",
            tcp_server.kill_and_stderr()
        );
    }
    check(&client(None, port), "TCP");
    drop(tcp_server);
    // Over RINA.
    let p = pair(dir.path(), "many-flows");
    let _server = spawn_server(
        &p.server,
        &[
            "python3",
            script.to_str().unwrap(),
            "server",
            &p.port.to_string(),
        ],
        Stdio::null(),
        Stdio::null(),
    );
    check(&client(Some(&p.client), p.port), "RINA");
}
