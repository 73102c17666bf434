//! The engine's view of a callout: one method per hook, called at the points documented in
//! docs/hooks.md. The engine never calls a DLL except through this trait. Three implementations
//! stand behind it: the in-process callout and the isolated callout (both in `calloutd-callout`), and
//! [`NoHooks`] when no callout is loaded.

use std::net::Ipv4Addr;

pub use dhcpssdk::{ClientType, ControlCode, DropReason, GiveCode, ProbCode};

/// The opaque per-packet context a callout stored in NewPkt (a pointer value, never dereferenced by us).
pub type PktContext = usize;

/// A DLL fault observed during a hook call (e.g. a size larger than the buffer): the packet is dropped
/// with [`DropReason::Invalid`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookFault(pub String);

/// Proof that the caller holds the lease database lock (the emulated lock model: AddressOffer,
/// AddressDel and DeleteClient run under it). It borrows the guard of the lock, so it cannot outlive
/// it; the engine makes one from its lease table's guard and from nothing else.
pub struct LeaseLockHeld<'a> {
    _guard: std::marker::PhantomData<&'a ()>,
}

impl<'a> LeaseLockHeld<'a> {
    /// The token for as long as `guard` (the lease lock's guard) lives.
    pub fn new<T>(guard: &'a std::sync::MutexGuard<'_, T>) -> Self {
        let _ = guard;
        LeaseLockHeld {
            _guard: std::marker::PhantomData,
        }
    }
}

/// One method per callout hook. Implementations must be thread-safe: workers call them concurrently.
pub trait Hooks: Send + Sync {
    /// `DhcpControlHook`: service START, STOP, PAUSE, CONTINUE. The runtime calls it under the service
    /// state lock; the engine never does.
    fn control(&self, code: ControlCode);

    /// `DhcpNewPktHook`: right after receipt, before parsing. May edit or replace `packet`.
    /// Returns `Ok(false)` when the callout set `ProcessIt = FALSE`.
    fn new_pkt(
        &self,
        packet: &mut Vec<u8>,
        ip: Ipv4Addr,
        ctx: &mut PktContext,
    ) -> Result<bool, HookFault>;

    /// `DhcpHandleOptionsHook`: once per packet after NewPkt, on the packet as NewPkt left it.
    /// `scope_id` is the selected scope's subnet address, when one was found.
    fn handle_options(&self, packet: &[u8], ctx: PktContext, scope_id: Option<Ipv4Addr>);

    /// `DhcpPktDropHook`: `reason` is why the packet was dropped, or [`DropReason::Processed`] at the end of
    /// every packet. `packet` is the request as NewPkt left it.
    fn pkt_drop(&self, packet: &mut Vec<u8>, reason: DropReason, ip: Ipv4Addr, ctx: PktContext);

    /// `DhcpPktSendHook`: directly before a reply is sent; may rewrite it. An empty `reply` afterwards
    /// suppresses the send.
    fn pkt_send(&self, reply: &mut Vec<u8>, ip: Ipv4Addr, ctx: PktContext)
        -> Result<(), HookFault>;

    /// `DhcpAddressDelHook`, under the lease lock: `alt` left the client for `code`.
    fn address_del(
        &self,
        lock: &LeaseLockHeld<'_>,
        packet: &[u8],
        code: ProbCode,
        ip: Ipv4Addr,
        alt: Ipv4Addr,
        ctx: PktContext,
    );

    /// `DhcpAddressOfferHook`, under the lease lock: directly before an ACK to a REQUEST (or a BOOTREPLY
    /// that grants an address). `lease_secs` is 0xFFFF_FFFF for infinite.
    #[allow(clippy::too_many_arguments)]
    fn address_offer(
        &self,
        lock: &LeaseLockHeld<'_>,
        packet: &[u8],
        code: GiveCode,
        ip: Ipv4Addr,
        alt: Ipv4Addr,
        client_type: ClientType,
        lease_secs: u32,
        ctx: PktContext,
    );

    /// `DhcpDeleteClientHook`, under the lease lock: directly before a lease is removed.
    fn delete_client(&self, lock: &LeaseLockHeld<'_>, ip: Ipv4Addr, hw_address: &[u8]);
}

/// The hook set used when no callout is loaded: every hook does nothing and NewPkt processes.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHooks;

impl Hooks for NoHooks {
    fn control(&self, _: ControlCode) {}
    fn new_pkt(&self, _: &mut Vec<u8>, _: Ipv4Addr, _: &mut PktContext) -> Result<bool, HookFault> {
        Ok(true)
    }
    fn handle_options(&self, _: &[u8], _: PktContext, _: Option<Ipv4Addr>) {}
    fn pkt_drop(&self, _: &mut Vec<u8>, _: DropReason, _: Ipv4Addr, _: PktContext) {}
    fn pkt_send(&self, _: &mut Vec<u8>, _: Ipv4Addr, _: PktContext) -> Result<(), HookFault> {
        Ok(())
    }
    fn address_del(
        &self,
        _: &LeaseLockHeld<'_>,
        _: &[u8],
        _: ProbCode,
        _: Ipv4Addr,
        _: Ipv4Addr,
        _: PktContext,
    ) {
    }
    fn address_offer(
        &self,
        _: &LeaseLockHeld<'_>,
        _: &[u8],
        _: GiveCode,
        _: Ipv4Addr,
        _: Ipv4Addr,
        _: ClientType,
        _: u32,
        _: PktContext,
    ) {
    }
    fn delete_client(&self, _: &LeaseLockHeld<'_>, _: Ipv4Addr, _: &[u8]) {}
}
