//! `rina gateway`: a program that runs nothing of ours (a statically linked client)
//! reaches a server over RINA through an ingress gateway; the server is behind an
//! egress gateway (and, with the PROXY protocol on, sees the client's address) or
//! interposed. Refused flows reset the client's connection; UDP clients get their
//! replies from the ingress address; 200 connections at once stay byte-exact in
//! bounded memory.

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rina_e2e::*;

/// Rules of a gateway member of DIF `net` over a UDP shim at `udp` (bootstrap, or
/// enrolled through the member at `via`), with `rules` after.
fn gateway_rules(udp: u16, via: Option<u16>, rules: &str) -> String {
    many::udp_member(udp, via, rules)
}

/// Starts `rina gateway` (strict) with `text` as its rules, once it is ready.
fn start_gateway(dir: &Path, name: &str, text: &str) -> Proc {
    rina_gateway(dir, name, text, true)
}

/// An egress gateway (bootstrap member) for `app` to 127.0.0.1:`server` and an
/// ingress gateway whose TCP port (returned) goes to `ingress_app`.
fn gateway_pair(
    dir: &Path,
    app: &str,
    server: u16,
    proxy: bool,
    ingress_app: &str,
) -> (Proc, Proc, u16) {
    let udp = free_udp_port();
    let egress = format!(
        "[[egress]]\napp = \"{app}\"\ndif = \"net\"\nto = \"127.0.0.1:{server}\"\nproxy-protocol = {proxy}\n"
    );
    let port = free_tcp_port();
    let ingress = format!(
        "[[ingress]]\nlisten = \"127.0.0.1:{port}\"\ndif = \"net\"\napp = \"{ingress_app}\"\n"
    );
    let e = start_gateway(dir, "egress", &gateway_rules(udp, None, &egress));
    let i = start_gateway(
        dir,
        "ingress",
        &gateway_rules(free_udp_port(), Some(udp), &ingress),
    );
    (e, i, port)
}

/// The static client, compiled once per test into `dir`.
fn static_client(dir: &Path) -> PathBuf {
    compile_c(dir, "static_nc.c", &["-static"])
}

/// The PROXY-echo server on `port` (`--proxy` if `proxy`), once it listens.
fn proxy_echo(port: u16, extra: &[&str]) -> Proc {
    let mut p = Proc::spawn(
        "proxy_echo",
        Command::new("python3")
            .arg(program("proxy_echo.py"))
            .arg(port.to_string())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    if p.stdout_until("ready", Duration::from_secs(10)).is_none() {
        panic!("the echo server never listened: {}", p.kill_and_stderr());
    }
    p
}

/// Runs the static client against 127.0.0.1:`port` with `input`: its exit status,
/// what it received and its stderr.
fn run_client(dir: &Path, client: &Path, port: u16, input: &[u8]) -> (bool, Vec<u8>, String) {
    let (inp, out) = (dir.join("client.in"), dir.join("client.out"));
    std::fs::write(&inp, input).expect("write the client's input");
    let mut c = Proc::spawn(
        "static_nc",
        Command::new(client)
            .args(["127.0.0.1", &port.to_string()])
            .stdin(stdin_from(&inp))
            .stdout(stdout_to(&out))
            .stderr(Stdio::piped()),
    );
    let st = c.expect_exit(Duration::from_secs(60));
    let got = std::fs::read(&out).unwrap_or_default();
    (st.success(), got, c.stderr())
}

#[test]
fn a_static_client_reaches_a_server_behind_an_egress_gateway_which_sees_its_address() {
    let dir = temp_dir();
    let client = static_client(dir.path());
    // Nothing can be preloaded into it: `rina run` refuses it and points here.
    let any = rules(
        dir.path(),
        "any.toml",
        &gateway_rules(free_udp_port(), None, ""),
    );
    let out = output_within(
        Command::new(rina())
            .args(["run", "-c"])
            .arg(&any)
            .arg("--")
            .arg(&client),
        Duration::from_secs(15),
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("is statically linked") && said.contains("rina gateway"),
        "{said}"
    );
    let server_port = free_tcp_port();
    let mut server = proxy_echo(server_port, &["--proxy"]);
    let (_e, _i, port) = gateway_pair(dir.path(), "web", server_port, true, "web");
    let data = random_bytes(8 << 20, 41);
    let (ok, got, err) = run_client(dir.path(), &client, port, &data);
    assert!(ok, "the client failed: {err}");
    assert!(
        got == data,
        "the echo differs: {} of {} bytes",
        got.len(),
        data.len()
    );
    // The server saw the client's own address (and the ingress address it used).
    let local = err
        .lines()
        .find_map(|l| l.strip_prefix("local "))
        .unwrap_or_else(|| panic!("the client said no address: {err}"))
        .to_owned();
    let seen = server
        .stdout_until(" to ", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no PROXY line: {}", server.kill_and_stderr()));
    assert!(
        seen.contains(&format!("from {local} to 127.0.0.1:{port}")),
        "the server saw {seen:?}, the client is {local}"
    );
}

#[test]
fn a_static_client_reaches_an_interposed_server_through_an_ingress_gateway() {
    let dir = temp_dir();
    let client = static_client(dir.path());
    let (server_udp, server_port) = (free_udp_port(), free_tcp_port());
    let (server_rules, _) = pair_rules(server_udp, free_udp_port(), server_port, "db");
    let server_rules = rules(dir.path(), "server.toml", &server_rules);
    let echo = program("proxy_echo.py");
    let args = ["python3", echo.to_str().unwrap(), &server_port.to_string()];
    let _server = spawn_server(&server_rules, &args, Stdio::null(), Stdio::null());
    let port = free_tcp_port();
    let ingress =
        format!("[[ingress]]\nlisten = \"127.0.0.1:{port}\"\ndif = \"net\"\napp = \"db\"\n");
    let _i = start_gateway(
        dir.path(),
        "ingress",
        &gateway_rules(free_udp_port(), Some(server_udp), &ingress),
    );
    let data = random_bytes(8 << 20, 43);
    let (ok, got, err) = run_client(dir.path(), &client, port, &data);
    assert!(ok, "the client failed: {err}");
    assert!(
        got == data,
        "the echo differs: {} of {} bytes",
        got.len(),
        data.len()
    );
}

#[test]
fn refused_flows_reset_the_clients_connection() {
    let dir = temp_dir();
    let client = static_client(dir.path());
    // Nothing listens behind the egress.
    let closed = free_tcp_port();
    let (_e, _i, port) = gateway_pair(dir.path(), "web", closed, false, "web");
    let (ok, got, err) = run_client(dir.path(), &client, port, b"GET / HTTP/1.0\r\n\r\n");
    assert!(!ok && got.is_empty(), "a closed server: {err}");
    assert!(
        err.contains("Connection reset by peer"),
        "a closed server: {err}"
    );
    // No such application in the DIF.
    let port = free_tcp_port();
    let ingress =
        format!("[[ingress]]\nlisten = \"127.0.0.1:{port}\"\ndif = \"net\"\napp = \"nobody\"\n");
    let via = std::fs::read_to_string(dir.path().join("egress.toml")).expect("egress rules");
    let via: u16 = via
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .expect("the egress's UDP port");
    let _other = start_gateway(
        dir.path(),
        "nobody",
        &gateway_rules(free_udp_port(), Some(via), &ingress),
    );
    let (ok, got, err) = run_client(dir.path(), &client, port, b"hello");
    assert!(!ok && got.is_empty(), "no such application: {err}");
    assert!(
        err.contains("Connection reset by peer"),
        "no such application: {err}"
    );
}

/// A server that resets its connection resets the client's, through both gateways
/// (as a TCP proxy passes a reset on), rather than ending it as if it had closed.
#[test]
fn a_reset_by_the_server_resets_the_client() {
    let dir = temp_dir();
    let client = static_client(dir.path());
    let server_port = free_tcp_port();
    let _server = proxy_echo(server_port, &["--reset-after", "100000"]);
    let (_e, _i, port) = gateway_pair(dir.path(), "web", server_port, false, "web");
    let data = random_bytes(4 << 20, 45);
    let (ok, got, err) = run_client(dir.path(), &client, port, &data);
    assert!(
        !ok,
        "the client ended cleanly after {} bytes: {err}",
        got.len()
    );
    assert!(err.contains("Connection reset by peer"), "{err}");
    assert!(got.len() < data.len(), "{} bytes came back", got.len());
}

#[test]
fn udp_clients_get_their_replies_from_the_ingress_address() {
    let dir = temp_dir();
    let (server_port, server_udp) = (free_tcp_port(), free_udp_port());
    let _server = proxy_echo(server_port, &["--udp", &server_udp.to_string()]);
    let udp = free_udp_port();
    let egress = format!(
        "[[egress]]\napp = \"dns\"\ndif = \"net\"\nto = \"127.0.0.1:{server_udp}\"\nproto = \"udp\"\n"
    );
    let _e = start_gateway(dir.path(), "egress", &gateway_rules(udp, None, &egress));
    let port = free_udp_port();
    let ingress = format!(
        "[[ingress]]\nlisten = \"127.0.0.1:{port}\"\nproto = \"udp\"\ndif = \"net\"\napp = \"dns\"\n"
    );
    let _i = start_gateway(
        dir.path(),
        "ingress",
        &gateway_rules(free_udp_port(), Some(udp), &ingress),
    );
    let to: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let clients: Vec<UdpSocket> = (0..2)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("a client socket"))
        .collect();
    for c in &clients {
        c.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
    }
    // Datagrams are unreliable: each client asks until answered (bounded), then
    // every answer must be its own, from the ingress address.
    for (i, c) in clients.iter().enumerate() {
        let ask = format!("query {i}");
        let mut answered = None;
        for _ in 0..20 {
            c.send_to(ask.as_bytes(), to).expect("send");
            let mut b = [0u8; 100];
            if let Ok((n, from)) = c.recv_from(&mut b) {
                answered = Some((b[..n].to_vec(), from));
                break;
            }
        }
        let (got, from) = answered.unwrap_or_else(|| panic!("client {i} got no answer"));
        assert_eq!(got, format!("re:{ask}").into_bytes(), "client {i}");
        assert_eq!(from, to, "client {i}'s answer came from elsewhere");
    }
}

/// A UDP client whose flow was refused (no server yet) is asked for again after the
/// hold, though it never stops sending: once the name is up, it is answered.
#[test]
fn a_refused_udp_client_is_served_once_its_server_is_up() {
    let dir = temp_dir();
    let (server_port, server_udp) = (free_tcp_port(), free_udp_port());
    let _server = proxy_echo(server_port, &["--udp", &server_udp.to_string()]);
    let (udp, port) = (free_udp_port(), free_udp_port());
    let ingress = format!(
        "[[ingress]]\nlisten = \"127.0.0.1:{port}\"\nproto = \"udp\"\ndif = \"net\"\napp = \"late\"\n"
    );
    let _i = start_gateway(dir.path(), "ingress", &gateway_rules(udp, None, &ingress));
    // The client never stops sending (every 100 ms, from a thread of its own).
    let client = UdpSocket::bind("127.0.0.1:0").expect("a client socket");
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let sender = client.try_clone().expect("clone");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let to = format!("127.0.0.1:{port}");
    let sending = std::thread::spawn(move || {
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = sender.send_to(b"q", &to);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    // The first answer within `limit`.
    let ask = |limit: Duration| -> Option<Vec<u8>> {
        let end = std::time::Instant::now() + limit;
        while std::time::Instant::now() < end {
            let mut b = [0u8; 64];
            if let Ok((n, _)) = client.recv_from(&mut b) {
                return Some(b[..n].to_vec());
            }
        }
        None
    };
    assert_eq!(ask(Duration::from_secs(2)), None, "answered with no server");
    let egress = format!(
        "[[egress]]\napp = \"late\"\ndif = \"net\"\nto = \"127.0.0.1:{server_udp}\"\nproto = \"udp\"\n"
    );
    let _e = start_gateway(
        dir.path(),
        "egress",
        &gateway_rules(free_udp_port(), Some(udp), &egress),
    );
    let answer = ask(Duration::from_secs(15));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sending.join().expect("the sender");
    assert_eq!(
        answer.as_deref(),
        Some(&b"re:q"[..]),
        "never answered once the server was up"
    );
}

#[test]
fn two_hundred_connections_at_once_are_byte_exact_in_bounded_memory() {
    const CONNECTIONS: usize = 200;
    const EACH: usize = 256 << 10;
    let dir = temp_dir();
    let server_port = free_tcp_port();
    let _server = proxy_echo(server_port, &[]);
    let (e, i, port) = gateway_pair(dir.path(), "web", server_port, false, "web");
    let before = (e.peak_rss_kib().unwrap_or(0), i.peak_rss_kib().unwrap_or(0));
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|n| {
            pushing_client(
                port,
                random_bytes(EACH, 1000 + n as u64),
                Written::default(),
            )
        })
        .collect();
    let failed = join_all(clients);
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    // All at once, each gateway may hold all of it (the window is far larger), but
    // no more: under 1 MiB per connection (see the back-pressure test for the bound
    // under a server that stops reading).
    let after = (e.peak_rss_kib().unwrap_or(0), i.peak_rss_kib().unwrap_or(0));
    for (who, b, a) in [
        ("egress", before.0, after.0),
        ("ingress", before.1, after.1),
    ] {
        assert!(
            a.saturating_sub(b) < (CONNECTIONS as u64) << 10,
            "the {who} gateway grew from {b} to {a} KiB"
        );
    }
}

/// Bytes a client wrote so far, and whether it finished.
type Written = std::sync::Arc<std::sync::atomic::AtomicU64>;

/// A client that writes `data` (counting in `written`) while reading what comes back.
fn pushing_client(
    port: u16,
    data: Vec<u8>,
    written: Written,
) -> std::thread::JoinHandle<Result<(), String>> {
    std::thread::spawn(move || {
        let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut w = s.try_clone().map_err(|e| e.to_string())?;
        let sent = data.clone();
        let writer = std::thread::spawn(move || {
            for chunk in sent.chunks(64 << 10) {
                w.write_all(chunk)?;
                written.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            w.shutdown(std::net::Shutdown::Write)
        });
        let mut got = Vec::new();
        (&s).read_to_end(&mut got)
            .map_err(|e| format!("read: {e}"))?;
        writer
            .join()
            .map_err(|_| "the writer panicked".to_owned())?
            .map_err(|e| format!("write: {e}"))?;
        if got != data {
            return Err(format!("{} of {} bytes, differing", got.len(), data.len()));
        }
        Ok(())
    })
}

/// Waits for every client: what went wrong with each that failed.
fn join_all(clients: Vec<std::thread::JoinHandle<Result<(), String>>>) -> Vec<String> {
    clients
        .into_iter()
        .enumerate()
        .filter_map(|(n, c)| match c.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("connection {n}: {e}")),
            Err(_) => Some(format!("connection {n}: panicked")),
        })
        .collect()
}

/// A server that stops reading stops its clients (back-pressure through both
/// gateways), and the gateways hold a bounded amount for each connection meanwhile;
/// once it reads again, everything arrives, byte-exact, both ways.
#[test]
fn a_server_that_stops_reading_stops_its_clients_in_bounded_memory() {
    const CONNECTIONS: usize = 4;
    const EACH: usize = 64 << 20;
    let dir = temp_dir();
    let server_port = free_tcp_port();
    let server = proxy_echo(server_port, &[]);
    let (e, i, port) = gateway_pair(dir.path(), "web", server_port, false, "web");
    let before = (e.peak_rss_kib().unwrap_or(0), i.peak_rss_kib().unwrap_or(0));
    let stop = |sig: &str| {
        let st = Command::new("kill")
            .args([sig, &server.pid().to_string()])
            .status()
            .expect("kill");
        assert!(st.success(), "kill {sig}");
    };
    stop("-STOP");
    let written: Vec<Written> = (0..CONNECTIONS).map(|_| Written::default()).collect();
    let clients: Vec<_> = written
        .iter()
        .enumerate()
        .map(|(n, w)| pushing_client(port, random_bytes(EACH, 77 + n as u64), w.clone()))
        .collect();
    // Until the clients stop getting anywhere (a second without progress).
    let total = || -> u64 {
        written
            .iter()
            .map(|w| w.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    };
    let (mut last, mut still) = (u64::MAX, 0);
    let stalled = wait_until(Duration::from_secs(30), || {
        let now = total();
        still = if now == last { still + 1 } else { 0 };
        last = now;
        still >= 10
    });
    let held = total();
    let during = (e.peak_rss_kib().unwrap_or(0), i.peak_rss_kib().unwrap_or(0));
    eprintln!("peak memory with the server stopped: {during:?} KiB (from {before:?}); {held} bytes written");
    stop("-CONT");
    let failed = join_all(clients);
    assert!(stalled, "the clients never stopped: {held} bytes written");
    assert!(
        held < (CONNECTIONS * EACH) as u64 / 2,
        "the clients wrote {held} bytes to a server that reads nothing"
    );
    // Each connection's flow holds at most its window each way (about 4 MiB) and a
    // send queue (about 256 KiB, one SDU more): 16 MiB a connection is generous.
    for (who, b, a) in [
        ("egress", before.0, during.0),
        ("ingress", before.1, during.1),
    ] {
        assert!(
            a.saturating_sub(b) < (CONNECTIONS as u64 * 16) << 10,
            "the {who} gateway grew from {b} to {a} KiB with the server stopped"
        );
    }
    assert!(failed.is_empty(), "{failed:?}");
}

#[test]
fn a_gateway_that_cannot_start_says_why() {
    let dir = temp_dir();
    // The ingress port is held by another program.
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = held.local_addr().unwrap().port();
    let ingress =
        format!("[[ingress]]\nlisten = \"127.0.0.1:{port}\"\ndif = \"net\"\napp = \"web\"\n");
    let text = gateway_rules(free_udp_port(), None, &ingress);
    let path = rules(dir.path(), "held.toml", &text);
    let out = output_within(
        Command::new(rina()).args(["gateway", "-c"]).arg(&path),
        Duration::from_secs(15),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("tcp 127.0.0.1:{port} (ingress rule on line"))
            && err.contains("Address already in use"),
        "{err}"
    );
    // Rules with nothing for a gateway.
    let path = rules(
        dir.path(),
        "none.toml",
        &gateway_rules(free_udp_port(), None, ""),
    );
    let out = output_within(
        Command::new(rina()).args(["gateway", "-c"]).arg(&path),
        Duration::from_secs(15),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no [[ingress]] or [[egress]] rules"), "{err}");
}
