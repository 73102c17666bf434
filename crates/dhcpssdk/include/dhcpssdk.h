/*
 * dhcpssdk.h - the Microsoft DHCP Server callout API, portable edition (calloutd project).
 *
 * Written for calloutd from Microsoft's public documentation of the callout API; it is not the
 * Windows SDK header. One callout source file that includes it builds unchanged as:
 *   - a Windows DLL (mingw-w64 or MSVC): the Windows types come from <windows.h>;
 *   - a Linux shared object: this header defines the Windows types a callout uses
 *     (DWORD, BOOL, BOOLEAN, BYTE, LPBYTE, LPVOID, LPBOOL, LPWSTR, CHAR, TRUE/FALSE,
 *     ERROR_* codes, WINAPI/APIENTRY/CALLBACK, IN/OUT).
 * LPWSTR points to 16-bit UTF-16 units on every platform (Linux wchar_t is 32 bits: do not use
 * wchar_t functions on ChainDlls there).
 * Export the entry point with DHCP_CALLOUT_EXPORT:
 *   DHCP_CALLOUT_EXPORT DWORD WINAPI DhcpServerCalloutEntry(LPWSTR ChainDlls, DWORD CalloutVersion,
 *                                                           LPDHCP_CALLOUT_TABLE CalloutTbl);
 * Layouts are those of CalloutVersion 0.
 */
#ifndef CALLOUTD_DHCPSSDK_H
#define CALLOUTD_DHCPSSDK_H

/* Keep the Windows SDK's own dhcpssdk.h (guard _CALLOUT_H_) from redefining the same names. */
#ifndef _CALLOUT_H_
#define _CALLOUT_H_
#endif

/* C++ sources export the entry point unmangled. */
#ifdef __cplusplus
#define DHCP_CALLOUT_EXTERN_C extern "C"
#else
#define DHCP_CALLOUT_EXTERN_C
#endif

#if defined(_WIN32)

#include <windows.h>

#define DHCP_CALLOUT_EXPORT DHCP_CALLOUT_EXTERN_C __declspec(dllexport)

#else /* not Windows: supply the Windows vocabulary a callout relies on */

#include <stdint.h>
#include <stddef.h>

typedef uint32_t DWORD;
typedef uint32_t ULONG;
typedef int32_t BOOL;
typedef uint8_t BOOLEAN;
typedef uint8_t BYTE;
typedef char CHAR;
typedef uint16_t WCHAR;
typedef BYTE *LPBYTE;
typedef BYTE *PBYTE;
typedef void *LPVOID;
typedef void *PVOID;
typedef BOOL *LPBOOL;
typedef DWORD *LPDWORD;
typedef WCHAR *LPWSTR;
typedef const WCHAR *LPCWSTR;
typedef CHAR *LPSTR;
typedef const CHAR *LPCSTR;

#ifndef TRUE
#define TRUE 1
#endif
#ifndef FALSE
#define FALSE 0
#endif

/* On Linux there is one C calling convention (Rust's extern "system" is extern "C" there). */
#define WINAPI
#define APIENTRY
#define CALLBACK
#define IN
#define OUT
#define OPTIONAL
#define UNALIGNED

#define ERROR_SUCCESS 0L
#define NO_ERROR 0L
#define ERROR_INVALID_FUNCTION 1L
#define ERROR_FILE_NOT_FOUND 2L
#define ERROR_PATH_NOT_FOUND 3L
#define ERROR_ACCESS_DENIED 5L
#define ERROR_INVALID_HANDLE 6L
#define ERROR_NOT_ENOUGH_MEMORY 8L
#define ERROR_BAD_FORMAT 11L
#define ERROR_INVALID_DATA 13L
#define ERROR_OUTOFMEMORY 14L
#define ERROR_NOT_READY 21L
#define ERROR_BAD_LENGTH 24L
#define ERROR_GEN_FAILURE 31L
#define ERROR_NOT_SUPPORTED 50L
#define ERROR_INVALID_PARAMETER 87L
#define ERROR_CALL_NOT_IMPLEMENTED 120L
#define ERROR_INSUFFICIENT_BUFFER 122L
#define ERROR_MOD_NOT_FOUND 126L
#define ERROR_PROC_NOT_FOUND 127L
#define ERROR_ALREADY_EXISTS 183L
#define ERROR_MORE_DATA 234L
#define ERROR_NO_MORE_ITEMS 259L
#define ERROR_NOT_FOUND 1168L
#define ERROR_TIMEOUT 1460L

#define DHCP_CALLOUT_EXPORT DHCP_CALLOUT_EXTERN_C __attribute__((visibility("default")))

#endif /* _WIN32 */

#ifdef __cplusplus
extern "C" {
#endif

typedef DWORD DHCP_IP_ADDRESS;

/* Registry location of the callout list. */
#define DHCP_CALLOUT_LIST_KEY L"System\\CurrentControlSet\\Services\\DHCPServer\\Parameters"
#define DHCP_CALLOUT_LIST_VALUE L"CalloutDlls"
#define DHCP_CALLOUT_ENABLE_VALUE L"CalloutEnabled"
/* The name every callout exports. */
#define DHCP_CALLOUT_ENTRY_POINT "DhcpServerCalloutEntry"

/* DhcpControlHook codes. */
#define DHCP_CONTROL_START 0x00000001
#define DHCP_CONTROL_STOP 0x00000002
#define DHCP_CONTROL_PAUSE 0x00000003
#define DHCP_CONTROL_CONTINUE 0x00000004

/* DhcpPktDropHook codes. */
#define DHCP_DROP_DUPLICATE 0x00000001
#define DHCP_DROP_NOMEM 0x00000002
#define DHCP_DROP_INTERNAL_ERROR 0x00000003
#define DHCP_DROP_TIMEOUT 0x00000004
#define DHCP_DROP_UNAUTH 0x00000005
#define DHCP_DROP_PAUSED 0x00000006
#define DHCP_DROP_NO_SUBNETS 0x00000007
#define DHCP_DROP_INVALID 0x00000008
#define DHCP_DROP_WRONG_SERVER 0x00000009
#define DHCP_DROP_NOADDRESS 0x0000000A
#define DHCP_DROP_PROCESSED 0x0000000B
#define DHCP_DROP_GEN_FAILURE 0x00000100

/* DhcpPktSendHook code. */
#define DHCP_SEND_PACKET 0x10000000

/* DhcpAddressDelHook codes. */
#define DHCP_PROB_CONFLICT 0x20000001
#define DHCP_PROB_DECLINE 0x20000002
#define DHCP_PROB_RELEASE 0x20000003
#define DHCP_PROB_NACKED 0x20000004

/* DhcpAddressOfferHook codes and address types. */
#define DHCP_GIVE_ADDRESS_NEW 0x30000001
#define DHCP_GIVE_ADDRESS_OLD 0x30000002
#define DHCP_CLIENT_BOOTP 0x30000003
#define DHCP_CLIENT_DHCP 0x30000004

/* The server's parse of common options (DhcpHandleOptionsHook). NULL = option absent. Pointers
 * point into the packet (network byte order) except ScopeId (host order); valid during the call. */
typedef struct _DHCP_SERVER_OPTIONS {
    BYTE *MessageType;                           /* 53 */
    DHCP_IP_ADDRESS UNALIGNED *SubnetMask;       /* 1 */
    DHCP_IP_ADDRESS UNALIGNED *RequestedAddress; /* 50 */
    DWORD UNALIGNED *RequestLeaseTime;           /* 51 */
    BYTE *OverlayFields;                         /* 52 */
    DHCP_IP_ADDRESS UNALIGNED *RouterAddress;    /* 3 */
    DHCP_IP_ADDRESS UNALIGNED *Server;           /* 54 */
    BYTE *ParameterRequestList;                  /* 55 */
    DWORD ParameterRequestListLength;
    CHAR *MachineName;                           /* 12, not NUL-terminated */
    DWORD MachineNameLength;
    BYTE ClientHardwareAddressType;              /* htype */
    BYTE ClientHardwareAddressLength;            /* hlen */
    BYTE *ClientHardwareAddress;                 /* chaddr */
    CHAR *ClassIdentifier;                       /* 77 */
    DWORD ClassIdentifierLength;
    BYTE *VendorClass;                           /* 60 */
    DWORD VendorClassLength;
    DWORD DNSFlags;                              /* 81 flags byte */
    DWORD DNSNameLength;
    LPBYTE DNSName;                              /* 81 name */
    BOOLEAN DSDomainNameRequested;
    CHAR *DSDomainName;
    DWORD DSDomainNameLen;
    DWORD UNALIGNED *ScopeId;                    /* selected scope's subnet address, host order */
} DHCP_SERVER_OPTIONS, *LPDHCP_SERVER_OPTIONS;

/* Hook function types. IpAddress/AltAddress are host-order (192.168.0.1 = 0xC0A80001). */
typedef DWORD (WINAPI *LPDHCP_CONTROL)(DWORD dwControlCode, LPVOID lpReserved);
typedef DWORD (WINAPI *LPDHCP_NEWPKT)(LPBYTE *Packet, DWORD *PacketSize, DWORD IpAddress,
                                      LPVOID Reserved, LPVOID *PktContext, LPBOOL ProcessIt);
typedef DWORD (WINAPI *LPDHCP_DROP_SEND)(LPBYTE *Packet, DWORD *PacketSize, DWORD ControlCode,
                                         DWORD IpAddress, LPVOID Reserved, LPVOID PktContext);
typedef DWORD (WINAPI *LPDHCP_PROB)(LPBYTE Packet, DWORD PacketSize, DWORD ControlCode,
                                    DWORD IpAddress, DWORD AltAddress, LPVOID Reserved,
                                    LPVOID PktContext);
typedef DWORD (WINAPI *LPDHCP_GIVE_ADDRESS)(LPBYTE Packet, DWORD PacketSize, DWORD ControlCode,
                                            DWORD IpAddress, DWORD AltAddress, DWORD AddrType,
                                            DWORD LeaseTime, LPVOID Reserved, LPVOID PktContext);
typedef DWORD (WINAPI *LPDHCP_HANDLE_OPTIONS)(LPBYTE Packet, DWORD PacketSize, LPVOID Reserved,
                                              LPVOID PktContext,
                                              LPDHCP_SERVER_OPTIONS ServerOptions);
typedef DWORD (WINAPI *LPDHCP_DELETE_CLIENT)(DWORD IpAddress, LPBYTE HwAddress,
                                             ULONG HwAddressLength, DWORD Reserved,
                                             DWORD ClientType);

/* The table the entry point fills in; zeroed by the server before the call. */
typedef struct _DHCP_CALLOUT_TABLE {
    LPDHCP_CONTROL DhcpControlHook;
    LPDHCP_NEWPKT DhcpNewPktHook;
    LPDHCP_DROP_SEND DhcpPktDropHook;
    LPDHCP_DROP_SEND DhcpPktSendHook;
    LPDHCP_PROB DhcpAddressDelHook;
    LPDHCP_GIVE_ADDRESS DhcpAddressOfferHook;
    LPDHCP_HANDLE_OPTIONS DhcpHandleOptionsHook;
    LPDHCP_DELETE_CLIENT DhcpDeleteClientHook;
    LPVOID DhcpExtensionHook; /* reserved */
    LPVOID DhcpReservedHook;  /* reserved */
} DHCP_CALLOUT_TABLE, *LPDHCP_CALLOUT_TABLE;

/* ChainDlls: the DLLs listed after this one, a UTF-16 multi-string (never NULL). */
typedef DWORD (WINAPI *LPDHCP_ENTRY_POINT_FUNC)(LPWSTR ChainDlls, DWORD CalloutVersion,
                                                LPDHCP_CALLOUT_TABLE CalloutTbl);

#ifdef __cplusplus
}
#endif

#endif /* CALLOUTD_DHCPSSDK_H */
