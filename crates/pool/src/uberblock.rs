//! The uberblock: the root of everything at one transaction group.
//!
//! Each label has a ring of 32 slots of 4 KiB; txg N goes to slot N % 32 of
//! every label of every device. Overwriting a slot in place is one of the
//! two in-place writes the format allows (the other is the intent log);
//! its embedded checksum makes a torn slot detectable, and the ring keeps
//! older roots to fall back to.
//!
//! Layout (little-endian): 0 magic "AEGISUB\0" · 8 u16 version · 10 u16
//! encoded length (UBERBLOCK_SIZE) · 12 u32 reserved · 16 u64 txg · 24 u64
//! timestamp (ns) · 32 pool UUID (16) · 48 u64 space map chain length in
//! blocks · 56 u64 reserved · 64 pool tree root (TREE_ROOT_SIZE) · then a
//! BLKPTR_MAX field: space map head · a BLKPTR_MAX field: intent log head
//! (reserved) · last 32 bytes: BLAKE3 of everything before.

use crate::blkptr::{decode_optional_field, encode_optional_field, BlockPtr, BLKPTR_MAX};
use crate::checksum::self_checksum;
use crate::codec::{Reader, Writer};
use crate::error::{PoolError, Result};
use crate::tree_root::{TreeRoot, TREE_ROOT_SIZE};

pub const UBER_MAGIC: [u8; 8] = *b"AEGISUB\0";
pub(crate) const UBER_VERSION: u16 = 1;
pub const UBER_SLOT_SIZE: usize = 4096;
pub const UBER_SLOTS: u64 = 32;
pub const UBERBLOCK_SIZE: usize = 64 + TREE_ROOT_SIZE + 2 * BLKPTR_MAX + 32;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uberblock {
    pub txg: u64,
    pub timestamp_ns: u64,
    pub pool_uuid: [u8; 16],
    pub space_map_blocks: u64,
    pub pool_root: TreeRoot,
    pub space_map: Option<BlockPtr>,
    pub log_head: Option<BlockPtr>,
}

impl Uberblock {
    /// Encode into a whole slot (zero padded).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(UBER_SLOT_SIZE);
        w.bytes(&UBER_MAGIC);
        w.u16(UBER_VERSION);
        w.u16(UBERBLOCK_SIZE as u16);
        w.u32(0);
        w.u64(self.txg);
        w.u64(self.timestamp_ns);
        w.bytes(&self.pool_uuid);
        w.u64(self.space_map_blocks);
        w.u64(0);
        self.pool_root.encode_into(&mut w);
        encode_optional_field(&mut w, self.space_map.as_ref());
        encode_optional_field(&mut w, self.log_head.as_ref());
        let sum = self_checksum(&w.buf);
        w.bytes(&sum);
        debug_assert_eq!(w.len(), UBERBLOCK_SIZE);
        w.pad_to(UBER_SLOT_SIZE);
        w.into_inner()
    }

    /// Decode a slot. `Ok(None)` for a slot never written (no magic).
    pub fn decode(slot: &[u8]) -> Result<Option<Uberblock>> {
        if slot.len() < UBERBLOCK_SIZE || slot[..8] != UBER_MAGIC {
            return Ok(None);
        }
        let bad = |d: &str| PoolError::corrupt("uberblock", d.to_string());
        let body = &slot[..UBERBLOCK_SIZE - 32];
        if self_checksum(body) != slot[UBERBLOCK_SIZE - 32..UBERBLOCK_SIZE] {
            return Err(bad("checksum mismatch"));
        }
        let mut r = Reader::new(body, "uberblock");
        r.skip(8)?;
        if r.u16()? != UBER_VERSION {
            return Err(bad("unknown version"));
        }
        if r.u16()? as usize != UBERBLOCK_SIZE {
            return Err(bad("wrong length"));
        }
        r.skip(4)?;
        let txg = r.u64()?;
        let timestamp_ns = r.u64()?;
        let pool_uuid = r.array()?;
        let space_map_blocks = r.u64()?;
        r.skip(8)?;
        let pool_root = TreeRoot::decode(&mut r)?;
        let space_map = decode_optional_field(&mut r)?;
        let log_head = decode_optional_field(&mut r)?;
        Ok(Some(Uberblock {
            txg,
            timestamp_ns,
            pool_uuid,
            space_map_blocks,
            pool_root,
            space_map,
            log_head,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_torn_slot() {
        let u = Uberblock {
            txg: 9,
            timestamp_ns: 5,
            pool_uuid: [3; 16],
            space_map_blocks: 2,
            pool_root: TreeRoot::default(),
            space_map: None,
            log_head: None,
        };
        let enc = u.encode();
        assert_eq!(enc.len(), UBER_SLOT_SIZE);
        assert_eq!(Uberblock::decode(&enc).unwrap(), Some(u));
        let mut torn = enc.clone();
        torn[300..].fill(0);
        assert!(Uberblock::decode(&torn).is_err());
        assert_eq!(Uberblock::decode(&[0u8; 4096]).unwrap(), None);
    }
}
