//! See `shardkv_fuzz::store` (fuzz/src/) for what this target checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shardkv_fuzz::store::check_concurrent(data));
