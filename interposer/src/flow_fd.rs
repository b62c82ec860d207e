//! A stream flow's fd in any process: the runtime's end of its socket pair is bound to
//! an abstract name that says which flow it is and what the application's end shows
//! (`runtime::view`). A process that got the fd without going through our `connect`
//! or `accept` (after exec, from a fork before the table knew it, over `SCM_RIGHTS`)
//! reads it with `getpeername` and adopts the socket: from then on its addresses and
//! TCP options are answered as for any flow of ours.

use std::collections::BTreeMap;

use libc::{c_int, AF_INET6};
use runtime::view::{self, FlowName};

use crate::sockets::{self, Meta, Role};

/// The flow behind `fd`, if its peer is the runtime's end of a stream flow.
pub fn peer_flow(fd: c_int) -> Option<FlowName> {
    peer_flow_named(fd).map(|(_, f)| f)
}

/// [`peer_flow`], and the peer's name it was read from.
pub fn peer_flow_named(fd: c_int) -> Option<(Vec<u8>, FlowName)> {
    let name = crate::sys::unix_name(fd, true)?;
    let flow = view::parse_flow_name(&name)?;
    Some((name, flow))
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
