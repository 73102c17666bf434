//! A DHCPv4 client library (DORA, renew, rebind, release, decline, inform, BOOTP; relay mode) and a
//! load generator.
//!
//! Not for: anything of the server; it must not depend on the server crates.
