#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| onestep_sr::fuzzing::tokenizer(data));
