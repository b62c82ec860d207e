//! Conversions between C socket addresses and [`SocketAddr`], with the kernel's
//! truncation rule for output buffers.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use libc::{c_int, sockaddr, sockaddr_in, sockaddr_in6, socklen_t, AF_INET, AF_INET6};

/// Reads an AF_INET or AF_INET6 address; `None` for any other family or a short
/// length.
///
/// # Safety
/// `addr` must be null or point to at least `len` readable bytes.
pub unsafe fn read(addr: *const sockaddr, len: socklen_t) -> Option<SocketAddr> {
    if addr.is_null() || (len as usize) < size_of::<libc::sa_family_t>() {
        return None;
    }
    // SAFETY: the caller guarantees `len` readable bytes, and we checked the family
    // field fits; unaligned reads because C callers need not align their buffers.
    unsafe {
        match c_int::from((*addr).sa_family) {
            AF_INET if len as usize >= size_of::<sockaddr_in>() => {
                let a = std::ptr::read_unaligned(addr.cast::<sockaddr_in>());
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                    u16::from_be(a.sin_port),
                )))
            }
            AF_INET6 if len as usize >= size_of::<sockaddr_in6>() => {
                let a = std::ptr::read_unaligned(addr.cast::<sockaddr_in6>());
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

/// The C form of `sa` as seen by a socket of `family` (an IPv4 address on an AF_INET6
/// socket becomes IPv4-mapped), as bytes and length.
pub fn encode(sa: SocketAddr, family: c_int) -> (libc::sockaddr_storage, socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut st: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let v6 = |ip: Ipv6Addr, port: u16, flow: u32, scope: u32| sockaddr_in6 {
        sin6_family: AF_INET6 as libc::sa_family_t,
        sin6_port: port.to_be(),
        sin6_flowinfo: flow,
        sin6_addr: libc::in6_addr {
            s6_addr: ip.octets(),
        },
        sin6_scope_id: scope,
    };
    let len = match (sa, family) {
        (SocketAddr::V4(a), AF_INET6) => {
            let s = v6(a.ip().to_ipv6_mapped(), a.port(), 0, 0);
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&raw mut st).cast::<sockaddr_in6>(), s) };
            size_of::<sockaddr_in6>()
        }
        (SocketAddr::V4(a), _) => {
            let s = sockaddr_in {
                sin_family: AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&raw mut st).cast::<sockaddr_in>(), s) };
            size_of::<sockaddr_in>()
        }
        (SocketAddr::V6(a), _) => {
            let s = v6(*a.ip(), a.port(), a.flowinfo(), a.scope_id());
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&raw mut st).cast::<sockaddr_in6>(), s) };
            size_of::<sockaddr_in6>()
        }
    };
    (st, len as socklen_t)
}

/// Writes `sa` for a socket of `family` into a caller's buffer the way the kernel
/// does: at most `*len` bytes are copied, and `*len` is set to the full length.
/// Null pointers are allowed (nothing is written).
///
/// # Safety
/// If non-null, `len` must be valid, and `addr` must have `*len` writable bytes.
pub unsafe fn write(sa: SocketAddr, family: c_int, addr: *mut sockaddr, len: *mut socklen_t) {
    if addr.is_null() || len.is_null() {
        return;
    }
    let (st, full) = encode(sa, family);
    // SAFETY: the caller guarantees `len` is valid and `addr` has `*len` bytes; we
    // copy no more than both sizes allow.
    unsafe {
        let n = (*len).min(full) as usize;
        std::ptr::copy_nonoverlapping((&raw const st).cast::<u8>(), addr.cast::<u8>(), n);
        *len = full;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_truncates() {
        for (s, fam) in [("127.0.0.1:5000", AF_INET), ("[fd00::1]:80", AF_INET6)] {
            let sa: SocketAddr = s.parse().unwrap();
            let (st, len) = encode(sa, fam);
            // SAFETY: `st` holds `len` valid bytes.
            let back = unsafe { read((&raw const st).cast(), len) };
            assert_eq!(back, Some(sa));
        }
        let sa: SocketAddr = "10.1.2.3:9".parse().unwrap();
        let (st, len) = encode(sa, AF_INET6);
        assert_eq!(len as usize, size_of::<sockaddr_in6>());
        // SAFETY: as above.
        let back = unsafe { read((&raw const st).cast(), len) }.unwrap();
        assert_eq!(back.to_string(), "[::ffff:10.1.2.3]:9");
        // Truncation: a 4-byte buffer gets 4 bytes and the full length.
        let mut buf = [0xAAu8; 8];
        let mut l: socklen_t = 4;
        // SAFETY: buf has 8 bytes, l says 4.
        unsafe { write(sa, AF_INET, buf.as_mut_ptr().cast(), &mut l) };
        assert_eq!(l as usize, size_of::<sockaddr_in>());
        assert_eq!(&buf[4..], &[0xAA; 4]);
        // SAFETY: a too-short length is rejected before any read.
        assert_eq!(unsafe { read(buf.as_ptr().cast(), 1) }, None);
        // SAFETY: a null pointer is rejected before any read.
        assert_eq!(unsafe { read(std::ptr::null(), 16) }, None);
    }
}
