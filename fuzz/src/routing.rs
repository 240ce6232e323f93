//! Routing over fuzzed schemes and keys: total (every key has a shard in range), stable
//! (the same answer twice and after `Display`/parse), ordered (alphabetical shards follow the
//! lowercased key order), exact at boundaries (a split point opens its shard; hash ranges
//! tile `0..=u64::MAX`), and consistent with `range_of`.

use shardkv::{ShardBy, ShardRange};
use xxhash_rust::xxh3::xxh3_64;

use super::bytes::Bytes;

fn scheme(b: &mut Bytes) -> Option<ShardBy> {
    match b.byte() % 3 {
        0 => {
            let n = u16::from_be_bytes([b.byte(), b.byte()]) as usize % 1100;
            let made = ShardBy::hash(n);
            assert_eq!(made.is_ok(), (1..=1024).contains(&n), "hash:{n}");
            made.ok()
        }
        1 => {
            let mut starts: Vec<u64> = (0..b.byte() % 8).map(|_| b.u64()).collect();
            if !b.byte().is_multiple_of(4) {
                starts.insert(0, 0);
                starts.sort_unstable();
                starts.dedup();
            }
            ShardBy::hash_ranges(starts).ok()
        }
        _ => {
            let points: Vec<String> = (0..b.byte() % 6)
                .map(|_| String::from_utf8_lossy(&b.slice(6)).into_owned())
                .collect();
            ShardBy::split_points(points).ok()
        }
    }
}

fn contains(range: &ShardRange, key: &[u8]) -> bool {
    match range {
        ShardRange::Alpha { start, end } => {
            let lower = key.to_ascii_lowercase();
            start.as_ref().is_none_or(|s| lower >= *s) && end.as_ref().is_none_or(|e| lower < *e)
        }
        ShardRange::Hash { start, last } => (*start..=*last).contains(&xxh3_64(key)),
    }
}

pub fn check(data: &[u8]) {
    let mut b = Bytes(data);
    let Some(scheme) = scheme(&mut b) else {
        return;
    };
    let n = scheme.shard_count();
    let reparsed: ShardBy = scheme.to_string().parse().expect("a printed scheme parses");
    let mut keys: Vec<Vec<u8>> = Vec::new();
    while !b.is_empty() {
        keys.push(b.slice(12));
    }
    if let Some(splits) = scheme.splits() {
        for (i, s) in splits.iter().enumerate() {
            assert_eq!(
                scheme.shard_of(s),
                i + 1,
                "split point {s:?} opens shard {}",
                i + 1
            );
            assert!(scheme.shard_of(&s[..s.len() - 1]) <= i, "a prefix of {s:?}");
            keys.push(s.clone());
        }
    }
    if let Some(starts) = scheme.hash_starts() {
        assert_eq!(starts[0], 0);
        for i in 0..n {
            let ShardRange::Hash { start, last } = scheme.range_of(i) else {
                panic!("a hash scheme with an alphabetical range");
            };
            assert!(start <= last);
            if i + 1 == n {
                assert_eq!(last, u64::MAX, "the last hash range ends at the top");
            } else if let ShardRange::Hash { start: next, .. } = scheme.range_of(i + 1) {
                assert_eq!(
                    last.checked_add(1),
                    Some(next),
                    "no gap or overlap after {i}"
                );
            }
        }
    }
    for key in &keys {
        let shard = scheme.shard_of(key);
        assert!(shard < n, "total");
        assert_eq!(shard, scheme.shard_of(key), "deterministic");
        assert_eq!(shard, reparsed.shard_of(key), "stable across Display/parse");
        assert!(
            contains(&scheme.range_of(shard), key),
            "range_of({shard}) holds {key:?}"
        );
        if scheme.splits().is_some() {
            assert_eq!(
                shard,
                scheme.shard_of(&key.to_ascii_lowercase()),
                "case-blind"
            );
        }
    }
    if scheme.splits().is_some() {
        keys.sort_by_key(|k| k.to_ascii_lowercase());
        let shards: Vec<usize> = keys.iter().map(|k| scheme.shard_of(k)).collect();
        assert!(
            shards.windows(2).all(|w| w[0] <= w[1]),
            "ordered: {keys:?} -> {shards:?}"
        );
    }
}
