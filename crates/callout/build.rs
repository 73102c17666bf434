// Builds the Windows exception shim (csrc/seh_shim.c) when the target is Windows; elsewhere there is
// nothing to build (a crash in-process ends the process there, as docs/hooks.md section 8.2 says).
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc/seh_shim.c");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("windows") {
        cc::Build::new()
            .file("csrc/seh_shim.c")
            .warnings(true)
            .compile("calloutd_seh_shim");
    }
}
