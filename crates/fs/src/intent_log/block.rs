//! Intent log blocks: the on-disk ring that makes `fsync` fast.
//!
//! Each dataset has a log ring: one contiguous extent, allocated and
//! zero-filled when the dataset is formatted (or at the first writable
//! mount of an older image) and never freed, so a log write lands on space
//! the device (or the image file under it) already holds and costs one
//! write and one flush, as ext4's journal does. Between two transaction
//! groups, every change is also kept as a log record in memory; `fsync`
//! writes the records not yet logged as the next block of the current
//! chain and makes that write durable.
//!
//! Positions are absolute byte counts that only grow; a position maps to
//! ring offset `pos % len`, and a block may wrap over the ring's end. Each
//! commit starts a new chain at the position after the last block written
//! and records it in the dataset tree (object 0, item `LOG_HEAD`), so it
//! is durable with the txg; blocks follow each other without gaps, so a
//! chain needs no next pointers. The writer never laps the oldest chain a
//! crash could still need (the one the last durable commit names).
//!
//! A block is valid only with the right magic, chain id, sequence number
//! and position and a matching BLAKE3 checksum over header and payload: a
//! block of an older lap or chain, a torn write or a never-written place
//! ends the chain cleanly. Chain ids are random, so no two chains share
//! one, even when a txg number comes back after a crash or a rewind.
//! Records are opaque bytes here; the filesystem above gives them meaning.
//!
//! Block layout (little-endian, 96-byte header, then the payload, then
//! zero padding to `length`): magic `AEGISLOG` (8) · version u16 (2) ·
//! reserved u16 · payload length u32 · chain u64 · sequence u64 · position
//! u64 · length u32 (bytes the block occupies in the ring, a multiple of
//! the block size) · record count u32 · reserved (16, zero) · BLAKE3
//! checksum (32, computed with this field zero). Payload: each record as
//! u32 length + bytes.

use aegis_btree::Tree;
use aegis_pool::codec::{Reader, Writer};
use aegis_pool::{Extent, Pool};

use crate::error::{FsError, Result};
use crate::posix::keys;

pub const LOG_MAGIC: [u8; 8] = *b"AEGISLOG";
pub const LOG_VERSION: u16 = 2;
pub const LOG_HEADER: usize = 96;
/// The most one log block may occupy, header included: an fsync with more
/// unlogged than this commits a txg instead (large writes are cheaper
/// written in place).
pub const MAX_LOG_WRITE: u64 = 1 << 20;
/// Ring sizes `mkfs` accepts, and what a ring item on disk may claim.
pub const MIN_RING: u64 = 256 << 10;
pub const MAX_RING: u64 = 1 << 30;
/// Longest chain replay follows, whatever the blocks claim.
pub const MAX_CHAIN: u64 = 1 << 20;

/// Whether `len` is a ring size this format allows with `block_size`:
/// whole blocks, from `MIN_RING` to `MAX_RING`. The one rule mkfs, format
/// and the decoder share.
pub fn check_ring_len(len: u64, block_size: u32) -> std::result::Result<(), String> {
    let bs = block_size as u64;
    if bs == 0 || !len.is_multiple_of(bs) || !(MIN_RING..=MAX_RING).contains(&len) {
        return Err(format!(
            "{len} bytes is not a whole number of {bs}-byte blocks from {} KiB to {} MiB",
            MIN_RING >> 10,
            MAX_RING >> 20
        ));
    }
    Ok(())
}

/// The ring dataset tree `tree` records, checked against the pool's data
/// area before anyone reads or writes it; `None` if it has none.
pub fn recorded_ring(tree: &Tree, pool: &Pool) -> Result<Option<Extent>> {
    let Some(v) = tree.get(&keys::log_ring())? else {
        return Ok(None);
    };
    let ring = LogRing::decode(&v, pool.block_size())?;
    pool.check_ring(ring.extent)?;
    Ok(Some(ring.extent))
}

/// The ring's default size for a pool of `pool_bytes`: 1/64 of it, from
/// 256 KiB to 64 MiB, in whole blocks.
pub fn default_ring_len(pool_bytes: u64, block_size: u32) -> u64 {
    let bs = block_size as u64;
    let len = (pool_bytes / 64).clamp(MIN_RING, 64 << 20);
    (len / bs).max(1) * bs
}

/// Where the ring lives (object 0, item `LOG_RING`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogRing {
    pub extent: Extent,
}

impl LogRing {
    /// u32 device · u32 reserved · u64 offset · u64 length.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(24);
        w.u32(self.extent.device);
        w.u32(0);
        w.u64(self.extent.offset);
        w.u64(self.extent.len);
        w.into_inner()
    }

    /// Checks what the bytes alone can tell; the pool checks that the
    /// extent lies inside a device's data area before any I/O.
    pub fn decode(b: &[u8], block_size: u32) -> Result<LogRing> {
        let bad = |d: &str| FsError::Corrupt {
            what: "log ring".into(),
            detail: d.into(),
        };
        if b.len() != 24 {
            return Err(bad("malformed"));
        }
        let mut r = Reader::new(b, "log ring");
        let device = r.u32()?;
        if r.u32()? != 0 {
            return Err(bad("malformed"));
        }
        let extent = Extent {
            device,
            offset: r.u64()?,
            len: r.u64()?,
        };
        check_ring_len(extent.len, block_size).map_err(|d| bad(&d))?;
        if !extent.offset.is_multiple_of(block_size as u64) {
            return Err(bad("offset not block aligned"));
        }
        Ok(LogRing { extent })
    }
}

/// Where a chain starts: recorded in the dataset tree at each commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogHead {
    pub chain: u64,
    pub pos: u64,
}

impl LogHead {
    /// u64 chain · u64 position.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(16);
        w.u64(self.chain);
        w.u64(self.pos);
        w.into_inner()
    }

    pub fn decode(b: &[u8]) -> Result<LogHead> {
        if b.len() != 16 {
            return Err(FsError::Corrupt {
                what: "log head".into(),
                detail: "malformed".into(),
            });
        }
        let mut r = Reader::new(b, "log head");
        Ok(LogHead {
            chain: r.u64()?,
            pos: r.u64()?,
        })
    }
}

/// One decoded log block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogBlock {
    pub chain: u64,
    pub seq: u64,
    pub pos: u64,
    pub records: Vec<Vec<u8>>,
}

/// Bytes `records` take in a block's payload.
pub fn payload_len(records: &[Vec<u8>]) -> usize {
    records.iter().map(|r| 4 + r.len()).sum()
}

/// Bytes a block of `records` occupies in the ring.
pub fn block_len(records: &[Vec<u8>], block_size: u32) -> u64 {
    let bs = block_size as u64;
    ((LOG_HEADER + payload_len(records)) as u64).div_ceil(bs) * bs
}

impl LogBlock {
    /// The block's bytes, padded to its length in the ring.
    pub fn encode(&self, block_size: u32) -> Vec<u8> {
        let plen = payload_len(&self.records);
        let len = block_len(&self.records, block_size);
        assert!(len <= u32::MAX as u64, "log block over 4 GiB");
        let mut w = Writer::with_capacity(len as usize);
        w.bytes(&LOG_MAGIC);
        w.u16(LOG_VERSION);
        w.u16(0);
        w.u32(plen as u32);
        w.u64(self.chain);
        w.u64(self.seq);
        w.u64(self.pos);
        w.u32(len as u32);
        w.u32(self.records.len() as u32);
        w.zeros(16);
        w.zeros(32);
        for r in &self.records {
            w.u32(r.len() as u32);
            w.bytes(r);
        }
        let mut b = w.into_inner();
        let sum = blake3::hash(&b);
        b[64..96].copy_from_slice(sum.as_bytes());
        b.resize(len as usize, 0);
        b
    }

    /// The length a block claims, read from its header (so the reader
    /// knows how much to read): `None` unless the header is block `seq` of
    /// `chain` at `pos` and the length is a sane multiple of the block size.
    pub fn peek_len(header: &[u8], chain: u64, seq: u64, pos: u64, block_size: u32) -> Option<u64> {
        if header.len() < LOG_HEADER || header[..8] != LOG_MAGIC {
            return None;
        }
        let mut r = Reader::new(header, "log block");
        r.skip(8).ok()?;
        let version = r.u16().ok()?;
        r.skip(2).ok()?;
        let plen = r.u32().ok()? as u64;
        let (c, s, p) = (r.u64().ok()?, r.u64().ok()?, r.u64().ok()?);
        let len = r.u32().ok()? as u64;
        let bs = block_size as u64;
        let ok = version == LOG_VERSION
            && (c, s, p) == (chain, seq, pos)
            && len.is_multiple_of(bs)
            && len >= LOG_HEADER as u64 + plen
            && len <= MAX_LOG_WRITE;
        ok.then_some(len)
    }

    /// The block in `buf` (exactly its length in the ring) if it is block
    /// `seq` of `chain` at `pos`; `None` for anything else (end of chain).
    pub fn decode(buf: &[u8], chain: u64, seq: u64, pos: u64, block_size: u32) -> Option<LogBlock> {
        let len = Self::peek_len(buf, chain, seq, pos, block_size)?;
        if buf.len() as u64 != len {
            return None;
        }
        let plen = u32::from_le_bytes(buf[12..16].try_into().ok()?) as usize;
        let count = u32::from_le_bytes(buf[44..48].try_into().ok()?) as usize;
        if buf[48..64].iter().any(|&b| b != 0) || buf[LOG_HEADER + plen..].iter().any(|&b| b != 0) {
            return None;
        }
        let sum: [u8; 32] = buf[64..96].try_into().ok()?;
        let mut h = blake3::Hasher::new();
        h.update(&buf[..64]);
        h.update(&[0; 32]);
        h.update(&buf[LOG_HEADER..LOG_HEADER + plen]);
        if h.finalize().as_bytes() != &sum {
            return None;
        }
        let mut p = Reader::new(&buf[LOG_HEADER..LOG_HEADER + plen], "log payload");
        let mut records = Vec::with_capacity(count.min(plen / 4 + 1));
        for _ in 0..count {
            let n = p.u32().ok()? as usize;
            records.push(p.bytes(n).ok()?.to_vec());
        }
        if p.remaining() != 0 {
            return None;
        }
        Some(LogBlock {
            chain,
            seq,
            pos,
            records,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BS: u32 = 4096;

    fn block() -> LogBlock {
        LogBlock {
            chain: 7,
            seq: 3,
            pos: 5 * BS as u64,
            records: vec![b"one".to_vec(), Vec::new(), vec![9; 5000]],
        }
    }

    #[test]
    fn round_trip_and_every_kind_of_end() {
        let b = block();
        let mut enc = b.encode(BS);
        assert_eq!(enc.len() as u64, block_len(&b.records, BS));
        assert_eq!(enc.len() % BS as usize, 0);
        assert_eq!(
            LogBlock::peek_len(&enc[..BS as usize], 7, 3, b.pos, BS),
            Some(enc.len() as u64)
        );
        assert_eq!(LogBlock::decode(&enc, 7, 3, b.pos, BS), Some(b.clone()));
        // Another chain, another place in the sequence or the ring: not ours.
        assert_eq!(LogBlock::decode(&enc, 8, 3, b.pos, BS), None);
        assert_eq!(LogBlock::decode(&enc, 7, 4, b.pos, BS), None);
        assert_eq!(LogBlock::decode(&enc, 7, 3, b.pos + (1 << 20), BS), None);
        // Torn: the tail missing or any byte changed, padding included.
        assert_eq!(
            LogBlock::decode(&enc[..enc.len() - 1], 7, 3, b.pos, BS),
            None
        );
        for i in [0, 20, 50, 70, 100, 5100, enc.len() - 1] {
            enc[i] ^= 1;
            assert_eq!(LogBlock::decode(&enc, 7, 3, b.pos, BS), None, "byte {i}");
            enc[i] ^= 1;
        }
        let h = LogHead {
            chain: 7,
            pos: 1 << 40,
        };
        assert_eq!(LogHead::decode(&h.encode()).unwrap(), h);
        assert!(LogHead::decode(&h.encode()[1..]).is_err());
        let r = LogRing {
            extent: Extent {
                device: 0,
                offset: 1 << 20,
                len: 4 << 20,
            },
        };
        assert_eq!(LogRing::decode(&r.encode(), BS).unwrap(), r);
        let mut e = r.encode();
        e[8] = 1; // offset no longer aligned
        assert!(LogRing::decode(&e, BS).is_err());
        let huge = LogRing {
            extent: Extent {
                device: 0,
                offset: 0,
                len: MAX_RING + BS as u64,
            },
        };
        assert!(LogRing::decode(&huge.encode(), BS).is_err());
    }

    #[test]
    fn default_ring_is_a_64th_within_bounds() {
        assert_eq!(default_ring_len(1 << 30, BS), 16 << 20);
        assert_eq!(default_ring_len(4 << 20, BS), MIN_RING);
        assert_eq!(default_ring_len(1 << 40, BS), 64 << 20);
        assert_eq!(default_ring_len(1 << 30, 65536) % 65536, 0);
    }
}
