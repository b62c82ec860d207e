//! Any frames into an Ethernet shim process that has a name registered and a name
//! being resolved: never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rina_core::shim::eth::{EthConfig, EthPeer, EthShim};
use rina_core::{ApplicationName, Instant};

fuzz_target!(|data: &[u8]| {
    let me = EthPeer { mac: [2, 0, 0, 0, 0, 1], demux: 1 };
    let mut s = EthShim::new(EthConfig::default(), me, 1);
    s.register(ApplicationName::new("net"));
    let _ = s.resolve(Instant::ZERO, &ApplicationName::new("peer"));
    for chunk in data.split(|&b| b == 0xfe) {
        let _ = s.handle_frame(Instant::ZERO, [2, 0, 0, 0, 0, 2], chunk);
        while s.poll_transmit().is_some() {}
        while s.poll_event().is_some() {}
    }
});
