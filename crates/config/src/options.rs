//! Built-in option definitions and classes: the ones Microsoft DHCP Server predefines, so a file need
//! not define option 3 (Router) or the `Default BOOTP Class` to use them.
//!
//! A definition in the file with the same id (and vendor class) takes the place of the built-in one.

use crate::model::{Class, ClassKind, OptionDefinition, OptionType, ServerConfig};
use crate::text::same_class_name;

/// One built-in standard option: id, name, element type, array or not.
struct Builtin(u8, &'static str, OptionType, bool);

use OptionType::{BinaryData as Bin, Byte, DWord, IPv4Address as Ip, String as Str, Word};

/// RFC 2132 options and the others Windows Server predefines (vendor class `None`).
const STANDARD: &[Builtin] = &[
    Builtin(1, "Subnet Mask", Ip, false),
    Builtin(2, "Time Offset", DWord, false),
    Builtin(3, "Router", Ip, true),
    Builtin(4, "Time Server", Ip, true),
    Builtin(5, "Name Servers", Ip, true),
    Builtin(6, "DNS Servers", Ip, true),
    Builtin(7, "Log Servers", Ip, true),
    Builtin(8, "Cookie Servers", Ip, true),
    Builtin(9, "LPR Servers", Ip, true),
    Builtin(10, "Impress Servers", Ip, true),
    Builtin(11, "Resource Location Servers", Ip, true),
    Builtin(12, "Host Name", Str, false),
    Builtin(13, "Boot File Size", Word, false),
    Builtin(14, "Merit Dump File", Str, false),
    Builtin(15, "DNS Domain Name", Str, false),
    Builtin(16, "Swap Server", Ip, false),
    Builtin(17, "Root Path", Str, false),
    Builtin(18, "Extensions Path", Str, false),
    Builtin(19, "IP Layer Forwarding", Byte, false),
    Builtin(20, "Nonlocal Source Routing", Byte, false),
    Builtin(21, "Policy Filter Masks", Ip, true),
    Builtin(22, "Max DG Reassembly Size", Word, false),
    Builtin(23, "Default IP Time-to-live", Byte, false),
    Builtin(24, "Path MTU Aging Timeout", DWord, false),
    Builtin(25, "Path MTU Plateau Table", Word, true),
    Builtin(26, "MTU Option", Word, false),
    Builtin(27, "All subnets are local", Byte, false),
    Builtin(28, "Broadcast Address", Ip, false),
    Builtin(29, "Perform Mask Discovery", Byte, false),
    Builtin(30, "Mask Supplier Option", Byte, false),
    Builtin(31, "Perform Router Discovery", Byte, false),
    Builtin(32, "Router Solicitation Address", Ip, false),
    Builtin(33, "Static Route Option", Ip, true),
    Builtin(34, "Trailer Encapsulation", Byte, false),
    Builtin(35, "ARP Cache Timeout", DWord, false),
    Builtin(36, "Ethernet Encapsulation", Byte, false),
    Builtin(37, "TCP Default Time-to-live", Byte, false),
    Builtin(38, "Keepalive Interval", DWord, false),
    Builtin(39, "Keepalive Garbage", Byte, false),
    Builtin(40, "NIS Domain Name", Str, false),
    Builtin(41, "NIS Servers", Ip, true),
    Builtin(42, "NTP Servers", Ip, true),
    Builtin(43, "Vendor Specific Info", Bin, false),
    Builtin(44, "WINS/NBNS Servers", Ip, true),
    Builtin(45, "NetBIOS over TCP/IP NBDD", Ip, true),
    Builtin(46, "WINS/NBT Node Type", Byte, false),
    Builtin(47, "NetBIOS Scope ID", Str, false),
    Builtin(48, "X Window System Font", Ip, true),
    Builtin(49, "X Window System Display", Ip, true),
    Builtin(51, "Lease", DWord, false),
    Builtin(58, "Renewal (T1) Time Value", DWord, false),
    Builtin(59, "Rebinding (T2) Time Value", DWord, false),
    Builtin(62, "NetWare/IP Domain Name", Str, false),
    Builtin(63, "NetWare/IP information", Bin, false),
    Builtin(64, "NIS+ Domain Name", Str, false),
    Builtin(65, "NIS+ Servers", Ip, true),
    Builtin(66, "Boot Server Host Name", Str, false),
    Builtin(67, "Bootfile Name", Str, false),
    Builtin(68, "Mobile IP Home Agents", Ip, true),
    Builtin(
        69,
        "Simple Mail Transport Protocol (SMTP) Servers",
        Ip,
        true,
    ),
    Builtin(70, "Post Office Protocol (POP3) Servers", Ip, true),
    Builtin(
        71,
        "Network News Transport Protocol (NNTP) Servers",
        Ip,
        true,
    ),
    Builtin(72, "World Wide Web (WWW) Servers", Ip, true),
    Builtin(73, "Finger Servers", Ip, true),
    Builtin(74, "Internet Relay Chat (IRC) Servers", Ip, true),
    Builtin(75, "StreetTalk Servers", Ip, true),
    Builtin(
        76,
        "StreetTalk Directory Assistance (STDA) Servers",
        Ip,
        true,
    ),
    Builtin(81, "Client FQDN", Bin, false),
    Builtin(119, "DNS Domain Search List", Str, true),
    Builtin(121, "Classless Static Routes", Bin, false),
    Builtin(249, "Classless Static Routes (Microsoft)", Bin, false),
    Builtin(252, "WPAD", Str, false),
];

/// The vendor-specific option definitions Windows predefines for its own vendor classes.
const MICROSOFT_VENDOR: &[Builtin] = &[
    Builtin(1, "Microsoft Disable Netbios Option", DWord, false),
    Builtin(
        2,
        "Microsoft Release DHCP Lease On Shutdown Option",
        DWord,
        false,
    ),
    Builtin(3, "Microsoft Default Router Metric Base", DWord, false),
];

/// The vendor classes that carry [`MICROSOFT_VENDOR`] definitions.
const MICROSOFT_VENDOR_CLASSES: &[&str] = &["Microsoft Windows 2000 Options", "Microsoft Options"];

/// Windows' predefined classes: name, kind, data, description.
const CLASSES: &[(&str, ClassKind, &[u8], &str)] = &[
    (
        "Default Routing and Remote Access Class",
        ClassKind::User,
        b"RRAS.Microsoft",
        "User class for remote access clients",
    ),
    (
        "Default Network Access Protection Class",
        ClassKind::User,
        b"MSFT Quarantine",
        "Default special user class for Restricted Access clients",
    ),
    (
        "Default BOOTP Class",
        ClassKind::User,
        b"BOOTP.Microsoft",
        "User class for BOOTP Clients",
    ),
    (
        "Microsoft Windows 2000 Options",
        ClassKind::Vendor,
        b"MSFT 5.0",
        "Microsoft vendor-specific options for Windows 2000 Clients",
    ),
    (
        "Microsoft Windows 98 Options",
        ClassKind::Vendor,
        b"MSFT 98",
        "Microsoft vendor-specific options for Windows 98 Clients",
    ),
    (
        "Microsoft Options",
        ClassKind::Vendor,
        b"MSFT",
        "Microsoft vendor-specific options applicable to Windows 98 and Windows 2000 Clients",
    ),
];

/// Windows' predefined classes as (name, kind, data), without allocating (for the per-packet path).
pub(crate) fn builtin_class_refs() -> impl Iterator<Item = (&'static str, ClassKind, &'static [u8])>
{
    CLASSES
        .iter()
        .map(|(name, kind, data, _)| (*name, *kind, *data))
}

/// The name of the user class Microsoft assigns to BOOTP clients (data `BOOTP.Microsoft`).
pub const DEFAULT_BOOTP_CLASS: &str = "Default BOOTP Class";

fn to_definition(b: &Builtin, vendor_class: Option<&str>) -> OptionDefinition {
    OptionDefinition {
        option_id: b.0,
        name: b.1.to_string(),
        kind: b.2,
        multi_valued: b.3,
        vendor_class: vendor_class.map(str::to_string),
        description: String::new(),
        default_value: Vec::new(),
    }
}

/// The built-in standard definition of `option_id`, if Windows predefines one.
pub fn standard_definition(option_id: u8) -> Option<OptionDefinition> {
    STANDARD
        .iter()
        .find(|b| b.0 == option_id)
        .map(|b| to_definition(b, None))
}

/// Every built-in definition: the standard options and Microsoft's vendor-specific ones.
pub fn builtin_definitions() -> Vec<OptionDefinition> {
    let mut all: Vec<OptionDefinition> = STANDARD.iter().map(|b| to_definition(b, None)).collect();
    for class in MICROSOFT_VENDOR_CLASSES {
        all.extend(
            MICROSOFT_VENDOR
                .iter()
                .map(|b| to_definition(b, Some(class))),
        );
    }
    all
}

/// Windows' predefined user and vendor classes (`Default BOOTP Class`, `Microsoft Options`...).
pub fn builtin_classes() -> Vec<Class> {
    CLASSES.iter().map(to_class).collect()
}

fn to_class(&(name, kind, data, description): &(&str, ClassKind, &[u8], &str)) -> Class {
    Class {
        name: name.to_string(),
        kind,
        data: data.to_vec(),
        description: description.to_string(),
    }
}

impl ServerConfig {
    /// The definition in force for `option_id` (standard when `vendor_class` is `None`): the file's own
    /// definition first, then the built-in one.
    pub fn find_definition(
        &self,
        option_id: u8,
        vendor_class: Option<&str>,
    ) -> Option<OptionDefinition> {
        if let Some(def) = self.option_definitions.iter().find(|d| {
            d.option_id == option_id && same_class_name(d.vendor_class.as_deref(), vendor_class)
        }) {
            return Some(def.clone());
        }
        match vendor_class {
            None => standard_definition(option_id),
            Some(class) => MICROSOFT_VENDOR_CLASSES
                .iter()
                .find(|c| c.eq_ignore_ascii_case(class))
                .and_then(|c| {
                    MICROSOFT_VENDOR
                        .iter()
                        .find(|b| b.0 == option_id)
                        .map(|b| to_definition(b, Some(c)))
                }),
        }
    }

    /// The class called `name` (case-insensitive): the file's own first, then Windows' predefined ones.
    pub fn find_class(&self, name: &str) -> Option<Class> {
        if let Some(class) = self
            .classes
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
        {
            return Some(class.clone());
        }
        CLASSES
            .iter()
            .find(|(n, ..)| n.eq_ignore_ascii_case(name))
            .map(to_class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_table_has_unique_ids_and_the_common_options() {
        let defs = builtin_definitions();
        let standard: Vec<_> = defs.iter().filter(|d| d.vendor_class.is_none()).collect();
        for (i, a) in standard.iter().enumerate() {
            assert!(a.option_id >= 1 && a.option_id <= 254);
            assert!(standard[i + 1..].iter().all(|b| b.option_id != a.option_id));
        }
        let router = standard_definition(3).unwrap();
        assert_eq!(router.kind, OptionType::IPv4Address);
        assert!(router.multi_valued);
        assert_eq!(standard_definition(51).unwrap().kind, OptionType::DWord);
        assert_eq!(standard_definition(15).unwrap().kind, OptionType::String);
        assert!(standard_definition(60).is_none());
    }

    #[test]
    fn file_definition_overrides_builtin_and_classes_fall_back() {
        let mut config = ServerConfig::default();
        assert_eq!(config.find_definition(3, None).unwrap().name, "Router");
        config.option_definitions.push(OptionDefinition {
            option_id: 3,
            name: "Gateways".into(),
            kind: OptionType::IPv4Address,
            multi_valued: true,
            vendor_class: None,
            description: String::new(),
            default_value: vec![],
        });
        assert_eq!(config.find_definition(3, None).unwrap().name, "Gateways");
        assert!(config.find_definition(3, Some("Nope")).is_none());
        assert_eq!(
            config
                .find_definition(1, Some("microsoft options"))
                .unwrap()
                .kind,
            OptionType::DWord
        );
        assert_eq!(
            config.find_class("default bootp class").unwrap().data,
            b"BOOTP.Microsoft"
        );
        assert!(config.find_class("nope").is_none());
    }
}
