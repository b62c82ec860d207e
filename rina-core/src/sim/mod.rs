//! Deterministic network simulator (in progress).
