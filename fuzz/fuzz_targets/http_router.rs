//! See `shardkv_fuzz::http` (fuzz/src/) for what this target checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shardkv_fuzz::http::check(data));
