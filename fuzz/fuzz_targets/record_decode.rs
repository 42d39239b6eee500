#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| redru_testkit::fuzz::record_decode(data));
