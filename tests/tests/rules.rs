//! Rules files fail closed (D4): a mistake stops `rina check` and `rina run` (and a
//! program preloaded by hand) with file:line:col and the problem, and nothing runs or
//! is sent. Without any rules file the interposer changes nothing.

use std::process::{Command, Stdio};
use std::time::Duration;

use rina_e2e::*;

const GOOD_HEAD: &str = "[[dif]]\nname = \"udp\"\ntype = \"udp\"\nbind = \"127.0.0.1:7399\"\n\n[[dif]]\nname = \"net\"\ntype = \"normal\"\nover = [\"udp\"]\nbootstrap = true\n";

/// (file name, contents, line, expected words)
fn bad_files() -> Vec<(&'static str, String, usize, &'static str)> {
    vec![
        (
            "syntax.toml",
            format!("{GOOD_HEAD}\n[[connect]]\nto = \"127.0.0.1:80\ndif = \"net\"\n"),
            13,
            "invalid basic string",
        ),
        (
            "unknown-key.toml",
            format!("{GOOD_HEAD}colour = \"blue\"\n"),
            11,
            "unknown field `colour`",
        ),
        (
            "unknown-dif.toml",
            format!(
                "{GOOD_HEAD}\n[[connect]]\nto = \"127.0.0.1:80\"\ndif = \"nett\"\napp = \"x\"\n"
            ),
            14,
            "unknown DIF \"nett\"",
        ),
        (
            "bad-address.toml",
            format!(
                "{GOOD_HEAD}\n[[listen]]\non = \"127.0.0.256:80\"\ndif = \"net\"\napp = \"x\"\n"
            ),
            13,
            "not an IP address",
        ),
    ]
}

#[test]
fn bad_rules_stop_check_run_and_preload() {
    let dir = temp_dir();
    for (name, text, line, words) in bad_files() {
        let path = rules(dir.path(), name, &text);
        let want = format!("{}:{line}:", path.display());

        let out = output_within(
            Command::new(rina()).arg("check").arg(&path),
            Duration::from_secs(30),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: rina check accepted it");
        assert!(
            err.contains(&want) && err.contains(words),
            "{name}: rina check said {err:?}"
        );

        // rina run must not start the program: it would create the marker.
        let marker = dir.path().join(format!("{name}.ran"));
        let out = output_within(
            Command::new(rina())
                .arg("run")
                .arg("-c")
                .arg(&path)
                .args(["--", "touch"])
                .arg(&marker),
            Duration::from_secs(30),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: rina run succeeded");
        assert!(
            err.contains(&want) && err.contains(words),
            "{name}: rina run said {err:?}"
        );
        assert!(!marker.exists(), "{name}: the program ran");

        // Preloaded by hand: the program stops before its first instruction of work,
        // so a connect it would make is never attempted.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let out = output_within(Command::new("python3")
            .args(["-c", &format!("import socket; socket.create_connection(('127.0.0.1', {port})); open('{}', 'w')", marker.display())])
            .env("LD_PRELOAD", interposer())
            .env("RINA_CONFIG", &path)
            , Duration::from_secs(30));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains(&want) && err.contains(words),
            "{name}: preload said {err:?}"
        );
        assert!(!marker.exists(), "{name}: the program ran");
        assert!(listener.accept().is_err(), "{name}: a connection was made");
    }
}

#[test]
fn check_describes_a_good_file() {
    let root = bin_dir().join("../..");
    let out = output_within(
        Command::new(rina())
            .arg("check")
            .arg(root.join("examples/netcat/client.toml")),
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains(
            "enrolls through peer server over udp (a leaf in a program, a full member in `rina node`)"
        ),
        "{text}"
    );
    assert!(
        text.contains("connect 127.0.0.1:5000 (tcp and udp) -> DIF net, application \"nc-server\""),
        "{text}"
    );
    // A DIF without security says so, in one line.
    assert!(
        text.contains("DIF net is open: anyone who reaches its members' endpoints can join it"),
        "{text}"
    );
}

/// Without any rules file, a program under the interposer behaves exactly as without
/// it: same output, same exit code, over ordinary TCP and UDP.
#[test]
fn no_rules_means_no_change() {
    let home = temp_dir();
    let script = r#"
import socket, threading, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
port = srv.getsockname()[1]
def serve():
    c, a = srv.accept()
    c.sendall(c.recv(100).upper()); c.close()
t = threading.Thread(target=serve); t.start()
s = socket.create_connection(("127.0.0.1", port)); s.sendall(b"hello tcp")
print(s.recv(100).decode(), s.getpeername()[0], s.family.name, s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE))
t.join()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); v.sendto(b"hello udp", u.getsockname())
print(u.recvfrom(100)[0].decode())
try:
    socket.create_connection(("127.0.0.1", 1), timeout=2)
except OSError as e:
    print("refused:", e.errno)
sys.exit(3)
"#;
    let run = |preload: bool| {
        let mut c = Command::new("python3");
        c.args(["-c", script])
            .env_remove("RINA_CONFIG")
            .env_remove("XDG_CONFIG_HOME")
            .env("HOME", home.path());
        if preload {
            c.env("LD_PRELOAD", interposer());
        }
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut p = Proc::spawn("python3", &mut c);
        let st = p.expect_exit(Duration::from_secs(20));
        let out = p.stdout_within(Duration::from_secs(20));
        (st.code(), out)
    };
    let plain = run(false);
    let preloaded = run(true);
    assert_eq!(plain.0, Some(3));
    assert!(
        plain.1.contains("HELLO TCP 127.0.0.1 AF_INET 1") && plain.1.contains("refused: 111"),
        "{}",
        plain.1
    );
    assert_eq!(plain, preloaded);
}
