//! Guest payloads: instruction encoders (A64, A32, T32), the guest runtime shared by the
//! refhyp and KVM, lowering of a case onto the runtime, and the family generators.

pub mod case_files;
pub mod decode;
pub mod encode;
pub mod families;
pub mod lower;
#[cfg(test)]
mod repro_eret_spsr;
pub mod runtime;
#[cfg(test)]
mod runtime_smoke;
pub mod skip;
pub mod stage1;
pub mod suite;
