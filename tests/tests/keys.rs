//! Member keys (issue 11): `rina keygen` writes a private key file readable by its
//! owner only and prints the public key; `rina pubkey` prints it again; a key file
//! others can read is refused, as ssh refuses one.

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use rina_e2e::*;

fn rina_cmd(args: &[&str]) -> std::process::Output {
    output_within(
        Command::new(rina()).args(args).stdin(Stdio::null()),
        Duration::from_secs(20),
    )
}

#[test]
fn keygen_writes_a_private_key_only_its_owner_reads() {
    let dir = temp_dir();
    let key = dir.path().join("member.key");
    let key = key.to_str().unwrap();
    let out = rina_cmd(&["keygen", key]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(public.len(), 44, "base64 of 32 bytes: {public}");
    let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The private key is not what was printed.
    let private = std::fs::read_to_string(key).unwrap();
    assert_ne!(private.trim(), public);
    // pubkey derives the same public key.
    let out = rina_cmd(&["pubkey", key]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), public);
    // An existing key is never replaced.
    let out = rina_cmd(&["keygen", key]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(key).unwrap(), private);
    // Readable by others: refused, with the way out.
    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = rina_cmd(&["pubkey", key]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("too open") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!err.contains(private.trim()), "the key is never printed");
}
