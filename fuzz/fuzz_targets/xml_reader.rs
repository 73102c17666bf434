//! Fuzzes the Export-DhcpServer XML reader: any bytes give a model or errors, never a panic; and a model
//! that loads writes back as XML that loads to the same model.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(loaded) = calloutd_config::read_xml(data, "fuzz.xml") {
        let written = calloutd_config::write_xml(&loaded.config);
        let again = calloutd_config::read_xml(written.as_bytes(), "rewritten.xml")
            .unwrap_or_else(|e| panic!("written XML does not load: {e}\n{written}"));
        assert_eq!(again.config, loaded.config, "round trip changed the model");
        let _ = calloutd_config::scope_report(&loaded.config);
    }
});
