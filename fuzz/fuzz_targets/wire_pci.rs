//! Any bytes: PCI parsing never panics, and what parses re-encodes to the same header.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rina_core::wire::Pci;

fuzz_target!(|data: &[u8]| {
    if let Ok((pci, payload)) = Pci::parse(data) {
        assert_eq!(pci.to_pdu(payload), data);
    }
});
