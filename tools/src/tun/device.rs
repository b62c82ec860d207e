//! The TUN device: created with `TUNSETIFF` on `/dev/net/tun` (it goes away when the
//! descriptor closes), then given its addresses, MTU and routes with `ip` (iproute2).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;

use runtime::config::tun::TunConfig;

/// `TUNSETIFF`: `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// Layer-3 packets, with no packet-information header before each.
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

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
    ifr[16..18].copy_from_slice(&(IFF_TUN | IFF_NO_PI).to_ne_bytes());
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
    let mtu = mtu.to_string();
    steps.push(
        ["link", "set", "dev", name, "mtu", &mtu, "up"]
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
