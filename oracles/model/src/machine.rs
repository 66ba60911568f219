//! The IMPLEMENTATION DEFINED parameters of the machine the live backends run on: QEMU's
//! `-cpu max` under `-M virt` (system emulation), which both the refhyp and the nested KVM
//! guest see. On other silicon these values differ; values the model cannot know are marked
//! UNKNOWN in outcomes instead (ID registers, CTR_EL0).

/// DC ZVA block size in bytes: DCZID_EL0.BS (Arm ARM D24.2.38). QEMU system-mode `-cpu max`
/// keeps the Cortex-A57 value `dcz_blocksize = 4` (64 bytes); the 512-byte value in
/// target/arm/cpu64.c is under CONFIG_USER_ONLY.
pub const DCZ_BLOCK: u64 = 64;

/// Smallest data cache line the model assumes for CMO fault addresses (CTR_EL0.DminLine on
/// the Cortex-A57 QEMU models).
pub const DMIN_LINE: u64 = 64;
