//! Any sequence of PDUs into an enrolled IPC process with a neighbour (by reference
//! and in place, alternately): never a panic,
//! and it keeps producing output and deadlines.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rina_core::ipcp::{IpcProcess, IpcpConfig};
use rina_core::{Address, ApplicationName, Instant, N1Port};

fuzz_target!(|data: &[u8]| {
    let mut cfg = IpcpConfig::new("net", ApplicationName::new("fuzz"), 7);
    cfg.bootstrap = Some(Address(1));
    let mut now = Instant::ZERO;
    let mut ipcp = IpcProcess::new(cfg, now);
    ipcp.add_n1_port(now, N1Port(1), 1500, false);
    let _ = ipcp.register(now, ApplicationName::new("app"));
    let mut buf = Vec::new();
    for (i, pdu) in data.split(|&b| b == 0xfe).enumerate() {
        now = Instant::from_micros(now.as_micros() + 1000);
        if i % 2 == 1 {
            let _ = ipcp.handle_pdu_in_place(now, N1Port(1), &mut pdu.to_vec());
        } else {
            ipcp.handle_pdu(now, N1Port(1), pdu);
        }
        ipcp.handle_timeout(now);
        while ipcp.poll_transmit(now, &mut buf).is_some() {}
        while ipcp.poll_event().is_some() {}
    }
});
