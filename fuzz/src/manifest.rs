//! Any bytes as `MANIFEST`: reading never panics; a refusal is an error naming the file; a
//! manifest that reads lists one distinct file per range and survives a write and a second
//! read.

use shardkv::fuzzing::{MANIFEST_FILE, Manifest};

pub fn check(data: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(MANIFEST_FILE), data).unwrap();
    match Manifest::read(dir.path()) {
        Err(e) => {
            let said = e.to_string();
            assert!(
                said.contains(MANIFEST_FILE),
                "an error that names no file: {said}"
            );
        }
        Ok(None) => panic!("a MANIFEST that exists read as absent"),
        Ok(Some(manifest)) => {
            assert_eq!(manifest.shards.len(), manifest.scheme.shard_count());
            let distinct: std::collections::BTreeSet<&String> = manifest.shards.iter().collect();
            assert_eq!(
                distinct.len(),
                manifest.shards.len(),
                "one file for two shards"
            );
            let again = tempfile::tempdir().unwrap();
            manifest.write(again.path()).unwrap();
            let reread = Manifest::read(again.path()).unwrap().unwrap();
            assert_eq!(reread, manifest);
        }
    }
}
