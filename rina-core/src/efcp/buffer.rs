//! The sender's byte queue: payload bytes of every PDU from the oldest unacknowledged
//! one to the last queued one, addressed by absolute stream offset.
//!
//! `send` copies an SDU in once; fragments are (offset, length) views into it; a
//! cumulative acknowledgement releases bytes from the front. Nothing is allocated per
//! PDU, and the storage is reused as the queue turns over.

use std::collections::VecDeque;

/// Bytes at absolute offsets `base..base + len`.
#[derive(Debug, Default)]
pub(super) struct ByteQueue {
    bytes: VecDeque<u8>,
    base: u64,
}

impl ByteQueue {
    /// The offset one past the last byte.
    pub(super) fn end(&self) -> u64 {
        self.base + self.bytes.len() as u64
    }

    /// Appends `data`; returns its offset.
    pub(super) fn push(&mut self, data: &[u8]) -> u64 {
        let at = self.end();
        self.bytes.extend(data);
        at
    }

    /// Appends `len` bytes from offset `off` to `out`. Bytes outside the queue are
    /// skipped (they cannot be asked for: offsets come from live PDUs).
    pub(super) fn copy_to(&self, off: u64, len: usize, out: &mut Vec<u8>) {
        let Some(start) = off
            .checked_sub(self.base)
            .and_then(|s| usize::try_from(s).ok())
        else {
            return;
        };
        let end = start.saturating_add(len).min(self.bytes.len());
        if start >= end {
            return;
        }
        let (a, b) = self.bytes.as_slices();
        if end <= a.len() {
            out.extend_from_slice(&a[start..end]);
        } else if start >= a.len() {
            out.extend_from_slice(&b[start - a.len()..end - a.len()]);
        } else {
            out.extend_from_slice(&a[start..]);
            out.extend_from_slice(&b[..end - a.len()]);
        }
    }

    /// Drops every byte below offset `off`.
    pub(super) fn release_to(&mut self, off: u64) {
        let n = off.saturating_sub(self.base).min(self.bytes.len() as u64);
        self.bytes.drain(..n as usize);
        self.base += n;
    }

    /// Drops everything.
    pub(super) fn clear(&mut self) {
        self.base = self.end();
        self.bytes = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_and_releases() {
        let mut q = ByteQueue::default();
        let mut out = Vec::new();
        for round in 0..50u8 {
            let data: Vec<u8> = (0..37).map(|i| i ^ round).collect();
            let at = q.push(&data);
            out.clear();
            q.copy_to(at + 5, 20, &mut out);
            assert_eq!(out, &data[5..25]);
            q.release_to(at + 30);
            assert_eq!(q.end(), at + 37);
        }
        out.clear();
        q.copy_to(0, 10, &mut out);
        assert!(out.is_empty(), "released bytes are gone");
    }
}
