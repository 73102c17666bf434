//! The Microsoft DHCP Server callout ABI (`dhcpssdk.h`) as Rust types.
//!
//! What this crate is for: the exact `#[repr(C)]` layouts, hook function types and constants of the
//! callout API (docs/hooks.md section 1.1), plus small typed enums over the constants so the
//! engine, the hooks, the stats and the trace share one vocabulary.
//! What it is not for: any logic. Loading a DLL and calling it safely is `calloutd-callout`.
//!
//! ```
//! use dhcpssdk::DropReason;
//! assert_eq!(DropReason::Processed.code(), dhcpssdk::DHCP_DROP_PROCESSED);
//! assert_eq!(DropReason::from_code(7), Some(DropReason::NoSubnets));
//! ```
#![warn(missing_docs)]
#![allow(non_camel_case_types, non_snake_case)]

use std::ffi::c_void;

/// `DWORD`: an unsigned 32-bit integer.
pub type DWORD = u32;
/// `ULONG`: an unsigned 32-bit integer (also on 64-bit Windows).
pub type ULONG = u32;
/// `BOOL`: a 32-bit integer, 0 = FALSE.
pub type BOOL = i32;
/// `BOOLEAN`: one byte, 0 = FALSE (not Rust `bool`: a DLL may store any byte).
pub type BOOLEAN = u8;
/// `BYTE`: an unsigned byte.
pub type BYTE = u8;
/// `LPVOID`: an untyped pointer.
pub type LPVOID = *mut c_void;
/// `LPWSTR`: a pointer to UTF-16 code units (16-bit also on Linux, unlike `wchar_t`).
pub type LPWSTR = *mut u16;

/// The exported entry point every callout DLL provides.
pub const DHCP_CALLOUT_ENTRY_POINT: &str = "DhcpServerCalloutEntry";
/// The same name as a NUL-terminated byte string, for symbol lookup.
pub const DHCP_CALLOUT_ENTRY_POINT_C: &[u8] = b"DhcpServerCalloutEntry\0";
/// The registry key that lists callouts.
pub const DHCP_CALLOUT_LIST_KEY: &str =
    "SYSTEM\\CurrentControlSet\\Services\\DHCPServer\\Parameters";
/// The REG_MULTI_SZ value naming the callout DLLs.
pub const DHCP_CALLOUT_LIST_VALUE: &str = "CalloutDlls";
/// The REG_DWORD value that enables callouts.
pub const DHCP_CALLOUT_ENABLE_VALUE: &str = "CalloutEnabled";
/// The only callout table version calloutd (and Microsoft's server) passes.
pub const DHCP_CALLOUT_VERSION: DWORD = 0;

/// `DhcpControlHook` code: the service started.
pub const DHCP_CONTROL_START: DWORD = 0x0000_0001;
/// `DhcpControlHook` code: the service is stopping.
pub const DHCP_CONTROL_STOP: DWORD = 0x0000_0002;
/// `DhcpControlHook` code: the service was paused.
pub const DHCP_CONTROL_PAUSE: DWORD = 0x0000_0003;
/// `DhcpControlHook` code: the service continues after a pause.
pub const DHCP_CONTROL_CONTINUE: DWORD = 0x0000_0004;

/// Drop: a copy of a packet already queued or being processed.
pub const DHCP_DROP_DUPLICATE: DWORD = 0x0000_0001;
/// Drop: out of memory (calloutd: the receive queue is full).
pub const DHCP_DROP_NOMEM: DWORD = 0x0000_0002;
/// Drop: an internal error.
pub const DHCP_DROP_INTERNAL_ERROR: DWORD = 0x0000_0003;
/// Drop: the packet waited too long in the queue.
pub const DHCP_DROP_TIMEOUT: DWORD = 0x0000_0004;
/// Drop: the server is not authorised.
pub const DHCP_DROP_UNAUTH: DWORD = 0x0000_0005;
/// Drop: the service is paused.
pub const DHCP_DROP_PAUSED: DWORD = 0x0000_0006;
/// Drop: no subnet serves the client.
pub const DHCP_DROP_NO_SUBNETS: DWORD = 0x0000_0007;
/// Drop: the packet is malformed.
pub const DHCP_DROP_INVALID: DWORD = 0x0000_0008;
/// Drop: the packet is meant for another server.
pub const DHCP_DROP_WRONG_SERVER: DWORD = 0x0000_0009;
/// Drop: no address is available to offer.
pub const DHCP_DROP_NOADDRESS: DWORD = 0x0000_000A;
/// Drop: the packet's processing is complete (the last hook call of every packet).
pub const DHCP_DROP_PROCESSED: DWORD = 0x0000_000B;
/// Drop: any other failure.
pub const DHCP_DROP_GEN_FAILURE: DWORD = 0x0000_0100;

/// `DhcpPktSendHook` code: a reply is about to be sent.
pub const DHCP_SEND_PACKET: DWORD = 0x1000_0000;

/// `DhcpAddressDelHook` code: conflict detection found the address in use.
pub const DHCP_PROB_CONFLICT: DWORD = 0x2000_0001;
/// `DhcpAddressDelHook` code: the client declined the address.
pub const DHCP_PROB_DECLINE: DWORD = 0x2000_0002;
/// `DhcpAddressDelHook` code: the client released the address.
pub const DHCP_PROB_RELEASE: DWORD = 0x2000_0003;
/// `DhcpAddressDelHook` code: a REQUEST was answered with NAK.
pub const DHCP_PROB_NACKED: DWORD = 0x2000_0004;

/// `DhcpAddressOfferHook` code: a new lease.
pub const DHCP_GIVE_ADDRESS_NEW: DWORD = 0x3000_0001;
/// `DhcpAddressOfferHook` code: a renewal of an existing lease.
pub const DHCP_GIVE_ADDRESS_OLD: DWORD = 0x3000_0002;
/// `DhcpAddressOfferHook` address type: a BOOTP client.
pub const DHCP_CLIENT_BOOTP: DWORD = 0x3000_0003;
/// `DhcpAddressOfferHook` address type: a DHCP client.
pub const DHCP_CLIENT_DHCP: DWORD = 0x3000_0004;

/// Defines a `#[repr(u32)]` enum over a group of the constants above, with code and name lookups.
macro_rules! code_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $konst:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u32)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $konst),+
        }

        impl $name {
            /// Every variant, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The numeric code passed to the DLL.
            pub const fn code(self) -> DWORD {
                self as DWORD
            }

            /// The variant for a numeric code, if it is one of this group's.
            pub fn from_code(code: DWORD) -> Option<Self> {
                match code {
                    $($konst => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// Microsoft's constant name, e.g. `DHCP_DROP_PAUSED`.
            pub const fn constant_name(self) -> &'static str {
                match self {
                    $($name::$variant => stringify!($konst),)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.constant_name())
            }
        }
    };
}

code_enum!(
    /// A `DhcpControlHook` code.
    ControlCode {
        /// `DHCP_CONTROL_START`
        Start = DHCP_CONTROL_START,
        /// `DHCP_CONTROL_STOP`
        Stop = DHCP_CONTROL_STOP,
        /// `DHCP_CONTROL_PAUSE`
        Pause = DHCP_CONTROL_PAUSE,
        /// `DHCP_CONTROL_CONTINUE`
        Continue = DHCP_CONTROL_CONTINUE,
    }
);

code_enum!(
    /// Why a packet was dropped: the one vocabulary of the engine, the PktDrop hook, stats and trace.
    DropReason {
        /// `DHCP_DROP_DUPLICATE`
        Duplicate = DHCP_DROP_DUPLICATE,
        /// `DHCP_DROP_NOMEM`
        NoMem = DHCP_DROP_NOMEM,
        /// `DHCP_DROP_INTERNAL_ERROR`
        InternalError = DHCP_DROP_INTERNAL_ERROR,
        /// `DHCP_DROP_TIMEOUT`
        Timeout = DHCP_DROP_TIMEOUT,
        /// `DHCP_DROP_UNAUTH`
        Unauth = DHCP_DROP_UNAUTH,
        /// `DHCP_DROP_PAUSED`
        Paused = DHCP_DROP_PAUSED,
        /// `DHCP_DROP_NO_SUBNETS`
        NoSubnets = DHCP_DROP_NO_SUBNETS,
        /// `DHCP_DROP_INVALID`
        Invalid = DHCP_DROP_INVALID,
        /// `DHCP_DROP_WRONG_SERVER`
        WrongServer = DHCP_DROP_WRONG_SERVER,
        /// `DHCP_DROP_NOADDRESS`
        NoAddress = DHCP_DROP_NOADDRESS,
        /// `DHCP_DROP_PROCESSED`
        Processed = DHCP_DROP_PROCESSED,
        /// `DHCP_DROP_GEN_FAILURE`
        GenFailure = DHCP_DROP_GEN_FAILURE,
    }
);

code_enum!(
    /// A `DhcpAddressDelHook` code: why an address left a client.
    ProbCode {
        /// `DHCP_PROB_CONFLICT`
        Conflict = DHCP_PROB_CONFLICT,
        /// `DHCP_PROB_DECLINE`
        Decline = DHCP_PROB_DECLINE,
        /// `DHCP_PROB_RELEASE`
        Release = DHCP_PROB_RELEASE,
        /// `DHCP_PROB_NACKED`
        Nacked = DHCP_PROB_NACKED,
    }
);

code_enum!(
    /// A `DhcpAddressOfferHook` control code: new lease or renewal.
    GiveCode {
        /// `DHCP_GIVE_ADDRESS_NEW`
        New = DHCP_GIVE_ADDRESS_NEW,
        /// `DHCP_GIVE_ADDRESS_OLD`
        Old = DHCP_GIVE_ADDRESS_OLD,
    }
);

code_enum!(
    /// A `DhcpAddressOfferHook` address type: which protocol the client speaks.
    ClientType {
        /// `DHCP_CLIENT_BOOTP`
        Bootp = DHCP_CLIENT_BOOTP,
        /// `DHCP_CLIENT_DHCP`
        Dhcp = DHCP_CLIENT_DHCP,
    }
);

/// `LPBYTE`: a pointer to bytes.
pub type LPBYTE = *mut BYTE;
/// `LPBOOL`: a pointer to a `BOOL`.
pub type LPBOOL = *mut BOOL;
/// `CHAR`: a C `char` (bytes of option text, not NUL-terminated in `DHCP_SERVER_OPTIONS`).
pub type CHAR = std::ffi::c_char;
/// `DHCP_IP_ADDRESS`: an IPv4 address as a `DWORD`.
pub type DHCP_IP_ADDRESS = DWORD;

/// `LPDHCP_CONTROL`: `DhcpControlHook(dwControlCode, lpReserved)`.
pub type LPDHCP_CONTROL =
    unsafe extern "system" fn(dwControlCode: DWORD, lpReserved: LPVOID) -> DWORD;

/// `LPDHCP_NEWPKT`: `DhcpNewPktHook(Packet, PacketSize, IpAddress, Reserved, PktContext, ProcessIt)`.
pub type LPDHCP_NEWPKT = unsafe extern "system" fn(
    Packet: *mut LPBYTE,
    PacketSize: *mut DWORD,
    IpAddress: DWORD,
    Reserved: LPVOID,
    PktContext: *mut LPVOID,
    ProcessIt: LPBOOL,
) -> DWORD;

/// `LPDHCP_DROP_SEND`: `DhcpPktDropHook` and `DhcpPktSendHook`
/// `(Packet, PacketSize, ControlCode, IpAddress, Reserved, PktContext)`.
pub type LPDHCP_DROP_SEND = unsafe extern "system" fn(
    Packet: *mut LPBYTE,
    PacketSize: *mut DWORD,
    ControlCode: DWORD,
    IpAddress: DWORD,
    Reserved: LPVOID,
    PktContext: LPVOID,
) -> DWORD;

/// `LPDHCP_PROB`: `DhcpAddressDelHook(Packet, PacketSize, ControlCode, IpAddress, AltAddress,
/// Reserved, PktContext)`.
pub type LPDHCP_PROB = unsafe extern "system" fn(
    Packet: LPBYTE,
    PacketSize: DWORD,
    ControlCode: DWORD,
    IpAddress: DWORD,
    AltAddress: DWORD,
    Reserved: LPVOID,
    PktContext: LPVOID,
) -> DWORD;

/// `LPDHCP_GIVE_ADDRESS`: `DhcpAddressOfferHook(Packet, PacketSize, ControlCode, IpAddress,
/// AltAddress, AddrType, LeaseTime, Reserved, PktContext)`.
pub type LPDHCP_GIVE_ADDRESS = unsafe extern "system" fn(
    Packet: LPBYTE,
    PacketSize: DWORD,
    ControlCode: DWORD,
    IpAddress: DWORD,
    AltAddress: DWORD,
    AddrType: DWORD,
    LeaseTime: DWORD,
    Reserved: LPVOID,
    PktContext: LPVOID,
) -> DWORD;

/// `LPDHCP_HANDLE_OPTIONS`: `DhcpHandleOptionsHook(Packet, PacketSize, Reserved, PktContext,
/// ServerOptions)`.
pub type LPDHCP_HANDLE_OPTIONS = unsafe extern "system" fn(
    Packet: LPBYTE,
    PacketSize: DWORD,
    Reserved: LPVOID,
    PktContext: LPVOID,
    ServerOptions: *mut DHCP_SERVER_OPTIONS,
) -> DWORD;

/// `LPDHCP_DELETE_CLIENT`: `DhcpDeleteClientHook(IpAddress, HwAddress, HwAddressLength, Reserved,
/// ClientType)`.
pub type LPDHCP_DELETE_CLIENT = unsafe extern "system" fn(
    IpAddress: DWORD,
    HwAddress: LPBYTE,
    HwAddressLength: ULONG,
    Reserved: DWORD,
    ClientType: DWORD,
) -> DWORD;

/// `LPDHCP_ENTRY_POINT_FUNC`: the exported `DhcpServerCalloutEntry(ChainDlls, CalloutVersion,
/// CalloutTbl)`.
pub type LPDHCP_ENTRY_POINT_FUNC = unsafe extern "system" fn(
    ChainDlls: LPWSTR,
    CalloutVersion: DWORD,
    CalloutTbl: *mut DHCP_CALLOUT_TABLE,
) -> DWORD;

/// `DHCP_CALLOUT_TABLE`: the hooks a callout's entry point fills in (NULL = not set).
/// 80 bytes on x64, 40 on x86.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DHCP_CALLOUT_TABLE {
    /// Service START/STOP/PAUSE/CONTINUE.
    pub DhcpControlHook: Option<LPDHCP_CONTROL>,
    /// A datagram arrived.
    pub DhcpNewPktHook: Option<LPDHCP_NEWPKT>,
    /// A packet was dropped, or its processing is complete.
    pub DhcpPktDropHook: Option<LPDHCP_DROP_SEND>,
    /// A reply is about to be sent.
    pub DhcpPktSendHook: Option<LPDHCP_DROP_SEND>,
    /// An address left a client (conflict, decline, release, NAK).
    pub DhcpAddressDelHook: Option<LPDHCP_PROB>,
    /// An address is about to be acknowledged to a client.
    pub DhcpAddressOfferHook: Option<LPDHCP_GIVE_ADDRESS>,
    /// The server's parse of common options.
    pub DhcpHandleOptionsHook: Option<LPDHCP_HANDLE_OPTIONS>,
    /// A lease is about to be removed.
    pub DhcpDeleteClientHook: Option<LPDHCP_DELETE_CLIENT>,
    /// Reserved.
    pub DhcpExtensionHook: LPVOID,
    /// Reserved.
    pub DhcpReservedHook: LPVOID,
}

impl DHCP_CALLOUT_TABLE {
    /// A table with every slot NULL, as the server hands it to the entry point.
    pub const fn zeroed() -> Self {
        DHCP_CALLOUT_TABLE {
            DhcpControlHook: None,
            DhcpNewPktHook: None,
            DhcpPktDropHook: None,
            DhcpPktSendHook: None,
            DhcpAddressDelHook: None,
            DhcpAddressOfferHook: None,
            DhcpHandleOptionsHook: None,
            DhcpDeleteClientHook: None,
            DhcpExtensionHook: std::ptr::null_mut(),
            DhcpReservedHook: std::ptr::null_mut(),
        }
    }
}

impl Default for DHCP_CALLOUT_TABLE {
    fn default() -> Self {
        Self::zeroed()
    }
}

/// `DHCP_SERVER_OPTIONS`: the server's parse of common options handed to `DhcpHandleOptionsHook`
/// (layout of CalloutVersion 0; 176 bytes on x64, 96 on x86). Pointers may be unaligned; NULL = absent.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DHCP_SERVER_OPTIONS {
    /// Option 53, one byte.
    pub MessageType: *mut BYTE,
    /// Option 1, network order.
    pub SubnetMask: *mut DHCP_IP_ADDRESS,
    /// Option 50, network order.
    pub RequestedAddress: *mut DHCP_IP_ADDRESS,
    /// Option 51, network order.
    pub RequestLeaseTime: *mut DWORD,
    /// Option 52, one byte.
    pub OverlayFields: *mut BYTE,
    /// Option 3 (first router), network order.
    pub RouterAddress: *mut DHCP_IP_ADDRESS,
    /// Option 54, network order.
    pub Server: *mut DHCP_IP_ADDRESS,
    /// Option 55 data.
    pub ParameterRequestList: *mut BYTE,
    /// Option 55 length.
    pub ParameterRequestListLength: DWORD,
    /// Option 12 data (not NUL-terminated).
    pub MachineName: *mut CHAR,
    /// Option 12 length.
    pub MachineNameLength: DWORD,
    /// `htype`.
    pub ClientHardwareAddressType: BYTE,
    /// `hlen`.
    pub ClientHardwareAddressLength: BYTE,
    /// `chaddr`.
    pub ClientHardwareAddress: *mut BYTE,
    /// Option 77 data.
    pub ClassIdentifier: *mut CHAR,
    /// Option 77 length.
    pub ClassIdentifierLength: DWORD,
    /// Option 60 data.
    pub VendorClass: *mut BYTE,
    /// Option 60 length.
    pub VendorClassLength: DWORD,
    /// Option 81 flags byte.
    pub DNSFlags: DWORD,
    /// Option 81 name length.
    pub DNSNameLength: DWORD,
    /// Option 81 name (after the two RCODE bytes).
    pub DNSName: LPBYTE,
    /// Whether the client asked for the DS domain name (calloutd: always FALSE).
    pub DSDomainNameRequested: BOOLEAN,
    /// DS domain name (calloutd: NULL).
    pub DSDomainName: *mut CHAR,
    /// DS domain name length (calloutd: 0).
    pub DSDomainNameLen: DWORD,
    /// The selected scope's subnet address, host order.
    pub ScopeId: *mut DWORD,
}

impl DHCP_SERVER_OPTIONS {
    /// Every pointer NULL and every length 0: "no option present".
    pub const fn empty() -> Self {
        use std::ptr::null_mut;
        DHCP_SERVER_OPTIONS {
            MessageType: null_mut(),
            SubnetMask: null_mut(),
            RequestedAddress: null_mut(),
            RequestLeaseTime: null_mut(),
            OverlayFields: null_mut(),
            RouterAddress: null_mut(),
            Server: null_mut(),
            ParameterRequestList: null_mut(),
            ParameterRequestListLength: 0,
            MachineName: null_mut(),
            MachineNameLength: 0,
            ClientHardwareAddressType: 0,
            ClientHardwareAddressLength: 0,
            ClientHardwareAddress: null_mut(),
            ClassIdentifier: null_mut(),
            ClassIdentifierLength: 0,
            VendorClass: null_mut(),
            VendorClassLength: 0,
            DNSFlags: 0,
            DNSNameLength: 0,
            DNSName: null_mut(),
            DSDomainNameRequested: 0,
            DSDomainName: null_mut(),
            DSDomainNameLen: 0,
            ScopeId: null_mut(),
        }
    }
}

impl Default for DHCP_SERVER_OPTIONS {
    fn default() -> Self {
        Self::empty()
    }
}

/// The bundled portable C header (`include/dhcpssdk.h`): one callout source builds as a Windows DLL
/// and as a Linux `.so` with it.
pub const HEADER_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/include/dhcpssdk.h");

/// The folder holding [`HEADER_PATH`], for a C compiler's `-I`.
pub const INCLUDE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/include");

#[cfg(test)]
mod layout_tests;
