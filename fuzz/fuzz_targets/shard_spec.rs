//! See `shardkv_fuzz::spec` (fuzz/src/) for what this target checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shardkv_fuzz::spec::check(data));
