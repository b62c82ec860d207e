//! # runtime: one thread that runs the RINA stack inside a process
//!
//! The runtime is the one place with a thread, a clock and an event loop (DESIGN.md
//! D3). It loads the rules ([`config`]), starts lazily on the first call a rule
//! matches, drives the rina-core IPC processes and the shims, and pumps bytes between
//! each flow and the application's socket with back-pressure. The interposer talks to
//! it only through [`Handle`] ([`api`]).

pub mod api;
pub mod config;
pub mod datagram;
mod driver;
mod handle;
mod host;
pub mod keys;
mod link;
mod log;
pub mod pending;
pub mod proxy_header;
mod pump;
pub mod report;
mod stack;
pub mod synthetic;
mod transmits;
pub mod view;

pub use api::{
    AppEnd, ConnectRequest, FlowError, FlowInfo, FlowKind, ListenRequest, ListenTarget,
    TunnelRequest,
};
pub use driver::{
    inline_receives, inline_sends, on_runtime_thread, Spin, APP_SOCKET_BUFFER, INLINE_MAX,
};
pub use handle::Handle;
