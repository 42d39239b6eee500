#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| redru_cli::shell::fuzz_parse(data));
