//! Block compression. A block is stored compressed only when that saves at
//! least 1/8 of its logical size; otherwise it is stored as is and its block
//! pointer says `None`, so reads of incompressible data cost nothing extra.
//!
//! Decompression is told the exact logical size from the block pointer and
//! fails (never panics, never allocates more) if the stream disagrees.

use crate::error::{PoolError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Compression {
    None = 0,
    Lz4 = 1,
    Zstd = 2,
}

/// zstd level used for blocks: level 3 is zstd's default trade-off.
const ZSTD_LEVEL: i32 = 3;

impl Compression {
    pub fn from_u8(v: u8) -> Result<Self> {
        match v {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Lz4),
            2 => Ok(Compression::Zstd),
            _ => Err(PoolError::corrupt(
                "block pointer",
                format!("unknown compression {v}"),
            )),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" | "off" => Some(Compression::None),
            "lz4" => Some(Compression::Lz4),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// Compress `data`; `None` when the algorithm is off or saves < 1/8.
    pub fn compress(self, data: &[u8]) -> Option<Vec<u8>> {
        let limit = data.len() - data.len() / 8;
        let out = match self {
            Compression::None => return None,
            Compression::Lz4 => lz4_flex::block::compress(data),
            Compression::Zstd => zstd::bulk::compress(data, ZSTD_LEVEL).ok()?,
        };
        (out.len() <= limit && !data.is_empty()).then_some(out)
    }

    /// Decompress to exactly `logical` bytes. Takes the stored bytes by
    /// value so an uncompressed block is returned without a copy.
    pub fn decompress(self, data: Vec<u8>, logical: usize) -> Result<Vec<u8>> {
        let bad = |d: String| PoolError::corrupt("compressed block", d);
        let out = match self {
            Compression::None => data,
            Compression::Lz4 => {
                lz4_flex::block::decompress(&data, logical).map_err(|e| bad(format!("lz4: {e}")))?
            }
            Compression::Zstd => {
                let mut out = vec![0u8; logical];
                let n = zstd::bulk::decompress_to_buffer(&data[..], &mut out[..])
                    .map_err(|e| bad(format!("zstd: {e}")))?;
                out.truncate(n);
                out
            }
        };
        if out.len() != logical {
            return Err(bad(format!(
                "expanded to {} bytes, block pointer says {}",
                out.len(),
                logical
            )));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_one_eighth_rule() {
        let text: Vec<u8> = (0..16384).map(|i| b"aegisfs "[i % 8]).collect();
        let mut x: u64 = 0x9E3779B97F4A7C15;
        let random: Vec<u8> = (0..16384)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        for c in [Compression::Lz4, Compression::Zstd] {
            let z = c.compress(&text).expect("text compresses");
            assert!(z.len() <= text.len() * 7 / 8);
            assert_eq!(c.decompress(z.clone(), text.len()).unwrap(), text);
            assert!(
                c.compress(&random).is_none(),
                "{} kept an incompressible block",
                c.name()
            );
            // A wrong logical size is an error, not a panic or a short buffer.
            assert!(c.decompress(z.clone(), text.len() - 1).is_err());
            assert!(c.decompress(z[..z.len() / 2].to_vec(), text.len()).is_err());
        }
        assert!(Compression::None.compress(&text).is_none());
    }

    #[test]
    fn garbage_input_is_an_error() {
        let junk = vec![0xffu8; 100];
        for c in [Compression::Lz4, Compression::Zstd] {
            assert!(c.decompress(junk.clone(), 4096).is_err());
        }
    }
}
