//! Leases carried in an `Export-DhcpServer -Leases` file, taken into the lease store at startup, so a
//! server moved from Windows keeps its clients' addresses.
//!
//! What is taken: an active lease (`AddressState` Active or ActiveReservation) that has not expired,
//! on an address inside a configured scope, whose address and client have no lease here yet (the
//! lease database wins: an import never overwrites). `LeaseExpiryTime` is ISO 8601; without a zone
//! it is this machine's local time, as the exporting server wrote its own; no expiry = infinite.
//! A `ClientId` of six bytes is an Ethernet MAC, which Microsoft shows for clients that send no
//! option 61: the identity is then hardware type 1 + MAC, as the engine keys such clients.

use std::net::Ipv4Addr;
use std::time::SystemTime;

use calloutd_config::ImportedLease;
use chrono::{DateTime, Local, NaiveDateTime, TimeZone};
use dhcpssdk::ClientType;

use crate::store::Lease;

/// What an import did with the exported leases, by reason.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Taken into the lease store.
    pub imported: usize,
    /// The address or the client already has a lease here.
    pub already_leased: usize,
    /// AddressState other than Active/ActiveReservation (e.g. Declined, Expired, Offered).
    pub not_active: usize,
    /// LeaseExpiryTime in the past.
    pub expired: usize,
    /// The address is in no configured scope.
    pub outside_scopes: usize,
    /// LeaseExpiryTime not understood: the address and the text (the lease is skipped).
    pub bad_expiry: Vec<(Ipv4Addr, String)>,
}

/// Why one exported lease is not imported (before looking at the lease table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotImported {
    NotActive,
    Expired,
    BadExpiry(String),
}

/// The engine's lease for an exported one, or why there is none.
pub(crate) fn lease_from_export(
    exported: &ImportedLease,
    now: SystemTime,
) -> Result<Lease, NotImported> {
    if !matches!(
        exported.address_state.as_str(),
        "Active" | "ActiveReservation"
    ) {
        return Err(NotImported::NotActive);
    }
    let expires = match exported.lease_expiry_time.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => {
            let at = parse_expiry(text).ok_or_else(|| NotImported::BadExpiry(text.to_owned()))?;
            if at <= now {
                return Err(NotImported::Expired);
            }
            Some(at)
        }
    };
    let id = &exported.client_id;
    let (client_id, hw_type, hw_address) = match id.len() {
        6 => ([&[1u8][..], id].concat(), 1, id.clone()),
        7 if id[0] == 1 => (id.clone(), 1, id[1..].to_vec()),
        _ => (id.clone(), 0, Vec::new()),
    };
    Ok(Lease {
        ip: exported.ip_address,
        client_id,
        hw_type,
        hw_address,
        host_name: exported.host_name.clone().filter(|h| !h.is_empty()),
        expires,
        client_type: ClientType::Dhcp,
        policy_name: None,
    })
}

/// RFC 3339 (with a zone), or a local date-time `YYYY-MM-DDTHH:MM:SS[.fff]`.
fn parse_expiry(text: &str) -> Option<SystemTime> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.into());
    }
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(SystemTime::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn exported(state: &str, id: &[u8], expiry: Option<&str>) -> ImportedLease {
        ImportedLease {
            ip_address: Ipv4Addr::new(198, 18, 4, 9),
            client_id: id.to_vec(),
            host_name: Some("pc9".into()),
            address_state: state.into(),
            lease_expiry_time: expiry.map(str::to_owned),
        }
    }

    fn now() -> SystemTime {
        DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
            .unwrap()
            .into()
    }

    #[test]
    fn an_active_lease_with_a_mac_becomes_an_ethernet_client() {
        let mac = [0x00, 0x15, 0x5d, 0, 0, 9];
        let lease = lease_from_export(
            &exported("Active", &mac, Some("2026-12-01T10:00:00Z")),
            now(),
        )
        .unwrap();
        assert_eq!(lease.client_id, [&[1u8][..], &mac].concat());
        assert_eq!((lease.hw_type, lease.hw_address.as_slice()), (1, &mac[..]));
        assert_eq!(lease.host_name.as_deref(), Some("pc9"));
        assert_eq!(
            lease.expires,
            Some(now() + Duration::from_secs(5 * 86400 + 22 * 3600))
        );
    }

    #[test]
    fn states_expiry_and_identities() {
        let mac = [2, 0, 0, 0, 0, 1];
        assert_eq!(
            lease_from_export(&exported("Declined", &mac, None), now()),
            Err(NotImported::NotActive)
        );
        assert_eq!(
            lease_from_export(
                &exported("Active", &mac, Some("2026-11-01T00:00:00Z")),
                now()
            ),
            Err(NotImported::Expired)
        );
        assert_eq!(
            lease_from_export(&exported("Active", &mac, Some("next tuesday")), now()),
            Err(NotImported::BadExpiry("next tuesday".into()))
        );
        // A reservation without expiry: infinite.
        let reserved =
            lease_from_export(&exported("ActiveReservation", &mac, None), now()).unwrap();
        assert_eq!(reserved.expires, None);
        // A naive time is local time, so a year ahead is in the future in any zone.
        assert!(lease_from_export(
            &exported("Active", &mac, Some("2027-11-25T12:00:00")),
            now()
        )
        .is_ok());
        // An option-61 identity "01" + MAC keeps its bytes; anything else is kept as is.
        let uid = [1, 2, 0, 0, 0, 0, 1];
        let lease = lease_from_export(&exported("Active", &uid, None), now()).unwrap();
        assert_eq!((lease.client_id.as_slice(), lease.hw_type), (&uid[..], 1));
        let other = lease_from_export(&exported("Active", b"host-id-x", None), now()).unwrap();
        assert_eq!(
            (other.client_id.as_slice(), other.hw_type),
            (&b"host-id-x"[..], 0)
        );
    }
}
