//! Fuzzes the packet path without a callout: the HandleOptions view of the datagram (the option
//! spans a callout's `DHCP_SERVER_OPTIONS` points at), then the engine's whole pipeline (decode,
//! scope selection, allocation, the reply build) over an in-memory lease store and the lab scopes of
//! `fixtures/config/lab-netsh.txt`. The first input byte picks the admission and the addresses the
//! datagram arrived on; the rest is the UDP payload.
#![no_main]

use std::sync::{Arc, OnceLock};

use calloutd_engine::{Engine, NoHooks};
use libfuzzer_sys::fuzz_target;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| calloutd_fuzz::lab_engine(Arc::new(NoHooks)))
}

fuzz_target!(|data: &[u8]| {
    calloutd_fuzz::run(engine(), data);
});
