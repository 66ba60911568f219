//! Serde helpers: addresses and values are written as `"0x..."` strings in case files (people
//! read them as hex), and accepted as strings or plain JSON numbers.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

/// Parse `0x`-prefixed hex or decimal.
pub fn parse_u128(s: &str) -> Option<u128> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        let h: String = h.chars().filter(|c| *c != '_').collect();
        u128::from_str_radix(&h, 16).ok()
    } else {
        s.parse().ok()
    }
}

struct NumVisitor(u32);

impl Visitor<'_> for NumVisitor {
    type Value = u128;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {}-bit number or a \"0x...\" hex string", self.0)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u128, E> {
        Ok(u128::from(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<u128, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u128, E> {
        u128::try_from(v).map_err(|_| E::custom("negative number"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<u128, E> {
        parse_u128(v).ok_or_else(|| E::custom(alloc::format!("`{v}` is not a number (use \"0x...\" or decimal)")))
    }
}

fn de_bits<'de, D: Deserializer<'de>>(d: D, bits: u32) -> Result<u128, D::Error> {
    let v = if d.is_human_readable() { d.deserialize_any(NumVisitor(bits))? } else { d.deserialize_u128(NumVisitor(bits))? };
    if bits < 128 && v >> bits != 0 {
        return Err(de::Error::custom(alloc::format!("{v:#x} does not fit in {bits} bits")));
    }
    Ok(v)
}

/// `#[serde(with = "hex::u64")]`
pub mod u64 {
    use super::*;
    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&alloc::format!("{v:#x}"))
        } else {
            s.serialize_u64(*v)
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        if !d.is_human_readable() {
            return serde::Deserialize::deserialize(d);
        }
        de_bits(d, 64).map(|v| v as u64)
    }
}

/// `#[serde(with = "hex::u32")]`
pub mod u32 {
    use super::*;
    pub fn serialize<S: Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&alloc::format!("{v:#x}"))
        } else {
            s.serialize_u32(*v)
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        if !d.is_human_readable() {
            return serde::Deserialize::deserialize(d);
        }
        de_bits(d, 32).map(|v| v as u32)
    }
}

/// `#[serde(with = "hex::opt_u64")]`
pub mod opt_u64 {
    use super::*;
    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::u64::serialize(v, s),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        #[derive(serde::Deserialize)]
        struct W(#[serde(with = "super::u64")] u64);
        let o: Option<W> = serde::Deserialize::deserialize(d)?;
        Ok(o.map(|w| w.0))
    }
}

/// `#[serde(with = "hex::opt_u32")]`
pub mod opt_u32 {
    use super::*;
    pub fn serialize<S: Serializer>(v: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::u32::serialize(v, s),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        #[derive(serde::Deserialize)]
        struct W(#[serde(with = "super::u32")] u32);
        let o: Option<W> = serde::Deserialize::deserialize(d)?;
        Ok(o.map(|w| w.0))
    }
}

/// Byte strings as lowercase hex (`"00ff10"`) in JSON, raw bytes in binary encodings.
pub mod bytes {
    use super::*;
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&encode(v))
        } else {
            s.serialize_bytes(v)
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            let s: String = serde::Deserialize::deserialize(d)?;
            decode(&s).ok_or_else(|| de::Error::custom(alloc::format!("`{s}` is not bytes in hex (an even number of hex digits)")))
        } else {
            struct BV;
            impl<'de> Visitor<'de> for BV {
                type Value = Vec<u8>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                    Ok(v.to_vec())
                }
                fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                    Ok(v)
                }
            }
            d.deserialize_byte_buf(BV)
        }
    }
}

/// Lowercase hex of `v`.
pub fn encode(v: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(v.len() * 2);
    for b in v {
        s.push(D[usize::from(b >> 4)] as char);
        s.push(D[usize::from(b & 15)] as char);
    }
    s
}

/// Bytes of a hex string (whitespace ignored); `None` if malformed.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|p| {
            let h = (p[0] as char).to_digit(16)?;
            let l = (p[1] as char).to_digit(16)?;
            Some((h * 16 + l) as u8)
        })
        .collect()
}
