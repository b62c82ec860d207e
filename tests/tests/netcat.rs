//! Unmodified OpenBSD netcat over RINA (issue 2): a client and a server, each in its
//! own process under its own rules, through a UDP shim on loopback.

use std::process::Stdio;
use std::time::{Duration, Instant};

use rina_e2e::*;

const MIB: usize = 1 << 20;

fn require_nc() {
    assert!(
        have("nc"),
        "netcat-openbsd is required (apt-get install netcat-openbsd)"
    );
}

/// 8 MiB each way at once, byte-exact; the server's half-close (`nc -l -N`) reaches the
/// client as EOF while the client still sends; no TCP socket on the port. (The
/// half-close is the server's: `nc -l` quits as soon as its peer's end of stream has
/// come, with whatever of its input it has not written yet unsent, over TCP too; the
/// client, whose own input is all written by then, closes last.)
#[test]
fn nc_pair_exchanges_8_mib_each_way() {
    require_nc();
    let dir = temp_dir();
    let Pair {
        port,
        server: s_rules,
        client: c_rules,
    } = pair(dir.path(), "nc-8mib");
    let to_client = random_bytes(8 * MIB, 1);
    let to_server = random_bytes(8 * MIB, 2);
    let (s_in, c_in) = (dir.path().join("s_in"), dir.path().join("c_in"));
    let (s_out, c_out) = (dir.path().join("s_out"), dir.path().join("c_out"));
    std::fs::write(&s_in, &to_client).unwrap();
    std::fs::write(&c_in, &to_server).unwrap();

    let addr = "127.0.0.1";
    let p = port.to_string();
    let mut server = spawn_server(
        &s_rules,
        &["nc", "-l", "-N", addr, &p],
        stdin_from(&s_in),
        stdout_to(&s_out),
    );
    let mut client = Proc::spawn(
        "nc client",
        &mut rina_run(
            &c_rules,
            &["nc", addr, &p],
            stdin_from(&c_in),
            stdout_to(&c_out),
        ),
    );
    // While they talk, nothing uses TCP on the port.
    let talking = wait_until(Duration::from_secs(10), || {
        std::fs::metadata(&s_out)
            .map(|m| m.len() > 0)
            .unwrap_or(false)
    });
    assert!(talking, "no data reached the server");
    assert!(!tcp_port_in_use(port), "a TCP socket uses port {port}");

    let cs = client.expect_exit(Duration::from_secs(60));
    let ss = server.expect_exit(Duration::from_secs(60));
    assert!(cs.success(), "client failed: {cs:?} {}", client.stderr());
    assert!(ss.success(), "server failed: {ss:?} {}", server.stderr());
    let got_s = std::fs::read(&s_out).unwrap();
    let got_c = std::fs::read(&c_out).unwrap();
    assert_eq!(got_s.len(), to_server.len(), "bytes at the server");
    assert!(got_s == to_server, "server received different bytes");
    assert_eq!(got_c.len(), to_client.len(), "bytes at the client");
    assert!(got_c == to_client, "client received different bytes");
}

/// A slow reader: the server's output is read at 1 MiB/s for a few seconds while the
/// client writes as fast as it can. Nothing is lost and the client's memory stays
/// bounded (back-pressure reaches the writer instead of piling up in the stack).
#[test]
fn slow_reader_back_pressure() {
    require_nc();
    let dir = temp_dir();
    let Pair {
        port,
        server: s_rules,
        client: c_rules,
    } = pair(dir.path(), "nc-slow");
    let total = 48 * MIB;
    let data = random_bytes(total, 3);
    let c_in = dir.path().join("c_in");
    std::fs::write(&c_in, &data).unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();

    // The server's stdout is a pipe read by a slow reader: 1 MiB/s for 4 s, then fast.
    let p = port.to_string();
    let mut server = Proc::spawn(
        "nc server",
        &mut rina_run(
            &s_rules,
            &["nc", "-l", "127.0.0.1", &p],
            stdin_from(&empty),
            Stdio::piped(),
        ),
    );
    let mut server_out = server_stdout(&mut server);
    assert!(
        wait_for_rina_listener(server.pid(), Duration::from_secs(10)),
        "server never listened"
    );
    let mut client = Proc::spawn(
        "nc client",
        &mut rina_run(
            &c_rules,
            &["nc", "-N", "127.0.0.1", &p],
            stdin_from(&c_in),
            Stdio::null(),
        ),
    );
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut got = Vec::with_capacity(total);
        let mut buf = vec![0u8; 64 * 1024];
        let start = Instant::now();
        let mut budget = 0usize;
        while got.len() < total {
            let elapsed = start.elapsed();
            if elapsed < Duration::from_secs(4) {
                // 1 MiB per second: read only what the budget allows.
                let allowed = (elapsed.as_secs_f64() * MIB as f64) as usize;
                if budget >= allowed {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                let want = (allowed - budget).min(buf.len());
                let n = server_out.read(&mut buf[..want]).unwrap();
                if n == 0 {
                    break;
                }
                budget += n;
                got.extend_from_slice(&buf[..n]);
            } else {
                let n = server_out.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
        }
        got
    });
    // Sample the client's memory while the reader is slow.
    let mut max_rss = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        if let Some(r) = client.rss_kib() {
            max_rss = max_rss.max(r);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The reader ends when the server's output does: bounded, as every wait.
    if !wait_until(Duration::from_secs(120), || reader.is_finished()) {
        panic!(
            "the server's output did not end within 120 s: {}",
            server.kill_and_stderr()
        );
    }
    let got = reader.join().unwrap();
    let cs = client.expect_exit(Duration::from_secs(60));
    assert!(cs.success(), "client failed: {cs:?} {}", client.stderr());
    assert_eq!(got.len(), total, "bytes delivered");
    assert!(got == data, "delivered bytes differ");
    // 48 MiB were written; the stack may hold a bounded window (a few MiB), not the lot.
    assert!(max_rss > 0, "could not sample the client's memory");
    assert!(
        max_rss < 40 * 1024,
        "client resident memory grew to {max_rss} KiB"
    );
    let _ = server.wait_timeout(Duration::from_secs(10));
}

fn server_stdout(p: &mut Proc) -> std::process::ChildStdout {
    p.take_stdout().expect("piped stdout")
}

/// A connect to an application nobody registered fails with "Connection refused"
/// quickly (`nc -v` prints the reason, as it does for TCP); a connect where the DIF has no member fails as unreachable, not a hang.
#[test]
fn refused_and_unreachable() {
    require_nc();
    let dir = temp_dir();
    let (su, cu, port, other) = (
        free_udp_port(),
        free_udp_port(),
        free_tcp_port(),
        free_tcp_port(),
    );
    // The server registers "registered" on `other`; the client's rule for `port` names
    // "nobody-here".
    let (s_rules, _) = pair_rules(su, cu, other, "registered");
    let (_, c_rules) = pair_rules(su, cu, port, "nobody-here");
    let s_rules = rules(dir.path(), "server.toml", &s_rules);
    let c_rules = rules(dir.path(), "client.toml", &c_rules);
    let server = spawn_server(
        &s_rules,
        &["nc", "-l", "127.0.0.1", &other.to_string()],
        Stdio::null(),
        Stdio::null(),
    );
    let start = Instant::now();
    let mut client = Proc::spawn(
        "nc client",
        &mut rina_run(
            &c_rules,
            &["nc", "-v", "-N", "127.0.0.1", &port.to_string()],
            Stdio::null(),
            Stdio::null(),
        ),
    );
    let st = client.expect_exit(Duration::from_secs(15));
    let err = client.stderr();
    assert!(!st.success());
    assert!(err.contains("Connection refused"), "stderr: {err}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    drop(server);

    // No member at all behind the neighbour address.
    let dead = free_udp_port();
    let (_, c_rules) = pair_rules(dead, free_udp_port(), port, "anything");
    let c_rules = rules(dir.path(), "lonely.toml", &c_rules);
    let start = Instant::now();
    let mut client = Proc::spawn(
        "nc client",
        &mut rina_run(
            &c_rules,
            &["nc", "-v", "-N", "127.0.0.1", &port.to_string()],
            Stdio::null(),
            Stdio::null(),
        ),
    );
    let st = client.expect_exit(Duration::from_secs(20));
    let err = client.stderr();
    assert!(!st.success());
    assert!(
        err.contains("Network is unreachable") || err.contains("timed out"),
        "stderr: {err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "took {:?}",
        start.elapsed()
    );
}

/// In one interposed process, a connect no rule matches goes over ordinary TCP to a
/// plain TCP server, while a matching one goes over RINA.
#[test]
fn unmatched_connect_uses_tcp_in_the_same_process() {
    require_nc();
    let dir = temp_dir();
    let Pair {
        port,
        server: s_rules,
        client: c_rules,
    } = pair(dir.path(), "mixed");
    let reply = dir.path().join("reply");
    std::fs::write(&reply, b"over-rina").unwrap();
    let mut server = spawn_server(
        &s_rules,
        &["nc", "-l", "127.0.0.1", &port.to_string()],
        stdin_from(&reply),
        Stdio::null(),
    );
    // A plain TCP server, not interposed.
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    let plain = std::thread::spawn(move || {
        use std::io::Write;
        let (mut s, _) = tcp.accept().unwrap();
        s.write_all(b"over-tcp").unwrap();
    });
    let script = format!(
        r#"
import socket
t = socket.create_connection(("127.0.0.1", {tcp_port}), timeout=10)
print(t.recv(100).decode())
r = socket.create_connection(("127.0.0.1", {port}), timeout=10)
r.shutdown(socket.SHUT_WR)
data = b""
while True:
    b = r.recv(100)
    if not b: break
    data += b
print(data.decode())
"#
    );
    let out = run_within(
        &c_rules,
        &["python3", "-c", &script],
        Duration::from_secs(60),
    );
    assert!(
        wait_until(Duration::from_secs(10), || plain.is_finished()),
        "nobody connected to the plain TCP server: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    plain.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.lines().collect::<Vec<_>>(), ["over-tcp", "over-rina"]);
    let _ = server.wait_timeout(Duration::from_secs(10));
}

/// The half-close of `nc -N` reaches the server as EOF, and a reply the server writes
/// only after that EOF still reaches the client: the server (a Python program under
/// the interposer) reads to EOF, then answers with what it counted.
#[test]
fn reply_after_half_close_arrives() {
    require_nc();
    let dir = temp_dir();
    let Pair {
        port,
        server: s_rules,
        client: c_rules,
    } = pair(dir.path(), "counter");
    let server_py = format!(
        r#"
import socket, hashlib
l = socket.socket(); l.bind(("127.0.0.1", {port})); l.listen(1)
c, peer = l.accept()
h = hashlib.sha256(); n = 0
while True:
    b = c.recv(65536)
    if not b: break
    h.update(b); n += len(b)
c.sendall(f"got {{n}} bytes sha256 {{h.hexdigest()}} from {{peer[0]}}\n".encode())
c.close()
"#
    );
    let mut server = spawn_server(
        &s_rules,
        &["python3", "-c", &server_py],
        Stdio::null(),
        Stdio::null(),
    );
    let data = random_bytes(MIB, 5);
    let c_in = dir.path().join("c_in");
    std::fs::write(&c_in, &data).unwrap();
    let out = output_within(
        &mut rina_run(
            &c_rules,
            &["nc", "-N", "127.0.0.1", &port.to_string()],
            stdin_from(&c_in),
            Stdio::piped(),
        ),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply = String::from_utf8_lossy(&out.stdout);
    let sha = {
        let o = output_within(
            std::process::Command::new("sha256sum").arg(&c_in),
            Duration::from_secs(30),
        );
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    assert!(
        reply.starts_with(&format!("got {} bytes sha256 {sha} from 100.", MIB)),
        "reply: {reply:?}"
    );
    assert!(server.expect_exit(Duration::from_secs(10)).success());
}
