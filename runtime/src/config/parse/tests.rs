//! Parser tests: every kind of mistake names its line and column.

use std::path::Path;

use super::*;
use crate::config::{DefaultPolicy, DifIndex, DifKind, Join, Neighbor, Proto};

const GOOD: &str = r#"
[[dif]]
name = "udp0"
type = "udp"
bind = "127.0.0.1:7000"
[dif.peers]
server = "127.0.0.1:7001"

[[dif]]
name = "net"
type = "normal"
over = "udp0"
enroll-via = { neighbor = "server" }
keepalive-interval = "500ms"

[[connect]]
to = "10.0.0.0/8:8000-8099"
dif = "net"
app = "svc-{port}"

[[listen]]
on = "[::]:80"
dif = "net"
app = "web"

[default]
action = "deny"

[settings]
connect-timeout = "2s"
"#;

fn err(text: &str) -> ConfigError {
    parse_str(text, Path::new("bad.toml")).expect_err("must be rejected")
}

fn assert_err(text: &str, line: usize, column: usize, needle: &str) {
    let e = err(text);
    assert_eq!((e.line, e.column), (line, column), "{e}");
    assert!(e.message.contains(needle), "{e}");
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("bad.toml:{line}:{column}: ")),
        "{shown}"
    );
}

#[test]
fn good_file_parses() {
    let c = parse_str(GOOD, Path::new("good.toml")).unwrap();
    assert_eq!(c.difs.len(), 2);
    let DifKind::Udp(u) = &c.difs[0].kind else {
        panic!()
    };
    assert_eq!(u.mtu, 65000, "loopback default");
    let DifKind::Normal(n) = &c.difs[1].kind else {
        panic!()
    };
    assert_eq!(
        n.join,
        Join::Enroll {
            via: DifIndex(0),
            neighbor: Neighbor::Peer {
                name: "server".into(),
                at: "127.0.0.1:7001".parse().unwrap()
            }
        }
    );
    assert_eq!(n.keepalive_interval, Duration::from_millis(500));
    assert_eq!(c.connect[0].line, 16);
    assert_eq!(c.default, DefaultPolicy::Deny);
    assert_eq!(c.settings.connect_timeout, Duration::from_secs(2));
    assert!(
        matches!(c.match_connect("10.1.1.1:8042".parse().unwrap(), Proto::Tcp), crate::config::Decision::Rina { app, .. } if app.to_string() == "svc-8042")
    );
    assert_eq!(
        c.match_connect("10.1.1.1:9000".parse().unwrap(), Proto::Tcp),
        crate::config::Decision::Deny
    );
    let d = c.describe();
    assert!(
        d.contains("udp0: UDP shim") && d.contains("line 16: connect 10.0.0.0/8:8000-8099"),
        "{d}"
    );
}

#[test]
fn syntax_error() {
    assert_err("[[dif]]\nname = \"x\n", 2, 10, "invalid basic string");
}

#[test]
fn unknown_key() {
    assert_err(
        "[[dif]]\nname = \"u\"\nbogus = 1\n",
        3,
        1,
        "unknown field `bogus`",
    );
    assert_err(
        "[settings]\nlinger = \"1s\"\nspeed = 3\n",
        3,
        1,
        "unknown field `speed`",
    );
}

#[test]
fn rule_naming_unknown_dif() {
    let t = format!("{GOOD}\n[[connect]]\nto = \"1.2.3.4:5\"\ndif = \"nett\"\napp = \"x\"\n");
    let line = t.lines().position(|l| l.contains("nett")).unwrap() + 1;
    assert_err(
        &t,
        line,
        7,
        "unknown DIF \"nett\" (declared DIFs: udp0, net)",
    );
    let t = format!("{GOOD}\n[[listen]]\non = \"1.2.3.4:5\"\ndif = \"udp0\"\napp = \"x\"\n");
    let line = t
        .lines()
        .position(|l| l.contains("dif = \"udp0\"") && !l.contains("enroll"))
        .unwrap();
    let e = err(&t);
    assert!(e.message.contains("shim DIF"), "{e}");
    assert!(e.line > line, "{e}");
}

#[test]
fn invalid_addresses() {
    let t = format!("{GOOD}\n[[connect]]\nto = \"300.1.2.3:80\"\ndif = \"net\"\napp = \"x\"\n");
    let line = t.lines().position(|l| l.contains("300.1.2.3")).unwrap() + 1;
    assert_err(&t, line, 6, "not an IP address");
    assert_err(
        "[[dif]]\nname = \"u\"\ntype = \"udp\"\nbind = \"localhost:80\"\n",
        4,
        8,
        "not an IP:PORT",
    );
}

#[test]
fn structural_mistakes() {
    assert_err(
        "[[dif]]\nname = \"u\"\ntype = \"tcp\"\n",
        3,
        8,
        "unknown DIF type",
    );
    assert_err(
        "[[dif]]\nname = \"u\"\ntype = \"udp\"\nbind = \"127.0.0.1:1\"\nmtu = 10\n",
        5,
        7,
        "out of range",
    );
    assert_err(
        "[[dif]]\nname = \"u\"\ntype = \"udp\"\nbind = \"127.0.0.1:1\"\n[[dif]]\nname = \"u\"\ntype = \"udp\"\nbind = \"127.0.0.1:2\"\n",
        6,
        8,
        "declared twice",
    );
    assert_err(
        "[[dif]]\nname = \"n\"\ntype = \"normal\"\nover = [\"later\"]\nbootstrap = true\n",
        4,
        9,
        "no such DIF",
    );
    let base = "[[dif]]\nname = \"u\"\ntype = \"udp\"\nbind = \"127.0.0.1:1\"\n[[dif]]\nname = \"n\"\ntype = \"normal\"\nover = \"u\"\n";
    assert_err(
        &format!("{base}bootstrap = true\nenroll-via = {{ neighbor = \"127.0.0.1:2\" }}\n"),
        9,
        13,
        "not both",
    );
    let e = err(base);
    assert!(
        e.message
            .contains("needs `bootstrap = true` or `enroll-via"),
        "{e}"
    );
    assert_err(
        &format!("{base}enroll-via = {{ neighbor = \"who\" }}\n"),
        9,
        27,
        "neither IP:PORT nor a peer",
    );
    assert_err(
        &format!("{base}bootstrap = true\nipcp = \"a|b|c|d|e\"\n"),
        10,
        8,
        "invalid application name",
    );
    assert_err(
        &format!("{base}bootstrap = true\nkeepalive-interval = \"soon\"\n"),
        10,
        22,
        "not a duration",
    );
    assert_err(
        &format!("{base}bootstrap = true\nrole = \"leaf\"\n"),
        10,
        8,
        "bootstraps the DIF is a full member",
    );
    assert_err(
        &format!("{base}enroll-via = {{ neighbor = \"127.0.0.1:2\" }}\nrole = \"relay\"\n"),
        10,
        8,
        "role must be \"leaf\" or \"member\"",
    );
    assert_err(
        &format!("{base}bootstrap = true\naddress = 2147483648\n"),
        10,
        11,
        "address must be 1..=2147483647",
    );
    assert_err(
        &format!("{base}bootstrap = true\nbind = \"1.2.3.4:5\"\n"),
        10,
        8,
        "does not apply",
    );
    assert_err(
        &format!(
            "{base}bootstrap = true\n[[connect]]\nto = \"*:1\"\ndif = \"n\"\napp = \"{{host}}\"\n"
        ),
        13,
        7,
        "only {port} and {addr}",
    );
}

#[test]
fn durations_parse_and_saturate() {
    assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_duration(" 5s "), Some(Duration::from_secs(5)));
    assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
    assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
    // Too large for any clock: the largest duration, which every bound refuses.
    for huge in [
        "18446744073709551615m",
        "18446744073709551616s",
        "99999999999999999999999ms",
        "18446744073709551615h",
    ] {
        assert_eq!(parse_duration(huge), Some(Duration::MAX), "{huge}");
    }
    assert_eq!(
        parse_duration("18446744073709551615s"),
        Some(Duration::from_secs(u64::MAX))
    );
    for bad in ["", "s", "5", "5d", "-1s", "1.5s", "ms5"] {
        assert_eq!(parse_duration(bad), None, "{bad:?}");
    }
}

/// The rules of issue 9 that `rina check` used to accept but that broke: each is
/// refused where it is written.
#[test]
fn limits_of_the_wire_and_the_clock() {
    let base = "[[dif]]\nname = \"u\"\ntype = \"udp\"\nbind = \"127.0.0.1:1\"\n[[dif]]\nname = \"n\"\ntype = \"normal\"\nover = \"u\"\nbootstrap = true\n";
    assert_err(
        &format!("{base}keepalive-interval = \"18446744073709551615s\"\n"),
        10,
        22,
        "keepalive-interval \"18446744073709551615s\" is too long: at most 1h",
    );
    assert_err(
        &format!("{base}enrollment-timeout = \"18446744073709551615s\"\n"),
        10,
        22,
        "too long",
    );
    assert_err(
        "[settings]\nlinger = \"18446744073709551615s\"\n",
        2,
        10,
        "linger \"18446744073709551615s\" is too long: at most 24h",
    );
    assert_err(
        "[settings]\nconnect-timeout = \"18446744073709551615s\"\n",
        2,
        19,
        "too long",
    );
    assert_err(
        &format!("[[dif]]\nname = \"{}\"\ntype = \"udp\"\n", "x".repeat(256)),
        2,
        8,
        "a DIF name is at most 255 bytes",
    );
    assert_err(
        "[dif]\nname = \"u\"\ntype = \"udp\"\n[[dif]]\nname = \"v\"\n",
        1,
        1,
        "`[dif]` is a single table; write `[[dif]]`",
    );
}

#[test]
fn unreadable_file() {
    let e = load(Path::new("/nonexistent/rules.toml")).unwrap_err();
    assert_eq!(e.line, 0);
    assert!(
        e.to_string()
            .starts_with("/nonexistent/rules.toml: cannot read"),
        "{e}"
    );
}

proptest::proptest! {
    #[test]
    fn never_panics(s in "(\\[\\[dif\\]\\]|name|type|=|\"udp\"|\"normal\"|over|\n| |\"|bind|1|:|\\[|\\])*") {
        let _ = parse_str(&s, Path::new("fuzz.toml"));
    }
}
