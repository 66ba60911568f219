//! refhyp: trapdiff's reference EL2 hypervisor.
//!
//! This library holds everything that is policy or bookkeeping and can be tested on the
//! host: the trap policy ([`policy`]), cache maintenance emulation ([`cmo`]), the vCPU model and exception injection ([`vcpu`]),
//! stage-2 tables ([`stage2`]), guest memory ([`guest_mem`]), the VMM's device model
//! ([`mmio`]), lazy FP switching ([`fp`]), the job runner ([`runner`]) and the channel
//! ([`session`]). The EL2 binary (`src/main.rs` and `src/el2/`) only adds register access and
//! assembly, behind the [`hw::Hw`] trait.
//!
//! Host tests: `cd oracles/refhyp && cargo test --lib --target x86_64-unknown-linux-gnu`
//! (any stable cargo; see README.md).
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod cmo;
pub mod fp;
pub mod guest_mem;
pub mod hw;
pub mod mmio;
pub mod policy;
pub mod runner;
pub mod session;
pub mod stage2;
pub mod vcpu;

#[cfg(test)]
mod testing;
