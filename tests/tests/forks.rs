//! Processes that share rules (issue 3): a fork child that makes RINA calls of its own
//! while its parent's stack runs, and a second server started with the same rules as
//! the first. Each joins the DIF as one more member, through the process that holds
//! the rules' endpoints.

use std::process::Stdio;
use std::time::Duration;

use rina_e2e::*;

/// The parent registers a name (its stack starts) and accepts a flow, then forks; the
/// child connects to another application (its own stack, a new member joined through
/// the parent's) and hands the answer to the parent, which relays it.
#[test]
fn fork_child_makes_its_own_flows() {
    assert!(have("python3") && have("nc"));
    let dir = temp_dir();
    let (su, front, back) = (free_udp_port(), free_tcp_port(), free_tcp_port());
    let (server, _) = pair_rules(su, 0, front, "front");
    // The same rules for both: "front" is registered by the parent, "back" by nc;
    // the parent's child connects to "back".
    let rules_text = format!(
        "{server}\n[[listen]]\non = \"127.0.0.1:{back}\"\ndif = \"net\"\napp = \"back\"\n\n[[connect]]\nto = \"127.0.0.1:{back}\"\ndif = \"net\"\napp = \"back\"\n\n[[connect]]\nto = \"127.0.0.1:{front}\"\ndif = \"net\"\napp = \"front\"\n"
    );
    let shared = rules(dir.path(), "shared.toml", &rules_text);
    let reply = dir.path().join("reply");
    std::fs::write(&reply, "from the back end\n").unwrap();
    let parent_script = format!(
        r#"
import os, socket, sys
l = socket.socket(); l.bind(("127.0.0.1", {front})); l.listen(4)
c, _ = l.accept()
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    s = socket.create_connection(("127.0.0.1", {back}), timeout=10)
    s.shutdown(socket.SHUT_WR)
    os.write(w, s.makefile("rb").read()); os._exit(0)
os.close(w)
got = b""
while True:
    b = os.read(r, 100)
    if not b: break
    got += b
os.waitpid(pid, 0)
c.sendall(b"parent relays: " + got); c.close()
"#
    );
    let mut parent = Proc::spawn(
        "python parent",
        rina_run(
            &shared,
            &["python3", "-c", &parent_script],
            Stdio::null(),
            Stdio::null(),
        )
        .stderr(Stdio::piped()),
    );
    assert!(
        wait_for_rina_listener(parent.pid(), Duration::from_secs(10)),
        "{}",
        parent.kill_and_stderr()
    );
    // The back end: a second process with the same rules (it joins through the
    // parent, which holds the rules' UDP endpoint).
    let _back = spawn_server(
        &shared,
        &["nc", "-l", "127.0.0.1", &back.to_string()],
        stdin_from(&reply),
        Stdio::null(),
    );
    let (_, client) = pair_rules(su, 0, front, "front");
    let client = rules(dir.path(), "client.toml", &client);
    let out = run_within(
        &client,
        &["nc", "-N", "127.0.0.1", &front.to_string()],
        Duration::from_secs(60),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "parent relays: from the back end\n",
        "client: {}\nparent: {}",
        String::from_utf8_lossy(&out.stderr),
        parent.kill_and_stderr()
    );
    assert!(parent.expect_exit(Duration::from_secs(10)).success());
}

/// Two servers started with one rules file (a bootstrap member) whose listen rule says
/// `pool = true`: the second joins through the first and registers the same name;
/// clients reach both.
#[test]
fn second_server_with_the_same_rules_joins_the_pool() {
    assert!(have("python3") && have("nc"));
    let dir = temp_dir();
    let p = pair(dir.path(), "same-rules");
    let text = std::fs::read_to_string(&p.server).unwrap();
    std::fs::write(&p.server, format!("{text}pool = true\n")).unwrap();
    let server = |name: &str| {
        format!(
            "import socket\nl = socket.socket(); l.bind(('127.0.0.1', {})); l.listen(8)\nwhile True:\n    c, _ = l.accept(); c.sendall(b'{name}\\n'); c.close()\n",
            p.port
        )
    };
    let _one = spawn_server(
        &p.server,
        &["python3", "-c", &server("one")],
        Stdio::null(),
        Stdio::null(),
    );
    let _two = spawn_server(
        &p.server,
        &["python3", "-c", &server("two")],
        Stdio::null(),
        Stdio::null(),
    );
    let mut seen = std::collections::BTreeSet::new();
    let both = wait_until(Duration::from_secs(15), || {
        let out = run_within(
            &p.client,
            &["nc", "-N", "127.0.0.1", &p.port.to_string()],
            Duration::from_secs(60),
        );
        seen.insert(String::from_utf8_lossy(&out.stdout).trim().to_owned());
        seen.contains("one") && seen.contains("two")
    });
    assert!(both, "answers seen: {seen:?}");
}

/// A second server of a name another process serves, without `pool = true`: its
/// `listen` fails with EADDRINUSE and its log says who holds the name; the first
/// keeps every client.
#[test]
fn second_server_without_a_pool_is_refused() {
    assert!(have("python3") && have("nc"));
    let dir = temp_dir();
    let p = pair(dir.path(), "taken");
    let port = p.port;
    let first = format!(
        "import socket\nl = socket.socket(); l.bind(('127.0.0.1', {port})); l.listen(8)\nwhile True:\n    c, _ = l.accept(); c.sendall(b'first\\n'); c.close()\n"
    );
    let _one = spawn_server(
        &p.server,
        &["python3", "-c", &first],
        Stdio::null(),
        Stdio::null(),
    );
    let second = format!(
        "import socket, errno, sys\nl = socket.socket(); l.bind(('127.0.0.1', {port}))\ntry:\n    l.listen(8)\nexcept OSError as e:\n    print(errno.errorcode[e.errno]); sys.exit(0)\nprint('listening')\n"
    );
    let log = dir.path().join("second.log");
    let mut cmd = rina_run(
        &p.server,
        &["python3", "-c", &second],
        Stdio::null(),
        Stdio::piped(),
    );
    cmd.env("RINA_LOG", "info").env("RINA_LOG_FILE", &log);
    let mut two = Proc::spawn("second server", &mut cmd);
    let out = two.stdout_within(Duration::from_secs(20));
    let st = two.expect_exit(Duration::from_secs(20));
    assert!(st.success(), "{}", two.stderr());
    assert_eq!(out.trim(), "EADDRINUSE", "{}", two.stderr());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("\"taken\"") || text.contains("taken is registered"),
        "the log names the name and its holder: {text}"
    );
    assert!(text.contains("registered in DIF net by member"), "{text}");
    for _ in 0..5 {
        let out = run_within(
            &p.client,
            &["nc", "-N", "127.0.0.1", &port.to_string()],
            Duration::from_secs(20),
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "first");
    }
}

/// An exec that fails after the stack was handed to a keeper: the process goes on
/// with a new stack (joined through the keeper), and both its old and new flows work.
#[test]
fn failed_exec_keeps_the_process_working() {
    assert!(have("python3"));
    let dir = temp_dir();
    let p = pair(dir.path(), "failed-exec");
    let server = format!(
        "import socket\nl = socket.socket(); l.bind(('127.0.0.1', {})); l.listen(4)\nfor _ in range(2):\n    c, _ = l.accept(); d = c.recv(100); c.sendall(b'echo ' + d); c.close()\n",
        p.port
    );
    let mut srv = spawn_server(
        &p.server,
        &["python3", "-c", &server],
        Stdio::null(),
        Stdio::null(),
    );
    let client = format!(
        r#"
import os, socket
a = socket.create_connection(("127.0.0.1", {port}), timeout=10)
try:
    os.execv("/nonexistent/program", ["program"])
except OSError as e:
    print("exec failed:", e.errno)
b = socket.create_connection(("127.0.0.1", {port}), timeout=10)
for s, m in ((a, b"old"), (b, b"new")):
    s.sendall(m); print(s.recv(100).decode())
"#,
        port = p.port
    );
    let out = run_within(
        &p.client,
        &["python3", "-c", &client],
        Duration::from_secs(60),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "exec failed: 2\necho old\necho new\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(srv.expect_exit(Duration::from_secs(10)).success());
}
