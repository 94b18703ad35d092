//! Intent log blocks: the on-disk chain that makes `fsync` fast.
//!
//! Between two transaction groups, every change is also kept as a log
//! record in memory; `fsync` writes the records not yet logged as one log
//! block at a place allocated beforehand, with the place of the next block
//! inside it, and flushes the device. A commit makes the whole chain
//! obsolete and starts a new one, whose first place is recorded in the
//! dataset tree (object 0, item `LOG_HEAD`), so it is durable with the txg.
//!
//! A block is valid only with the right magic, chain id and sequence
//! number and a matching BLAKE3 checksum over header and payload: a block
//! left from an older chain, a torn write or a never-written place ends the
//! chain cleanly. Records are opaque bytes here; the filesystem above gives
//! them meaning.
//!
//! Block layout (little-endian, 96-byte header, then the payload):
//! magic `AEGISLOG` (8) · version u16 (1) · reserved u16 · payload length
//! u32 · chain u64 · sequence u64 · next device u32 · reserved u32 · next
//! offset u64 · next length u64 · record count u32 · reserved u32 ·
//! BLAKE3 checksum (32, computed with this field zero). Payload: each
//! record as u32 length + bytes.

use aegis_pool::codec::{Reader, Writer};
use aegis_pool::Extent;

use crate::error::{FsError, Result};

pub const LOG_MAGIC: [u8; 8] = *b"AEGISLOG";
pub const LOG_HEADER: usize = 96;
/// Size of one log block place: the most one fsync can write in the log;
/// more than that commits a txg instead.
pub const LOG_BLOCK_SIZE: u64 = 256 << 10;
/// Longest chain replay follows, whatever the blocks claim.
pub const MAX_CHAIN: u64 = 1 << 16;

/// Where a chain starts: recorded in the dataset tree at each commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogHead {
    pub chain: u64,
    pub place: Extent,
}

impl LogHead {
    /// u64 chain · u32 device · u32 reserved · u64 offset · u64 length.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(32);
        w.u64(self.chain);
        w.u32(self.place.device);
        w.u32(0);
        w.u64(self.place.offset);
        w.u64(self.place.len);
        w.into_inner()
    }

    pub fn decode(b: &[u8]) -> Result<LogHead> {
        let bad = || FsError::Corrupt {
            what: "log head".into(),
            detail: "malformed".into(),
        };
        if b.len() != 32 {
            return Err(bad());
        }
        let mut r = Reader::new(b, "log head");
        let chain = r.u64()?;
        let device = r.u32()?;
        if r.u32()? != 0 {
            return Err(bad());
        }
        let place = Extent {
            device,
            offset: r.u64()?,
            len: r.u64()?,
        };
        if place.len == 0 || place.len > LOG_BLOCK_SIZE {
            return Err(bad());
        }
        Ok(LogHead { chain, place })
    }
}

/// One decoded log block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogBlock {
    pub chain: u64,
    pub seq: u64,
    pub next: Extent,
    pub records: Vec<Vec<u8>>,
}

/// Bytes `records` take in a block's payload.
pub fn payload_len(records: &[Vec<u8>]) -> usize {
    records.iter().map(|r| 4 + r.len()).sum()
}

impl LogBlock {
    pub fn encode(&self) -> Vec<u8> {
        let plen = payload_len(&self.records);
        let mut w = Writer::with_capacity(LOG_HEADER + plen);
        w.bytes(&LOG_MAGIC);
        w.u16(1);
        w.u16(0);
        w.u32(plen as u32);
        w.u64(self.chain);
        w.u64(self.seq);
        w.u32(self.next.device);
        w.u32(0);
        w.u64(self.next.offset);
        w.u64(self.next.len);
        w.u32(self.records.len() as u32);
        w.u32(0);
        w.zeros(32);
        for r in &self.records {
            w.u32(r.len() as u32);
            w.bytes(r);
        }
        let mut b = w.into_inner();
        let sum = blake3::hash(&b);
        b[64..96].copy_from_slice(sum.as_bytes());
        b
    }

    /// The block in `buf` if it is block `seq` of `chain`; `None` for
    /// anything else (end of the chain).
    pub fn decode(buf: &[u8], chain: u64, seq: u64) -> Option<LogBlock> {
        if buf.len() < LOG_HEADER || buf[..8] != LOG_MAGIC {
            return None;
        }
        let mut r = Reader::new(buf, "log block");
        r.skip(8).ok()?;
        let version = r.u16().ok()?;
        r.skip(2).ok()?;
        let plen = r.u32().ok()? as usize;
        let c = r.u64().ok()?;
        let s = r.u64().ok()?;
        if version != 1 || c != chain || s != seq || LOG_HEADER + plen > buf.len() {
            return None;
        }
        let device = r.u32().ok()?;
        r.skip(4).ok()?;
        let next = Extent {
            device,
            offset: r.u64().ok()?,
            len: r.u64().ok()?,
        };
        let count = r.u32().ok()? as usize;
        r.skip(4).ok()?;
        let sum: [u8; 32] = r.array().ok()?;
        let mut check = buf[..LOG_HEADER + plen].to_vec();
        check[64..96].fill(0);
        if blake3::hash(&check).as_bytes() != &sum {
            return None;
        }
        let mut p = Reader::new(&buf[LOG_HEADER..LOG_HEADER + plen], "log payload");
        let mut records = Vec::with_capacity(count.min(plen / 4 + 1));
        for _ in 0..count {
            let n = p.u32().ok()? as usize;
            records.push(p.bytes(n).ok()?.to_vec());
        }
        if p.remaining() != 0 || next.len == 0 || next.len > LOG_BLOCK_SIZE {
            return None;
        }
        Some(LogBlock {
            chain,
            seq,
            next,
            records,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block() -> LogBlock {
        LogBlock {
            chain: 7,
            seq: 3,
            next: Extent {
                device: 0,
                offset: 1 << 20,
                len: LOG_BLOCK_SIZE,
            },
            records: vec![b"one".to_vec(), Vec::new(), vec![9; 1000]],
        }
    }

    #[test]
    fn round_trip_and_every_kind_of_end() {
        let b = block();
        let mut enc = b.encode();
        assert_eq!(LogBlock::decode(&enc, 7, 3), Some(b.clone()));
        // Another chain, another place in the sequence: not ours.
        assert_eq!(LogBlock::decode(&enc, 8, 3), None);
        assert_eq!(LogBlock::decode(&enc, 7, 4), None);
        // Torn: the tail missing or any byte changed.
        assert_eq!(LogBlock::decode(&enc[..enc.len() - 1], 7, 3), None);
        for i in [0, 20, 70, 100, enc.len() - 1] {
            enc[i] ^= 1;
            assert_eq!(LogBlock::decode(&enc, 7, 3), None, "byte {i}");
            enc[i] ^= 1;
        }
        // Padding after the payload is ignored (a block place is larger).
        enc.extend_from_slice(&[0xab; 100]);
        assert_eq!(LogBlock::decode(&enc, 7, 3), Some(b));
        let h = LogHead {
            chain: 7,
            place: block().next,
        };
        assert_eq!(LogHead::decode(&h.encode()).unwrap(), h);
    }
}
