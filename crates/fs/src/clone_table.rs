//! The clone table (pool tree record type 4): how many pointers beyond
//! the first name a block that reflinks share.
//!
//! Snapshots share blocks through birth txgs and dead lists, which need
//! no count: a pointer is in every tree taken between its birth and its
//! free. A reflink makes a second pointer to a block *inside* one tree
//! (`FICLONE`, `copy_file_range`, dedupe), which birth txgs cannot tell
//! apart, so such blocks get a count, as OpenZFS's block reference table
//! does. The copied pointer is born in the txg of the copy (its birth
//! delta keeps the block's own physical birth, `blkptr.rs`), so the
//! snapshot rules apply to each pointer on its own; this table applies to
//! the block: every release of a pointer (a free, or a dead list entry
//! whose snapshots are gone) asks it first, and a block with an entry
//! loses one reference instead of being freed. The entry goes when its
//! count reaches zero; the free after that frees the block.
//!
//! Invariant (checked by fsck): for every data block, 1 + its entry's
//! count equals the pointers to it in the live datasets' trees (a
//! clone's counted only if born after its origin) plus its dead list
//! entries' counts. Blocks never cloned have no entry, and their frees
//! pay one hash lookup: the table keeps in memory how many entries each
//! 1 GiB region of each device holds, rebuilt at open, and a free in a
//! region without any skips the tree.
//!
//! Key: u8 type (4) · u32 device · u64 offset (big-endian; the block's
//! first address). Value: u64 references beyond the first (≥ 1) · u64
//! bytes the block takes on disk, all copies (little-endian), for the
//! space that sharing saves.

use std::collections::HashMap;
use std::ops::Bound;

use aegis_btree::Tree;
use aegis_pool::codec::{Reader, Writer};
use aegis_pool::{BlockPtr, Pool};

use crate::error::{FsError, Result};
use crate::store::Trees;

pub const REC_CLONE: u8 = 4;
const KEY_LEN: usize = 1 + 4 + 8;
const VALUE_LEN: usize = 16;
/// Leaf bytes one entry takes (key, value, the node's lengths), for space
/// checks.
pub const ENTRY_BYTES: u64 = (KEY_LEN + VALUE_LEN + 4) as u64;
/// The summary counts entries per region of this many bytes.
const REGION_SHIFT: u32 = 30;

/// One block's entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloneEntry {
    /// Pointers to the block beyond the first.
    pub extra: u64,
    /// Bytes the block takes on disk, every copy.
    pub bytes: u64,
}

pub fn clone_key(device: u32, offset: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(KEY_LEN);
    k.push(REC_CLONE);
    k.extend_from_slice(&device.to_be_bytes());
    k.extend_from_slice(&offset.to_be_bytes());
    k
}

/// (device, offset) of a clone table key, if it is one.
pub fn parse_clone_key(k: &[u8]) -> Option<(u32, u64)> {
    (k.len() == KEY_LEN && k[0] == REC_CLONE).then(|| {
        let device = u32::from_be_bytes(k[1..5].try_into().expect("4 bytes"));
        let offset = u64::from_be_bytes(k[5..13].try_into().expect("8 bytes"));
        (device, offset)
    })
}

impl CloneEntry {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(VALUE_LEN);
        w.u64(self.extra);
        w.u64(self.bytes);
        w.into_inner()
    }

    pub fn decode(v: &[u8]) -> Result<CloneEntry> {
        let bad = |d: &str| FsError::Corrupt {
            what: "clone table entry".into(),
            detail: d.into(),
        };
        if v.len() != VALUE_LEN {
            return Err(bad("wrong length"));
        }
        let mut r = Reader::new(v, "clone table entry");
        let e = CloneEntry {
            extra: r.u64()?,
            bytes: r.u64()?,
        };
        if e.extra == 0 {
            return Err(bad("an entry of no extra reference"));
        }
        Ok(e)
    }
}

/// The block's first address: what names it in the table.
fn first_address(bp: &BlockPtr) -> (u32, u64) {
    bp.addrs.first().map_or((0, 0), |a| (a.device, a.offset))
}

/// How many entries each region holds, so that frees elsewhere skip the
/// lookup. Exact: an entry's insert and removal move its region's count.
#[derive(Default)]
pub(crate) struct CloneSummary {
    regions: HashMap<(u32, u64), u64>,
}

impl CloneSummary {
    /// Count the entries `pool_tree` holds (at open).
    pub(crate) fn load(pool_tree: &Tree) -> Result<CloneSummary> {
        let mut s = CloneSummary::default();
        let (lo, hi) = ([REC_CLONE], [REC_CLONE + 1]);
        for item in pool_tree.range(Bound::Included(&lo[..]), Bound::Excluded(&hi[..])) {
            let (k, _) = item?;
            if let Some((device, offset)) = parse_clone_key(&k) {
                s.add(device, offset, 1);
            }
        }
        Ok(s)
    }

    fn add(&mut self, device: u32, offset: u64, delta: i64) {
        let r = self
            .regions
            .entry((device, offset >> REGION_SHIFT))
            .or_default();
        *r = r.saturating_add_signed(delta);
        if *r == 0 {
            self.regions.remove(&(device, offset >> REGION_SHIFT));
        }
    }

    fn may_hold(&self, device: u32, offset: u64) -> bool {
        self.regions.contains_key(&(device, offset >> REGION_SHIFT))
    }

    /// Entries in the table.
    #[cfg(test)]
    fn entries(&self) -> u64 {
        self.regions.values().sum()
    }
}

impl Trees {
    /// The entry of `bp`'s block, if it has one.
    pub(crate) fn clone_entry(&self, bp: &BlockPtr) -> Result<Option<CloneEntry>> {
        let (device, offset) = first_address(bp);
        if !self.clones.may_hold(device, offset) {
            return Ok(None);
        }
        match self.pool_tree.get(&clone_key(device, offset))? {
            Some(v) => Ok(Some(CloneEntry::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// One more pointer names `bp`'s block (a reflink copied it).
    pub(crate) fn add_reference(&mut self, bp: &BlockPtr, block_size: u32) -> Result<()> {
        let (device, offset) = first_address(bp);
        let entry = match self.clone_entry(bp)? {
            Some(mut e) => {
                e.extra += 1;
                e
            }
            None => {
                self.clones.add(device, offset, 1);
                CloneEntry {
                    extra: 1,
                    bytes: bp.allocated_size(block_size) * bp.addrs.len() as u64,
                }
            }
        };
        self.pool_tree
            .insert(&clone_key(device, offset), &entry.encode())?;
        Ok(())
    }

    /// A pointer to `bp`'s block is gone for good: one reference less if
    /// the table counts others, else the block is freed.
    pub(crate) fn release_block(&mut self, pool: &Pool, bp: &BlockPtr) -> Result<()> {
        let Some(mut e) = self.clone_entry(bp)? else {
            return Ok(pool.free(bp)?);
        };
        let (device, offset) = first_address(bp);
        let key = clone_key(device, offset);
        e.extra -= 1;
        if e.extra == 0 {
            self.pool_tree.remove(&key)?;
            self.clones.add(device, offset, -1);
        } else {
            self.pool_tree.insert(&key, &e.encode())?;
        }
        Ok(())
    }

    /// [`Trees::release_block`] for each of `bps`.
    pub(crate) fn release_blocks(&mut self, pool: &Pool, bps: &[BlockPtr]) -> Result<()> {
        for bp in bps {
            self.release_block(pool, bp)?;
        }
        Ok(())
    }

    /// Bytes sharing saves: every entry's extra references times its
    /// block's size. A scan of the table.
    pub(crate) fn shared_bytes(&self) -> Result<u64> {
        let (lo, hi) = ([REC_CLONE], [REC_CLONE + 1]);
        let mut total = 0u64;
        for item in self
            .pool_tree
            .range(Bound::Included(&lo[..]), Bound::Excluded(&hi[..]))
        {
            let (_, v) = item?;
            let e = CloneEntry::decode(&v)?;
            total = total.saturating_add(e.extra.saturating_mul(e.bytes));
        }
        Ok(total)
    }
}

impl crate::store::Store {
    /// Test hook: set the clone table entry of the block at `(device,
    /// offset)` to `extra` references (`None` removes it), committed, so
    /// a test can check that fsck sees a count that is wrong.
    #[doc(hidden)]
    pub fn set_clone_entry_for_test(
        &self,
        device: u32,
        offset: u64,
        extra: Option<u64>,
    ) -> Result<()> {
        {
            let mut t = self.trees.write();
            let key = clone_key(device, offset);
            match extra {
                Some(extra) => {
                    let e = CloneEntry { extra, bytes: 4096 };
                    t.clones.add(device, offset, 1);
                    t.pool_tree.insert(&key, &e.encode())?;
                }
                None => {
                    t.pool_tree.remove(&key)?;
                }
            }
        }
        self.commit().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_entries_round_trip_and_refuse_damage() {
        let k = clone_key(2, 1 << 33);
        assert_eq!(parse_clone_key(&k), Some((2, 1 << 33)));
        assert!(clone_key(1, 9) < clone_key(2, 0));
        assert_eq!(parse_clone_key(&k[..12]), None);
        let e = CloneEntry {
            extra: 3,
            bytes: 8192,
        };
        assert_eq!(CloneEntry::decode(&e.encode()).unwrap(), e);
        assert!(CloneEntry::decode(&e.encode()[..15]).is_err());
        let zero = CloneEntry { extra: 0, bytes: 1 };
        assert!(CloneEntry::decode(&zero.encode()).is_err());
    }

    #[test]
    fn the_summary_counts_entries_per_region() {
        let mut s = CloneSummary::default();
        s.add(0, 4096, 1);
        s.add(0, 8192, 1);
        assert!(s.may_hold(0, 1 << 20));
        assert!(!s.may_hold(0, 1 << 30));
        assert!(!s.may_hold(1, 4096));
        s.add(0, 4096, -1);
        assert!(s.may_hold(0, 0));
        s.add(0, 8192, -1);
        assert!(!s.may_hold(0, 0));
        assert_eq!(s.entries(), 0);
    }
}
