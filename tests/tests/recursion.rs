//! Recursion (issue 5): a normal DIF over a normal DIF over a UDP shim, with a relay
//! in the middle layer; programs on top see nothing of it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rina_e2e::*;

/// Two levels: a UDP shim at `udp` and "mid", a normal DIF over it (bootstrap, or
/// enroll through the member at UDP port `via`).
fn mid_member(udp: u16, via: Option<u16>) -> String {
    let mid = match via {
        None => "bootstrap = true".to_owned(),
        Some(p) => format!("enroll-via = {{ neighbor = \"127.0.0.1:{p}\" }}"),
    };
    format!(
        "[[dif]]\nname = \"udp\"\ntype = \"udp\"\nbind = \"127.0.0.1:{udp}\"\n\n\
         [[dif]]\nname = \"mid\"\ntype = \"normal\"\nover = [\"udp\"]\n{mid}\n"
    )
}

/// Three levels: [`mid_member`], and "top", a normal DIF over "mid" (bootstrap, or
/// enroll through whichever member serves "top" in "mid"); then `extra`.
fn member(udp: u16, via: Option<u16>, extra: &str) -> String {
    let top = match via {
        None => "bootstrap = true",
        Some(_) => "enroll-via = { dif = \"mid\" }",
    };
    format!(
        "{}\n[[dif]]\nname = \"top\"\ntype = \"normal\"\nover = [\"mid\"]\n{top}\n\n{extra}",
        mid_member(udp, via)
    )
}

/// A Python program under `rules` that listens on TCP port `tcp`, then exits normally
/// once its stdin (piped) closes.
fn listen_until_stdin_closes(rules: &Path, tcp: u16) -> Proc {
    let script = format!(
        "import socket, sys\ns = socket.socket()\ns.bind(('127.0.0.1', {tcp}))\ns.listen()\nsys.stdin.read()\n"
    );
    spawn_server(
        rules,
        &["python3", "-c", &script],
        Stdio::piped(),
        Stdio::null(),
    )
}

/// The report of DIF `name` in a `rina ctl --json` answer.
fn dif<'a>(state: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    state["difs"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["name"] == name))
        .unwrap_or_else(|| panic!("no DIF {name}: {state:#}"))
}

/// nc to nc through "top" over "mid" over UDP. The server bootstraps both normal
/// DIFs; a `rina node` in "mid" only relays there (everyone joins "mid" through it);
/// another node has all three levels; the client joins "mid" through the relay and
/// "top" through whichever member serves it in "mid". 4 MiB each way byte-exact;
/// `rina ctl` shows the relay relaying "mid" PDUs and the three levels of the other
/// node, "top" over "mid", its names registered in "mid".
#[test]
fn nc_over_a_normal_dif_over_a_normal_dif() {
    assert!(have("nc"));
    let dir = temp_dir();
    let path = |n: &str| dir.path().join(n);
    let (ps, pr, pt, pc) = (
        free_udp_port(),
        free_udp_port(),
        free_udp_port(),
        free_udp_port(),
    );
    let tcp = free_tcp_port();
    let listen = format!("[[listen]]\non = \"127.0.0.1:{tcp}\"\ndif = \"top\"\napp = \"far\"\n");
    let connect = format!("[[connect]]\nto = \"127.0.0.1:{tcp}\"\ndif = \"top\"\napp = \"far\"\n");
    let server_rules = rules(dir.path(), "s.toml", &member(ps, None, &listen));
    let ex = Exchange::new(dir.path(), 4 << 20, 81);
    let (sin, sout) = ex.server_io();
    let mut server = spawn_server(
        &server_rules,
        &["nc", "-l", "-N", "127.0.0.1", &tcp.to_string()],
        sin,
        sout,
    );
    let relay_rules = rules(dir.path(), "r.toml", &mid_member(pr, Some(ps)));
    let relay = rina_node(&relay_rules, &path("r.log"), "mid");
    let three_rules = rules(dir.path(), "t.toml", &member(pt, Some(pr), ""));
    let three = rina_node(&three_rules, &path("t.log"), "top");
    let client_rules = rules(dir.path(), "c.toml", &member(pc, Some(pr), &connect));
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

    // Every "mid" PDU between the server and anyone else went through the relay: 4 MiB
    // each way in PDUs of about 64 KiB at least.
    let state = ctl_json(relay.pid());
    let mid = dif(&state, "mid");
    let relayed = mid["counters"]["pdus_relayed"].as_u64().unwrap();
    assert!(relayed >= 128, "{state:#}");
    assert_eq!(state["difs"].as_array().unwrap().len(), 1, "{state:#}");

    let state = ctl_json(three.pid());
    let names: Vec<&str> = state["shims"]
        .as_array()
        .unwrap()
        .iter()
        .chain(state["difs"].as_array().unwrap())
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["udp", "mid", "top"], "{state:#}");
    let (mid, top) = (dif(&state, "mid"), dif(&state, "top"));
    assert_eq!(mid["over"], serde_json::json!(["udp"]), "{state:#}");
    assert_eq!(top["over"], serde_json::json!(["mid"]), "{state:#}");
    assert_eq!(top["enrolled"], true, "{state:#}");
    // Its "top" member is reached in "mid" by its name, and by the DIF's (a node
    // takes newcomers).
    let registered = mid["registered"].to_string();
    assert!(registered.contains("\"top\""), "{state:#}");
    assert!(registered.contains("node.top"), "{state:#}");
    let text = output_within(
        Command::new(rina()).args(["ctl", &three.pid().to_string()]),
        Duration::from_secs(10),
    );
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("DIF top: member node.top|"), "{text}");
    assert!(text.contains("over mid"), "{text}");
}

/// A client whose "mid" cannot be joined (nobody at the neighbour's endpoint): its
/// connect in "top" fails with ENETUNREACH in bounded time, and the log says why, down
/// to the layer that failed.
#[test]
fn a_lower_dif_that_cannot_be_joined_fails_the_connect() {
    assert!(have("nc"));
    let dir = temp_dir();
    let tcp = free_tcp_port();
    let connect = format!("[[connect]]\nto = \"127.0.0.1:{tcp}\"\ndif = \"top\"\napp = \"far\"\n");
    let nobody = free_udp_port();
    let c = rules(
        dir.path(),
        "c.toml",
        &member(free_udp_port(), Some(nobody), &connect),
    );
    expect_unreachable(
        &mut rina_run(
            &c,
            &["nc", "-v", "-N", "127.0.0.1", &tcp.to_string()],
            Stdio::null(),
            Stdio::null(),
        ),
        &dir.path().join("c.log"),
        "DIF top: cannot join: cannot join DIF mid below it: nothing listens at 127.0.0.1:",
    );
}

/// A member leaving a stack of DIFs (a program that exits normally): its neighbour in
/// "top", reached through "mid", forgets it and its names at once, rather than after
/// the keepalives run out (2 s x 3 by default).
#[test]
fn leaving_says_goodbye_in_every_level() {
    assert!(have("python3"));
    let dir = temp_dir();
    let (pa, pb) = (free_udp_port(), free_udp_port());
    let a_rules = rules(dir.path(), "a.toml", &member(pa, None, ""));
    let a = rina_node(&a_rules, &dir.path().join("a.log"), "top");
    let tcp = free_tcp_port();
    let listen = format!("[[listen]]\non = \"127.0.0.1:{tcp}\"\ndif = \"top\"\napp = \"far\"\n");
    let b_rules = rules(dir.path(), "b.toml", &member(pb, Some(pa), &listen));
    let mut b = listen_until_stdin_closes(&b_rules, tcp);
    let top = |pid: u32| dif(&ctl_json(pid), "top").clone();
    assert!(
        wait_until(Duration::from_secs(10), || top(a.pid())["directory"]
            .to_string()
            .contains("\"far\"")),
        "{:#}",
        top(a.pid())
    );
    assert_eq!(top(a.pid())["neighbors"].as_array().unwrap().len(), 1);
    drop(b.take_stdin());
    assert!(b.expect_exit(Duration::from_secs(10)).success());
    let gone = wait_until(Duration::from_millis(1500), || {
        let t = top(a.pid());
        !t["directory"].to_string().contains("\"far\"")
            && t["neighbors"].as_array().is_some_and(Vec::is_empty)
            && t["members"].as_array().is_some_and(|m| m.len() == 1)
    });
    assert!(gone, "{:#}", top(a.pid()));
}

/// Four levels: "base" over UDP, "mid" over "base", "top" over "mid"; bootstrap, or
/// enroll through the member at UDP port `via` and then through each DIF below.
fn four_levels(udp: u16, via: Option<u16>, extra: &str) -> String {
    let join = |below: &str| match via {
        None => "bootstrap = true".to_owned(),
        Some(_) => format!("enroll-via = {{ dif = \"{below}\" }}"),
    };
    let base = match via {
        None => "bootstrap = true".to_owned(),
        Some(p) => format!("enroll-via = {{ neighbor = \"127.0.0.1:{p}\" }}"),
    };
    format!(
        "[[dif]]\nname = \"udp\"\ntype = \"udp\"\nbind = \"127.0.0.1:{udp}\"\n\n\
         [[dif]]\nname = \"base\"\ntype = \"normal\"\nover = [\"udp\"]\n{base}\n\n\
         [[dif]]\nname = \"mid\"\ntype = \"normal\"\nover = [\"base\"]\n{}\n\n\
         [[dif]]\nname = \"top\"\ntype = \"normal\"\nover = [\"mid\"]\n{}\n\n{extra}",
        join("base"),
        join("mid")
    )
}

/// Who may be enrolled through: in a stack of four levels, a program serving a name in
/// "top" as a full member (`role = "member"`) offers "top" to newcomers (it registers
/// the DIF's name in "mid"), but its "mid" member, a leaf (a program's own, by
/// default), does not offer "mid" in "base": a newcomer must not join through a
/// program that may exit at any time. Both register their members' names below, to be
/// reached.
#[test]
fn only_members_serving_applications_take_newcomers() {
    assert!(have("python3"));
    let dir = temp_dir();
    let (pa, pb) = (free_udp_port(), free_udp_port());
    let a_rules = rules(dir.path(), "a.toml", &four_levels(pa, None, ""));
    let _a = rina_node(&a_rules, &dir.path().join("a.log"), "top");
    let tcp = free_tcp_port();
    let listen = format!(
        "role = \"member\"\n[[listen]]\non = \"127.0.0.1:{tcp}\"\ndif = \"top\"\napp = \"far\"\n"
    );
    let b_rules = rules(dir.path(), "b.toml", &four_levels(pb, Some(pa), &listen));
    let mut b = listen_until_stdin_closes(&b_rules, tcp);
    // Its listener exists before its listen returns (the name is registered once all
    // four levels are joined): wait, bounded, for "top" registered in "mid".
    let mut state = ctl_json(b.pid());
    let registered = |s: &serde_json::Value, d: &str| dif(s, d)["registered"].to_string();
    wait_until(Duration::from_secs(15), || {
        state = ctl_json(b.pid());
        registered(&state, "mid").contains("\"top\"")
    });
    let (base, mid) = (registered(&state, "base"), registered(&state, "mid"));
    assert!(mid.contains("\"top\""), "{state:#}");
    assert!(mid.contains("python3.top|"), "{state:#}");
    assert!(base.contains("python3.mid|"), "{state:#}");
    assert!(!base.contains("\"mid\""), "{state:#}");
    drop(b.take_stdin());
    assert!(b.expect_exit(Duration::from_secs(10)).success());
}
