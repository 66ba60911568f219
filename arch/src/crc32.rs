//! CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320): the channel's frame check; and
//! FNV-1a 64, the one stable hash.
//! One 1 KiB table, built at compile time: every job and report (kilobytes each) is
//! checksummed on both sides, and the bitwise form cost the refhyp, under TCG, a large part
//! of a millisecond per case.

const POLY: u32 = 0xEDB8_8320;

/// CRC-32 of each byte value (the reflected table of Sarwate's byte-at-a-time method).
const TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// CRC-32 of `data` (same value as zlib's `crc32`).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc = (crc >> 8) ^ TABLE[((crc ^ u32::from(b)) & 0xff) as usize];
    }
    !crc
}

/// FNV-1a 64: the digest of a memory region's final bytes, computed the same way by every
/// backend (cheap enough for the EL2 binary; not a security property), and the stable hash
/// of names and fuzzer signatures (std's hasher is randomly keyed).
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn crc32_matches_zlib_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"The quick brown fox jumps over the lazy dog"), 0x414F_A339);
    }
    #[test]
    fn fnv_known_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
