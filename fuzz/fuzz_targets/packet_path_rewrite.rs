//! The packet path of `packet_path`, with the rewriting callout (fixtures/callouts/rewrite.c, built
//! by crates/fixtures) loaded in-process: NewPkt grows the packet in place, PktSend swaps in a
//! buffer of its own, so the engine re-reads a packet the DLL changed and the guard zones are checked
//! on every call.
#![no_main]

use std::sync::{Arc, OnceLock};

use calloutd_callout::{load_callout, CalloutConfig};
use calloutd_engine::Engine;
use libfuzzer_sys::fuzz_target;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let library = calloutd_fixtures::library("rewrite")
            .unwrap_or_else(|e| panic!("building fixtures/callouts/rewrite.c: {e}"));
        let loaded = load_callout(&CalloutConfig {
            dlls: vec![library.display().to_string()],
            enabled: Some(1),
            ..CalloutConfig::default()
        });
        let callout = loaded
            .callout
            .unwrap_or_else(|| panic!("{} did not load: {:?}", library.display(), loaded.report));
        calloutd_fuzz::lab_engine(Arc::new(callout))
    })
}

fuzz_target!(
    // Building the fixture with gcc takes seconds: done before the first input, whose time is
    // limited.
    init: {
        engine();
    },
    |data: &[u8]| {
        calloutd_fuzz::run(engine(), data);
    }
);
