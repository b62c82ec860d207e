//! Scale (issue 12): a DIF of 64 `rina node` members and 1,000 short-lived nc
//! clients, eight at a time, each a leaf of the member farthest from the server. Every
//! echo is byte-exact, the far member's link-state database is the size it was, and
//! the links between members carry no control message for the clients and a small,
//! constant number of datagrams per client (its flow's).

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rina_e2e::many::{random_tree, udp_member, ECHO_SERVER};
use rina_e2e::*;

const MEMBERS: usize = 64;
const CLIENTS: usize = 1000;
const AT_ONCE: usize = 8;

/// The DIF `net` of process `pid`, as `rina ctl --json` shows it.
fn net(pid: u32) -> serde_json::Value {
    ctl_json(pid)["difs"][0].clone()
}

fn counter(dif: &serde_json::Value, name: &str) -> u64 {
    dif["counters"][name].as_u64().unwrap_or(0)
}

#[test]
fn a_thousand_short_lived_clients_cost_the_members_nothing() {
    assert!(have("nc") && have("python3"));
    let dir = temp_dir();
    let d = dir.path();
    let udp: Vec<u16> = (0..MEMBERS).map(|_| free_udp_port()).collect();
    let tcp = free_tcp_port();
    let (parent, depth) = random_tree(MEMBERS);
    let mut nodes: Vec<Proc> = Vec::new();
    for i in 0..MEMBERS {
        let r = rules(
            d,
            &format!("m{i}.toml"),
            &udp_member(udp[i], parent[i].map(|p| udp[p]), ""),
        );
        nodes.push(start_rina_node(&r, &d.join(format!("m{i}.log"))));
    }
    let all_joined = || {
        (0..MEMBERS).all(|i| {
            std::fs::read_to_string(d.join(format!("m{i}.log")))
                .is_ok_and(|t| t.contains("enrolled in DIF net "))
        })
    };
    assert!(
        wait_until(Duration::from_secs(60), all_joined),
        "the members never all joined"
    );
    // The server is a leaf of member 0; the clients are leaves of the deepest member.
    let listen = format!("[[listen]]\non = \"127.0.0.1:{tcp}\"\ndif = \"net\"\napp = \"echo\"\n");
    let srv_rules = rules(
        d,
        "server.toml",
        &udp_member(free_udp_port(), Some(udp[0]), &listen),
    );
    let _server = spawn_server(
        &srv_rules,
        &["python3", "-c", ECHO_SERVER, &tcp.to_string()],
        Stdio::null(),
        Stdio::null(),
    );
    let far = (0..MEMBERS).max_by_key(|&i| depth[i]).unwrap();
    let far_pid = nodes[far].pid();
    let sees_echo = || {
        net(far_pid)["directory"]
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["app"] == "echo"))
    };
    assert!(
        wait_until(Duration::from_secs(30), sees_echo),
        "{:#}",
        net(far_pid)
    );
    let full_db = || net(far_pid)["lsdb_size"].as_u64() == Some(MEMBERS as u64);
    assert!(
        wait_until(Duration::from_secs(30), full_db),
        "{:#}",
        net(far_pid)
    );
    let lsdb_before = net(far_pid)["lsdb_size"].as_u64().unwrap();
    let totals = |name: &str| {
        nodes
            .iter()
            .map(|n| counter(&net(n.pid()), name))
            .sum::<u64>()
    };
    let (pdus_before, control_before) = (totals("pdus_to_members"), totals("control_to_members"));

    let connect = format!("[[connect]]\nto = \"127.0.0.1:{tcp}\"\ndif = \"net\"\napp = \"echo\"\n");
    let client_rules = rules(d, "client.toml", &udp_member(0, Some(udp[far]), &connect));
    let next = Arc::new(AtomicUsize::new(0));
    let started = std::time::Instant::now();
    let workers: Vec<_> = (0..AT_ONCE)
        .map(|_| {
            let (next, client_rules, d) = (next.clone(), client_rules.clone(), d.to_owned());
            std::thread::spawn(move || {
                while let Some(i) =
                    Some(next.fetch_add(1, Ordering::Relaxed)).filter(|&i| i < CLIENTS)
                {
                    let sent = format!("{:<63}\n", format!("client {i} of a thousand"));
                    let input = d.join(format!("in{i}"));
                    std::fs::File::create(&input)
                        .unwrap()
                        .write_all(sent.as_bytes())
                        .unwrap();
                    let out = output_within(
                        &mut rina_run(
                            &client_rules,
                            &["nc", "-N", "127.0.0.1", &tcp.to_string()],
                            Stdio::from(std::fs::File::open(&input).unwrap()),
                            Stdio::piped(),
                        ),
                        Duration::from_secs(30),
                    );
                    assert_eq!(
                        String::from_utf8_lossy(&out.stdout),
                        sent,
                        "client {i}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    let _ = std::fs::remove_file(&input);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("every echo byte-exact");
    }
    let took = started.elapsed();
    eprintln!("{CLIENTS} clients, {AT_ONCE} at a time, in {took:?}");
    // Every client is gone from its enroller, and the far member's database is the
    // size it was.
    let no_leaves = || {
        net(far_pid)["leaves"]
            .as_array()
            .is_some_and(|l| l.is_empty())
    };
    assert!(
        wait_until(Duration::from_secs(10), no_leaves),
        "{:#}",
        net(far_pid)
    );
    assert_eq!(net(far_pid)["lsdb_size"].as_u64(), Some(lsdb_before));
    // The links between members carried no control message for the clients, and
    // datagrams of their flows only (and keepalives).
    let control = totals("control_to_members") - control_before;
    let pdus = totals("pdus_to_members") - pdus_before;
    let per_client = pdus as f64 / CLIENTS as f64;
    eprintln!(
        "between members: {control} control messages, {pdus} PDUs ({per_client:.1} per client, path of {} hops)",
        depth[far]
    );
    assert_eq!(control, 0, "control messages between members");
    assert!(
        per_client < 20.0 * (depth[far] as f64 + 1.0),
        "{per_client} PDUs per client"
    );
    let text = output_within(
        Command::new(rina()).args(["ctl", &far_pid.to_string()]),
        Duration::from_secs(10),
    );
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("link-state database: {lsdb_before} entries")),
        "{text}"
    );
    assert!(text.contains("leaves: none"), "{text}");
}
