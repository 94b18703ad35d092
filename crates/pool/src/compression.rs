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

/// Blocks this large are probed before being compressed whole.
const PROBE_FROM: usize = 64 << 10;
const PROBE_SAMPLE: usize = 4096;

/// Whether samples of `data` shrink by at least 1/8 under lz4.
fn probe_compresses(data: &[u8]) -> bool {
    let n = data.len();
    let mid = n / 2 - PROBE_SAMPLE / 2;
    let mut sample = Vec::with_capacity(3 * PROBE_SAMPLE);
    for at in [0, mid, n - PROBE_SAMPLE] {
        sample.extend_from_slice(&data[at..at + PROBE_SAMPLE]);
    }
    let packed = lz4_flex::block::compress(&sample);
    packed.len() <= sample.len() - sample.len() / 8
}

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
    /// Blocks of 64 KiB and more are probed first: when three 4 KiB
    /// samples (start, middle, end) do not shrink by 1/8 under lz4, the
    /// block is taken as incompressible without compressing it whole (as
    /// ZFS's early abort and btrfs's heuristic do). The cost is a block
    /// whose compressible bytes all sit between the samples being stored
    /// as is: never wrong, at worst larger.
    pub fn compress(self, data: &[u8]) -> Option<Vec<u8>> {
        if self == Compression::None || data.is_empty() {
            return None;
        }
        if data.len() >= PROBE_FROM && !probe_compresses(data) {
            return None;
        }
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
    fn large_blocks_are_probed_before_compressing() {
        let mut x: u64 = 0x2545F4914F6CDD1D;
        let mut rnd = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 32) as u8
                })
                .collect()
        };
        let random = rnd(128 << 10);
        assert!(!probe_compresses(&random));
        assert!(Compression::Lz4.compress(&random).is_none());
        // Text, and random bytes with compressible runs at the sampled
        // places, still compress.
        let text: Vec<u8> = (0..128 << 10).map(|i| b"aegisfs "[i % 8]).collect();
        assert!(Compression::Zstd.compress(&text).is_some());
        let mut mixed = rnd(128 << 10);
        mixed[..64 << 10].fill(7);
        mixed[96 << 10..].fill(9);
        let z = Compression::Lz4
            .compress(&mixed)
            .expect("half zeros compress");
        assert_eq!(Compression::Lz4.decompress(z, mixed.len()).unwrap(), mixed);
    }

    #[test]
    fn garbage_input_is_an_error() {
        let junk = vec![0xffu8; 100];
        for c in [Compression::Lz4, Compression::Zstd] {
            assert!(c.decompress(junk.clone(), 4096).is_err());
        }
    }
}
