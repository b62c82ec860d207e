//! Real programs over RINA (issue 3, first part): web clients against Python's
//! http.server, socat pairs, several clients in turn against one server. Each
//! transfer is byte-exact; each client and server runs under its own rules file.

use std::process::Stdio;
use std::time::Duration;

use rina_e2e::*;

fn require(programs: &[&str]) {
    for p in programs {
        assert!(have(p), "{p} is required (scripts/test.sh installs it)");
    }
}

/// curl, wget, busybox wget and Python's urllib fetch a 2 MiB file from
/// `python3 -m http.server` over RINA, byte-exact, each as its own process joining the DIF; the server logs
/// each request with the client's synthetic address.
#[test]
fn web_clients_against_python_http_server() {
    require(&["curl", "wget", "busybox", "python3"]);
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
    let clients: [(&str, Vec<&str>); 4] = [
        ("curl", vec!["curl", "-sS", "--max-time", "20", &url]),
        ("wget", vec!["wget", "-q", "-T", "20", "-O", "-", &url]),
        // busybox wget talks through stdio (fdopen, fprintf, fgets, fread, fclose).
        // (Its own -T timeout crashes busybox 1.35, interposer or not.)
        (
            "busybox wget",
            vec!["timeout", "20", "busybox", "wget", "-q", "-O", "-", &url],
        ),
        ("urllib", vec!["python3", "-c", &script]),
    ];
    for (name, args) in &clients {
        let out = run_within(&p.client, args, Duration::from_secs(60));
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
    assert_eq!(served, 4, "server log: {log}");
    assert!(
        log.lines()
            .filter(|l| l.contains("GET"))
            .all(|l| l.starts_with("100.")),
        "peers show outside loopback, in 100.64.0.0/10: {log}"
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
    let out = run_within(
        &p.client,
        &["socat", "-u", &src, &connect],
        Duration::from_secs(60),
    );
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
        let out = output_within(
            &mut rina_run(
                &p.client,
                &["socat", "-t", "5", "-", &connect],
                stdin_from(&f),
                Stdio::piped(),
            ),
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "client {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), msg, "client {i}");
    }
}

/// Per-program rules (D4): with no RINA_CONFIG, one rules directory
/// (`$XDG_CONFIG_HOME/rina/`) gives `nc` and `curl` different rules by program name.
/// The same address leads `nc` to the application "for-nc" and `curl` to "for-curl";
/// a Python server registered under both answers with the name of each.
#[test]
fn per_program_rules_from_one_directory() {
    require(&["nc", "curl", "python3"]);
    let dir = temp_dir();
    let (su, cu, a, b, target) = (
        free_udp_port(),
        free_udp_port(),
        free_tcp_port(),
        free_tcp_port(),
        free_tcp_port(),
    );
    let (server_head, _) = pair_rules(su, cu, a, "for-nc");
    let server = format!(
        "{server_head}\n[[listen]]\non = \"127.0.0.1:{b}\"\ndif = \"net\"\napp = \"for-curl\"\n"
    );
    let server = rules(dir.path(), "server.toml", &server);
    let xdg = dir.path().join("xdg");
    std::fs::create_dir_all(xdg.join("rina")).unwrap();
    for (program, app, udp) in [("nc", "for-nc", cu), ("curl", "for-curl", free_udp_port())] {
        let (_, client) = pair_rules(su, udp, target, app);
        std::fs::write(xdg.join("rina").join(format!("{program}.toml")), client).unwrap();
    }
    let script = format!(
        r#"
import socket, threading
def serve(port, name, http):
    l = socket.socket(); l.bind(("127.0.0.1", port)); l.listen(1)
    c, _ = l.accept()
    data = b""
    while (b"\r\n\r\n" not in data) if http else True:
        b = c.recv(4096)
        if not b: break
        data += b
    body = name.encode()
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body) if http else body + b"\n")
    c.close()
ts = [threading.Thread(target=serve, args=({a}, "for-nc", False)), threading.Thread(target=serve, args=({b}, "for-curl", True))]
[t.start() for t in ts]; [t.join() for t in ts]
"#
    );
    let mut srv = spawn_server(
        &server,
        &["python3", "-c", &script],
        Stdio::null(),
        Stdio::null(),
    );
    assert!(wait_until(Duration::from_secs(10), || abstract_listeners(
        &format!("rina-listen/{}/", srv.pid())
    )
    .len()
        == 2));
    let run = |args: &[&str]| {
        output_within(
            std::process::Command::new(args[0])
                .args(&args[1..])
                .env("LD_PRELOAD", interposer())
                .env("XDG_CONFIG_HOME", &xdg)
                .env_remove("RINA_CONFIG")
                .stdin(Stdio::null()),
            Duration::from_secs(60),
        )
    };
    let t = target.to_string();
    let nc = run(&["nc", "-N", "127.0.0.1", &t]);
    assert_eq!(
        String::from_utf8_lossy(&nc.stdout),
        "for-nc\n",
        "nc: {}",
        String::from_utf8_lossy(&nc.stderr)
    );
    let url = format!("http://127.0.0.1:{t}/");
    let curl = run(&["curl", "-sS", "--max-time", "10", &url]);
    assert_eq!(
        String::from_utf8_lossy(&curl.stdout),
        "for-curl",
        "curl: {}",
        String::from_utf8_lossy(&curl.stderr)
    );
    assert!(srv.expect_exit(Duration::from_secs(10)).success());
}

/// A server pool: two servers register the same name; nc clients are spread over
/// both (flows to the second are relayed by the first); after the second is killed
/// (SIGKILL, no goodbye) and its loss is detected, every new client reaches the first.
#[test]
fn server_pool_spreads_and_survives_a_kill() {
    require(&["nc", "python3"]);
    let dir = temp_dir();
    let (u1, u2, uc, port) = (
        free_udp_port(),
        free_udp_port(),
        free_udp_port(),
        free_tcp_port(),
    );
    let member = |udp: u16, join: String, extra: &str| {
        format!(
            "[[dif]]\nname = \"udp\"\ntype = \"udp\"\nbind = \"127.0.0.1:{udp}\"\n\n[[dif]]\nname = \"net\"\ntype = \"normal\"\nover = [\"udp\"]\n{join}\nkeepalive-interval = \"300ms\"\nkeepalive-misses = 3\n\n{extra}"
        )
    };
    let listen = format!(
        "[[listen]]\non = \"127.0.0.1:{port}\"\ndif = \"net\"\napp = \"pool\"\npool = true\n"
    );
    let via = format!("enroll-via = {{ neighbor = \"127.0.0.1:{u1}\" }}");
    let r1 = rules(
        dir.path(),
        "one.toml",
        &member(u1, "bootstrap = true".into(), &listen),
    );
    let r2 = rules(dir.path(), "two.toml", &member(u2, via.clone(), &listen));
    let connect =
        format!("[[connect]]\nto = \"127.0.0.1:{port}\"\ndif = \"net\"\napp = \"pool\"\n");
    let rc = rules(dir.path(), "client.toml", &member(uc, via, &connect));
    let server = |name: &str| {
        format!(
            "import socket\nl = socket.socket(); l.bind(('127.0.0.1', {port})); l.listen(8)\nwhile True:\n    c, _ = l.accept(); c.sendall(b'{name}\\n'); c.close()\n"
        )
    };
    let log1 = dir.path().join("one.log");
    let mut one_cmd = rina_run(
        &r1,
        &["python3", "-c", &server("one")],
        Stdio::null(),
        Stdio::null(),
    );
    one_cmd.env("RINA_LOG", "info").env("RINA_LOG_FILE", &log1);
    let one = Proc::spawn("server one", &mut one_cmd);
    assert!(wait_for_rina_listener(one.pid(), Duration::from_secs(10)));
    let mut two = spawn_server(
        &r2,
        &["python3", "-c", &server("two")],
        Stdio::null(),
        Stdio::null(),
    );
    let ask = || {
        let out = run_within(
            &rc,
            &["nc", "-v", "-N", "127.0.0.1", &port.to_string()],
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "client: {}\nserver one's log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log1).unwrap_or_default(),
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    // The second server's registration reaches the DIF: wait until a client sees it.
    assert!(
        wait_until(Duration::from_secs(10), || ask() == "two"),
        "the second server never answered"
    );
    let answers: Vec<String> = (0..16).map(|_| ask()).collect();
    let ones = answers.iter().filter(|a| *a == "one").count();
    assert!((2..=14).contains(&ones), "not spread: {answers:?}");
    assert!(
        answers.iter().all(|a| a == "one" || a == "two"),
        "{answers:?}"
    );

    drop(two.kill_and_stderr());
    let lost = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&log1).is_ok_and(|l| l.contains("lost"))
    });
    assert!(
        lost,
        "server one never noticed: {}",
        std::fs::read_to_string(&log1).unwrap_or_default()
    );
    let after: Vec<String> = (0..8).map(|_| ask()).collect();
    assert!(
        after.iter().all(|a| a == "one"),
        "after the kill: {after:?}"
    );
}

/// 200 curl processes at once against one python http.server: every one joins the
/// DIF (an ephemeral UDP port each), gets a flow and the right body.
#[test]
fn two_hundred_concurrent_curls() {
    require(&["curl", "python3"]);
    let dir = temp_dir();
    let site = dir.path().join("site");
    std::fs::create_dir(&site).unwrap();
    std::fs::write(site.join("index.html"), "hello from one server\n").unwrap();
    let (su, port) = (free_udp_port(), free_tcp_port());
    let (s, c) = pair_rules(su, 0, port, "web200");
    let server_rules = rules(dir.path(), "server.toml", &s);
    let client_rules = rules(dir.path(), "client.toml", &c);
    let p = port.to_string();
    let _server = spawn_server(
        &server_rules,
        &[
            "python3",
            "-m",
            "http.server",
            &p,
            "--bind",
            "127.0.0.1",
            "--directory",
            site.to_str().unwrap(),
        ],
        Stdio::null(),
        Stdio::null(),
    );
    let url = format!("http://127.0.0.1:{p}/index.html");
    let mut clients: Vec<Proc> = (0..200)
        .map(|i| {
            let out = dir.path().join(format!("out{i}"));
            Proc::spawn(
                "curl",
                &mut rina_run(
                    &client_rules,
                    &["curl", "-sS", "--max-time", "30", &url],
                    Stdio::null(),
                    stdout_to(&out),
                ),
            )
        })
        .collect();
    let mut failures = Vec::new();
    for (i, c) in clients.iter_mut().enumerate() {
        let st = c.expect_exit(Duration::from_secs(60));
        let body = std::fs::read_to_string(dir.path().join(format!("out{i}"))).unwrap_or_default();
        if !st.success() || body != "hello from one server\n" {
            failures.push(format!("{i}: {st:?} {body:?} {}", c.stderr()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 200 failed: {:#?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

/// busybox nc and ncat as clients, ncat as a server: 1 MB byte-exact into each server.
/// busybox nc half-closes and exits at once; the stack's exit drain delivers the rest,
/// and the server side keeps what arrived although the client said goodbye.
#[test]
fn busybox_and_ncat_pairings() {
    require(&["nc", "ncat", "busybox"]);
    let dir = temp_dir();
    let data = random_bytes(1_000_000, 13);
    let input = dir.path().join("in");
    std::fs::write(&input, &data).unwrap();
    // (ncat -l --recv-only fed by busybox nc loses data over kernel TCP too: ncat stops
    // reading early. That pairing is left out: the stack matches TCP, not better.)
    let cases: [(&[&str], &[&str]); 4] = [
        (
            &["nc", "-l", "127.0.0.1", "{p}"],
            &["busybox", "nc", "127.0.0.1", "{p}"],
        ),
        // busybox nc listens on the IPv6 wildcard address (`::`): its rule says "*".
        (
            &["busybox", "nc", "-l", "-p", "{p}"],
            &["nc", "-N", "127.0.0.1", "{p}"],
        ),
        (
            &["nc", "-l", "127.0.0.1", "{p}"],
            &["ncat", "--send-only", "127.0.0.1", "{p}"],
        ),
        (
            &["ncat", "-l", "--recv-only", "127.0.0.1", "{p}"],
            &["nc", "-N", "127.0.0.1", "{p}"],
        ),
    ];
    for (i, (server, client)) in cases.iter().enumerate() {
        let p = pair(dir.path(), &format!("pairing{i}"));
        let port = p.port.to_string();
        let text = std::fs::read_to_string(&p.server).unwrap();
        let wildcard = format!("\"*:{port}\"");
        std::fs::write(
            &p.server,
            text.replace(&format!("\"127.0.0.1:{port}\""), &wildcard),
        )
        .unwrap();
        let fill = |args: &[&str]| {
            args.iter()
                .map(|a| a.replace("{p}", &port))
                .collect::<Vec<_>>()
        };
        let (sargs, cargs) = (fill(server), fill(client));
        let output = dir.path().join(format!("out{i}"));
        let sref: Vec<&str> = sargs.iter().map(String::as_str).collect();
        let mut srv = spawn_server(&p.server, &sref, Stdio::null(), stdout_to(&output));
        let cref: Vec<&str> = cargs.iter().map(String::as_str).collect();
        let out = output_within(
            &mut rina_run(&p.client, &cref, stdin_from(&input), Stdio::null()),
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "{cargs:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let st = srv.expect_exit(Duration::from_secs(20));
        assert!(st.success(), "{sargs:?}: {st:?}");
        let got = std::fs::read(&output).unwrap();
        assert!(
            got == data,
            "{sargs:?} <- {cargs:?}: {} of {} bytes",
            got.len(),
            data.len()
        );
    }
}

/// curl (nonblocking connect: EINPROGRESS, poll, SO_ERROR) to an application nobody
/// registered reports "Connection refused" (with -v, as curl 7.88 does for a closed TCP
/// port) and exits 7; a blocking connect from Python reports ECONNREFUSED.
#[test]
fn curl_reports_connection_refused() {
    require(&["curl", "nc", "python3"]);
    let dir = temp_dir();
    let p = pair(dir.path(), "registered-elsewhere");
    // The server registers a different name on another port; the client's rule names
    // an application nobody registered.
    let other = free_tcp_port();
    let server_text = std::fs::read_to_string(&p.server).unwrap();
    std::fs::write(
        &p.server,
        server_text.replace(&format!(":{}\"", p.port), &format!(":{other}\"")),
    )
    .unwrap();
    let client_text = std::fs::read_to_string(&p.client).unwrap();
    std::fs::write(
        &p.client,
        client_text.replace("app = \"registered-elsewhere\"", "app = \"nobody-here\""),
    )
    .unwrap();
    let _server = spawn_server(
        &p.server,
        &["nc", "-l", "127.0.0.1", &other.to_string()],
        Stdio::null(),
        Stdio::null(),
    );
    let url = format!("http://127.0.0.1:{}/", p.port);
    let out = run_within(
        &p.client,
        &["curl", "-v", "-sS", "--max-time", "10", &url],
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(err.contains("Connection refused"), "{err}");
    let script = format!(
        "import socket, errno\ns = socket.socket()\ne = s.connect_ex(('127.0.0.1', {}))\nprint(errno.errorcode.get(e, e))",
        p.port
    );
    let out = run_within(
        &p.client,
        &["python3", "-c", &script],
        Duration::from_secs(60),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ECONNREFUSED");
}

/// Servers whose connection outlives the process that accepted it: `busybox nc -l -e`
/// and `socat ... EXEC:cat,nofork` exec the command in place with the socket on its
/// stdin and stdout; a Python server forks a child for the connection and exits at
/// once. The stack goes to a keeper process that serves the flow while the command
/// or child holds it: 300 kB echoed byte-exact in each case, and the keeper goes away
/// once the flow is done.
#[test]
fn servers_that_exec_or_exit_leave_flows_to_their_children() {
    require(&["nc", "busybox", "socat", "python3"]);
    let dir = temp_dir();
    let data = random_bytes(300_000, 17);
    let input = dir.path().join("in");
    std::fs::write(&input, &data).unwrap();
    let forking = r#"
import os, socket, sys
l = socket.socket(); l.bind(("127.0.0.1", int(sys.argv[1]))); l.listen(1)
c, _ = l.accept()
if os.fork() == 0:
    l.close()
    f = c.makefile("rb")
    data = f.read()
    c.sendall(data); c.close(); os._exit(0)
sys.exit(0)
"#;
    let cases: [&[&str]; 3] = [
        &["busybox", "nc", "-l", "-p", "{p}", "-e", "cat"],
        &["socat", "TCP-LISTEN:{p},bind=127.0.0.1", "EXEC:cat,nofork"],
        &["python3", "-c", forking, "{p}"],
    ];
    for (i, server) in cases.iter().enumerate() {
        let p = pair(dir.path(), &format!("handover{i}"));
        let port = p.port.to_string();
        // busybox nc binds the wildcard address.
        let text = std::fs::read_to_string(&p.server).unwrap();
        std::fs::write(
            &p.server,
            text.replace(&format!("\"127.0.0.1:{port}\""), &format!("\"*:{port}\"")),
        )
        .unwrap();
        let args: Vec<String> = server.iter().map(|a| a.replace("{p}", &port)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let log = dir.path().join(format!("server{i}.log"));
        let mut cmd = rina_run(&p.server, &args, Stdio::null(), Stdio::null());
        cmd.env("RINA_LOG", "info").env("RINA_LOG_FILE", &log);
        let mut server = Proc::spawn(args[0], &mut cmd);
        assert!(
            wait_for_rina_listener(server.pid(), Duration::from_secs(10)),
            "{args:?}: {}",
            server.kill_and_stderr()
        );
        let out = output_within(
            &mut rina_run(
                &p.client,
                &["nc", "-N", "127.0.0.1", &port],
                stdin_from(&input),
                Stdio::piped(),
            ),
            Duration::from_secs(60),
        );
        let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            out.status.success(),
            "{args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            log_text()
        );
        assert!(
            out.stdout == data,
            "{args:?}: {} of {} bytes echoed\n{}",
            out.stdout.len(),
            data.len(),
            log_text()
        );
        assert!(
            server.expect_exit(Duration::from_secs(10)).success(),
            "{args:?}"
        );
        // A keeper served what the server left behind (none is needed when the child
        // was done before its parent exited, and the listener is withdrawn once every
        // process closed it); it leaves once that is delivered.
        let handed = log_text();
        let keeper: Option<u32> = handed
            .lines()
            .find_map(|l| l.split("keeper process ").nth(1))
            .and_then(|rest| rest.split(' ').next()?.parse().ok());
        if let Some(keeper) = keeper {
            assert!(
                wait_until(Duration::from_secs(10), || has_exited(keeper)),
                "{args:?}: keeper {keeper} still runs"
            );
        }
    }
}

/// `ncat -l -e cat`: ncat runs the command behind pipes and relays between them and the
/// socket (it stays alive); 20 kB echoed byte-exact to a client that reads the echo
/// before it closes (ncat -e drops what the command still has to say once it reads end
/// of stream, over kernel TCP too).
#[test]
fn ncat_exec_relays_through_a_command() {
    require(&["ncat", "python3"]);
    let dir = temp_dir();
    let p = pair(dir.path(), "ncat-exec");
    let port = p.port.to_string();
    let mut server = spawn_server(
        &p.server,
        &["ncat", "-l", "127.0.0.1", &port, "-e", "/bin/cat"],
        Stdio::null(),
        Stdio::null(),
    );
    let client = format!(
        r#"
import socket
data = bytes((i * 13 + 7) % 256 for i in range(20000))
s = socket.create_connection(("127.0.0.1", {port}), timeout=10)
s.sendall(data)
got = b""
while len(got) < len(data):
    b = s.recv(65536)
    if not b: break
    got += b
assert got == data, (len(got), len(data))
s.close()
print("echoed", len(got))
"#
    );
    let out = run_within(
        &p.client,
        &["python3", "-c", &client],
        Duration::from_secs(60),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "echoed 20000\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.expect_exit(Duration::from_secs(10)).success());
}
