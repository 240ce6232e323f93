//! Routing: which shard a key belongs to. Pure; no I/O.
//!
//! A [`ShardBy`] cuts a key space into `n` contiguous, non-overlapping ranges that together
//! cover every key, and numbers them `0..n` in order:
//!
//! ```text
//! alpha:a-m,n-z         lowercase(key):  [ ........ "n" ........ )
//!                                          shard 0  |  shard 1
//!
//! hash:4                xxh3_64(key):    [0 .. 2^62 .. 2^63 .. 3*2^62 .. 2^64)
//!                                          s0    |  s1  |   s2   |   s3
//! ```
//!
//! - **Alphabetical** ranges compare the ASCII-lowercased key with the split points in byte
//!   order. Shard `i` holds the keys `k` with `split[i-1] <= k < split[i]`; the first range has
//!   no lower bound and the last no upper bound, so digits (before `a`) land in the first
//!   range and non-ASCII bytes or `~` (after `z`) in the last.
//! - **Hash** ranges cut the `u64` space of `xxh3_64(key)` into contiguous ranges (not modulo).
//!   The range starts are part of the scheme and stored in MANIFEST, so one range can later be
//!   split without moving the keys of the others.
//!
//! # One key, one place: hash tags
//!
//! A key is routed by its **route** ([`route_of`]), which is the whole key unless the key
//! carries a hash tag, as in Redis Cluster: if the key holds a `{`, and a `}` somewhere after
//! it, with at least one byte between them, the route is the bytes between the first `{` and
//! the first `}` after it. So `dogs_by_color/orange\0{biscuit}` routes with the dog
//! `biscuit`, and `{show-7}` and `{show-7}\0alice` always share a shard. Keys that must be
//! written in one atomic batch carry the same route; routing follows from the key alone, so
//! every read finds every write.
//!
//! Invariants (pinned by `tests/routing.rs`): routing is total and deterministic across
//! processes and versions; for alphabetical schemes every route of shard `i` sorts before
//! every route of shard `i+1` in lowercased byte order; hash ranges cover `0..=u64::MAX`
//! without gap or overlap; `parse(display(s)) == s`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use xxhash_rust::xxh3::xxh3_64;

use crate::error::{Error, Result};

/// The most shards a store may have.
pub const MAX_SHARDS: usize = 1024;

/// How keys are routed to shards. Parse one from a spec (`"alpha:a-m,n-z"`, `"alpha:g,n,t"`,
/// `"hash:8"`) or build it with [`ShardBy::alphabetical`], [`ShardBy::split_points`] or
/// [`ShardBy::hash`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ShardBy(Scheme);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Scheme {
    /// Lowercased split points, strictly increasing; `splits.len() + 1` shards.
    Alpha { splits: Vec<Vec<u8>> },
    /// Range starts over the xxh3 space: `starts[0] == 0`, strictly increasing.
    Hash { starts: Vec<u64> },
}

/// The bytes `key` is routed by: the content of its hash tag (between the first `{` and the
/// first `}` after it, if that is not empty), or else the whole key.
///
/// ```
/// use shardkv::shard_by::route_of;
///
/// assert_eq!(route_of(b"biscuit"), b"biscuit");
/// assert_eq!(route_of(b"orange\0{biscuit}"), b"biscuit");
/// assert_eq!(route_of(b"{show-7}\0alice"), b"show-7");
/// assert_eq!(route_of(b"a{}b"), b"a{}b"); // an empty tag is no tag
/// ```
pub fn route_of(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    let rest = &key[open + 1..];
    match rest.iter().position(|&b| b == b'}') {
        Some(len) if len > 0 => &rest[..len],
        _ => key,
    }
}

/// The key range one shard covers, for MANIFEST and tools.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardRange {
    /// Lowercased keys `k` with `start <= k < end`; `None` is unbounded.
    Alpha {
        /// Inclusive lower bound, or unbounded.
        start: Option<Vec<u8>>,
        /// Exclusive upper bound, or unbounded.
        end: Option<Vec<u8>>,
    },
    /// Hashes `h` with `start <= h <= last`.
    Hash {
        /// First hash of the range.
        start: u64,
        /// Last hash of the range (inclusive, so the top range can end at `u64::MAX`).
        last: u64,
    },
}

impl ShardBy {
    /// Alphabetical ranges written as `lo-hi`, e.g. `["a-m", "n-z"]`.
    ///
    /// A range covers the keys whose lowercased form starts at `lo` and goes up to and
    /// including every key that starts with `hi`; the next range must start exactly where it
    /// ends (`m` is followed by `n`, `ma` by `mb`). The first and last ranges are open-ended,
    /// so every key goes somewhere.
    pub fn alphabetical<I, S>(ranges: I) -> Result<ShardBy>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut bounds: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for range in ranges {
            let range = range.as_ref().trim();
            if range.is_empty() {
                return Err(bad_spec("empty range in the list (a stray comma?)"));
            }
            let Some((lo, hi)) = range.split_once('-') else {
                return Err(bad_spec(format!(
                    "range {range:?} is not of the form lo-hi (like a-m)"
                )));
            };
            let lo = bound(lo, range)?;
            let hi = bound(hi, range)?;
            if lo > hi {
                return Err(bad_spec(format!(
                    "range {range:?} is reversed: {:?} sorts after {:?}",
                    show(&lo),
                    show(&hi)
                )));
            }
            bounds.push((lo, hi));
        }
        if bounds.is_empty() {
            return Err(bad_spec("no ranges given (try alpha:a-m,n-z)"));
        }
        let mut splits = Vec::with_capacity(bounds.len() - 1);
        for pair in bounds.windows(2) {
            let ((_, hi), (lo, _)) = (&pair[0], &pair[1]);
            // Bounds are UTF-8 text, never all 0xff, so a successor exists.
            let end = prefix_successor(hi).unwrap_or_default();
            match lo.as_slice().cmp(end.as_slice()) {
                Ordering::Equal => splits.push(lo.clone()),
                Ordering::Greater => {
                    return Err(bad_spec(format!(
                        "gap between ranges ending {:?} and starting {:?}: keys from {:?} up to {:?} would have no shard",
                        show(hi),
                        show(lo),
                        show(&end),
                        show(lo)
                    )));
                }
                Ordering::Less => {
                    return Err(bad_spec(format!(
                        "ranges ending {:?} and starting {:?} overlap or are out of order: the next range must start at {:?}",
                        show(hi),
                        show(lo),
                        show(&end)
                    )));
                }
            }
        }
        ShardBy::from_splits(splits)
    }

    /// Alphabetical ranges given by their split points: `["g", "n", "t"]` makes four shards,
    /// `..g`, `g..n`, `n..t` and `t..`.
    pub fn split_points<I, S>(points: I) -> Result<ShardBy>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let splits = points
            .into_iter()
            .map(|p| {
                let p = p.as_ref().trim();
                bound(p, p)
            })
            .collect::<Result<Vec<_>>>()?;
        for pair in splits.windows(2) {
            if pair[0] >= pair[1] {
                return Err(bad_spec(format!(
                    "split points must be strictly increasing, but {:?} is followed by {:?}",
                    show(&pair[0]),
                    show(&pair[1])
                )));
            }
        }
        ShardBy::from_splits(splits)
    }

    fn from_splits(splits: Vec<Vec<u8>>) -> Result<ShardBy> {
        if splits.len() + 1 > MAX_SHARDS {
            return Err(bad_spec(format!(
                "{} shards requested; at most {MAX_SHARDS} are allowed",
                splits.len() + 1
            )));
        }
        Ok(ShardBy(Scheme::Alpha { splits }))
    }

    /// `n` hash ranges of (nearly) equal width over the xxh3_64 space, `1 <= n <= 1024`.
    pub fn hash(n: usize) -> Result<ShardBy> {
        if !(1..=MAX_SHARDS).contains(&n) {
            return Err(bad_spec(format!(
                "hash:{n} is out of range: the shard count must be 1 to {MAX_SHARDS}"
            )));
        }
        Ok(ShardBy(Scheme::Hash {
            starts: even_starts(n),
        }))
    }

    /// Hash ranges with explicit starts (as stored in MANIFEST): the first must be 0 and they
    /// must strictly increase.
    pub fn hash_ranges(starts: Vec<u64>) -> Result<ShardBy> {
        if starts.is_empty() || starts.len() > MAX_SHARDS {
            return Err(bad_spec(format!(
                "{} hash ranges given; there must be 1 to {MAX_SHARDS}",
                starts.len()
            )));
        }
        if starts[0] != 0 {
            return Err(bad_spec(format!(
                "the first hash range must start at 0, not {:#018x}",
                starts[0]
            )));
        }
        if let Some(pair) = starts.windows(2).find(|p| p[0] >= p[1]) {
            return Err(bad_spec(format!(
                "hash range starts must strictly increase, but {:#018x} is followed by {:#018x}",
                pair[0], pair[1]
            )));
        }
        Ok(ShardBy(Scheme::Hash { starts }))
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        match &self.0 {
            Scheme::Alpha { splits } => splits.len() + 1,
            Scheme::Hash { starts } => starts.len(),
        }
    }

    /// The shard that holds `key`, in `0..shard_count()`: the range its [`route_of`] falls
    /// in. Total and deterministic.
    pub fn shard_of(&self, key: &[u8]) -> usize {
        let key = route_of(key);
        match &self.0 {
            // Shard i holds split[i-1] <= key < split[i]: count the splits at or below the key.
            Scheme::Alpha { splits } => {
                splits.partition_point(|s| cmp_lowercased(key, s) != Ordering::Less)
            }
            Scheme::Hash { starts } => {
                let h = xxh3_64(key);
                // starts[0] == 0 <= h, so the count is at least 1.
                starts.partition_point(|&s| s <= h) - 1
            }
        }
    }

    /// The alphabetical split points (lowercased), or `None` for a hash scheme.
    pub fn splits(&self) -> Option<&[Vec<u8>]> {
        match &self.0 {
            Scheme::Alpha { splits } => Some(splits),
            Scheme::Hash { .. } => None,
        }
    }

    /// The hash range starts, or `None` for an alphabetical scheme.
    pub fn hash_starts(&self) -> Option<&[u64]> {
        match &self.0 {
            Scheme::Alpha { .. } => None,
            Scheme::Hash { starts } => Some(starts),
        }
    }

    /// The key range of shard `i`. Panics if `i >= shard_count()`.
    pub fn range_of(&self, i: usize) -> ShardRange {
        match &self.0 {
            Scheme::Alpha { splits } => ShardRange::Alpha {
                start: i.checked_sub(1).map(|j| splits[j].clone()),
                end: splits.get(i).cloned(),
            },
            Scheme::Hash { starts } => ShardRange::Hash {
                start: starts[i],
                last: starts.get(i + 1).map_or(u64::MAX, |next| next - 1),
            },
        }
    }
}

/// The `i`-th of `n` even starts is `ceil(i * 2^64 / n)`.
fn even_starts(n: usize) -> Vec<u64> {
    let n = n as u128;
    (0..n).map(|i| ((i << 64).div_ceil(n)) as u64).collect()
}

/// Compares `key`, ASCII-lowercased on the fly, with an already lowercased split point.
fn cmp_lowercased(key: &[u8], split: &[u8]) -> Ordering {
    key.iter()
        .map(u8::to_ascii_lowercase)
        .cmp(split.iter().copied())
}

/// The least byte string greater than every string that starts with `prefix`, or `None` if
/// there is none (the prefix is all 0xff bytes).
pub(crate) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = prefix.to_vec();
    while let Some(last) = s.pop() {
        if last < u8::MAX {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

/// Validates and lowercases one bound of a spec.
fn bound(text: &str, context: &str) -> Result<Vec<u8>> {
    let text = text.trim();
    if text.is_empty() {
        return Err(bad_spec(format!("empty bound in {context:?}")));
    }
    if let Some(c) = text
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || matches!(c, ',' | '-' | ':'))
    {
        return Err(bad_spec(format!(
            "bound {text:?} contains {c:?}; bounds may not contain spaces, control characters, ',', '-' or ':'"
        )));
    }
    Ok(text.to_ascii_lowercase().into_bytes())
}

/// Bounds come from UTF-8 specs and stay UTF-8 after ASCII lowercasing.
fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn bad_spec(msg: impl Into<String>) -> Error {
    Error::InvalidInput(format!("bad shard spec: {}", msg.into()))
}

impl fmt::Display for ShardBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Scheme::Alpha { splits } => {
                // Single-letter splits read best as letter ranges: alpha:a-m,n-z.
                let letters = splits.iter().all(|s| matches!(s.as_slice(), [b'b'..=b'z']));
                f.write_str("alpha:")?;
                if letters {
                    let mut lo = b'a';
                    for s in splits {
                        write!(f, "{}-{},", lo as char, (s[0] - 1) as char)?;
                        lo = s[0];
                    }
                    write!(f, "{}-z", lo as char)
                } else {
                    let parts: Vec<String> = splits.iter().map(|s| show(s)).collect();
                    f.write_str(&parts.join(","))
                }
            }
            Scheme::Hash { starts } => {
                if *starts == even_starts(starts.len()) {
                    write!(f, "hash:{}", starts.len())
                } else {
                    let parts: Vec<String> = starts.iter().map(|s| format!("{s:#018x}")).collect();
                    write!(f, "hash:{}", parts.join(","))
                }
            }
        }
    }
}

impl FromStr for ShardBy {
    type Err = Error;

    /// Parses `alpha:a-m,n-z`, `alpha:g,n,t`, `hash:8`, or explicit hash starts
    /// `hash:0x0000000000000000,0x8000000000000000`.
    fn from_str(spec: &str) -> Result<ShardBy> {
        let spec = spec.trim();
        let (kind, body) = spec.split_once(':').ok_or_else(|| {
            bad_spec(format!(
                "{spec:?} should look like alpha:a-m,n-z, alpha:g,n,t or hash:8"
            ))
        })?;
        let body = body.trim();
        let items: Vec<&str> = body.split(',').map(str::trim).collect();
        match kind.trim().to_ascii_lowercase().as_str() {
            "alpha" | "alphabetical" => {
                if body.is_empty() {
                    return Err(bad_spec("alpha: needs ranges, like alpha:a-m,n-z"));
                }
                if items.iter().any(|i| i.contains('-')) {
                    ShardBy::alphabetical(items)
                } else {
                    ShardBy::split_points(items)
                }
            }
            "hash" => {
                if items.len() == 1 && !items[0].starts_with("0x") {
                    let n: usize = items[0].parse().map_err(|_| {
                        bad_spec(format!(
                            "hash:{body} needs a shard count from 1 to {MAX_SHARDS}"
                        ))
                    })?;
                    ShardBy::hash(n)
                } else {
                    let starts = items
                        .iter()
                        .map(|i| {
                            i.strip_prefix("0x")
                                .and_then(|h| u64::from_str_radix(h, 16).ok())
                                .ok_or_else(|| {
                                    bad_spec(format!(
                                        "hash range start {i:?} is not 0x-prefixed hex"
                                    ))
                                })
                        })
                        .collect::<Result<Vec<u64>>>()?;
                    ShardBy::hash_ranges(starts)
                }
            }
            other => Err(bad_spec(format!(
                "unknown scheme {other:?}: use alpha:... or hash:N"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_two_ranges_split_at_n() {
        let s: ShardBy = "alpha:a-m,n-z".parse().unwrap();
        assert_eq!(s.shard_count(), 2);
        assert_eq!(s.shard_of(b"biscuit"), 0);
        assert_eq!(s.shard_of(b"mzzz"), 0);
        assert_eq!(s.shard_of(b"n"), 1);
        assert_eq!(s.shard_of(b"Peep"), 1);
        assert_eq!(s.shard_of(b"0day"), 0);
        assert_eq!(s.shard_of(b"~tilde"), 1);
        assert_eq!(s.shard_of("émile".as_bytes()), 1);
        assert_eq!(s.shard_of(b""), 0);
    }

    #[test]
    fn split_points_and_ranges_agree() {
        let a: ShardBy = "alpha:g,n,t".parse().unwrap();
        let b: ShardBy = "alpha:a-f,g-m,n-s,t-z".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "alpha:a-f,g-m,n-s,t-z");
        let multi: ShardBy = "alpha:a-ma,mb-z".parse().unwrap();
        assert_eq!(multi.to_string(), "alpha:mb");
        assert_eq!(multi.shard_of(b"maz"), 0);
        assert_eq!(multi.shard_of(b"mb"), 1);
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (spec, needle) in [
            ("alpha:a-l,n-z", "gap"),
            ("alpha:a-n,n-z", "overlap"),
            ("alpha:n-z,a-m", "overlap"),
            ("alpha:m-a", "reversed"),
            ("alpha:", "needs ranges"),
            ("alpha:g,c", "strictly increasing"),
            ("alpha:g,", "empty bound"),
            ("alpha:a-,n-z", "empty bound"),
            ("alpha:g,g", "strictly increasing"),
            ("alpha:a-m,", "empty range"),
            ("alpha:a-m,n z-z", "contains"),
            ("hash:0", "out of range"),
            ("hash:1025", "out of range"),
            ("hash:x", "shard count"),
            ("hash:0x10,0x20", "start at 0"),
            ("hash:0x0,0x20,0x10", "strictly increase"),
            ("ring:3", "unknown scheme"),
            ("hash8", "should look like"),
        ] {
            let err = spec.parse::<ShardBy>().unwrap_err();
            assert!(
                matches!(err, Error::InvalidInput(_)) && err.to_string().contains(needle),
                "{spec}: {err}"
            );
        }
    }

    #[test]
    fn hash_ranges_are_even_and_total() {
        let s = ShardBy::hash(3).unwrap();
        let starts = s.hash_starts().unwrap();
        assert_eq!(starts[0], 0);
        assert_eq!(
            s.range_of(2),
            ShardRange::Hash {
                start: starts[2],
                last: u64::MAX
            }
        );
        assert_eq!(s.to_string(), "hash:3");
        let odd = ShardBy::hash_ranges(vec![0, 5]).unwrap();
        assert_eq!(odd.to_string().parse::<ShardBy>().unwrap(), odd);
    }
}
