//! `[dif.security]` validated: each key file read (missing, malformed or readable by
//! others is refused at its position, as ssh refuses such a key), each listed key
//! decoded, the trust directory read, the limits in range.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::raw::RawSecurity;
use super::{Validator, R};
use crate::config::{NameAccess, SecurityConfig};
use crate::keys::{read_trust_dir, PrivateKey, PublicKey};
use rina_core::ApplicationName;

/// The longest a session may last before a new handshake.
const MAX_REKEY_AFTER: Duration = Duration::from_secs(24 * 3600);

impl Validator<'_> {
    /// A path from the rules, relative to the rules file's directory.
    fn rules_path(&self, s: &Spanned<String>) -> PathBuf {
        let p = PathBuf::from(s.get_ref());
        match self.path.parent() {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p,
        }
    }

    pub(super) fn security(&self, raw: &Spanned<RawSecurity>) -> R<SecurityConfig> {
        let s = raw.get_ref();
        let Some(key_at) = &s.key else {
            return Err(self.error(
                raw.span(),
                "`[dif.security]` needs `key = \"<private key file>\"` (make one with `rina keygen FILE`)",
            ));
        };
        let key = self.rules_path(key_at);
        let public = PrivateKey::load(&key)
            .map_err(|e| self.error(key_at.span(), e.to_string()))?
            .public();
        if let Some(at) = &s.secret {
            PrivateKey::load(&self.rules_path(at))
                .map_err(|e| self.error(at.span(), format!("DIF secret: {e}")))?;
        }
        let mut trust = Vec::new();
        for k in s.trust.iter().flat_map(|t| t.get_ref()) {
            trust.push(
                k.get_ref()
                    .parse()
                    .map_err(|e: crate::keys::KeyError| self.error(k.span(), e.to_string()))?,
            );
        }
        let trust_dir = s.trust_dir.as_ref().map(|d| self.rules_path(d));
        if let (Some(dir), Some(at)) = (&trust_dir, &s.trust_dir) {
            read_trust_dir(dir).map_err(|e| self.error(at.span(), e.to_string()))?;
        }
        if trust.is_empty() && trust_dir.is_none() {
            return Err(self.error(
                raw.span(),
                "`[dif.security]` trusts no one: list members' public keys in `trust = [...]` \
                 or name a directory of them in `trust-dir`",
            ));
        }
        let rekey_after = s
            .rekey_after
            .as_ref()
            .map_or(Ok(Duration::from_secs(120)), |t| {
                self.duration(t, "rekey-after", false, MAX_REKEY_AFTER)
            })?;
        let rekey_after_messages = match &s.rekey_after_messages {
            None => 1 << 23,
            Some(m) => {
                let v = *m.get_ref();
                if !(16..=1 << 32).contains(&v) {
                    return Err(self.error(
                        m.span(),
                        "rekey-after-messages must be 16..=2^32 (AES-GCM's limit per key)",
                    ));
                }
                v as u64
            }
        };
        let names = self.name_access(s)?;
        let (pinned_names, pinned_addresses) = self.pins(s)?;
        Ok(SecurityConfig {
            names,
            pinned_names,
            pinned_addresses,
            key,
            public,
            trust,
            trust_dir,
            secret: s.secret.as_ref().map(|p| self.rules_path(p)),
            rekey_after,
            rekey_after_messages,
        })
    }

    /// A public key in the rules.
    fn public_key(&self, k: &Spanned<String>) -> R<PublicKey> {
        k.get_ref()
            .parse()
            .map_err(|e: crate::keys::KeyError| self.error(k.span(), e.to_string()))
    }

    /// `names = [...]`: each pattern with the keys that alone may register it, and
    /// those that alone may allocate flows to it.
    fn name_access(&self, s: &RawSecurity) -> R<Vec<NameAccess>> {
        let mut out = Vec::new();
        for n in s.names.iter().flatten() {
            let (at, n) = (n.span(), n.get_ref());
            if n.name.get_ref().is_empty() {
                return Err(self.error(n.name.span(), "an empty name pattern"));
            }
            if n.keys.is_none() && n.allocate.is_none() {
                return Err(self.error(at, "a names entry says who registers (`keys`), who allocates (`allocate`), or both"));
            }
            let keys = |list: &Option<Vec<Spanned<String>>>| {
                list.as_ref()
                    .map(|l| l.iter().map(|k| self.public_key(k)).collect::<R<Vec<_>>>())
                    .transpose()
            };
            out.push(NameAccess {
                pattern: n.name.get_ref().clone(),
                register: keys(&n.keys)?,
                allocate: keys(&n.allocate)?,
            });
        }
        Ok(out)
    }

    /// `pins = [...]`: member names and addresses, each pinned to one key.
    #[allow(clippy::type_complexity)]
    fn pins(
        &self,
        s: &RawSecurity,
    ) -> R<(Vec<(ApplicationName, PublicKey)>, Vec<(u32, PublicKey)>)> {
        let (mut names, mut addresses) = (Vec::new(), Vec::new());
        for p in s.pins.iter().flatten() {
            let (at, p) = (p.span(), p.get_ref());
            let key = self.public_key(&p.key)?;
            match (&p.ipcp, &p.address) {
                (Some(n), None) => names.push((self.name(n)?, key)),
                (None, Some(a)) => {
                    let v = *a.get_ref();
                    if !(1..=i64::from(u32::MAX)).contains(&v) {
                        return Err(self.error(a.span(), "address must be 1..=4294967295"));
                    }
                    addresses.push((v as u32, key));
                }
                _ => {
                    return Err(self.error(
                        at,
                        "a pin names either `ipcp = \"...\"` or `address = N`, with its `key`",
                    ))
                }
            }
        }
        Ok((names, addresses))
    }
}
