//! Layout tests: sizes and every field offset, checked against the contract (docs/hooks.md
//! section 1.1) and against a C compiler reading `include/dhcpssdk.h`.

use super::*;
use std::mem::{offset_of, size_of};

/// (field, offset) of `DHCP_CALLOUT_TABLE`, as Rust sees it.
fn table_offsets() -> Vec<(&'static str, usize)> {
    vec![
        (
            "DhcpControlHook",
            offset_of!(DHCP_CALLOUT_TABLE, DhcpControlHook),
        ),
        (
            "DhcpNewPktHook",
            offset_of!(DHCP_CALLOUT_TABLE, DhcpNewPktHook),
        ),
        (
            "DhcpPktDropHook",
            offset_of!(DHCP_CALLOUT_TABLE, DhcpPktDropHook),
        ),
        (
            "DhcpPktSendHook",
            offset_of!(DHCP_CALLOUT_TABLE, DhcpPktSendHook),
        ),
        (
            "DhcpAddressDelHook",
            offset_of!(DHCP_CALLOUT_TABLE, DhcpAddressDelHook),
        ),
        (
            "DhcpAddressOfferHook",
            offset_of!(DHCP_CALLOUT_TABLE, DhcpAddressOfferHook),
        ),
        (
            "DhcpHandleOptionsHook",
            offset_of!(DHCP_CALLOUT_TABLE, DhcpHandleOptionsHook),
        ),
        (
            "DhcpDeleteClientHook",
            offset_of!(DHCP_CALLOUT_TABLE, DhcpDeleteClientHook),
        ),
        (
            "DhcpExtensionHook",
            offset_of!(DHCP_CALLOUT_TABLE, DhcpExtensionHook),
        ),
        (
            "DhcpReservedHook",
            offset_of!(DHCP_CALLOUT_TABLE, DhcpReservedHook),
        ),
    ]
}

/// (field, offset) of `DHCP_SERVER_OPTIONS`, as Rust sees it.
fn options_offsets() -> Vec<(&'static str, usize)> {
    type O = DHCP_SERVER_OPTIONS;
    vec![
        ("MessageType", offset_of!(O, MessageType)),
        ("SubnetMask", offset_of!(O, SubnetMask)),
        ("RequestedAddress", offset_of!(O, RequestedAddress)),
        ("RequestLeaseTime", offset_of!(O, RequestLeaseTime)),
        ("OverlayFields", offset_of!(O, OverlayFields)),
        ("RouterAddress", offset_of!(O, RouterAddress)),
        ("Server", offset_of!(O, Server)),
        ("ParameterRequestList", offset_of!(O, ParameterRequestList)),
        (
            "ParameterRequestListLength",
            offset_of!(O, ParameterRequestListLength),
        ),
        ("MachineName", offset_of!(O, MachineName)),
        ("MachineNameLength", offset_of!(O, MachineNameLength)),
        (
            "ClientHardwareAddressType",
            offset_of!(O, ClientHardwareAddressType),
        ),
        (
            "ClientHardwareAddressLength",
            offset_of!(O, ClientHardwareAddressLength),
        ),
        (
            "ClientHardwareAddress",
            offset_of!(O, ClientHardwareAddress),
        ),
        ("ClassIdentifier", offset_of!(O, ClassIdentifier)),
        (
            "ClassIdentifierLength",
            offset_of!(O, ClassIdentifierLength),
        ),
        ("VendorClass", offset_of!(O, VendorClass)),
        ("VendorClassLength", offset_of!(O, VendorClassLength)),
        ("DNSFlags", offset_of!(O, DNSFlags)),
        ("DNSNameLength", offset_of!(O, DNSNameLength)),
        ("DNSName", offset_of!(O, DNSName)),
        (
            "DSDomainNameRequested",
            offset_of!(O, DSDomainNameRequested),
        ),
        ("DSDomainName", offset_of!(O, DSDomainName)),
        ("DSDomainNameLen", offset_of!(O, DSDomainNameLen)),
        ("ScopeId", offset_of!(O, ScopeId)),
    ]
}

/// The contract's x64 offsets of `DHCP_SERVER_OPTIONS` (docs/hooks.md section 1.1).
const X64_OPTIONS: [(&str, usize); 25] = [
    ("MessageType", 0),
    ("SubnetMask", 8),
    ("RequestedAddress", 16),
    ("RequestLeaseTime", 24),
    ("OverlayFields", 32),
    ("RouterAddress", 40),
    ("Server", 48),
    ("ParameterRequestList", 56),
    ("ParameterRequestListLength", 64),
    ("MachineName", 72),
    ("MachineNameLength", 80),
    ("ClientHardwareAddressType", 84),
    ("ClientHardwareAddressLength", 85),
    ("ClientHardwareAddress", 88),
    ("ClassIdentifier", 96),
    ("ClassIdentifierLength", 104),
    ("VendorClass", 112),
    ("VendorClassLength", 120),
    ("DNSFlags", 124),
    ("DNSNameLength", 128),
    ("DNSName", 136),
    ("DSDomainNameRequested", 144),
    ("DSDomainName", 152),
    ("DSDomainNameLen", 160),
    ("ScopeId", 168),
];

/// The x86 offsets of `DHCP_SERVER_OPTIONS` (4-byte pointers, natural alignment).
const X86_OPTIONS: [(&str, usize); 25] = [
    ("MessageType", 0),
    ("SubnetMask", 4),
    ("RequestedAddress", 8),
    ("RequestLeaseTime", 12),
    ("OverlayFields", 16),
    ("RouterAddress", 20),
    ("Server", 24),
    ("ParameterRequestList", 28),
    ("ParameterRequestListLength", 32),
    ("MachineName", 36),
    ("MachineNameLength", 40),
    ("ClientHardwareAddressType", 44),
    ("ClientHardwareAddressLength", 45),
    ("ClientHardwareAddress", 48),
    ("ClassIdentifier", 52),
    ("ClassIdentifierLength", 56),
    ("VendorClass", 60),
    ("VendorClassLength", 64),
    ("DNSFlags", 68),
    ("DNSNameLength", 72),
    ("DNSName", 76),
    ("DSDomainNameRequested", 80),
    ("DSDomainName", 84),
    ("DSDomainNameLen", 88),
    ("ScopeId", 92),
];

#[cfg(target_pointer_width = "64")]
mod x64 {
    use super::*;

    #[test]
    fn callout_table_is_80_bytes_with_8_byte_slots() {
        assert_eq!(size_of::<DHCP_CALLOUT_TABLE>(), 80);
        let expected: Vec<usize> = (0..10).map(|i| i * 8).collect();
        let got: Vec<usize> = table_offsets().iter().map(|(_, o)| *o).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn server_options_match_the_x64_offsets_of_the_contract() {
        assert_eq!(size_of::<DHCP_SERVER_OPTIONS>(), 176);
        let expected = X64_OPTIONS;
        assert_eq!(options_offsets(), expected.to_vec());
    }
}

#[cfg(target_pointer_width = "32")]
mod x86 {
    use super::*;

    #[test]
    fn callout_table_is_40_bytes_with_4_byte_slots() {
        assert_eq!(size_of::<DHCP_CALLOUT_TABLE>(), 40);
        let expected: Vec<usize> = (0..10).map(|i| i * 4).collect();
        let got: Vec<usize> = table_offsets().iter().map(|(_, o)| *o).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn server_options_match_the_x86_offsets() {
        assert_eq!(size_of::<DHCP_SERVER_OPTIONS>(), 96);
        let expected = X86_OPTIONS;
        assert_eq!(options_offsets(), expected.to_vec());
    }
}

#[test]
fn an_empty_hook_slot_is_a_null_pointer() {
    // The DLL writes raw pointers into the table; `Option<fn>` must use NULL for `None`.
    assert_eq!(size_of::<Option<LPDHCP_NEWPKT>>(), size_of::<usize>());
    let table = DHCP_CALLOUT_TABLE::zeroed();
    // SAFETY: the table is plain data of pointer-sized slots; reading it as bytes is always valid.
    let bytes: [u8; size_of::<DHCP_CALLOUT_TABLE>()] = unsafe { std::mem::transmute(table) };
    assert!(bytes.iter().all(|b| *b == 0));
}

/// A C program that prints `name offset` for every field and `sizeof` of both structs, so the C
/// compiler's reading of the header can be compared with Rust's layout.
fn c_layout_program() -> String {
    let mut src = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include \"dhcpssdk.h\"\n\
         int main(void) {\n\
         printf(\"sizeof_table %u\\n\", (unsigned)sizeof(DHCP_CALLOUT_TABLE));\n\
         printf(\"sizeof_options %u\\n\", (unsigned)sizeof(DHCP_SERVER_OPTIONS));\n",
    );
    for (name, _) in table_offsets() {
        src += &format!(
            "printf(\"table.{name} %u\\n\", (unsigned)offsetof(DHCP_CALLOUT_TABLE, {name}));\n"
        );
    }
    for (name, _) in options_offsets() {
        src += &format!(
            "printf(\"options.{name} %u\\n\", (unsigned)offsetof(DHCP_SERVER_OPTIONS, {name}));\n"
        );
    }
    // Touch every constant and typedef so a missing one fails the compile.
    src += r#"
    {
        DWORD codes[] = { DHCP_CONTROL_START, DHCP_CONTROL_STOP, DHCP_CONTROL_PAUSE,
            DHCP_CONTROL_CONTINUE, DHCP_DROP_DUPLICATE, DHCP_DROP_NOMEM, DHCP_DROP_INTERNAL_ERROR,
            DHCP_DROP_TIMEOUT, DHCP_DROP_UNAUTH, DHCP_DROP_PAUSED, DHCP_DROP_NO_SUBNETS,
            DHCP_DROP_INVALID, DHCP_DROP_WRONG_SERVER, DHCP_DROP_NOADDRESS, DHCP_DROP_PROCESSED,
            DHCP_DROP_GEN_FAILURE, DHCP_SEND_PACKET, DHCP_PROB_CONFLICT, DHCP_PROB_DECLINE,
            DHCP_PROB_RELEASE, DHCP_PROB_NACKED, DHCP_GIVE_ADDRESS_NEW, DHCP_GIVE_ADDRESS_OLD,
            DHCP_CLIENT_BOOTP, DHCP_CLIENT_DHCP, ERROR_SUCCESS, ERROR_INVALID_PARAMETER };
        LPDHCP_CONTROL c = 0; LPDHCP_NEWPKT n = 0; LPDHCP_DROP_SEND d = 0; LPDHCP_PROB p = 0;
        LPDHCP_GIVE_ADDRESS g = 0; LPDHCP_HANDLE_OPTIONS h = 0; LPDHCP_DELETE_CLIENT x = 0;
        LPDHCP_ENTRY_POINT_FUNC e = 0; LPWSTR w = 0; LPBOOL b = 0; LPBYTE y = 0; BOOLEAN bb = FALSE;
        (void)c; (void)n; (void)d; (void)p; (void)g; (void)h; (void)x; (void)e; (void)w; (void)b;
        (void)y; (void)bb;
        printf("codes %u %u\n", (unsigned)(sizeof codes / sizeof codes[0]), (unsigned)sizeof(*w));
        printf("entry %s\n", DHCP_CALLOUT_ENTRY_POINT);
        printf("constants");
        for (unsigned i = 0; i < sizeof codes / sizeof codes[0]; i++) printf(" %u", (unsigned)codes[i]);
        printf("\n");
    }
    return 0;
}
"#;
    src
}

#[test]
fn the_c_header_agrees_with_the_rust_layout() {
    let dir = tempfile::tempdir().unwrap();
    let c_file = dir.path().join("layout.c");
    let exe = dir.path().join("layout");
    std::fs::write(&c_file, c_layout_program()).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let status = std::process::Command::new(&cc)
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-I", INCLUDE_DIR])
        .arg(&c_file)
        .arg("-o")
        .arg(&exe)
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {cc:?}: {e}"));
    assert!(status.success(), "the C compile of dhcpssdk.h failed");
    let out = std::process::Command::new(&exe).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let value = |key: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key} ")))
            .unwrap_or_else(|| panic!("{key} missing in:\n{text}"))
            .to_string()
    };
    assert_eq!(
        value("sizeof_table"),
        size_of::<DHCP_CALLOUT_TABLE>().to_string()
    );
    assert_eq!(
        value("sizeof_options"),
        size_of::<DHCP_SERVER_OPTIONS>().to_string()
    );
    for (name, off) in table_offsets() {
        assert_eq!(value(&format!("table.{name}")), off.to_string(), "{name}");
    }
    for (name, off) in options_offsets() {
        assert_eq!(value(&format!("options.{name}")), off.to_string(), "{name}");
    }
    assert_eq!(value("entry"), DHCP_CALLOUT_ENTRY_POINT);
    // LPWSTR points to 16-bit units also on Linux.
    assert_eq!(value("codes"), "27 2");
    let rust_codes: Vec<String> = [
        DHCP_CONTROL_START,
        DHCP_CONTROL_STOP,
        DHCP_CONTROL_PAUSE,
        DHCP_CONTROL_CONTINUE,
        DHCP_DROP_DUPLICATE,
        DHCP_DROP_NOMEM,
        DHCP_DROP_INTERNAL_ERROR,
        DHCP_DROP_TIMEOUT,
        DHCP_DROP_UNAUTH,
        DHCP_DROP_PAUSED,
        DHCP_DROP_NO_SUBNETS,
        DHCP_DROP_INVALID,
        DHCP_DROP_WRONG_SERVER,
        DHCP_DROP_NOADDRESS,
        DHCP_DROP_PROCESSED,
        DHCP_DROP_GEN_FAILURE,
        DHCP_SEND_PACKET,
        DHCP_PROB_CONFLICT,
        DHCP_PROB_DECLINE,
        DHCP_PROB_RELEASE,
        DHCP_PROB_NACKED,
        DHCP_GIVE_ADDRESS_NEW,
        DHCP_GIVE_ADDRESS_OLD,
        DHCP_CLIENT_BOOTP,
        DHCP_CLIENT_DHCP,
        0,
        87,
    ]
    .iter()
    .map(|c| c.to_string())
    .collect();
    assert_eq!(value("constants"), rust_codes.join(" "));
}

/// The header also compiles as Windows code with mingw-w64 (`<windows.h>` path), when installed.
#[test]
fn the_c_header_compiles_for_windows_with_mingw_when_installed() {
    let mingw = "x86_64-w64-mingw32-gcc";
    let dir = tempfile::tempdir().unwrap();
    let c_file = dir.path().join("layout.c");
    std::fs::write(&c_file, c_layout_program()).unwrap();
    let result = std::process::Command::new(mingw)
        .args([
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fsyntax-only",
            "-I",
            INCLUDE_DIR,
        ])
        .arg(&c_file)
        .status();
    match result {
        Ok(status) => assert!(status.success(), "mingw-w64 compile of dhcpssdk.h failed"),
        Err(e) => eprintln!("note: {mingw} not usable ({e}); Windows header check skipped"),
    }
}

/// C source asserting (at compile time) the given sizes and `DHCP_SERVER_OPTIONS` offsets, and
/// pointer-sized table slots.
fn c_static_asserts(table_size: usize, options_size: usize, options: &[(&str, usize)]) -> String {
    let mut src = String::from("#include \"dhcpssdk.h\"\n");
    src += &format!(
        "_Static_assert(sizeof(DHCP_CALLOUT_TABLE) == {table_size}, \"table size\");\n\
         _Static_assert(sizeof(DHCP_SERVER_OPTIONS) == {options_size}, \"options size\");\n"
    );
    let slot = table_size / 10;
    for (i, (name, _)) in table_offsets().iter().enumerate() {
        src += &format!(
            "_Static_assert(offsetof(DHCP_CALLOUT_TABLE, {name}) == {}, \"{name}\");\n",
            i * slot
        );
    }
    for (name, offset) in options {
        src += &format!(
            "_Static_assert(offsetof(DHCP_SERVER_OPTIONS, {name}) == {offset}, \"{name}\");\n"
        );
    }
    src
}

/// Compiles `source` with `compiler args`; `None` when the compiler (or the target) is unavailable.
fn compile_check(compiler: &str, args: &[&str], source: &str) -> Option<std::process::Output> {
    let dir = tempfile::tempdir().unwrap();
    let c_file = dir.path().join("asserts.c");
    std::fs::write(&c_file, source).unwrap();
    std::process::Command::new(compiler)
        .args(args)
        .args(["-std=c11", "-fsyntax-only", "-I", INCLUDE_DIR])
        .arg(&c_file)
        .output()
        .ok()
}

/// The header's x86 layout (40 / 96 bytes) checked by a 32-bit C compile, where the host compiler
/// can target x86 (freestanding: no 32-bit libc needed).
#[test]
fn the_c_header_has_the_x86_layout_when_compiled_for_32_bits() {
    let source = c_static_asserts(40, 96, &X86_OPTIONS);
    match compile_check("cc", &["-m32", "-ffreestanding"], &source) {
        Some(out) if out.status.success() => {}
        Some(out) if String::from_utf8_lossy(&out.stderr).contains("static assertion failed") => {
            panic!(
                "x86 layout mismatch:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        }
        Some(out) => eprintln!(
            "note: cc cannot target 32-bit x86 here; x86 header check skipped:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        None => eprintln!("note: no cc; x86 header check skipped"),
    }
}

/// The header's x64 layout under mingw-w64 (the `<windows.h>` path), when installed.
#[test]
fn the_c_header_has_the_x64_layout_under_mingw_when_installed() {
    let source = c_static_asserts(80, 176, &X64_OPTIONS);
    match compile_check("x86_64-w64-mingw32-gcc", &[], &source) {
        Some(out) => assert!(
            out.status.success(),
            "mingw-w64 layout check failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        None => eprintln!("note: x86_64-w64-mingw32-gcc not installed; check skipped"),
    }
}
