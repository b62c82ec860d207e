//! The TUN device: created with `TUNSETIFF` on `/dev/net/tun` (it goes away when the
//! descriptor closes), then given its addresses, MTU and routes with `ip` (iproute2).
//!
//! Offloads, as virtio-net and WireGuard's TUN use them: every packet read or written
//! starts with a `virtio_net_hdr` ([`VNET_HDR`] bytes, little-endian), and the kernel
//! hands over a TCP stream's segments as one packet of up to [`GSO_MAX`] bytes (TSO),
//! with its checksum left to whoever delivers it. The tunnel carries such a packet,
//! header and all, as one SDU (the flow splits it into PDUs; the far side's kernel
//! splits it into segments of the device's MTU, or takes it whole): a system call and
//! a flow SDU per 40 segments instead of one per segment.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;

use runtime::config::tun::TunConfig;

/// `TUNSETIFF`: `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// Layer-3 packets, with no packet-information header before each.
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
/// Each packet starts with a `virtio_net_hdr`.
const IFF_VNET_HDR: libc::c_short = 0x4000;
/// `TUNSETOFFLOAD`: `_IOW('T', 208, unsigned int)`, and its flags: unchecksummed
/// packets, TSO for IPv4 and IPv6.
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUN_F_CSUM: libc::c_ulong = 0x01;
const TUN_F_TSO4: libc::c_ulong = 0x02;
const TUN_F_TSO6: libc::c_ulong = 0x04;
/// `TUNSETVNETLE`: `_IOW('T', 220, int)`: the header's fields little-endian.
const TUNSETVNETLE: libc::c_ulong = 0x4004_54dc;

/// Bytes of the `virtio_net_hdr` before each packet.
pub(super) const VNET_HDR: usize = 10;
/// The largest packet the kernel hands over (set on the device; a TCP stream's
/// segments in one, split into PDUs by the flow).
pub(super) const GSO_MAX: usize = 60_000;

/// Creates the TUN device `name` (nonblocking): its descriptor, or why not.
pub(super) fn open(name: &str) -> Result<OwnedFd, String> {
    let path = c"/dev/net/tun";
    // SAFETY: a NUL-terminated path and plain flags; the result is checked.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!(
            "cannot open /dev/net/tun: {e} (is the tun module there?)"
        ));
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // struct ifreq: the name (IFNAMSIZ = 16 bytes, NUL-terminated), then the flags.
    let mut ifr = [0u8; 40];
    ifr[..name.len()].copy_from_slice(name.as_bytes());
    ifr[16..18].copy_from_slice(&(IFF_TUN | IFF_NO_PI | IFF_VNET_HDR).to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes a struct ifreq, which `ifr` is large enough
    // to hold (40 bytes); `fd` is a /dev/net/tun descriptor.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, ifr.as_mut_ptr()) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EPERM) {
            return Err(format!(
                "creating TUN device {name} needs CAP_NET_ADMIN: run it as root, or give \
                 the command the capability (setcap cap_net_admin+ep)"
            ));
        }
        return Err(format!("cannot create TUN device {name}: {e}"));
    }
    let le: libc::c_int = 1;
    // SAFETY: TUNSETVNETLE reads an int through the pointer, which is valid.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETVNETLE, &le) };
    // A little-endian host's headers are little-endian anyway (the call may be
    // missing there); a big-endian one's must be made so, for the far side.
    if r < 0 && cfg!(target_endian = "big") {
        let e = std::io::Error::last_os_error();
        return Err(format!(
            "cannot make TUN device {name}'s headers little-endian: {e}"
        ));
    }
    // SAFETY: TUNSETOFFLOAD takes its flags by value.
    let r = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            TUNSETOFFLOAD,
            TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6,
        )
    };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!("cannot set TUN device {name}'s offloads: {e}"));
    }
    Ok(fd)
}

/// Gives the device its addresses and MTU, brings it up, and routes every peer's
/// prefixes to it.
pub(super) fn configure(c: &TunConfig, mtu: usize) -> Result<(), String> {
    let name = c.name.as_str();
    let mut steps: Vec<Vec<String>> = Vec::new();
    for a in &c.addresses {
        steps.push(vec![
            "addr".into(),
            "add".into(),
            a.to_string(),
            "dev".into(),
            name.into(),
        ]);
    }
    let (mtu, gso) = (mtu.to_string(), GSO_MAX.to_string());
    steps.push(
        [
            "link",
            "set",
            "dev",
            name,
            "mtu",
            &mtu,
            "gso_max_size",
            &gso,
            "up",
        ]
        .map(String::from)
        .to_vec(),
    );
    for p in &c.peers {
        for r in &p.routes {
            steps.push(vec![
                "route".into(),
                "replace".into(),
                r.to_string(),
                "dev".into(),
                name.into(),
            ]);
        }
    }
    for args in steps {
        let out = Command::new("ip")
            .args(&args)
            .output()
            .map_err(|e| format!("cannot run ip (iproute2): {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(())
}
