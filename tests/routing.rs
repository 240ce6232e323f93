//! Routing properties: total, deterministic (pinned by golden values, so a change of hash or
//! comparison shows up), alphabetical ranges ordered across shards, hash ranges covering the
//! u64 space without gap or overlap, and specs that round-trip through Display and FromStr.

use proptest::prelude::*;
use shardkv::shard_by::route_of;
use shardkv::{ShardBy, ShardRange};
use xxhash_rust::xxh3::xxh3_64;

fn alpha_scheme() -> impl Strategy<Value = ShardBy> {
    proptest::collection::btree_set("[a-z0-9~]{1,3}", 0..12)
        .prop_map(|splits| ShardBy::split_points(splits).unwrap())
}

fn hash_scheme() -> impl Strategy<Value = ShardBy> {
    prop_oneof![
        (1usize..=1024).prop_map(|n| ShardBy::hash(n).unwrap()),
        proptest::collection::btree_set(1u64.., 0..20).prop_map(|rest| {
            let mut starts = vec![0];
            starts.extend(rest);
            ShardBy::hash_ranges(starts).unwrap()
        }),
    ]
}

fn any_scheme() -> impl Strategy<Value = ShardBy> {
    prop_oneof![alpha_scheme(), hash_scheme()]
}

fn any_key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..12),
        "[a-zA-Z0-9~ ]{0,8}".prop_map(String::into_bytes),
        // Hash tags, well-formed or not.
        "[a-z{}]{0,4}\\{[a-z{}]{0,4}\\}[a-z{}]{0,4}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn routing_is_total_and_deterministic(scheme in any_scheme(), key in any_key()) {
        let shard = scheme.shard_of(&key);
        prop_assert!(shard < scheme.shard_count());
        prop_assert_eq!(shard, scheme.shard_of(&key));
        // A scheme read back from its spec (as from MANIFEST) routes identically.
        let reparsed: ShardBy = scheme.to_string().parse().unwrap();
        prop_assert_eq!(shard, reparsed.shard_of(&key));
    }

    #[test]
    fn alphabetical_shards_are_ordered(scheme in alpha_scheme(), a in any_key(), b in any_key()) {
        let (sa, sb) = (scheme.shard_of(&a), scheme.shard_of(&b));
        let (la, lb) = (route_of(&a).to_ascii_lowercase(), route_of(&b).to_ascii_lowercase());
        if sa < sb {
            prop_assert!(la < lb, "{:?} in shard {} does not sort before {:?} in shard {}", la, sa, lb, sb);
        }
        // Case never changes the shard.
        prop_assert_eq!(sa, scheme.shard_of(&la));
    }

    #[test]
    fn alphabetical_keys_fall_inside_their_range(scheme in alpha_scheme(), key in any_key()) {
        let lower = route_of(&key).to_ascii_lowercase();
        match scheme.range_of(scheme.shard_of(&key)) {
            ShardRange::Alpha { start, end } => {
                prop_assert!(start.is_none_or(|s| lower >= s));
                prop_assert!(end.is_none_or(|e| lower < e));
            }
            other => prop_assert!(false, "alphabetical scheme gave {:?}", other),
        }
    }

    #[test]
    fn hash_ranges_cover_u64_without_gap_or_overlap(scheme in hash_scheme(), key in any_key()) {
        let n = scheme.shard_count();
        let ranges: Vec<(u64, u64)> = (0..n)
            .map(|i| match scheme.range_of(i) {
                ShardRange::Hash { start, last } => (start, last),
                other => panic!("hash scheme gave {other:?}"),
            })
            .collect();
        prop_assert_eq!(ranges[0].0, 0);
        prop_assert_eq!(ranges[n - 1].1, u64::MAX);
        for w in ranges.windows(2) {
            prop_assert!(w[0].0 <= w[0].1);
            prop_assert_eq!(w[0].1 + 1, w[1].0);
        }
        let h = xxh3_64(route_of(&key));
        let (start, last) = ranges[scheme.shard_of(&key)];
        prop_assert!(start <= h && h <= last);
    }

    #[test]
    fn specs_round_trip(scheme in any_scheme()) {
        let text = scheme.to_string();
        let parsed: ShardBy = text.parse().unwrap();
        prop_assert_eq!(&parsed, &scheme);
        prop_assert_eq!(parsed.to_string(), text);
    }

    #[test]
    fn parsing_never_panics(spec in "\\PC{0,30}") {
        let _ = spec.parse::<ShardBy>();
    }
}

#[test]
fn even_hash_ranges_have_equal_width() {
    for n in [1usize, 2, 3, 7, 8, 1000, 1024] {
        let scheme = ShardBy::hash(n).unwrap();
        let widths: Vec<u128> = (0..n)
            .map(|i| match scheme.range_of(i) {
                ShardRange::Hash { start, last } => last as u128 - start as u128 + 1,
                _ => unreachable!(),
            })
            .collect();
        let (min, max) = (widths.iter().min().unwrap(), widths.iter().max().unwrap());
        assert!(max - min <= 1, "hash:{n} widths differ by {}", max - min);
        assert_eq!(widths.iter().sum::<u128>(), 1u128 << 64);
    }
}

/// Golden values: these are on disk in every store, so they may never change.
#[test]
fn routing_is_stable_across_versions() {
    let hash8 = ShardBy::hash(8).unwrap();
    let dogs = [
        "biscuit",
        "jungle",
        "smokey",
        "fancy feast",
        "peep",
        "bread",
    ];
    let got: Vec<usize> = dogs.iter().map(|d| hash8.shard_of(d.as_bytes())).collect();
    let want: Vec<usize> = dogs
        .iter()
        .map(|d| (xxh3_64(d.as_bytes()) >> 61) as usize)
        .collect();
    assert_eq!(got, want);
    assert_eq!(got, GOLDEN_HASH8);
    let alpha: ShardBy = "alpha:a-m,n-z".parse().unwrap();
    let got: Vec<usize> = dogs.iter().map(|d| alpha.shard_of(d.as_bytes())).collect();
    assert_eq!(got, [0, 0, 1, 0, 1, 0]);
    assert_eq!(xxh3_64(b"biscuit"), GOLDEN_XXH3_BISCUIT);
}

const GOLDEN_HASH8: [usize; 6] = [1, 2, 3, 5, 4, 6];
const GOLDEN_XXH3_BISCUIT: u64 = 3_579_693_250_532_328_020;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// One key, one place: a key with a hash tag routes exactly as the tag's content does, in
    /// every scheme, wherever the tag stands.
    #[test]
    fn a_hash_tag_routes_with_the_key_it_names(
        scheme in any_scheme(),
        route in "[a-zA-Z0-9~ ]{1,8}",
        before in "[a-z\\x00]{0,4}",
        after in "[a-z\\x00{}]{0,4}",
    ) {
        let tagged = format!("{before}{{{route}}}{after}");
        prop_assert_eq!(route_of(tagged.as_bytes()), route.as_bytes());
        prop_assert_eq!(scheme.shard_of(tagged.as_bytes()), scheme.shard_of(route.as_bytes()));
    }
}

#[test]
fn hash_tags_follow_redis_cluster() {
    let cases: [(&str, &str); 8] = [
        ("biscuit", "biscuit"),
        ("orange\0{biscuit}", "biscuit"),
        ("{user1000}.following", "user1000"),
        ("foo{}{bar}", "foo{}{bar}"), // the first `{` has an empty tag: no tag
        ("foo{{bar}}zap", "{bar"),
        ("foo{bar}{zap}", "bar"),
        ("{unclosed", "{unclosed"),
        ("}{x}", "x"),
    ];
    for (key, route) in cases {
        assert_eq!(route_of(key.as_bytes()), route.as_bytes(), "{key:?}");
    }
}
