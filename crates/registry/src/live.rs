//! The live Windows registry as a configuration source (`--registry live`): a key and everything
//! under it read into the same [`RegistryTree`] the `.reg` reader fills. Each value's [`Origin`]
//! names its key and value (`HKEY_LOCAL_MACHINE\...\Parameters\CalloutDlls`, line 0), so every
//! diagnostic says where in the registry a value came from.

use std::path::PathBuf;

use winreg::enums::HKEY_LOCAL_MACHINE;
use winreg::RegKey;

use crate::tree::{Origin, RegistryTree};
use crate::value::{RegValueData, StringBytes};
use crate::Warning;

/// Why the live registry could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{key}: cannot read the registry: {source}")]
pub struct LiveError {
    /// The key that failed to open or enumerate.
    pub key: String,
    /// The system's error.
    pub source: std::io::Error,
}

/// Reads `HKEY_LOCAL_MACHINE\<subkey>` and its subkeys into `tree` (as `reg import` of an export of
/// it would). A value that cannot be read is skipped with a [`Warning`] naming key and value.
pub fn apply_live_hklm(tree: &mut RegistryTree, subkey: &str) -> Result<Vec<Warning>, LiveError> {
    let hklm = RegKey::predef(HKEY_LOCAL_MACHINE);
    let key = hklm.open_subkey(subkey).map_err(|source| LiveError {
        key: format!("HKEY_LOCAL_MACHINE\\{subkey}"),
        source,
    })?;
    let mut warnings = Vec::new();
    copy_key(
        tree,
        &key,
        &format!("HKEY_LOCAL_MACHINE\\{subkey}"),
        &mut warnings,
    )?;
    Ok(warnings)
}

fn copy_key(
    tree: &mut RegistryTree,
    key: &RegKey,
    path: &str,
    warnings: &mut Vec<Warning>,
) -> Result<(), LiveError> {
    let fail = |source| LiveError {
        key: path.to_string(),
        source,
    };
    // An empty key still exists in the tree, as `reg import` creates it.
    tree.create_key(path)
        .map_err(|e| fail(std::io::Error::other(e)))?;
    for value in key.enum_values() {
        let (name, value) = match value {
            Ok(value) => value,
            Err(e) => {
                warnings.push(Warning {
                    file: PathBuf::from(path),
                    line: 0,
                    reason: format!("a value could not be read and was skipped: {e}"),
                });
                continue;
            }
        };
        let origin = Origin {
            file: PathBuf::from(format!("{path}\\{name}")),
            line: 0,
        };
        let data = RegValueData::from_hex(value.vtype as u32, value.bytes, StringBytes::Utf16Le);
        tree.set_value(path, &name, data, Some(origin))
            .map_err(|e| fail(std::io::Error::other(e)))?;
    }
    for name in key.enum_keys() {
        let name = name.map_err(fail)?;
        let sub = key.open_subkey(&name).map_err(|source| LiveError {
            key: format!("{path}\\{name}"),
            source,
        })?;
        copy_key(tree, &sub, &format!("{path}\\{name}"), warnings)?;
    }
    Ok(())
}
