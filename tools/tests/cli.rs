//! The `rina` command's own failures: each says what is wrong and exits non-zero
//! without running anything.

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
