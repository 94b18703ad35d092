//! Blocks written in the open txg but not yet sent to their devices.
//!
//! `Pool::write_block` leaves each new copy here; the commit writes them
//! all just before its first flush, which is the first moment any of them
//! has to be on the device. So a file record rewritten by many small
//! writes within one txg reaches the device once, a block freed in the
//! txg that made it never does, and no writeback of such short-lived
//! blocks competes with the intent log's durable writes between commits.
//! Reads of a buffered copy are served from here: `Pool::read_block`
//! takes the block's logical bytes as they were given, once the pointer's
//! checksum equals the one computed from these very bytes when they were
//! written (the check that the pointer names this block), without
//! decompressing or hashing again; a small write into a record written in
//! the same txg thus costs no decompression.
//!
//! A commit runs in two stages (`pool/commit.rs`): the first, under the
//! layer above's exclusive lock, closes the txg and moves its blocks to
//! the *syncing* set; the second writes that set out while the next txg
//! already takes writes. Syncing blocks stay readable here until their
//! device has them, and are never dropped: the txg being written names
//! them, and a free of one in the next txg is deferred.
//!
//! Invariants: an open entry is a whole copy (zero padded to whole blocks)
//! of a block born in the open txg, keyed by its (device, offset); freeing
//! the block drops it; past `limit` bytes the open entries are written out
//! (to bound memory when no commit comes), and an entry leaves only once
//! its device accepted it, so a failed write-out loses nothing the next
//! commit could still write. At most one txg is syncing.

use std::collections::BTreeMap;
use std::sync::Arc;

use aegis_block::DeviceRef;

use crate::error::Result;

/// What the buffer holds at most before it writes itself out: a backstop.
/// The store counts buffered bytes as dirty and commits long before this
/// (at its dirty limit, 64 MiB by default).
pub(crate) const WRITE_BEHIND_LIMIT: u64 = 256 << 20;

/// One buffered copy: the stored bytes (zero padded to whole blocks), the
/// checksum they were written with, and the logical bytes when they differ
/// (a compressed block). Copies of one block share them.
#[derive(Clone)]
pub(crate) struct Buffered {
    pub(crate) stored: Arc<Vec<u8>>,
    pub(crate) checksum: [u8; 32],
    pub(crate) logical: Option<Arc<Vec<u8>>>,
}

impl Buffered {
    fn bytes(&self) -> u64 {
        (self.stored.len() + self.logical.as_ref().map_or(0, |l| l.len())) as u64
    }
}

pub(crate) struct WriteBehind {
    blocks: BTreeMap<(u32, u64), Buffered>,
    bytes: u64,
    /// The closed txg's blocks, being written by the commit's second
    /// stage (shared with it, so it writes without this lock held).
    syncing: Arc<BTreeMap<(u32, u64), Buffered>>,
    syncing_bytes: u64,
    /// Past this many bytes, the pool writes everything out.
    pub(crate) limit: u64,
}

impl Default for WriteBehind {
    fn default() -> Self {
        WriteBehind {
            blocks: BTreeMap::new(),
            bytes: 0,
            syncing: Arc::new(BTreeMap::new()),
            syncing_bytes: 0,
            limit: WRITE_BEHIND_LIMIT,
        }
    }
}

impl WriteBehind {
    pub(crate) fn insert(&mut self, device: u32, offset: u64, b: Buffered) {
        // Copies sharing bytes are counted once each: a bound, not a tally.
        self.bytes += b.bytes();
        if let Some(old) = self.blocks.insert((device, offset), b) {
            // An allocator handing out a buffered address twice.
            debug_assert!(false, "buffered copy {device}:{offset} written twice");
            self.bytes -= old.bytes();
        }
    }

    /// The buffered copy at (device, offset), open or syncing, if any.
    pub(crate) fn get(&self, device: u32, offset: u64) -> Option<Buffered> {
        let key = (device, offset);
        self.blocks
            .get(&key)
            .or_else(|| self.syncing.get(&key))
            .cloned()
    }

    /// The copy at (device, offset) is freed: it need never be written.
    pub(crate) fn drop_copy(&mut self, device: u32, offset: u64) {
        if let Some(old) = self.blocks.remove(&(device, offset)) {
            self.bytes -= old.bytes();
        }
    }

    /// Bytes held, open and syncing (memory the dirty limit counts).
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes + self.syncing_bytes
    }

    /// The open entries passed `limit` (the syncing set is on its way out
    /// already and does not count).
    pub(crate) fn over_limit(&self) -> bool {
        self.bytes > self.limit
    }

    /// Close the txg: its blocks become the syncing set, which the
    /// commit's second stage writes out (`syncing_set`, then `end_sync`).
    pub(crate) fn begin_sync(&mut self) {
        debug_assert!(self.syncing.is_empty(), "two txgs syncing at once");
        self.syncing = Arc::new(std::mem::take(&mut self.blocks));
        self.syncing_bytes = std::mem::take(&mut self.bytes);
    }

    pub(crate) fn syncing_set(&self) -> Arc<BTreeMap<(u32, u64), Buffered>> {
        self.syncing.clone()
    }

    /// The syncing set is on its devices: reads go there from now on.
    pub(crate) fn end_sync(&mut self) {
        self.syncing = Arc::new(BTreeMap::new());
        self.syncing_bytes = 0;
    }

    /// Write every open entry to its device, in device order (sequential
    /// where the allocator placed blocks together). Entries written leave;
    /// on an error the rest stay for the next try.
    pub(crate) fn write_out(&mut self, devices: &[DeviceRef]) -> Result<()> {
        while let Some((&(dev, off), b)) = self.blocks.first_key_value() {
            devices[dev as usize].write_at(&b.stored, off)?;
            self.bytes -= b.bytes();
            self.blocks.pop_first();
        }
        debug_assert_eq!(self.bytes, 0);
        Ok(())
    }
}

/// Write a syncing set to its devices, in device order, with no lock held.
pub(crate) fn write_set(set: &BTreeMap<(u32, u64), Buffered>, devices: &[DeviceRef]) -> Result<()> {
    for (&(dev, off), b) in set {
        devices[dev as usize].write_at(&b.stored, off)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aegis_block::{BlockDevice, MemDevice};

    #[test]
    fn freed_copies_are_never_written_and_the_rest_are() {
        let dev = Arc::new(MemDevice::new(1 << 20));
        let mut wb = WriteBehind::default();
        let buffered = |fill: u8, n: usize| Buffered {
            stored: Arc::new(vec![fill; n]),
            checksum: [fill; 32],
            logical: None,
        };
        wb.insert(0, 4096, buffered(1, 4096));
        wb.insert(0, 8192, buffered(2, 8192));
        assert_eq!(wb.bytes(), 12288);
        assert_eq!(wb.get(0, 4096).unwrap().stored[0], 1);
        wb.drop_copy(0, 8192);
        assert_eq!(wb.bytes(), 4096);
        wb.write_out(&[dev.clone() as DeviceRef]).unwrap();
        assert_eq!(wb.bytes(), 0);
        assert!(wb.get(0, 4096).is_none());
        let mut b = vec![0u8; 4096];
        dev.read_at(&mut b, 4096).unwrap();
        assert_eq!(b, vec![1; 4096]);
        dev.read_at(&mut b, 8192).unwrap();
        assert_eq!(b, vec![0; 4096], "a freed copy never reaches the device");
    }
}
