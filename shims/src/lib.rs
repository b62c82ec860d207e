//! Shim I/O (in progress).
