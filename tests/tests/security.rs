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

/// A secured pair: (TCP port, server rules, client rules, server UDP port, client UDP
/// port). `server_trust` says whom the server trusts (`CLIENT`: the client's key);
/// `extra` goes into both security sections.
fn secured_pair(dir: &Path, app: &str, server_trust: &str, extra: &str) -> SecuredPair {
    let (skey, spub) = keygen(dir, &format!("{app}-server"));
    let (ckey, cpub) = keygen(dir, &format!("{app}-client"));
    std::fs::write(dir.join(format!("{app}-client.pub")), &cpub).unwrap();
    let (port, sudp, cudp) = (free_tcp_port(), free_udp_port(), free_udp_port());
    let (s, c) = pair_rules(sudp, cudp, port, app);
    let trust = server_trust.replace("CLIENT", &cpub);
    let s = secure(&s, &skey, &format!("{trust}\n{extra}"));
    let c = secure(&c, &ckey, &format!("trust = [{spub:?}]\n{extra}"));
    SecuredPair {
        port,
        server: rules(dir, &format!("{app}-server.toml"), &s),
        client: rules(dir, &format!("{app}-client.toml"), &c),
        server_udp: sudp,
        client_udp: cudp,
    }
}

/// Rules of a secured pair and their ports.
struct SecuredPair {
    port: u16,
    server: PathBuf,
    client: PathBuf,
    server_udp: u16,
    client_udp: u16,
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
    let SecuredPair {
        port,
        server: s_rules,
        client: c_rules,
        server_udp: sudp,
        ..
    } = secured_pair(dir.path(), app, "trust = [\"CLIENT\"]", "");
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
    assert!(
        text.contains("trusts 1 key(s): ") && text.contains("(listed)"),
        "{text}"
    );
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
    nothing_readable(&wire, &ex, &[app, "server.net", "nc.net"]);
}

/// The capture `wire` holds no 16-byte run of the exchange's data (at any offset) and
/// none of `names`.
fn nothing_readable(wire: &[u8], ex: &Exchange, names: &[&str]) {
    let run = |w: &[u8]| u128::from_ne_bytes(w.try_into().unwrap());
    for (what, data) in [("to the server", &ex.up), ("to the client", &ex.down)] {
        let runs: std::collections::HashSet<u128> = data.windows(16).map(run).collect();
        let leaked = wire.windows(16).position(|w| runs.contains(&run(w)));
        assert!(
            leaked.is_none(),
            "16 bytes of the data {what} are on the wire at {leaked:?}"
        );
    }
    for name in names {
        let seen = wire.windows(name.len()).position(|w| w == name.as_bytes());
        let around = seen.map(|i| {
            String::from_utf8_lossy(&wire[i.saturating_sub(48)..(i + 48).min(wire.len())])
                .into_owned()
        });
        assert!(seen.is_none(), "{name:?} is on the wire: {around:?}");
    }
}

/// A secured member's rules over the Ethernet shim: `who` (server bootstraps, client
/// enrolls by broadcast) with `key`, trusting `trust`, then `tail`.
fn eth_member(who: &str, key: &Path, trust: &str, tail: &str) -> String {
    let iface = netns::IFACE;
    let join = if who == "server" {
        "bootstrap = true"
    } else {
        "enroll-via = { dif = \"eth\" }"
    };
    format!(
        "[[dif]]\nname = \"eth\"\ntype = \"ethernet\"\ninterface = \"{iface}\"\n\n\
         [[dif]]\nname = \"net\"\ntype = \"normal\"\nover = [\"eth\"]\nipcp = \"{who}.net\"\n{join}\n\n\
         [dif.security]\nkey = {key:?}\ntrust = [{trust:?}]\n\n{tail}"
    )
}

/// Over the Ethernet shim between two namespaces (a veth, no IP): the same transfer
/// byte-exact, and a capture on the veth holds nothing readable.
#[test]
fn a_secured_dif_over_ethernet_shows_nothing_readable() {
    require_nc();
    assert!(have("tcpdump"));
    let dir = temp_dir();
    let d = dir.path();
    let hosts = netns::Hosts::pair("sec-eth");
    let (skey, spub) = keygen(d, "eth-server");
    let (ckey, cpub) = keygen(d, "eth-client");
    let app = "sealed-eth";
    let tail = |rule: &str, key: &str| {
        format!("[[{rule}]]\n{key} = \"10.9.0.1:5000\"\ndif = \"net\"\napp = \"{app}\"\n")
    };
    let s = rules(
        d,
        "s.toml",
        &eth_member("server", &skey, &cpub, &tail("listen", "on")),
    );
    let c = rules(
        d,
        "c.toml",
        &eth_member("client", &ckey, &spub, &tail("connect", "to")),
    );
    let (pcap, cap_err) = (d.join("eth.pcap"), d.join("cap.err"));
    let iface = netns::IFACE;
    let args = [
        "tcpdump",
        "-i",
        iface,
        "-U",
        "-s",
        "0",
        "-B",
        "65536",
        "-w",
        pcap.to_str().unwrap(),
    ];
    let mut capture = Proc::spawn(
        "tcpdump",
        hosts
            .command(0, &args)
            .stdout(Stdio::null())
            .stderr(stdout_to(&cap_err)),
    );
    let listening = || std::fs::read_to_string(&cap_err).is_ok_and(|t| t.contains("listening on"));
    assert!(
        wait_until(Duration::from_secs(10), listening),
        "tcpdump did not start"
    );
    let ex = Exchange::new(d, 1 << 20, 23);
    let (sin, sout) = ex.server_io();
    let srv_args = ["nc", "-l", "-N", "10.9.0.1", "5000"];
    let mut srv = Proc::spawn("nc", &mut hosts.rina_run(0, &s, &srv_args, sin, sout));
    let up = wait_for_rina_listener(srv.pid(), Duration::from_secs(10));
    assert!(up, "{}", srv.kill_and_stderr());
    let (cin, cout) = ex.client_io();
    let cl_args = ["nc", "-N", "10.9.0.1", "5000"];
    let mut client = Proc::spawn("nc", &mut hosts.rina_run(1, &c, &cl_args, cin, cout));
    ex.check(&mut client, &mut srv);
    // SAFETY: SIGINT to our own child: tcpdump writes out what it captured and exits.
    unsafe { libc::kill(capture.pid() as i32, libc::SIGINT) };
    capture.expect_exit(Duration::from_secs(10));
    let wire = std::fs::read(&pcap).unwrap();
    assert!(
        wire.len() > 1 << 20,
        "the capture holds the transfer: {} bytes",
        wire.len()
    );
    nothing_readable(&wire, &ex, &[app, "server.net", "client.net"]);
}

#[test]
fn a_member_whose_key_is_not_trusted_cannot_join() {
    require_nc();
    let dir = temp_dir();
    // The server trusts some other key, not the client's.
    let (_, other) = keygen(dir.path(), "other");
    let trust = format!("trust = [{other:?}]");
    let SecuredPair {
        port,
        server: s_rules,
        client: c_rules,
        ..
    } = secured_pair(dir.path(), "impostor", &trust, "");
    let s_log = dir.path().join("server.log");
    let p = port.to_string();
    let mut server = spawn_logged_server(
        &s_rules,
        &s_log,
        &["nc", "-l", "127.0.0.1", &p],
        Stdio::null(),
        Stdio::null(),
    );
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

/// A paced transfer (`paced.py`) from the client to a sink at the server, over
/// RINA when `pair` is given (else kernel TCP on `port`), while `during` runs: the
/// sink's report line, and its stack's report (over RINA) before it exits.
fn paced_transfer(
    pair: Option<&SecuredPair>,
    port: u16,
    seconds: &str,
    during: impl FnOnce(),
) -> (String, Option<serde_json::Value>) {
    let script = program("paced.py");
    let script = script.to_str().unwrap();
    let p = port.to_string();
    let sink_args = ["python3", script, "sink", "127.0.0.1", &p];
    let mut sink = match pair {
        Some(pr) => spawn_server(&pr.server, &sink_args, Stdio::piped(), Stdio::piped()),
        None => {
            let mut c = over(None, &sink_args);
            c.stdin(Stdio::piped());
            let mut p = Proc::spawn("sink", &mut c);
            let up = wait_until(Duration::from_secs(10), || tcp_port_in_use(port));
            assert!(up, "sink never listened: {}", p.kill_and_stderr());
            p
        }
    };
    let send_args = ["python3", script, "send", "127.0.0.1", &p, seconds];
    let mut sender = Proc::spawn(
        "sender",
        &mut over(pair.map(|pr| pr.client.as_path()), &send_args),
    );
    during();
    let sent = sender.stdout_within(Duration::from_secs(60));
    let st = sender.expect_exit(Duration::from_secs(60));
    assert!(st.success(), "sender: {st:?}: {sent}{}", sender.stderr());
    let Some(got) = sink.stdout_until("max_gap_ms", Duration::from_secs(60)) else {
        panic!("the sink said nothing: {}", sink.kill_and_stderr());
    };
    let report = pair.map(|_| ctl_json(sink.pid()));
    // Its stdin ends: it exits.
    sink.close_stdin();
    assert!(sink.expect_exit(Duration::from_secs(30)).success());
    // What was sent arrived whole.
    let field = |line: &str, k: &str| -> String {
        let mut it = line.split_whitespace();
        it.find(|w| *w == k);
        it.next().unwrap_or_default().to_owned()
    };
    assert_eq!(field(&got, "got"), field(&sent, "sent"), "{got} / {sent}");
    assert_eq!(
        field(&got, "sha256"),
        field(&sent, "sha256"),
        "{got} / {sent}"
    );
    (got, report)
}

/// The sink's longest wait between two reads, ms.
fn max_gap(line: &str) -> f64 {
    let mut it = line.split_whitespace();
    it.find(|w| *w == "max_gap_ms");
    it.next().and_then(|v| v.parse().ok()).expect("max_gap_ms")
}

/// The security figures of the report's DIF `net`.
fn security(report: &serde_json::Value) -> &serde_json::Value {
    let difs = report["difs"].as_array().expect("difs");
    let net = difs.iter().find(|d| d["name"] == "net").expect("DIF net");
    &net["security"]
}

#[test]
fn replayed_flipped_forged_and_released_datagrams_are_dropped_and_counted() {
    assert!(have("python3"));
    let dir = temp_dir();
    let pair = secured_pair(dir.path(), "attacked", "trust = [\"CLIENT\"]", "");
    let attack = program("sealed_attack.py");
    let mut attacker = None;
    let (got, report) = paced_transfer(Some(&pair), pair.port, "3", || {
        let mut a = Proc::spawn(
            "attacker",
            Command::new("python3")
                .arg(&attack)
                .args([
                    pair.server_udp.to_string(),
                    pair.client_udp.to_string(),
                    "40".into(),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let said = a.stdout_within(Duration::from_secs(60));
        assert!(
            a.expect_exit(Duration::from_secs(30)).success(),
            "{said}{}",
            a.stderr()
        );
        assert!(said.contains("replayed 40"), "{said}");
        attacker = Some(said);
    });
    let report = report.unwrap();
    let sec = security(&report);
    println!("{got}\n{:?}\n{sec}", attacker);
    assert_eq!(sec["replays"].as_u64(), Some(40), "{sec}");
    // Flipped (40) and forged (40) PDUs do not open.
    assert_eq!(sec["opens_failed"].as_u64(), Some(80), "{sec}");
    assert_eq!(sec["handshakes_refused"].as_u64(), Some(0), "{sec}");
    let shim = &report["shims"][0];
    assert_eq!(shim["releases_ignored"].as_u64(), Some(1), "{shim}");
    // The stall the spoofed release caused (9.2 s) is gone: data kept flowing.
    assert!(max_gap(&got) < 1000.0, "{got}");
}

/// Sessions replaced every 100 ms during a 3 s transfer: no wait between two reads
/// longer than 100 ms (or than twice the same transfer's over kernel TCP, on a busy
/// machine), and many handshakes.
#[test]
fn rekeying_during_a_transfer_does_not_stall_it() {
    assert!(have("python3"));
    let dir = temp_dir();
    let pair = secured_pair(
        dir.path(),
        "rekeyed",
        "trust = [\"CLIENT\"]",
        "rekey-after = \"100ms\"",
    );
    let (got, report) = paced_transfer(Some(&pair), pair.port, "3", || {});
    let (tcp, _) = paced_transfer(None, free_tcp_port(), "3", || {});
    let sec = security(report.as_ref().unwrap()).clone();
    println!("RINA: {got}\nTCP: {tcp}\n{sec}");
    assert!(sec["handshakes"].as_u64().unwrap() >= 15, "{sec}");
    assert_eq!(sec["opens_failed"].as_u64(), Some(0), "{sec}");
    let (rina, kernel) = (max_gap(&got), max_gap(&tcp));
    assert!(
        rina < 100f64.max(2.0 * kernel),
        "longest wait {rina} ms (TCP {kernel} ms)"
    );
}

/// A key removed from the server's trust directory: its adjacency ends within the
/// directory's re-reading (a second) and a new attempt to join is refused.
#[test]
fn a_key_removed_from_the_trust_directory_is_refused_from_then_on() {
    assert!(have("python3"));
    let dir = temp_dir();
    let trusted = dir.path().join("trusted");
    std::fs::create_dir(&trusted).unwrap();
    let pair = secured_pair(dir.path(), "revoked", "trust-dir = \"trusted\"", "");
    let client_pub = dir.path().join("revoked-client.pub");
    std::fs::copy(&client_pub, trusted.join("client.pub")).unwrap();
    let script = program("paced.py");
    let script = script.to_str().unwrap();
    let p = pair.port.to_string();
    let s_log = dir.path().join("server.log");
    let sink_args = ["python3", script, "sink", "127.0.0.1", &p];
    let sink = spawn_logged_server(
        &pair.server,
        &s_log,
        &sink_args,
        Stdio::piped(),
        Stdio::piped(),
    );
    let send_args = ["python3", script, "send", "127.0.0.1", &p, "20"];
    let _sender = Proc::spawn("sender", &mut over(Some(&pair.client), &send_args));
    let neighbours = |pid: u32| -> usize {
        let r = ctl_json(pid);
        r["difs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == "net")
            .unwrap()["neighbors"]
            .as_array()
            .unwrap()
            .len()
    };
    assert!(
        wait_until(Duration::from_secs(10), || neighbours(sink.pid()) == 1),
        "the client never joined"
    );
    std::fs::remove_file(trusted.join("client.pub")).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || neighbours(sink.pid()) == 0),
        "the adjacency outlived its key"
    );
    let text = std::fs::read_to_string(&s_log).unwrap_or_default();
    assert!(text.contains("is trusted no more"), "{text}");
    // The same client, again: refused at the handshake.
    let log = dir.path().join("client.log");
    expect_unreachable(
        over(
            Some(&pair.client),
            &["nc", "-v", "-w", "20", "127.0.0.1", &p],
        )
        .stdin(Stdio::null()),
        &log,
        "did not accept our key",
    );
    drop(sink);
}

/// Resident memory of process `pid`, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// 60,000 forged allocation requests, and a forged handshake initiation on every flow
/// answered: the member's memory stays within 8 MiB of where it was, it sends back no
/// more bytes than it got, and it still serves its trusted client afterwards.
#[test]
fn a_flood_of_forged_requests_costs_little_and_reflects_nothing() {
    require_nc();
    assert!(have("python3"));
    let dir = temp_dir();
    let pair = secured_pair(dir.path(), "flooded", "trust = [\"CLIENT\"]", "");
    let p = pair.port.to_string();
    let mut server = spawn_server(
        &pair.server,
        &["nc", "-l", "-k", "127.0.0.1", &p],
        Stdio::null(),
        Stdio::null(),
    );
    let before = rss_kib(server.pid());
    let flood = program("flood.py");
    let out = output_within(
        Command::new("python3")
            .arg(&flood)
            .args([&pair.server_udp.to_string(), "60000", "net"]),
        Duration::from_secs(120),
    );
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |k: &str| -> u64 {
        let mut it = said.split_whitespace();
        it.find(|w| *w == k);
        it.next().and_then(|v| v.parse().ok()).expect(k)
    };
    let after = rss_kib(server.pid());
    println!("{said}RSS {before} KiB before, {after} KiB after");
    assert!(field("answers") > 1000, "{said}");
    assert!(field("got") <= field("sent"), "{said}");
    assert!(
        after < before + 8 * 1024,
        "RSS {before} KiB, then {after} KiB"
    );
    // The trusted client still gets through.
    let out = run_within(
        &pair.client,
        &["nc", "-N", "127.0.0.1", &p],
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(server.kill_and_stderr());
}
