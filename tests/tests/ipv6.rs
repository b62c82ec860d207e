//! IPv6 addresses in rules (issue 3): programs using AF_INET6 sockets and IPv6
//! literals reach RINA applications; the addresses need not exist on any interface,
//! since nothing is sent to them over IP.

use std::process::Stdio;
use std::time::Duration;

use rina_e2e::*;

/// Server and client rules for one application at `[fd00::1]:port` (TCP and UDP).
fn v6_pair(dir: &std::path::Path, app: &str) -> (u16, std::path::PathBuf, std::path::PathBuf) {
    let (su, port) = (free_udp_port(), free_tcp_port());
    let (s, c) = pair_rules(su, 0, port, app);
    let v6 = |t: String| {
        t.replace(
            &format!("\"127.0.0.1:{port}\""),
            &format!("\"[fd00::1]:{port}\""),
        )
    };
    let (s, c) = (v6(s), v6(c));
    assert!(s.contains("[fd00::1]") && c.contains("[fd00::1]"));
    (
        port,
        rules(dir, &format!("{app}-server.toml"), &s),
        rules(dir, &format!("{app}-client.toml"), &c),
    )
}

/// `nc -6` to `nc -6 -l` on `[fd00::1]`: 1 MB byte-exact, and the same over UDP
/// (`nc -6 -u`).
#[test]
fn nc_over_ipv6_rule_addresses() {
    assert!(have("nc"));
    let dir = temp_dir();
    let (port, s, c) = v6_pair(dir.path(), "nc6");
    let p = port.to_string();
    let data = random_bytes(1_000_000, 61);
    let (input, output) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::write(&input, &data).unwrap();
    let mut server = spawn_server(
        &s,
        &["nc", "-6", "-l", "fd00::1", &p],
        Stdio::null(),
        stdout_to(&output),
    );
    let out = output_within(
        &mut rina_run(
            &c,
            &["nc", "-6", "-N", "fd00::1", &p],
            stdin_from(&input),
            Stdio::null(),
        ),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.expect_exit(Duration::from_secs(20)).success());
    assert!(std::fs::read(&output).unwrap() == data, "bytes differ");

    // UDP: the client's line reaches the server, the server's line comes back.
    let (port, s, c) = v6_pair(dir.path(), "nc6u");
    let p = port.to_string();
    let files: Vec<_> = ["s_in", "s_out", "c_in", "c_out"]
        .iter()
        .map(|f| dir.path().join(f))
        .collect();
    std::fs::write(&files[0], "from the v6 server\n").unwrap();
    std::fs::write(&files[2], "from the v6 client\n").unwrap();
    let mut server = Proc::spawn(
        "nc -6 -u -l",
        &mut rina_run(
            &s,
            &["nc", "-6", "-u", "-l", "fd00::1", &p],
            stdin_from(&files[0]),
            stdout_to(&files[1]),
        ),
    );
    // A client started before the server's stack is up finds nothing at its endpoint
    // (refused at once, as a TCP connect would be): start it again until it gets through.
    let mut client: Option<Proc> = None;
    let ok = wait_until(Duration::from_secs(15), || {
        if client.as_ref().is_none_or(|c| has_exited(c.pid())) {
            client = Some(Proc::spawn(
                "nc -6 -u",
                &mut rina_run(
                    &c,
                    &["nc", "-6", "-u", "fd00::1", &p],
                    stdin_from(&files[2]),
                    stdout_to(&files[3]),
                ),
            ));
        }
        std::fs::read_to_string(&files[3]).unwrap_or_default() == "from the v6 server\n"
    });
    let cerr = client
        .as_mut()
        .map(Proc::kill_and_stderr)
        .unwrap_or_default();
    let serr = server.kill_and_stderr();
    assert!(ok, "client: {cerr}; server: {serr}");
    assert_eq!(
        std::fs::read_to_string(&files[1]).unwrap(),
        "from the v6 client\n"
    );
}

/// `curl -g http://[fd00::1]:port/` against `python3 -m http.server --bind fd00::1`:
/// the page arrives; curl names the IPv6 peer, the server logs a v4-mapped synthetic
/// peer.
#[test]
fn curl_to_an_ipv6_literal() {
    assert!(have("curl") && have("python3"));
    let dir = temp_dir();
    let (port, s, c) = v6_pair(dir.path(), "web6");
    let site = dir.path().join("site");
    std::fs::create_dir(&site).unwrap();
    std::fs::write(site.join("index.html"), "over an IPv6 rule\n").unwrap();
    let p = port.to_string();
    let mut server = spawn_server(
        &s,
        &[
            "python3",
            "-m",
            "http.server",
            &p,
            "--bind",
            "fd00::1",
            "--directory",
            site.to_str().unwrap(),
        ],
        Stdio::null(),
        Stdio::null(),
    );
    let url = format!("http://[fd00::1]:{p}/");
    let out = run_within(
        &c,
        &["curl", "-g", "-sS", "-v", "--max-time", "10", &url],
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "over an IPv6 rule\n");
    assert!(err.contains("Connected to fd00::1 (fd00::1)"), "{err}");
    let log = server.kill_and_stderr();
    let line = log
        .lines()
        .find(|l| l.contains("\"GET / HTTP/1.1\" 200"))
        .unwrap_or_else(|| panic!("no request logged: {log}"));
    assert!(line.starts_with("::ffff:100."), "{line}");
}
