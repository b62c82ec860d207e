//! The management socket answers only the stack's own user and root: `rina ctl` run
//! as another user is refused, says why, and shows nothing of the stack.

use std::process::{Command, Stdio};
use std::time::Duration;

use rina_e2e::*;

/// `rina ctl` as `nobody` (uid 65534), with the given arguments.
fn ctl_as_nobody(args: &[&str]) -> std::process::Output {
    output_within(
        Command::new("setpriv")
            .args([
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
                "--",
            ])
            .arg(rina())
            .arg("ctl")
            .args(args)
            .stdin(Stdio::null()),
        Duration::from_secs(20),
    )
}

#[test]
fn another_user_is_refused_and_sees_nothing() {
    assert!(have("setpriv") && have("python3"));
    let dir = temp_dir();
    let p = pair(dir.path(), "secret-service");
    let server = format!(
        "import socket, time\nl = socket.socket(); l.bind(('127.0.0.1', {})); l.listen(4)\ntime.sleep(60)\n",
        p.port
    );
    let s = spawn_server(
        &p.server,
        &["python3", "-c", &server],
        Stdio::null(),
        Stdio::null(),
    );
    let pid = s.pid().to_string();
    // Its own user (root here) reads it.
    let report = ctl_json(s.pid());
    assert_eq!(report["pid"].as_u64(), Some(u64::from(s.pid())), "{report}");
    assert!(report.to_string().contains("secret-service"), "{report}");
    // Another user is refused, with the reason, and gets none of it.
    let out = ctl_as_nobody(&[&pid, "--json"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("refused") && stderr.contains("answers only its own user"),
        "{stderr}"
    );
    assert!(!stdout.contains("secret-service") && !stderr.contains("secret-service"));
    // Listing the stacks here: this one is counted as another user's, not shown.
    let out = ctl_as_nobody(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("belong to other users"), "{stdout}");
    assert!(
        !stdout.contains(&pid) && !stdout.contains("secret-service"),
        "{stdout}"
    );
}
