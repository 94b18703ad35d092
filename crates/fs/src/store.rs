//! The store: a pool plus its trees, the unit that mkfs creates and that
//! mount, info and fsck open.
//!
//! The pool tree holds one record per dataset; each dataset has its own
//! object tree and, on a writable mount, its intent log. Changes go into
//! the open transaction group in memory (dirty tree nodes) through
//! [`Store::transact`] (`tx.rs`), which refuses with ENOSPC *before*
//! changing anything when the pool could not hold what the commit will
//! write. Committing is in `txg.rs`.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aegis_block::DeviceRef;
use aegis_btree::{NodeCache, Tree};
use aegis_pool::label::LabelConfig;
use aegis_pool::{
    AllocClass, BlockPtr, CachePolicy, CacheStats, CreateOptions, OpenOptions, OpenReport, Pool,
    PoolError, SpaceInfo, TreeRoot, Uberblock, DEFER_TXGS,
};
use parking_lot::{Mutex, RwLock, RwLockWriteGuard};

use crate::dataset::{
    dataset_key, parse_dataset_key, DatasetRecord, DATASET_TREE_KIND, POOL_TREE_KIND, ROOT_DATASET,
};
use crate::error::{FsError, Result};
use crate::intent_log::IntentLog;
use crate::posix::dirty_data::DirtyData;
use crate::posix::read_ahead::ReadAhead;
use crate::snapshot::SnapshotRecord;
use crate::snapshot_admin::SnapRequest;
use crate::tx::TxSize;
use crate::txg::SyncThread;

#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Decoded nodes kept in memory, shared by all trees.
    pub cache_nodes: usize,
    /// Commit once this many bytes of dirty nodes and new blocks held in
    /// memory have gathered.
    pub dirty_limit: u64,
    /// Commit at least this often while anything is dirty.
    pub sync_interval: Duration,
    /// Bytes of decoded file data kept for readers (0: none).
    pub data_cache_bytes: u64,
    /// What the data cache gives up when full.
    pub data_cache_policy: CachePolicy,
    /// Most records read ahead of a sequential reader (0: no read-ahead;
    /// none either without a data cache, which it fills).
    pub read_ahead_records: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_nodes: 16384,
            dirty_limit: default_dirty_limit(),
            sync_interval: Duration::from_secs(5),
            data_cache_bytes: default_data_cache_bytes(),
            data_cache_policy: CachePolicy::default(),
            read_ahead_records: crate::posix::read_ahead::MAX_WINDOW,
        }
    }
}

/// The default data cache: 1/8 of physical memory, between 64 MiB and
/// 8 GiB. Under FUSE the kernel's page cache holds file data too, so this
/// is smaller than ZFS's ARC (half of memory); it is what serves readers
/// whose pages the kernel dropped, random reads of records bigger than a
/// page, and embedded users, who have no page cache in front.
pub fn default_data_cache_bytes() -> u64 {
    (physical_memory_bytes() / 8).clamp(64 << 20, 8 << 30)
}

/// The default dirty limit: 1/16 of physical memory, between 64 MiB and
/// 1 GiB. Random small writes over a working set larger than it pay a
/// whole record per write (each commit stores every dirty record), so it
/// is as large as memory comfortably allows; ZFS's default is 10% of RAM
/// up to 4 GiB.
pub fn default_dirty_limit() -> u64 {
    (physical_memory_bytes() / 16).clamp(64 << 20, 1 << 30)
}

/// `MemTotal` of /proc/meminfo; 0 (so the floor applies) if unreadable.
fn physical_memory_bytes() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map_or(0, |kb| kb.saturating_mul(1024))
}

pub(crate) struct Trees {
    pub pool_tree: Tree,
    pub datasets: BTreeMap<u64, Tree>,
    pub records: BTreeMap<u64, DatasetRecord>,
    /// The intent log of each dataset mounted writable; each commit that
    /// writes a dataset's tree closes its log's chain.
    pub logs: BTreeMap<u64, Arc<IntentLog>>,
    /// Each dataset's file data written in the open txg, not yet blocks
    /// (`posix/dirty_data.rs`); the commit settles it first.
    pub dirty: BTreeMap<u64, DirtyData>,
    /// Every snapshot record, by id (`snapshot.rs`).
    pub snapshots: BTreeMap<u64, SnapshotRecord>,
    /// The tree of each snapshot not being deleted, read-only.
    pub snap_trees: BTreeMap<u64, Tree>,
    /// Blocks each dataset released in the open txg that a snapshot
    /// holds: dead list entries once the txg closes (`dead_list.rs`).
    pub dead_pending: BTreeMap<u64, Vec<BlockPtr>>,
    /// Snapshots to take when the open txg closes.
    pub snap_requests: Vec<SnapRequest>,
    /// Where the clone table has entries (`clone_table.rs`).
    pub(crate) clones: crate::clone_table::CloneSummary,
    /// Quota usage of the datasets that keep it, loaded on first use
    /// (`quota_admin.rs`).
    pub(crate) quotas: BTreeMap<u64, crate::posix::quota::QuotaTable>,
}

impl Trees {
    pub(crate) fn dirty_nodes(&self) -> usize {
        self.pool_tree.dirty_nodes()
            + self
                .datasets
                .values()
                .map(|t| t.dirty_nodes())
                .sum::<usize>()
    }
    pub(crate) fn is_dirty(&self) -> bool {
        self.pool_tree.is_dirty()
            || self.datasets.values().any(|t| t.is_dirty())
            || self.dirty.values().any(|d| !d.is_empty())
            || self.dead_pending.values().any(|d| !d.is_empty())
            || !self.snap_requests.is_empty()
    }

    /// A dataset's tree, or a snapshot's (read-only).
    pub(crate) fn tree(&self, id: u64) -> Option<&Tree> {
        self.datasets.get(&id).or_else(|| self.snap_trees.get(&id))
    }
    /// Memory the open txg holds: dirty nodes and dirty records.
    pub(crate) fn dirty_bytes(&self, block_size: u32) -> u64 {
        self.dirty_nodes() as u64 * block_size as u64
            + self.dirty.values().map(|d| d.bytes()).sum::<u64>()
    }
    /// What the commit may still allocate for dirty records: data bytes
    /// beyond any reservation, leaf bytes, and data bytes it takes from
    /// preallocated records' reservations.
    fn dirty_reserve(&self) -> (u64, u64, u64) {
        self.dirty.values().fold((0, 0, 0), |(d, r, s), x| {
            (
                d + x.reserve_bytes(),
                r + x.run_bytes(),
                s + x.share_bytes(),
            )
        })
    }
}

pub struct Store {
    pub(crate) pool: Arc<Pool>,
    pub(crate) cache: Arc<NodeCache>,
    pub(crate) trees: RwLock<Trees>,
    pub(crate) opts: StoreOptions,
    pub(crate) commit_lock: Mutex<()>,
    /// Sequential readers' streams and the threads reading ahead of them.
    pub(crate) ahead: ReadAhead,
    pub(crate) sync: SyncThread,
    /// Set when a failed change could not be undone: the in-memory trees
    /// may hold half of it, so nothing more may change or commit.
    pub(crate) broken: Mutex<Option<String>>,
    /// Each dataset's reserved bytes (its meta record's counter, kept
    /// here so a change of one dataset leaves the others' reservations
    /// alone without reading their meta records).
    pub(crate) reserved: Mutex<BTreeMap<u64, u64>>,
    /// Write-behind off (a test hook): every block is written at once,
    /// so file data is not held as dirty records either.
    pub(crate) write_through: AtomicBool,
    /// Most dead list entries one snapshot delete commit handles
    /// (`snapshot_admin::DELETE_BATCH`; tests make it small).
    pub(crate) delete_batch: AtomicUsize,
    /// Most records one receive commit applies (`receive::BATCH_RECORDS`;
    /// tests make it small).
    pub(crate) receive_batch: AtomicUsize,
    /// Datasets whose quotas are not enforced now (their log replays).
    pub(crate) quota_relaxed: Mutex<std::collections::BTreeSet<u64>>,
    report: OpenReport,
}

/// The pool's write-behind backstop never goes below its default.
const WRITE_BEHIND_FLOOR_BYTES: u64 = 256 << 20;

pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Decode the pool tree and open every dataset tree it names.
fn load_trees(pool: &Arc<Pool>, cache: &Arc<NodeCache>, root: &TreeRoot) -> Result<Trees> {
    let pool_tree = Tree::open(pool.clone(), cache.clone(), POOL_TREE_KIND, root);
    let mut datasets = BTreeMap::new();
    let mut records = BTreeMap::new();
    let (snapshots, snap_trees) = load_snapshots(pool, cache, &pool_tree)?;
    // Dataset records sort first (type 1); dead list entries (type 3)
    // can be many, so the scan stops before them.
    let hi = [crate::snapshot::REC_SNAPSHOT];
    for item in pool_tree.range(Bound::Unbounded, Bound::Excluded(&hi[..])) {
        let (k, v) = item?;
        let Some(id) = parse_dataset_key(&k) else {
            continue;
        };
        let rec = DatasetRecord::decode(&v)?;
        let tree = Tree::open(pool.clone(), cache.clone(), DATASET_TREE_KIND, &rec.root);
        // Reading the root proves the path from the uberblock verifies.
        if let Some(bp) = &rec.root.root {
            tree.load(bp)?;
        }
        datasets.insert(id, tree);
        records.insert(id, rec);
    }
    let clones = crate::clone_table::CloneSummary::load(&pool_tree)?;
    Ok(Trees {
        quotas: BTreeMap::new(),
        clones,
        pool_tree,
        datasets,
        records,
        logs: BTreeMap::new(),
        dirty: BTreeMap::new(),
        snapshots,
        snap_trees,
        dead_pending: BTreeMap::new(),
        snap_requests: Vec::new(),
    })
}

type Snapshots = (BTreeMap<u64, SnapshotRecord>, BTreeMap<u64, Tree>);

/// Every snapshot record, and a tree for each one not being deleted (its
/// root is read when first used: a pool of many snapshots opens as fast
/// as one without).
fn load_snapshots(pool: &Arc<Pool>, cache: &Arc<NodeCache>, pool_tree: &Tree) -> Result<Snapshots> {
    let (mut records, mut trees) = (BTreeMap::new(), BTreeMap::new());
    let lo = [crate::snapshot::REC_SNAPSHOT];
    let hi = [crate::snapshot::REC_SNAPSHOT + 1];
    for item in pool_tree.range(Bound::Included(&lo[..]), Bound::Excluded(&hi[..])) {
        let (k, v) = item?;
        let Some(id) = crate::snapshot::parse_snapshot_key(&k) else {
            continue;
        };
        let rec = SnapshotRecord::decode(&v)?;
        if !rec.deleting {
            let tree = Tree::open(pool.clone(), cache.clone(), DATASET_TREE_KIND, &rec.root);
            trees.insert(id, tree);
        }
        records.insert(id, rec);
    }
    Ok((records, trees))
}

/// Each dataset's reserved bytes, from its meta record. A meta record that
/// does not decode counts nothing here: the first change of that dataset
/// fails on it anyway, and fsck reports it.
fn reserved_of(trees: &Trees) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    for (id, tree) in &trees.datasets {
        if let Ok(r) = reserved_in(tree) {
            out.insert(*id, r);
        }
    }
    out
}

/// The reserved bytes `tree`'s meta record counts (0 without one).
pub(crate) fn reserved_in(tree: &Tree) -> Result<u64> {
    match tree.get(&crate::posix::keys::meta())? {
        Some(v) => Ok(crate::posix::DatasetMeta::decode(&v)?.reserved),
        None => Ok(0),
    }
}

impl Store {
    /// Format `devices` and commit an empty root dataset (txg 1).
    pub fn create(
        devices: Vec<DeviceRef>,
        create: &CreateOptions,
        opts: StoreOptions,
    ) -> Result<Arc<Store>> {
        let pool = Arc::new(Pool::create(devices, create)?);
        let cache = NodeCache::new(opts.cache_nodes);
        let mut trees = load_trees(&pool, &cache, &TreeRoot::default())?;
        let rec = DatasetRecord::new("root", pool.open_txg(), now_ns());
        trees
            .pool_tree
            .insert(&dataset_key(ROOT_DATASET), &rec.encode())?;
        trees.datasets.insert(
            ROOT_DATASET,
            Tree::open(pool.clone(), cache.clone(), DATASET_TREE_KIND, &rec.root),
        );
        trees.records.insert(ROOT_DATASET, rec);
        let report = OpenReport {
            txg: 1,
            newest_txg: 1,
            ..Default::default()
        };
        let store = Arc::new(Store::assemble(pool, cache, trees, opts, report));
        store.commit()?;
        Ok(store)
    }

    /// Open the newest transaction group whose trees verify.
    pub fn open(
        devices: Vec<DeviceRef>,
        open: &OpenOptions,
        opts: StoreOptions,
    ) -> Result<Arc<Store>> {
        let cache = NodeCache::new(opts.cache_nodes);
        // The candidate that verifies keeps its decoded trees: the pool
        // accepts the first uberblock whose check passes, so the last trees
        // stored here are the chosen txg's.
        let loaded = std::cell::RefCell::new(None);
        let verify = |pool: &Arc<Pool>, ub: &Uberblock| -> std::result::Result<(), PoolError> {
            let trees = load_trees(pool, &cache, &ub.pool_root).map_err(|e| match e {
                FsError::Pool(p) => p,
                other => PoolError::corrupt("trees", other.to_string()),
            })?;
            *loaded.borrow_mut() = Some(trees);
            Ok(())
        };
        let (pool, report) = Pool::open_verified(devices, open, &verify)?;
        let trees = loaded
            .into_inner()
            .expect("an opened pool passed the verifier");
        Ok(Arc::new(Store::assemble(pool, cache, trees, opts, report)))
    }

    fn assemble(
        pool: Arc<Pool>,
        cache: Arc<NodeCache>,
        trees: Trees,
        opts: StoreOptions,
        report: OpenReport,
    ) -> Store {
        let reserved = reserved_of(&trees);
        pool.configure_data_cache(opts.data_cache_policy, opts.data_cache_bytes);
        // Read-ahead fills the data cache: with no cache it would only
        // read every block twice.
        let window = if opts.data_cache_bytes == 0 {
            0
        } else {
            opts.read_ahead_records
        };
        let ahead = ReadAhead::new(&pool, window);
        // The dirty limit bounds what the txg holds, blocks included; the
        // pool's own backstop must not write blocks out in the middle of
        // the commit's first stage, under the trees lock.
        pool.set_write_behind(opts.dirty_limit.max(WRITE_BEHIND_FLOOR_BYTES));
        Store {
            ahead,
            pool,
            cache,
            trees: RwLock::new(trees),
            opts,
            commit_lock: Mutex::new(()),
            sync: SyncThread::default(),
            broken: Mutex::new(None),
            reserved: Mutex::new(reserved),
            write_through: AtomicBool::new(false),
            delete_batch: AtomicUsize::new(crate::snapshot_admin::DELETE_BATCH),
            receive_batch: AtomicUsize::new(crate::receive::BATCH_RECORDS),
            quota_relaxed: Mutex::new(Default::default()),
            report,
        }
    }

    /// Turn on the features this build adds to an older pool, offline
    /// (`Pool::upgrade`). Returns their names.
    pub fn upgrade(devices: Vec<DeviceRef>) -> Result<Vec<String>> {
        Ok(Pool::upgrade(devices)?)
    }

    /// Bytes held back by every dataset's preallocated records.
    pub fn reserved_bytes(&self) -> u64 {
        self.reserved.lock().values().sum()
    }

    /// The pool, for the engine's own tools and tests (fsck, the fuzzer's
    /// seeds, fault tests). The layers above never call it: they use the
    /// store's own methods below.
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }
    pub fn is_read_only(&self) -> bool {
        self.pool.is_read_only()
    }
    /// The txg changes go into now (a new inode's generation).
    pub fn open_txg(&self) -> u64 {
        self.pool.open_txg()
    }
    pub fn block_size(&self) -> u32 {
        self.pool.block_size()
    }
    /// The pool's configuration as its labels hold it.
    pub fn config(&self) -> &LabelConfig {
        self.pool.config()
    }
    /// The uberblock of the txg this store opened or last committed.
    pub fn last_uberblock(&self) -> Option<Uberblock> {
        self.pool.last_uberblock()
    }
    /// The data cache's hits, misses and size.
    pub fn data_cache_stats(&self) -> CacheStats {
        self.pool.data_cache_stats()
    }
    /// Resize the data cache, or change its policy (which empties it).
    pub fn configure_data_cache(&self, policy: CachePolicy, capacity_bytes: u64) {
        self.pool.configure_data_cache(policy, capacity_bytes);
    }
    /// Empty the data cache, so the next reads go to the devices.
    pub fn clear_data_cache(&self) {
        self.pool.clear_data_cache();
    }
    pub fn space(&self) -> SpaceInfo {
        self.pool.space()
    }
    /// Bytes reflinks save: what the clone table's blocks would take
    /// again if every extra pointer had its own copy.
    pub fn reflinked_bytes(&self) -> Result<u64> {
        self.trees.read().shared_bytes()
    }
    /// Fault-injection hooks for the test suites above this layer: the
    /// write-behind buffer's bound, allocations counted, and ENOSPC after
    /// the next `n` allocations.
    #[doc(hidden)]
    pub fn set_write_behind(&self, bytes: u64) {
        self.write_through.store(bytes == 0, Ordering::Relaxed);
        self.pool.set_write_behind(bytes)
    }
    /// Test hook: snapshot deletes handle at most `n` dead list entries
    /// per commit, so small tests cross many batches and crash between.
    #[doc(hidden)]
    pub fn set_delete_batch(&self, n: usize) {
        self.delete_batch.store(n.max(1), Ordering::Relaxed);
    }
    /// Test hook: receives apply at most `n` records per commit.
    #[doc(hidden)]
    pub fn set_receive_batch(&self, n: usize) {
        self.receive_batch.store(n.max(1), Ordering::Relaxed);
    }
    #[doc(hidden)]
    pub fn allocation_count(&self) -> u64 {
        self.pool.allocation_count()
    }
    #[doc(hidden)]
    pub fn inject_no_space(&self, n: Option<u64>) {
        self.pool.inject_no_space(n)
    }
    /// Bytes that writes of `class` may still allocate. Ordinary
    /// (`Normal`) allocations leave the space of preallocated records
    /// alone; deletes, commits and writes into preallocated records
    /// (`Reserved`) may use it.
    pub fn available(&self, class: AllocClass) -> u64 {
        match class {
            AllocClass::Normal => self
                .pool
                .available(class)
                .saturating_sub(self.reserved_bytes()),
            AllocClass::Reserved => self.pool.available(class),
        }
    }
    pub fn cache(&self) -> &Arc<NodeCache> {
        &self.cache
    }
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }
    pub fn dataset_record(&self, id: u64) -> Option<DatasetRecord> {
        self.trees.read().records.get(&id).cloned()
    }

    /// Read access to a dataset's tree.
    pub fn read_tree<R>(&self, ds: u64, f: impl FnOnce(&Tree) -> Result<R>) -> Result<R> {
        let t = self.trees.read();
        f(t.tree(ds).ok_or(FsError::NoDataset(ds))?)
    }

    /// Change a dataset's tree inside the open txg. `class` Reserved is for
    /// operations that free space (deletes), which must work on a full pool.
    pub fn with_tree<R>(
        &self,
        ds: u64,
        class: AllocClass,
        f: impl FnOnce(&mut Tree) -> Result<R>,
    ) -> Result<R> {
        self.with_tree_ops(ds, class, 1, f)
    }

    /// As [`Store::with_tree`], for a change of up to `ops` tree operations
    /// (inserts or removes), each of which may dirty a path and split it.
    pub fn with_tree_ops<R>(
        &self,
        ds: u64,
        class: AllocClass,
        ops: u64,
        f: impl FnOnce(&mut Tree) -> Result<R>,
    ) -> Result<R> {
        if self.pool.is_read_only() {
            return Err(PoolError::ReadOnly.into());
        }
        let mut t = self.reserve_tree(ds, TxSize::ops(ops, class))?;
        let tree = t.datasets.get_mut(&ds).ok_or(FsError::NoDataset(ds))?;
        // A failed operation is undone whole: no half-applied change may
        // reach the next commit.
        tree.begin_undo();
        let r = match f(tree) {
            Ok(r) => {
                tree.commit_undo();
                r
            }
            Err(e) => {
                self.roll_back(tree);
                return Err(e);
            }
        };
        let dirty = t.dirty_bytes(self.pool.block_size());
        drop(t);
        self.after_change(dirty)?;
        Ok(r)
    }

    /// Undo a failed change whole. If the undo itself fails, the trees
    /// may hold half of it: nothing more may change or commit.
    pub(crate) fn roll_back(&self, tree: &mut Tree) {
        if let Err(u) = tree.rollback() {
            tracing::error!(error = %u, "undo of a failed change failed");
            *self.broken.lock() = Some(u.to_string());
        }
    }

    /// A change of dataset `ds` stood with its meta record's reserved
    /// counter going from `before` to `after`: the store's copy follows
    /// (the space checks read it without decoding meta records).
    pub(crate) fn publish_reserved(&self, ds: u64, before: u64, after: u64) {
        if after != before {
            self.reserved.lock().insert(ds, after);
        }
    }

    /// The trees, write-locked, once a change of `size` on `ds` fits:
    /// its data blocks and the commit of everything dirty with its own
    /// tree changes, out of what `size.class` may use. Space held by
    /// deferred frees comes back after DEFER_TXGS commits: pay for them
    /// before giving up. The first commit may itself free blocks (dirty
    /// records replace theirs when they settle), so one more commit than
    /// the deferral is tried.
    pub(crate) fn reserve_tree(
        &self,
        ds: u64,
        size: TxSize,
    ) -> Result<RwLockWriteGuard<'_, Trees>> {
        for tries in 0..=DEFER_TXGS + 2 {
            let t = self.trees.write();
            match self.check_space(&t, ds, size) {
                Ok(()) => {
                    if let Some(why) = self.broken.lock().as_ref() {
                        return Err(FsError::Invalid(format!(
                            "an earlier change could not be undone ({why}); remount"
                        )));
                    }
                    return Ok(t);
                }
                Err(e)
                    if tries <= DEFER_TXGS + 1
                        && (self.pool.space().deferred > 0 || t.is_dirty()) =>
                {
                    drop(t);
                    tracing::debug!(error = %e, "space short; committing to release deferred frees");
                    self.commit()?;
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the last try returns its error")
    }

    /// After a change stood, with `dirty` bytes of dirty nodes and
    /// records in the open txg: commit once too much is held (the writer
    /// that crossed the limit waits for it: writers are delayed, never
    /// refused), counting the new blocks the pool still holds for the
    /// commit in flight; or ask the sync thread to start one well before,
    /// once the open txg alone holds half the limit. The blocks in flight
    /// do not bring that request closer (as ZFS's
    /// `zfs_dirty_data_sync_percent` looks at the open txg only): counting
    /// them started a commit right after each one while a random writer
    /// kept the same records dirty, storing each record again and again.
    pub(crate) fn after_change(&self, dirty: u64) -> Result<()> {
        if dirty + self.pool.buffered_bytes() > self.opts.dirty_limit {
            self.commit_over_limit()?;
        } else if dirty > self.opts.dirty_limit / 2 {
            self.sync.request();
        }
        Ok(())
    }

    /// Would `size.data_bytes` of new data and the commit of everything
    /// dirty plus `size.ops` more worst-case operations and `size.run_bytes`
    /// of entries in key order on `ds` fit? Every dirty node becomes one block per
    /// copy; an operation dirties at most a path and splits it
    /// (2 × height + 1); the space map's share is the pool's
    /// `commit_overhead`.
    pub(crate) fn check_space(&self, t: &Trees, ds: u64, size: TxSize) -> Result<()> {
        // Dirty records are allocated at the commit: count them as taken.
        // What they take from reservations is already missing from what
        // `Normal` may use; a write that may use the reservations must not
        // count it as free.
        let (mut dirty_data, dirty_run, dirty_shares) = t.dirty_reserve();
        if size.class == AllocClass::Reserved {
            dirty_data += dirty_shares;
        }
        let copies = self.pool.config().metadata_copies as usize;
        let dead_run = t.dead_run_bytes(copies);
        let (ops, run) = (size.ops.max(1), size.run_bytes + dirty_run + dead_run);
        let height = t
            .datasets
            .get(&ds)
            .map(|x| x.height())
            .unwrap_or(0)
            .max(t.pool_tree.height()) as u64;
        let blocks = t.dirty_nodes() as u64
            + ops * 2 * (height + 2)
            + run_blocks(run, self.pool.block_size(), height)
            + t.pool_tree.height() as u64
            + 2;
        let needed =
            blocks * self.pool.block_size() as u64 * self.pool.config().metadata_copies as u64
                + self.pool.commit_overhead(blocks)
                + size.data_bytes
                + dirty_data;
        let available = self.available(size.class);
        if needed > available {
            return Err(PoolError::NoSpace { needed, available }.into());
        }
        Ok(())
    }
}

/// Nodes a run of entries of `bytes` in all, in key order, may dirty in a
/// tree of `height`: the leaves holding them (a leaf other than the first and
/// last is at least a quarter full, or a remove would have merged it),
/// each of which may split, plus the nodes above them (an eighth more,
/// each internal entry being smaller than a record's) and the two paths
/// at the run's ends.
fn run_blocks(bytes: u64, block_size: u32, height: u64) -> u64 {
    if bytes == 0 {
        return 0;
    }
    let leaves = bytes.div_ceil(block_size as u64 / 4) + 2;
    2 * (leaves + leaves / 8 + 2 * (height + 2))
}
