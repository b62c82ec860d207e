//! `[dif.security]` validated: each key file read (missing, malformed or readable by
//! others is refused at its position, as ssh refuses such a key), each listed key
//! decoded, the trust directory read, the limits in range.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::raw::RawSecurity;
use super::{Validator, R};
use crate::config::SecurityConfig;
use crate::keys::{read_trust_dir, PrivateKey};

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
            None => 1 << 48,
            Some(m) => {
                let v = *m.get_ref();
                if !(16..=1 << 60).contains(&v) {
                    return Err(self.error(m.span(), "rekey-after-messages must be 16..=2^60"));
                }
                v as u64
            }
        };
        Ok(SecurityConfig {
            key,
            public,
            trust,
            trust_dir,
            secret: s.secret.as_ref().map(|p| self.rules_path(p)),
            rekey_after,
            rekey_after_messages,
        })
    }
}
