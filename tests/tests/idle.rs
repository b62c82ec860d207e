//! What an idle flow costs: a client and a server holding an open flow and sending
//! nothing use under 0.5% of a core each over 30 seconds (the runtime thread sleeps
//! until its next timer, keepalives included, and its spin stops when nothing comes).
//! Then the flow still works.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use rina_e2e::*;

#[test]
fn an_idle_flow_costs_under_half_a_percent_of_a_core() {
    let dir = temp_dir();
    let p = pair(dir.path(), "idle");
    let port = p.port.to_string();
    let mut server = spawn_server(
        &p.server,
        &["nc", "-l", "127.0.0.1", &port],
        Stdio::null(),
        Stdio::piped(),
    );
    let mut client = Proc::spawn(
        "nc client",
        &mut rina_run(
            &p.client,
            &["nc", "-N", "127.0.0.1", &port],
            Stdio::piped(),
            Stdio::null(),
        ),
    );
    let mut stdin = client.take_stdin().expect("stdin");
    stdin.write_all(b"hello\n").expect("write");
    assert!(
        server
            .stdout_until("hello", Duration::from_secs(15))
            .is_some(),
        "the flow never carried the first line: {}",
        client.kill_and_stderr()
    );
    // Let start-up work (enrollment, the flow's first acknowledgements) settle.
    std::thread::sleep(Duration::from_secs(2));
    let (c0, s0) = (process_cpu(client.pid()), process_cpu(server.pid()));
    let window = Duration::from_secs(30);
    std::thread::sleep(window);
    let (c1, s1) = (process_cpu(client.pid()), process_cpu(server.pid()));
    let bound = window / 200;
    for (who, used) in [("client", c1 - c0), ("server", s1 - s0)] {
        eprintln!("idle {who}: {used:?} of CPU in {window:?}");
        assert!(
            used < bound,
            "the idle {who} used {used:?} of CPU in {window:?} (bound {bound:?})"
        );
    }
    // Still a working flow.
    stdin.write_all(b"still here\n").expect("write");
    assert!(server
        .stdout_until("still here", Duration::from_secs(15))
        .is_some());
    drop(stdin);
    assert!(client.expect_exit(Duration::from_secs(15)).success());
    assert!(server.expect_exit(Duration::from_secs(15)).success());
}
