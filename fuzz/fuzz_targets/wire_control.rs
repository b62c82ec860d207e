//! Any bytes: EFCP control bodies decode without panicking.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rina_core::wire::control::ControlRepr;

fuzz_target!(|data: &[u8]| {
    let _ = ControlRepr::parse(data);
});
