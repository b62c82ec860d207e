//! Relaying (issue 5): members that forward, started with `rina node` (a stack with no
//! program), in chains and rings; routes that heal when a relay dies; a member that
//! comes back on its own.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
    let ex = Exchange::new(dir.path(), 8 << 20, 71);
    let (sin, sout) = ex.server_io();
    let mut server = spawn_server(
        &server_rules,
        &["nc", "-l", "-N", "127.0.0.1", &tcp.to_string()],
        sin,
        sout,
    );
    let mut relays = Vec::new();
    for i in 1..4 {
        let r = rules(
            dir.path(),
            &format!("m{i}.toml"),
            &member(ports[i], Some(ports[i - 1]), ""),
        );
        relays.push(rina_node(&r, &path(&format!("m{i}.log")), "net"));
    }
    let client_rules = rules(
        dir.path(),
        "m4.toml",
        &member(ports[4], Some(ports[3]), &connect(tcp)),
    );
    let (cin, cout) = ex.client_io();
    let mut client = Proc::spawn(
        "nc",
        &mut rina_run(
            &client_rules,
            &["nc", "127.0.0.1", &tcp.to_string()],
            cin,
            cout,
        ),
    );
    ex.check(&mut client, &mut server);
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
    let text = output_within(
        Command::new(rina()).args(["ctl", &relays[1].pid().to_string()]),
        Duration::from_secs(10),
    );
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
    let list = output_within(Command::new(rina()).arg("ctl"), Duration::from_secs(10));
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

/// The sink of the ring test: for each connection, the length and SHA-256 of what
/// arrived, once the sender half-closes.
const SINK: &str = r#"
import hashlib, socket, sys, threading
l = socket.socket(); l.bind(("127.0.0.1", int(sys.argv[1]))); l.listen(8)
def serve(c):
    h, n = hashlib.sha256(), 0
    while True:
        b = c.recv(65536)
        if not b: break
        h.update(b); n += len(b)
    c.sendall(b"%d %s\n" % (n, h.hexdigest().encode())); c.close()
while True:
    c, _ = l.accept()
    threading.Thread(target=serve, args=(c,)).start()
"#;

/// A paced sender: `total` bytes at about 4 MiB/s (so that a transfer is still running
/// when a relay dies), then a half-close; prints the sink's answer.
const PACED: &str = r#"
import hashlib, socket, sys, time
port, total = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port), timeout=60)
h, sent, chunk = hashlib.sha256(), 0, bytes(range(256)) * 256
while sent < total:
    b = chunk[: min(len(chunk), total - sent)]
    s.sendall(b); h.update(b); sent += len(b)
    time.sleep(0.015)
s.shutdown(socket.SHUT_WR)
answer = s.makefile().readline().strip()
assert answer == "%d %s" % (total, h.hexdigest()), (answer, total)
print("ok", answer)
"#;

fn relayed(pid: u32) -> u64 {
    ctl_json(pid)["difs"][0]["counters"]["pdus_relayed"]
        .as_u64()
        .unwrap_or(0)
}

fn neighbours(pid: u32) -> usize {
    ctl_json(pid)["difs"][0]["neighbors"]
        .as_array()
        .map_or(0, Vec::len)
}

/// A ring of four members (the sink's, two relays either side, and the client side's
/// relay opposite) with a client hanging off the last: a paced transfer runs across
/// the ring; the relay it goes through is killed (SIGKILL: no goodbye); routing
/// converges on the other way round and the transfer completes byte-exact, with no
/// application error. The killed relay, started again, rejoins on its own (its
/// neighbours set their adjacencies up again) and carries traffic again.
#[test]
fn a_ring_heals_around_a_killed_relay() {
    assert!(have("python3"));
    let dir = temp_dir();
    let p: Vec<u16> = (0..5).map(|_| free_udp_port()).collect();
    let tcp = free_tcp_port();
    let log = |n: &str| dir.path().join(format!("{n}.log"));
    // 0: the sink (bootstrap); 1 and 3 enroll through 0; 2 enrolls through 1 and keeps
    // an adjacency with 3: the ring 0-1-2-3-0. The client (4) enrolls through 2.
    let sink_rules = rules(dir.path(), "m0.toml", &member(p[0], None, &listen(tcp)));
    let _sink = spawn_server(
        &sink_rules,
        &["python3", "-c", SINK, &tcp.to_string()],
        Stdio::null(),
        Stdio::null(),
    );
    let r1 = rules(dir.path(), "m1.toml", &member(p[1], Some(p[0]), ""));
    let r3 = rules(dir.path(), "m3.toml", &member(p[3], Some(p[0]), ""));
    let mut relays = vec![
        rina_node(&r1, &log("m1"), "net"),
        rina_node(&r3, &log("m3"), "net"),
    ];
    let keep3 = format!("neighbors = [{{ neighbor = \"127.0.0.1:{}\" }}]\n", p[3]);
    let r2 = rules(
        dir.path(),
        "m2.toml",
        &member(p[2], Some(p[1]), "").replace(
            "keepalive-misses = 3\n",
            &format!("keepalive-misses = 3\n{keep3}"),
        ),
    );
    let m2 = rina_node(&r2, &log("m2"), "net");
    assert!(
        wait_until(Duration::from_secs(10), || neighbours(m2.pid()) == 2),
        "the ring did not close: {:#}",
        ctl_json(m2.pid())
    );
    let client_rules = rules(
        dir.path(),
        "c.toml",
        &member(p[4], Some(p[2]), &connect(tcp)),
    );
    let total = (16 << 20).to_string();
    let mut client = Proc::spawn(
        "paced client",
        rina_run(
            &client_rules,
            &["python3", "-c", PACED, &tcp.to_string(), &total],
            Stdio::null(),
            Stdio::piped(),
        )
        .stderr(Stdio::piped()),
    );
    // The transfer goes through relay 1 or relay 3 (equal paths): find which, and
    // kill it once data flows.
    let (on_path, other) = loop {
        if relayed(relays[0].pid()) > 20 {
            break (0, 1);
        }
        if relayed(relays[1].pid()) > 20 {
            break (1, 0);
        }
        assert!(
            client.wait_timeout(Duration::from_millis(20)).is_none(),
            "the transfer ended first"
        );
    };
    let before = relayed(relays[other].pid());
    let killed_at = Instant::now();
    drop(relays[on_path].kill_and_stderr());
    let resumed = wait_until(Duration::from_secs(20), || {
        relayed(relays[other].pid()) > before + 10
    });
    let stall = killed_at.elapsed();
    eprintln!("the flow stalled for {stall:?} after the relay was killed");
    assert!(resumed, "traffic never took the other way");
    let st = client.expect_exit(Duration::from_secs(60));
    let out = client.stdout_within(Duration::from_secs(20));
    assert!(st.success(), "client: {} {}", out, client.stderr());
    assert!(out.starts_with("ok "), "byte-exact");

    // The killed relay, started again with the same rules, rejoins on its own: both
    // of its ring adjacencies come back.
    let again = if on_path == 0 { &r1 } else { &r3 };
    let restarted_at = Instant::now();
    let back = rina_node(again, &log("again"), "net");
    assert!(
        wait_until(Duration::from_secs(40), || neighbours(back.pid()) == 2),
        "not back in the ring: {:#}",
        ctl_json(back.pid())
    );
    eprintln!(
        "the relay was back in the ring {:?} after its restart",
        restarted_at.elapsed()
    );
    // It carries traffic again: a client that joins through it reaches the sink.
    let via_back = rules(
        dir.path(),
        "c2.toml",
        &member(
            free_udp_port(),
            Some(if on_path == 0 { p[1] } else { p[3] }),
            &connect(tcp),
        ),
    );
    let out = run_within(
        &via_back,
        &["python3", "-c", PACED, &tcp.to_string(), "200000"],
        Duration::from_secs(60),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("ok "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(relayed(back.pid()) > 0);
    relays.remove(on_path);
}
