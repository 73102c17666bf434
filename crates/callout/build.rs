// Gives the crate an OUT_DIR (inside the target dir) where `fixtures::build_all` puts the test
// callouts it compiles at run time; nothing is compiled here, so building calloutd needs no C
// compiler.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
}
