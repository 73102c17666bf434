//! Fuzzes the `.reg` reader: any bytes give a tree (with warnings) or an error, never a panic; the
//! Parameters view reads whatever the tree holds; a tree that was read writes as a version 5 file
//! that reads back without error.
#![no_main]

use std::path::Path;

use calloutd_registry::{expand_path, write_reg_v5, Parameters, RegistryTree};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut tree = RegistryTree::new();
    if tree.apply_bytes(data, Path::new("fuzz.reg")).is_err() {
        return;
    }
    if let Ok(params) = Parameters::from_tree(&tree) {
        let data_dir = Path::new("/var/lib/calloutd");
        let _ = expand_path(params.database_path_or_default(), data_dir);
        let _ = expand_path(params.backup_database_path_or_default(), data_dir);
        let _ = expand_path(params.dhcp_log_file_path_or_default(), data_dir);
        let _ = params.backup_interval_minutes();
        let _ = params.database_cleanup_interval_minutes();
    }
    let written = write_reg_v5(&tree);
    let mut again = RegistryTree::new();
    if let Err(error) = again.apply_bytes(&written, Path::new("rewritten.reg")) {
        panic!("a tree that was read writes as a file that does not read: {error}");
    }
});
