//! The in-memory lease table: the allocation authority. Every method runs under the lease lock (the
//! table lives inside the engine's lease mutex); nothing here does I/O.
//!
//! Sized for 1 000 000 leases (bench/results.md, "1 000 000 leases: load time and memory"): the slots
//! are packed in one vector behind an address index ([`Slots`]), and the policy names, few and
//! repeated on every lease, are numbers into one table of names ([`PolicyNames`]).

// foldhash (randomly seeded per process) instead of SipHash: SipHash was ~10 % of the engine's
// instructions per DORA (callgrind of examples/dora_cost.rs).
use foldhash::HashMap;
use std::collections::hash_map::Entry;
use std::net::Ipv4Addr;
use std::num::NonZeroU32;
use std::sync::Arc;

use dhcpssdk::ClientType;

use crate::clock::from_unix_secs;
use crate::store::{Lease, LeaseRow, LeaseSink};

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
    /// A BOOTP client's (else DHCP): a byte, where [`ClientType`] is a `u32`.
    pub bootp: bool,
    pub host_name: Option<Box<str>>,
    /// The scope policy the lease was granted under (kept for renewals; docs/dhcp.md section 2), in
    /// the table's [`PolicyNames`].
    pub policy: Option<PolicyId>,
}

impl Slot {
    /// DHCP or BOOTP.
    pub fn client_type(&self) -> ClientType {
        if self.bootp {
            ClientType::Bootp
        } else {
            ClientType::Dhcp
        }
    }

    pub fn hw_address(&self) -> &[u8] {
        &self.hw[..usize::from(self.hw_len.min(16))]
    }

    /// The lease this slot holds, its policy name looked up in `policies` (the table's).
    pub fn to_lease(&self, ip: u32, policies: &PolicyNames) -> Lease {
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
            client_type: self.client_type(),
            policy_name: self
                .policy
                .and_then(|id| policies.name(id))
                .map(str::to_owned),
        }
    }
}

/// A policy name's number in [`PolicyNames`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct PolicyId(NonZeroU32);

/// The policy names leases were granted under, each stored once: a lease holds a 4-byte
/// [`PolicyId`] instead of its own copy of the name. Names are never removed: they come from the
/// configuration's policies and from the stored and imported leases, so there are few of them.
#[derive(Debug, Default)]
pub(crate) struct PolicyNames {
    ids: HashMap<Arc<str>, PolicyId>,
    names: Vec<Arc<str>>,
}

impl PolicyNames {
    /// The number of `name` (compared exactly, as the names were compared before), added if new.
    pub fn intern(&mut self, name: &str) -> PolicyId {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        // Numbered from 1 (the niche makes `Option<PolicyId>` 4 bytes). 2^32 - 1 distinct names
        // would not fit in memory anyway; saturate rather than wrap.
        let number = u32::try_from(self.names.len() + 1).unwrap_or(u32::MAX);
        let id = PolicyId(NonZeroU32::new(number).unwrap_or(NonZeroU32::MAX));
        let name: Arc<str> = Arc::from(name);
        self.names.push(Arc::clone(&name));
        self.ids.insert(name, id);
        id
    }

    /// The name numbered `id`.
    pub fn name(&self, id: PolicyId) -> Option<&str> {
        let index = usize::try_from(id.0.get() - 1).ok()?;
        self.names.get(index).map(|name| &name[..])
    }
}

/// The slots by address: a hash index (address -> position) into one vector of slots. At 1 000 000
/// leases a map of address -> slot was 2^21 buckets of ~90 bytes (hashbrown keeps them at most 7/8
/// full, so half of them empty) where this is 2^21 buckets of 8 bytes and one slot of 64 bytes per
/// address. Positions of removed slots are reused.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    index: HashMap<u32, u32>,
    entries: Vec<Option<Slot>>,
    /// Positions in `entries` that hold no slot.
    vacant: Vec<u32>,
}

impl Slots {
    /// Makes room for `additional` more slots (the startup load, sized once).
    pub fn reserve(&mut self, additional: usize) {
        self.index.reserve(additional);
        self.entries
            .reserve(additional.saturating_sub(self.vacant.len()));
    }

    /// How many addresses have a slot.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// The slot of `ip`.
    pub fn get(&self, ip: &u32) -> Option<&Slot> {
        let position = *self.index.get(ip)?;
        self.entries.get(position as usize)?.as_ref()
    }

    /// The slot of `ip`, to change it in place.
    pub fn get_mut(&mut self, ip: &u32) -> Option<&mut Slot> {
        let position = *self.index.get(ip)?;
        self.entries.get_mut(position as usize)?.as_mut()
    }

    /// True when `ip` has a slot.
    #[cfg(test)]
    pub fn contains_key(&self, ip: &u32) -> bool {
        self.get(ip).is_some()
    }

    /// Sets the slot of `ip`, returning the one it replaces.
    pub fn insert(&mut self, ip: u32, slot: Slot) -> Option<Slot> {
        match self.index.entry(ip) {
            Entry::Occupied(entry) => {
                if let Some(place) = self.entries.get_mut(*entry.get() as usize) {
                    return place.replace(slot);
                }
                // Not reached (an indexed position is always in the vector): store it anew.
                let position = place_slot(&mut self.entries, &mut self.vacant, slot);
                *entry.into_mut() = position;
                None
            }
            Entry::Vacant(entry) => {
                entry.insert(place_slot(&mut self.entries, &mut self.vacant, slot));
                None
            }
        }
    }

    /// Removes the slot of `ip`.
    pub fn remove(&mut self, ip: &u32) -> Option<Slot> {
        let position = self.index.remove(ip)?;
        let slot = self.entries.get_mut(position as usize)?.take();
        self.vacant.push(position);
        slot
    }

    /// Every slot with its address, in no particular order (as a hash map's).
    pub fn iter(&self) -> impl Iterator<Item = (&u32, &Slot)> + '_ {
        self.index.iter().filter_map(|(ip, &position)| {
            Some((ip, self.entries.get(position as usize)?.as_ref()?))
        })
    }
}

/// Puts `slot` in a vacant position of `entries` (or a new one at the end) and returns it.
fn place_slot(entries: &mut Vec<Option<Slot>>, vacant: &mut Vec<u32>, slot: Slot) -> u32 {
    while let Some(position) = vacant.pop() {
        if let Some(place @ None) = entries.get_mut(position as usize) {
            *place = Some(slot);
            return position;
        }
    }
    // Positions are u32: there are at most 2^32 addresses, each with at most one position.
    let position = entries.len() as u32;
    entries.push(Some(slot));
    position
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

/// A [`ClientRecord`] as the table keeps it: 16 bytes where three `Option<u32>` are 24, so a
/// client map bucket is 32 bytes instead of 40 (at 1 000 000 clients there are 2^21 of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StoredRecord {
    ips: [u32; 3],
    /// Bit i: `ips[i]` holds an address (active, offer, previous).
    present: u8,
}

impl From<ClientRecord> for StoredRecord {
    fn from(record: ClientRecord) -> Self {
        let mut stored = StoredRecord::default();
        for (i, ip) in [record.active, record.offer, record.previous]
            .into_iter()
            .enumerate()
        {
            if let Some(ip) = ip {
                stored.ips[i] = ip;
                stored.present |= 1 << i;
            }
        }
        stored
    }
}

impl From<StoredRecord> for ClientRecord {
    fn from(stored: StoredRecord) -> Self {
        let at = |i: usize| (stored.present & (1 << i) != 0).then_some(stored.ips[i]);
        ClientRecord {
            active: at(0),
            offer: at(1),
            previous: at(2),
        }
    }
}

/// Addresses by number and clients by identity.
#[derive(Debug, Default)]
pub(crate) struct LeaseTable {
    pub slots: Slots,
    pub clients: HashMap<Arc<[u8]>, StoredRecord>,
    /// The policy names the slots refer to.
    pub policies: PolicyNames,
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
        self.clients
            .get(key)
            .map(|stored| ClientRecord::from(*stored))
            .unwrap_or_default()
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

    /// Frees an address: removes its slot (offer, lease, probation) and its owner's reference.
    pub fn free_slot(&mut self, ip: u32) -> Option<Slot> {
        self.freed += 1;
        self.drop_slot(ip)
    }

    /// Removes a slot and the reference its owner holds to it.
    fn drop_slot(&mut self, ip: u32) -> Option<Slot> {
        let slot = self.slots.remove(&ip)?;
        if let Some(owner) = &slot.owner {
            if let Some(stored) = self.clients.get_mut(&owner[..]) {
                let mut record = ClientRecord::from(*stored);
                record.forget(ip);
                if record.is_empty() {
                    self.clients.remove(&owner[..]);
                } else {
                    *stored = record.into();
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
        self.claim_with_policy(
            ip,
            key,
            state,
            until,
            hw_type,
            hw,
            client_type,
            host_name,
            None,
        )
    }

    /// [`Self::claim`], and with `Some(policy)` the slot's policy is `policy` (else it keeps the
    /// one it had when it was this client's). Each map is looked up as few times as it can be: at
    /// 1 000 000 leases every lookup is a cache miss, and the startup load runs this per lease.
    #[allow(clippy::too_many_arguments)]
    fn claim_with_policy(
        &mut self,
        ip: u32,
        key: &[u8],
        state: SlotState,
        until: u64,
        hw_type: u8,
        hw: &[u8],
        client_type: ClientType,
        host_name: Option<&[u8]>,
        set_policy: Option<Option<PolicyId>>,
    ) -> bool {
        // The shared key (the stored one when the client is known) and the client's record.
        let (key, record) = match self.clients.get_key_value(key) {
            Some((stored, record)) => (Arc::clone(stored), ClientRecord::from(*record)),
            None => (Arc::from(key), ClientRecord::default()),
        };
        // The slot on `ip` now: (its state, whether it is this client's).
        let existing = self
            .slots
            .get(&ip)
            .map(|slot| (slot.state, slot.owner.as_deref() == Some(&key[..])));
        let was_own_active = existing == Some((SlotState::Active, true));
        // A client holds one offer: a new offer or lease on another address ends the old offer.
        if matches!(state, SlotState::Offered | SlotState::Active) {
            let old_offer = record.offer.filter(|offer| *offer != ip);
            if let Some(old_offer) = old_offer {
                let owned_offer = self.slots.get(&old_offer).is_some_and(|slot| {
                    slot.state == SlotState::Offered && slot.owner.as_deref() == Some(&key[..])
                });
                if owned_offer {
                    self.free_slot(old_offer);
                }
            }
        }
        // The slot on `ip` is replaced (ending the old offer above never touches it): its host
        // name and policy stay when it was this client's.
        let (old_host, kept_policy) = match existing {
            Some(_) => match self.drop_slot(ip) {
                Some(old) if old.owner.as_deref() == Some(&key[..]) => (old.host_name, old.policy),
                _ => (None, None),
            },
            None => (None, None),
        };
        let policy = set_policy.unwrap_or(kept_policy);
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
                bootp: client_type == ClientType::Bootp,
                host_name,
                policy,
            },
        );
        let stored = self.clients.entry(key).or_default();
        let mut record = ClientRecord::from(*stored);
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
        *stored = record.into();
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
                bootp: false,
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
                if let Some(stored) = self.clients.get_mut(&owner[..]) {
                    let mut record = ClientRecord::from(*stored);
                    record.forget(ip);
                    record.previous = Some(ip);
                    *stored = record.into();
                }
            }
        }
    }

    /// The lease on `ip` (any slot state), as stored and listed.
    pub fn lease(&self, ip: u32) -> Option<Lease> {
        self.slots
            .get(&ip)
            .map(|slot| slot.to_lease(ip, &self.policies))
    }

    /// Records that the lease on `ip` was granted under the policy `name` (nothing when `ip` has no
    /// slot).
    pub fn set_policy(&mut self, ip: u32, name: &str) {
        if self.slots.get(&ip).is_none() {
            return;
        }
        let id = self.policies.intern(name);
        if let Some(slot) = self.slots.get_mut(&ip) {
            slot.policy = Some(id);
        }
    }

    /// The name of the policy the lease on `ip` was granted under.
    #[cfg(test)]
    pub fn policy_of(&self, ip: u32) -> Option<&str> {
        let id = self.slots.get(&ip)?.policy?;
        self.policies.name(id)
    }

    /// Restores a persisted lease at startup (with the policy it was granted under).
    pub fn restore(&mut self, lease: &LeaseRow<'_>) {
        let until = lease.expires.map(crate::clock::unix_secs).unwrap_or(NEVER);
        let policy = lease.policy_name.map(|name| self.policies.intern(name));
        self.claim_with_policy(
            u32::from(lease.ip),
            lease.client_id,
            SlotState::Active,
            until,
            lease.hw_type,
            lease.hw_address,
            lease.client_type,
            lease.host_name.map(str::as_bytes),
            Some(policy),
        );
    }
}

/// The startup load: the store hands its leases over one by one, straight into the table.
impl LeaseSink for LeaseTable {
    fn expect(&mut self, count: usize) {
        // Sized once for every stored lease: growing the maps step by step to 1 000 000 entries
        // rehashed them about twenty times, most of the startup's CPU (page zeroing). With room
        // for a quarter more: sized to the stored leases alone, the first new clients made the
        // tables grow, copying all of them under the lease lock, a stall that overflowed both
        // socket buffers at 8 000 exchanges/s with 1 000 000 stored leases. Room not yet used is
        // address space, not memory.
        let room = count + count / 4 + 4096;
        self.slots.reserve(room);
        self.clients.reserve(room);
    }

    fn lease(&mut self, lease: &LeaseRow<'_>) {
        self.restore(lease);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_startup_load_leaves_room_for_new_clients() {
        // Sized to the stored leases alone, the first new client would grow the tables, copying
        // every stored lease under the lease lock.
        let mut table = LeaseTable::default();
        table.expect(100_000);
        assert!(table.slots.entries.capacity() >= 125_000);
        assert!(table.slots.index.capacity() >= 125_000);
        assert!(table.clients.capacity() >= 125_000);
    }

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

    #[test]
    fn a_slot_is_64_bytes_a_policy_4_and_a_client_record_16() {
        assert!(std::mem::size_of::<Option<Slot>>() <= 64);
        assert_eq!(std::mem::size_of::<Option<PolicyId>>(), 4);
        assert_eq!(std::mem::size_of::<StoredRecord>(), 16);
    }

    #[test]
    fn a_stored_record_keeps_every_field() {
        let ips = [None, Some(0), Some(7), Some(u32::MAX)];
        for active in ips {
            for offer in ips {
                for previous in ips {
                    let record = ClientRecord {
                        active,
                        offer,
                        previous,
                    };
                    let back = ClientRecord::from(StoredRecord::from(record));
                    assert_eq!(
                        (back.active, back.offer, back.previous),
                        (active, offer, previous)
                    );
                }
            }
        }
    }

    #[test]
    fn policy_names_are_stored_once_and_compared_exactly() {
        let mut names = PolicyNames::default();
        let a = names.intern("Printers");
        assert_eq!(names.intern("Printers"), a);
        let b = names.intern("printers");
        assert_ne!(a, b, "exact, as the names were compared before");
        assert_eq!(names.name(a), Some("Printers"));
        assert_eq!(names.name(b), Some("printers"));
        assert_eq!(names.names.len(), 2);
        let mut table = LeaseTable::default();
        table.claim(
            7,
            b"c",
            SlotState::Active,
            100,
            1,
            &[1],
            ClientType::Dhcp,
            None,
        );
        table.set_policy(7, "Printers");
        table.set_policy(8, "nobody's");
        assert_eq!(table.policy_of(7), Some("Printers"));
        assert_eq!(table.policy_of(8), None);
        assert_eq!(
            table.lease(7).and_then(|l| l.policy_name).as_deref(),
            Some("Printers")
        );
        assert_eq!(table.policies.names.len(), 1, "no slot, no name");
        // A renewal by the same client keeps it.
        table.claim(
            7,
            b"c",
            SlotState::Active,
            200,
            1,
            &[1],
            ClientType::Dhcp,
            None,
        );
        assert_eq!(table.policy_of(7), Some("Printers"));
    }

    /// Slots behave as the map of address -> slot they replace: a random sequence of inserts,
    /// replacements and removals, checked against a HashMap after every step.
    #[test]
    fn slots_behave_as_a_map() {
        let mut slots = Slots::default();
        let mut model: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
        let slot = |until: u64| Slot {
            owner: None,
            state: SlotState::Probation,
            until,
            hw_type: 0,
            hw_len: 0,
            hw: [0; 16],
            bootp: false,
            host_name: None,
            policy: None,
        };
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for step in 0..20_000u64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let ip = (seed % 300) as u32;
            if seed.is_multiple_of(3) {
                assert_eq!(
                    slots.remove(&ip).map(|s| s.until),
                    model.remove(&ip),
                    "step {step}"
                );
            } else {
                assert_eq!(
                    slots.insert(ip, slot(step)).map(|s| s.until),
                    model.insert(ip, step),
                    "step {step}"
                );
            }
            assert_eq!(slots.len(), model.len());
            assert_eq!(slots.get(&ip).map(|s| s.until), model.get(&ip).copied());
            assert_eq!(slots.contains_key(&ip), model.contains_key(&ip));
        }
        let mut listed: Vec<(u32, u64)> = slots.iter().map(|(&ip, s)| (ip, s.until)).collect();
        listed.sort_unstable();
        let mut expected: Vec<(u32, u64)> = model.into_iter().collect();
        expected.sort_unstable();
        assert_eq!(listed, expected);
        // Removed positions are reused: never more positions than addresses at once.
        assert!(slots.entries.len() <= 300);
        if let Some(slot) = slots.get_mut(&expected[0].0) {
            slot.until = 1;
        }
        assert_eq!(slots.get(&expected[0].0).map(|s| s.until), Some(1));
    }

    fn stored(last: u32, client: u8) -> Lease {
        Lease {
            ip: Ipv4Addr::from(0xc612_0000 + last),
            client_id: vec![1, 0x0e, 0, 0, 0, client],
            hw_type: 1,
            hw_address: (0..(last % 17) as u8).collect(),
            host_name: last.is_multiple_of(3).then(|| format!("host-{last}")),
            expires: match last % 4 {
                0 => None,
                1 => Some(from_unix_secs(1)),
                _ => Some(from_unix_secs(1_900_000_000 + u64::from(last))),
            },
            client_type: if last.is_multiple_of(5) {
                ClientType::Bootp
            } else {
                ClientType::Dhcp
            },
            policy_name: match last % 3 {
                0 => None,
                1 => Some("Printers".to_owned()),
                _ => Some(format!("policy-{}", last % 7)),
            },
        }
    }

    /// Every slot as a lease with its state and time, and every client's record, sorted.
    #[allow(clippy::type_complexity)]
    fn dump(
        table: &LeaseTable,
    ) -> (
        Vec<(Lease, SlotState, u64)>,
        Vec<(Vec<u8>, Option<u32>, Option<u32>, Option<u32>)>,
    ) {
        let mut slots: Vec<_> = table
            .slots
            .iter()
            .map(|(&ip, slot)| (slot.to_lease(ip, &table.policies), slot.state, slot.until))
            .collect();
        slots.sort_by_key(|(lease, _, _)| lease.ip);
        let mut clients: Vec<_> = table
            .clients
            .iter()
            .map(|(key, stored)| {
                let r = ClientRecord::from(*stored);
                (key.to_vec(), r.active, r.offer, r.previous)
            })
            .collect();
        clients.sort();
        (slots, clients)
    }

    /// The startup load straight from SQLite's rows gives the table the load through a vector of
    /// leases gave (the load before it), and every stored lease comes back as stored.
    #[test]
    fn streaming_load_equals_loading_a_vector() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leases.db");
        // 200 leases over 150 clients: some clients hold two addresses.
        let leases: Vec<Lease> = (1..=200).map(|i| stored(i, (i % 150) as u8)).collect();
        {
            let store = crate::store::testing::open_store(&path).unwrap();
            let mut last = crate::store::CommitTicket(0);
            for lease in &leases {
                last = crate::store::LeaseStore::put(&store, lease.clone());
            }
            crate::store::LeaseStore::commit(&store, last).unwrap();
        }
        let store = crate::store::testing::open_store(&path).unwrap();
        let mut streamed = LeaseTable::default();
        crate::store::LeaseStore::load_into(&store, &mut streamed).unwrap();
        let mut through_vector = LeaseTable::default();
        let loaded = crate::store::LeaseStore::load_all(&store).unwrap();
        assert_eq!(loaded, leases);
        through_vector.slots.reserve(loaded.len());
        through_vector.clients.reserve(loaded.len());
        for lease in &loaded {
            through_vector.restore(&lease.row());
        }
        assert_eq!(dump(&streamed), dump(&through_vector));
        let (slots, clients) = dump(&streamed);
        let listed: Vec<Lease> = slots.into_iter().map(|(lease, _, _)| lease).collect();
        assert_eq!(listed, leases);
        assert_eq!(clients.len(), 150);
        // Eight names (Printers, policy-0 ... policy-6) for the 134 leases with a policy.
        assert_eq!(streamed.policies.names.len(), 1 + 7);

        // The memory store streams the same leases.
        let memory = crate::store::MemoryLeaseStore::with_leases(leases.clone());
        let mut from_memory = LeaseTable::default();
        crate::store::LeaseStore::load_into(&memory, &mut from_memory).unwrap();
        assert_eq!(dump(&from_memory), dump(&streamed));
    }

    /// The table as it was before it was made smaller (a map of address -> slot, each slot with its
    /// own policy name and client type, the client records unpacked), kept here to check that the
    /// smaller one behaves exactly as it did.
    mod previous {
        use super::super::{ClientRecord, SlotState};
        use dhcpssdk::ClientType;
        use std::collections::HashMap;
        use std::sync::Arc;

        #[derive(Debug, Clone)]
        pub struct Slot {
            pub owner: Option<Arc<[u8]>>,
            pub state: SlotState,
            pub until: u64,
            pub hw: Vec<u8>,
            pub hw_type: u8,
            pub client_type: ClientType,
            pub host_name: Option<Box<str>>,
            pub policy: Option<Arc<str>>,
        }

        #[derive(Debug, Default)]
        pub struct Table {
            pub slots: HashMap<u32, Slot>,
            pub clients: HashMap<Arc<[u8]>, ClientRecord>,
            pub freed: u64,
        }

        impl Table {
            fn client(&self, key: &[u8]) -> ClientRecord {
                self.clients.get(key).copied().unwrap_or_default()
            }

            fn key_arc(&self, key: &[u8]) -> Arc<[u8]> {
                match self.clients.get_key_value(key) {
                    Some((stored, _)) => Arc::clone(stored),
                    None => Arc::from(key),
                }
            }

            pub fn free_slot(&mut self, ip: u32) -> Option<Slot> {
                self.freed += 1;
                self.drop_slot(ip)
            }

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
                if matches!(state, SlotState::Offered | SlotState::Active) {
                    let old_offer = self.client(&key).offer.filter(|offer| *offer != ip);
                    if let Some(old_offer) = old_offer {
                        let owned_offer = self.slots.get(&old_offer).is_some_and(|slot| {
                            slot.state == SlotState::Offered
                                && slot.owner.as_deref() == Some(&key[..])
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
                        hw: hw[..hw.len().min(16)].to_vec(),
                        hw_type,
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

            pub fn probation(&mut self, ip: u32, until: u64) {
                self.drop_slot(ip);
                self.slots.insert(
                    ip,
                    Slot {
                        owner: None,
                        state: SlotState::Probation,
                        until,
                        hw: Vec::new(),
                        hw_type: 0,
                        client_type: ClientType::Dhcp,
                        host_name: None,
                        policy: None,
                    },
                );
            }

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

            /// `restore` of a lease with `policy`, and the engine's policy update after a grant.
            pub fn set_policy(&mut self, ip: u32, policy: Option<&str>) {
                if let Some(slot) = self.slots.get_mut(&ip) {
                    slot.policy = policy.map(Arc::from);
                }
            }
        }
    }

    /// One slot of either table, comparable.
    type Seen = (
        u32,
        Option<Vec<u8>>,
        SlotState,
        u64,
        u8,
        Vec<u8>,
        ClientType,
        Option<String>,
        Option<String>,
    );

    #[allow(clippy::type_complexity)]
    fn seen_now(
        table: &LeaseTable,
    ) -> (
        Vec<Seen>,
        Vec<(Vec<u8>, Option<u32>, Option<u32>, Option<u32>)>,
        u64,
    ) {
        let mut slots: Vec<Seen> = table
            .slots
            .iter()
            .map(|(&ip, s)| {
                (
                    ip,
                    s.owner.as_deref().map(<[u8]>::to_vec),
                    s.state,
                    s.until,
                    s.hw_type,
                    s.hw_address().to_vec(),
                    s.client_type(),
                    s.host_name.as_deref().map(str::to_owned),
                    s.policy
                        .and_then(|id| table.policies.name(id))
                        .map(str::to_owned),
                )
            })
            .collect();
        slots.sort_by_key(|seen| seen.0);
        let mut clients: Vec<_> = table
            .clients
            .iter()
            .map(|(key, stored)| {
                let r = ClientRecord::from(*stored);
                (key.to_vec(), r.active, r.offer, r.previous)
            })
            .collect();
        clients.sort();
        (slots, clients, table.freed)
    }

    #[allow(clippy::type_complexity)]
    fn seen_before(
        table: &previous::Table,
    ) -> (
        Vec<Seen>,
        Vec<(Vec<u8>, Option<u32>, Option<u32>, Option<u32>)>,
        u64,
    ) {
        let mut slots: Vec<Seen> = table
            .slots
            .iter()
            .map(|(&ip, s)| {
                (
                    ip,
                    s.owner.as_deref().map(<[u8]>::to_vec),
                    s.state,
                    s.until,
                    s.hw_type,
                    s.hw.clone(),
                    s.client_type,
                    s.host_name.as_deref().map(str::to_owned),
                    s.policy.as_deref().map(str::to_owned),
                )
            })
            .collect();
        slots.sort_by_key(|seen| seen.0);
        let mut clients: Vec<_> = table
            .clients
            .iter()
            .map(|(key, r)| (key.to_vec(), r.active, r.offer, r.previous))
            .collect();
        clients.sort();
        (slots, clients, table.freed)
    }

    /// The smaller table behaves exactly as the previous one: 50 000 random claims (every state),
    /// restores, releases, probations, removals and policy changes on 40 addresses and 12 clients,
    /// both tables compared after every step.
    #[test]
    fn the_table_behaves_as_before_it_was_made_smaller() {
        let states = [
            SlotState::Offered,
            SlotState::Active,
            SlotState::Released,
            SlotState::Probation,
        ];
        let hosts: [Option<&[u8]>; 3] = [None, Some(b"pc-1"), Some(b"pc-2")];
        let policies = [None, Some("Printers"), Some("Phones")];
        let mut now = LeaseTable::default();
        let mut before = previous::Table::default();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for step in 0..50_000u64 {
            let r = next();
            let ip = (r % 40) as u32;
            let client = [1, (r >> 8) as u8 % 12];
            let hw: Vec<u8> = (0..((r >> 16) % 18) as u8).collect();
            let client_type = if (r >> 24) % 4 == 0 {
                ClientType::Bootp
            } else {
                ClientType::Dhcp
            };
            let host = hosts[((r >> 28) % 3) as usize];
            let policy = policies[((r >> 32) % 3) as usize];
            let until = (r >> 36) % 1000;
            match (r >> 40) % 8 {
                0..=2 => {
                    let state = states[((r >> 44) % 4) as usize];
                    let a = now.claim(ip, &client, state, until, 2, &hw, client_type, host);
                    let b = before.claim(ip, &client, state, until, 2, &hw, client_type, host);
                    assert_eq!(a, b, "step {step}: claim's result");
                }
                3 => {
                    let lease = Lease {
                        ip: Ipv4Addr::from(ip),
                        client_id: client.to_vec(),
                        hw_type: 3,
                        hw_address: hw[..hw.len().min(16)].to_vec(),
                        host_name: host.map(|h| String::from_utf8_lossy(h).into_owned()),
                        expires: Some(from_unix_secs(until)),
                        client_type,
                        policy_name: policy.map(str::to_owned),
                    };
                    now.restore(&lease.row());
                    before.claim(
                        ip,
                        &client,
                        SlotState::Active,
                        until,
                        3,
                        &hw,
                        client_type,
                        host,
                    );
                    before.set_policy(ip, policy);
                }
                4 => {
                    now.release(ip);
                    before.release(ip);
                }
                5 => {
                    now.probation(ip, until);
                    before.probation(ip, until);
                }
                6 => {
                    let a = now.free_slot(ip).map(|s| (s.state, s.until));
                    let b = before.free_slot(ip).map(|s| (s.state, s.until));
                    assert_eq!(a, b, "step {step}: free_slot's result");
                }
                _ => {
                    if let Some(name) = policy {
                        now.set_policy(ip, name);
                        if before.slots.contains_key(&ip) {
                            before.set_policy(ip, Some(name));
                        }
                    }
                }
            }
            assert_eq!(seen_now(&now), seen_before(&before), "step {step}");
            assert_eq!(
                now.client(&client).offer,
                before.clients.get(&client[..]).and_then(|r| r.offer)
            );
        }
    }
}
