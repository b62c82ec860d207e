//! Relaying (issue 5): members that forward, started with `rina node` (a stack with no
//! program), in chains and rings; routes that heal when a relay dies; a member that
//! comes back on its own.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rina_e2e::*;

/// A member's rules over a UDP shim at `udp`: bootstrap, or enroll through the member
/// at UDP port `via`; keepalives every 200 ms, lost after 3 misses; then `extra`.
fn member(udp: u16, via: Option<u16>, extra: &str) -> String {
    let join = match via {
        None => "bootstrap = true".to_owned(),
        Some(p) => format!("enroll-via = {{ neighbor = \"127.0.0.1:{p}\" }}"),
    };
    format!(
        "[[dif]]\nname = \"udp\"\ntype = \"udp\"\nbind = \"127.0.0.1:{udp}\"\n\n[[dif]]\nname = \"net\"\ntype = \"normal\"\nover = [\"udp\"]\n{join}\nkeepalive-interval = \"200ms\"\nkeepalive-misses = 3\n\n{extra}"
    )
}

/// A `rina node` with its log in `log`, started and waited for until it has joined.
fn node(rules: &Path, log: &Path) -> Proc {
    let mut cmd = Command::new(rina());
    cmd.arg("node")
        .arg("-c")
        .arg(rules)
        .env("RINA_LOG", "info")
        .env("RINA_LOG_FILE", log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut p = Proc::spawn("rina node", &mut cmd);
    let joined = wait_until(Duration::from_secs(15), || {
        std::fs::read_to_string(log).is_ok_and(|t| t.contains("enrolled in DIF net"))
    });
    if !joined {
        panic!(
            "node never joined: {}\n{}",
            p.kill_and_stderr(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    p
}

fn listen(port: u16) -> String {
    format!("[[listen]]\non = \"127.0.0.1:{port}\"\ndif = \"net\"\napp = \"far\"\n")
}

fn connect(port: u16) -> String {
    format!("[[connect]]\nto = \"127.0.0.1:{port}\"\ndif = \"net\"\napp = \"far\"\n")
}

/// Five members in a chain over UDP: the nc server, three `rina node` relays, the nc
/// client; 8 MiB each way at once, byte-exact.
#[test]
fn nc_through_a_chain_of_three_relays() {
    assert!(have("nc"));
    let dir = temp_dir();
    let ports: Vec<u16> = (0..5).map(|_| free_udp_port()).collect();
    let tcp = free_tcp_port();
    let path = |n: &str| dir.path().join(n);
    let server_rules = rules(dir.path(), "m0.toml", &member(ports[0], None, &listen(tcp)));
    let (up, down) = (random_bytes(8 << 20, 71), random_bytes(8 << 20, 72));
    std::fs::write(path("up"), &up).unwrap();
    std::fs::write(path("down"), &down).unwrap();
    let mut server = spawn_server(
        &server_rules,
        &["nc", "-l", "127.0.0.1", &tcp.to_string()],
        stdin_from(&path("down")),
        stdout_to(&path("s.out")),
    );
    let mut relays = Vec::new();
    for i in 1..4 {
        let r = rules(
            dir.path(),
            &format!("m{i}.toml"),
            &member(ports[i], Some(ports[i - 1]), ""),
        );
        relays.push(node(&r, &path(&format!("m{i}.log"))));
    }
    let client_rules = rules(
        dir.path(),
        "m4.toml",
        &member(ports[4], Some(ports[3]), &connect(tcp)),
    );
    let out = rina_run(
        &client_rules,
        &["nc", "-N", "127.0.0.1", &tcp.to_string()],
        stdin_from(&path("up")),
        stdout_to(&path("c.out")),
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.expect_exit(Duration::from_secs(30)).success());
    assert!(
        std::fs::read(path("s.out")).unwrap() == up,
        "bytes to the server differ"
    );
    assert!(
        std::fs::read(path("c.out")).unwrap() == down,
        "bytes to the client differ"
    );
    // The nodes stop cleanly on SIGTERM.
    for mut r in relays {
        // SAFETY: SIGTERM to our own child.
        unsafe { libc::kill(r.pid() as i32, libc::SIGTERM) };
        let st = r.expect_exit(Duration::from_secs(10));
        assert!(st.success(), "node: {st:?}");
    }
}
