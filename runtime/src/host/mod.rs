//! The host member (issue 13): programs whose rules say `stack = "host"` run no stack
//! of their own; their calls go over a local socket to one long-lived `rina node` of
//! their host (network namespace), which holds the DIFs, their keys and the shims.
//!
//! The flow's data path is unchanged: the program's fd is its end of a kernel socket
//! pair, and the other end goes to the host member with `SCM_RIGHTS`, which pumps it
//! as a program's own stack would. So a flow outlives the program that made it, as a
//! TCP connection does (exec, a daemon's fork, children), with no keeper.
//!
//! - [`wire`]: the messages and how they travel;
//! - [`client`]: a program's session;
//! - the host member's side is the runtime's (`driver/host.rs`), with who may do what
//!   in [`crate::config::HostService`].

pub(crate) mod client;
pub(crate) mod wire;
