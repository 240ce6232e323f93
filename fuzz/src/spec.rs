//! Any spec string: parsing never panics, and a spec that parses routes any key in range and
//! round-trips through `Display`.

use shardkv::ShardBy;

pub fn check(data: &[u8]) {
    let (spec, key) = data.split_at(data.iter().position(|&b| b == b'\n').unwrap_or(data.len()));
    let Ok(spec) = std::str::from_utf8(spec) else {
        return;
    };
    let Ok(scheme) = spec.parse::<ShardBy>() else {
        return;
    };
    assert!(scheme.shard_of(key) < scheme.shard_count());
    let printed = scheme.to_string();
    let reparsed: ShardBy = printed.parse().expect("a printed spec parses");
    assert_eq!(reparsed, scheme, "{spec:?} printed as {printed:?}");
    assert_eq!(reparsed.to_string(), printed);
}
