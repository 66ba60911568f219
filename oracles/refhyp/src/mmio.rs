//! The VMM's device model for a job: what an MMIO load returns, and how the value reaches
//! the guest register.
//!
//! Reads return the job's scripted values in order, then `mmio_read_default`. A load takes
//! the low `len` bytes, sign-extends them when ISS.SSE is set and truncates to 32 bits when
//! ISS.SF is clear — Linux `kvm_handle_mmio_return` (arch/arm64/kvm/mmio.c), on the syndrome
//! fields of Arm ARM D24.2.41 ("ISS encoding for an exception from a Data Abort").

/// The device behind every MMIO address of a job.
#[derive(Clone, Debug)]
pub struct DeviceModel<'a> {
    reads: &'a [u64],
    next: usize,
    default: u64,
}

impl<'a> DeviceModel<'a> {
    pub fn new(reads: &'a [u64], default: u64) -> DeviceModel<'a> {
        DeviceModel { reads, next: 0, default }
    }
    /// The next value a load sees.
    pub fn read(&mut self) -> u64 {
        match self.reads.get(self.next) {
            Some(v) => {
                self.next += 1;
                *v
            }
            None => self.default,
        }
    }
}

/// The low `len` bytes of `value` (what crosses the bus for a `len`-byte access).
pub fn truncate(value: u64, len: u8) -> u64 {
    if len >= 8 {
        value
    } else {
        value & ((1u64 << (8 * u32::from(len))) - 1)
    }
}

/// The register value a load of `len` bytes that returned `raw` produces.
pub fn load_result(raw: u64, len: u8, sse: bool, sf: bool) -> u64 {
    let mut v = truncate(raw, len);
    if sse && len < 8 {
        let sign = 1u64 << (8 * u32::from(len) - 1);
        v = (v ^ sign).wrapping_sub(sign);
    }
    if !sf {
        v &= 0xffff_ffff;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_reads_then_default() {
        let reads = [1, 2];
        let mut d = DeviceModel::new(&reads, 0x99);
        assert_eq!((d.read(), d.read(), d.read(), d.read()), (1, 2, 0x99, 0x99));
    }

    #[test]
    fn width_and_sign_extension() {
        let raw = 0x8877_6655_4433_2291;
        // ldrb w0 / ldrsb w0 / ldrsb x0 / ldrsh w0 / ldr x0 / ldrsw x0
        assert_eq!(load_result(raw, 1, false, false), 0x91);
        assert_eq!(load_result(raw, 1, true, false), 0xffff_ff91);
        assert_eq!(load_result(raw, 1, true, true), 0xffff_ffff_ffff_ff91);
        assert_eq!(load_result(raw, 2, true, false), 0x2291);
        assert_eq!(load_result(raw, 8, false, true), raw);
        assert_eq!(load_result(raw, 4, true, true), 0x4433_2291);
        assert_eq!(load_result(0x8000_0000, 4, true, true), 0xffff_ffff_8000_0000);
        assert_eq!(truncate(raw, 2), 0x2291);
    }
}
