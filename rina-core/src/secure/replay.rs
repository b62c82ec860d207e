//! The replay window of a session: which counters were already accepted, over the last
//! [`WINDOW`] counters (as WireGuard's, RFC 6479's bitmap). A counter older than the
//! window is refused; a newer one slides it.

/// How far behind the highest counter seen a counter is still accepted.
pub const WINDOW: u64 = 8192;
const WORDS: usize = (WINDOW / 64) as usize + 1;
const BITS: u64 = WORDS as u64 * 64;

/// Counters seen, as a ring of bits.
#[derive(Clone, Debug)]
pub struct Replay {
    /// One more than the highest counter accepted (0: none yet).
    next: u64,
    bits: [u64; WORDS],
}

impl Default for Replay {
    fn default() -> Self {
        Self {
            next: 0,
            bits: [0; WORDS],
        }
    }
}

impl Replay {
    /// True if `counter` would be accepted (new and not too old). Changes nothing: a
    /// message is checked first, then opened, then [`Replay::accept`]ed.
    pub fn fresh(&self, counter: u64) -> bool {
        if counter >= self.next {
            return true;
        }
        if self.next - counter > WINDOW {
            return false;
        }
        let (word, bit) = Self::place(counter);
        self.bits[word] & bit == 0
    }

    /// Records `counter` (already checked [`Replay::fresh`]).
    pub fn accept(&mut self, counter: u64) {
        if counter >= self.next {
            // Clear the words the window slides over, after the highest counter's
            // (all of them past a long jump).
            let from = self.next.saturating_sub(1) / 64;
            let to = counter / 64;
            let clear = (to - from).min(WORDS as u64);
            for i in 1..=clear {
                self.bits[((from + i) % WORDS as u64) as usize] = 0;
            }
            self.next = counter.saturating_add(1);
        }
        let (word, bit) = Self::place(counter);
        self.bits[word] |= bit;
    }

    fn place(counter: u64) -> (usize, u64) {
        (((counter % BITS) / 64) as usize, 1u64 << (counter % 64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn take(r: &mut Replay, c: u64) -> bool {
        let ok = r.fresh(c);
        if ok {
            r.accept(c);
        }
        ok
    }

    #[test]
    fn duplicates_and_old_counters_are_refused() {
        let mut r = Replay::default();
        assert!(take(&mut r, 0));
        assert!(!take(&mut r, 0));
        assert!(take(&mut r, 5));
        assert!(take(&mut r, 3));
        assert!(!take(&mut r, 3));
        assert!(take(&mut r, 10_000));
        // 10_000 - WINDOW = 1808: older is out of the window.
        assert!(!take(&mut r, 1000));
        // Accepted: up to WINDOW behind the next counter expected (10_001).
        assert!(take(&mut r, 10_001 - WINDOW));
        assert!(!take(&mut r, 10_000 - WINDOW));
        assert!(take(&mut r, 9_999));
        assert!(take(&mut r, u64::MAX - 1));
        assert!(!take(&mut r, u64::MAX - 1));
    }

    proptest! {
        /// Against a set of everything seen: accepted exactly when new and within the
        /// window of the highest.
        #[test]
        fn matches_a_model(steps in proptest::collection::vec(0u64..40_000, 1..400)) {
            let mut r = Replay::default();
            let mut seen = std::collections::BTreeSet::new();
            let mut high: Option<u64> = None;
            for c in steps {
                let expect = !seen.contains(&c) && high.is_none_or(|h| c + WINDOW > h || c > h);
                prop_assert_eq!(take(&mut r, c), expect, "counter {}", c);
                if expect {
                    seen.insert(c);
                    high = Some(high.map_or(c, |h| h.max(c)));
                }
            }
        }
    }
}
