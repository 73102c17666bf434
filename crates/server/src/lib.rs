//! The calloutd runtime: sockets, worker pool and drop accounting, service state.
//!
//! Not for: protocol logic (that is `calloutd-engine`).
