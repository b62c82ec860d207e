//! Rules files: every mistake is reported as `file:line:col: problem` (D4: fail
//! closed), patterns and templates match as documented, the lookup order of
//! [`locate`] holds, and every shipped rules file validates.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rina_core::ApplicationName;
use runtime::config::{
    load, locate, parse_str, AddrPattern, Config, ConfigError, Decision, DefaultPolicy, DifIndex,
    DifKind, Join, Neighbor, Proto,
};

/// A shim and a bootstrapping normal DIF over it; 10 lines, so what follows starts on
/// line 11.
const HEAD: &str = "\
[[dif]]
name = \"udp0\"
type = \"udp\"
bind = \"127.0.0.1:7000\"
[dif.peers]
server = \"127.0.0.1:7001\"
[[dif]]
name = \"net\"
type = \"normal\"
over = \"udp0\"
";

fn ok(text: &str) -> Config {
    parse_str(text, Path::new("good.toml")).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> ConfigError {
    parse_str(text, Path::new("bad.toml")).expect_err("must be rejected")
}

/// Asserts the error's position, that its message contains `needle`, and that its
/// one-line Display is `bad.toml:LINE:COL: message`.
#[track_caller]
fn assert_err(text: &str, line: usize, col: usize, needle: &str) {
    let e = err(text);
    assert_eq!((e.line(), e.col()), (Some(line), Some(col)), "{e}");
    assert!(e.message().contains(needle), "wanted {needle:?} in: {e}");
    assert_eq!(e.path(), Path::new("bad.toml"));
    let shown = e.to_string();
    assert_eq!(shown, format!("bad.toml:{line}:{col}: {}", e.message()));
    assert!(!shown.contains('\n'), "{shown:?}");
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn app_of(d: &Decision<'_>) -> String {
    match d {
        Decision::Rina { app, .. } => app.to_string(),
        other => panic!("no rule matched: {other:?}"),
    }
}

// ---- errors with positions -------------------------------------------------------

#[test]
fn toml_syntax_error() {
    assert_err("[[dif]]\nname = \"x\n", 2, 10, "invalid basic string");
    // toml's multi-line messages are joined into one line.
    assert_err(
        "[settings\n",
        1,
        10,
        "invalid table header; expected `.`, `]`",
    );
}

#[test]
fn unknown_keys() {
    assert_err(
        &format!("{HEAD}colour = \"blue\"\n"),
        11,
        1,
        "unknown field `colour`",
    );
    assert_err("[settings]\nspeed = 3\n", 2, 1, "unknown field `speed`");
    assert_err("x = 1\n", 1, 1, "unknown field `x`");
    assert_err(
        &format!("{HEAD}enroll-via = {{ neighbor = \"server\", via = \"x\" }}\n"),
        11,
        37,
        "unknown field `via`",
    );
    assert_err(
        &format!("{HEAD}bootstrap = true\n[[connect]]\nto = \"*:1\"\ndif = \"net\"\napp = \"a\"\nport = 3\n"),
        16,
        1,
        "unknown field `port`",
    );
}

#[test]
fn missing_required_keys() {
    assert_err("[[dif]]\nname = \"u\"\n", 1, 1, "missing field `type`");
    assert_err("[[dif]]\ntype = \"udp\"\n", 1, 1, "missing field `name`");
    assert_err(
        &format!("{HEAD}bootstrap = true\n[[connect]]\ndif = \"net\"\napp = \"a\"\n"),
        12,
        1,
        "missing field `to`",
    );
    assert_err(
        "[[dif]]\nname = \"u\"\ntype = \"udp\"\n",
        1,
        1,
        "needs `bind",
    );
    assert_err(
        "[[dif]]\nname = \"u\"\ntype = \"udp\"\nbind = \"127.0.0.1:1\"\n[[dif]]\nname = \"n\"\ntype = \"normal\"\nbootstrap = true\n",
        5,
        1,
        "needs `over",
    );
}

#[test]
fn wrong_types() {
    assert_err(
        "[[dif]]\nname = 3\ntype = \"udp\"\n",
        2,
        8,
        "expected a string",
    );
    assert_err(
        "[[dif]]\nname = \"u\"\ntype = \"udp\"\nbind = \"127.0.0.1:1\"\nmtu = \"big\"\n",
        5,
        7,
        "expected an integer",
    );
    assert_err(
        &format!("{HEAD}bootstrap = \"yes\"\n"),
        11,
        13,
        "expected a boolean",
    );
    assert_err(
        "[[dif]]\nname = \"n\"\ntype = \"normal\"\nover = 3\nbootstrap = true\n",
        4,
        8,
        "a DIF name or a list of DIF names",
    );
    assert_err("[settings]\nlinger = 5\n", 2, 10, "expected a string");
}

#[test]
fn rule_names_unknown_or_shim_dif() {
    let t =
        format!("{HEAD}bootstrap = true\n[[connect]]\nto = \"*:1\"\ndif = \"nett\"\napp = \"a\"\n");
    assert_err(&t, 14, 7, "unknown DIF \"nett\" (declared DIFs: udp0, net)");
    let t =
        format!("{HEAD}bootstrap = true\n[[listen]]\non = \"*:1\"\ndif = \"udp0\"\napp = \"a\"\n");
    assert_err(&t, 14, 7, "is a shim DIF; rules must name a normal DIF");
}

#[test]
fn over_names_unknown_later_or_repeated_dif() {
    let shim = "[[dif]]\nname = \"u\"\ntype = \"udp\"\nbind = \"127.0.0.1:1\"\n";
    assert_err(
        &format!("{shim}[[dif]]\nname = \"n\"\ntype = \"normal\"\nover = [\"u\", \"x\"]\nbootstrap = true\n"),
        8,
        14,
        "`over` names \"x\": no such DIF (declared above: u)",
    );
    assert_err(
        &format!(
            "[[dif]]\nname = \"n\"\ntype = \"normal\"\nover = \"u\"\nbootstrap = true\n{shim}"
        ),
        4,
        8,
        "declared below this one",
    );
    assert_err(
        &format!(
            "{shim}[[dif]]\nname = \"n\"\ntype = \"normal\"\nover = [\"n\"]\nbootstrap = true\n"
        ),
        8,
        9,
        "cannot be over itself",
    );
    assert_err(
        &format!("{shim}[[dif]]\nname = \"n\"\ntype = \"normal\"\nover = [\"u\", \"u\"]\nbootstrap = true\n"),
        8,
        14,
        "twice",
    );
    assert_err(
        &format!("{shim}[[dif]]\nname = \"n\"\ntype = \"normal\"\nover = []\nbootstrap = true\n"),
        8,
        8,
        "names no DIF",
    );
}

#[test]
fn invalid_addresses_patterns_and_ports() {
    let rule = |to: &str| {
        format!("{HEAD}bootstrap = true\n[[connect]]\nto = \"{to}\"\ndif = \"net\"\napp = \"a\"\n")
    };
    assert_err(&rule("300.1.2.3:80"), 13, 6, "not an IP address");
    assert_err(&rule("10.0.0.1/8:80"), 13, 6, "host bits set");
    assert_err(&rule("[fd00::1/8]:80"), 13, 6, "host bits set");
    assert_err(&rule("10.0.0.0/33:80"), 13, 6, "prefix length");
    assert_err(&rule("1.2.3.4:0"), 13, 6, "not a port");
    assert_err(&rule("1.2.3.4:65536"), 13, 6, "not a port");
    assert_err(&rule("1.2.3.4:90-80"), 13, 6, "empty");
    assert_err(&rule("1.2.3.4:0-80"), 13, 6, "not a port");
    assert_err(&rule("::1:80"), 13, 6, "brackets");
    assert_err(&rule("1.2.3.4"), 13, 6, "HOST:PORT");
    assert_err(
        "[[dif]]\nname = \"u\"\ntype = \"udp\"\nbind = \"localhost:80\"\n",
        4,
        8,
        "not an IP:PORT",
    );
    assert_err(
        "[[dif]]\nname = \"u\"\ntype = \"udp\"\nbind = \"127.0.0.1:1\"\n[dif.peers]\na = \"1.2.3.4\"\n",
        6,
        5,
        "not an IP:PORT",
    );
    assert_err(
        "[[dif]]\nname = \"u\"\ntype = \"udp\"\nbind = \"127.0.0.1:1\"\n[dif.peers]\na = \"[::1]:5\"\n",
        6,
        5,
        "cannot be reached from a shim bound to IPv4",
    );
    assert_err(
        "[[dif]]\nname = \"u\"\ntype = \"udp\"\nbind = \"127.0.0.1:1\"\n[dif.peers]\na = \"0.0.0.0:5\"\n",
        6,
        5,
        "not an address to send to",
    );
}

#[test]
fn bad_durations() {
    assert_err(
        &format!("{HEAD}bootstrap = true\nkeepalive-interval = \"soon\"\n"),
        12,
        22,
        "not a duration",
    );
    assert_err(
        &format!("{HEAD}bootstrap = true\nenrollment-timeout = \"5\"\n"),
        12,
        22,
        "not a duration",
    );
    assert_err(
        &format!("{HEAD}bootstrap = true\nenrollment-timeout = \"0s\"\n"),
        12,
        22,
        "more than zero",
    );
    assert_err(
        "[settings]\nconnect-timeout = \"1d\"\n",
        2,
        19,
        "not a duration",
    );
    assert_err("[settings]\nlinger = \"s\"\n", 2, 10, "not a duration");
}

/// Durations are bounded (no deadline can overflow a clock, which used to panic the
/// runtime thread): enrollment-timeout and keepalive-interval at most 1 h,
/// connect-timeout and linger at most 24 h; each refusal names its position.
#[test]
fn durations_are_bounded() {
    let dif = |key: &str, v: &str| format!("{HEAD}bootstrap = true\n{key} = \"{v}\"\n");
    for key in ["keepalive-interval", "enrollment-timeout"] {
        let col = key.len() + 4;
        for v in [
            "18446744073709551615s",
            "99999999999999999999999ms",
            "18446744073709551615m",
            "2h",
            "3601s",
            "61m",
        ] {
            assert_err(&dif(key, v), 12, col, "too long: at most 1h");
        }
        assert_err(&dif(key, "0ms"), 12, col, "more than zero");
        let c = ok(&dif(key, "1h"));
        let DifKind::Normal(n) = &c.difs[1].kind else {
            panic!()
        };
        let got = if key == "keepalive-interval" {
            n.keepalive_interval
        } else {
            n.enrollment_timeout
        };
        assert_eq!(got, Duration::from_secs(3600));
    }
    let settings = |key: &str, v: &str| format!("[settings]\n{key} = \"{v}\"\n");
    for key in ["linger", "connect-timeout"] {
        let col = key.len() + 4;
        for v in ["18446744073709551615s", "25h", "86401s", "1441m"] {
            assert_err(&settings(key, v), 2, col, "too long: at most 24h");
        }
        ok(&settings(key, "24h"));
    }
    assert_err(
        &settings("connect-timeout", "0s"),
        2,
        19,
        "connect-timeout must be more than zero",
    );
    let c = ok(&settings("linger", "0s"));
    assert_eq!(c.settings.linger, Duration::ZERO, "no linger is allowed");
    let c = ok(&settings("connect-timeout", "24h"));
    assert_eq!(c.settings.connect_timeout, Duration::from_secs(86400));
    assert_eq!(runtime::config::MAX_DIF_DURATION, Duration::from_secs(3600));
    assert_eq!(
        runtime::config::MAX_SETTINGS_DURATION,
        Duration::from_secs(86400)
    );
}

/// keepalive-misses: 1..=1000, with position (0 would declare every neighbour lost at
/// once; a huge count would never).
#[test]
fn keepalive_misses_are_bounded() {
    let t = |v: &str| format!("{HEAD}bootstrap = true\nkeepalive-misses = {v}\n");
    for v in ["0", "-1", "1001", "9223372036854775807"] {
        assert_err(&t(v), 12, 20, "keepalive-misses must be 1..=1000");
    }
    // Beyond i64: toml's own error, at the same place.
    let e = err(&t("18446744073709551616"));
    assert_eq!((e.line(), e.col()), (Some(12), Some(20)), "{e}");
    ok(&t("1"));
    ok(&t("1000"));
}

/// DIF names travel in enrollment as one length-prefixed string of at most 255 bytes
/// and members answer to them as application names: longer names, `|` and control
/// characters are refused where they are written.
#[test]
fn dif_names_fit_the_wire() {
    let udp = |name: &str| {
        format!("[[dif]]\nname = \"{name}\"\ntype = \"udp\"\nbind = \"127.0.0.1:1\"\n")
    };
    assert_err(&udp(&"d".repeat(256)), 2, 8, "at most 255 bytes");
    // 128 two-byte characters: 256 bytes.
    assert_err(&udp(&"é".repeat(128)), 2, 8, "this one has 256");
    ok(&udp(&"d".repeat(255)));
    assert_err(&udp("a|b"), 2, 8, "'|'");
    assert_err(&udp("a\\tb"), 2, 8, "control character");
    assert_err(&udp(""), 2, 8, "cannot be empty");
    // A normal DIF's name likewise.
    assert_err(
        &format!(
            "{}[[dif]]\nname = \"{}\"\ntype = \"normal\"\nover = \"u\"\nbootstrap = true\n",
            udp("u"),
            "n".repeat(300)
        ),
        6,
        8,
        "at most 255 bytes",
    );
}

/// A member's default name is `<program>.<dif>|<pid>`, cut to what the wire carries.
#[test]
fn default_member_names() {
    use runtime::config::default_member_name;
    let n = default_member_name("nc", "net", 1234);
    assert_eq!(n.to_string(), "nc.net|1234");
    n.validate().unwrap();
    let long = default_member_name(&"p".repeat(200), &"d".repeat(255), 7);
    assert_eq!(long.process_name.len(), 255);
    assert!(long
        .process_name
        .starts_with(&format!("{}.d", "p".repeat(200))));
    long.validate().unwrap();
    let odd = default_member_name("a|b\n", "net", 1);
    assert_eq!(odd.process_name, "a_b_.net");
    odd.validate().unwrap();
    // Cut on a character boundary.
    let wide = default_member_name(&"é".repeat(200), "net", 1);
    assert!(wide.process_name.len() <= 255);
    wide.validate().unwrap();
}

/// `[dif]` (one table) written for `[[dif]]` (an entry of the list) is reported at
/// that line, with what to write, even when toml's own complaint would come later.
#[test]
fn a_table_written_for_a_list_of_tables() {
    let udp = "name = \"u\"\ntype = \"udp\"\nbind = \"127.0.0.1:1\"\n";
    // toml alone reports line 5 here (a duplicate key at the second header).
    assert_err(
        &format!("[dif]\n{udp}[[dif]]\n{udp}"),
        1,
        1,
        "write `[[dif]]`",
    );
    assert_err(
        &format!("# rules\n\n[[dif]]\n{udp}\n  [ dif ] # the next one\n{udp}"),
        8,
        3,
        "`[dif]` is a single table; write `[[dif]]`",
    );
    assert_err(
        &format!("[settings]\nlinger = \"1s\"\n[dif]\n{udp}"),
        3,
        1,
        "write `[[dif]]`",
    );
    assert_err(
        &format!("{HEAD}bootstrap = true\n[connect]\nto = \"*:1\"\ndif = \"net\"\napp = \"a\"\n"),
        12,
        1,
        "write `[[connect]]`",
    );
    assert_err("[listen]\non = \"*:1\"\n", 1, 1, "write `[[listen]]`");
    assert_err("[name]\nmatch = \"x\"\n", 1, 1, "write `[[name]]`");
    assert_err(
        "[dif.peers]\na = \"127.0.0.1:1\"\n",
        1,
        1,
        "belongs to a `[[dif]]` entry",
    );
    assert_err(
        "[[settings]]\nlinger = \"1s\"\n",
        1,
        1,
        "write `[settings]`",
    );
    assert_err(
        "[[default]]\naction = \"deny\"\n",
        1,
        1,
        "write `[default]`",
    );
    // An earlier mistake of another kind is reported first.
    assert_err(
        "[settings]\nlinger = \"1s\n[dif]\nname = \"u\"\n",
        2,
        13,
        "invalid basic string",
    );
}

/// A `[[name]]` template that no host name can fill into a valid name (too long or
/// too many parts even with the shortest fill) is refused at its position; one that
/// only some long host names overfill is accepted (their lookups find no name).
#[test]
fn name_templates_that_can_never_fit() {
    let rule = |app: &str| {
        format!("{HEAD}bootstrap = true\n[[name]]\nmatch = '(.*)\\.rina'\ndif = \"net\"\napp = \"{app}\"\n")
    };
    assert_err(
        &rule(&format!("{}{{1}}", "x".repeat(256))),
        15,
        7,
        "no valid name even from the shortest host name",
    );
    assert_err(
        &rule(&format!("{}{{port}}", "x".repeat(255))),
        15,
        7,
        "longer than 255",
    );
    assert_err(&rule("a|b|c|d|{1}"), 15, 7, "at most four");
    ok(&rule(&format!("{}{{1}}", "x".repeat(255))));
    ok(&rule("{name}-{port}"));
}

#[test]
fn duplicate_dif_names() {
    assert_err(
        &format!("{HEAD}bootstrap = true\n[[dif]]\nname = \"net\"\ntype = \"udp\"\nbind = \"127.0.0.1:2\"\n"),
        13,
        8,
        "DIF \"net\" is declared twice",
    );
}

#[test]
fn bootstrap_and_enroll() {
    assert_err(
        &format!("{HEAD}bootstrap = true\nenroll-via = {{ neighbor = \"server\" }}\n"),
        11,
        13,
        "not both",
    );
    assert_err(HEAD, 7, 1, "needs `bootstrap = true` or `enroll-via");
    assert_err(
        &format!("{HEAD}bootstrap = false\n"),
        7,
        1,
        "needs `bootstrap = true`",
    );
    assert_err(
        &format!("{HEAD}bootstrap = true\naddress = 0\n"),
        12,
        11,
        "address must be",
    );
    assert_err(
        &format!("{HEAD}enroll-via = {{ neighbor = \"server\" }}\naddress = 2\n"),
        12,
        11,
        "does not apply",
    );
}

#[test]
fn enroll_via_checks() {
    assert_err(
        &format!("{HEAD}enroll-via = {{ dif = \"eth0\", neighbor = \"server\" }}\n"),
        11,
        22,
        "`enroll-via.dif` \"eth0\" is not in `over`",
    );
    assert_err(
        &format!("{HEAD}enroll-via = {{ neighbor = \"client\" }}\n"),
        11,
        27,
        "neither IP:PORT nor a peer of DIF \"udp0\"",
    );
    assert_err(
        &format!("{HEAD}enroll-via = {{ neighbor = \"127.0.0.1:0\" }}\n"),
        11,
        27,
        "port 0",
    );
    assert_err(
        &format!("{HEAD}enroll-via = {{ dif = \"udp0\" }}\n"),
        11,
        14,
        "needs `neighbor = \"IP:PORT\"` or a peer's name",
    );
}

#[test]
fn invalid_application_names() {
    assert_err(
        &format!("{HEAD}bootstrap = true\nipcp = \"a|b|c|d|e\"\n"),
        12,
        8,
        "invalid application name",
    );
    assert_err(
        &format!("{HEAD}bootstrap = true\nipcp = \"\"\n"),
        12,
        8,
        "invalid application name",
    );
    let rule = |app: &str, local: &str| {
        format!("{HEAD}bootstrap = true\n[[connect]]\nto = \"*:*\"\ndif = \"net\"\napp = \"{app}\"\n{local}")
    };
    assert_err(&rule("|x", ""), 15, 7, "invalid application name");
    assert_err(&rule("{host}", ""), 15, 7, "only {port} and {addr}");
    assert_err(
        &rule("ok", "local-app = \"\"\n"),
        16,
        13,
        "invalid application name",
    );
    // Seven addresses fit a 255-byte part for IPv4 but not for the longest IPv6 text:
    // rejected at load time so that matching can never fail.
    assert_err(&rule(&"{addr}".repeat(7), ""), 15, 7, "longer than 255");
}

#[test]
fn mtu_and_type() {
    let udp = |rest: &str| {
        format!("[[dif]]\nname = \"u\"\ntype = \"udp\"\nbind = \"127.0.0.1:1\"\n{rest}")
    };
    assert_err(&udp("mtu = 575\n"), 5, 7, "out of range (576..=65000)");
    assert_err(&udp("mtu = 65001\n"), 5, 7, "out of range");
    assert_err(
        "[[dif]]\nname = \"u\"\ntype = \"tcp\"\n",
        3,
        8,
        "unknown DIF type \"tcp\"",
    );
    assert_err(
        &udp("bootstrap = true\n"),
        5,
        13,
        "does not apply to a udp DIF",
    );
    assert_eq!(ok(&udp("mtu = 576\n")).difs.len(), 1);
}

#[test]
fn default_action() {
    assert_err(
        "[default]\naction = \"drop\"\n",
        2,
        10,
        "unknown action \"drop\"",
    );
    assert_err(
        "[default]\nconnect = \"deny\"\n",
        2,
        1,
        "unknown field `connect`",
    );
}

#[test]
fn unreadable_file() {
    let e = load(Path::new("/nonexistent/rules.toml")).unwrap_err();
    assert_eq!((e.line(), e.col()), (None, None));
    assert!(
        e.to_string()
            .starts_with("/nonexistent/rules.toml: cannot read: "),
        "{e}"
    );
}

/// Runs `load` on a thread and gives its result, failing the test if it does not
/// return within 5 s (a FIFO used to block every command before `main`).
fn load_bounded(p: &Path) -> Result<Config, ConfigError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = p.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(load(&p));
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("load returned within 5 s")
}

/// A FIFO, a directory or a device is refused at once, naming the file and what it is.
#[test]
fn only_regular_files_are_read() {
    let t = TempDir::new("fifo");
    let fifo = t.0.join("rules.toml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    for (p, what) in [
        (fifo.as_path(), "is a FIFO (named pipe), not a rules file"),
        (t.0.as_path(), "is a directory, not a rules file"),
        (
            Path::new("/dev/null"),
            "is a character device, not a rules file",
        ),
    ] {
        let e = load_bounded(p).unwrap_err();
        assert_eq!((e.line(), e.col()), (None, None), "{e}");
        assert_eq!(e.to_string(), format!("{}: {}", p.display(), e.message()));
        assert!(e.message().contains(what), "{e}");
    }
    // A symbolic link to a regular file is read.
    let real = t.0.join("real.toml");
    std::fs::write(&real, format!("{HEAD}bootstrap = true\n")).unwrap();
    let link = t.0.join("link.toml");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    load_bounded(&link).unwrap();
}

/// A file that is not UTF-8 is refused with the position of the first bad byte.
#[test]
fn non_utf8_is_positioned() {
    let t = TempDir::new("utf8");
    let p = t.0.join("r.toml");
    let mut bytes = b"[[dif]]\nname = \"u\xC3\xA9".to_vec();
    bytes.extend_from_slice(b"\xFF\"\n");
    std::fs::write(&p, &bytes).unwrap();
    let e = load_bounded(&p).unwrap_err();
    // "é" counts as one column: the bad byte is the 11th character of line 2.
    assert_eq!((e.line(), e.col()), (Some(2), Some(11)), "{e}");
    assert!(e.message().contains("byte 0xFF is not UTF-8"), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("{}:2:11: ", p.display())),
        "{e}"
    );
    std::fs::write(&p, b"\xFE").unwrap();
    let e = load_bounded(&p).unwrap_err();
    assert_eq!((e.line(), e.col()), (Some(1), Some(1)), "{e}");
}

#[test]
fn positions_count_characters_not_bytes() {
    // "é" is two bytes; the column is in characters.
    assert_err(
        "# é\n[[dif]]\nname = \"é\"\ntype = \"x\"\n",
        4,
        8,
        "unknown DIF type",
    );
    assert_err("[[dif]]\nname = \"é\"\nbogus = 1\n", 3, 1, "unknown field");
    assert_err("[[dif]] # é\nname = \"éé\"; \n", 2, 12, "expected newline");
}

// ---- the typed result --------------------------------------------------------------

const FULL: &str = r#"# comment
[[dif]]
name = "udp6"
type = "udp"
bind = "[fd00::1]:7000"
[dif.peers]
b = "[fd00::2]:7000"
a = "[fd00::3]:7000"

[[dif]]
name = "udp4"
type = "udp"
bind = "10.0.0.1:7000"

[[dif]]
name = "net"
type = "normal"
over = ["udp6", "udp4"]
ipcp = "host|1"
enroll-via = { dif = "udp4", neighbor = "10.0.0.2:7000" }
enrollment-timeout = "1500ms"
keepalive-interval = "1m"
keepalive-misses = 7

[[dif]]
name = "top"
type = "normal"
over = "net"
bootstrap = true
address = 42

[[connect]]
to = "127.0.0.1:5000"
dif = "net"
app = "echo"
local-app = "me|2"

[[connect]]
to = "10.0.0.0/8:8000-8099"
dif = "top"
app = "svc-{port}"

[[connect]]
to = "[fd00::/8]:*"
dif = "net"
app = "v6-{addr}-{port}"

[[connect]]
to = "*:443"
dif = "net"
app = "tls@{addr}"

[[listen]]
on = "*:*"
dif = "top"
app = "any"

[default]
action = "deny"

[settings]
connect-timeout = "2s"
linger = "0s"
"#;

#[test]
fn full_file_typed() {
    let c = ok(FULL);
    assert_eq!(c.path, PathBuf::from("good.toml"));
    let names: Vec<&str> = c.difs.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["udp6", "udp4", "net", "top"]);
    let DifKind::Udp(u6) = &c.difs[0].kind else {
        panic!()
    };
    assert_eq!(u6.mtu, 1432, "IPv6 non-loopback default");
    assert_eq!(u6.peers.len(), 2);
    let DifKind::Udp(u4) = &c.difs[1].kind else {
        panic!()
    };
    assert_eq!(u4.mtu, 1452, "IPv4 non-loopback default");
    assert!(u4.peers.is_empty());
    let DifKind::Normal(n) = &c.difs[2].kind else {
        panic!()
    };
    let over: Vec<&str> = n.over.iter().map(|&i| c.dif_name(i)).collect();
    assert_eq!(over, ["udp6", "udp4"]);
    assert_eq!(n.ipcp_name.as_ref().unwrap().to_string(), "host|1");
    assert_eq!(
        n.join,
        Join::Enroll {
            via: DifIndex(1),
            neighbor: Neighbor::Endpoint(sa("10.0.0.2:7000"))
        }
    );
    assert_eq!(n.enrollment_timeout, Duration::from_millis(1500));
    assert_eq!(n.keepalive_interval, Duration::from_secs(60));
    assert_eq!(n.keepalive_misses, 7);
    let DifKind::Normal(top) = &c.difs[3].kind else {
        panic!()
    };
    assert_eq!(top.join, Join::Bootstrap { address: 42 });
    assert_eq!(top.ipcp_name, None);
    assert_eq!(top.enrollment_timeout, Duration::from_secs(5), "default");
    assert_eq!(top.keepalive_interval, Duration::from_secs(2), "default");
    assert_eq!(top.keepalive_misses, 3, "default");
    assert_eq!(c.connect.len(), 4);
    assert_eq!(
        c.connect.iter().map(|r| r.line).collect::<Vec<_>>(),
        [32, 38, 43, 48]
    );
    assert_eq!(
        c.connect[0]
            .target
            .local_app
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("me|2")
    );
    assert_eq!(c.listen[0].line, 53);
    assert_eq!(c.default, DefaultPolicy::Deny);
    assert_eq!(c.settings.connect_timeout, Duration::from_secs(2));
    assert_eq!(c.settings.linger, Duration::ZERO);
    assert!(c.dif("top").is_some() && c.dif("nope").is_none());
}

#[test]
fn defaults_when_sections_are_absent() {
    let c = ok("");
    assert!(c.difs.is_empty() && c.connect.is_empty() && c.listen.is_empty());
    assert_eq!(c.default, DefaultPolicy::Pass);
    assert_eq!(c.settings.connect_timeout, Duration::from_secs(10));
    assert_eq!(c.settings.linger, Duration::from_secs(30));
    assert_eq!(c.match_connect(sa("1.2.3.4:5"), Proto::Tcp), Decision::Pass);
    assert_eq!(c.match_listen(sa("[::1]:5"), Proto::Tcp), Decision::Pass);
    let c = ok(&format!("{HEAD}bootstrap = true\n"));
    let DifKind::Udp(u) = &c.difs[0].kind else {
        panic!()
    };
    assert_eq!(u.mtu, 65000, "loopback default");
    assert_eq!(u.peers, [("server".to_owned(), sa("127.0.0.1:7001"))]);
    let DifKind::Normal(n) = &c.difs[1].kind else {
        panic!()
    };
    assert_eq!(n.join, Join::Bootstrap { address: 1 });
}

#[test]
fn enroll_via_defaults_to_the_only_lower_dif() {
    let c = ok(&format!("{HEAD}enroll-via = {{ neighbor = \"server\" }}\n"));
    let DifKind::Normal(n) = &c.difs[1].kind else {
        panic!()
    };
    assert_eq!(
        n.join,
        Join::Enroll {
            via: DifIndex(0),
            neighbor: Neighbor::Peer {
                name: "server".into(),
                at: sa("127.0.0.1:7001")
            }
        }
    );
    let two = "[[dif]]\nname = \"a\"\ntype = \"udp\"\nbind = \"127.0.0.1:1\"\n[[dif]]\nname = \"b\"\ntype = \"udp\"\nbind = \"127.0.0.1:2\"\n[[dif]]\nname = \"n\"\ntype = \"normal\"\nover = [\"a\", \"b\"]\nenroll-via = { neighbor = \"127.0.0.1:3\" }\n";
    assert_err(two, 13, 14, "needs `dif = ...`");
}

// ---- matching ----------------------------------------------------------------------

#[test]
fn first_match_wins_templates_fill_default_denies() {
    let c = ok(FULL);
    let d = c.match_connect(sa("127.0.0.1:5000"), Proto::Tcp);
    assert_eq!(app_of(&d), "echo");
    let Decision::Rina { rule, .. } = d else {
        panic!()
    };
    assert_eq!((rule.line, c.dif_name(rule.target.dif)), (32, "net"));
    assert_eq!(
        app_of(&c.match_connect(sa("10.9.8.7:8042"), Proto::Tcp)),
        "svc-8042"
    );
    let Decision::Rina { rule, .. } = c.match_connect(sa("10.9.8.7:8000"), Proto::Tcp) else {
        panic!()
    };
    assert_eq!(c.dif_name(rule.target.dif), "top");
    assert_eq!(
        app_of(&c.match_connect(sa("[fd12::9]:22"), Proto::Tcp)),
        "v6-fd12::9-22"
    );
    // Earlier rules win: 10.0.0.1:443 is not in 8000-8099, so the `*:443` rule.
    assert_eq!(
        app_of(&c.match_connect(sa("10.0.0.1:443"), Proto::Tcp)),
        "tls@10.0.0.1"
    );
    // A mapped address fills in as IPv4 text.
    assert_eq!(
        app_of(&c.match_connect(sa("[::ffff:10.0.0.1]:443"), Proto::Tcp)),
        "tls@10.0.0.1"
    );
    assert_eq!(
        app_of(&c.match_connect(sa("[::ffff:10.1.0.1]:8001"), Proto::Tcp)),
        "svc-8001"
    );
    assert_eq!(
        c.match_connect(sa("127.0.0.1:5001"), Proto::Tcp),
        Decision::Deny
    );
    assert_eq!(
        c.match_connect(sa("11.0.0.1:8000"), Proto::Tcp),
        Decision::Deny
    );
    assert_eq!(app_of(&c.match_listen(sa("[::]:1"), Proto::Tcp)), "any");
}

#[test]
fn longest_addresses_fill_valid_names() {
    let c = ok(&format!(
        "{HEAD}bootstrap = true\n[[connect]]\nto = \"*:*\"\ndif = \"net\"\napp = \"{}\"\n",
        "{addr}".repeat(6)
    ));
    for a in [
        "255.255.255.255:65535",
        "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
        "[fe80::1%3]:1",
    ] {
        assert!(
            matches!(c.match_connect(sa(a), Proto::Tcp), Decision::Rina { .. }),
            "{a}"
        );
    }
}

fn m(p: &str, a: &str) -> bool {
    AddrPattern::parse(p)
        .unwrap_or_else(|e| panic!("{e}"))
        .matches(sa(a))
}

#[test]
fn pattern_matching() {
    // IPv4 prefixes.
    assert!(m("10.0.0.0/8:*", "10.255.0.1:1"));
    assert!(!m("10.0.0.0/8:*", "11.0.0.1:1"));
    assert!(m("192.168.1.0/24:80", "192.168.1.77:80"));
    assert!(!m("192.168.1.0/24:80", "192.168.2.77:80"));
    assert!(m("0.0.0.0/0:*", "8.8.8.8:53"));
    assert!(
        !m("0.0.0.0/0:*", "[::1]:53"),
        "an IPv4 pattern does not match IPv6"
    );
    // IPv6 prefixes.
    assert!(m("[fd00::/8]:*", "[fdff::1]:9"));
    assert!(!m("[fd00::/8]:*", "[fe00::1]:9"));
    assert!(m("[::1]:80", "[::1]:80"));
    assert!(m("[::/0]:*", "[2001:db8::1]:1"));
    assert!(
        !m("[::/0]:*", "1.2.3.4:1"),
        "an IPv6 pattern does not match IPv4"
    );
    assert!(!m("[fd00::/8]:*", "10.0.0.1:1"));
    // IPv4-mapped IPv6 matches IPv4 patterns.
    assert!(m("127.0.0.1:5000", "[::ffff:127.0.0.1]:5000"));
    assert!(m("10.0.0.0/8:*", "[::ffff:10.1.2.3]:1"));
    assert!(!m("10.0.0.0/8:*", "[::ffff:11.1.2.3]:1"));
    assert!(!m("127.0.0.1:5000", "[::1]:5000"));
    // Ports.
    assert!(m("*:8000-8099", "1.1.1.1:8000"));
    assert!(m("*:8000-8099", "1.1.1.1:8099"));
    assert!(!m("*:8000-8099", "1.1.1.1:7999"));
    assert!(!m("*:8000-8099", "1.1.1.1:8100"));
    assert!(m("*:1-65535", "[::1]:65535"));
    assert!(m("*:*", "1.1.1.1:0"));
    assert!(m("*:*", "[::1]:0"));
    assert!(!m("*:80", "1.1.1.1:0"));
    // `*` matches both families.
    assert!(m("*:80", "1.2.3.4:80"));
    assert!(m("*:80", "[2001:db8::1]:80"));
}

#[test]
fn patterns_round_trip_through_display() {
    for p in [
        "*:*",
        "1.2.3.4:80",
        "10.0.0.0/8:8000-8099",
        "[::1]:443",
        "[fd00::/8]:*",
        "*:1-65535",
    ] {
        let parsed = AddrPattern::parse(p).unwrap();
        assert_eq!(parsed.to_string(), p);
        assert_eq!(AddrPattern::parse(&parsed.to_string()).unwrap(), parsed);
    }
}

// ---- describe ----------------------------------------------------------------------

#[test]
fn describe_mentions_every_dif_and_rule() {
    let c = ok(FULL);
    let d = c.describe();
    assert_eq!(d, c.describe(), "deterministic");
    for dif in ["udp6", "udp4", "net", "top"] {
        assert!(d.contains(&format!("  {dif}: ")), "{dif} missing in:\n{d}");
    }
    for want in [
        "member <program>.top|<pid> ",
        "(<program>: the basename of the program's argv[0], `node` under `rina node`",
        "UDP shim bound to [fd00::1]:7000 (MTU 1432)",
        "peer a at [fd00::3]:7000",
        "normal DIF over udp6, udp4; member host|1 enrolls through 10.0.0.2:7000 over udp4",
        "bootstraps it (address 42)",
        "line 32: connect 127.0.0.1:5000 (tcp and udp) -> DIF net, application \"echo\" as \"me|2\"",
        "line 38: connect 10.0.0.0/8:8000-8099 (tcp and udp) -> DIF top, application \"svc-{port}\"",
        "line 43: connect [fd00::/8]:* (tcp and udp) -> DIF net",
        "line 48: connect *:443 (tcp and udp) -> DIF net",
        "line 53: listen *:* (tcp and udp) -> DIF top, registers \"any\"",
        "anything else: refused",
        "connect timeout 2s",
    ] {
        assert!(d.contains(want), "{want:?} missing in:\n{d}");
    }
    assert!(d.lines().count() >= 15, "{d}");
}

// ---- locate ------------------------------------------------------------------------

/// A fresh empty directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("rina-config-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn touch(p: &Path) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, "").unwrap();
}

#[test]
fn locate_order() {
    let t = TempDir::new("locate");
    let xdg = t.0.join("xdg");
    let home = t.0.join("home");
    let vars = |pairs: Vec<(&'static str, String)>| {
        move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    };
    let etc_clear = !Path::new("/etc/rina").exists();

    // RINA_CONFIG wins even if the file does not exist (then loading fails: closed).
    let env = vars(vec![
        ("RINA_CONFIG", "/nowhere/x.toml".into()),
        ("XDG_CONFIG_HOME", xdg.display().to_string()),
    ]);
    assert_eq!(locate("prog", &env), Some(PathBuf::from("/nowhere/x.toml")));

    // Nothing anywhere: no rules.
    let env = vars(vec![
        ("RINA_CONFIG", String::new()),
        ("XDG_CONFIG_HOME", xdg.display().to_string()),
    ]);
    if etc_clear {
        assert_eq!(locate("prog", &env), None);
    }

    // default.toml in XDG.
    touch(&xdg.join("rina/default.toml"));
    assert_eq!(locate("prog", &env), Some(xdg.join("rina/default.toml")));
    // A per-program file beats the default.
    touch(&xdg.join("rina/prog.toml"));
    assert_eq!(locate("prog", &env), Some(xdg.join("rina/prog.toml")));
    assert_eq!(locate("other", &env), Some(xdg.join("rina/default.toml")));

    // Without XDG_CONFIG_HOME (or with it empty), ~/.config is used.
    touch(&home.join(".config/rina/prog.toml"));
    let env = vars(vec![
        ("XDG_CONFIG_HOME", String::new()),
        ("HOME", home.display().to_string()),
    ]);
    assert_eq!(
        locate("prog", &env),
        Some(home.join(".config/rina/prog.toml"))
    );
    let env = vars(vec![("HOME", home.display().to_string())]);
    assert_eq!(
        locate("prog", &env),
        Some(home.join(".config/rina/prog.toml"))
    );
    if etc_clear {
        assert_eq!(locate("other", &env), None);
        assert_eq!(locate("prog", &vars(vec![])), None);
    }

    // A directory with the name is not a rules file.
    std::fs::create_dir_all(home.join(".config/rina/dir.toml")).unwrap();
    if etc_clear {
        assert_eq!(locate("dir", &env), None);
    }
}

#[test]
fn load_reads_a_file() {
    let t = TempDir::new("load");
    let p = t.0.join("r.toml");
    std::fs::write(&p, format!("{HEAD}bootstrap = true\n")).unwrap();
    let c = load(&p).unwrap();
    assert_eq!(c.path, p);
    std::fs::write(&p, "[[dif]]\nname = 1\n").unwrap();
    let e = load(&p).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2:8: invalid type: integer `1`, expected a string",
            p.display()
        )
    );
}

// ---- shipped files -----------------------------------------------------------------

/// A copy of the rules file `p` in a new directory, with the key files and trust
/// directories its `[dif.security]` sections name (relative paths) made there: the
/// shipped examples name keys that their demos make, and no private key is shipped.
fn with_its_keys(p: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(p).unwrap();
    std::fs::write(dir.path().join("rules.toml"), &text).unwrap();
    let quoted = |l: &str, key: &str| {
        let v = l.strip_prefix(key)?.trim().strip_prefix('=')?.trim();
        Some(v.trim_matches('"').to_owned())
    };
    let public = runtime::keys::PrivateKey::generate().public();
    for line in text.lines() {
        if let Some(k) = quoted(line, "key") {
            let f = dir.path().join(k);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            runtime::keys::PrivateKey::generate().save(&f).unwrap();
        } else if let Some(t) = quoted(line, "trust-dir") {
            let d = dir.path().join(t);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("peer.pub"), public.to_string()).unwrap();
        }
    }
    dir
}

#[test]
fn every_shipped_rules_file_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut seen = Vec::new();
    for dir in ["config", "examples"] {
        let mut stack = vec![root.join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "toml") {
                    let copy = with_its_keys(&p);
                    let c = load(&copy.path().join("rules.toml"))
                        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                    assert!(!c.describe().is_empty());
                    seen.push(p);
                }
            }
        }
    }
    assert!(seen.len() >= 4, "found only {seen:?}");
}

#[test]
fn netcat_example_pair_agrees() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/netcat");
    let server = load(&root.join("server.toml")).unwrap();
    let client = load(&root.join("client.toml")).unwrap();
    let addr = sa("127.0.0.1:5000");
    let s = app_of(&server.match_listen(addr, Proto::Tcp));
    let c = app_of(&client.match_connect(addr, Proto::Tcp));
    assert_eq!((s.as_str(), c.as_str()), ("nc-server", "nc-server"));
    let (DifKind::Udp(su), DifKind::Udp(cu)) = (&server.difs[0].kind, &client.difs[0].kind) else {
        panic!()
    };
    assert_eq!(cu.peers, [("server".to_owned(), su.bind)]);
    assert_eq!(server.match_connect(addr, Proto::Tcp), Decision::Pass);
}

// ---- never panics ------------------------------------------------------------------

proptest::proptest! {
    #[test]
    fn parse_str_never_panics_on_any_text(s in "\\PC{0,200}") {
        if let Err(e) = parse_str(&s, Path::new("fuzz.toml")) {
            proptest::prop_assert!(!e.to_string().contains('\n'), "{}", e);
            let line = e.line().unwrap_or(0);
            proptest::prop_assert!(line >= 1 && line <= s.split('\n').count(), "{}", e);
        }
    }

    #[test]
    fn parse_str_never_panics_on_rule_like_text(
        s in "(\\[\\[dif\\]\\]|\\[\\[connect\\]\\]|name|type|=|\"udp\"|\"normal\"|over|to|dif|app|\n| |\"|bind|1|:|\\[|\\]|\\{|\\}|é|bootstrap|true|enroll-via|neighbor|,)*"
    ) {
        let _ = parse_str(&s, Path::new("fuzz.toml"));
    }

    #[test]
    fn host_ports_never_panic(s in "\\PC{0,60}") {
        let _ = AddrPattern::parse(&s);
    }

    #[test]
    fn host_ports_like_text_never_panics(
        s in "[\\[\\]0-9a-f:./*\\-]{0,50}",
        a in proptest::arbitrary::any::<SocketAddr>(),
    ) {
        if let Ok(p) = AddrPattern::parse(&s) {
            let _ = p.matches(a);
            proptest::prop_assert_eq!(AddrPattern::parse(&p.to_string()), Ok(p));
        }
    }

    #[test]
    fn matched_templates_always_fill(port in 1u16.., a in proptest::arbitrary::any::<SocketAddr>()) {
        let c = ok(&format!(
            "{HEAD}bootstrap = true\n[[connect]]\nto = \"*:*\"\ndif = \"net\"\napp = \"x{{addr}}-{{port}}|{port}\"\n"
        ));
        let matched = matches!(c.match_connect(a, Proto::Tcp), Decision::Rina { .. });
        proptest::prop_assert!(matched, "{}", a);
    }
}

// ---- proto ---------------------------------------------------------------------------

/// `proto` restricts a rule to stream (tcp) or datagram (udp) sockets; a wrong value
/// names its line and column.
#[test]
fn proto_restricts_a_rule_to_one_kind_of_socket() {
    let text = format!(
        "{HEAD}bootstrap = true\n[[connect]]\nto = \"127.0.0.1:53\"\ndif = \"net\"\napp = \"dns-udp\"\nproto = \"udp\"\n\n[[connect]]\nto = \"127.0.0.1:53\"\ndif = \"net\"\napp = \"dns-tcp\"\nproto = \"tcp\"\n\n[[listen]]\non = \"*:53\"\ndif = \"net\"\napp = \"dns\"\nproto = \"udp\"\n"
    );
    let c = ok(&text);
    assert_eq!(
        app_of(&c.match_connect(sa("127.0.0.1:53"), Proto::Udp)),
        "dns-udp"
    );
    assert_eq!(
        app_of(&c.match_connect(sa("127.0.0.1:53"), Proto::Tcp)),
        "dns-tcp"
    );
    assert_eq!(app_of(&c.match_listen(sa("[::]:53"), Proto::Udp)), "dns");
    assert_eq!(c.match_listen(sa("[::]:53"), Proto::Tcp), Decision::Pass);
    assert!(c.describe().contains("(udp only)"), "{}", c.describe());
    let bad = text.replace("proto = \"tcp\"", "proto = \"sctp\"");
    assert_err(&bad, 22, 9, "unknown proto \"sctp\"");
}

// ---- name rules ------------------------------------------------------------------------

/// `[[name]]`: host names matching a regular expression fill an application-name
/// template; a bad expression or a template field no group fills names its line and
/// column.
#[test]
fn name_rules_resolve_and_say_what_is_wrong() {
    let text = format!(
        "{HEAD}bootstrap = true\n[[name]]\nmatch = '^(?P<app>[a-z0-9-]+)\\.rina$'\ndif = \"net\"\napp = \"{{app}}\"\n\n[[name]]\nmatch = '([a-z]+)\\.svc'\ndif = \"net\"\napp = \"svc-{{1}}-{{port}}\"\nproto = \"tcp\"\n"
    );
    let c = ok(&text);
    let matched = |h: &str| c.match_name(h).map(|(i, t)| (i, t.as_str().to_owned()));
    assert_eq!(matched("echo.rina"), Some((0, "echo".to_owned())));
    assert_eq!(matched("ECHO.rina"), Some((0, "echo".to_owned())));
    assert_eq!(matched("web.svc"), Some((1, "svc-web-{port}".to_owned())));
    assert_eq!(c.match_name("example.com"), None);
    assert_eq!(c.match_name("a.web.svc"), None, "the whole name must match");
    assert!(
        c.describe()
            .contains("host names matching \"^(?P<app>[a-z0-9-]+)\\\\.rina$\""),
        "{}",
        c.describe()
    );
    assert_err(
        &text.replace("[a-z]+)\\.svc", "[a-z+)\\.svc"),
        18,
        9,
        "invalid regular expression",
    );
    assert_err(
        &text.replace("svc-{1}", "svc-{2}"),
        20,
        7,
        "{2} is not filled in",
    );
}

// ---- fork children -----------------------------------------------------------------

/// A fork child's rules: free UDP ports, the parent's bootstrap DIF joined through the
/// parent's endpoint, explicit member names made unique by pid.
#[test]
fn fork_child_rules_join_through_the_parent() {
    let c = ok(&format!("{HEAD}bootstrap = true\nipcp = \"server.net\"\n"));
    let child = c.for_fork_child(4242);
    let DifKind::Udp(u) = &child.difs[0].kind else {
        panic!()
    };
    assert_eq!(u.bind, sa("127.0.0.1:0"));
    let DifKind::Normal(n) = &child.difs[1].kind else {
        panic!()
    };
    assert_eq!(
        n.join,
        Join::Enroll {
            via: DifIndex(0),
            neighbor: Neighbor::Endpoint(sa("127.0.0.1:7000"))
        }
    );
    assert_eq!(n.ipcp_name.as_ref().unwrap().to_string(), "server.net|4242");
    // An enrollee keeps its neighbour.
    let e = ok(&format!("{HEAD}enroll-via = {{ neighbor = \"server\" }}\n"));
    let DifKind::Normal(n) = &e.for_fork_child(1).difs[1].kind else {
        panic!()
    };
    assert_eq!(
        n.join,
        Join::Enroll {
            via: DifIndex(0),
            neighbor: Neighbor::Peer {
                name: "server".into(),
                at: sa("127.0.0.1:7001")
            }
        }
    );
}

/// The example in README.md is a valid rules file with every kind of entry.
#[test]
fn the_readme_example_parses() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let block = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains("[[connect]]"))
        .expect("the complete rules example in README.md");
    let c = parse_str(block, Path::new("README.md")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.difs.len(), 2);
    assert_eq!((c.connect.len(), c.listen.len(), c.names.len()), (1, 1, 1));
    assert_eq!(
        c.match_name("echo.rina")
            .map(|(_, app)| app.as_str().to_owned()),
        Some("echo".into())
    );
}

// ---- Ethernet shims ------------------------------------------------------------------

const ETH: &str = "[[dif]]\nname = \"eth\"\ntype = \"ethernet\"\ninterface = \"veth0\"\n[[dif]]\nname = \"net\"\ntype = \"normal\"\nover = \"eth\"\n";

/// An Ethernet shim names its interface; a normal DIF enrolls over it through a name
/// found by broadcast (by default the DIF's own, which any member answers to).
#[test]
fn ethernet_shims() {
    let c = ok(&format!("{ETH}enroll-via = {{ dif = \"eth\" }}\n"));
    assert_eq!(
        c.difs[0].kind,
        DifKind::Ethernet(runtime::config::EthShimConfig {
            interface: "veth0".into()
        })
    );
    let DifKind::Normal(n) = &c.difs[1].kind else {
        panic!()
    };
    assert_eq!(
        n.join,
        Join::Enroll {
            via: DifIndex(0),
            neighbor: Neighbor::Name(ApplicationName::new("net"))
        }
    );
    let c = ok(&format!(
        "{ETH}enroll-via = {{ neighbor = \"server.net\" }}\n"
    ));
    let DifKind::Normal(n) = &c.difs[1].kind else {
        panic!()
    };
    assert_eq!(
        n.join,
        Join::Enroll {
            via: DifIndex(0),
            neighbor: Neighbor::Name("server.net".parse().unwrap())
        }
    );
    assert!(
        c.describe()
            .contains("eth: Ethernet shim on interface veth0"),
        "{}",
        c.describe()
    );
    // A fork child keeps the interface (it gets its own demultiplexing id).
    assert_eq!(c.for_fork_child(7).difs[0].kind, c.difs[0].kind);
    let no_if = "[[dif]]\nname = \"eth\"\ntype = \"ethernet\"\n";
    assert_err(no_if, 1, 1, "needs `interface = \"<name>\"`");
    assert_err(
        &format!("{no_if}interface = \"a/b\"\n"),
        4,
        13,
        "not an interface name",
    );
    assert_err(
        &format!("{no_if}interface = \"e0\"\nmtu = 9000\n"),
        5,
        7,
        "the interface's MTU is used",
    );
    assert_err(
        &format!("{no_if}interface = \"e0\"\nbind = \"127.0.0.1:1\"\n"),
        5,
        8,
        "does not apply",
    );
    assert_err(
        &format!("{ETH}enroll-via = {{ neighbor = \"a|b|c|d|e\" }}\n"),
        9,
        27,
        "invalid application name",
    );
}

/// The Ethernet snippet in README.md is valid inside a rules file.
#[test]
fn the_readme_ethernet_snippet_parses() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let snippet = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains("type = \"ethernet\""))
        .expect("the Ethernet snippet in README.md");
    let text = format!("{snippet}[[dif]]\nname = \"net\"\ntype = \"normal\"\nover = [\"eth\"]\nenroll-via = {{ dif = \"eth\" }}\n");
    let c = parse_str(&text, Path::new("README.md")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.ethernet_interfaces(), ["eth0"]);
}

/// `neighbors`: more adjacencies to keep, in the form of `enroll-via`.
#[test]
fn neighbors_to_keep() {
    let c = ok(&format!(
        "{HEAD}enroll-via = {{ neighbor = \"server\" }}\nneighbors = [{{ neighbor = \"127.0.0.1:7009\" }}, {{ dif = \"udp0\", neighbor = \"server\" }}]\n"
    ));
    let DifKind::Normal(n) = &c.difs[1].kind else {
        panic!()
    };
    assert_eq!(
        n.neighbors,
        [
            (DifIndex(0), Neighbor::Endpoint(sa("127.0.0.1:7009"))),
            (
                DifIndex(0),
                Neighbor::Peer {
                    name: "server".into(),
                    at: sa("127.0.0.1:7001")
                }
            )
        ]
    );
    assert_err(
        &format!("{HEAD}bootstrap = true\nneighbors = [{{ neighbor = \"nobody\" }}]\n"),
        12,
        27,
        "neither IP:PORT nor a peer",
    );
    assert_err(
        "[[dif]]\nname = \"u\"\ntype = \"udp\"\nbind = \"127.0.0.1:1\"\nneighbors = []\n",
        5,
        13,
        "does not apply",
    );
}

/// The relays and recursion example in README.md is a valid rules file: a DIF over a
/// DIF, with kept adjacencies.
#[test]
fn the_readme_recursion_example_parses() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let block = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains("over = [\"backbone\"]"))
        .expect("the recursion example in README.md");
    // Its DIFs are secured: their key files and trust directories, made here.
    let dir = tempfile::tempdir().unwrap();
    for dif in ["backbone", "apps"] {
        let key = runtime::keys::PrivateKey::generate();
        key.save(&dir.path().join(format!("{dif}.key"))).unwrap();
        let trusted = dir.path().join(format!("{dif}.trusted"));
        std::fs::create_dir(&trusted).unwrap();
        std::fs::write(trusted.join("self.pub"), key.public().to_string()).unwrap();
    }
    let block = block.replace("/etc/rina/", &format!("{}/", dir.path().display()));
    let c = parse_str(&block, Path::new("README.md")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.difs.len(), 3);
    let DifKind::Normal(apps) = &c.difs[2].kind else {
        panic!("apps is a normal DIF")
    };
    assert_eq!(apps.over, [DifIndex(1)]);
    assert_eq!(c.dif_name(apps.over[0]), "backbone");
    // Over a normal DIF the neighbour is, by default, whoever serves the DIF's name.
    assert_eq!(
        apps.join,
        Join::Enroll {
            via: DifIndex(1),
            neighbor: Neighbor::Name(ApplicationName::new("apps")),
        }
    );
    let DifKind::Normal(backbone) = &c.difs[1].kind else {
        panic!("backbone is a normal DIF")
    };
    assert_eq!(backbone.neighbors.len(), 1);
    for n in [backbone, apps] {
        let sec = n.security.as_ref().expect("secured");
        assert_eq!(sec.trusted().unwrap().len(), 1);
    }
}

/// The cheap check every connect hook makes first: a connect rule's pattern, a
/// host-name rule's synthetic address, or a default that denies; no other address.
#[test]
fn connects_that_may_match_a_rule() {
    let base = format!("{HEAD}bootstrap = true\n");
    let c = ok(&format!(
        "{base}[[connect]]\nto = \"127.0.0.1:5000\"\ndif = \"net\"\napp = \"a\"\nproto = \"udp\"\n"
    ));
    let at = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert!(
        c.connect_may_match(at("127.0.0.1:5000")),
        "whatever the protocol"
    );
    assert!(!c.connect_may_match(at("127.0.0.1:5001")));
    assert!(!c.connect_may_match(at("127.64.0.9:80")), "no name rules");
    let names = ok(&format!(
        "{base}[[name]]\nmatch = 'x'\ndif = \"net\"\napp = \"x\"\n"
    ));
    assert!(names.connect_may_match(at("127.64.0.9:80")));
    assert!(names.connect_may_match(at("[::ffff:127.64.0.9]:80")));
    assert!(!names.connect_may_match(at("10.0.0.1:80")));
    let deny = ok(&format!("{base}[default]\naction = \"deny\"\n"));
    assert!(deny.connect_may_match(at("10.0.0.1:80")));
}
