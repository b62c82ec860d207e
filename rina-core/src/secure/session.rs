//! A session: the two keys one handshake gave an N-1 flow (one per direction), the
//! counter of messages sealed, the replay window of those opened, and its age.
//! Sealing and opening work in place: a sealed message is the PDU with a header
//! before it and a tag after it (see [`super::wire`]).

use core::ops::Range;

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM, NONCE_LEN};

use super::replay::Replay;
use super::wire::{self, HEADER, TAG};
use crate::Instant;

/// Why a message was not opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Not sealed by the peer with this session's key (forged, corrupted, or sealed by
    /// a session that is gone).
    Forged,
    /// Its counter was seen already or is too old: a replay.
    Replayed,
}

/// One session of a secured N-1 flow.
pub struct Session {
    seal: LessSafeKey,
    open: LessSafeKey,
    /// The next counter to seal with.
    next: u64,
    replay: Replay,
    /// Which slot its messages carry.
    pub(crate) slot: u8,
    /// When the handshake that made it ended.
    pub(crate) born: Instant,
    /// Messages sealed and opened.
    pub(crate) messages: u64,
}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never the keys.
        f.debug_struct("Session")
            .field("slot", &self.slot)
            .field("next", &self.next)
            .field("messages", &self.messages)
            .finish_non_exhaustive()
    }
}

fn key(bytes: &[u8; 32]) -> LessSafeKey {
    // A 32-byte key is always valid for AES-256-GCM.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("a 32-byte AES-256 key"))
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    n[NONCE_LEN - 8..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

impl Session {
    /// A session sealing with `seal` and opening with `open`.
    pub fn new(seal: &[u8; 32], open: &[u8; 32], slot: u8, now: Instant) -> Self {
        Self {
            seal: key(seal),
            open: key(open),
            next: 0,
            replay: Replay::default(),
            slot,
            born: now,
            messages: 0,
        }
    }

    /// True once the session may seal no more (every counter used).
    pub fn exhausted(&self) -> bool {
        self.next == u64::MAX
    }

    /// Seals `msg` in place: its first [`HEADER`] bytes are written, the bytes between
    /// them and the last [`TAG`] bytes are encrypted, and the tag is written last.
    /// `msg` is at least [`wire::OVERHEAD`] long.
    pub fn seal(&mut self, control: bool, msg: &mut [u8]) {
        debug_assert!(msg.len() >= wire::OVERHEAD);
        let (header, rest) = msg.split_at_mut(HEADER);
        let split = rest.len() - TAG;
        let (body, tag) = rest.split_at_mut(split);
        let (h, t) = self.seal_detached(control, body);
        header.copy_from_slice(&h);
        tag.copy_from_slice(&t);
    }

    /// Encrypts `body` in place: the header to send before it and the tag after it
    /// (the message is header, body, tag), so a PDU is sealed where it lies.
    pub fn seal_detached(&mut self, control: bool, body: &mut [u8]) -> ([u8; HEADER], [u8; TAG]) {
        let counter = self.next;
        // A nonce is never used twice: a session that sealed 2^64 - 1 messages (never
        // reached: rekeying comes first) seals nothing more, as `exhausted` says.
        debug_assert!(counter < u64::MAX);
        self.next = self.next.saturating_add(1);
        self.messages = self.messages.saturating_add(1);
        let mut header = [0u8; HEADER];
        wire::write_header(&mut header, control, self.slot, counter);
        // Sealing in memory cannot fail for a message under 64 GB.
        let t = self
            .seal
            .seal_in_place_separate_tag(nonce(counter), Aad::from(&header[..]), body)
            .expect("AES-GCM seals a message of any size under 64 GB");
        let mut tag = [0u8; TAG];
        tag.copy_from_slice(t.as_ref());
        (header, tag)
    }

    /// Opens the sealed message `msg` (its counter already read from the header) in
    /// place: the plaintext's range in `msg`.
    pub fn open(&mut self, counter: u64, msg: &mut [u8]) -> Result<Range<usize>, OpenError> {
        if msg.len() < wire::OVERHEAD {
            return Err(OpenError::Forged);
        }
        if !self.replay.fresh(counter) {
            return Err(OpenError::Replayed);
        }
        let (header, rest) = msg.split_at_mut(HEADER);
        let split = rest.len() - TAG;
        let (body, tag) = rest.split_at_mut(split);
        let tag: [u8; TAG] = (&*tag).try_into().map_err(|_| OpenError::Forged)?;
        self.open
            .open_in_place_separate_tag(
                nonce(counter),
                Aad::from(&header[..]),
                Tag::from(tag),
                body,
                0..,
            )
            .map_err(|_| OpenError::Forged)?;
        self.replay.accept(counter);
        self.messages = self.messages.saturating_add(1);
        Ok(HEADER..HEADER + split)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Session, Session) {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        (
            Session::new(&a, &b, 0, Instant::ZERO),
            Session::new(&b, &a, 0, Instant::ZERO),
        )
    }

    fn sealed(s: &mut Session, pdu: &[u8]) -> Vec<u8> {
        let mut m = vec![0; HEADER];
        m.extend_from_slice(pdu);
        m.extend_from_slice(&[0; TAG]);
        s.seal(false, &mut m);
        m
    }

    fn counter(m: &[u8]) -> u64 {
        u64::from_be_bytes(m[1..9].try_into().unwrap())
    }

    #[test]
    fn seal_open_and_what_is_refused() {
        let (mut a, mut b) = pair();
        let m = sealed(&mut a, b"hello, member");
        assert!(!m.windows(5).any(|w| w == b"hello"), "ciphertext");
        let mut m1 = m.clone();
        let r = b.open(counter(&m1), &mut m1).unwrap();
        assert_eq!(&m1[r], b"hello, member");
        // The same message again: a replay.
        let mut m2 = m.clone();
        assert_eq!(b.open(counter(&m2), &mut m2), Err(OpenError::Replayed));
        // One bit flipped anywhere (header, body or tag): forged.
        for i in 0..m.len() {
            let mut f = sealed(&mut a, b"hello, member");
            f[i] ^= 0x04;
            assert_eq!(
                b.open(counter(&f), &mut f),
                Err(OpenError::Forged),
                "bit in byte {i}"
            );
        }
        // Our own message sent back to us: forged (each direction has its key).
        let mut own = sealed(&mut a, b"x");
        assert_eq!(a.open(counter(&own), &mut own), Err(OpenError::Forged));
        // Reordered within the window: fine.
        let later = sealed(&mut a, b"later");
        let earlier_not_yet = sealed(&mut a, b"earlier");
        let (mut l, mut e) = (later, earlier_not_yet);
        b.open(counter(&e), &mut e).unwrap();
        b.open(counter(&l), &mut l).unwrap();
    }
}
