//! The transaction: one change of a dataset, applied whole or not at all.
//!
//! [`Store::transact`] runs a closure on a [`Tx`] inside the open txg,
//! under the trees lock. Before it starts, the change's size (tree
//! operations and data bytes) is checked against the free space, and when
//! space is short the store commits (at most `DEFER_TXGS + 2` times) to
//! release deferred frees: the one ENOSPC retry of the engine. The `Tx`
//! covers the whole change: the tree undo, the data blocks it wrote (freed
//! again if it fails), the blocks it replaced (freed only once it stands),
//! the dataset meta record, and its intent log records (appended only once
//! it stands, under the same lock, so no commit can fall between a change
//! and its record).
//!
//! Reads go through [`ObjectRead`], which both a [`Tx`] and a read-only
//! [`View`] implement; the typed POSIX operations themselves live in
//! `posix/` (directories, file data, xattr chunks).

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aegis_btree::Tree;
use aegis_pool::{AllocClass, BlockPtr, EncodedBlock, Pool, PoolError};

use crate::dead_list::{entry_bytes, is_held};
use crate::error::{FsError, Result};
use crate::intent_log::{log_policy_of, IntentLog, LogPolicy, LogRec};
use crate::posix::dirty_data::{DirtyData, Undo as DirtyUndo};
use crate::posix::quota::{account_charges, Charge, Charges, Deltas};
use crate::posix::read_ahead::ReadAhead;
use crate::posix::{directory, file_data, keys, xattr, DatasetMeta, Found, InodeRecord};
use crate::posix::{DirentValue, FEATURE_QUOTA};
use crate::store::{Store, Trees};

/// What a change may need, for the space check made before it starts.
#[derive(Clone, Copy, Debug)]
pub struct TxSize {
    /// Tree operations (inserts or removes), each of which may dirty a
    /// path and split it.
    pub ops: u64,
    /// Leaf bytes of the entries it writes in one range of keys, such as
    /// the data records of one file (counted apart from `ops`: neighbours
    /// share leaves and paths); see [`FileRecord::run_bytes`].
    ///
    /// [`FileRecord::run_bytes`]: crate::posix::FileRecord::run_bytes
    pub run_bytes: u64,
    /// Bytes of new data blocks it may write.
    pub data_bytes: u64,
    /// `Reserved` for changes that free space (deletes), which must work
    /// on a full pool, and for writes wholly inside preallocated records,
    /// which the reservations pay for; `Normal` changes leave every
    /// reservation alone.
    pub class: AllocClass,
}

impl TxSize {
    pub fn ops(ops: u64, class: AllocClass) -> TxSize {
        TxSize {
            ops,
            run_bytes: 0,
            data_bytes: 0,
            class,
        }
    }
}

pub(crate) mod sealed {
    /// The tree and pool a reader works on; only this crate implements it.
    pub trait Parts {
        fn tree(&self) -> &aegis_btree::Tree;
        fn pool(&self) -> &aegis_pool::Pool;
        fn dirty(&self) -> &crate::posix::dirty_data::DirtyData;
        /// The dataset and its read-ahead, for readers that have one.
        fn ahead(&self) -> Option<(u64, &crate::posix::read_ahead::ReadAhead)> {
            None
        }
    }
}

/// Typed reads of a dataset's objects, for a [`View`] and a [`Tx`] alike.
/// The POSIX reads (entries, file data, xattrs) are provided methods
/// defined beside their objects in `posix/`.
pub trait ObjectRead: sealed::Parts {
    /// The inode record of `ino`; [`FsError::NoInode`] if there is none.
    fn inode(&self, ino: u64) -> Result<InodeRecord> {
        directory::read_inode(self.tree(), ino)
    }

    /// Whether a chain head is recorded (a log a read-only mount ignores).
    fn has_log_head(&self) -> Result<bool> {
        Ok(self.tree().get(&keys::log_head())?.is_some())
    }

    /// Inodes listed as orphans (no name left, kept while open).
    fn orphans(&self) -> Result<Vec<u64>> {
        let lo = keys::item_start(keys::META_OBJECT, keys::ORPHAN);
        let hi = keys::item_end(keys::META_OBJECT, keys::ORPHAN);
        Ok(scan(self.tree(), &lo, &hi)?
            .iter()
            .filter_map(|(k, _)| keys::parse_orphan(k))
            .collect())
    }

    /// Entry `name` of directory `dir`.
    fn find_entry(&self, dir: u64, name: &[u8]) -> Result<Option<Found>> {
        directory::find(self.tree(), dir, name)
    }

    /// Entries of `dir` with a cookie above `after`, at most `max`, in
    /// cookie order (readdir).
    fn entries_after(&self, dir: u64, after: u64, max: usize) -> Result<Vec<(u64, DirentValue)>> {
        directory::list_after(self.tree(), dir, after, max)
    }

    /// Is `ancestor` equal to `ino` or above it? At most `limit` steps up,
    /// so a damaged tree cannot make it loop.
    fn is_ancestor(&self, ancestor: u64, ino: u64, limit: u64) -> Result<bool> {
        directory::is_ancestor(self.tree(), ancestor, ino, limit)
    }

    /// `[offset, offset + size)` of file `ino` (record `r`), holes as
    /// zeroes, cut at the end of file. `dataset_rs` is the dataset's
    /// record size, used when `r` names none of its own.
    fn read_file(
        &self,
        ino: u64,
        r: &InodeRecord,
        dataset_rs: u64,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>> {
        let out = file_data::read(
            self.tree(),
            self.pool(),
            self.dirty(),
            ino,
            r,
            dataset_rs,
            offset,
            size,
        )?;
        if let Some((ds, ahead)) = self.ahead() {
            let at = (ds, ino, dataset_rs);
            file_data::read_ahead(self.tree(), self.dirty(), ahead, at, r, offset, size as u64)?;
        }
        Ok(out)
    }

    /// Bytes of new reservation preallocating `[lo, hi)` of file `ino`
    /// would hold in a dataset with meta record `meta`, for the space
    /// check of a fallocate; `zeroing` counts records with data as holes
    /// (ZERO_RANGE).
    fn prealloc_need(
        &self,
        meta: &DatasetMeta,
        ino: u64,
        (lo, hi): (u64, u64),
        zeroing: bool,
    ) -> Result<u64> {
        file_data::prealloc_need(self.tree(), self.pool(), meta, ino, (lo, hi), zeroing)
    }

    /// The part of a write of `[lo, hi)` of file `ino` (the file's record size `rs`)
    /// that preallocated records pay for, out of [`write_size_bytes`]: the
    /// rest must come from free space.
    ///
    /// [`write_size_bytes`]: crate::posix::write_size_bytes
    fn prealloc_cover(&self, ino: u64, rs: u64, lo: u64, hi: u64) -> Result<u64> {
        file_data::prealloc_cover(self.tree(), ino, rs, lo, hi)
    }

    /// The bytes `st_blocks` counts for `ino` (record `r`): its
    /// `alloc_bytes` with the data written since the last commit counted
    /// as the commit will store it.
    fn stored_alloc(&self, ino: u64, r: &InodeRecord) -> Result<u64> {
        file_data::stored_alloc(self.tree(), self.pool(), self.dirty(), ino, r)
    }

    /// The dataset's reserved bytes as the commit of its dirty records
    /// will leave them.
    fn settled_reserved(&self) -> Result<u64> {
        file_data::settled_reserved(self.tree(), self.pool(), self.dirty())
    }

    /// `(offset, length)` of each record the tree holds for file `ino`,
    /// in order (dirty records not yet stored are not listed): for
    /// tools and tests that look at how a file is laid out.
    fn file_records(&self, ino: u64) -> Result<Vec<(u64, u32)>> {
        Ok(file_data::records_in(self.tree(), ino, 0, u64::MAX)?
            .into_iter()
            .map(|(start, rec)| (start, rec.len()))
            .collect())
    }

    /// Number of data records of a file (to size its delete).
    fn record_count(&self, ino: u64) -> Result<u64> {
        file_data::record_count(self.tree(), self.dirty(), ino)
    }

    /// SEEK_DATA; `None` when no data lies at or after `offset`.
    fn seek_data(
        &self,
        ino: u64,
        r: &InodeRecord,
        dataset_rs: u64,
        offset: u64,
    ) -> Result<Option<u64>> {
        file_data::seek_data((self.tree(), self.dirty()), ino, r, dataset_rs, offset)
    }

    /// SEEK_HOLE; `None` at or past the end of file.
    fn seek_hole(
        &self,
        ino: u64,
        r: &InodeRecord,
        dataset_rs: u64,
        offset: u64,
    ) -> Result<Option<u64>> {
        file_data::seek_hole((self.tree(), self.dirty()), ino, r, dataset_rs, offset)
    }

    fn xattr(&self, ino: u64, name: &[u8]) -> Result<Option<Vec<u8>>> {
        xattr::get(self.tree(), ino, name)
    }

    /// Names of all xattrs of `ino`, sorted.
    fn xattr_names(&self, ino: u64) -> Result<Vec<Vec<u8>>> {
        xattr::names(self.tree(), ino)
    }

    fn symlink_target(&self, ino: u64) -> Result<Vec<u8>> {
        xattr::read_symlink(self.tree(), ino)
    }

    /// `ino`'s intent log policy (`full` unless set).
    fn log_policy(&self, ino: u64) -> LogPolicy {
        log_policy_of(self.tree(), ino)
    }

    /// The dataset's meta record; `None` if it holds no filesystem.
    fn meta(&self) -> Result<Option<DatasetMeta>> {
        match self.tree().get(&keys::meta())? {
            Some(v) => Ok(Some(DatasetMeta::decode(&v)?)),
            None => Ok(None),
        }
    }
}

impl<T: sealed::Parts> ObjectRead for T {}

/// A read-only look at one dataset's objects.
pub struct View<'a> {
    tree: &'a Tree,
    pool: &'a Pool,
    dirty: &'a DirtyData,
    ds: u64,
    ahead: &'a ReadAhead,
}

impl sealed::Parts for View<'_> {
    fn tree(&self) -> &Tree {
        self.tree
    }
    fn pool(&self) -> &Pool {
        self.pool
    }
    fn dirty(&self) -> &DirtyData {
        self.dirty
    }
    fn ahead(&self) -> Option<(u64, &ReadAhead)> {
        Some((self.ds, self.ahead))
    }
}

/// A change whose [`Tx`] is gone: what standing or undoing it needs.
pub(crate) struct Detached {
    /// Usage changes, in a dataset with quotas.
    pub(crate) quota: Deltas,
    to_free: Vec<BlockPtr>,
    shared: Vec<BlockPtr>,
    written: Vec<BlockPtr>,
    dirty_undo: Vec<DirtyUndo>,
    records: Vec<LogRec>,
    unlogged: bool,
    /// The meta record's reserved counter before and after.
    reserved: (u64, u64),
}

/// One change in progress. See the [module documentation](self).
pub struct Tx<'a> {
    pub(crate) tree: &'a mut Tree,
    pool: &'a Arc<Pool>,
    log: Option<&'a IntentLog>,
    /// The dataset's meta record; written back if `meta_dirty`.
    pub meta: DatasetMeta,
    pub meta_dirty: bool,
    /// The change's time, ns since the epoch.
    pub now: i64,
    /// Blocks written by this change: freed again if it fails.
    pub(crate) written: Vec<BlockPtr>,
    /// Blocks this change stops using: freed only if it succeeds.
    pub(crate) to_free: Vec<BlockPtr>,
    /// Pointers this change copied (reflinks): their blocks gain a
    /// reference in the clone table only if it succeeds.
    pub(crate) shared: Vec<BlockPtr>,
    /// The dataset's dirty records, and how to take this change's
    /// changes of them back.
    pub(crate) dirty: &'a mut DirtyData,
    pub(crate) dirty_undo: Vec<DirtyUndo>,
    /// Write file data as blocks at once instead of dirty records.
    pub(crate) write_through: bool,
    /// Dirty records the commit encoded beforehand, by key, taken as
    /// they are settled (`posix/settle_encode.rs`).
    pub(crate) encoded: HashMap<(u64, u64), EncodedBlock>,
    records: Vec<LogRec>,
    unlogged: bool,
    /// The meta record's reserved counter when the change began.
    reserved_before: u64,
    /// The dataset keeps quota usage: inode writes compute deltas.
    quota_on: bool,
    pub(crate) quota: Deltas,
    /// What each inode this change read or wrote is charged for now, so
    /// a quota delta needs no second read of the record.
    charges: std::cell::RefCell<Charges>,
}

impl sealed::Parts for Tx<'_> {
    fn tree(&self) -> &Tree {
        self.tree
    }
    fn pool(&self) -> &Pool {
        self.pool
    }
    fn dirty(&self) -> &DirtyData {
        self.dirty
    }
}

impl Tx<'_> {
    pub(crate) fn pool_ref(&self) -> &Arc<Pool> {
        self.pool
    }

    pub fn put_inode(&mut self, ino: u64, rec: &InodeRecord) -> Result<()> {
        if self.quota_on {
            let old = self.charge_now(ino)?;
            let new = Some(Charge::of(rec));
            account_charges(&mut self.quota, old, new);
            self.remember_charge(ino, new);
        }
        self.tree.insert(&keys::inode(ino), &rec.encode())?;
        Ok(())
    }

    /// The inode record of `ino` (as [`ObjectRead::inode`]), noting its
    /// charge in a dataset with quotas, so the write that usually follows
    /// need not read it again.
    pub fn inode(&self, ino: u64) -> Result<InodeRecord> {
        let r = directory::read_inode(self.tree, ino)?;
        if self.quota_on {
            self.charges
                .borrow_mut()
                .note(ino, Some(Charge::of(&r)), true);
        }
        Ok(r)
    }

    /// What `ino` is charged for in the tree now (`None`: no record).
    fn charge_now(&self, ino: u64) -> Result<Option<Charge>> {
        if let Some(c) = self.charges.borrow().get(ino) {
            return Ok(c);
        }
        match directory::read_inode(self.tree, ino) {
            Ok(r) => Ok(Some(Charge::of(&r))),
            Err(FsError::NoInode(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn remember_charge(&self, ino: u64, c: Option<Charge>) {
        self.charges.borrow_mut().note(ino, c, false);
    }

    /// Record `rec` in the intent log once this change stands.
    pub fn log(&mut self, rec: LogRec) {
        self.records.push(rec);
    }

    /// This change did something it does not record (a write too large
    /// for the log): the log is spent until the next commit.
    pub fn mark_unlogged(&mut self) {
        self.unlogged = true;
    }

    /// Whether the log would take a write record of `len` data bytes, so
    /// its data is worth copying at all.
    pub fn log_takes(&self, len: usize) -> bool {
        self.log.is_some_and(|l| l.takes(len))
    }

    /// List `ino`, which lost its last name, as an orphan: a crash cannot
    /// leak it, mount frees it.
    pub fn add_orphan(&mut self, ino: u64) -> Result<()> {
        self.tree.insert(&keys::orphan(ino), &[])?;
        Ok(())
    }

    /// `ino` has a name again (an O_TMPFILE file linked): no orphan now.
    pub fn remove_orphan(&mut self, ino: u64) -> Result<()> {
        self.tree.remove(&keys::orphan(ino))?;
        Ok(())
    }

    /// Delete orphan `ino` whole: its data blocks, every item of the
    /// object, its orphan key, and one from the inode count.
    pub fn remove_object(&mut self, ino: u64) -> Result<()> {
        if self.quota_on {
            let old = self.charge_now(ino)?;
            account_charges(&mut self.quota, old, None);
            self.remember_charge(ino, None);
        }
        self.free_file_data(ino)?;
        let items = scan(self.tree, &keys::item_start(ino, 0), &keys::object_end(ino))?;
        for (k, _) in items {
            self.tree.remove(&k)?;
        }
        self.tree.remove(&keys::orphan(ino))?;
        self.meta.inodes = self.meta.inodes.saturating_sub(1);
        self.meta_dirty = true;
        Ok(())
    }
}

/// All items in `[lo, hi)`.
pub(crate) fn scan(tree: &Tree, lo: &[u8], hi: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    for item in tree.range(Bound::Included(lo), Bound::Excluded(hi)) {
        let (k, v) = item?;
        out.push((k, v));
    }
    Ok(out)
}

fn now_ns() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

/// Dataset `ds`'s meta record, from its tree.
pub(crate) fn read_meta(tree: &Tree, ds: u64) -> Result<DatasetMeta> {
    match tree.get(&keys::meta())? {
        Some(v) => DatasetMeta::decode(&v),
        None => Err(FsError::Invalid(format!(
            "dataset {ds} holds no filesystem (no meta record)"
        ))),
    }
}

impl Store {
    /// Read dataset `ds`'s objects.
    pub fn view<R, E: From<FsError>>(
        &self,
        ds: u64,
        f: impl FnOnce(&View<'_>) -> std::result::Result<R, E>,
    ) -> std::result::Result<R, E> {
        let t = self.trees.read();
        let tree = t.tree(ds).ok_or(FsError::NoDataset(ds))?;
        f(&View {
            tree,
            pool: &self.pool,
            dirty: t.dirty.get(&ds).unwrap_or(&crate::posix::dirty_data::NONE),
            ds,
            ahead: &self.ahead,
        })
    }

    /// Apply one change to dataset `ds` (see the [module
    /// documentation](self)). The dataset's meta record is read from its
    /// tree under the lock, so the tree holds its only copy and callers
    /// need no lock of their own to keep one.
    pub fn transact<R, E: From<FsError>>(
        &self,
        ds: u64,
        size: TxSize,
        f: impl FnOnce(&mut Tx<'_>) -> std::result::Result<R, E>,
    ) -> std::result::Result<R, E> {
        if self.pool.is_read_only() {
            return Err(FsError::from(PoolError::ReadOnly).into());
        }
        let mut t = self.reserve_tree(ds, size)?;
        let trees = &mut *t;
        let tree = trees.datasets.get_mut(&ds).ok_or(FsError::NoDataset(ds))?;
        let meta = read_meta(tree, ds)?;
        let log = trees.logs.get(&ds).map(|l| &**l);
        tree.begin_undo();
        let dirty = trees.dirty.entry(ds).or_default();
        let mut tx = Tx::new(tree, &self.pool, log, dirty, meta);
        tx.write_through = self.write_through.load(Ordering::Relaxed);
        let r = match f(&mut tx) {
            Ok(r) => tx.write_meta().map(|()| r).map_err(E::from),
            Err(e) => Err(e),
        };
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                self.undo(tx);
                return Err(e);
            }
        };
        // Blocks a snapshot holds become dead list entries, which the
        // space check before the change could not count: a change that
        // frees many of them on a full pool is refused whole here.
        let held = match trees.records.get(&ds) {
            Some(rec) => tx.to_free.iter().filter(|bp| is_held(rec, bp)).count(),
            None => 0,
        };
        let undo = tx.detach();
        if let Err(e) = self.quota_allows(trees, ds, &undo.quota) {
            self.undo_detached(trees, ds, undo);
            return Err(e.into());
        }
        if held > 0 {
            let extra = TxSize {
                run_bytes: held as u64 * entry_bytes(3),
                ..TxSize::ops(0, size.class)
            };
            if let Err(e) = self.check_space(trees, ds, extra) {
                self.undo_detached(trees, ds, undo);
                return Err(e.into());
            }
        }
        self.stand(trees, ds, undo).map_err(E::from)?;
        let dirty = t.dirty_bytes(self.pool.block_size());
        drop(t);
        self.after_change(dirty)?;
        Ok(r)
    }

    /// A change that stood: its tree undo closes, its log records are
    /// appended, its reservation published, and the blocks it stopped
    /// using released (freed, or kept for a snapshot's dead list).
    fn stand(&self, trees: &mut Trees, ds: u64, undo: Detached) -> Result<()> {
        let tree = trees.datasets.get_mut(&ds).ok_or(FsError::NoDataset(ds))?;
        tree.commit_undo();
        if let Some(log) = trees.logs.get(&ds) {
            let tree = &*tree;
            let policy = |ino| log_policy_of(tree, ino);
            log.record(undo.records, undo.unlogged, policy);
        }
        self.publish_reserved(ds, undo.reserved.0, undo.reserved.1);
        trees.apply_quota(ds, &undo.quota)?;
        // A reflinked block counts its new pointer before any release of
        // the change can take its old one's.
        let bs = self.pool.block_size();
        for bp in &undo.shared {
            trees.add_reference(bp, bs)?;
        }
        // Old blocks are released only once the change stands.
        trees.release(&self.pool, ds, &undo.to_free)
    }

    /// Undo a change whose `Tx` is gone (see [`Tx::detach`]).
    fn undo_detached(&self, trees: &mut Trees, ds: u64, undo: Detached) {
        if let Some(tree) = trees.datasets.get_mut(&ds) {
            self.roll_back(tree);
        }
        if let Some(d) = trees.dirty.get_mut(&ds) {
            d.roll_back(undo.dirty_undo);
        }
        self.free_written(&undo.written);
    }

    /// A failed change is undone whole: no half of it may reach the next
    /// commit, and the blocks it wrote belong to nothing.
    pub(crate) fn undo(&self, tx: Tx<'_>) {
        self.roll_back(tx.tree);
        tx.dirty.roll_back(tx.dirty_undo);
        self.free_written(&tx.written);
    }

    /// The blocks an undone change wrote belong to nothing.
    fn free_written(&self, written: &[BlockPtr]) {
        for bp in written {
            if let Err(f) = self.pool.free(bp) {
                tracing::warn!(error = %f, "could not free a block of an undone change");
            }
        }
    }
}

impl<'a> Tx<'a> {
    /// A change of `tree` (whose undo log the caller opened) in a dataset
    /// whose meta record is `meta`.
    pub(crate) fn new(
        tree: &'a mut Tree,
        pool: &'a Arc<Pool>,
        log: Option<&'a IntentLog>,
        dirty: &'a mut DirtyData,
        meta: DatasetMeta,
    ) -> Tx<'a> {
        let reserved_before = meta.reserved;
        let quota_on = meta.features & FEATURE_QUOTA != 0;
        Tx {
            quota_on,
            quota: Deltas::new(),
            charges: Default::default(),
            tree,
            pool,
            log,
            meta,
            meta_dirty: false,
            now: now_ns(),
            written: Vec::new(),
            to_free: Vec::new(),
            shared: Vec::new(),
            dirty,
            dirty_undo: Vec::new(),
            write_through: false,
            encoded: HashMap::new(),
            records: Vec::new(),
            unlogged: false,
            reserved_before,
        }
    }

    /// End the change's borrow of the trees, keeping what standing or
    /// undoing it needs (the tree's undo log stays open in the tree).
    pub(crate) fn detach(mut self) -> Detached {
        Detached {
            quota: std::mem::take(&mut self.quota),
            to_free: std::mem::take(&mut self.to_free),
            shared: std::mem::take(&mut self.shared),
            written: std::mem::take(&mut self.written),
            dirty_undo: std::mem::take(&mut self.dirty_undo),
            records: std::mem::take(&mut self.records),
            unlogged: self.unlogged,
            reserved: (self.reserved_before, self.meta.reserved),
        }
    }

    pub(crate) fn write_meta(&mut self) -> Result<()> {
        if self.meta_dirty {
            self.tree.insert(&keys::meta(), &self.meta.encode())?;
        }
        Ok(())
    }
}
