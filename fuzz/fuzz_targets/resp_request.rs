#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| redru_server::fuzz_request(data));
