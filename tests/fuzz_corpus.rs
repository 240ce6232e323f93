//! Replays every committed fuzz corpus input (`fuzz/corpus/<target>/*`, including what
//! fuzzing found) through the same check the fuzz target runs, on stable Rust, so that a
//! regression of anything the fuzzers once found fails the normal test suite.

#[path = "../fuzz/src/lib.rs"]
mod checks;

use std::path::Path;

#[test]
fn every_corpus_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (target, check) in checks::TARGETS {
        let dir = root.join(target);
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
        eprintln!("{target}: {} inputs", inputs.len());
    }
}
