#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| redru_testkit::fuzz::model(data));
