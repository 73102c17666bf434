//! Finds and loads the callout DLL as Microsoft DHCP Server does, and calls its hooks safely.
//!
//! Not for: the DHCP state machine.
