//! Management messages (filled in by the IPCP work).
