//! A process that connects to a name it registered itself (issue 16): a listener
//! thread and a client thread in one process, with no other member in the DIF to wake
//! the stack. Flows between two applications of one member used to stall: handling a
//! PDU the member sent to itself made events but no transmission, and the runtime
//! slept with them pending (every connect timed out after 11 s). The runtime now
//! drains the core before every wait, and with `RINA_STRICT` (set for every e2e test)
//! aborts if it would ever sleep with core output pending.

use std::time::Duration;

use rina_e2e::*;

/// Runs `tests/programs/self_connect.py` (`mode`: blocking or epoll) for `rounds`
/// rounds, over RINA when `rules` is given, else over TCP: its max round time (ms).
fn run(rules: Option<&std::path::Path>, port: u16, rounds: usize, mode: &str) -> f64 {
    let script = program("self_connect.py");
    let (port, rounds) = (port.to_string(), rounds.to_string());
    let args = ["python3", script.to_str().unwrap(), &port, &rounds, mode];
    let mut cmd = over(rules, &args);
    let mut p = Proc::spawn("self_connect.py", &mut cmd);
    let out = p.stdout_within(Duration::from_secs(60));
    let st = p.expect_exit(Duration::from_secs(60));
    assert!(st.success(), "{mode}: {st:?}: {out}{}", p.stderr());
    println!(
        "{} {mode}: {}",
        if rules.is_some() { "RINA" } else { "TCP" },
        out.trim()
    );
    let field = |name: &str| -> f64 {
        let mut it = out.split_whitespace();
        it.find(|w| *w == name);
        it.next().and_then(|v| v.parse().ok()).expect("a figure")
    };
    assert_eq!(field("rounds") as usize, rounds.parse::<usize>().unwrap());
    field("max_ms")
}

fn self_connect(mode: &str) {
    assert!(have("python3"));
    let dir = temp_dir();
    let port = free_tcp_port();
    let r = loopback_rules(dir.path(), "self.toml");
    // Each round under 10 ms, as the issue asks (on a quiet machine the slowest is
    // 2-4 ms); TCP's own slowest round in the same test says what the noise is. On a
    // machine busy with other work, a round of a thousand can wait ~100 ms for a CPU
    // (the stack adds a thread to wake): two tries of all thousand, and if both see
    // such a round, none may reach 250 ms. The stall this guards against cost 11 s,
    // every round; a lost wake-up found by a retry costs 500 ms.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let rina_max = run(Some(&r), port, 1000, mode);
        let tcp_max = run(None, port, 1000, mode);
        if rina_max < 10f64.max(2.0 * tcp_max) {
            return;
        }
        seen.push((rina_max, tcp_max));
    }
    println!("slowest rounds on a busy machine (RINA ms, TCP ms): {seen:?}");
    assert!(
        seen.iter().all(|&(rina, _)| rina < 250.0),
        "slowest rounds (RINA ms, TCP ms): {seen:?}"
    );
}

#[test]
fn blocking_rounds_with_itself() {
    self_connect("blocking");
}

#[test]
fn nonblocking_rounds_with_itself_in_an_epoll_loop() {
    self_connect("epoll");
}
