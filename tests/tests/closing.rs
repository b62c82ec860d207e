//! A peer's close never discards what was written toward the other side (issue 9):
//! a server that writes its answer and closes without reading, while the client's
//! request is still on its way, over and over. Over TCP every answer arrives; it must
//! over RINA too (before the fix, 24 of 200 small answers and every 1 MiB answer were
//! lost: the late request met the closed socket and the flow was torn down before the
//! answer was delivered).

use std::process::Stdio;
use std::time::Duration;

use rina_e2e::*;

/// `rounds` rounds of "accept, write `answer` bytes, close" against "write `request`
/// bytes, read to the end": every answer arrives whole.
fn rounds(answer: usize, request: usize, rounds: usize) {
    assert!(have("python3"));
    let dir = temp_dir();
    let p = pair(dir.path(), "answers");
    let script = program("write_then_close.py");
    let (port, n, r) = (p.port.to_string(), answer.to_string(), rounds.to_string());
    let s = script.to_str().unwrap();
    let mut server = spawn_server(
        &p.server,
        &["python3", s, "server", &port, &n, &r],
        Stdio::null(),
        Stdio::null(),
    );
    let req = request.to_string();
    let mut client = Proc::spawn(
        "client",
        &mut rina_run(
            &p.client,
            &["python3", s, "client", &port, &n, &r, &req],
            Stdio::null(),
            Stdio::piped(),
        ),
    );
    let out = client.stdout_within(Duration::from_secs(120));
    let st = client.expect_exit(Duration::from_secs(120));
    assert!(st.success(), "client: {st:?}: {}", client.stderr());
    assert_eq!(
        out.trim(),
        format!("lost 0 of {rounds}"),
        "{}",
        client.stderr()
    );
    let st = server.expect_exit(Duration::from_secs(30));
    assert!(st.success(), "server: {st:?}: {}", server.stderr());
}

#[test]
fn small_answers_written_then_closed_all_arrive() {
    rounds(20, 10, 200);
}

#[test]
fn large_answers_written_then_closed_all_arrive() {
    rounds(1 << 20, 10, 200);
}

#[test]
fn large_answers_arrive_while_the_client_writes_a_mebibyte() {
    rounds(1 << 20, 1 << 20, 200);
}
