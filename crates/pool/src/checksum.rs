//! Block checksums. A checksum is always stored in the parent's block
//! pointer (a 32-byte field), never next to the data it covers, so the root
//! checksum in the uberblock authenticates the whole tree.
//!
//! BLAKE3 is the default: cryptographic, so the same value serves dedupe and
//! audit proofs. xxh3-128 is offered for speed where that is wanted; its 16
//! bytes are stored zero-padded.

use crate::error::{PoolError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ChecksumType {
    Blake3 = 1,
    Xxh3 = 2,
}

impl ChecksumType {
    pub fn from_u8(v: u8) -> Result<Self> {
        match v {
            1 => Ok(ChecksumType::Blake3),
            2 => Ok(ChecksumType::Xxh3),
            _ => Err(PoolError::corrupt(
                "block pointer",
                format!("unknown checksum type {v}"),
            )),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            ChecksumType::Blake3 => "blake3",
            ChecksumType::Xxh3 => "xxh3",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "blake3" => Some(ChecksumType::Blake3),
            "xxh3" => Some(ChecksumType::Xxh3),
            _ => None,
        }
    }
    pub fn compute(self, data: &[u8]) -> [u8; 32] {
        match self {
            ChecksumType::Blake3 => *blake3::hash(data).as_bytes(),
            ChecksumType::Xxh3 => {
                let mut out = [0u8; 32];
                out[..16].copy_from_slice(&xxhash_rust::xxh3::xxh3_128(data).to_le_bytes());
                out
            }
        }
    }
}

/// BLAKE3 of a structure's own bytes, used by labels and uberblocks which
/// carry their checksum inside themselves (they have no parent).
pub fn self_checksum(data: &[u8]) -> [u8; 32] {
    *blake3::hash(data).as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithms_differ_and_detect_a_flipped_bit() {
        let mut data = vec![7u8; 4096];
        for t in [ChecksumType::Blake3, ChecksumType::Xxh3] {
            let a = t.compute(&data);
            data[100] ^= 1;
            assert_ne!(a, t.compute(&data), "{}", t.name());
            data[100] ^= 1;
            assert_eq!(a, t.compute(&data));
        }
        assert_ne!(
            ChecksumType::Blake3.compute(&data),
            ChecksumType::Xxh3.compute(&data)
        );
    }

    #[test]
    fn unknown_type_is_an_error() {
        assert!(ChecksumType::from_u8(0).is_err());
        assert!(ChecksumType::from_u8(9).is_err());
    }
}
