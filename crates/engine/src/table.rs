//! The in-memory lease table: the allocation authority. Every method runs under the lease lock (the
//! table lives inside the engine's lease mutex); nothing here does I/O.

// foldhash (randomly seeded per process) instead of SipHash: SipHash was ~10 % of the engine's
// instructions per DORA (callgrind of examples/dora_cost.rs).
use foldhash::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use dhcpssdk::ClientType;

use crate::clock::from_unix_secs;
use crate::store::Lease;

/// "Never" in the table's Unix-seconds time.
pub(crate) const NEVER: u64 = u64::MAX;

/// What an address is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotState {
    /// Offered to its owner until `until`; free for others afterwards.
    Offered,
    /// Leased to its owner until `until` (expired leases stay until purged).
    Active,
    /// Released by its owner: free, but remembered as the owner's preferred address.
    Released,
    /// Declined or found in use: offered to nobody until `until`.
    Probation,
}

/// One address's record.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub owner: Option<Arc<[u8]>>,
    pub state: SlotState,
    pub until: u64,
    pub hw_type: u8,
    pub hw_len: u8,
    pub hw: [u8; 16],
    pub client_type: ClientType,
    pub host_name: Option<Box<str>>,
    /// The scope policy the lease was granted under (kept for renewals; docs/dhcp.md section 2).
    pub policy: Option<Arc<str>>,
}

impl Slot {
    pub fn hw_address(&self) -> &[u8] {
        &self.hw[..usize::from(self.hw_len.min(16))]
    }

    pub fn to_lease(&self, ip: u32) -> Lease {
        Lease {
            ip: Ipv4Addr::from(ip),
            client_id: self
                .owner
                .as_deref()
                .map(<[u8]>::to_vec)
                .unwrap_or_default(),
            hw_type: self.hw_type,
            hw_address: self.hw_address().to_vec(),
            host_name: self.host_name.as_deref().map(str::to_owned),
            expires: (self.until != NEVER).then(|| from_unix_secs(self.until)),
            client_type: self.client_type,
            policy_name: self.policy.as_deref().map(str::to_owned),
        }
    }
}

/// What the table knows about one client.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ClientRecord {
    /// Its lease (Active slot), expired or not.
    pub active: Option<u32>,
    /// Its outstanding offer (Offered slot).
    pub offer: Option<u32>,
    /// Its last released address (Released slot).
    pub previous: Option<u32>,
}

impl ClientRecord {
    pub fn is_empty(&self) -> bool {
        self.active.is_none() && self.offer.is_none() && self.previous.is_none()
    }

    fn forget(&mut self, ip: u32) {
        for field in [&mut self.active, &mut self.offer, &mut self.previous] {
            if *field == Some(ip) {
                *field = None;
            }
        }
    }
}

/// Addresses by number and clients by identity.
#[derive(Debug, Default)]
pub(crate) struct LeaseTable {
    pub slots: HashMap<u32, Slot>,
    pub clients: HashMap<Arc<[u8]>, ClientRecord>,
    /// Per scope (config index): where the next free-address search starts.
    pub cursors: Vec<u32>,
    /// Per scope: the last pool search found nothing; it need not run again while `freed` is
    /// unchanged and the clock is before the second value (the earliest lapse of a blocking offer or
    /// probation).
    pub exhausted: Vec<Option<(u64, u64)>>,
    /// Counts events that free an address (release, removal), invalidating `exhausted`.
    pub freed: u64,
}

impl LeaseTable {
    pub fn client(&self, key: &[u8]) -> ClientRecord {
        self.clients.get(key).copied().unwrap_or_default()
    }

    /// True when `ip` may go to the client `key` as far as bindings go (exclusions, ranges and
    /// reservations are the caller's business).
    pub fn is_free_for(&self, ip: u32, key: &[u8], now: u64) -> bool {
        match self.slots.get(&ip) {
            None => true,
            Some(slot) => match slot.state {
                SlotState::Probation => slot.until <= now,
                SlotState::Released => true,
                SlotState::Offered => slot.until <= now || slot.owner.as_deref() == Some(key),
                SlotState::Active => slot.owner.as_deref() == Some(key),
            },
        }
    }

    /// The shared key for `key`, reusing the stored one when the client is known.
    fn key_arc(&self, key: &[u8]) -> Arc<[u8]> {
        match self.clients.get_key_value(key) {
            Some((stored, _)) => Arc::clone(stored),
            None => Arc::from(key),
        }
    }

    /// Frees an address: removes its slot (offer, lease, probation) and its owner's reference.
    pub fn free_slot(&mut self, ip: u32) -> Option<Slot> {
        self.freed += 1;
        self.drop_slot(ip)
    }

    /// Removes a slot and the reference its owner holds to it.
    fn drop_slot(&mut self, ip: u32) -> Option<Slot> {
        let slot = self.slots.remove(&ip)?;
        if let Some(owner) = &slot.owner {
            if let Some(record) = self.clients.get_mut(&owner[..]) {
                record.forget(ip);
                if record.is_empty() {
                    self.clients.remove(&owner[..]);
                }
            }
        }
        Some(slot)
    }

    /// Gives `ip` to `key` in `state` until `until`, taking it from a previous owner (whose offer or
    /// released address it was) and updating the client's record. Returns the replaced slot's state if
    /// it was this client's own Active lease (renewal).
    #[allow(clippy::too_many_arguments)]
    pub fn claim(
        &mut self,
        ip: u32,
        key: &[u8],
        state: SlotState,
        until: u64,
        hw_type: u8,
        hw: &[u8],
        client_type: ClientType,
        host_name: Option<&[u8]>,
    ) -> bool {
        let key = self.key_arc(key);
        let was_own_active = matches!(
            self.slots.get(&ip),
            Some(slot) if slot.state == SlotState::Active && slot.owner.as_deref() == Some(&key[..])
        );
        // A client holds one offer: a new offer or lease on another address ends the old offer.
        if matches!(state, SlotState::Offered | SlotState::Active) {
            let old_offer = self.client(&key).offer.filter(|offer| *offer != ip);
            if let Some(old_offer) = old_offer {
                let owned_offer = self.slots.get(&old_offer).is_some_and(|slot| {
                    slot.state == SlotState::Offered && slot.owner.as_deref() == Some(&key[..])
                });
                if owned_offer {
                    self.free_slot(old_offer);
                }
            }
        }
        let (old_host, policy) = match self.slots.get(&ip) {
            Some(slot) if slot.owner.as_deref() == Some(&key[..]) => {
                (slot.host_name.clone(), slot.policy.clone())
            }
            _ => (None, None),
        };
        self.drop_slot(ip);
        let mut hw_field = [0u8; 16];
        let hw_len = hw.len().min(16);
        hw_field[..hw_len].copy_from_slice(&hw[..hw_len]);
        let host_name = match host_name {
            Some(name) => match &old_host {
                Some(old) if old.as_bytes() == name => old_host,
                _ => Some(String::from_utf8_lossy(name).into()),
            },
            None => old_host,
        };
        self.slots.insert(
            ip,
            Slot {
                owner: Some(Arc::clone(&key)),
                state,
                until,
                hw_type,
                hw_len: hw_len as u8,
                hw: hw_field,
                client_type,
                host_name,
                policy,
            },
        );
        let record = self.clients.entry(key).or_default();
        match state {
            SlotState::Offered => record.offer = Some(ip),
            SlotState::Active => {
                record.active = Some(ip);
                if record.offer == Some(ip) {
                    record.offer = None;
                }
            }
            SlotState::Released => record.previous = Some(ip),
            SlotState::Probation => {}
        }
        if state != SlotState::Released && record.previous == Some(ip) {
            record.previous = None;
        }
        was_own_active
    }

    /// Puts `ip` on probation (nobody's) until `until`.
    pub fn probation(&mut self, ip: u32, until: u64) {
        self.drop_slot(ip);
        self.slots.insert(
            ip,
            Slot {
                owner: None,
                state: SlotState::Probation,
                until,
                hw_type: 0,
                hw_len: 0,
                hw: [0; 16],
                client_type: ClientType::Dhcp,
                host_name: None,
                policy: None,
            },
        );
    }

    /// Turns the client's Active lease on `ip` into a Released slot (its preferred address).
    pub fn release(&mut self, ip: u32) {
        self.freed += 1;
        if let Some(slot) = self.slots.get_mut(&ip) {
            slot.state = SlotState::Released;
            if let Some(owner) = slot.owner.clone() {
                if let Some(record) = self.clients.get_mut(&owner[..]) {
                    record.forget(ip);
                    record.previous = Some(ip);
                }
            }
        }
    }

    /// Restores a persisted lease at startup (with the policy it was granted under).
    pub fn restore(&mut self, lease: &Lease) {
        let until = lease.expires.map(crate::clock::unix_secs).unwrap_or(NEVER);
        let ip = u32::from(lease.ip);
        self.claim(
            ip,
            &lease.client_id,
            SlotState::Active,
            until,
            lease.hw_type,
            &lease.hw_address,
            lease.client_type,
            lease.host_name.as_deref().map(str::as_bytes),
        );
        if let Some(slot) = self.slots.get_mut(&ip) {
            slot.policy = lease.policy_name.as_deref().map(Arc::from);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_moves_released_address_to_new_owner() {
        let mut table = LeaseTable::default();
        table.claim(
            10,
            b"a",
            SlotState::Active,
            100,
            1,
            &[1],
            ClientType::Dhcp,
            None,
        );
        table.release(10);
        assert_eq!(table.client(b"a").previous, Some(10));
        assert!(table.is_free_for(10, b"b", 0));
        table.claim(
            10,
            b"b",
            SlotState::Offered,
            60,
            1,
            &[2],
            ClientType::Dhcp,
            None,
        );
        assert!(
            !table.clients.contains_key(&b"a"[..]),
            "old owner forgotten"
        );
        assert!(!table.is_free_for(10, b"c", 59));
        assert!(table.is_free_for(10, b"c", 60), "offer hold ran out");
    }

    #[test]
    fn a_new_offer_ends_the_old_one() {
        let mut table = LeaseTable::default();
        table.claim(
            10,
            b"a",
            SlotState::Offered,
            60,
            1,
            &[1],
            ClientType::Dhcp,
            None,
        );
        let freed = table.freed;
        table.claim(
            11,
            b"a",
            SlotState::Offered,
            60,
            1,
            &[1],
            ClientType::Dhcp,
            None,
        );
        assert!(!table.slots.contains_key(&10));
        assert_eq!(table.client(b"a").offer, Some(11));
        assert_eq!(table.freed, freed + 1);
    }
}
