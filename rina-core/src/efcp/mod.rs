//! EFCP: one connection (DTP + DTCP). Implemented in the submodules; see
//! [`Connection`].
