//! The architecture layer: what the CPU must do, each rule citing the Arm ARM (DDI 0487)
//! section or the ASL function it comes from. Nothing here knows about hypervisors.

pub mod cmo;
pub mod fpsimd;
pub mod memtype;
pub mod syndrome;
