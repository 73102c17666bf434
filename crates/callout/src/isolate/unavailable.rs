//! Windows build: the isolated host's transport (memfd, futex, signals) is Linux-only, so
//! `--isolate` fails with a clear error there and [`IsolatedCallout`] has no values. The same
//! names as the Linux modules keep every caller (the seam, calloutd-service) unchanged. On Windows
//! a faulting hook is caught in-process instead (the exception shim, event 1031).

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use super::IsolateOptions;
use crate::{
    AttemptOutcome, CalloutConfig, ClientType, ControlCode, DropReason, GiveCode, HeldLocks,
    HookFault, HookName, HookStats, LoadAttempt, LoadReport, LoadStatus, MisbehaviourLog, ProbCode,
};

/// Why `--isolate` does nothing here.
const UNAVAILABLE: &str = "--isolate needs Linux (the callout host's shared memory is memfd and \
                           futex): on Windows, hooks run in-process and an exception in one is \
                           caught and reported as event 1031";

/// No isolated callout exists on Windows: this type has no values.
#[derive(Debug)]
pub enum IsolatedCallout {}

/// The result of [`IsolatedCallout::load`]: on Windows, always a failed attempt saying why.
#[derive(Debug)]
pub struct IsolatedLoad {
    /// The attempt that could not be made.
    pub report: LoadReport,
    /// Always `None`.
    pub callout: Option<IsolatedCallout>,
}

/// The host mode: refused on Windows.
pub fn host_main(_fd: i32, _parent: u32) -> ExitCode {
    eprintln!("calloutd callout-host: {UNAVAILABLE}");
    ExitCode::from(2)
}

#[allow(missing_docs, clippy::too_many_arguments)]
impl IsolatedCallout {
    /// Refuses: `--isolate` is Linux-only for now (see [`UNAVAILABLE`]).
    pub fn load(config: &CalloutConfig, _options: IsolateOptions) -> IsolatedLoad {
        let entry = config.dlls.first().cloned().unwrap_or_default();
        IsolatedLoad {
            report: LoadReport {
                status: LoadStatus::AllFailed,
                enabled: config.enabled,
                order: config.order,
                candidates: config.dlls.clone(),
                attempts: vec![LoadAttempt {
                    entry: entry.clone(),
                    path: entry.into(),
                    chain_dlls: Vec::new(),
                    permission_warnings: Vec::new(),
                    outcome: AttemptOutcome::LoadFailed {
                        error: UNAVAILABLE.into(),
                    },
                }],
                loaded: None,
            },
            callout: None,
        }
    }
    pub fn follows_pinned_callers(&self) -> bool {
        match *self {}
    }
    pub fn entry(&self) -> &str {
        match *self {}
    }
    pub fn path(&self) -> &Path {
        match *self {}
    }
    pub fn hooks_set(&self) -> Vec<HookName> {
        match *self {}
    }
    pub fn stats(&self) -> &Arc<HookStats> {
        match *self {}
    }
    pub fn misbehaviour(&self) -> &Arc<MisbehaviourLog> {
        match *self {}
    }
    pub fn flush_trace(&self) -> std::io::Result<()> {
        match *self {}
    }
    pub fn counters(&self) -> std::collections::BTreeMap<String, u64> {
        match *self {}
    }
    pub fn control(&self, _: ControlCode, _: HeldLocks) -> Option<u32> {
        match *self {}
    }
    pub fn new_pkt(
        &self,
        _: &mut Vec<u8>,
        _: Ipv4Addr,
        _: &mut usize,
        _: HeldLocks,
    ) -> Result<bool, HookFault> {
        match *self {}
    }
    pub fn handle_options(
        &self,
        _: &[u8],
        _: usize,
        _: Option<Ipv4Addr>,
        _: HeldLocks,
    ) -> Result<(), HookFault> {
        match *self {}
    }
    pub fn pkt_drop(
        &self,
        _: &mut Vec<u8>,
        _: DropReason,
        _: Ipv4Addr,
        _: usize,
        _: HeldLocks,
    ) -> Result<(), HookFault> {
        match *self {}
    }
    pub fn pkt_send(
        &self,
        _: &mut Vec<u8>,
        _: Ipv4Addr,
        _: usize,
        _: HeldLocks,
    ) -> Result<(), HookFault> {
        match *self {}
    }
    pub fn address_del(
        &self,
        _: &[u8],
        _: ProbCode,
        _: Ipv4Addr,
        _: Ipv4Addr,
        _: usize,
        _: HeldLocks,
    ) -> Result<(), HookFault> {
        match *self {}
    }
    pub fn address_offer(
        &self,
        _: &[u8],
        _: GiveCode,
        _: Ipv4Addr,
        _: Ipv4Addr,
        _: ClientType,
        _: u32,
        _: usize,
        _: HeldLocks,
    ) -> Result<(), HookFault> {
        match *self {}
    }
    pub fn delete_client(&self, _: Ipv4Addr, _: &[u8], _: HeldLocks) -> Result<(), HookFault> {
        match *self {}
    }
}
