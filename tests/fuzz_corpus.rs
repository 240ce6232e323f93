//! Replays every committed fuzz corpus input (`fuzz/corpus/<target>/*`, including what
//! fuzzing found) through the same check the fuzz target runs, on stable Rust, so that a
//! regression of anything the fuzzers once found fails the normal test suite.

#[path = "../fuzz/src/lib.rs"]
mod checks;

use std::path::Path;

/// Replays `fuzz/corpus/<target>/*` through the target's check.
fn replay(target: &str) {
    let (_, check) = checks::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no target {target}"));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{target} has no committed corpus");
    for input in &inputs {
        let data = std::fs::read(input).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{target}: {} fails", input.display());
    }
}

macro_rules! corpus_tests {
    ($($name:ident),* $(,)?) => {
        $(#[test]
        fn $name() {
            replay(stringify!($name));
        })*

        /// Every target has its test above.
        #[test]
        fn every_target_is_replayed() {
            let tested = [$(stringify!($name)),*];
            for (target, _) in checks::TARGETS {
                assert!(tested.contains(&target), "{target} is never replayed");
            }
        }
    };
}

corpus_tests!(
    shard_spec,
    manifest,
    routing,
    http_router,
    store_model,
    store_concurrent
);
