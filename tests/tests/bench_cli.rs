//! `rina-bench --help` prints its usage and runs nothing; an argument it does not know
//! is refused with the usage, rather than a benchmark of several minutes starting.

use std::time::{Duration, Instant};

use rina_e2e::*;

#[test]
fn help_prints_usage_and_unknown_arguments_are_refused() {
    let bench = bin_dir().join("rina-bench");
    let start = Instant::now();
    let limit = Duration::from_secs(10);
    let out = output_within(std::process::Command::new(&bench).arg("--help"), limit);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("usage: rina-bench"));
    let out = output_within(std::process::Command::new(&bench).arg("--runs"), limit);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unexpected argument \"--runs\""));
    assert!(start.elapsed() < Duration::from_secs(10), "nothing was run");
}
