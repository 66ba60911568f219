//! The one definition of every architectural thing trapdiff's parts share, and the case and
//! outcome model.
//!
//! Used by the model oracle, the harness (host, std), the refhyp (EL2, `no_std`) and the KVM
//! agent (static aarch64 Linux). Nothing here touches hardware: it is data and pure functions,
//! so it is tested on the host.
#![no_std]

extern crate alloc;

pub mod abi;
pub mod case;
pub mod crc32;
pub mod esr;
pub mod hex;
pub mod mailbox;
pub mod memattr;
pub mod outcome;
pub mod quirk;
pub mod sysreg;
pub mod wire;

pub use case::{Case, CaseError, El, Family, Isa, Region, RegionKind};
pub use outcome::{Event, Outcome};
