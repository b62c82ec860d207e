//! A set of sequence numbers kept as disjoint half-open ranges.
//!
//! The receiver keeps the sequence numbers it holds above its in-order edge in one (it
//! is where the SACK ranges come from); the sender keeps the sequence numbers the peer
//! selectively acknowledged in another (the scoreboard). Ranges are merged on insert
//! (touching ranges too), so the map holds one entry per hole-separated run, and an
//! insert costs O(log n) plus the number of ranges it swallows.

use std::collections::BTreeMap;

/// Disjoint, non-touching half-open ranges `[start, end)`, keyed by start.
#[derive(Clone, Debug, Default)]
pub(super) struct RangeSet {
    map: BTreeMap<u64, u64>,
    /// Sequence numbers covered.
    count: u64,
}

impl RangeSet {
    /// Sequence numbers covered.
    pub(super) fn count(&self) -> u64 {
        self.count
    }

    /// The end of the highest range.
    pub(super) fn max_end(&self) -> Option<u64> {
        self.map.last_key_value().map(|(_, &e)| e)
    }

    /// Ranges in increasing order.
    pub(super) fn iter(&self) -> impl DoubleEndedIterator<Item = (u64, u64)> + '_ {
        self.map.iter().map(|(&s, &e)| (s, e))
    }

    /// Adds `[start, end)`; calls `new` with each sub-range that was not covered yet,
    /// in increasing order. Returns how many sequence numbers were added.
    pub(super) fn insert(&mut self, start: u64, end: u64, mut new: impl FnMut(u64, u64)) -> u64 {
        if start >= end {
            return 0;
        }
        let (mut lo, mut hi) = (start, end);
        // Everything below `cursor` within [start, end) is accounted for.
        let mut cursor = start;
        if let Some((&ps, &pe)) = self.map.range(..=start).next_back() {
            if pe >= start {
                lo = ps;
                hi = hi.max(pe);
                cursor = cursor.max(pe);
                self.map.remove(&ps);
            }
        }
        let mut added = 0;
        // Ranges starting inside (start, end], touching ones included.
        while let Some((&rs, &re)) = self.map.range(start..=end).next() {
            if cursor < rs {
                added += rs - cursor;
                new(cursor, rs);
            }
            cursor = cursor.max(re);
            hi = hi.max(re);
            self.map.remove(&rs);
        }
        if cursor < end {
            added += end - cursor;
            new(cursor, end);
        }
        self.map.insert(lo, hi);
        self.count += added;
        added
    }

    /// Removes every sequence number below `edge`.
    pub(super) fn remove_below(&mut self, edge: u64) {
        while let Some(first) = self.map.first_entry() {
            let (s, e) = (*first.key(), *first.get());
            if e <= edge {
                first.remove();
                self.count -= e - s;
            } else {
                if s < edge {
                    first.remove();
                    self.map.insert(edge, e);
                    self.count -= edge - s;
                }
                return;
            }
        }
    }

    /// True if `seq` is covered.
    #[cfg(test)]
    pub(super) fn contains(&self, seq: u64) -> bool {
        self.map
            .range(..=seq)
            .next_back()
            .is_some_and(|(_, &e)| seq < e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn merges_and_reports_new_parts() {
        let mut r = RangeSet::default();
        let mut parts = Vec::new();
        assert_eq!(r.insert(10, 12, |a, b| parts.push((a, b))), 2);
        assert_eq!(r.insert(14, 16, |a, b| parts.push((a, b))), 2);
        assert_eq!(r.insert(8, 20, |a, b| parts.push((a, b))), 8);
        assert_eq!(parts, [(10, 12), (14, 16), (8, 10), (12, 14), (16, 20)]);
        assert_eq!(r.iter().collect::<Vec<_>>(), [(8, 20)]);
        assert_eq!(r.insert(20, 21, |_, _| {}), 1, "touching merges");
        assert_eq!(r.iter().collect::<Vec<_>>(), [(8, 21)]);
        r.remove_below(10);
        assert_eq!(r.iter().collect::<Vec<_>>(), [(10, 21)]);
        assert_eq!(r.count(), 11);
    }

    proptest! {
        #[test]
        fn matches_a_set(ops in prop::collection::vec((0u64..200, 0u64..20, any::<bool>()), 0..60)) {
            let mut r = RangeSet::default();
            let mut model = BTreeSet::new();
            for (a, len, trim) in ops {
                if trim {
                    r.remove_below(a);
                    model.retain(|&x| x >= a);
                } else {
                    let mut added = BTreeSet::new();
                    let n = r.insert(a, a + len, |s, e| added.extend(s..e));
                    let expect: BTreeSet<u64> = (a..a + len).filter(|x| !model.contains(x)).collect();
                    prop_assert_eq!(n, expect.len() as u64);
                    prop_assert_eq!(&added, &expect);
                    model.extend(a..a + len);
                }
                prop_assert_eq!(r.count(), model.len() as u64);
                let ranges: Vec<_> = r.iter().collect();
                for w in ranges.windows(2) {
                    prop_assert!(w[0].1 < w[1].0, "disjoint and not touching");
                }
                for x in 0..230 {
                    prop_assert_eq!(r.contains(x), model.contains(&x));
                }
            }
        }
    }
}
