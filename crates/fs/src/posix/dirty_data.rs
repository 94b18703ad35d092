//! Dirty records: file data written in the open txg, held uncompressed in
//! memory until the commit (ZFS's dirty records). A small write into a
//! record changes the bytes here only; compression, checksums and
//! allocation happen once per record per txg, when the commit (or an
//! operation that needs the tree to be true, see `file_data::settle`)
//! turns the record into a block.
//!
//! Invariants:
//! - A dirty record at `(ino, start)` is the whole current content of that
//!   record: it supersedes whatever the tree holds at that key (the tree's
//!   record stays until the record is settled, so the commit frees the old
//!   block as a rewrite does). Its bytes never reach past the record size.
//! - A dirty record over a preallocated one (`held`, the preallocated
//!   length) is paid for by that record's share of the reservation: it
//!   reserves nothing more, counts in `alloc_bytes` exactly what the tree's
//!   record does (a preallocated record always counts its length in whole
//!   blocks), and its bytes never reach past `held` (a write that would is
//!   settled first and takes the tree's path). Operations that change a
//!   preallocated record's length or drop it (fallocate, punch, truncate,
//!   collapse, insert) settle the dirty record over it first, so the tree's
//!   record under a dirty one never changes.
//! - The inode's `alloc_bytes` counts a dirty record as its `est` bytes
//!   ([`Estimator`]) instead of what the tree's record takes
//!   (`old_alloc`); settling puts the tree's figure back before storing, so
//!   every commit writes exact accounts. Without compression the estimate
//!   is exact; with it, `st_blocks` settles at the commit (as on ZFS and
//!   btrfs).
//! - `reserve_bytes` and `run_bytes` are what the commit may still
//!   allocate for these records beyond any reservation (a whole record and
//!   its leaf entry each; over a preallocated record, the room of its old
//!   block, which stays allocated until the commit replaces it, and no
//!   leaf entry: its leaf is copied at the write, so it is a dirty node);
//!   `share_bytes` is what the commit takes from the reservations. The
//!   space check counts all of it as allocated (the shares only for writes
//!   that may use reservations, since ordinary ones never see them as
//!   free), so ENOSPC goes to the write that takes the space, never to a
//!   commit. The reserved counter moves when the commit stores the block,
//!   as `st_blocks` settles then under compression.
//!
//! Every change made for a [`Tx`](crate::Tx) is recorded as a [`Undo`],
//! so a failed change is rolled back here as it is in the tree.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use aegis_pool::Compression;

use super::file_record::prealloc_reserved;
use super::{FileRecord, ShareRule};

/// One dirty record.
#[derive(Clone, Debug)]
pub(crate) struct DirtyRecord {
    /// The record's bytes from its start (its length is the record's).
    pub bytes: Vec<u8>,
    /// Bytes the tree's record at this key counts in `alloc_bytes`.
    pub old_alloc: u64,
    /// Bytes `alloc_bytes` counts for this record meanwhile.
    pub est: u64,
    /// Data bytes reserved for this record's block at the commit.
    pub reserve: u64,
    /// What these bytes take stored, once asked for; every change of
    /// `bytes` starts a new memo.
    pub stored: StoredMemo,
    /// The length of the preallocated record under this one, which pays
    /// for its block (`None`: an ordinary record, paid by `reserve`).
    pub held: Option<u32>,
}

/// A dirty record's stored size under one compression, computed once per
/// content: `st_blocks` asks for it on every getattr and setattr, and a
/// program such as tar sets three attributes of each file it writes, so
/// compressing the record on each ask was a tenth of an extraction's time.
#[derive(Clone, Debug, Default)]
pub(crate) struct StoredMemo(OnceLock<(Compression, u64)>);

impl DirtyRecord {
    /// Bytes this record's block will take stored at `start`, whole
    /// blocks of `block_size`, compressed with `compression` (0 for a hole
    /// or an inline record), as the commit will store it.
    pub(crate) fn stored_bytes(
        &self,
        start: u64,
        inline_max: usize,
        compression: Compression,
        block_size: u64,
    ) -> u64 {
        if self.held.is_some() {
            // Data and share together stay the record's whole blocks.
            return self.old_alloc;
        }
        if let Some(&(c, n)) = self.stored.0.get() {
            if c == compression {
                return n;
            }
        }
        let n = block_bytes(start, &self.bytes, inline_max)
            .map_or(0, |b| stored_block_bytes(b, compression, block_size));
        // A memo for another compression stays: the next ask recomputes.
        let _ = self.stored.0.set((compression, n));
        n
    }

    /// The reservation this record, over a preallocated one, leaves once
    /// stored: the preallocated length in whole blocks less its block's,
    /// and the tree share while it holds no data (as
    /// [`FileRecord::reserved`] will count the stored record).
    pub(crate) fn settled_share(&self, rule: ShareRule, compression: Compression) -> u64 {
        let Some(len) = self.held else {
            return 0;
        };
        // Stored as `file_data::store` stores it: all zeroes keep no block.
        let data = match kept(&self.bytes) {
            [] => None,
            b => Some(stored_block_bytes(b, compression, rule.block_size as u64)),
        };
        prealloc_reserved(len, data, rule)
    }

    /// What `alloc_bytes` counts for this record's bytes (see
    /// [`Estimator`]); over a preallocated record, the tree's figure.
    pub(crate) fn estimate(&self, start: u64, est: Estimator) -> u64 {
        match self.held {
            Some(_) => self.old_alloc,
            None => est.of(start, &self.bytes),
        }
    }

    /// The share of the preallocated record under this one: what its
    /// block takes from the reservation at the commit (besides `reserve`).
    fn share(&self) -> u64 {
        match self.held {
            Some(_) => self.old_alloc.saturating_sub(self.reserve),
            None => 0,
        }
    }

    /// How far this record reads as data (SEEK_DATA, SEEK_HOLE): its
    /// bytes, or a preallocated record's whole length.
    pub(crate) fn span_len(&self) -> u64 {
        (self.bytes.len() as u64).max(self.held.map_or(0, u64::from))
    }
}

/// What `alloc_bytes` counts for a dirty record: what storing it
/// uncompressed would take, as `file_data::store` stores it (trailing
/// zeroes trimmed, a small record 0 inline, all zeroes a hole).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Estimator {
    pub block_size: u32,
    pub inline_max: usize,
}

impl Estimator {
    pub(crate) fn of(&self, start: u64, bytes: &[u8]) -> u64 {
        block_bytes(start, bytes, self.inline_max).map_or(0, |b| {
            (b.len() as u64).div_ceil(self.block_size as u64) * self.block_size as u64
        })
    }
}

/// Bytes a data block of `b` takes stored with `compression`: whole
/// blocks of its compressed length, or of its length when compression
/// does not shrink it (as the pool stores it).
fn stored_block_bytes(b: &[u8], compression: Compression, block_size: u64) -> u64 {
    let len = compression.compress(b).map_or(b.len(), |z| z.len());
    (len as u64).div_ceil(block_size) * block_size
}

/// A record's bytes as they are stored: up to the last non-zero byte.
pub(crate) fn kept(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)]
}

/// What of a (not preallocated) record's bytes at `start` becomes a data
/// block: none for all zeroes (a hole) or for a record 0 of at most
/// `inline_max` bytes (stored in the tree), as `file_data::store` decides.
pub(crate) fn block_bytes(start: u64, bytes: &[u8], inline_max: usize) -> Option<&[u8]> {
    let b = kept(bytes);
    let hole_or_inline = b.is_empty() || (start == 0 && b.len() <= inline_max);
    (!hole_or_inline).then_some(b)
}

/// Leaf bytes the commit may add for one dirty record.
fn run_entry() -> u64 {
    FileRecord::run_bytes(1, false)
}

/// The dirty records of one dataset.
#[derive(Debug, Default)]
pub struct DirtyData {
    records: BTreeMap<(u64, u64), DirtyRecord>,
    /// Sum of the records' lengths (memory held, for the dirty limit).
    bytes: u64,
    reserve_bytes: u64,
    /// The shares of the preallocated records under dirty ones: room the
    /// commit takes from the reservation (counted for writes that may
    /// use it, which would otherwise see it as free).
    share_bytes: u64,
    /// Records not over a preallocated one: each may add a leaf entry at
    /// the commit (a preallocated record's share holds its own).
    runs: u64,
}

/// How to take back one change of a [`DirtyData`].
#[derive(Debug)]
pub(crate) enum Undo {
    /// Put `prev` back at `key` (`None`: the key was not dirty).
    Restore {
        key: (u64, u64),
        prev: Option<DirtyRecord>,
    },
    /// Bytes `[at, at + old.len())` were `old`, the length `old_len` and
    /// the estimate `old_est`.
    Patch {
        key: (u64, u64),
        at: usize,
        old: Vec<u8>,
        old_len: usize,
        old_est: u64,
    },
}

/// No dirty records (a view of a dataset that has none).
pub(crate) static NONE: DirtyData = DirtyData {
    records: BTreeMap::new(),
    bytes: 0,
    reserve_bytes: 0,
    share_bytes: 0,
    runs: 0,
};

impl DirtyData {
    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
    /// Dirty records (each may replace one block at the commit).
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }
    /// Bytes held in memory.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
    /// Data bytes the commit may allocate for these records.
    pub(crate) fn reserve_bytes(&self) -> u64 {
        self.reserve_bytes
    }
    /// Reserved bytes the commit takes for these records' blocks.
    pub(crate) fn share_bytes(&self) -> u64 {
        self.share_bytes
    }
    /// Leaf bytes the commit may add for these records.
    pub(crate) fn run_bytes(&self) -> u64 {
        self.runs * run_entry()
    }
    pub(crate) fn get(&self, ino: u64, start: u64) -> Option<&DirtyRecord> {
        self.records.get(&(ino, start))
    }

    /// Dirty records of `ino` with a start in `[lo, hi)`, in order (a
    /// record's start is below the largest file size, so `u64::MAX` as
    /// `hi` means "to the end").
    pub(crate) fn range(
        &self,
        ino: u64,
        lo: u64,
        hi: u64,
    ) -> impl Iterator<Item = (u64, &DirtyRecord)> + '_ {
        self.records
            .range((ino, lo)..(ino, hi.max(lo)))
            .map(|(&(_, s), r)| (s, r))
    }

    /// Every dirty record, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = ((u64, u64), &DirtyRecord)> + '_ {
        self.records.iter().map(|(&k, r)| (k, r))
    }

    /// Starts of `ino`'s dirty records in `[lo, hi)`.
    pub(crate) fn starts(&self, ino: u64, lo: u64, hi: u64) -> Vec<u64> {
        self.range(ino, lo, hi).map(|(s, _)| s).collect()
    }

    /// The inodes with dirty records, in order.
    pub(crate) fn inodes(&self) -> Vec<u64> {
        let mut out: Vec<u64> = Vec::new();
        for &(ino, _) in self.records.keys() {
            if out.last() != Some(&ino) {
                out.push(ino);
            }
        }
        out
    }

    /// Set `key` to `rec` (or remove it), returning what was there.
    fn put(&mut self, key: (u64, u64), rec: Option<DirtyRecord>) -> Option<DirtyRecord> {
        if let Some(r) = &rec {
            self.bytes += r.bytes.len() as u64;
            self.reserve_bytes += r.reserve;
            self.runs += u64::from(r.held.is_none());
            self.share_bytes += r.share();
        }
        let prev = match rec {
            Some(r) => self.records.insert(key, r),
            None => self.records.remove(&key),
        };
        if let Some(p) = &prev {
            self.bytes -= p.bytes.len() as u64;
            self.reserve_bytes -= p.reserve;
            self.runs -= u64::from(p.held.is_none());
            self.share_bytes -= p.share();
        }
        prev
    }

    /// Make `key` dirty with `rec` (it was not); `undo` takes it back.
    pub(crate) fn insert(&mut self, key: (u64, u64), rec: DirtyRecord, undo: &mut Vec<Undo>) {
        let prev = self.put(key, Some(rec));
        undo.push(Undo::Restore { key, prev });
    }

    /// Take `key` out with no undo yet: the caller reads it and then hands
    /// it to [`DirtyData::removed`], which records the undo without a copy.
    pub(crate) fn take(&mut self, key: (u64, u64)) -> Option<DirtyRecord> {
        self.put(key, None)
    }

    /// `rec`, taken out of `key` by [`DirtyData::take`], stays out; `undo`
    /// puts it back.
    pub(crate) fn removed(key: (u64, u64), rec: DirtyRecord, undo: &mut Vec<Undo>) {
        undo.push(Undo::Restore {
            key,
            prev: Some(rec),
        });
    }

    /// Copy `src` into `key`'s bytes at `at`, growing them with zeroes as
    /// needed; `undo` restores the bytes it covered and the old length.
    /// Returns the estimate before and after.
    pub(crate) fn patch(
        &mut self,
        key: (u64, u64),
        at: usize,
        src: &[u8],
        est: Estimator,
        undo: &mut Vec<Undo>,
    ) -> (u64, u64) {
        let Some(r) = self.records.get_mut(&key) else {
            return (0, 0);
        };
        let old_est = r.est;
        let old_len = r.bytes.len();
        let end = at + src.len();
        let kept = old_len.min(end).saturating_sub(at);
        let old = r
            .bytes
            .get(at..at + kept)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        if r.bytes.len() < end {
            r.bytes.resize(end, 0);
        }
        r.bytes[at..end].copy_from_slice(src);
        r.est = r.estimate(key.1, est);
        r.stored = StoredMemo::default();
        self.bytes += r.bytes.len() as u64 - old_len as u64;
        let new_est = r.est;
        undo.push(Undo::Patch {
            key,
            at,
            old,
            old_len,
            old_est,
        });
        (old_est, new_est)
    }

    /// Cut `key`'s bytes to `len` (zero-filling `[lo, hi)` first when
    /// given); `undo` restores the whole record. Returns the estimate
    /// before and after.
    pub(crate) fn reshape(
        &mut self,
        key: (u64, u64),
        (zero, len): (Option<(usize, usize)>, usize),
        est: Estimator,
        undo: &mut Vec<Undo>,
    ) -> (u64, u64) {
        let Some(r) = self.records.get(&key) else {
            return (0, 0);
        };
        let mut new = r.clone();
        if let Some((lo, hi)) = zero {
            let hi = hi.min(new.bytes.len());
            if lo < hi {
                new.bytes[lo..hi].fill(0);
            }
        }
        new.bytes.truncate(len);
        new.est = new.estimate(key.1, est);
        new.stored = StoredMemo::default();
        let after = new.est;
        let prev = self.put(key, Some(new));
        let before = prev.as_ref().map_or(0, |p| p.est);
        undo.push(Undo::Restore { key, prev });
        (before, after)
    }

    /// Take back `undo`'s changes, newest first.
    pub(crate) fn roll_back(&mut self, undo: Vec<Undo>) {
        for u in undo.into_iter().rev() {
            match u {
                Undo::Restore { key, prev } => {
                    self.put(key, prev);
                }
                Undo::Patch {
                    key,
                    at,
                    old,
                    old_len,
                    old_est,
                } => {
                    if let Some(r) = self.records.get_mut(&key) {
                        let before = r.bytes.len() as u64;
                        r.bytes[at..at + old.len()].copy_from_slice(&old);
                        r.bytes.truncate(old_len);
                        r.est = old_est;
                        r.stored = StoredMemo::default();
                        self.bytes = self.bytes - before + old_len as u64;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const EST: Estimator = Estimator {
        block_size: 4096,
        inline_max: 3,
    };

    fn rec(bytes: &[u8]) -> DirtyRecord {
        DirtyRecord {
            bytes: bytes.to_vec(),
            old_alloc: 0,
            est: EST.of(0, bytes),
            reserve: 4096,
            stored: StoredMemo::default(),
            held: None,
        }
    }

    #[test]
    fn estimates_follow_how_records_are_stored() {
        assert_eq!(EST.of(0, b"abc"), 0, "inline");
        assert_eq!(EST.of(0, b"abcd"), 4096);
        assert_eq!(EST.of(8192, b"a"), 4096);
        assert_eq!(EST.of(8192, &[0; 9000]), 0, "all zeroes: a hole");
        let mut b = vec![1u8; 4097];
        b.extend([0; 5000]);
        assert_eq!(EST.of(8192, &b), 8192, "trailing zeroes trimmed");
    }

    #[test]
    fn undo_takes_every_change_back() {
        let mut d = DirtyData::default();
        let mut undo = Vec::new();
        d.insert((5, 0), rec(b"hello"), &mut undo);
        assert_eq!(d.patch((5, 0), 3, b"p me", EST, &mut undo), (4096, 4096));
        assert_eq!(d.get(5, 0).unwrap().bytes, b"help me");
        assert_eq!(d.bytes(), 7);
        d.roll_back(undo);
        assert!(d.is_empty());
        assert_eq!((d.bytes(), d.reserve_bytes()), (0, 0));

        let mut undo = Vec::new();
        d.insert((5, 0), rec(b"hello"), &mut undo);
        let mut undo = Vec::new();
        d.patch((5, 0), 1, b"EL", EST, &mut undo);
        assert_eq!(
            d.reshape((5, 0), (Some((0, 1)), 2), EST, &mut undo),
            (4096, 0)
        );
        assert_eq!(d.get(5, 0).unwrap().bytes, b"\0E");
        let taken = d.take((5, 0)).unwrap();
        DirtyData::removed((5, 0), taken, &mut undo);
        assert!(d.is_empty());
        d.roll_back(undo);
        assert_eq!(d.get(5, 0).unwrap().bytes, b"hello");
        assert_eq!((d.bytes(), d.reserve_bytes()), (5, 4096));
    }

    #[test]
    fn the_stored_size_follows_every_change_of_the_bytes() {
        let lz4 = Compression::Lz4;
        let mut d = DirtyData::default();
        let mut undo = Vec::new();
        d.insert((5, 4096), rec(&[7u8; 9000]), &mut undo);
        let stored = |d: &DirtyData| d.get(5, 4096).unwrap().stored_bytes(4096, 3, lz4, 4096);
        assert_eq!(stored(&d), 4096, "9000 equal bytes compress into one block");
        assert_eq!(stored(&d), 4096, "asked again: the memo");
        let none = d
            .get(5, 4096)
            .unwrap()
            .stored_bytes(4096, 3, Compression::None, 4096);
        assert_eq!(none, 12288, "another compression is computed, not the memo");
        let mut noise = vec![0u8; 9000];
        rand::RngCore::fill_bytes(&mut rand::rngs::StdRng::seed_from_u64(7), &mut noise);
        let mut undo = Vec::new();
        d.patch((5, 4096), 0, &noise, EST, &mut undo);
        assert_eq!(stored(&d), 12288, "patched: incompressible now");
        d.roll_back(undo);
        assert_eq!(stored(&d), 4096, "rolled back: compressible again");
        let mut undo = Vec::new();
        d.reshape((5, 4096), (None, 0), EST, &mut undo);
        assert_eq!(stored(&d), 0, "cut to nothing: a hole");
    }

    #[test]
    fn ranges_stay_inside_one_inode() {
        let mut d = DirtyData::default();
        let mut undo = Vec::new();
        for (ino, start) in [(4, 0), (5, 0), (5, 128), (5, 1 << 40), (6, 0)] {
            d.insert((ino, start), rec(b"x"), &mut undo);
        }
        assert_eq!(d.starts(5, 0, u64::MAX), vec![0, 128, 1 << 40]);
        assert_eq!(d.starts(5, 1, 128), Vec::<u64>::new());
        assert_eq!(d.starts(5, 0, 128), vec![0]);
        assert_eq!(d.inodes(), vec![4, 5, 6]);
        assert_eq!(d.run_bytes(), 5 * run_entry());
    }
}
