//! The rules of the host member (issue 13): a program's `stack = "host"` and a host
//! member's `[host]`, what they accept and how their mistakes are reported.

use std::path::Path;

use runtime::config::{parse_str, DifKind, HostSocket, StackMode};

fn err(text: &str) -> String {
    parse_str(text, Path::new("bad.toml"))
        .expect_err("must be rejected")
        .to_string()
}

const RULES: &str = r#"
[[connect]]
to = "127.0.0.1:5000"
dif = "net"
app = "echo"

[[listen]]
on = "*:6000"
dif = "web"
app = "site"
"#;

#[test]
fn a_program_served_by_the_host_member_names_its_difs_and_declares_none() {
    let c = parse_str(
        &format!("[settings]\nstack = \"host\"\n{RULES}"),
        Path::new("p.toml"),
    )
    .unwrap();
    assert_eq!(
        c.settings.stack,
        StackMode::Host(HostSocket::Abstract("rina-host".into()))
    );
    let difs: Vec<(&str, bool)> = c
        .difs
        .iter()
        .map(|d| (d.name.as_str(), d.kind == DifKind::Host))
        .collect();
    assert_eq!(difs, [("net", true), ("web", true)]);
    let c = parse_str(
        &format!("[settings]\nstack = \"host\"\nhost-socket = \"/run/rina/h.sock\"\n{RULES}"),
        Path::new("p.toml"),
    )
    .unwrap();
    assert_eq!(
        c.settings.stack,
        StackMode::Host(HostSocket::Path("/run/rina/h.sock".into()))
    );
    assert!(c
        .describe()
        .contains("served by the host member at /run/rina/h.sock"));
}

#[test]
fn host_mistakes_name_the_line_and_the_problem() {
    let e = err(&format!(
        "[settings]\nstack = \"host\"\n\n[[dif]]\nname = \"u\"\ntype = \"udp\"\nbind = \"127.0.0.1:1\"\n{RULES}"
    ));
    assert!(
        e.starts_with("bad.toml:4:") && e.contains("declares no DIFs"),
        "{e}"
    );
    let e = err("[settings]\nstack = \"shared\"\n");
    assert!(
        e.starts_with("bad.toml:2:") && e.contains("\"embedded\" or \"host\""),
        "{e}"
    );
    let e = err("[settings]\nhost-socket = \"@x\"\n");
    assert!(e.contains("only for stack = \"host\""), "{e}");
    let e = err("[settings]\nstack = \"host\"\nhost-socket = \"@\"\n");
    assert!(
        e.starts_with("bad.toml:3:") && e.contains("needs a name"),
        "{e}"
    );
    let e = err("[host]\n[[host.allow]]\nusers = [\"no-such-user-here\"]\n");
    assert!(e.starts_with("bad.toml:3:") && e.contains("no user"), "{e}");
    let e = err("[host]\n[[host.allow]]\ndifs = [\"net\"]\n");
    assert!(e.contains("needs users or groups"), "{e}");
    let e = err("[host]\nsockets = \"@x\"\n");
    assert!(e.starts_with("bad.toml:2:"), "{e}");
}

#[test]
fn a_host_section_gives_the_socket_and_who_may_use_it() {
    let c = parse_str(
        "[host]\nsocket = \"@h1\"\n\n[[host.allow]]\nusers = [\"root\", \"1234\"]\ngroups = [\"0\"]\ndifs = [\"net\"]\nnames = [\"web*\"]\n",
        Path::new("h.toml"),
    )
    .unwrap();
    let h = c.host.expect("a [host] section");
    assert_eq!(h.socket, HostSocket::Abstract("h1".into()));
    assert_eq!(h.allow.len(), 1);
    let a = &h.allow[0];
    assert_eq!(
        (a.users.clone(), a.groups.clone(), a.line),
        (vec![0, 1234], vec![0], 4)
    );
    assert_eq!(a.names.as_deref(), Some(&["web*".to_owned()][..]));
}
