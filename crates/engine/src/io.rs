//! What crosses between the runtime and the engine (datagrams in, outcomes out, group commit):
//! re-exported from `calloutd-hooks`, which the runtime depends on instead of the engine.

pub use calloutd_hooks::io::{
    Admission, CommitError, CommitTicket, Datagram, HeldReply, Outcome, PacketHandler, Reply,
};
