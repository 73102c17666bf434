//! Fuzzes the netsh dump reader: any bytes give a model or errors, never a panic; a model that loads
//! writes as XML that loads to the same model (less the netsh-only server settings XML cannot carry).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(loaded) = calloutd_config::read_netsh(data, "fuzz.txt") {
        let written = calloutd_config::write_xml(&loaded.config);
        let again = calloutd_config::read_xml(written.as_bytes(), "rewritten.xml")
            .unwrap_or_else(|e| panic!("written XML does not load: {e}\n{written}"));
        let mut expected = loaded.config.clone();
        expected.settings = calloutd_config::ServerSettings {
            conflict_detection_attempts: expected.settings.conflict_detection_attempts,
            ..Default::default()
        };
        assert_eq!(again.config, expected, "round trip changed the model");
        let _ = calloutd_config::scope_report(&loaded.config);
    }
});
