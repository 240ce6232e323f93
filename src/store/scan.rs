//! Range scans merged across shards.
//!
//! Every shard is scanned (a collection's keys may live in any shard: hash routing scatters
//! them, and batch-routed index entries live with their record), and the per-shard results,
//! each in key order, are merged by a k-way merge on the key bytes. The result is therefore in
//! byte order of the keys whatever the routing. Each shard is read from its own snapshot;
//! a scan is not one snapshot across shards.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::shard_by::prefix_successor;
use std::ops::{
    Bound, Range, RangeBounds, RangeFrom, RangeFull, RangeInclusive, RangeTo, RangeToInclusive,
};

/// What a [`Store::scan`](crate::Store::scan) reads: a key range or prefix, optionally resumed
/// after a key, optionally limited.
///
/// ```
/// use shardkv::Scan;
/// let page = Scan::prefix("orange\0").after("orange\0biscuit").limit(100);
/// let all: Scan = (..).into();
/// let range: Scan = ("a".."n").into();
/// # let _ = (page, all, range);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    pub(crate) start: Bound<Vec<u8>>,
    pub(crate) end: Bound<Vec<u8>>,
    pub(crate) limit: usize,
}

/// One key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

impl Scan {
    /// Every key.
    pub fn all() -> Scan {
        Scan {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
            limit: usize::MAX,
        }
    }

    /// The keys within a range of byte strings.
    pub fn range<K: AsRef<[u8]>>(range: impl RangeBounds<K>) -> Scan {
        let own = |b: Bound<&K>| match b {
            Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
            Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        Scan {
            start: own(range.start_bound()),
            end: own(range.end_bound()),
            limit: usize::MAX,
        }
    }

    /// The keys that start with `prefix`.
    pub fn prefix(prefix: impl AsRef<[u8]>) -> Scan {
        let prefix = prefix.as_ref().to_vec();
        Scan {
            end: prefix_successor(&prefix).map_or(Bound::Unbounded, Bound::Excluded),
            start: Bound::Included(prefix),
            limit: usize::MAX,
        }
    }

    /// Resume strictly after `key` (the last key of the previous page).
    pub fn after(mut self, key: impl AsRef<[u8]>) -> Scan {
        let key = key.as_ref().to_vec();
        let later = match &self.start {
            Bound::Unbounded => true,
            Bound::Included(s) => key >= *s,
            Bound::Excluded(s) => key >= *s,
        };
        if later {
            self.start = Bound::Excluded(key);
        }
        self
    }

    /// At most `n` entries.
    pub fn limit(mut self, n: usize) -> Scan {
        self.limit = n;
        self
    }

    pub(crate) fn bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        (as_ref(&self.start), as_ref(&self.end))
    }

    /// Whether the range is empty (redb refuses such ranges rather than returning nothing).
    pub(crate) fn is_empty(&self) -> bool {
        match (&self.start, &self.end) {
            (Bound::Included(s), Bound::Included(e)) => s > e,
            (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
            | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
            _ => false,
        }
    }
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k),
        Bound::Excluded(k) => Bound::Excluded(k),
        Bound::Unbounded => Bound::Unbounded,
    }
}

macro_rules! scan_from_range {
    ($($range:ident),*) => {
        $(impl<K: AsRef<[u8]>> From<$range<K>> for Scan {
            fn from(range: $range<K>) -> Scan {
                Scan::range(range)
            }
        })*
    };
}
scan_from_range!(Range, RangeFrom, RangeInclusive, RangeTo, RangeToInclusive);

impl From<RangeFull> for Scan {
    fn from(_: RangeFull) -> Scan {
        Scan::all()
    }
}

/// Merges runs that are each sorted by key into one sorted run of at most `limit` entries.
pub(crate) fn merge(runs: Vec<Vec<Entry>>, limit: usize) -> Vec<Entry> {
    let mut runs: Vec<std::vec::IntoIter<Entry>> = runs.into_iter().map(Vec::into_iter).collect();
    let mut heads = BinaryHeap::new();
    for (i, run) in runs.iter_mut().enumerate() {
        if let Some((k, v)) = run.next() {
            heads.push(Reverse((k, i, v)));
        }
    }
    let mut out = Vec::new();
    while out.len() < limit {
        let Some(Reverse((k, i, v))) = heads.pop() else {
            break;
        };
        if let Some((nk, nv)) = runs[i].next() {
            heads.push(Reverse((nk, i, nv)));
        }
        out.push((k, v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_interleaves_in_key_order_and_stops_at_limit() {
        let e = |k: &str| (k.as_bytes().to_vec(), Vec::new());
        let runs = vec![vec![e("b"), e("d")], vec![e("a"), e("c"), e("e")], vec![]];
        let keys: Vec<_> = merge(runs.clone(), 10)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, [b"a", b"b", b"c", b"d", b"e"]);
        assert_eq!(merge(runs, 2).len(), 2);
    }

    #[test]
    fn prefix_and_after_bound_the_range() {
        let s = Scan::prefix("ab").after("abc");
        assert_eq!(s.start, Bound::Excluded(b"abc".to_vec()));
        assert_eq!(s.end, Bound::Excluded(b"ac".to_vec()));
        assert_eq!(Scan::prefix([0xff]).end, Bound::Unbounded);
        // Resuming before the start keeps the start.
        assert_eq!(
            Scan::prefix("m").after("a").start,
            Bound::Included(b"m".to_vec())
        );
        assert!(Scan::range("b".."a").is_empty());
        assert!(!Scan::range("a"..="a").is_empty());
    }
}
