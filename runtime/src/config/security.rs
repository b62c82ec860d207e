//! A secured DIF's rules (issue 11): this member's key, whom it trusts (keys listed,
//! a directory of them), the DIF's secret, and when sessions are replaced.
//!
//! ```toml
//! [dif.security]
//! key = "net.key"                 # this member's private key (rina keygen), 0600
//! trust = ["<base64 public key>"] # members accepted ...
//! trust-dir = "trusted"           # ... and every key file here (one key each)
//! secret = "net.psk"              # optional: the DIF's secret (32 bytes, 0600)
//! rekey-after = "2m"              # a new session after this long (default 2m)
//! names = [{ name = "web*", keys = ["<key>"], allocate = ["<key>"] }]  # who registers, who connects
//! pins = [{ ipcp = "server.net", key = "<key>" }, { address = 1, key = "<key>" }]
//! ```
//!
//! Relative paths are from the rules file's directory. Files are read when the rules
//! load (so `rina check` refuses a missing, malformed or too-open file) and again when
//! the stack starts; the trust directory is read again while the stack runs, so a key
//! removed from it is refused from then on.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::keys::{read_trust_dir, KeyError, PrivateKey, PublicKey};

/// Who may register names matching a pattern, and allocate flows to them.
#[derive(Clone, Debug, PartialEq)]
pub struct NameAccess {
    /// The pattern (`*` matches any run of characters).
    pub pattern: String,
    /// The keys that alone may register the names (`None`: any trusted member).
    pub register: Option<Vec<PublicKey>>,
    /// The keys that alone may allocate flows to them (`None`: any trusted member).
    pub allocate: Option<Vec<PublicKey>>,
}

/// A secured DIF's rules.
#[derive(Clone, Debug, PartialEq)]
pub struct SecurityConfig {
    /// This member's private key file.
    pub key: PathBuf,
    /// Its public key (read when the rules loaded).
    pub public: PublicKey,
    /// Keys accepted, listed in the rules.
    pub trust: Vec<PublicKey>,
    /// A directory of accepted keys.
    pub trust_dir: Option<PathBuf>,
    /// The DIF's secret file.
    pub secret: Option<PathBuf>,
    /// A new session after this long.
    pub rekey_after: Duration,
    /// A new session after this many messages.
    pub rekey_after_messages: u64,
    /// Name patterns, with the keys that alone may register matching names and those
    /// that alone may allocate flows to them (`None`: any trusted member).
    pub names: Vec<NameAccess>,
    /// IPC process names pinned to a key.
    pub pinned_names: Vec<(rina_core::ApplicationName, PublicKey)>,
    /// Addresses pinned to a key.
    pub pinned_addresses: Vec<(u32, PublicKey)>,
}

impl SecurityConfig {
    /// Every key accepted now: the listed ones and the directory's.
    ///
    /// # Errors
    /// The directory or a file in it cannot be read, or holds no key.
    pub fn trusted(&self) -> Result<BTreeSet<PublicKey>, KeyError> {
        let mut all: BTreeSet<PublicKey> = self.trust.iter().copied().collect();
        if let Some(dir) = &self.trust_dir {
            all.extend(read_trust_dir(dir)?);
        }
        Ok(all)
    }

    /// The core's policy, with the key files read now.
    ///
    /// # Errors
    /// A key file cannot be read, is malformed or others can read it.
    pub fn load(&self) -> Result<rina_core::secure::Security, KeyError> {
        let key = PrivateKey::load(&self.key)?;
        let secret = self.secret.as_deref().map(PrivateKey::load).transpose()?;
        let creds = rina_core::secure::Credentials::new(
            &key.to_bytes(),
            secret.as_ref().map(|s| s.to_bytes()).as_deref(),
        );
        let limits = rina_core::secure::Limits {
            rekey_after_time: self.rekey_after,
            rekey_after_messages: self.rekey_after_messages,
            reject_after_time: self
                .rekey_after
                .saturating_add(self.rekey_after / 2)
                .max(self.rekey_after + Duration::from_secs(1)),
            ..rina_core::secure::Limits::default()
        };
        Ok(rina_core::secure::Security {
            creds,
            trusted: self.trusted()?.iter().map(|k| *k.as_bytes()).collect(),
            limits,
            access: self.access(),
        })
    }

    /// The core's access control.
    fn access(&self) -> rina_core::ipcp::Access {
        use rina_core::ipcp::{Access, NamePattern, NameRule};
        let raw = |keys: &Option<Vec<PublicKey>>| {
            keys.as_ref()
                .map(|v| v.iter().map(|k| *k.as_bytes()).collect())
        };
        Access {
            names: self
                .names
                .iter()
                .map(|n| NameRule {
                    pattern: NamePattern::new(n.pattern.clone()),
                    register: raw(&n.register),
                    allocate: raw(&n.allocate),
                })
                .collect(),
            pinned_names: self
                .pinned_names
                .iter()
                .map(|(n, k)| (n.clone(), *k.as_bytes()))
                .collect(),
            pinned_addresses: self
                .pinned_addresses
                .iter()
                .map(|(a, k)| (rina_core::Address(*a), *k.as_bytes()))
                .collect(),
        }
    }

    /// One line for `rina check` and the log: whose key, whom it trusts.
    pub fn describe(&self, dif: &str) -> String {
        self.describe_trusting(dif, self.trusted())
    }

    /// As [`SecurityConfig::describe`], with the keys trusted already read.
    pub fn describe_trusting(
        &self,
        dif: &str,
        trusted: Result<BTreeSet<PublicKey>, KeyError>,
    ) -> String {
        let trusted = match trusted {
            Ok(keys) => {
                let fps: Vec<String> = keys.iter().map(PublicKey::fingerprint).collect();
                format!("trusts {} key(s): {}", fps.len(), fps.join(", "))
            }
            Err(e) => format!("trusts nobody yet ({e})"),
        };
        let from = match &self.trust_dir {
            Some(d) if self.trust.is_empty() => format!(" (from {})", d.display()),
            Some(d) => format!(" (listed, and from {})", d.display()),
            None => " (listed)".to_owned(),
        };
        let secret = if self.secret.is_some() {
            "; with a DIF secret"
        } else {
            ""
        };
        format!(
            "DIF {dif} is secured: member key {} ({}); {trusted}{from}{secret}; sessions \
             replaced every {:?}",
            self.public.fingerprint(),
            self.key.display(),
            self.rekey_after,
        )
    }
}
