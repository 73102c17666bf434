//! Registry-style configuration: `.reg` files (REGEDIT4 and version 5) read into a case-insensitive
//! tree of typed values, a writer for version 5 files, and the typed [`Parameters`] view of
//! `HKLM\SYSTEM\CurrentControlSet\Services\DHCPServer\Parameters` (docs/config.md sections 1-2).
//!
//! Reading follows regedit: files apply in order onto one [`RegistryTree`], lines in file order, the
//! last assignment wins, names compare case-insensitively. Where regedit silently skips a line, this
//! crate skips it too but returns a [`Warning`] with file, line and reason; only an unreadable file or
//! a bad header is an error ([`RegError`]). Offline-hive exports (`ControlSet001`) are found through
//! `CurrentControlSet` lookups.
//!
//! Not for: DHCP scopes (see `calloutd-config`). On Windows, `apply_live_hklm` reads the live
//! registry into the same [`RegistryTree`].
//!
//! ```
//! use std::path::Path;
//! use calloutd_registry::{write_parameters_reg, Parameters, RegistryTree};
//!
//! let bytes = write_parameters_reg(&["/opt/callouts/a.so"], Some(1));
//! let mut tree = RegistryTree::new();
//! let warnings = tree.apply_bytes(&bytes, Path::new("dhcp.reg")).unwrap();
//! assert!(warnings.is_empty());
//! let params = Parameters::from_tree(&tree).unwrap();
//! assert!(params.callouts_enabled());
//! let dlls = params.callout_dlls.unwrap();
//! assert_eq!(dlls.value, ["/opt/callouts/a.so"]);
//! assert_eq!(dlls.location(), "dhcp.reg:4");
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod expand;
#[cfg(windows)]
mod live;
mod params;
mod parse;
mod text;
mod tree;
mod value;
mod write;

pub use error::{RegError, Warning};
pub use expand::{expand_path, expand_variables, place_setting, ExpandedPath};
#[cfg(windows)]
pub use live::{apply_live_hklm, LiveError};
pub use params::{
    Located, Parameters, ParametersError, UnusedValue, ValueTypeError, DEFAULT_ACTIVITY_LOG_FLAG,
    DEFAULT_BACKUP_DATABASE_PATH, DEFAULT_BACKUP_INTERVAL_MINUTES,
    DEFAULT_DATABASE_CLEANUP_INTERVAL_MINUTES, DEFAULT_DATABASE_NAME, DEFAULT_DATABASE_PATH,
    DEFAULT_DHCP_LOG_DISK_SPACE_CHECK_INTERVAL, DEFAULT_DHCP_LOG_FILES_MAX_SIZE_MB,
    DEFAULT_DHCP_LOG_FILE_PATH, DEFAULT_DHCP_LOG_MIN_SPACE_ON_DISK_MB,
    DEFAULT_IGNORE_BROADCAST_FLAG,
};
pub use parse::{HEADER_V4, HEADER_V5};
pub use text::decode_reg_bytes;
pub use tree::{Origin, RegKey, RegValue, RegistryTree, ROOT_KEYS};
pub use value::{
    kind_name, RegValueData, StringBytes, REG_BINARY, REG_DWORD, REG_DWORD_BIG_ENDIAN,
    REG_EXPAND_SZ, REG_FULL_RESOURCE_DESCRIPTOR, REG_LINK, REG_MULTI_SZ, REG_NONE, REG_QWORD,
    REG_RESOURCE_LIST, REG_RESOURCE_REQUIREMENTS_LIST, REG_SZ,
};
pub use write::{
    parameters_tree, reg_v5_text, write_parameters_reg, write_reg_v5, write_reg_v5_file,
    DHCP_PARAMETERS_KEY,
};
