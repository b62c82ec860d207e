//! `[dif.security]` in the rules (issue 11): every mistake refused with its position,
//! key files checked as ssh checks them, paths relative to the rules file.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use runtime::config::{parse_str, DifKind};
use runtime::keys::PrivateKey;

/// A UDP shim and a bootstrap normal DIF `net`, then `security` (a `[dif.security]`
/// body) on line 11 onwards.
fn rules(security: &str) -> String {
    format!(
        "[[dif]]\nname = \"udp\"\ntype = \"udp\"\nbind = \"127.0.0.1:7000\"\n\n\
         [[dif]]\nname = \"net\"\ntype = \"normal\"\nover = [\"udp\"]\nbootstrap = true\n\
         [dif.security]\n{security}"
    )
}

/// The error for `text` read as `dir/rules.toml`: "line:col: message".
fn error(dir: &Path, text: &str) -> String {
    let e = parse_str(text, &dir.join("rules.toml")).expect_err("must be refused");
    format!(
        "{}:{}: {}",
        e.line().unwrap_or(0),
        e.col().unwrap_or(0),
        e.message()
    )
}

#[test]
fn every_mistake_is_refused_at_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = PrivateKey::generate();
    key.save(&d.join("me.key")).unwrap();
    let other = PrivateKey::generate().public().to_string();
    let trust = format!("trust = [{other:?}]");
    // A missing key file, at its position.
    let e = error(d, &rules(&format!("key = \"missing.key\"\n{trust}\n")));
    assert!(
        e.starts_with("12:7: ") && e.contains("missing.key") && e.contains("No such file"),
        "{e}"
    );
    // A key file others can read: refused as ssh does, with the way out.
    std::fs::write(d.join("open.key"), std::fs::read(d.join("me.key")).unwrap()).unwrap();
    std::fs::set_permissions(d.join("open.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = error(d, &rules(&format!("key = \"open.key\"\n{trust}\n")));
    assert!(
        e.starts_with("12:7: ") && e.contains("too open") && e.contains("chmod 600"),
        "{e}"
    );
    // Not a key.
    std::fs::write(d.join("junk.key"), "not a key\n").unwrap();
    std::fs::set_permissions(d.join("junk.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = error(d, &rules(&format!("key = \"junk.key\"\n{trust}\n")));
    assert!(
        e.starts_with("12:7: ") && e.contains("not a private key"),
        "{e}"
    );
    // A trusted key that is no key, at its position in the list.
    let e = error(
        d,
        &rules(&format!("key = \"me.key\"\ntrust = [{other:?}, \"abc\"]\n")),
    );
    assert!(
        e.starts_with("13:58: ") && e.contains("not a public key"),
        "{e}"
    );
    // Trusting no one.
    let e = error(d, &rules("key = \"me.key\"\n"));
    assert!(e.contains("trusts no one"), "{e}");
    // No key.
    let e = error(d, &rules(&format!("{trust}\n")));
    assert!(e.contains("needs `key"), "{e}");
    // A trust directory with a file that holds no key.
    std::fs::create_dir(d.join("trusted")).unwrap();
    std::fs::write(d.join("trusted/bad.pub"), "xyz\n").unwrap();
    let e = error(d, &rules("key = \"me.key\"\ntrust-dir = \"trusted\"\n"));
    assert!(e.starts_with("13:13: ") && e.contains("bad.pub"), "{e}");
    // A trust directory, or a key file in it, that others can write.
    std::fs::remove_file(d.join("trusted/bad.pub")).unwrap();
    std::fs::write(d.join("trusted/peer.pub"), format!("{other}\n")).unwrap();
    let good = rules("key = \"me.key\"\ntrust-dir = \"trusted\"\n");
    parse_str(&good, &d.join("rules.toml")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(d.join("trusted"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = error(d, &good);
    assert!(
        e.starts_with("13:13: ") && e.contains("others can change it"),
        "{e}"
    );
    std::fs::set_permissions(d.join("trusted"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        d.join("trusted/peer.pub"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let e = error(d, &good);
    assert!(
        e.contains("peer.pub") && e.contains("others can change it"),
        "{e}"
    );
    // With a good key and trust, then `extra`: the error.
    let refused = |extra: &str| error(d, &rules(&format!("key = \"me.key\"\n{trust}\n{extra}\n")));
    // A pin naming both or neither.
    let e = refused(&format!("pins = [{{ key = {other:?} }}]"));
    assert!(e.contains("a pin names either"), "{e}");
    // A names entry that says nothing.
    let e = refused("names = [{ name = \"x\" }]");
    assert!(e.contains("who registers"), "{e}");
    // Limits.
    let e = refused("rekey-after = \"0s\"");
    assert!(
        e.starts_with("14:15: ") && e.contains("more than zero"),
        "{e}"
    );
    let e = refused("rekey-after-messages = 3");
    assert!(e.contains("16..=2^32"), "{e}");
    // A shim DIF is not secured itself.
    let shim = "[[dif]]\nname = \"udp\"\ntype = \"udp\"\nbind = \"127.0.0.1:7000\"\n[dif.security]\nkey = \"me.key\"\n";
    let e = error(d, shim);
    assert!(e.contains("does not apply"), "{e}");
}

#[test]
fn a_good_section_reads_its_files_from_the_rules_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = PrivateKey::generate();
    key.save(&d.join("me.key")).unwrap();
    PrivateKey::generate().save(&d.join("dif.psk")).unwrap();
    std::fs::create_dir(d.join("trusted")).unwrap();
    let peer = PrivateKey::generate().public();
    std::fs::write(d.join("trusted/peer.pub"), format!("{peer}\n")).unwrap();
    let text = rules(&format!(
        "key = \"me.key\"\ntrust-dir = \"trusted\"\nsecret = \"dif.psk\"\nrekey-after = \"30s\"\n\
         names = [{{ name = \"web*\", keys = [\"{peer}\"] }}, {{ name = \"db\", allocate = [\"{peer}\"] }}]\n\
         pins = [{{ ipcp = \"peer.net\", key = \"{peer}\" }}, {{ address = 7, key = \"{peer}\" }}]\n"
    ));
    let c = parse_str(&text, &d.join("rules.toml")).unwrap_or_else(|e| panic!("{e}"));
    let DifKind::Normal(n) = &c.difs[1].kind else {
        panic!("net is normal")
    };
    let s = n.security.as_ref().expect("secured");
    assert_eq!(s.public, key.public());
    assert_eq!(s.key, d.join("me.key"));
    assert_eq!(s.trusted().unwrap().into_iter().collect::<Vec<_>>(), [peer]);
    assert_eq!(s.rekey_after, std::time::Duration::from_secs(30));
    assert_eq!(s.pinned_addresses, [(7, peer)]);
    let loaded = s.load().unwrap();
    assert!(loaded.trusts(peer.as_bytes()));
    assert!(loaded
        .access
        .may_register(&"web1".parse().unwrap(), peer.as_bytes()));
    assert!(!loaded
        .access
        .may_register(&"web1".parse().unwrap(), key.public().as_bytes()));
    assert!(loaded.access.restricts_allocation(&"db".parse().unwrap()));
    assert!(!loaded
        .access
        .may_allocate(&"db".parse().unwrap(), key.public().as_bytes()));
    let line = s.describe("net");
    assert!(
        line.contains("trusts 1 key(s): ") && line.contains("with a DIF secret"),
        "{line}"
    );
    // Never the private key.
    let private = std::fs::read_to_string(d.join("me.key")).unwrap();
    assert!(!line.contains(private.trim()), "{line}");
}
