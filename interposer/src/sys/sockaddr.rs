//! C socket addresses: conversions between them and [`SocketAddr`], abstract AF_UNIX
//! names, and the buffers a caller hands a hook to be written ([`AddrBuf`] for an
//! address, [`OptBuf`] for an option's value) with the kernel's truncation rule. The
//! raw pointers stay here: a hook's shell wraps the caller's pointers once, under the
//! `# Safety` contract of the wrapper's constructor, and the decisions use safe methods.

use std::marker::PhantomData;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use libc::{
    c_int, c_void, sockaddr, sockaddr_in, sockaddr_in6, socklen_t, AF_INET, AF_INET6, AF_UNIX,
};

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
    let mut st = storage();
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

/// An all-zero `sockaddr_storage`, for the kernel to fill.
pub fn storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// An all-zero `sockaddr_un`, for the kernel to fill.
pub fn unix_storage() -> libc::sockaddr_un {
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Reads the INET address the kernel wrote (`len` bytes) into `st`.
pub fn decode(st: &libc::sockaddr_storage, len: socklen_t) -> Option<SocketAddr> {
    let len = len.min(size_of::<libc::sockaddr_storage>() as socklen_t);
    // SAFETY: `st` has at least `len` readable bytes.
    unsafe { read((st as *const libc::sockaddr_storage).cast(), len) }
}

/// The abstract AF_UNIX address `name` (truncated to fit), and its length.
pub fn abstract_address(name: &[u8]) -> (libc::sockaddr_un, socklen_t) {
    let mut sun = unix_storage();
    sun.sun_family = AF_UNIX as libc::sa_family_t;
    let n = name.len().min(sun.sun_path.len() - 1);
    for (i, b) in name[..n].iter().enumerate() {
        sun.sun_path[i + 1] = *b as libc::c_char;
    }
    (sun, (size_of::<libc::sa_family_t>() + 1 + n) as socklen_t)
}

/// The abstract name in `sun` (without its leading NUL), if it holds one.
pub fn abstract_name(sun: &libc::sockaddr_un, len: socklen_t) -> Option<Vec<u8>> {
    let off = size_of::<libc::sa_family_t>();
    let len = (len as usize).min(size_of::<libc::sockaddr_un>());
    if c_int::from(sun.sun_family) != AF_UNIX || len <= off + 1 || sun.sun_path[0] != 0 {
        return None;
    }
    Some(
        sun.sun_path[1..len - off]
            .iter()
            .map(|&c| c as u8)
            .collect(),
    )
}

/// A caller's buffer for a socket address (`addr`, `len` as `accept`, `getsockname`
/// or `recvfrom` take them), with the capacity `*len` had when it was wrapped.
#[derive(Debug)]
pub struct AddrBuf<'a> {
    addr: *mut sockaddr,
    len: *mut socklen_t,
    cap: socklen_t,
    _caller: PhantomData<&'a mut sockaddr>,
}

impl AddrBuf<'_> {
    /// Wraps a caller's buffer; its capacity is `*len` now (0 if `len` is null).
    ///
    /// # Safety
    /// For as long as the wrapper lives: `len` null or valid for reads and writes, and
    /// `addr` null or valid for writes of the capacity's bytes (and for reads of as
    /// many as the kernel wrote there).
    pub unsafe fn new(addr: *mut sockaddr, len: *mut socklen_t) -> Self {
        // SAFETY: `len` is valid when non-null, per the contract.
        let cap = if len.is_null() { 0 } else { unsafe { *len } };
        Self {
            addr,
            len,
            cap,
            _caller: PhantomData,
        }
    }

    /// Wraps a caller's buffer of `cap` bytes (its size before a call that wrote it).
    ///
    /// # Safety
    /// As for [`AddrBuf::new`], with `cap` as the capacity.
    pub unsafe fn with_capacity(addr: *mut sockaddr, len: *mut socklen_t, cap: socklen_t) -> Self {
        Self {
            addr,
            len,
            cap,
            _caller: PhantomData,
        }
    }

    /// True if either pointer is null (nothing can be written).
    pub fn is_null(&self) -> bool {
        self.addr.is_null() || self.len.is_null()
    }

    /// True for an address buffer without a length (EFAULT).
    pub fn lacks_len(&self) -> bool {
        !self.addr.is_null() && self.len.is_null()
    }

    /// The INET address the kernel wrote into the buffer (at most its capacity).
    pub fn written(&self) -> Option<SocketAddr> {
        if self.is_null() {
            return None;
        }
        // SAFETY: `len` is valid and `addr` holds what the kernel wrote, of which at
        // most `cap` bytes are in the buffer (the contract of `new`).
        unsafe { read(self.addr, (*self.len).min(self.cap)) }
    }

    /// The address family the kernel wrote into the buffer, if it wrote one.
    pub fn written_family(&self) -> Option<c_int> {
        if self.is_null() {
            return None;
        }
        // SAFETY: as in `written`; the family is read only if it is in the buffer.
        unsafe {
            ((*self.len).min(self.cap) as usize >= size_of::<libc::sa_family_t>()).then(|| {
                c_int::from(std::ptr::read_unaligned(
                    self.addr.cast::<libc::sa_family_t>(),
                ))
            })
        }
    }

    /// Writes `sa` for a socket of `family` the way the kernel does: at most the
    /// capacity is copied, and `*len` is set to the full length. Nothing is written
    /// if either pointer is null.
    pub fn write(&self, sa: SocketAddr, family: c_int) {
        if self.is_null() {
            return;
        }
        let (st, full) = encode(sa, family);
        // SAFETY: `addr` has `cap` writable bytes and `len` is valid (the contract of
        // `new`); we copy no more than both sizes allow.
        unsafe {
            let n = self.cap.min(full) as usize;
            std::ptr::copy_nonoverlapping((&raw const st).cast::<u8>(), self.addr.cast::<u8>(), n);
            *self.len = full;
        }
    }
}

/// A caller's buffer for a socket option's value (`val`, `len` as `getsockopt` takes
/// them), with the capacity `*len` had when it was wrapped.
#[derive(Debug)]
pub struct OptBuf<'a> {
    val: *mut c_void,
    len: *mut socklen_t,
    cap: socklen_t,
    _caller: PhantomData<&'a mut c_void>,
}

impl OptBuf<'_> {
    /// Wraps a caller's buffer; its capacity is `*len` now (0 if `len` is null).
    ///
    /// # Safety
    /// For as long as the wrapper lives: `len` null or valid for reads and writes, and
    /// `val` null or valid for reads and writes of the capacity's bytes.
    pub unsafe fn new(val: *mut c_void, len: *mut socklen_t) -> Self {
        // SAFETY: `len` is valid when non-null, per the contract.
        let cap = if len.is_null() { 0 } else { unsafe { *len } };
        Self {
            val,
            len,
            cap,
            _caller: PhantomData,
        }
    }

    /// Answers `v`: at most the capacity is copied, and `*len` is set to what was
    /// copied. `false` (nothing written) if either pointer is null.
    pub fn answer(&self, v: &[u8]) -> bool {
        if self.val.is_null() || self.len.is_null() {
            return false;
        }
        // SAFETY: checked non-null; at most `cap` bytes are written (the contract of
        // `new`).
        unsafe {
            let n = (self.cap as usize).min(v.len());
            std::ptr::copy_nonoverlapping(v.as_ptr(), self.val.cast::<u8>(), n);
            *self.len = n as socklen_t;
        }
        true
    }

    /// The int the kernel wrote, if the buffer holds one.
    pub fn written_int(&self) -> Option<c_int> {
        if self.val.is_null() || (self.cap as usize) < size_of::<c_int>() {
            return None;
        }
        // SAFETY: non-null with room for an int (the contract of `new`).
        Some(unsafe { std::ptr::read_unaligned(self.val.cast::<c_int>()) })
    }
}

/// A caller's option value (`val`, `len` as `setsockopt` takes them) as bytes; `None`
/// for a null `val` with a non-zero length (EFAULT).
///
/// # Safety
/// `val` null or valid for reads of `len` bytes, for the lifetime `'a`.
pub unsafe fn option_value<'a>(val: *const c_void, len: socklen_t) -> Option<&'a [u8]> {
    match (val.is_null(), len) {
        (true, 0) => Some(&[]),
        (true, _) => None,
        // SAFETY: `len` readable bytes at `val`, per the contract.
        (false, _) => Some(unsafe { std::slice::from_raw_parts(val.cast::<u8>(), len as usize) }),
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
        unsafe { AddrBuf::new(buf.as_mut_ptr().cast(), &mut l) }.write(sa, AF_INET);
        assert_eq!(l as usize, size_of::<sockaddr_in>());
        assert_eq!(&buf[4..], &[0xAA; 4]);
        // SAFETY: a too-short length is rejected before any read.
        assert_eq!(unsafe { read(buf.as_ptr().cast(), 1) }, None);
        // SAFETY: a null pointer is rejected before any read.
        assert_eq!(unsafe { read(std::ptr::null(), 16) }, None);
    }
}
