//! The in-process callout behind the hook seam: [`Hooks`] for [`Callout`], adding the lock
//! annotation of the emulated lock model (docs/hooks.md): Control under the service lock,
//! AddressOffer, AddressDel and DeleteClient under the lease lock (the engine proves it with a
//! [`LeaseLockHeld`] token), the packet hooks under none. The isolated callout (`--isolate`)
//! implements it the same way, its calls made in the host process.

use std::net::Ipv4Addr;

use calloutd_hooks::{
    ClientType, ControlCode, DropReason, GiveCode, HookFault, Hooks, LeaseLockHeld, PktContext,
    ProbCode,
};

use crate::isolate::IsolatedCallout;
use crate::{Callout, HeldLocks};

/// Hook faults that do not change what the engine does are not propagated (the callout crate has
/// logged each one, with the hook and the DLL).
fn report(result: Result<(), crate::HookFault>) {
    let _ = result;
}

/// A fault that changes what the engine does (NewPkt, PktSend), for the engine to act on.
fn engine_fault(fault: crate::HookFault) -> HookFault {
    HookFault(fault.to_string())
}

/// `Hooks` for a callout type whose inherent hook methods take the held locks: the in-process
/// [`Callout`] and the [`IsolatedCallout`] have the same ones, so one body serves both.
macro_rules! hooks_with_locks {
    ($callout:ty) => {
        impl Hooks for $callout {
            fn control(&self, code: ControlCode) {
                self.control(code, HeldLocks::Service);
            }

            fn new_pkt(
                &self,
                packet: &mut Vec<u8>,
                ip: Ipv4Addr,
                ctx: &mut PktContext,
            ) -> Result<bool, HookFault> {
                self.new_pkt(packet, ip, ctx, HeldLocks::None)
                    .map_err(engine_fault)
            }

            fn handle_options(&self, packet: &[u8], ctx: PktContext, scope_id: Option<Ipv4Addr>) {
                report(self.handle_options(packet, ctx, scope_id, HeldLocks::None));
            }

            fn pkt_drop(
                &self,
                packet: &mut Vec<u8>,
                reason: DropReason,
                ip: Ipv4Addr,
                ctx: PktContext,
            ) {
                report(self.pkt_drop(packet, reason, ip, ctx, HeldLocks::None));
            }

            fn pkt_send(
                &self,
                reply: &mut Vec<u8>,
                ip: Ipv4Addr,
                ctx: PktContext,
            ) -> Result<(), HookFault> {
                self.pkt_send(reply, ip, ctx, HeldLocks::None)
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
                report(self.address_del(packet, code, ip, alt, ctx, HeldLocks::Lease));
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
                report(self.address_offer(
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
                report(self.delete_client(ip, hw_address, HeldLocks::Lease));
            }
        }
    };
}

hooks_with_locks!(Callout);
hooks_with_locks!(IsolatedCallout);
