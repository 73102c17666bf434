//! Adapts the loaded callout (`calloutd-callout`) to the engine's [`Hooks`] trait, adding the lock
//! annotation of the emulated lock model: Control under the service lock, AddressOffer, AddressDel and
//! DeleteClient under the lease lock (the engine proves it with a [`LeaseLockHeld`] token), the packet
//! hooks under none.

use std::net::Ipv4Addr;
use std::sync::Arc;

use calloutd_callout::isolate::IsolatedCallout;
use calloutd_callout::{Callout, HeldLocks};
use calloutd_engine::hooks::{ClientType, ControlCode, DropReason, GiveCode, ProbCode};
use calloutd_engine::{HookFault, Hooks, LeaseLockHeld, PktContext};

/// The loaded callout as the engine and the runtime see it.
pub struct CalloutHooks(pub Arc<Callout>);

/// The isolated callout (`--isolate`) as the engine and the runtime see it.
pub struct IsolatedHooks(pub Arc<IsolatedCallout>);

/// Hook faults that do not change what the engine does are not propagated (the callout crate has
/// logged each one, with the hook and the DLL).
fn report(result: Result<(), calloutd_callout::HookFault>) {
    let _ = result;
}

/// A fault that changes what the engine does (NewPkt, PktSend), for the engine to act on.
fn engine_fault(fault: calloutd_callout::HookFault) -> HookFault {
    HookFault(fault.to_string())
}

impl Hooks for CalloutHooks {
    fn control(&self, code: ControlCode) {
        self.0.control(code, HeldLocks::Service);
    }

    fn new_pkt(
        &self,
        packet: &mut Vec<u8>,
        ip: Ipv4Addr,
        ctx: &mut PktContext,
    ) -> Result<bool, HookFault> {
        self.0
            .new_pkt(packet, ip, ctx, HeldLocks::None)
            .map_err(engine_fault)
    }

    fn handle_options(&self, packet: &[u8], ctx: PktContext, scope_id: Option<Ipv4Addr>) {
        report(
            self.0
                .handle_options(packet, ctx, scope_id, HeldLocks::None),
        );
    }

    fn pkt_drop(&self, packet: &mut Vec<u8>, reason: DropReason, ip: Ipv4Addr, ctx: PktContext) {
        report(self.0.pkt_drop(packet, reason, ip, ctx, HeldLocks::None));
    }

    fn pkt_send(
        &self,
        reply: &mut Vec<u8>,
        ip: Ipv4Addr,
        ctx: PktContext,
    ) -> Result<(), HookFault> {
        self.0
            .pkt_send(reply, ip, ctx, HeldLocks::None)
            .map_err(engine_fault)
    }

    fn address_del(
        &self,
        _lock: &LeaseLockHeld<'_>,
        packet: &[u8],
        code: ProbCode,
        ip: Ipv4Addr,
        alt: Ipv4Addr,
        ctx: PktContext,
    ) {
        report(
            self.0
                .address_del(packet, code, ip, alt, ctx, HeldLocks::Lease),
        );
    }

    fn address_offer(
        &self,
        _lock: &LeaseLockHeld<'_>,
        packet: &[u8],
        code: GiveCode,
        ip: Ipv4Addr,
        alt: Ipv4Addr,
        client_type: ClientType,
        lease_secs: u32,
        ctx: PktContext,
    ) {
        report(self.0.address_offer(
            packet,
            code,
            ip,
            alt,
            client_type,
            lease_secs,
            ctx,
            HeldLocks::Lease,
        ));
    }

    fn delete_client(&self, _lock: &LeaseLockHeld<'_>, ip: Ipv4Addr, hw_address: &[u8]) {
        report(self.0.delete_client(ip, hw_address, HeldLocks::Lease));
    }
}

impl Hooks for IsolatedHooks {
    fn control(&self, code: ControlCode) {
        self.0.control(code, HeldLocks::Service);
    }

    fn new_pkt(
        &self,
        packet: &mut Vec<u8>,
        ip: Ipv4Addr,
        ctx: &mut PktContext,
    ) -> Result<bool, HookFault> {
        self.0
            .new_pkt(packet, ip, ctx, HeldLocks::None)
            .map_err(engine_fault)
    }

    fn handle_options(&self, packet: &[u8], ctx: PktContext, scope_id: Option<Ipv4Addr>) {
        report(
            self.0
                .handle_options(packet, ctx, scope_id, HeldLocks::None),
        );
    }

    fn pkt_drop(&self, packet: &mut Vec<u8>, reason: DropReason, ip: Ipv4Addr, ctx: PktContext) {
        report(self.0.pkt_drop(packet, reason, ip, ctx, HeldLocks::None));
    }

    fn pkt_send(
        &self,
        reply: &mut Vec<u8>,
        ip: Ipv4Addr,
        ctx: PktContext,
    ) -> Result<(), HookFault> {
        self.0
            .pkt_send(reply, ip, ctx, HeldLocks::None)
            .map_err(engine_fault)
    }

    fn address_del(
        &self,
        _lock: &LeaseLockHeld<'_>,
        packet: &[u8],
        code: ProbCode,
        ip: Ipv4Addr,
        alt: Ipv4Addr,
        ctx: PktContext,
    ) {
        report(
            self.0
                .address_del(packet, code, ip, alt, ctx, HeldLocks::Lease),
        );
    }

    fn address_offer(
        &self,
        _lock: &LeaseLockHeld<'_>,
        packet: &[u8],
        code: GiveCode,
        ip: Ipv4Addr,
        alt: Ipv4Addr,
        client_type: ClientType,
        lease_secs: u32,
        ctx: PktContext,
    ) {
        report(self.0.address_offer(
            packet,
            code,
            ip,
            alt,
            client_type,
            lease_secs,
            ctx,
            HeldLocks::Lease,
        ));
    }

    fn delete_client(&self, _lock: &LeaseLockHeld<'_>, ip: Ipv4Addr, hw_address: &[u8]) {
        report(self.0.delete_client(ip, hw_address, HeldLocks::Lease));
    }
}
