//! Member keys (issue 11): X25519 key pairs, in the files and text WireGuard uses (a
//! private key file holds its key in base64 on one line; a public key is printed in
//! base64), so `wg genkey` and `wg pubkey` interoperate with `rina keygen` and `rina
//! pubkey`.
//!
//! A private key file must be a regular file readable by its owner only: one that
//! others can read is refused, as ssh refuses such a key. Private keys are wiped from
//! memory when dropped and never printed or logged.

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use zeroize::Zeroizing;

/// A member's private key.
pub struct PrivateKey(x25519_dalek::StaticSecret);

/// A member's public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey([u8; 32]);

/// Why a key or key file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The file cannot be read or written.
    #[error("{path}: {why}")]
    Io {
        /// The file.
        path: String,
        /// What the system said.
        why: String,
    },
    /// Others can read the private key file.
    #[error(
        "{path}: permissions {mode:04o} are too open: a private key file must be readable by \
         its owner only (chmod 600 {path})"
    )]
    TooOpen {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// Not a key.
    #[error("{0}")]
    Malformed(String),
}

impl PrivateKey {
    /// A new key from the operating system's randomness.
    pub fn generate() -> Self {
        Self(x25519_dalek::StaticSecret::random_from_rng(
            rand_core::OsRng,
        ))
    }

    /// Its public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(x25519_dalek::PublicKey::from(&self.0).to_bytes())
    }

    /// The key's 32 bytes (for the handshake; never to print).
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// Reads a private key file, refusing one that others can read or that holds no
    /// key.
    ///
    /// # Errors
    /// A [`KeyError`] naming the file and what is wrong.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let name = path.display().to_string();
        let io = |e: std::io::Error| KeyError::Io {
            path: name.clone(),
            why: e.to_string(),
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if !meta.is_file() {
            return Err(KeyError::Malformed(format!("{name}: not a regular file")));
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::TooOpen { path: name, mode });
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        let bytes = decode32(text.trim()).ok_or_else(|| {
            KeyError::Malformed(format!("{name}: not a private key (base64 of 32 bytes)"))
        })?;
        Ok(Self(x25519_dalek::StaticSecret::from(*bytes)))
    }

    /// Writes the key to a new file readable by its owner only (an existing file is
    /// not replaced).
    ///
    /// # Errors
    /// A [`KeyError`] if the file exists or cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let io = |e: std::io::Error| KeyError::Io {
            path: path.display().to_string(),
            why: e.to_string(),
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        let text = Zeroizing::new(format!("{}\n", STANDARD.encode(self.to_bytes().as_slice())));
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(public {})", self.public())
    }
}

impl PublicKey {
    /// The key's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A short form for messages and `rina ctl`: the first 8 characters of the
    /// base64 text, as WireGuard tools abbreviate keys.
    pub fn fingerprint(&self) -> String {
        let mut s = self.to_string();
        s.truncate(8);
        s
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&STANDARD.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl From<[u8; 32]> for PublicKey {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        decode32(s.trim()).map(|b| Self(*b)).ok_or_else(|| {
            KeyError::Malformed(format!("{s:?} is not a public key (base64 of 32 bytes)"))
        })
    }
}

/// The keys in a trust directory: every regular file not starting with a dot holds
/// one public key (as `rina pubkey` prints it), in name order.
///
/// # Errors
/// The directory or a file cannot be read, or a file holds no key.
pub fn read_trust_dir(dir: &Path) -> Result<Vec<PublicKey>, KeyError> {
    let io = |p: &Path, e: std::io::Error| KeyError::Io {
        path: p.display().to_string(),
        why: e.to_string(),
    };
    only_trusted_writers(dir)?;
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            only_trusted_writers(f)?;
            let text = std::fs::read_to_string(f).map_err(|e| io(f, e))?;
            text.parse().map_err(|_| {
                KeyError::Malformed(format!(
                    "{}: not a public key (base64 of 32 bytes, as `rina pubkey` prints)",
                    f.display()
                ))
            })
        })
        .collect()
}

/// Refuses a trust directory or key file that someone other than its owner can write,
/// or whose owner is neither this user nor root: whoever can write there decides whom
/// the DIF trusts.
fn only_trusted_writers(p: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(p).map_err(|e| KeyError::Io {
        path: p.display().to_string(),
        why: e.to_string(),
    })?;
    let me = rustix::process::geteuid().as_raw();
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 || (meta.uid() != me && meta.uid() != 0) {
        return Err(KeyError::Malformed(format!(
            "{}: others can change it (mode {mode:04o}, owner {}): trusted keys must be \
             writable by their owner only, and owned by this user or root",
            p.display(),
            meta.uid()
        )));
    }
    Ok(())
}

/// 32 bytes from base64 text, or `None`.
fn decode32(text: &str) -> Option<Zeroizing<[u8; 32]>> {
    let v = Zeroizing::new(STANDARD.decode(text).ok()?);
    let mut out = Zeroizing::new([0u8; 32]);
    (v.len() == 32).then(|| {
        out.copy_from_slice(&v);
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_key_loads_with_the_same_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let k = PrivateKey::generate();
        k.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(PrivateKey::load(&path).unwrap().public(), k.public());
        // Never replaced.
        assert!(matches!(k.save(&path), Err(KeyError::Io { .. })));
        let p: PublicKey = k.public().to_string().parse().unwrap();
        assert_eq!(p, k.public());
        assert_eq!(p.fingerprint().len(), 8);
        assert!(!format!("{k:?}").contains(&STANDARD.encode(k.to_bytes().as_slice())));
    }

    #[test]
    fn readable_by_others_or_not_a_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        PrivateKey::generate().save(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = PrivateKey::load(&path).unwrap_err();
        assert!(matches!(e, KeyError::TooOpen { mode: 0o644, .. }), "{e}");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "not a key\n").unwrap();
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            PrivateKey::load(&bad),
            Err(KeyError::Malformed(_))
        ));
        assert!("abc".parse::<PublicKey>().is_err());
    }

    /// The same public key as WireGuard derives for a known private key (RFC 7748's
    /// test vector, Alice's key).
    #[test]
    fn public_keys_are_x25519() {
        let private = "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alice");
        std::fs::write(&path, format!("{private}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let k = PrivateKey::load(&path).unwrap();
        assert_eq!(
            k.public().to_string(),
            "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo="
        );
    }
}
