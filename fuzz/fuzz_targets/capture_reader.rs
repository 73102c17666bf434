//! Fuzzes the capture reader of `calloutd replay` (crates/harness/src/replay.rs): pcap and pcapng
//! files of any shape are read frame by frame, and every frame read is classified without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (frames, _error) = calloutd_harness::replay::read_frames(data);
    for frame in &frames {
        let _ = calloutd_harness::replay::classify(frame);
    }
});
