//! TCP ingress: each accepted connection becomes the application socket of a stream
//! flow to the rule's application. The runtime pumps the connection itself (no copy
//! in this process, back-pressure both ways through the kernel's buffers and EFCP's
//! window, half-close both ways). A flow that cannot be made resets the connection
//! (RST), as a TCP proxy whose upstream refuses does.

use std::os::fd::{BorrowedFd, OwnedFd};

use runtime::config::Ingress;
use runtime::view::FlowView;
use runtime::{AppEnd, ConnectRequest, Handle};
use rustix::net::{self, sockopt, SocketFlags};

/// Accepts every connection waiting on `listener`. False if it must rest: the
/// process is out of descriptors or memory, and the connections wait in the backlog
/// (the listener, level-triggered, would otherwise wake the loop without end).
pub(super) fn accept_all(handle: &Handle, rule: &Ingress, listener: BorrowedFd<'_>) -> bool {
    use rustix::io::Errno;
    loop {
        match net::acceptfrom_with(listener, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK) {
            Ok((conn, from)) => {
                let from = from.and_then(|a| std::net::SocketAddr::try_from(a).ok());
                start_flow(handle, rule, conn, from);
            }
            Err(Errno::INTR | Errno::CONNABORTED) => {}
            Err(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM) => return false,
            Err(_) => return true,
        }
    }
}

/// Asks for the flow of `conn`; its client's address and the address it connected
/// to go with the request (an egress with the PROXY protocol on passes them on).
fn start_flow(handle: &Handle, rule: &Ingress, conn: OwnedFd, from: Option<std::net::SocketAddr>) {
    let _ = sockopt::set_tcp_nodelay(&conn, true);
    let to = net::getsockname(&conn)
        .ok()
        .and_then(|a| std::net::SocketAddr::try_from(a).ok());
    let view = from.zip(to).map(|(local, peer)| FlowView { local, peer });
    // Kept to reset the connection if the flow is refused (the runtime closes its
    // own descriptor of it then).
    let Ok(keep) = rustix::io::dup(&conn) else {
        return reset(conn);
    };
    let req = ConnectRequest {
        dif: rule.dif,
        local_app: rule.local_app.clone(),
        remote_app: rule.app.clone(),
        end: AppEnd::Stream(conn),
        view,
        recv_buffer: None,
        timeout: handle.config().settings.connect_timeout,
    };
    handle.connect_then(req, move |r| match r {
        Ok(_) => drop(keep),
        Err(_) => reset(keep),
    });
}

/// Closes `conn` with a reset: its client's next read or write fails with
/// ECONNRESET.
fn reset(conn: OwnedFd) {
    let _ = sockopt::set_socket_linger(&conn, Some(std::time::Duration::ZERO));
    drop(conn);
}
