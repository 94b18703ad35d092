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
//! | 10 | 2 | birth delta, bits 32..47 |
//! | 12 | 4 | logical size |
//! | 16 | 4 | physical (stored) size |
//! | 20 | 4 | birth delta, bits 0..31 |
//! | 24 | 8 | birth txg (of this pointer) |
//! | 32 | 32 | checksum of the stored bytes |
//! | 64 | 16×n | addresses: u32 device index, u32 reserved, u64 byte offset |
//!
//! Invariants checked on decode: known version, length matches naddr,
//! 1 ≤ naddr ≤ 11, physical ≤ logical ≤ 16 MiB, physical > 0, copies on
//! distinct (device, offset) pairs; a birth delta only on a data block
//! and at most its birth txg; a gang pointer has one address, that
//! of its header block (see `gang_header.rs`; pools with the `gang`
//! feature only), and its sizes and checksum are those of the stored
//! bytes its pieces hold joined.
//!
//! Two births: the birth txg is when this pointer was written, and what
//! snapshots and dead lists go by (a pointer born after a snapshot is in
//! no snapshot); the *physical* birth, birth txg less the birth delta, is
//! when the block's bytes were written, and what the pool goes by (a
//! block written in the open txg may be reused at once when freed; any
//! other is deferred). They differ only for a reflink's copy of an older
//! pointer (pools with the `reflinks` feature, as OpenZFS's block
//! cloning keeps a logical and a physical birth); 48 bits of delta are
//! more txgs than a pool lives.

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
/// The birth delta field is 48 bits wide.
pub const MAX_BIRTH_DELTA: u64 = (1 << 48) - 1;

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
    /// The txg this pointer was written in.
    pub birth_txg: u64,
    /// Txgs between the block's bytes and this pointer: 0 but for a
    /// reflink's copy of an older pointer (see the module documentation).
    pub birth_delta: u64,
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
        w.u16((self.birth_delta >> 32) as u16);
        w.u32(self.logical_size);
        w.u32(self.physical_size);
        w.u32(self.birth_delta as u32);
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
        let delta_high = r.u16()?;
        let logical_size = r.u32()?;
        let physical_size = r.u32()?;
        let delta_low = r.u32()?;
        if ec_k != 0 {
            return Err(bad("reserved fields are not zero".into()));
        }
        let birth_delta = (delta_high as u64) << 32 | delta_low as u64;
        let birth_txg = r.u64()?;
        if birth_delta > birth_txg || (birth_delta != 0 && block_type != BlockType::Data) {
            return Err(bad(format!(
                "birth delta {birth_delta} on a {} born in txg {birth_txg}",
                block_type.name()
            )));
        }
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
            birth_delta,
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

    /// The txg the block's bytes were written in (see the module
    /// documentation): its birth txg but for a reflink's copy.
    pub fn physical_birth(&self) -> u64 {
        self.birth_txg - self.birth_delta
    }

    /// A pointer to the same bytes written in txg `txg` (a reflink's
    /// copy), or `None` if the delta would not fit its field.
    pub fn cloned_at(&self, txg: u64) -> Option<BlockPtr> {
        let delta = txg.checked_sub(self.physical_birth())?;
        (delta <= MAX_BIRTH_DELTA).then(|| BlockPtr {
            birth_txg: txg,
            birth_delta: delta,
            ..self.clone()
        })
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
            birth_delta: 0,
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
    fn a_clone_keeps_its_physical_birth_across_the_codec() {
        let mut data = sample(1);
        data.block_type = BlockType::Data;
        data.level = 0;
        let c = data.cloned_at(42 + (7 << 32) + 5).unwrap();
        assert_eq!(c.physical_birth(), 42);
        assert_eq!(c.birth_delta, (7 << 32) + 5);
        assert_eq!(BlockPtr::decode_slice(&c.encode()).unwrap(), c);
        assert!(data.cloned_at(41).is_none(), "a clone older than its block");
        assert!(data.cloned_at(42 + MAX_BIRTH_DELTA + 1).is_none());
        // A delta past the birth, or on a tree node, is damage.
        let mut b = c.encode();
        b[24..32].copy_from_slice(&3u64.to_le_bytes());
        assert!(BlockPtr::decode_slice(&b).is_err());
        let mut node = sample(1).encode();
        node[20] = 1;
        assert!(BlockPtr::decode_slice(&node).is_err());
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
