//! One Noise handshake between two members over an N-1 flow:
//! `Noise_XXpsk0_25519_AESGCM_SHA256`, driven by the `snow` crate.
//!
//! Why XX: a member enrolls through an endpoint, not through a key it knows, so both
//! sides send their static key (encrypted) and each checks the other's against its
//! trust list. Why psk0: with a DIF secret, the first message is already authenticated
//! by it, so a responder refuses initiations from outside without a Diffie-Hellman or
//! any state (a DIF without a secret uses zeros, as WireGuard does). The initiation is
//! padded to the size of the response, so no answer is larger than what caused it.
//!
//! Randomness (ephemeral keys) comes from a seed drawn from the node's
//! [`super::SecureRng`], so the simulator replays handshakes exactly.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use zeroize::Zeroizing;

use super::{Credentials, PublicKey};

/// The Noise protocol name.
pub const PROTOCOL: &str = "Noise_XXpsk0_25519_AESGCM_SHA256";
/// Padding in the initiation's payload, so that it is as long as the response.
const INITIATION_PADDING: usize = 48;
/// The length of the Noise part of each message (the type byte comes before).
pub const INITIATION_LEN: usize = 32 + INITIATION_PADDING + 16;
/// Noise bytes of the response: ephemeral key, encrypted static key, empty payload's tag.
pub const RESPONSE_LEN: usize = 32 + 48 + 16;
/// Noise bytes of the final message: encrypted static key, empty payload's tag.
pub const FINAL_LEN: usize = 48 + 16;

/// What both ends bind into the handshake: the protocol's version and the DIF's name.
fn prologue(dif: &str) -> Vec<u8> {
    let mut p = b"rina-interposer secured N-1 flow v1; DIF ".to_vec();
    p.extend_from_slice(dif.as_bytes());
    p
}

/// A handshake that failed: the message did not verify (wrong DIF secret, forged,
/// out of order) or the peer's key is not one the handshake can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failed;

impl From<snow::Error> for Failed {
    fn from(_: snow::Error) -> Self {
        Self
    }
}

/// `snow`'s randomness: a ChaCha20 stream from a 32-byte seed.
struct Seeded(ChaCha20Rng);

impl Random for Seeded {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}

/// `snow`'s default primitives, with the seeded randomness.
struct Resolver {
    seed: Zeroizing<[u8; 32]>,
    inner: DefaultResolver,
}

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(Seeded(ChaCha20Rng::from_seed(*self.seed))))
    }
    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        self.inner.resolve_dh(choice)
    }
    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        self.inner.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        self.inner.resolve_cipher(choice)
    }
}

/// The keys a finished handshake gives: (initiator to responder, responder to
/// initiator).
pub type Keys = (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>);

/// A handshake in progress.
pub struct Handshake {
    state: snow::HandshakeState,
    /// Messages written so far.
    written: u8,
}

impl core::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Handshake")
            .field("initiator", &self.state.is_initiator())
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// A new handshake with our credentials, its randomness from `seed`.
    pub fn new(creds: &Credentials, initiator: bool, seed: [u8; 32]) -> Result<Self, Failed> {
        let params = PROTOCOL.parse()?;
        let resolver = Resolver {
            seed: Zeroizing::new(seed),
            inner: DefaultResolver,
        };
        let prologue = prologue(&creds.dif);
        let b = snow::Builder::with_resolver(params, Box::new(resolver))
            .local_private_key(&creds.private[..])?
            .psk(0, &creds.psk)?
            .prologue(&prologue)?;
        let state = if initiator {
            b.build_initiator()?
        } else {
            b.build_responder()?
        };
        Ok(Self { state, written: 0 })
    }

    /// Appends our next message (its Noise bytes) to `out`.
    pub fn write(&mut self, out: &mut Vec<u8>) -> Result<(), Failed> {
        let padding = [0u8; INITIATION_PADDING];
        // Only the initiation is padded (to the response's size).
        let first = self.state.is_initiator() && self.written == 0;
        let payload: &[u8] = if first { &padding } else { &[] };
        self.written = self.written.saturating_add(1);
        let start = out.len();
        out.resize(start + INITIATION_LEN.max(RESPONSE_LEN), 0);
        let n = self.state.write_message(payload, &mut out[start..]);
        match n {
            Ok(n) => {
                out.truncate(start + n);
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                Err(e.into())
            }
        }
    }

    /// Reads the peer's next message (its Noise bytes).
    pub fn read(&mut self, msg: &[u8]) -> Result<(), Failed> {
        let mut payload = [0u8; INITIATION_PADDING];
        if msg.len() > INITIATION_LEN.max(RESPONSE_LEN) {
            return Err(Failed);
        }
        self.state.read_message(msg, &mut payload)?;
        Ok(())
    }

    /// The peer's static key, once a message carried it.
    pub fn peer(&self) -> Option<PublicKey> {
        self.state.get_remote_static()?.try_into().ok()
    }

    /// True once every message went.
    pub fn finished(&self) -> bool {
        self.state.is_handshake_finished()
    }

    /// The two keys of the session (the handshake must be finished).
    pub fn keys(mut self) -> Keys {
        let (a, b) = self.state.dangerously_get_raw_split();
        (Zeroizing::new(a), Zeroizing::new(b))
    }
}
