//! A stream flow's fd in any process: the runtime's end of its socket pair is bound to
//! an abstract name that says which flow it is and what the application's end shows
//! (`runtime::view`). A process that got the fd without going through our `connect`
//! or `accept` (after exec, from a fork before the table knew it, over `SCM_RIGHTS`)
//! reads it with `getpeername` and adopts the socket: from then on its addresses and
//! TCP options are answered as for any flow of ours.

use std::collections::BTreeMap;

use libc::{c_int, socklen_t, AF_INET6, AF_UNIX};
use runtime::view::{self, FlowName};

use crate::real::real;
use crate::sockets::{self, Meta, Role};

/// The flow behind `fd`, if its peer is the runtime's end of a stream flow.
pub fn peer_flow(fd: c_int) -> Option<FlowName> {
    // SAFETY: sockaddr_un is plain old data; the kernel fills it.
    let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_un>() as socklen_t;
    // SAFETY: the buffer is ours and sized as declared.
    if unsafe { (real().getpeername)(fd, (&raw mut sun).cast(), &mut len) } != 0 {
        return None;
    }
    abstract_name(&sun, len).and_then(|n| view::parse_flow_name(&n))
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

/// What we know of `fd`: the table's entry, or, for the application's end of a flow
/// the table does not know (see the module docs), a new entry made from its name.
/// Costs one system call for a socket that is neither.
pub fn meta(fd: c_int) -> Option<Meta> {
    if let Some(m) = sockets::get(fd) {
        return Some(m);
    }
    adopt(fd)
}

/// Records `fd` as the application's end of the flow its peer's name describes.
pub fn adopt(fd: c_int) -> Option<Meta> {
    let f = peer_flow(fd)?;
    let meta = Meta {
        family: if f.view.local.is_ipv6() {
            AF_INET6
        } else {
            libc::AF_INET
        },
        local: f.view.local,
        role: Role::Connected { peer: f.view.peer },
        options: BTreeMap::new(),
    };
    sockets::set(fd, meta.clone());
    Some(meta)
}
