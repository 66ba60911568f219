//! Guest payloads: instruction encoders (A64, A32, T32), the guest runtime shared by the
//! refhyp and KVM, lowering of a case onto the runtime, and the family generators.

pub mod encode;
pub mod decode;
pub mod lower;
pub mod runtime;
pub mod stage1;
pub mod families;
pub mod suite;
#[cfg(test)]
mod repro_eret_spsr;
#[cfg(test)]
mod runtime_smoke;
