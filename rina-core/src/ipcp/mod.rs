//! The IPC process facade (in progress).
