//! Any bytes: management messages decode without panicking and re-encode exactly.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rina_core::wire::mgmt::MgmtMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = MgmtMessage::decode(data) {
        assert_eq!(MgmtMessage::decode(&m.encode()).as_ref(), Ok(&m));
    }
});
