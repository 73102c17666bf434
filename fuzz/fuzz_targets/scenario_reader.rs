//! Fuzzes the scenario reader of `calloutd test` (crates/harness/src/scenario.rs): any text either
//! becomes a scenario or a list of errors that each name a line inside the text.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/nonexistent/fuzz.toml");
    if let Err(errors) = calloutd_harness::scenario::parse(path, text) {
        assert!(!errors.is_empty(), "a rejected scenario without an error");
        // An error at the very end (after a final newline) is on the line after the last one.
        let lines = text.split('\n').count();
        for error in &errors {
            assert!(
                error.line <= lines,
                "error at line {} of a {lines}-line text: {}",
                error.line,
                error.message
            );
        }
    }
});
