//! Guest payloads: instruction encoders (A64, A32, T32), the guest runtime shared by the
//! refhyp and KVM, lowering of a case onto the runtime, and the family generators.

pub mod encode;
