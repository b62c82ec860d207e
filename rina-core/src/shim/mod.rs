//! Shim DIF protocol (in progress).
