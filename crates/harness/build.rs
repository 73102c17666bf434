// Compiles the demo's callouts (trace, macfilter, chain from fixtures/callouts) into shared
// libraries in OUT_DIR; src/demo.rs embeds them, so `calloutd demo` needs nothing but the binary.
// The `cc` crate finds the C compiler (honouring $CC) and its flags; it builds static archives,
// so the shared-library link is run with the compiler it found.

use std::path::{Path, PathBuf};
use std::process::Command;

const DEMO_CALLOUTS: [&str; 3] = ["trace", "macfilter", "chain"];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest.join("../..");
    let sources = root.join("fixtures/callouts");
    let include = root.join("crates/dhcpssdk/include");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    println!(
        "cargo:rerun-if-changed={}",
        include.join("dhcpssdk.h").display()
    );
    for header in ["fixture_util.h", "json_line.h"] {
        println!("cargo:rerun-if-changed={}", sources.join(header).display());
    }
    let compiler = cc::Build::new()
        .opt_level(2)
        .debug(false)
        .pic(true)
        .get_compiler();
    for name in DEMO_CALLOUTS {
        let source = sources.join(format!("{name}.c"));
        println!("cargo:rerun-if-changed={}", source.display());
        build(
            &compiler,
            &source,
            &include,
            &sources,
            &out.join(format!("{name}.so")),
        );
    }
}

fn build(compiler: &cc::Tool, source: &Path, include: &Path, sources: &Path, output: &Path) {
    let mut command: Command = compiler.to_command();
    if compiler.is_like_msvc() {
        // Windows with MSVC (cl.exe): a DLL, its objects next to it in OUT_DIR.
        let objects = output.parent().unwrap_or(Path::new("."));
        command
            .args(["/nologo", "/O2", "/LD"])
            .arg(format!("/I{}", include.display()))
            .arg(format!("/I{}", sources.display()))
            .arg(format!("/Fo{}\\", objects.display()))
            .arg(format!("/Fe{}", output.display()))
            .arg(source);
        run(command, source);
        return;
    }
    command
        .args(["-std=gnu11", "-shared", "-fvisibility=hidden"])
        .arg("-I")
        .arg(include)
        .arg("-I")
        .arg(sources)
        .arg(source)
        .arg("-o")
        .arg(output);
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        command.args(["-ldl", "-lpthread"]);
    }
    run(command, source);
}

fn run(mut command: Command, source: &Path) {
    match command.status() {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("{}: the C compiler failed ({status})", source.display()),
        Err(e) => panic!("{}: cannot run the C compiler: {e}", source.display()),
    }
}
