//! Any datagram into a shim process that has a name registered: never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rina_core::shim::{ShimConfig, ShimProcess};
use rina_core::{ApplicationName, Instant};

fuzz_target!(|data: &[u8]| {
    let mut s = ShimProcess::<u8>::new(ShimConfig::default(), 1);
    s.register(ApplicationName::new("net"));
    for chunk in data.split(|&b| b == 0xff) {
        let _ = s.handle_datagram(Instant::ZERO, 1, chunk);
        while s.poll_transmit().is_some() {}
    }
});
