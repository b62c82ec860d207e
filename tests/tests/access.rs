//! Access control in a secured DIF, end to end (issue 11): the attacks of the issue
//! by members whose keys are trusted. A node N (`rina node`) lets only the server S's
//! key register `web`. M registers `web` first; M2 enrolls under S's member name; M3
//! bootstraps at S's address with N as a kept neighbour. N refuses each (its log says
//! so with the key's fingerprint), S's adjacency never goes down, and 20 of 20 new
//! connections from a client reach S.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rina_e2e::*;

/// Rules of the members of DIF `net` in `dir`, each trusting `trust`.
struct Members<'a> {
    dir: &'a Path,
    trust: &'a [&'a str],
}

impl Members<'_> {
    /// A member's rules: a UDP shim at `udp`, DIF `net` joined as `join` says, secured
    /// with `key` (then `extra`), then `tail` (listen or connect rules).
    fn rules(
        &self,
        udp: u16,
        join: &str,
        key: &Path,
        extra: &str,
        tail: &str,
    ) -> std::path::PathBuf {
        let trust: Vec<String> = self.trust.iter().map(|k| format!("{k:?}")).collect();
        let text = format!(
            "[[dif]]\nname = \"udp\"\ntype = \"udp\"\nbind = \"127.0.0.1:{udp}\"\n\n\
             [[dif]]\nname = \"net\"\ntype = \"normal\"\nover = [\"udp\"]\n{join}\n\n\
             [dif.security]\nkey = {key:?}\ntrust = [{}]\n{extra}\n\n{tail}\n",
            trust.join(", ")
        );
        rules(self.dir, &format!("member-{udp}.toml"), &text)
    }
}

/// Starts `python3 whoami.py serve PORT NAME` under `rules`, waiting until it listens.
fn whoami(rules: &Path, port: u16, name: &str, log: &Path) -> Proc {
    let script = program("whoami.py");
    let p = port.to_string();
    let args = ["python3", script.to_str().unwrap(), "serve", &p, name];
    spawn_logged_server(rules, log, &args, Stdio::null(), Stdio::null())
}

/// The DIF `net` of a process's report.
fn net(pid: u32) -> serde_json::Value {
    let r = ctl_json(pid);
    r["difs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "net")
        .unwrap()
        .clone()
}

#[test]
fn trusted_members_cannot_take_names_or_addresses_of_others() {
    assert!(have("python3"));
    let dir = temp_dir();
    let d = dir.path();
    let keys: Vec<_> = ["n", "s", "m", "c"].iter().map(|k| keygen(d, k)).collect();
    let pubs: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    let (n_pub, s_pub, m_pub, c_pub) = (pubs[0], pubs[1], pubs[2], pubs[3]);
    let n_udp = free_udp_port();
    let via = format!("enroll-via = {{ dif = \"udp\", neighbor = \"127.0.0.1:{n_udp}\" }}");
    let (web, web_m) = (free_tcp_port(), free_tcp_port());
    let n_side = Members {
        dir: d,
        trust: &[s_pub, m_pub, c_pub],
    };
    let others = Members {
        dir: d,
        trust: &[n_pub],
    };
    // N: only S's key may register web.
    let names = format!("names = [{{ name = \"web\", keys = [{s_pub:?}] }}]");
    let n_rules = n_side.rules(
        n_udp,
        "bootstrap = true\nipcp = \"n.net\"",
        &keys[0].0,
        &names,
        "",
    );
    let n_log = d.join("n.log");
    let mut node = rina_node(&n_rules, &n_log, "net");
    // M registers web first (its own rules do not forbid it).
    let listen =
        |port: u16| format!("[[listen]]\non = \"127.0.0.1:{port}\"\ndif = \"net\"\napp = \"web\"");
    let m_rules = others.rules(free_udp_port(), &via, &keys[2].0, "", &listen(web_m));
    let mut m = whoami(&m_rules, web_m, "M", &d.join("m.log"));
    // S registers web (a full member: M3 takes its address below, and leaves'
    // addresses are no member's to bootstrap with).
    let s_rules = others.rules(
        free_udp_port(),
        &format!("{via}\nipcp = \"s.net\"\nrole = \"member\""),
        &keys[1].0,
        "",
        &listen(web),
    );
    let mut s = whoami(&s_rules, web, "S", &d.join("s.log"));
    // (A listener exists before its listen returns: wait for the registration.)
    let registered = || {
        net(s.pid())["registered"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    };
    assert!(
        wait_until(Duration::from_secs(15), registered),
        "S never registered web"
    );
    let s_net = net(s.pid());
    let s_addr = s_net["address"]
        .as_u64()
        .unwrap_or_else(|| panic!("S's address: {s_net}"));
    // M2: S's member name; M3: S's address, with N as a kept neighbour.
    let m2_rules = others.rules(
        free_udp_port(),
        &format!("{via}\nipcp = \"s.net\""),
        &keys[2].0,
        "",
        "",
    );
    let m3_join = format!("bootstrap = true\naddress = {s_addr}\nneighbors = [{{ dif = \"udp\", neighbor = \"127.0.0.1:{n_udp}\" }}]");
    let m3_rules = others.rules(free_udp_port(), &m3_join, &keys[2].0, "", "");
    let m2_log = d.join("m2.log");
    let mut m2 = start_rina_node(&m2_rules, &m2_log);
    let mut m3 = rina_node(&m3_rules, &d.join("m3.log"), "net");
    let said = |what: &str| {
        std::fs::read_to_string(&n_log)
            .unwrap_or_default()
            .contains(what)
    };
    for what in [
        "may not register web",
        "claims member name s.net",
        &format!("claims address {s_addr}"),
    ] {
        assert!(
            wait_until(Duration::from_secs(15), || said(what)),
            "N never said {what:?}:\n{}",
            std::fs::read_to_string(&n_log).unwrap_or_default()
        );
    }
    // 20 of 20 connections from a client reach S.
    let connect = format!("[[connect]]\nto = \"127.0.0.1:{web}\"\ndif = \"net\"\napp = \"web\"");
    let c_rules = others.rules(free_udp_port(), &via, &keys[3].0, "", &connect);
    let script = program("whoami.py");
    let out = run_within(
        &c_rules,
        &[
            "python3",
            script.to_str().unwrap(),
            "ask",
            &web.to_string(),
            "20",
        ],
        Duration::from_secs(120),
    );
    let answers = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{answers}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        answers.lines().filter(|l| *l == "S").count(),
        20,
        "{answers}"
    );
    // S stayed N's neighbour, under its own key, and N counted the refusals.
    let n_net = net(node.pid());
    let s_fp = &s_pub[..8];
    let neighbours = n_net["neighbors"].as_array().unwrap();
    assert!(
        neighbours
            .iter()
            .any(|n| n["name"] == "s.net" && n["key"] == s_fp),
        "{n_net}"
    );
    assert!(
        !neighbours
            .iter()
            .any(|n| n["key"] == m_pub[..8] && n["name"] == "s.net"),
        "{n_net}"
    );
    // Three refusals at least (the registration, the name, the address), counted.
    let refused = n_net["security"]["refused_claims"].as_u64().unwrap_or(0);
    assert!(refused >= 3, "{n_net}");
    for p in [&mut m, &mut s, &mut m2, &mut m3, &mut node] {
        p.kill_and_stderr();
    }
}
