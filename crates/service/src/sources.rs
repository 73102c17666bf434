//! Reading the `.reg` files into the DHCPServer `Parameters`, and the callout configuration from them.

use std::path::PathBuf;

use calloutd_registry::{Parameters, RegistryTree, UnusedValue, Warning};

use crate::RegOptions;

/// The registry side of the configuration after all `.reg` files were applied.
pub struct RegistryConfig {
    /// The typed Parameters view.
    pub params: Parameters,
    /// Lines the readers skipped, with file:line and reason.
    pub warnings: Vec<Warning>,
    /// Values in the Parameters key calloutd ignores, each with why (`check` warns about each).
    pub unused: Vec<UnusedValue>,
}

/// Applies every `--reg` file in order; the error is one line naming the file (and line) at fault.
pub fn read_registry(args: &RegOptions) -> Result<RegistryConfig, String> {
    let mut tree = RegistryTree::new();
    let mut warnings = Vec::new();
    if args.registry == Some(crate::RegistrySource::Live) {
        warnings.extend(read_live(&mut tree)?);
    }
    for file in &args.reg {
        let w = tree.apply_file(file).map_err(|e| e.to_string())?;
        warnings.extend(w);
    }
    let params = Parameters::from_tree(&tree).map_err(|e| e.to_string())?;
    let unused = Parameters::unused_values(&tree);
    Ok(RegistryConfig {
        params,
        warnings,
        unused,
    })
}

/// What the callout loader needs, from the Parameters view.
pub fn callout_config(params: &Parameters, args: &RegOptions) -> calloutd_callout::CalloutConfig {
    let dlls = params.callout_dlls.as_ref();
    calloutd_callout::CalloutConfig {
        dlls: dlls.map(|d| d.value.clone()).unwrap_or_default(),
        enabled: params.callout_enabled.as_ref().map(|e| e.value),
        base_dir: dlls.and_then(|d| d.dir()).map(PathBuf::from),
        order: args.load_order.into(),
        strict_permissions: args.strict_dll_permissions,
    }
}

/// Why callouts are off, when they are, as one line naming where the values were set.
pub fn callouts_off_reason(params: &Parameters) -> Option<String> {
    match (&params.callout_enabled, &params.callout_dlls) {
        (None, _) => Some("CalloutEnabled is absent: no callout DLL is loaded".into()),
        (Some(e), _) if e.value == 0 => Some(format!(
            "{}: CalloutEnabled is 0: no callout DLL is loaded",
            e.location()
        )),
        (Some(_), None) => Some("CalloutDlls is absent: no callout DLL is loaded".into()),
        (Some(_), Some(d)) if d.value.is_empty() => Some(format!(
            "{}: CalloutDlls lists no DLL: no callout DLL is loaded",
            d.location()
        )),
        _ => None,
    }
}

/// `--registry live`: the DHCPServer Parameters key of the Windows registry.
#[cfg(windows)]
fn read_live(tree: &mut RegistryTree) -> Result<Vec<Warning>, String> {
    calloutd_registry::apply_live_hklm(
        tree,
        r"SYSTEM\CurrentControlSet\Services\DHCPServer\Parameters",
    )
    .map_err(|e| e.to_string())
}

/// `--registry live` elsewhere: there is no live registry to read.
#[cfg(not(windows))]
fn read_live(_tree: &mut RegistryTree) -> Result<Vec<Warning>, String> {
    Err(
        "--registry live reads the Windows registry and works only on Windows; \
         here, export the key (reg export) and pass it with --reg FILE"
            .into(),
    )
}
