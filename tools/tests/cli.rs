//! The `rina` command's own failures and accounts: each failure says what is wrong and
//! exits non-zero without running anything (a missing program or library, a rules file,
//! a statically linked program, a process with no stack); `rina check` names the
//! members a process will be.

use std::process::Command;

fn rina() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rina"))
}

fn good_rules(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("ok.toml");
    std::fs::write(
        &p,
        "[[dif]]\nname = \"u\"\ntype = \"udp\"\nbind = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    p
}

#[test]
fn a_missing_program_exits_127() {
    let dir = tempfile::tempdir().unwrap();
    let out = rina()
        .arg("run")
        .arg("-c")
        .arg(good_rules(dir.path()))
        .args(["--lib", "/bin/true", "--", "/nonexistent/program"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot run /nonexistent/program"), "{err}");
}

#[test]
fn a_missing_library_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = rina()
        .arg("run")
        .arg("-c")
        .arg(good_rules(dir.path()))
        .args(["--lib", "/nonexistent/lib.so", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/lib.so does not exist"), "{err}");
}

#[test]
fn a_missing_rules_file_is_named() {
    let out = rina()
        .args(["check", "/nonexistent/rules.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/rules.toml: cannot read"),
        "{err}"
    );
}

/// A statically linked program: built here with `gcc -static` if that works, else a
/// static busybox if the system has one (per `file`). `None` with the reason if none.
fn static_program(dir: &std::path::Path) -> Result<std::path::PathBuf, String> {
    let src = dir.join("s.c");
    std::fs::write(&src, "int main(void) { return 0; }\n").unwrap();
    let exe = dir.join("static-prog");
    let built = Command::new("gcc")
        .arg("-static")
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .output();
    if built.as_ref().is_ok_and(|o| o.status.success()) {
        return Ok(exe);
    }
    let why = match built {
        Ok(o) => format!("gcc -static failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => format!("no gcc: {e}"),
    };
    for candidate in ["/bin/busybox", "/usr/bin/busybox", "/bin/busybox.static"] {
        let described = Command::new("file").args(["-L", candidate]).output();
        if described.is_ok_and(|o| {
            let t = String::from_utf8_lossy(&o.stdout).into_owned();
            t.contains("statically linked") || t.contains("static-pie linked")
        }) {
            return Ok(candidate.into());
        }
    }
    Err(format!("{why}; and no static busybox"))
}

/// `rina run` of a statically linked program (nothing can be preloaded, so it would go
/// over TCP/IP) refuses to run it and says why and what to do; a dynamically linked
/// program runs.
#[test]
fn a_static_program_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let exe = match static_program(dir.path()) {
        Ok(p) => p,
        Err(why) => {
            println!("SKIPPED: no statically linked program to try: {why}");
            return;
        }
    };
    let out = rina()
        .arg("run")
        .arg("-c")
        .arg(good_rules(dir.path()))
        .args(["--lib", "/bin/true", "--"])
        .arg(&exe)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for want in [
        "is statically linked: nothing can be preloaded into it",
        "would go over TCP/IP, not RINA",
        "section \"Limits\"",
        "not running it: use a dynamically linked build",
    ] {
        assert!(err.contains(want), "{want:?} missing in: {err}");
    }
    // Found through PATH as well.
    let out = rina()
        .arg("run")
        .arg("-c")
        .arg(good_rules(dir.path()))
        .args(["--lib", "/bin/true", "--"])
        .arg(exe.file_name().unwrap())
        .env("PATH", exe.parent().unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("statically linked"));
    // A dynamically linked program runs (the loader ignores a library it cannot load).
    let out = rina()
        .arg("run")
        .arg("-c")
        .arg(good_rules(dir.path()))
        .args(["--lib", "/bin/true", "--", "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("statically linked"), "{err}");
}

/// `rina check` names each member as the runtime will: `<program>.<dif>|<pid>` by
/// default, or the `ipcp` the rules give.
#[test]
fn check_names_the_members() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("members.toml");
    std::fs::write(
        &p,
        "[[dif]]\nname = \"udp0\"\ntype = \"udp\"\nbind = \"127.0.0.1:0\"\n\
         [[dif]]\nname = \"net\"\ntype = \"normal\"\nover = \"udp0\"\nbootstrap = true\n\
         [[dif]]\nname = \"apps\"\ntype = \"normal\"\nover = \"net\"\nipcp = \"edge|7\"\nbootstrap = true\n",
    )
    .unwrap();
    let out = rina().arg("check").arg(&p).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for want in [
        "net: normal DIF over udp0; member <program>.net|<pid> bootstraps it",
        "apps: normal DIF over net; member edge|7 bootstraps it",
        "<program>: the basename of the program's argv[0], `node` under `rina node`",
    ] {
        assert!(text.contains(want), "{want:?} missing in:\n{text}");
    }
}

/// `rina ctl PID` for a process with no stack, and for no process at all, says so and
/// exits 1 (not a connection error).
#[test]
fn ctl_of_a_process_without_a_stack() {
    let me = std::process::id();
    let out = rina().args(["ctl", &me.to_string()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with(&format!("rina ctl: no RINA stack in process {me} (")),
        "{err}"
    );
    assert!(!err.contains("Connection refused"), "{err}");
    // A process that has exited and been reaped.
    let mut child = Command::new("true").spawn().unwrap();
    let gone = child.id();
    child.wait().unwrap();
    if !std::path::Path::new(&format!("/proc/{gone}")).exists() {
        let out = rina().args(["ctl", &gone.to_string()]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.trim_end(), format!("rina ctl: no such process {gone}"));
    }
    // Beyond any pid there can be (PID_MAX_LIMIT is 2^22).
    let out = rina().args(["ctl", "4194305"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end(), "rina ctl: no such process 4194305");
}
