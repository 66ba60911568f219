//! Links the EL2 binary with `src/refhyp.ld` (only for the bare-metal target).
fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.ends_with("-none") || target.ends_with("-none-softfloat") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
        println!("cargo:rustc-link-arg-bins=-T{dir}/src/refhyp.ld");
    }
    println!("cargo:rerun-if-changed=src/refhyp.ld");
}
