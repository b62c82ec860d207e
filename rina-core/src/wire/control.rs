//! EFCP control PDU body (filled in by the EFCP work).
