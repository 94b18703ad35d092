//! `DiskFs`: the on-disk [`FileSystem`], POSIX semantics over the object
//! operations of [`aegis_fs`] in one dataset (the ZPL of this design;
//! ZFS's `zfs_vnops` plays the same part).
//!
//! Each operation is one closure over a [`Tx`] inside the open
//! transaction group; it checks every precondition before its first
//! change, so a refused operation changes nothing, and the transaction
//! undoes the rest if the engine fails half way. Durability is the
//! store's: the intent log on `fsync`, a txg commit on the timer, on dirty
//! size, on `sync` and at unmount.
//!
//! In memory there are only the open handles, the kernel's lookup counts
//! and the set of orphans (inodes with no name left, kept while referenced).
//! Namespace changes hold their directories' locks and data changes their
//! file's (`inode_locks.rs`); the counts and orphans sit behind `state`, a
//! short lock taken after each change's transaction, and each single
//! transaction is atomic under the store's tree lock. An orphan nothing
//! references is claimed under `state` and freed outside it. Orphans are
//! also recorded on disk so that a crash cannot leak them: mount frees
//! every orphan it finds.
//!
//! The semantics mirror `ramfs` call for call (the differential tests
//! compare them): same checks in the same order, same errno.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use aegis_fs::intent_log::{IntentLog, LogStats, Logged};
use aegis_fs::posix::inode::{S_IFDIR, S_IFMT, S_IFREG};
use aegis_fs::posix::{DatasetMeta, InodeRecord, FEATURE_RECEIVING};
use aegis_fs::{AllocClass, ObjectRead, Store, Tx, TxSize, View};
use aegis_vfs::{Attr, Fh, FsError, Ino, Result, TimeOrNow, ROOT_INO};
use parking_lot::{Mutex, RwLock};

use crate::error::{lower, TxResult};
use crate::inode::{attr, to_ns, AtimeMode};
use crate::inode_locks::InodeLocks;

/// How a [`DiskFs`] is mounted.
#[derive(Debug, Clone)]
pub struct DiskFsOptions {
    /// The dataset holding the filesystem.
    pub dataset: u64,
    pub atime: AtimeMode,
    /// `fsync` writes the intent log (true) or commits a txg (false).
    pub intent_log: bool,
}

impl Default for DiskFsOptions {
    fn default() -> Self {
        DiskFsOptions {
            dataset: aegis_fs::dataset::ROOT_DATASET,
            atime: AtimeMode::Relatime,
            intent_log: true,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Handle {
    pub(crate) ino: Ino,
    pub(crate) dir: bool,
    pub(crate) read: bool,
    pub(crate) write: bool,
    pub(crate) append: bool,
    /// Directory streams end before this cookie: the directory's next
    /// cookie when the stream was opened or last rewound. An entry renamed
    /// during the read takes a newer cookie, so without the bound a reader
    /// could meet it again and again, forever (btrfs's fix, kernel commit
    /// 9b378f6ad48c). 0 for files.
    pub(crate) dir_end: u64,
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Refs {
    pub(crate) lookups: u64,
    pub(crate) opens: u64,
}

pub(crate) struct State {
    pub(crate) refs: HashMap<Ino, Refs>,
    pub(crate) orphans: HashSet<Ino>,
    /// O_TMPFILE files not yet named: the only orphans `link` may name
    /// (replay aside, which re-runs links the log recorded).
    pub(crate) linkable: HashSet<Ino>,
    pub(crate) next_fh: Fh,
}

/// Paths a namespace change dirties, for the ENOSPC check: its keys sit in
/// a few places of the tree (the parent's entries and index, the child's
/// inode and back-references, the meta object), each one path that may
/// split. Overestimating here makes deletes fail on a full pool, whose
/// reserve is only 1/32 of it.
pub(crate) const NAMESPACE_OPS: u64 = 6;

/// Modes of a mounted filesystem (`DiskFs::mode`).
pub(crate) const ACTIVE: u8 = 0;
pub(crate) const FROZEN: u8 = 1;
pub(crate) const SHUT: u8 = 2;

/// The on-disk filesystem. See the [module documentation](self).
pub struct DiskFs {
    pub(crate) store: Arc<Store>,
    pub(crate) ds: u64,
    pub(crate) opts: DiskFsOptions,
    /// The store was opened read-only: nothing can make this writable.
    pub(crate) opened_read_only: bool,
    /// [`ACTIVE`], [`FROZEN`] (remounted read-only) or [`SHUT`] (shut
    /// down); only ever moves to `SHUT` once there.
    pub(crate) mode: AtomicU8,
    /// The dataset's record size (fixed at mkfs), readable without the
    /// lock: the record size of every file that names none of its own.
    pub(crate) dataset_record_size: u32,
    /// The pool's commit reserve, which bounds one write transaction
    /// (see [`write_piece_bytes`]).
    pub(crate) commit_reserve_bytes: u64,
    pub(crate) state: Mutex<State>,
    /// Open handles. Apart from `state` so that reads, which only check
    /// their handle, never wait for a namespace change; a leaf in the lock
    /// order (`state`, then `handles`, then the store's locks): nothing
    /// is locked while it is held.
    pub(crate) handles: RwLock<HashMap<Fh, Handle>>,
    /// Each file's data lock (`inode_locks.rs`): writes and other data
    /// changes hold it instead of `state`.
    pub(crate) files: InodeLocks,
    /// Each directory's namespace lock (`inode_locks.rs`): namespace
    /// changes hold their directories', lookups their parent's shared.
    pub(crate) dirs: InodeLocks,
    /// The dataset's intent log, on a writable mount.
    pub(crate) log: Option<Arc<IntentLog>>,
}

/// The dataset's meta record as `t` holds it; open checked it is there.
pub(crate) fn meta_in(t: &impl ObjectRead) -> TxResult<DatasetMeta> {
    t.meta()?
        .ok_or_else(|| FsError::Io("the dataset's meta record is gone".into()).into())
}

pub(crate) fn bytes(name: &OsStr) -> &[u8] {
    name.as_bytes()
}

pub(crate) fn set_time(t: TimeOrNow, now: i64) -> i64 {
    match t {
        TimeOrNow::Time(t) => to_ns(t),
        TimeOrNow::Now => now,
    }
}

pub(crate) fn regular(r: &InodeRecord) -> Result<()> {
    match r.mode & S_IFMT {
        S_IFREG => Ok(()),
        S_IFDIR => Err(FsError::IsDir),
        _ => Err(FsError::InvalidArgument("not a regular file")),
    }
}

impl DiskFs {
    /// Open the filesystem in the store's dataset. A writable mount
    /// replays the intent log and frees the orphans a crash left behind.
    pub fn open(store: Arc<Store>, opts: DiskFsOptions) -> Result<Arc<DiskFs>> {
        let ds = opts.dataset;
        // A snapshot is read-only whatever the pool is.
        let snapshot = store.is_snapshot(ds);
        let read_only = store.is_read_only() || snapshot;
        let (meta, orphans) = store.view(ds, |t| -> TxResult<_> {
            let meta = t.meta()?.ok_or_else(|| {
                FsError::Io(format!(
                    "dataset {ds} holds no filesystem (was it made by mkfs?)"
                ))
            })?;
            Ok((meta, t.orphans()?))
        })?;
        if meta.features & FEATURE_RECEIVING != 0 {
            return Err(FsError::Io(
                "a send stream is being received into this dataset: resume the receive (`aegisfs receive --token` shows where it stands) or undo it with `aegisfs receive --abort`".into(),
            ));
        }
        store.view(ds, |t| -> TxResult<_> {
            Ok(t.inode(ROOT_INO).map(|_| ())?)
        })?;
        let replay_failed = |e: FsError| {
            FsError::Io(format!(
                "replaying the intent log failed ({e}); mount with -o ro,norecovery to copy the data out"
            ))
        };
        let (log, replay) = if read_only {
            if !snapshot && store.view(ds, |t| -> TxResult<_> { Ok(t.has_log_head()?) })? {
                tracing::warn!("read-only mount: the intent log is not replayed; changes fsynced after the last commit are not shown");
            }
            (None, None)
        } else {
            let (log, replay) = store
                .open_intent_log(ds, opts.intent_log)
                .map_err(|e| replay_failed(lower(e)))?;
            (Some(log), Some(replay))
        };
        let fs = Arc::new(DiskFs {
            commit_reserve_bytes: store.space().reserve,
            store,
            ds,
            opts,
            opened_read_only: read_only,
            mode: AtomicU8::new(ACTIVE),
            dataset_record_size: meta.record_size,
            log,
            handles: RwLock::new(HashMap::new()),
            files: InodeLocks::new(),
            dirs: InodeLocks::new(),
            state: Mutex::new(State {
                refs: HashMap::new(),
                orphans: orphans.iter().copied().collect(),
                linkable: HashSet::new(),
                next_fh: 1,
            }),
        });
        if let Some(replay) = replay {
            // What the log holds was allowed once: a quota does not
            // refuse it again.
            fs.store.set_quota_enforced(fs.ds, false);
            let replayed = fs.replay(replay);
            fs.store.set_quota_enforced(fs.ds, true);
            replayed.map_err(replay_failed)?;
        }
        // Orphans a crash left, and those the log replay made (names
        // removed while open), go now.
        if !read_only && !fs.state.lock().orphans.is_empty() {
            tracing::info!(count = fs.state.lock().orphans.len(), "freeing orphans");
            fs.release_orphans(&mut fs.state.lock());
            fs.store.commit().map_err(lower)?;
        }
        Ok(fs)
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The id of the dataset this mount serves.
    pub fn dataset_id(&self) -> u64 {
        self.ds
    }

    /// What the intent log has done since mount.
    pub fn log_stats(&self) -> LogStats {
        self.log.as_ref().map(|l| l.stats()).unwrap_or_default()
    }

    /// Drop every kernel reference (the kernel forgets all at unmount), free
    /// the orphans, and commit and close the store.
    pub fn unmount(&self) -> Result<()> {
        {
            let mut st = self.state.lock();
            st.refs.clear();
            self.handles.write().clear();
            if !self.read_only() {
                // One that cannot be freed now stays listed on disk and
                // goes at the next mount.
                self.release_orphans(&mut st);
            }
        }
        self.store.shutdown().map_err(lower)
    }

    /// Commit the open transaction group (sync(2), fsync).
    pub fn sync(&self) -> Result<()> {
        self.check_alive()?;
        if !self.read_only() {
            // Orphans a full pool kept from being freed get another try.
            self.release_orphans(&mut self.state.lock());
            self.store.commit().map_err(lower)?;
        }
        Ok(())
    }

    /// Run `f` as one transaction, sized for `ops` tree operations; the
    /// meta record is written back if `f` changed it.
    pub(crate) fn tx<R>(
        &self,
        ops: u64,
        class: AllocClass,
        f: impl FnOnce(&mut Tx<'_>) -> TxResult<R>,
    ) -> Result<R> {
        self.tx_sized(TxSize::ops(ops, class), f)
    }

    pub(crate) fn tx_sized<R>(
        &self,
        size: TxSize,
        f: impl FnOnce(&mut Tx<'_>) -> TxResult<R>,
    ) -> Result<R> {
        self.check_alive()?;
        if self.read_only() {
            return Err(FsError::ReadOnly);
        }
        Ok(self.store.transact(self.ds, size, f)?)
    }

    pub(crate) fn view<R>(&self, f: impl FnOnce(&View<'_>) -> TxResult<R>) -> Result<R> {
        self.check_alive()?;
        Ok(self.store.view(self.ds, f)?)
    }

    /// No change may be made: opened read-only, remounted read-only or
    /// shut down.
    pub(crate) fn read_only(&self) -> bool {
        self.opened_read_only || self.mode.load(Ordering::SeqCst) != ACTIVE
    }

    /// EIO once shut down: every operation that reads or writes checks it.
    pub(crate) fn check_alive(&self) -> Result<()> {
        if self.mode.load(Ordering::SeqCst) == SHUT {
            return Err(FsError::Io("the filesystem was shut down".into()));
        }
        Ok(())
    }

    /// Remount: freeze (commit, then refuse changes) or thaw.
    pub(crate) fn set_writable_now(&self, writable: bool) -> Result<()> {
        self.check_alive()?;
        if writable {
            if self.opened_read_only {
                return Err(FsError::ReadOnly);
            }
            let _ = self
                .mode
                .compare_exchange(FROZEN, ACTIVE, Ordering::SeqCst, Ordering::SeqCst);
            return Ok(());
        }
        // With every directory stripe, the state and every file stripe
        // held, no change is half made; commit, then no change can start.
        let _dirs = self.dirs.lock_all();
        let mut st = self.state.lock();
        if !self.read_only() {
            self.release_orphans(&mut st);
            let _files = self.files.lock_all();
            self.store.commit().map_err(lower)?;
            self.mode.store(FROZEN, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Shut down: nothing more reaches the devices, every later operation
    /// fails with EIO. Takes every lock an operation holds, so none is
    /// half done in memory when the gates close (one in the device layer
    /// may be, as at a power cut).
    pub(crate) fn shutdown_now(&self) {
        let _dirs = self.dirs.lock_all();
        let _st = self.state.lock();
        let _files = self.files.lock_all();
        self.mode.store(SHUT, Ordering::SeqCst);
        self.store.halt();
    }

    /// The dataset's meta record, as its tree holds it now.
    pub(crate) fn meta(&self) -> Result<DatasetMeta> {
        self.view(|t| meta_in(t))
    }

    pub(crate) fn inode(&self, ino: Ino) -> Result<InodeRecord> {
        self.view(|t| Ok(t.inode(ino)?))
    }

    /// `ino`'s attributes from its record `r`; `st_blocks` counts data
    /// written since the last commit as the commit will store it.
    pub(crate) fn attr_of(&self, ino: Ino, r: &InodeRecord) -> Attr {
        let mut a = attr(ino, r, self.dataset_record_size);
        if r.is_reg() {
            match self.view(|t| Ok(t.stored_alloc(ino, r)?)) {
                Ok(bytes) => a.blocks = bytes.div_ceil(512),
                Err(e) => tracing::debug!(ino, error = %e, "st_blocks left at the record's"),
            }
        }
        a
    }

    pub(crate) fn handle(&self, ino: Ino, fh: Fh) -> Result<Handle> {
        match self.handles.read().get(&fh) {
            Some(h) if h.ino == ino => Ok(*h),
            _ => Err(FsError::BadHandle),
        }
    }

    pub(crate) fn add_lookup(st: &mut State, ino: Ino) {
        st.refs.entry(ino).or_default().lookups += 1;
    }

    /// After a change that stood: `ino`, if it lost its last name, becomes
    /// an orphan, freed now unless still referenced.
    pub(crate) fn orphaned(&self, ino: Option<Ino>) {
        if let Some(ino) = ino {
            let claimed = {
                let mut st = self.state.lock();
                st.orphans.insert(ino);
                self.claim_orphan(&mut st, ino)
            };
            if claimed {
                self.free_claimed(ino);
            }
        }
    }

    /// Try to free every orphan nothing references (after replay, at
    /// unmount, and on sync, where a full pool may have kept some). These
    /// are rare, so each free runs under `st`, which the caller holds for
    /// its own reasons (freeze holds it until the commit).
    pub(crate) fn release_orphans(&self, st: &mut State) {
        let pending: Vec<Ino> = st.orphans.iter().copied().collect();
        for ino in pending {
            if self.claim_orphan(st, ino) {
                if let Err(e) = self.free_orphan(ino) {
                    Self::unclaim(st, ino, &e);
                }
            }
        }
    }

    /// `ino` lost a reference (`st` held): claim it if it became an
    /// unreferenced orphan; the caller frees it with [`Self::free_claimed`]
    /// once it has let go of the state lock.
    pub(crate) fn claim_orphan(&self, st: &mut State, ino: Ino) -> bool {
        let referenced = st
            .refs
            .get(&ino)
            .is_some_and(|r| r.lookups > 0 || r.opens > 0);
        if !referenced {
            st.refs.remove(&ino);
        }
        if referenced
            || ino == ROOT_INO
            || self.read_only()
            || self.log.as_ref().is_some_and(|l| l.is_replaying())
        {
            return false;
        }
        // Out of the set while it is freed: no other release frees it
        // twice, and nothing can reach it again (it has no name and no
        // reference, and an O_TMPFILE is linked only through an open
        // handle), so it is no longer linkable either, freed or not.
        let claimed = st.orphans.remove(&ino);
        if claimed {
            st.linkable.remove(&ino);
        }
        claimed
    }

    /// Free an orphan [`Self::claim_orphan`] claimed, without the state lock,
    /// so that lookups, creates and other frees need not wait for it. A
    /// failure here does not undo the change that orphaned it, so it is
    /// not the caller's error: the orphan goes back to the set (it is still
    /// listed on disk) and is freed on the next release, sync or mount.
    pub(crate) fn free_claimed(&self, ino: Ino) {
        if let Err(e) = self.free_orphan(ino) {
            Self::unclaim(&mut self.state.lock(), ino, &e);
        }
    }

    fn unclaim(st: &mut State, ino: Ino, e: &FsError) {
        tracing::warn!(ino, error = %e, "could not free an orphan inode yet");
        st.orphans.insert(ino);
    }

    /// Delete the claimed orphan `ino` and every key of its object. Takes
    /// no state lock: [`Self::release_orphans`] calls it holding one.
    fn free_orphan(&self, ino: Ino) -> Result<()> {
        // No data change of the file may slip between the count and the
        // delete that it sizes.
        let _file = self.files.lock(ino);
        let records = self.view(|t| Ok(t.record_count(ino)?))?;
        // The object's keys are contiguous: removing them dirties a few
        // leaves per hundred records, not a path per key.
        self.tx(4 + records / 64, AllocClass::Reserved, |tx| {
            Ok(tx.remove_object(ino)?)
        })?;
        Ok(())
    }

    /// fsync and fsyncdir: write the intent log and flush; a txg commit
    /// when the log is off or cannot take it.
    pub(crate) fn sync_handle(&self, ino: Ino, fh: Fh) -> Result<()> {
        self.handle(ino, fh)?;
        self.check_alive()?;
        if self.read_only() {
            return Ok(());
        }
        let Some(log) = self.log.as_ref().filter(|_| self.opts.intent_log) else {
            return self.sync();
        };
        match log.fsync().map_err(lower)? {
            Logged::Done => Ok(()),
            Logged::AfterTxg(txg) => self.store.wait_durable(txg).map_err(lower),
            Logged::NeedCommit => self.sync(),
        }
    }

    pub(crate) fn forget_locked(st: &mut State, ino: Ino) {
        if let Some(r) = st.refs.get_mut(&ino) {
            r.lookups = r.lookups.saturating_sub(1);
        }
    }
}

/// Largest piece of one write transaction: a quarter of the pool's commit
/// `reserve` (a rewrite's new blocks come out of it while the old ones
/// wait out their deferral), whole records, at least one record and at
/// most 1 MiB (what the kernel sends in one FUSE write) or one record.
pub(crate) fn write_piece_bytes(rs: u64, reserve: u64) -> u64 {
    (reserve / 4 / rs * rs).clamp(rs, (1u64 << 20).max(rs))
}
