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
    // Every relay relayed, and `rina ctl` shows it: the middle one still has two
    // neighbours (the server and the client at the ends said goodbye).
    for (i, r) in relays.iter().enumerate() {
        let state = ctl_json(r.pid());
        let net = &state["difs"][0];
        // 8 MiB each way in PDUs of about 64 KiB: at least 256 data PDUs.
        let relayed = net["counters"]["pdus_relayed"].as_u64().unwrap();
        assert!(relayed >= 256, "{state:#}");
        let neighbours = net["neighbors"].as_array().unwrap().len();
        assert_eq!(neighbours, if i == 1 { 2 } else { 1 }, "{state:#}");
    }
    let middle = ctl_json(relays[1].pid());
    let net = &middle["difs"][0];
    // The three relays are left.
    assert_eq!(net["members"].as_array().unwrap().len(), 3, "{middle:#}");
    assert_eq!(net["routes"].as_array().unwrap().len(), 2, "{middle:#}");
    assert_eq!(middle["program"], "node");
    let text = Command::new(rina())
        .args(["ctl", &relays[1].pid().to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    for want in [
        "DIF net: member node.net|",
        "neighbours:",
        "routes:",
        "directory:",
        "relayed",
    ] {
        assert!(text.contains(want), "{want:?} missing in:\n{text}");
    }
    let list = Command::new(rina()).arg("ctl").output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for r in &relays {
        assert!(list.contains(&format!("{}  node", r.pid())), "{list}");
    }
    // The nodes stop cleanly on SIGTERM.
    for mut r in relays {
        // SAFETY: SIGTERM to our own child.
        unsafe { libc::kill(r.pid() as i32, libc::SIGTERM) };
        let st = r.expect_exit(Duration::from_secs(10));
        assert!(st.success(), "node: {st:?}");
    }
}
