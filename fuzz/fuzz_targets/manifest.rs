//! See `shardkv_fuzz::manifest` (fuzz/src/) for what this target checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shardkv_fuzz::manifest::check(data));
