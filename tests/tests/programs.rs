//! Real programs over RINA (issue 3, first part): web clients against Python's
//! http.server, socat pairs, several clients in turn against one server. Each
//! transfer is byte-exact; each client and server runs under its own rules file.

use std::process::Stdio;
use std::time::Duration;

use rina_e2e::*;

fn require(programs: &[&str]) {
    for p in programs {
        assert!(have(p), "{p} is required (.ci/run installs it)");
    }
}

/// curl, wget and Python's urllib fetch a 2 MiB file from `python3 -m http.server`
/// over RINA, byte-exact, each as its own process joining the DIF; the server logs
/// each request with the client's synthetic address.
#[test]
fn web_clients_against_python_http_server() {
    require(&["curl", "wget", "python3"]);
    let dir = temp_dir();
    let site = dir.path().join("site");
    std::fs::create_dir(&site).unwrap();
    let body = random_bytes(2 << 20, 7);
    std::fs::write(site.join("blob.bin"), &body).unwrap();
    let p = pair(dir.path(), "web");
    let port = p.port.to_string();
    let site_s = site.to_str().unwrap();
    let mut server = spawn_server(
        &p.server,
        &[
            "python3",
            "-m",
            "http.server",
            &port,
            "--bind",
            "127.0.0.1",
            "--directory",
            site_s,
        ],
        Stdio::null(),
        Stdio::null(),
    );
    let url = format!("http://127.0.0.1:{port}/blob.bin");
    let script = format!("import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen('{url}', timeout=20).read())");
    let clients: [(&str, Vec<&str>); 3] = [
        ("curl", vec!["curl", "-sS", "--max-time", "20", &url]),
        ("wget", vec!["wget", "-q", "-T", "20", "-O", "-", &url]),
        ("urllib", vec!["python3", "-c", &script]),
    ];
    for (name, args) in &clients {
        let out = rina_run(&p.client, args, Stdio::null(), Stdio::piped())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout.len(), body.len(), "{name}: length");
        assert!(out.stdout == body, "{name}: bytes differ");
    }
    // Not a TCP server: nothing listens on the port.
    assert!(!tcp_port_in_use(p.port));
    // http.server logs each request on stderr.
    let log = server.kill_and_stderr();
    let served = log
        .lines()
        .filter(|l| l.contains("\"GET /blob.bin HTTP/1.1\" 200"))
        .count();
    assert_eq!(served, 3, "server log: {log}");
    assert!(
        log.lines()
            .filter(|l| l.contains("GET"))
            .all(|l| l.starts_with("127.")),
        "peers: {log}"
    );
}

/// socat to socat, 3 MB one way, byte-exact; then ten clients in turn against one
/// `socat ... fork` server that forks a child per connection.
#[test]
fn socat_pair_and_fork_server() {
    require(&["socat"]);
    let dir = temp_dir();
    let p = pair(dir.path(), "socat");
    let data = random_bytes(3_000_000, 11);
    let (input, output) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::write(&input, &data).unwrap();
    let listen = format!("TCP-LISTEN:{},bind=127.0.0.1,reuseaddr", p.port);
    let sink = format!("OPEN:{},creat", output.display());
    let mut server = spawn_server(
        &p.server,
        &["socat", "-u", &listen, &sink],
        Stdio::null(),
        Stdio::null(),
    );
    let connect = format!("TCP:127.0.0.1:{}", p.port);
    let src = format!("OPEN:{}", input.display());
    let out = rina_run(
        &p.client,
        &["socat", "-u", &src, &connect],
        Stdio::null(),
        Stdio::null(),
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.expect_exit(Duration::from_secs(20)).success());
    assert!(std::fs::read(&output).unwrap() == data, "bytes differ");

    // A forking echo server: each connection is served by a child process whose socket
    // keeps working through the parent's stack.
    let p = pair(dir.path(), "socat-fork");
    let listen = format!("TCP-LISTEN:{},bind=127.0.0.1,reuseaddr,fork", p.port);
    let _server = spawn_server(
        &p.server,
        &["socat", &listen, "EXEC:cat"],
        Stdio::null(),
        Stdio::null(),
    );
    let connect = format!("TCP:127.0.0.1:{}", p.port);
    for i in 0..10 {
        let msg = format!("message {i} {}\n", "x".repeat(i * 1000));
        let f = dir.path().join(format!("m{i}"));
        std::fs::write(&f, &msg).unwrap();
        let out = rina_run(
            &p.client,
            &["socat", "-t", "5", "-", &connect],
            stdin_from(&f),
            Stdio::piped(),
        )
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "client {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), msg, "client {i}");
    }
}
