//! # shims: the I/O of the shim DIFs
//!
//! The protocol of a shim DIF (flow setup, the shim header) lives in
//! `rina_core::shim`; this crate owns the sockets. Every call is a raw system call
//! (rustix), never a libc socket function, so that inside an interposed process the
//! runtime's own I/O never re-enters the LD_PRELOAD hooks.
//!
//! - [`udp`]: the UDP tunnel (IPv4 and IPv6).
//! - [`eth`]: raw Ethernet frames (`AF_PACKET`).
//! - [`batch`]: many datagrams or frames in one system call.

pub mod batch;
pub mod eth;
pub mod high_fd;
pub mod udp;

/// Socket buffer size asked for, each way (the kernel caps it at `net.core.*mem_max`
/// unless running as root, where SO_*BUFFORCE lifts the cap).
const SOCKET_BUFFER: usize = 8 << 20;

/// Asks for [`SOCKET_BUFFER`] bytes of receive and send buffer, forced if allowed.
fn size_buffers(fd: &std::os::fd::OwnedFd) {
    use rustix::net::sockopt;
    let forced = sockopt::set_socket_recv_buffer_size_force(fd, SOCKET_BUFFER)
        .and_then(|()| sockopt::set_socket_send_buffer_size_force(fd, SOCKET_BUFFER));
    if forced.is_err() {
        let _ = sockopt::set_socket_recv_buffer_size(fd, SOCKET_BUFFER)
            .and_then(|()| sockopt::set_socket_send_buffer_size(fd, SOCKET_BUFFER));
    }
}
