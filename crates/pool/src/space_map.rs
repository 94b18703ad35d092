//! Persistent free-space records: an append-only log of allocations and
//! frees, chained block to block, condensed now and then.
//!
//! Each committed txg that changed space appends one or more log blocks;
//! each block points to the block written before it, and the uberblock
//! points to the newest. Loading walks the chain back to its first block
//! and replays it oldest first. When the chain grows much longer than the
//! allocated set needs, a commit writes a condensed chain instead: one Alloc
//! per allocated extent and one Free per extent still waiting out its
//! deferral, with no predecessor. See docs/space.md for why.
//!
//! Block layout (little-endian): 0 magic "ASPM" · 4 u16 version · 6 u16
//! flags (bit 0: first block of a condensed chain) · 8 u64 txg that wrote it
//! · 16 u32 entry count · 20 u32 reserved · 24 previous block (BLKPTR_MAX
//! field, zero = none) · 280 entries of 32 bytes: u8 op (1 alloc, 2 free),
//! 3 reserved, u32 device, u64 offset, u64 length, u64 txg (for frees: the
//! txg the free happened in, 0 = reusable at once).

use crate::blkptr::{decode_optional_field, encode_optional_field, BlockPtr, BLKPTR_MAX};
use crate::codec::{Reader, Writer};
use crate::error::{PoolError, Result};

pub(crate) const SPACE_MAP_MAGIC: [u8; 4] = *b"ASPM";
pub(crate) const SPACE_MAP_VERSION: u16 = 1;
pub(crate) const HEADER_SIZE: usize = 24 + BLKPTR_MAX;
pub(crate) const ENTRY_SIZE: usize = 32;
pub(crate) const FLAG_CONDENSED: u16 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SpaceOp {
    Alloc = 1,
    Free = 2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpaceEntry {
    pub op: SpaceOp,
    pub device: u32,
    pub offset: u64,
    pub len: u64,
    pub txg: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpaceMapBlock {
    pub flags: u16,
    pub txg: u64,
    pub prev: Option<BlockPtr>,
    pub entries: Vec<SpaceEntry>,
}

/// Entries that fit in one block of `block_size` bytes.
pub(crate) fn entries_per_block(block_size: u32) -> usize {
    (block_size as usize - HEADER_SIZE) / ENTRY_SIZE
}

impl SpaceMapBlock {
    pub fn encode(&self, block_size: u32) -> Vec<u8> {
        assert!(
            self.entries.len() <= entries_per_block(block_size),
            "space map block overfull"
        );
        let mut w = Writer::with_capacity(block_size as usize);
        w.bytes(&SPACE_MAP_MAGIC);
        w.u16(SPACE_MAP_VERSION);
        w.u16(self.flags);
        w.u64(self.txg);
        w.u32(self.entries.len() as u32);
        w.u32(0);
        encode_optional_field(&mut w, self.prev.as_ref());
        for e in &self.entries {
            w.u8(e.op as u8);
            w.zeros(3);
            w.u32(e.device);
            w.u64(e.offset);
            w.u64(e.len);
            w.u64(e.txg);
        }
        w.pad_to(block_size as usize);
        w.into_inner()
    }

    pub fn decode(buf: &[u8]) -> Result<SpaceMapBlock> {
        let mut r = Reader::new(buf, "space map block");
        if r.array::<4>()? != SPACE_MAP_MAGIC {
            return Err(r.corrupt("bad magic"));
        }
        if r.u16()? != SPACE_MAP_VERSION {
            return Err(r.corrupt("unknown version"));
        }
        let flags = r.u16()?;
        let txg = r.u64()?;
        let count = r.u32()? as usize;
        r.skip(4)?;
        let prev = decode_optional_field(&mut r)?;
        if count > r.remaining() / ENTRY_SIZE {
            return Err(r.corrupt(format!("{count} entries do not fit in the block")));
        }
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let op = match r.u8()? {
                1 => SpaceOp::Alloc,
                2 => SpaceOp::Free,
                x => {
                    return Err(PoolError::corrupt(
                        "space map entry",
                        format!("unknown op {x}"),
                    ))
                }
            };
            r.skip(3)?;
            let e = SpaceEntry {
                op,
                device: r.u32()?,
                offset: r.u64()?,
                len: r.u64()?,
                txg: r.u64()?,
            };
            if e.len == 0 || e.offset.checked_add(e.len).is_none() {
                return Err(PoolError::corrupt(
                    "space map entry",
                    format!("impossible extent {e:?}"),
                ));
            }
            entries.push(e);
        }
        Ok(SpaceMapBlock {
            flags,
            txg,
            prev,
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let b = SpaceMapBlock {
            flags: FLAG_CONDENSED,
            txg: 7,
            prev: None,
            entries: vec![
                SpaceEntry {
                    op: SpaceOp::Alloc,
                    device: 0,
                    offset: 4096,
                    len: 8192,
                    txg: 7,
                },
                SpaceEntry {
                    op: SpaceOp::Free,
                    device: 1,
                    offset: 1 << 30,
                    len: 4096,
                    txg: 0,
                },
            ],
        };
        let enc = b.encode(4096);
        assert_eq!(enc.len(), 4096);
        assert_eq!(SpaceMapBlock::decode(&enc).unwrap(), b);
        assert_eq!(entries_per_block(4096), (4096 - 280) / 32);
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = SpaceMapBlock::decode(&bytes);
        }
    }
}
