//! Secured DIFs (issue 11): who may be a member, and what crosses the wire.
//!
//! Each N-1 flow of a secured DIF is a [`Channel`]: it starts with a Noise handshake
//! ([`handshake`]) that proves both members hold keys the other trusts (and, if the
//! DIF has one, its secret), and then carries every PDU of the DIF, management and
//! data, sealed with AES-256-GCM ([`session`]) under a counter nonce with a replay
//! window ([`replay`]). Sessions are replaced by a new handshake after a bound of time
//! or of messages, without a pause: the old session keeps working until the new one is
//! confirmed. Until a peer finished its handshake, the IPC process does not know the
//! flow exists.
//!
//! Like the rest of the core, this does no I/O: keys come in as bytes, and randomness
//! from a [`SecureRng`] seeded by the driver (the runtime from the OS, the simulator
//! from its seed).

mod channel;
pub mod handshake;
pub mod replay;
pub mod session;
pub mod wire;

use std::collections::BTreeSet;
use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use zeroize::Zeroizing;

pub use channel::{Channel, ChannelEvent, Ctx};

/// A member's public key (X25519).
pub type PublicKey = [u8; 32];

/// A member's own keys, and the DIF's secret (zeros if it has none).
#[derive(Clone)]
pub struct Credentials {
    pub(crate) private: Zeroizing<[u8; 32]>,
    pub(crate) public: PublicKey,
    pub(crate) psk: Zeroizing<[u8; 32]>,
    /// The DIF they are for, bound into every handshake (set when the DIF is added to
    /// a node): a handshake meant for one DIF does not finish in another.
    pub(crate) dif: String,
}

impl core::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never the private key or the secret.
        f.debug_struct("Credentials")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Credentials from a private key and the DIF's secret, if it has one.
    pub fn new(private: &[u8; 32], psk: Option<&[u8; 32]>) -> Self {
        let secret = x25519_dalek::StaticSecret::from(*private);
        let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
        Self {
            private: Zeroizing::new(*private),
            public,
            psk: Zeroizing::new(psk.copied().unwrap_or([0; 32])),
            dif: String::new(),
        }
    }

    /// Our public key.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// The same credentials for DIF `dif` (bound into its handshakes).
    pub fn for_dif(mut self, dif: &str) -> Self {
        self.dif = dif.to_owned();
        self
    }
}

/// A key's short form for messages: the first 8 characters of its base64 text, as
/// WireGuard's tools abbreviate keys.
pub fn fingerprint(key: &PublicKey) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(&key[..6])
}

/// When sessions are replaced, and how handshakes are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A new handshake after a session is this old...
    pub rekey_after_time: Duration,
    /// ... or has sealed and opened this many messages.
    pub rekey_after_messages: u64,
    /// A session this old is used no more (its flow closes if no new one came).
    pub reject_after_time: Duration,
    /// The first wait for a handshake's answer (doubling at each try).
    pub handshake_retry: Duration,
    /// Tries of a first handshake before the flow fails.
    pub handshake_attempts: u32,
    /// How long a flow made by a peer may go without a finished handshake.
    pub unproven_for: Duration,
}

impl Default for Limits {
    /// WireGuard's: a new session every 2 minutes, none used after 3.
    fn default() -> Self {
        Self {
            rekey_after_time: Duration::from_secs(120),
            // AES-GCM's confidentiality limit per key (RFC 9001, 6.6).
            rekey_after_messages: 1 << 23,
            reject_after_time: Duration::from_secs(180),
            handshake_retry: Duration::from_millis(250),
            handshake_attempts: 4,
            unproven_for: Duration::from_secs(10),
        }
    }
}

/// A secured DIF's policy at one member: its credentials, whom it trusts, its limits.
#[derive(Clone, Debug)]
pub struct Security {
    /// Our keys.
    pub creds: Credentials,
    /// The keys of members we accept.
    pub trusted: BTreeSet<PublicKey>,
    /// Rekeying and retries.
    pub limits: Limits,
    /// Who may register which names, and pinned member names and addresses.
    pub access: crate::ipcp::Access,
}

impl Security {
    /// True if `key` may be a neighbour.
    pub fn trusts(&self, key: &PublicKey) -> bool {
        self.trusted.contains(key)
    }
}

/// What the secured flows of a DIF refused and dropped (shown by `rina ctl`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Handshakes finished (first ones and rekeys).
    pub handshakes: u64,
    /// Handshakes refused: an untrusted key, a wrong DIF secret, a message that did
    /// not verify.
    pub handshakes_refused: u64,
    /// Sealed messages that did not open (forged, corrupted, or of a gone session).
    pub opens_failed: u64,
    /// Sealed messages seen before (replays).
    pub replays: u64,
    /// Initiations dropped under load (a peer address past its handshakes a second).
    pub handshakes_limited: u64,
}

/// A cryptographically secure generator seeded by the driver: the ephemeral keys of
/// handshakes are drawn from it.
pub struct SecureRng(ChaCha20Rng);

impl core::fmt::Debug for SecureRng {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SecureRng")
    }
}

impl SecureRng {
    /// A generator from 32 bytes of seed (from the OS in a real driver).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(ChaCha20Rng::from_seed(seed))
    }

    /// 32 fresh bytes. The generator then re-keys itself from its own output ("fast
    /// key erasure"): its state at any later time does not give back what it drew
    /// before, so a memory read later does not reveal past handshakes' ephemeral keys.
    pub fn seed32(&mut self) -> [u8; 32] {
        let mut both = Zeroizing::new([0u8; 64]);
        self.0.fill_bytes(&mut both[..]);
        let mut next = Zeroizing::new([0u8; 32]);
        next.copy_from_slice(&both[..32]);
        self.0 = ChaCha20Rng::from_seed(*next);
        let mut s = [0u8; 32];
        s.copy_from_slice(&both[32..]);
        s
    }
}
