//! # shims: the I/O of the shim DIFs
//!
//! The protocol of a shim DIF (flow setup, the shim header) lives in
//! `rina_core::shim`; this crate owns the sockets. Every call is a raw system call
//! (rustix), never a libc socket function, so that inside an interposed process the
//! runtime's own I/O never re-enters the LD_PRELOAD hooks.
//!
//! - [`udp`]: the UDP tunnel (IPv4 and IPv6).
//! - [`eth`]: raw Ethernet frames (`AF_PACKET`).

pub mod eth;
pub mod udp;
