//! Block pointers: where a block is and how to read it.
//!
//! A block pointer is self-describing and variable-length: a version byte
//! and its own encoded length come first, so later formats can append fields
//! and old readers can skip whole pointers. Layout (little-endian):
//!
//! | off | size | field |
//! |----:|-----:|-------|
//! | 0 | 1 | version (1) |
//! | 1 | 1 | encoded length in bytes (64 + 16 × naddr) |
//! | 2 | 1 | layout: 0 = copies, 1 = Reed-Solomon stripe (reserved), 2 = gang |
//! | 3 | 1 | naddr: number of addresses (1..=11) |
//! | 4 | 1 | checksum type |
//! | 5 | 1 | compression |
//! | 6 | 1 | encryption (0 = none; others reserved) |
//! | 7 | 1 | block type |
//! | 8 | 1 | erasure-coding data shards k (0 for copies) |
//! | 9 | 1 | tree level (0 for leaves and non-tree blocks) |
//! | 10 | 2 | reserved, zero |
//! | 12 | 4 | logical size |
//! | 16 | 4 | physical (stored) size |
//! | 20 | 4 | reserved, zero |
//! | 24 | 8 | birth txg |
//! | 32 | 32 | checksum of the stored bytes |
//! | 64 | 16×n | addresses: u32 device index, u32 reserved, u64 byte offset |
//!
//! Invariants checked on decode: known version, length matches naddr,
//! 1 ≤ naddr ≤ 11, physical ≤ logical ≤ 16 MiB, physical > 0, copies on
//! distinct (device, offset) pairs; a gang pointer has one address, that
//! of its header block (see `gang_header.rs`; pools with the `gang`
//! feature only), and its sizes and checksum are those of the stored
//! bytes its pieces hold joined.

use crate::checksum::ChecksumType;
use crate::codec::{Reader, Writer};
use crate::compression::Compression;
use crate::error::{PoolError, Result};

pub(crate) const BLKPTR_VERSION: u8 = 1;
const LAYOUT_COPIES: u8 = 0;
const LAYOUT_GANG: u8 = 2;
pub const BLKPTR_HEADER: usize = 64;
pub const DVA_SIZE: usize = 16;
/// The length byte must hold 64 + 16 × n, so n ≤ 11.
pub(crate) const MAX_ADDRS: usize = 11;
/// Size of a fixed field that holds one block pointer (the largest encodes
/// to 240 bytes; the rest is zero).
pub(crate) const BLKPTR_MAX: usize = 256;
/// Largest logical block the format allows (records up to 1 MiB today).
pub(crate) const MAX_BLOCK_BYTES: u32 = 16 << 20;

/// What a block holds; fsck and scrub use it to know how to descend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BlockType {
    TreeNode = 1,
    SpaceMap = 2,
    Data = 3,
    IntentLog = 4,
}

impl BlockType {
    pub fn from_u8(v: u8) -> Result<Self> {
        Ok(match v {
            1 => BlockType::TreeNode,
            2 => BlockType::SpaceMap,
            3 => BlockType::Data,
            4 => BlockType::IntentLog,
            _ => {
                return Err(PoolError::corrupt(
                    "block pointer",
                    format!("unknown block type {v}"),
                ))
            }
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            BlockType::TreeNode => "tree node",
            BlockType::SpaceMap => "space map",
            BlockType::Data => "data",
            BlockType::IntentLog => "intent log",
        }
    }
}

/// One copy's address: a device of the pool and a byte offset on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dva {
    pub device: u32,
    pub offset: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlockPtr {
    pub checksum_type: ChecksumType,
    pub compression: Compression,
    pub block_type: BlockType,
    pub level: u8,
    pub logical_size: u32,
    pub physical_size: u32,
    pub birth_txg: u64,
    pub checksum: [u8; 32],
    /// Copies of the same stored bytes, in preference order; for a gang
    /// block, its header block.
    pub addrs: Vec<Dva>,
    /// Layout 2: the stored bytes lie in the pieces a header lists.
    pub gang: bool,
}

impl BlockPtr {
    pub fn encoded_len(&self) -> usize {
        BLKPTR_HEADER + DVA_SIZE * self.addrs.len()
    }

    pub fn encode_into(&self, w: &mut Writer) {
        assert!(
            !self.addrs.is_empty() && self.addrs.len() <= MAX_ADDRS,
            "block pointer with {} addresses",
            self.addrs.len()
        );
        let start = w.len();
        w.u8(BLKPTR_VERSION);
        w.u8(self.encoded_len() as u8);
        w.u8(if self.gang {
            LAYOUT_GANG
        } else {
            LAYOUT_COPIES
        });
        w.u8(self.addrs.len() as u8);
        w.u8(self.checksum_type as u8);
        w.u8(self.compression as u8);
        w.u8(0); // encryption: none
        w.u8(self.block_type as u8);
        w.u8(0); // EC data shards
        w.u8(self.level);
        w.u16(0);
        w.u32(self.logical_size);
        w.u32(self.physical_size);
        w.u32(0);
        w.u64(self.birth_txg);
        w.bytes(&self.checksum);
        for a in &self.addrs {
            w.u32(a.device);
            w.u32(0);
            w.u64(a.offset);
        }
        debug_assert_eq!(w.len() - start, self.encoded_len());
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.encoded_len());
        self.encode_into(&mut w);
        w.into_inner()
    }

    /// Decode and check one pointer. Kept whole although long: one pass
    /// over the layout table above, each check beside the field it checks.
    pub fn decode(r: &mut Reader<'_>) -> Result<BlockPtr> {
        let bad = |d: String| PoolError::corrupt("block pointer", d);
        let version = r.u8()?;
        if version != BLKPTR_VERSION {
            return Err(bad(format!("unknown version {version}")));
        }
        let len = r.u8()? as usize;
        let layout = r.u8()?;
        let naddr = r.u8()? as usize;
        if layout != LAYOUT_COPIES && layout != LAYOUT_GANG {
            return Err(bad(format!(
                "layout {layout} is not supported by this build"
            )));
        }
        let gang = layout == LAYOUT_GANG;
        if gang && naddr != 1 {
            return Err(bad(format!("gang block with {naddr} header addresses")));
        }
        if naddr == 0 || naddr > MAX_ADDRS || len != BLKPTR_HEADER + DVA_SIZE * naddr {
            return Err(bad(format!(
                "length {len} does not match {naddr} addresses"
            )));
        }
        let checksum_type = ChecksumType::from_u8(r.u8()?)?;
        let compression = Compression::from_u8(r.u8()?)?;
        let encryption = r.u8()?;
        if encryption != 0 {
            return Err(bad(format!(
                "encryption {encryption} is not supported by this build"
            )));
        }
        let block_type = BlockType::from_u8(r.u8()?)?;
        // Reserved fields must be zero: a value this build does not know
        // could mean something to a newer one, and bytes that decode must
        // encode back to themselves.
        let ec_k = r.u8()?;
        let level = r.u8()?;
        let reserved16 = r.u16()?;
        let logical_size = r.u32()?;
        let physical_size = r.u32()?;
        let reserved32 = r.u32()?;
        if ec_k != 0 || reserved16 != 0 || reserved32 != 0 {
            return Err(bad("reserved fields are not zero".into()));
        }
        let birth_txg = r.u64()?;
        let checksum = r.array::<32>()?;
        if physical_size == 0 || physical_size > logical_size || logical_size > MAX_BLOCK_BYTES {
            return Err(bad(format!(
                "sizes physical {physical_size} logical {logical_size}"
            )));
        }
        if compression == Compression::None && physical_size != logical_size {
            return Err(bad(
                "uncompressed block with physical size != logical size".into()
            ));
        }
        let mut addrs = Vec::with_capacity(naddr);
        for _ in 0..naddr {
            let device = r.u32()?;
            if r.u32()? != 0 {
                return Err(bad("reserved address field is not zero".into()));
            }
            let offset = r.u64()?;
            let d = Dva { device, offset };
            if addrs.contains(&d) {
                return Err(bad(format!(
                    "two copies at the same address {device}:{offset}"
                )));
            }
            addrs.push(d);
        }
        Ok(BlockPtr {
            checksum_type,
            compression,
            block_type,
            level,
            logical_size,
            physical_size,
            birth_txg,
            checksum,
            addrs,
            gang,
        })
    }

    /// Decode a block pointer that is exactly `b` (no trailing bytes).
    pub fn decode_slice(b: &[u8]) -> Result<BlockPtr> {
        let mut r = Reader::new(b, "block pointer");
        let bp = BlockPtr::decode(&mut r)?;
        if r.remaining() != 0 {
            return Err(PoolError::corrupt("block pointer", "trailing bytes"));
        }
        Ok(bp)
    }

    /// Bytes one copy of the block takes in all: its stored bytes in
    /// whole blocks, and for a gang block its header block too.
    pub fn allocated_size(&self, block_size: u32) -> u64 {
        let stored = (self.physical_size as u64).div_ceil(block_size as u64) * block_size as u64;
        stored + if self.gang { block_size as u64 } else { 0 }
    }

    /// Bytes at each address: the stored bytes in whole blocks, or a gang
    /// block's header block.
    pub fn copy_size(&self, block_size: u32) -> u64 {
        if self.gang {
            block_size as u64
        } else {
            (self.physical_size as u64).div_ceil(block_size as u64) * block_size as u64
        }
    }

    /// A short description for error messages ("tree node L1 txg 7 at 0:1048576").
    pub fn describe(&self) -> String {
        let addrs: Vec<String> = self
            .addrs
            .iter()
            .map(|a| format!("{}:{}", a.device, a.offset))
            .collect();
        let level = if self.block_type == BlockType::TreeNode {
            format!(" L{}", self.level)
        } else {
            String::new()
        };
        format!(
            "{}{} (txg {}) at {}",
            self.block_type.name(),
            level,
            self.birth_txg,
            addrs.join(",")
        )
    }
}

/// A block pointer in a fixed-size field of [`BLKPTR_MAX`] bytes: an
/// all-zero field means "none". Used by uberblocks and space map headers.
pub(crate) fn encode_optional_field(w: &mut Writer, bp: Option<&BlockPtr>) {
    let start = w.len();
    if let Some(bp) = bp {
        bp.encode_into(w);
    }
    w.pad_to(start + BLKPTR_MAX);
}

pub(crate) fn decode_optional_field(r: &mut Reader<'_>) -> Result<Option<BlockPtr>> {
    let field = r.bytes(BLKPTR_MAX)?;
    if field[0] == 0 {
        if field.iter().any(|&b| b != 0) {
            return Err(PoolError::corrupt(
                "block pointer field",
                "empty field with non-zero bytes",
            ));
        }
        return Ok(None);
    }
    let mut r = Reader::new(field, "block pointer field");
    let bp = BlockPtr::decode(&mut r)?;
    // The field is padded with zeroes past the pointer.
    if r.bytes(r.remaining())?.iter().any(|&b| b != 0) {
        return Err(PoolError::corrupt(
            "block pointer field",
            "non-zero bytes after the pointer",
        ));
    }
    Ok(Some(bp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(n: usize) -> BlockPtr {
        BlockPtr {
            checksum_type: ChecksumType::Blake3,
            compression: Compression::Lz4,
            block_type: BlockType::TreeNode,
            level: 3,
            logical_size: 4096,
            physical_size: 1000,
            birth_txg: 42,
            checksum: [9; 32],
            addrs: (0..n)
                .map(|i| Dva {
                    device: i as u32,
                    offset: 1 << 20 | (i as u64) << 12,
                })
                .collect(),
            gang: false,
        }
    }

    #[test]
    fn round_trip() {
        for n in 1..=MAX_ADDRS {
            let bp = sample(n);
            let enc = bp.encode();
            assert_eq!(enc.len(), 64 + 16 * n);
            assert_eq!(BlockPtr::decode_slice(&enc).unwrap(), bp);
        }
    }

    #[test]
    fn rejects_bad_fields() {
        let enc = sample(2).encode();
        for (off, val) in [
            (0usize, 2u8),
            (1, 63),
            (2, 1),
            (3, 0),
            (3, 12),
            (4, 0),
            (5, 7),
            (6, 1),
            (7, 0),
        ] {
            let mut b = enc.clone();
            b[off] = val;
            assert!(
                BlockPtr::decode_slice(&b).is_err(),
                "byte {off} = {val} accepted"
            );
        }
        let mut b = enc.clone();
        b[16..20].copy_from_slice(&5000u32.to_le_bytes()); // physical > logical
        assert!(BlockPtr::decode_slice(&b).is_err());
        assert!(BlockPtr::decode_slice(&enc[..70]).is_err());
    }

    #[test]
    fn optional_field() {
        let mut w = Writer::new();
        encode_optional_field(&mut w, None);
        encode_optional_field(&mut w, Some(&sample(1)));
        assert_eq!(w.len(), 2 * BLKPTR_MAX);
        let mut r = Reader::new(&w.buf, "t");
        assert_eq!(decode_optional_field(&mut r).unwrap(), None);
        assert_eq!(decode_optional_field(&mut r).unwrap(), Some(sample(1)));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = BlockPtr::decode_slice(&bytes);
        }
    }
}
