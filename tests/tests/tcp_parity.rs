//! TCP's smaller promises (issue 16): one program, `tests/programs/tcp_parity.py`, runs
//! its cases plainly over kernel TCP and then under rules that send every loopback
//! listen and connect of the process through RINA (the process bootstraps its DIF
//! alone): a closed listener refuses, connect before listen then retry, a bound source
//! port kept, options set before listen or connect read back, `sendto` on a connected
//! stream, back-pressure on a stalled reader, a read after the peer closed, both ends
//! agreeing on the addresses. The same assertions pass both ways.

use std::time::Duration;

use rina_e2e::*;

/// Runs the cases (over RINA when `rules` is given): each case's line.
fn run(rules: Option<&std::path::Path>, base: u16) -> Vec<String> {
    let script = program("tcp_parity.py");
    let base = base.to_string();
    let args = ["python3", script.to_str().unwrap(), &base];
    let mut cmd = over(rules, &args);
    let mut p = Proc::spawn("tcp_parity.py", &mut cmd);
    let out = p.stdout_within(Duration::from_secs(120));
    p.expect_exit(Duration::from_secs(120));
    println!(
        "{}:\n{out}{}",
        if rules.is_some() { "RINA" } else { "TCP" },
        p.stderr()
    );
    out.lines().map(str::to_owned).collect()
}

#[test]
fn every_case_passes_over_tcp_and_over_rina() {
    assert!(have("python3"));
    let dir = temp_dir();
    // Ten consecutive free ports for the cases (bound once to check, then released).
    let base = (0..200)
        .map(|_| free_tcp_port())
        .find(|&b| {
            b < 65000 && (0..10).all(|i| std::net::TcpListener::bind(("127.0.0.1", b + i)).is_ok())
        })
        .expect("ten free ports");
    let r = loopback_rules(dir.path(), "parity.toml");
    let tcp = run(None, base);
    let rina = run(Some(&r), base);
    assert_eq!(tcp.len(), 9, "every case ran over TCP: {tcp:?}");
    for line in &tcp {
        assert!(line.ends_with(" ok"), "over TCP: {line}");
    }
    assert_eq!(rina, tcp, "the same results over RINA");
}
