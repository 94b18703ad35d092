//! Gang headers: where the pieces of a block too large for any free extent
//! lie (as ZFS gang blocks). When a nearly full pool has the bytes for a
//! data block but no free extent long enough, the stored bytes are cut
//! into pieces of whole blocks, each placed in a hole of its own, and the
//! block pointer (layout 2, "gang") points at one header block listing
//! them in order. The pointer's checksum and sizes still describe the
//! whole stored bytes, so a read verifies the pieces joined.
//!
//! Layout of the header block (little-endian, zero padded to one block):
//! u32 magic "AGGH" · u16 piece count (1..=MAX) · u16 zero · 32-byte
//! BLAKE3 of everything from offset 40 to the table's end · the 32-byte
//! checksum of the block it belongs to (the pointer's, of the joined
//! stored bytes) · then per piece u32 device · u32 length in blocks · u64
//! byte offset. The header checks itself (its own checksum), so a damaged
//! header is told from damaged pieces, and names its block, so a header
//! that is intact but not this pointer's (a lost write left an older one)
//! is refused before anything, a free above all, acts on its table: that
//! is how the header is verified against its parent. The pieces' lengths
//! must add up to the pointer's stored bytes rounded up to whole blocks.
//!
//! Invariants, checked on decode: known magic, 1 ≤ count ≤ the block's
//! room, checksum matches, zero padding field, no piece of length 0; the
//! reader checks the block checksum against the pointer.

use crate::allocator::Extent;
use crate::checksum::ChecksumType;
use crate::codec::{Reader, Writer};
use crate::error::{PoolError, Result};

const MAGIC: u32 = u32::from_le_bytes(*b"AGGH");
const HEADER_BYTES: usize = 72;
const PIECE_BYTES: usize = 16;

/// Most pieces a header of `block_size` bytes lists.
pub(crate) fn max_pieces(block_size: u32) -> usize {
    (block_size as usize - HEADER_BYTES) / PIECE_BYTES
}

/// The pieces of one gang block, in the order their bytes join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GangHeader {
    /// The checksum in the pointer of the block these pieces make up.
    pub(crate) block_checksum: [u8; 32],
    pub(crate) pieces: Vec<Extent>,
}

impl GangHeader {
    /// The header block, `block_size` bytes.
    pub(crate) fn encode(&self, block_size: u32) -> Vec<u8> {
        assert!(!self.pieces.is_empty() && self.pieces.len() <= max_pieces(block_size));
        let mut body = self.block_checksum.to_vec();
        body.extend_from_slice(&self.table(block_size));
        let mut w = Writer::with_capacity(block_size as usize);
        w.u32(MAGIC);
        w.u16(self.pieces.len() as u16);
        w.u16(0);
        w.bytes(&ChecksumType::Blake3.compute(&body));
        w.bytes(&body);
        let mut b = w.into_inner();
        b.resize(block_size as usize, 0);
        b
    }

    fn table(&self, block_size: u32) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.pieces.len() * PIECE_BYTES);
        for p in &self.pieces {
            w.u32(p.device);
            w.u32((p.len / block_size as u64) as u32);
            w.u64(p.offset);
        }
        w.into_inner()
    }

    pub(crate) fn decode(b: &[u8], block_size: u32) -> Result<GangHeader> {
        let bad = |d: &str| PoolError::corrupt("gang header", d);
        let mut r = Reader::new(b, "gang header");
        if r.u32()? != MAGIC {
            return Err(bad("bad magic"));
        }
        let count = r.u16()? as usize;
        if r.u16()? != 0 {
            return Err(bad("reserved field is not zero"));
        }
        if count == 0 || count > max_pieces(block_size) {
            return Err(bad("piece count"));
        }
        let sum = r.array::<32>()?;
        let body = r.bytes(32 + count * PIECE_BYTES)?;
        if ChecksumType::Blake3.compute(body) != sum {
            return Err(bad("checksum mismatch"));
        }
        let mut t = Reader::new(body, "gang header");
        let block_checksum = t.array::<32>()?;
        let mut pieces = Vec::with_capacity(count);
        for _ in 0..count {
            let device = t.u32()?;
            let blocks = t.u32()? as u64;
            let offset = t.u64()?;
            if blocks == 0 {
                return Err(bad("piece of no blocks"));
            }
            pieces.push(Extent {
                device,
                offset,
                len: blocks * block_size as u64,
            });
        }
        Ok(GangHeader {
            block_checksum,
            pieces,
        })
    }

    /// Bytes the pieces hold, in whole blocks.
    pub(crate) fn len(&self) -> u64 {
        self.pieces.iter().map(|p| p.len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> GangHeader {
        GangHeader {
            block_checksum: [7; 32],
            pieces: vec![
                Extent {
                    device: 0,
                    offset: 1 << 20,
                    len: 8192,
                },
                Extent {
                    device: 1,
                    offset: 4 << 20,
                    len: 4096,
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let h = sample();
        let b = h.encode(4096);
        assert_eq!(b.len(), 4096);
        assert_eq!(&b[..4], b"AGGH");
        assert_eq!(GangHeader::decode(&b, 4096).unwrap(), h);
        assert_eq!(h.len(), 12288);
        assert_eq!(max_pieces(4096), 251);
    }

    #[test]
    fn damage_is_refused() {
        let b = sample().encode(4096);
        for (at, v) in [
            (0, b'X'),
            (4, 0),
            (5, 1),
            (6, 1),
            (10, 0xff),
            (45, 9),
            (80, 2),
        ] {
            let mut d = b.clone();
            d[at] ^= v.max(1);
            assert!(GangHeader::decode(&d, 4096).is_err(), "byte {at}");
        }
        // A piece of zero blocks, with a matching checksum.
        let mut h = sample();
        h.pieces[1].len = 0;
        assert!(GangHeader::decode(&h.encode(4096), 4096).is_err());
        assert!(GangHeader::decode(&b[..20], 4096).is_err());
    }
}
