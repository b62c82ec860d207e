//! The name-lookup hooks: `getaddrinfo`, `gethostbyname`, `gethostbyname2` and their
//! `_r` forms. A host name a `[[name]]` rule matches is looked up by libc itself in
//! the numeric form of its synthetic address ([`crate::names`]), so results are
//! libc's own (freed by the real `freeaddrinfo`) and no DNS query is made; every
//! other name goes to libc untouched. Each goes through [`crate::detour`]: a panic
//! while deciding fails the lookup (`EAI_FAIL`, or `NO_RECOVERY`) and never reaches
//! DNS.

use std::ffi::CStr;

use libc::{addrinfo, c_char, c_int, hostent, size_t};

use crate::detour;
use crate::names::{self, Lookup};
use crate::state;
use crate::sys::real::real;

/// What a panic while deciding a lookup gives: a failure, never [`Lookup::Pass`] (a
/// rule may have matched the name; fail closed, D4).
const ON_PANIC: Lookup = Lookup::Failed;

/// What to do with a lookup of `name`.
fn decide(name: *const c_char) -> Lookup {
    if name.is_null() {
        return Lookup::Pass;
    }
    // Rules without host-name rules: nothing to decide (no guard, no unwinding frame).
    if state::rules().is_none_or(|r| r.names.is_empty()) {
        return Lookup::Pass;
    }
    detour::choose(
        || {
            // SAFETY: a non-null name is a NUL-terminated string, per the functions'
            // contracts.
            names::lookup(unsafe { CStr::from_ptr(name) })
        },
        ON_PANIC,
    )
    .unwrap_or(Lookup::Pass)
}

/// getaddrinfo(3).
///
/// # Safety
/// As getaddrinfo(3).
#[no_mangle]
pub unsafe extern "C" fn getaddrinfo(
    node: *const c_char,
    service: *const c_char,
    hints: *const addrinfo,
    res: *mut *mut addrinfo,
) -> c_int {
    let ip = match decide(node) {
        // SAFETY: forwarding the caller's arguments.
        Lookup::Pass => return unsafe { (real().getaddrinfo)(node, service, hints, res) },
        Lookup::NoName => return libc::EAI_NONAME,
        Lookup::Failed => return libc::EAI_FAIL,
        Lookup::Address(ip) => ip,
    };
    let mut h: addrinfo = if hints.is_null() {
        // SAFETY: addrinfo is plain old data; all-zero hints ask for anything.
        unsafe { std::mem::zeroed() }
    } else {
        // SAFETY: non-null hints point to a valid addrinfo, per getaddrinfo(3).
        unsafe { std::ptr::read(hints) }
    };
    h.ai_flags |= libc::AI_NUMERICHOST;
    let numeric = names::numeric(ip, h.ai_family);
    // SAFETY: our NUL-terminated numeric host and hints; the caller's service and res.
    unsafe { (real().getaddrinfo)(numeric.as_ptr(), service, &h, res) }
}

/// gethostbyname(3).
///
/// # Safety
/// As gethostbyname(3).
#[no_mangle]
pub unsafe extern "C" fn gethostbyname(name: *const c_char) -> *mut hostent {
    match decide(name) {
        // SAFETY: forwarding the caller's argument.
        Lookup::Pass => unsafe { (real().gethostbyname)(name) },
        Lookup::NoName => host_not_found(HOST_NOT_FOUND),
        Lookup::Failed => host_not_found(NO_RECOVERY),
        // SAFETY: libc looks up our NUL-terminated numeric host.
        Lookup::Address(ip) => unsafe {
            (real().gethostbyname)(names::numeric(ip, libc::AF_INET).as_ptr())
        },
    }
}

/// gethostbyname2(3).
///
/// # Safety
/// As gethostbyname2(3).
#[no_mangle]
pub unsafe extern "C" fn gethostbyname2(name: *const c_char, af: c_int) -> *mut hostent {
    match decide(name) {
        // SAFETY: forwarding the caller's arguments.
        Lookup::Pass => unsafe { (real().gethostbyname2)(name, af) },
        Lookup::NoName => host_not_found(HOST_NOT_FOUND),
        Lookup::Failed => host_not_found(NO_RECOVERY),
        // SAFETY: libc looks up our NUL-terminated numeric host.
        Lookup::Address(ip) => unsafe {
            (real().gethostbyname2)(names::numeric(ip, af).as_ptr(), af)
        },
    }
}

/// gethostbyname_r(3).
///
/// # Safety
/// As gethostbyname_r(3).
#[no_mangle]
pub unsafe extern "C" fn gethostbyname_r(
    name: *const c_char,
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: size_t,
    result: *mut *mut hostent,
    h_errnop: *mut c_int,
) -> c_int {
    match decide(name) {
        // SAFETY: forwarding the caller's arguments.
        Lookup::Pass => unsafe {
            (real().gethostbyname_r)(name, ret, buf, buflen, result, h_errnop)
        },
        Lookup::NoName => {
            // SAFETY: the caller's out-pointers, valid per gethostbyname_r(3).
            unsafe { not_found(result, h_errnop, HOST_NOT_FOUND) };
            0
        }
        Lookup::Failed => {
            // SAFETY: as above.
            unsafe { not_found(result, h_errnop, NO_RECOVERY) };
            0
        }
        Lookup::Address(ip) => {
            let n = names::numeric(ip, libc::AF_INET);
            // SAFETY: our numeric host; the caller's buffers.
            unsafe { (real().gethostbyname_r)(n.as_ptr(), ret, buf, buflen, result, h_errnop) }
        }
    }
}

/// gethostbyname2_r(3).
///
/// # Safety
/// As gethostbyname2_r(3).
#[no_mangle]
pub unsafe extern "C" fn gethostbyname2_r(
    name: *const c_char,
    af: c_int,
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: size_t,
    result: *mut *mut hostent,
    h_errnop: *mut c_int,
) -> c_int {
    match decide(name) {
        // SAFETY: forwarding the caller's arguments.
        Lookup::Pass => unsafe {
            (real().gethostbyname2_r)(name, af, ret, buf, buflen, result, h_errnop)
        },
        Lookup::NoName => {
            // SAFETY: the caller's out-pointers, valid per gethostbyname2_r(3).
            unsafe { not_found(result, h_errnop, HOST_NOT_FOUND) };
            0
        }
        Lookup::Failed => {
            // SAFETY: as above.
            unsafe { not_found(result, h_errnop, NO_RECOVERY) };
            0
        }
        Lookup::Address(ip) => {
            let n = names::numeric(ip, af);
            // SAFETY: our numeric host; the caller's buffers.
            unsafe { (real().gethostbyname2_r)(n.as_ptr(), af, ret, buf, buflen, result, h_errnop) }
        }
    }
}

const HOST_NOT_FOUND: c_int = 1;
const NO_RECOVERY: c_int = 3;

/// Reports a failed lookup as `gethostbyname` does: a null result and `h_errno`
/// (`code`).
fn host_not_found(code: c_int) -> *mut hostent {
    crate::sys::set_h_errno(code);
    std::ptr::null_mut()
}

/// Reports a failed lookup (`code`) through the `_r` functions' out-pointers.
///
/// # Safety
/// Each pointer null or valid for a write.
unsafe fn not_found(result: *mut *mut hostent, h_errnop: *mut c_int, code: c_int) {
    // SAFETY: per the caller.
    unsafe {
        if !result.is_null() {
            *result = std::ptr::null_mut();
        }
        if !h_errnop.is_null() {
            *h_errnop = code;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic while deciding a lookup fails it: it never reaches libc's resolver
    /// (DNS), since a rule may have matched the name.
    #[test]
    fn a_panic_in_a_lookup_never_reaches_dns() {
        let out = detour::guarded(|| panic!("a bug while matching"), ON_PANIC);
        assert_eq!(out, Lookup::Failed);
        assert_eq!(detour::guarded(|| Lookup::Pass, ON_PANIC), Lookup::Pass);
    }
}
