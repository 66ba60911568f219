//! The refhyp EL2 image: boot, register access and assembly only. Everything that decides
//! anything is in the library (`refhyp::`), tested on the host.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod el2;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("refhyp is an EL2 image for aarch64-unknown-none-softfloat: build it with `bash ci/setup.sh` (build_refhyp)");
    std::process::exit(2);
}
