//! Export-DhcpServer XML writer.

use crate::model::ServerConfig;

/// The configuration as Export-DhcpServer XML (UTF-8), readable by [`crate::read_xml`] and `Import-DhcpServer`.
pub fn write_xml(config: &ServerConfig) -> String {
    let _ = config;
    String::new()
}
