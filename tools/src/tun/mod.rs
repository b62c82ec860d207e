//! `rina tun -c RULES`: IP over RINA. A TUN device with the rules' addresses and
//! routes; the packets routed to it go, by destination, over an unreliable flow to
//! the tunnel of the host the rules name (`[[tun.peer]]`), which writes them to its own
//! device. The runtime thread serves the device itself (`runtime/src/driver/tunnel.rs`):
//! this command creates and configures it. So `ping`, `ssh` or `iperf` run unchanged
//! between hosts whose only link is a RINA network. The device's MTU is what one PDU of the DIF carries, so no packet
//! is split. Needs CAP_NET_ADMIN.

mod device;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use runtime::config;
use runtime::{Handle, TunnelRequest};

/// Runs the tunnel of `rules` until SIGINT or SIGTERM.
pub fn tun(rules: &Path) -> ExitCode {
    let c = match crate::load_rules(rules) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(t) = c.tun.clone() else {
        eprintln!(
            "rina tun: {}: no [tun] section: nothing to carry",
            rules.display()
        );
        return ExitCode::from(2);
    };
    if let Some(why) = c.missing_net_raw() {
        eprintln!("rina tun: {}: {why}", rules.display());
        return ExitCode::from(1);
    }
    let dev = match device::open(&t.name) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("rina tun: {e}");
            return ExitCode::from(1);
        }
    };
    let set = crate::block_stop_signals();
    let c = Arc::new(c);
    let handle = match Handle::start_node(c.clone(), "tun") {
        Ok(h) => h,
        Err(e) => {
            eprintln!("rina tun: cannot start the RINA stack: {}", crate::why(e));
            return ExitCode::from(1);
        }
    };
    let result = start(&handle, &c, &t, dev);
    match result {
        Ok(mtu) => eprintln!(
            "rina tun {}: device {} (mtu {mtu}) as {} in {}; SIGINT or SIGTERM stops it",
            std::process::id(),
            t.name,
            t.app,
            c.dif_name(t.dif)
        ),
        Err(e) => {
            eprintln!("rina tun: {e}");
            handle.exit();
            return ExitCode::from(1);
        }
    }
    let sig = crate::wait_for_stop(&set);
    eprintln!("rina tun {}: stopping (signal {sig})", std::process::id());
    handle.exit();
    ExitCode::SUCCESS
}

/// Registers the tunnel's name, sets the device up and starts forwarding: the MTU.
fn start(
    handle: &Handle,
    c: &config::Config,
    t: &config::tun::TunConfig,
    dev: std::os::fd::OwnedFd,
) -> Result<usize, String> {
    // Each SDU is a packet after its virtio_net_hdr: a packet of the MTU and its
    // header fit one PDU.
    let room = handle
        .pdu_payload(t.dif)
        .ok_or("the stack did not say how large its PDUs are")?
        .saturating_sub(device::VNET_HDR);
    let mtu = match t.mtu {
        Some(m) if m > room => {
            return Err(format!(
                "mtu {m} is more than one PDU of DIF {} carries with the packet's \
                 offload header ({room}): packets would be split",
                c.dif_name(t.dif)
            ))
        }
        Some(m) => m,
        None => room.min(65_535),
    };
    let req = TunnelRequest {
        dif: t.dif,
        config: t.clone(),
        device: dev,
        header: device::VNET_HDR,
        timeout: c.settings.connect_timeout,
    };
    handle.tunnel(req).map_err(|e| {
        format!(
            "cannot register {} in DIF {}: {}",
            t.app,
            c.dif_name(t.dif),
            crate::why(e)
        )
    })?;
    device::configure(t, mtu)?;
    Ok(mtu)
}
