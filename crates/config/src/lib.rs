//! The DHCP server model (Scope, ExclusionRange, Reservation, OptionDefinition, OptionValue, Class,
//! Filters, Policy), the readers that fill it from Export-DhcpServer XML and `netsh dhcp server dump`,
//! validation with `file:line` errors, option resolution by Microsoft's precedence, and an
//! Export-DhcpServer XML writer.
//!
//! Not for: any I/O beyond reading its inputs (and writing the XML it is asked for), or DHCP protocol
//! logic (the engine owns that; it asks [`effective_options`] what to send).
//!
//! ```
//! let netsh = "Dhcp Server \\\\lab add scope 198.18.0.0 255.255.255.0 \"lab\" \"\"\n\
//!              Dhcp Server \\\\lab Scope 198.18.0.0 Add iprange 198.18.0.10 198.18.0.200\n\
//!              Dhcp Server \\\\lab Scope 198.18.0.0 set optionvalue 3 IPADDRESS \"198.18.0.1\"\n";
//! let loaded = calloutd_config::read_scopes(netsh.as_bytes(), "lab.txt").unwrap();
//! let scope = &loaded.config.scopes[0];
//! let client = calloutd_config::ClientFacts { mac: &[0, 1, 2, 3, 4, 5], ..Default::default() };
//! let options = calloutd_config::effective_options(&loaded.config, scope, None, &client);
//! assert_eq!(options.encoded(3), Some(vec![198, 18, 0, 1]));
//! ```

//!
//! Fuzzing: `crates/config/fuzz` is a cargo-fuzz project (outside the workspace) with one target per
//! reader; on the stable toolchain run it as
//! `cd crates/config/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run xml_reader -- -max_total_time=120`
//! (likewise `netsh_reader`). Each target also checks that a model that loads writes back as XML that
//! loads to the same model. `tests/roundtrip.rs` runs the same property over bounded mutations in CI.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod diag;
pub mod model;
mod netsh;
pub mod options;
mod raw;
mod report;
pub mod resolve;
mod text;
mod validate;
mod writer;
mod xml;

use std::path::Path;

pub use diag::{ConfigErrors, Diagnostic};
pub use model::*;
pub use report::{scope_report, PoolCounts};
pub use resolve::{
    effective_options, effective_options_with, encode_elements, matching_policies, ClientFacts,
    EffectiveOption, EffectiveOptions, OptionLevel, PolicyMatch,
};
pub use text::dashed_hex;
pub use writer::write_xml;

/// A scope file that validated: the model, and the warnings met on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The validated configuration.
    pub config: ServerConfig,
    /// Unknown elements or commands, guessed encodings and similar.
    pub warnings: Vec<Diagnostic>,
}

/// Which reader a scope file needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeFormat {
    /// Export-DhcpServer XML.
    Xml,
    /// `netsh dhcp server dump` text.
    Netsh,
}

/// Larger scope files are refused: a real export of thousands of scopes is a few MB.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Reads and validates a scope file, picking the reader by content (`<DHCPServer` vs netsh text).
pub fn load_scopes(path: &Path) -> Result<Loaded, ConfigErrors> {
    let file = path.display().to_string();
    let fail = |rule: &'static str, message: String| {
        let mut diags = diag::Diags::new(&file);
        diags.error(&diag::Pos::default(), rule, message);
        diags.into_errors()
    };
    let meta = std::fs::metadata(path).map_err(|e| fail("io", format!("cannot read: {e}")))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(fail(
            "too-large",
            format!(
                "{} bytes; scope files over {MAX_FILE_BYTES} bytes are refused",
                meta.len()
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| fail("io", format!("cannot read: {e}")))?;
    read_scopes(&bytes, &file)
}

/// Reads and validates scope-file bytes (format by content); `file` names the source in diagnostics.
pub fn read_scopes(bytes: &[u8], file: &str) -> Result<Loaded, ConfigErrors> {
    let (text, how) = text::decode(bytes);
    read_text(&text, how, format_of(&text), file)
}

/// Reads and validates Export-DhcpServer XML bytes (UTF-8, or UTF-16 with or without BOM).
pub fn read_xml(bytes: &[u8], file: &str) -> Result<Loaded, ConfigErrors> {
    let (text, how) = text::decode(bytes);
    read_text(&text, how, ScopeFormat::Xml, file)
}

/// Reads and validates `netsh dhcp server dump` bytes (UTF-8, UTF-16 or windows-1252).
pub fn read_netsh(bytes: &[u8], file: &str) -> Result<Loaded, ConfigErrors> {
    let (text, how) = text::decode(bytes);
    read_text(&text, how, ScopeFormat::Netsh, file)
}

/// The format of scope-file bytes: XML when the first markup is `<?xml` or `<DHCPServer`.
pub fn detect_format(bytes: &[u8]) -> ScopeFormat {
    format_of(&text::decode(bytes).0)
}

/// White space or a byte-order mark left in decoded text.
fn is_blank_or_bom(c: char) -> bool {
    c.is_whitespace() || c == '\u{feff}'
}

/// XML when the decoded text's first markup is `<` (`<?xml`, `<DHCPServer`), else netsh.
fn format_of(text: &str) -> ScopeFormat {
    if text.trim_start_matches(is_blank_or_bom).starts_with('<') {
        ScopeFormat::Xml
    } else {
        ScopeFormat::Netsh
    }
}

fn read_text(
    text: &str,
    how: text::Decoded,
    format: ScopeFormat,
    file: &str,
) -> Result<Loaded, ConfigErrors> {
    let mut diags = diag::Diags::new(file);
    if text.trim_matches(is_blank_or_bom).is_empty() {
        diags.error(&diag::Pos::default(), "empty", "the file is empty");
        return Err(diags.into_errors());
    }
    match (how, format) {
        (text::Decoded::Clean, _) => {}
        (text::Decoded::GuessedUtf16, _) => diags.warning(
            &diag::Pos::default(),
            "encoding",
            "no byte-order mark: read as UTF-16",
        ),
        (text::Decoded::Windows1252, ScopeFormat::Netsh) => diags.warning(
            &diag::Pos::default(),
            "encoding",
            "not UTF-8: read as windows-1252",
        ),
        (text::Decoded::Windows1252, ScopeFormat::Xml) => {
            diags.error(
                &diag::Pos::default(),
                "encoding",
                "XML is neither UTF-8 nor UTF-16 (no byte-order mark, invalid UTF-8)",
            );
            return Err(diags.into_errors());
        }
    }
    let raw = match format {
        ScopeFormat::Xml => xml::read(text, &mut diags),
        ScopeFormat::Netsh => netsh::read(text, &mut diags),
    };
    let config = validate::validate(raw, &mut diags);
    if diags.errors.is_empty() {
        Ok(Loaded {
            config,
            warnings: diags.warnings,
        })
    } else {
        Err(diags.into_errors())
    }
}
