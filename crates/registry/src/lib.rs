//! Registry-style configuration: `.reg` files (REGEDIT4 and version 5) read into a case-insensitive
//! tree of typed values, and the typed `Parameters` view of
//! `HKLM\SYSTEM\CurrentControlSet\Services\DHCPServer\Parameters`.
//!
//! Not for: DHCP scopes (see `calloutd-config`).
