//! `DiskFs`: the on-disk [`FileSystem`], POSIX semantics over the object
//! records of [`aegis_fs::posix`] in one dataset's tree (the ZPL of this
//! design; ZFS's `zfs_vnops` plays the same part).
//!
//! Each operation is one closure over the dataset tree inside the open
//! transaction group ([`Tx`](tx::Tx)); it checks every precondition before
//! its first change, so a refused operation changes nothing. Durability is
//! the store's: a txg commit on `fsync`, on the timer, on dirty size and at
//! unmount.
//!
//! In memory there are only the open handles, the kernel's lookup counts
//! and the set of orphans (inodes with no name left, kept while referenced),
//! all behind one mutex that every operation takes first, so operations
//! are atomic with respect to each other. Orphans are also recorded on disk
//! so that a crash cannot leak them: mount frees every orphan it finds.
//!
//! The semantics mirror `ramfs` call for call (the differential tests
//! compare them): same checks in the same order, same errno.

mod dir;
mod file;
mod inode;
mod log;
mod tx;
mod xattr;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use aegis_fs::intent_log::{recorded_ring, LogHead};
use aegis_fs::posix::inode::{
    S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK,
};
use aegis_fs::posix::{keys, DatasetMeta, InodeRecord, FIRST_COOKIE};
use aegis_fs::Store;
use aegis_pool::AllocClass;
use parking_lot::Mutex;

pub use self::inode::AtimeMode;
use self::inode::{atime_due, attr, kind_of, now_ns, to_ns, touch_modified};
pub use self::log::{LogPolicy, LogStats, POLICY_XATTR};
use self::tx::{read_inode, Tx};
use crate::error::{FsError, Result};
use crate::filesystem::FileSystem;
use crate::types::*;
use crate::validate::{
    check_access, check_name, check_new_name, check_range, check_removable_name, check_rename,
    check_xattr_name, xattr_reply,
};

/// Decode one intent log record, for the fuzzer: `Ok` if the bytes are a
/// record (which must then encode back to them).
#[doc(hidden)]
pub fn fuzz_log_record(b: &[u8]) -> Result<()> {
    let r = log::LogRec::decode(b)?;
    assert_eq!(r.encode(), b, "log record does not round-trip");
    Ok(())
}

/// Encoded sample log records, one of each kind (fuzz seeds).
#[doc(hidden)]
pub fn sample_log_records() -> Vec<Vec<u8>> {
    log::samples().iter().map(|r| r.encode()).collect()
}

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
struct Handle {
    ino: Ino,
    dir: bool,
    read: bool,
    write: bool,
    append: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Refs {
    lookups: u64,
    opens: u64,
}

struct State {
    meta: DatasetMeta,
    handles: HashMap<Fh, Handle>,
    refs: HashMap<Ino, Refs>,
    orphans: HashSet<Ino>,
    next_fh: Fh,
}

/// Paths a namespace change dirties, for the ENOSPC check: its keys sit in
/// a few places of the tree (the parent's entries and index, the child's
/// inode and back-references, the meta object), each one path that may
/// split. Overestimating here makes deletes fail on a full pool, whose
/// reserve is only 1/32 of it.
const NAMESPACE_OPS: u64 = 6;

/// The on-disk filesystem. See the [module documentation](self).
pub struct DiskFs {
    store: Arc<Store>,
    ds: u64,
    opts: DiskFsOptions,
    read_only: bool,
    /// The dataset's record size (fixed at mkfs), readable without the lock.
    record_size: u32,
    state: Mutex<State>,
    log: log::SharedLog,
}

fn bytes(name: &OsStr) -> &[u8] {
    name.as_bytes()
}

fn set_time(t: TimeOrNow, now: i64) -> i64 {
    match t {
        TimeOrNow::Time(t) => to_ns(t),
        TimeOrNow::Now => now,
    }
}

fn regular(r: &InodeRecord) -> Result<()> {
    match r.mode & S_IFMT {
        S_IFREG => Ok(()),
        S_IFDIR => Err(FsError::IsDir),
        _ => Err(FsError::InvalidArgument("not a regular file")),
    }
}

impl DiskFs {
    /// Open the filesystem in the store's dataset. A writable mount frees
    /// the orphans a crash left behind.
    pub fn open(store: Arc<Store>, opts: DiskFsOptions) -> Result<Arc<DiskFs>> {
        let ds = opts.dataset;
        let read_only = store.pool().is_read_only();
        let (meta, orphans) = store
            .read_tree(ds, |t| {
                let meta = match t.get(&keys::meta())? {
                    Some(v) => DatasetMeta::decode(&v)?,
                    None => {
                        return Err(aegis_fs::FsError::Invalid(format!(
                            "dataset {ds} holds no filesystem (was it made by mkfs?)"
                        )))
                    }
                };
                let mut orphans = Vec::new();
                let (lo, hi) = (
                    keys::item_start(keys::META_OBJECT, keys::ORPHAN),
                    keys::item_end(keys::META_OBJECT, keys::ORPHAN),
                );
                for item in t.range(
                    std::ops::Bound::Included(&lo[..]),
                    std::ops::Bound::Excluded(&hi[..]),
                ) {
                    let (k, _) = item?;
                    if let Some(ino) = keys::parse_orphan(&k) {
                        orphans.push(ino);
                    }
                }
                Ok((meta, orphans))
            })
            .map_err(|e| match e {
                aegis_fs::FsError::Invalid(m) => FsError::Io(m),
                other => other.into(),
            })?;
        let fs = Arc::new(DiskFs {
            store,
            ds,
            opts,
            read_only,
            record_size: meta.record_size,
            log: Default::default(),
            state: Mutex::new(State {
                meta,
                handles: HashMap::new(),
                refs: HashMap::new(),
                orphans: orphans.iter().copied().collect(),
                next_fh: 1,
            }),
        });
        fs.view(|t| read_inode(t, ROOT_INO).map(|_| ()))?;
        if !read_only {
            fs.store.set_commit_hook(
                ds,
                log::commit_hook(fs.log.clone(), fs.store.pool().clone()),
            );
            fs.replay_log().map_err(|e| {
                FsError::Io(format!(
                    "replaying the intent log failed ({e}); mount with -o ro,norecovery to copy the data out"
                ))
            })?;
        } else if fs.view(|t| Ok(t.get(&keys::log_head())?.is_some()))? {
            tracing::warn!("read-only mount: the intent log is not replayed; changes fsynced after the last commit are not shown");
        }
        // Orphans a crash left, and those the log replay made (names
        // removed while open), go now.
        if !read_only && !fs.state.lock().orphans.is_empty() {
            tracing::info!(count = fs.state.lock().orphans.len(), "freeing orphans");
            fs.release_orphans(&mut fs.state.lock());
            fs.store.commit()?;
        }
        Ok(fs)
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// What the intent log has done since mount.
    pub fn log_stats(&self) -> LogStats {
        self.log.lock().stats
    }

    /// Drop every kernel reference (the kernel forgets all at unmount), free
    /// the orphans, and commit and close the store.
    pub fn unmount(&self) -> Result<()> {
        {
            let mut st = self.state.lock();
            st.refs.clear();
            st.handles.clear();
            if !self.read_only {
                // One that cannot be freed now stays listed on disk and
                // goes at the next mount.
                self.release_orphans(&mut st);
            }
        }
        self.store.shutdown()?;
        Ok(())
    }

    /// Commit the open transaction group (sync(2), fsync).
    pub fn sync(&self) -> Result<()> {
        if !self.read_only {
            // Orphans a full pool kept from being freed get another try.
            self.release_orphans(&mut self.state.lock());
            self.store.commit()?;
        }
        Ok(())
    }

    /// Run `f` on the tree inside the open txg, sized for `ops` tree
    /// operations; the meta record is written back if `f` changed it.
    fn tx<R>(
        &self,
        meta: &mut DatasetMeta,
        ops: u64,
        class: AllocClass,
        f: impl FnOnce(&mut Tx<'_>) -> Result<R>,
    ) -> Result<R> {
        if self.read_only {
            return Err(FsError::ReadOnly);
        }
        let mut out: Option<Result<R>> = None;
        let mut written = Vec::new();
        let mut to_free = Vec::new();
        let stored = self.store.with_tree_ops(self.ds, class, ops, |tree| {
            let mut m = meta.clone();
            let mut tx = Tx {
                tree,
                meta: &mut m,
                meta_dirty: false,
                now: now_ns(),
                written: Vec::new(),
                to_free: Vec::new(),
                log: Vec::new(),
                unlogged: false,
            };
            let mut r = f(&mut tx);
            let dirty = tx.meta_dirty;
            written = std::mem::take(&mut tx.written);
            to_free = std::mem::take(&mut tx.to_free);
            if r.is_ok() && dirty {
                let enc = tx.meta.encode();
                if let Err(e) = tx.tree.insert(&keys::meta(), &enc) {
                    r = Err(e.into());
                }
            }
            let recs = std::mem::take(&mut tx.log);
            let failed = r.is_err();
            // Appended under the trees lock: no commit can fall between
            // this change and its record. With the log off, fsync commits
            // and records would only cost time.
            if r.is_ok() && self.opts.intent_log {
                let tree = &*tx.tree;
                let mut log = self.log.lock();
                if tx.unlogged {
                    log.unlogged();
                } else if !recs.is_empty() {
                    log.append(recs, |ino| policy_of(tree, ino));
                }
            }
            if r.is_ok() {
                *meta = m;
            }
            out = Some(r);
            if failed {
                // Makes the store undo every tree change of this closure.
                return Err(aegis_fs::FsError::Invalid("operation failed".into()));
            }
            Ok(())
        });
        let pool = self.store.pool();
        match (stored, out) {
            (Ok(()), Some(r)) => {
                // Old blocks are freed only once the change stands.
                for bp in &to_free {
                    pool.free(bp)?;
                }
                r
            }
            (Err(_), Some(Err(e))) => {
                // Undone: the blocks it wrote belong to nothing.
                for bp in &written {
                    if let Err(f) = pool.free(bp) {
                        tracing::warn!(error = %f, "could not free a block of an undone change");
                    }
                }
                Err(e)
            }
            (Err(e), _) => Err(e.into()),
            (Ok(()), None) => unreachable!("with_tree_ops ran the closure"),
        }
    }

    fn view<R>(&self, f: impl FnOnce(&aegis_btree::Tree) -> Result<R>) -> Result<R> {
        let mut out: Option<Result<R>> = None;
        self.store.read_tree(self.ds, |t| {
            out = Some(f(t));
            Ok(())
        })?;
        out.expect("read_tree ran the closure")
    }

    fn inode(&self, ino: Ino) -> Result<InodeRecord> {
        self.view(|t| read_inode(t, ino))
    }

    fn attr_of(&self, ino: Ino, r: &InodeRecord) -> Attr {
        attr(ino, r, self.record_size)
    }

    fn handle(st: &State, ino: Ino, fh: Fh) -> Result<Handle> {
        match st.handles.get(&fh) {
            Some(h) if h.ino == ino => Ok(*h),
            _ => Err(FsError::BadHandle),
        }
    }

    fn add_lookup(st: &mut State, ino: Ino) {
        st.refs.entry(ino).or_default().lookups += 1;
    }

    /// The inode lost its last name: list it as an orphan on disk. The
    /// caller adds it to `State::orphans` once the change stands (a rolled
    /// back change must not leave a live inode marked for deletion).
    fn orphan(tx: &mut Tx<'_>, ino: Ino) -> Result<()> {
        tx.tree.insert(&keys::orphan(ino), &[])?;
        Ok(())
    }

    /// After a change that stood: `ino`, if it lost its last name, becomes
    /// an orphan, freed now unless still referenced.
    fn orphaned(&self, st: &mut State, ino: Option<Ino>) {
        if let Some(ino) = ino {
            st.orphans.insert(ino);
            self.release_orphan(st, ino);
        }
    }

    /// Try to free every orphan nothing references (after replay, at
    /// unmount, and on sync, where a full pool may have kept some).
    fn release_orphans(&self, st: &mut State) {
        let pending: Vec<Ino> = st.orphans.iter().copied().collect();
        for ino in pending {
            self.release_orphan(st, ino);
        }
    }

    /// After a change that succeeded: free `ino` if it became an
    /// unreferenced orphan. A failure here does not undo that change, so it
    /// is not the caller's error: the orphan stays listed on disk and is
    /// freed on the next release, forget or mount.
    fn release_orphan(&self, st: &mut State, ino: Ino) {
        if let Err(e) = self.maybe_free(st, ino) {
            tracing::warn!(ino, error = %e, "could not free an orphan inode yet");
        }
    }

    /// Delete `ino` if it is an orphan nothing references any more.
    fn maybe_free(&self, st: &mut State, ino: Ino) -> Result<()> {
        let referenced = st
            .refs
            .get(&ino)
            .is_some_and(|r| r.lookups > 0 || r.opens > 0);
        if !referenced {
            st.refs.remove(&ino);
        }
        if referenced
            || ino == ROOT_INO
            || !st.orphans.contains(&ino)
            || self.read_only
            || self.log.lock().replaying
        {
            return Ok(());
        }
        let records = self.view(|t| file::record_count(t, ino))?;
        // The object's keys are contiguous: removing them dirties a few
        // leaves per hundred records, not a path per key.
        self.tx(&mut st.meta, 4 + records / 64, AllocClass::Reserved, |tx| {
            file::free_all(tx, ino)?;
            let items = tx::scan(tx.tree, &keys::item_start(ino, 0), &keys::object_end(ino))?;
            for (k, _) in items {
                tx.tree.remove(&k)?;
            }
            tx.tree.remove(&keys::orphan(ino))?;
            tx.meta.inodes = tx.meta.inodes.saturating_sub(1);
            tx.meta_dirty = true;
            Ok(())
        })?;
        st.orphans.remove(&ino);
        Ok(())
    }

    /// Create an inode named `name` in `parent`, with one lookup.
    #[allow(clippy::too_many_arguments)]
    fn create_node(
        &self,
        st: &mut State,
        req: &Request,
        parent: Ino,
        name: &[u8],
        ftype: u32,
        perm: u32,
        rdev: u64,
        target: Option<&[u8]>,
    ) -> Result<Attr> {
        check_new_name(name)?;
        let generation = self.store.pool().open_txg();
        let ops = NAMESPACE_OPS + target.map_or(0, |t| t.len() as u64 / 256 + 1);
        let (ino, rec) = self.tx(&mut st.meta, ops, AllocClass::Normal, |tx| {
            let mut p = tx.inode(parent)?;
            if !p.is_dir() {
                return Err(FsError::NotDir);
            }
            if p.nlink == 0 {
                return Err(FsError::NotFound);
            }
            if dir::find(tx.tree, parent, name)?.is_some() {
                return Err(FsError::Exists);
            }
            let perm_in = perm;
            let mut perm = perm & 0o7777;
            let mut gid = req.gid;
            if p.mode & libc::S_ISGID != 0 {
                gid = p.gid;
                if ftype == S_IFDIR {
                    perm |= libc::S_ISGID;
                }
            }
            let ino = tx.meta.next_ino;
            tx.meta.next_ino += 1;
            tx.meta.inodes += 1;
            tx.meta_dirty = true;
            let is_dir = ftype == S_IFDIR;
            let now = tx.now;
            let rec = InodeRecord {
                mode: ftype | perm,
                uid: req.uid,
                gid,
                nlink: if is_dir { 2 } else { 1 },
                size: target.map_or(0, |t| t.len() as u64),
                rdev,
                generation,
                parent: if is_dir { parent } else { 0 },
                next_cookie: if is_dir { FIRST_COOKIE } else { 0 },
                alloc_bytes: 0,
                atime: now,
                mtime: now,
                ctime: now,
                crtime: now,
            };
            tx.put_inode(ino, &rec)?;
            if let Some(t) = target {
                xattr::write_symlink(tx, ino, t)?;
            }
            // New entries inherit their directory's log policy.
            if let Some(p) = tx.tree.get(&keys::policy(parent))? {
                tx.tree.insert(&keys::policy(ino), &p)?;
            }
            tx.log.push(match target {
                Some(t) => log::LogRec::Symlink {
                    parent,
                    name: name.to_vec(),
                    target: t.to_vec(),
                    uid: req.uid,
                    gid: req.gid,
                    ino,
                },
                None => log::LogRec::Mknod {
                    parent,
                    name: name.to_vec(),
                    mode: ftype | (perm_in & 0o7777),
                    rdev,
                    uid: req.uid,
                    gid: req.gid,
                    ino,
                },
            });
            dir::insert(tx, parent, &mut p, name, ino, ftype)?;
            touch_modified(&mut p, now);
            if is_dir {
                p.nlink += 1;
            }
            tx.put_inode(parent, &p)?;
            Ok((ino, rec))
        })?;
        Self::add_lookup(st, ino);
        Ok(self.attr_of(ino, &rec))
    }

    fn new_handle(st: &mut State, h: Handle) -> Fh {
        let fh = st.next_fh;
        st.next_fh += 1;
        st.handles.insert(fh, h);
        st.refs.entry(h.ino).or_default().opens += 1;
        fh
    }

    fn open_locked(&self, st: &mut State, ino: Ino, flags: i32) -> Result<Fh> {
        let r = self.inode(ino)?;
        let acc = flags & libc::O_ACCMODE;
        let read = acc == libc::O_RDONLY || acc == libc::O_RDWR;
        let write = acc == libc::O_WRONLY || acc == libc::O_RDWR;
        match r.mode & S_IFMT {
            S_IFDIR if write => return Err(FsError::IsDir),
            S_IFLNK => return Err(FsError::Loop),
            _ => {}
        }
        if write && flags & libc::O_TRUNC != 0 && r.is_reg() {
            let records = self.view(|t| file::record_count(t, ino))?;
            self.tx(&mut st.meta, 4 + records / 8, AllocClass::Reserved, |tx| {
                let mut r = tx.inode(ino)?;
                file::truncate(tx, ino, &mut r, 0)?;
                touch_modified(&mut r, tx.now);
                tx.log.push(log::LogRec::SetAttr {
                    ino,
                    mode: None,
                    uid: None,
                    gid: None,
                    size: Some(0),
                    times: [None, Some(r.mtime), Some(r.ctime), None],
                });
                tx.put_inode(ino, &r)
            })?;
        }
        Ok(Self::new_handle(
            st,
            Handle {
                ino,
                dir: false,
                read,
                write,
                append: flags & libc::O_APPEND != 0,
            },
        ))
    }

    /// Fail with ENOSPC unless the pool can take `bytes` more of data.
    fn check_data_space(&self, bytes: u64) -> Result<()> {
        let pool = self.store.pool();
        // Space freed in the last txgs comes back only after DEFER_TXGS
        // commits: pay for those before refusing, as the store does for
        // tree space.
        for _ in 0..=aegis_pool::DEFER_TXGS {
            if bytes <= pool.available(AllocClass::Normal) || pool.space().deferred == 0 {
                break;
            }
            self.store.commit()?;
        }
        if bytes > pool.available(AllocClass::Normal) {
            return Err(FsError::NoSpace);
        }
        Ok(())
    }

    fn write_locked(&self, st: &mut State, ino: Ino, offset: u64, data: &[u8]) -> Result<()> {
        check_range(offset, data.len() as u64)?;
        let rs = self.record_size as u64;
        self.check_data_space(file::write_cost(rs, offset, data.len() as u64))?;
        let records = data.len() as u64 / rs + 2;
        self.tx(&mut st.meta, records + 2, AllocClass::Normal, |tx| {
            let mut r = tx.inode(ino)?;
            file::write(tx, ino, &mut r, offset, data)?;
            touch_modified(&mut r, tx.now);
            // The data is copied into a record only if the log can take
            // it; a metadata-only file logs just the size the write gave.
            if policy_of(tx.tree, ino) == log::LogPolicy::Metadata {
                tx.log.push(log::LogRec::Extend {
                    ino,
                    size: offset + data.len() as u64,
                });
            } else if self.opts.intent_log && self.log.lock().takes(data.len()) {
                tx.log.push(log::LogRec::Write {
                    ino,
                    offset,
                    data: data.to_vec(),
                });
            } else {
                tx.unlogged = true;
            }
            tx.put_inode(ino, &r)
        })
    }

    /// unlink (`rmdir` false) or rmdir (`rmdir` true) of `parent/name`: the
    /// entry goes, the child loses a link and becomes an orphan at zero.
    fn remove_entry(&self, parent: Ino, name: &[u8], rmdir: bool) -> Result<()> {
        check_removable_name(name)?;
        let mut st = self.state.lock();
        let st = &mut *st;
        let ino = self.tx(&mut st.meta, NAMESPACE_OPS, AllocClass::Reserved, |tx| {
            let mut p = tx.inode(parent)?;
            if !p.is_dir() {
                return Err(FsError::NotDir);
            }
            let f = dir::find(tx.tree, parent, name)?.ok_or(FsError::NotFound)?;
            let mut c = tx.inode(f.ino)?;
            match (rmdir, c.is_dir()) {
                (false, true) => return Err(FsError::IsDir),
                (true, false) => return Err(FsError::NotDir),
                (true, true) if c.size != 0 => return Err(FsError::NotEmpty),
                _ => {}
            }
            dir::remove(tx, parent, &mut p, name, &f)?;
            touch_modified(&mut p, tx.now);
            if rmdir {
                p.nlink -= 1;
                c.nlink = 0;
            } else {
                c.nlink -= 1;
            }
            tx.put_inode(parent, &p)?;
            c.ctime = tx.now;
            tx.put_inode(f.ino, &c)?;
            if c.nlink == 0 {
                Self::orphan(tx, f.ino)?;
            }
            let name = name.to_vec();
            tx.log.push(if rmdir {
                log::LogRec::Rmdir { parent, name }
            } else {
                log::LogRec::Unlink { parent, name }
            });
            Ok((c.nlink == 0).then_some(f.ino))
        })?;
        self.orphaned(st, ino);
        Ok(())
    }

    /// Set the intent log policy of a file or directory (`full`,
    /// `metadata`, `none`); logged like any change.
    fn set_policy(&self, ino: Ino, value: &[u8]) -> Result<()> {
        let p = std::str::from_utf8(value)
            .ok()
            .and_then(|v| log::LogPolicy::parse(v.trim_end_matches(['\n', '\0'])))
            .ok_or(FsError::InvalidArgument(
                "logging policy is full, metadata or none",
            ))?;
        let mut st = self.state.lock();
        self.tx(&mut st.meta, 2, AllocClass::Normal, |tx| {
            let mut r = tx.inode(ino)?;
            if !(r.is_reg() || r.is_dir()) {
                return Err(FsError::NotPermitted);
            }
            tx.tree.insert(&keys::policy(ino), &[p as u8])?;
            r.ctime = tx.now;
            tx.put_inode(ino, &r)?;
            tx.log.push(log::LogRec::SetXattr {
                ino,
                name: log::POLICY_XATTR.to_vec(),
                value: p.name().as_bytes().to_vec(),
                flags: 0,
            });
            Ok(())
        })
    }

    /// Zero `[offset, end)` of a file (a hole afterwards); with
    /// `grow_to`, also extend it to at least that size.
    fn punch_locked(
        &self,
        st: &mut State,
        ino: Ino,
        offset: u64,
        end: u64,
        grow_to: Option<u64>,
    ) -> Result<()> {
        let ops = 4 + (end - offset) / self.record_size as u64 / 8;
        self.tx(&mut st.meta, ops, AllocClass::Reserved, |tx| {
            let mut r = tx.inode(ino)?;
            file::punch(tx, ino, &mut r, offset, end)?;
            touch_modified(&mut r, tx.now);
            tx.log.push(log::LogRec::Punch { ino, offset, end });
            if let Some(size) = grow_to {
                if size > r.size {
                    r.size = size;
                    tx.log.push(log::LogRec::Extend { ino, size });
                }
            }
            tx.put_inode(ino, &r)
        })
    }

    /// Grow a file to `size` (a hole), as fallocate mode 0 does.
    fn extend_locked(&self, st: &mut State, ino: Ino, size: u64) -> Result<()> {
        self.tx(&mut st.meta, 1, AllocClass::Normal, |tx| {
            let mut r = tx.inode(ino)?;
            if size > r.size {
                r.size = size;
                touch_modified(&mut r, tx.now);
                tx.log.push(log::LogRec::Extend { ino, size });
            }
            tx.put_inode(ino, &r)
        })
    }

    fn list(
        &self,
        ino: Ino,
        fh: Fh,
        offset: u64,
        max: usize,
        plus: bool,
    ) -> Result<Vec<(DirEntry, Option<Attr>)>> {
        let mut st = self.state.lock();
        let h = Self::handle(&st, ino, fh)?;
        if !h.dir {
            return Err(FsError::BadHandle);
        }
        let rs = self.record_size;
        let rows = self.view(|t| {
            let d = read_inode(t, ino)?;
            if !d.is_dir() {
                return Err(FsError::NotDir);
            }
            let mut out: Vec<(DirEntry, Option<Attr>)> = Vec::new();
            if offset < 1 {
                out.push((dot(ino, 1, b"."), plus.then(|| attr(ino, &d, rs))));
            }
            if offset < 2 {
                let a = match plus {
                    true => Some(attr(d.parent, &read_inode(t, d.parent)?, rs)),
                    false => None,
                };
                out.push((dot(d.parent, 2, b".."), a));
            }
            if out.len() < max {
                for (cookie, e) in dir::list_after(t, ino, offset.max(2), max - out.len())? {
                    // Plain readdir needs only the entry: the child's inode
                    // is read for readdirplus alone.
                    let a = if plus {
                        Some(attr(e.ino, &read_inode(t, e.ino)?, rs))
                    } else {
                        None
                    };
                    let entry = DirEntry {
                        ino: e.ino,
                        offset: cookie,
                        kind: kind_of(e.file_type),
                        name: e.name,
                    };
                    out.push((entry, a));
                }
            }
            out.truncate(max);
            Ok(out)
        })?;
        if plus {
            for (e, _) in &rows {
                if e.offset > 2 {
                    Self::add_lookup(&mut st, e.ino);
                }
            }
        }
        Ok(rows)
    }

    /// fsync and fsyncdir: write the intent log and flush; a txg commit
    /// when the log is off or cannot take it.
    fn sync_handle(&self, ino: Ino, fh: Fh) -> Result<()> {
        Self::handle(&self.state.lock(), ino, fh)?;
        if self.read_only {
            return Ok(());
        }
        if !self.opts.intent_log {
            return self.sync();
        }
        match log::write_pending(&self.log, self.store.pool())? {
            log::Logged::Done => Ok(()),
            log::Logged::NeedCommit => self.sync(),
        }
    }

    /// Find the dataset's log ring (a writable mount of an image made
    /// without one makes it now), then replay the log a crash left: re-run
    /// its records on the last txg, commit. A record that does not apply
    /// ends the replay there, as a torn block does.
    fn replay_log(&self) -> Result<()> {
        let pool = self.store.pool().clone();
        let (ring, head) = self.view(|t| {
            let ring = recorded_ring(t, &pool)?;
            let head = match t.get(&keys::log_head())? {
                Some(v) => Some(LogHead::decode(&v)?),
                None => None,
            };
            Ok((ring, head))
        })?;
        let ring = match ring {
            Some(r) => Some(r),
            None if self.opts.intent_log => {
                match aegis_fs::posix::create_log_ring(&self.store, self.ds, 0) {
                    Ok(r) => {
                        tracing::info!(bytes = r.len, "made an intent log ring for this dataset");
                        Some(r)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "no intent log ring could be made: every fsync commits a transaction group");
                        None
                    }
                }
            }
            None => None,
        };
        let (records, end) = match (ring, head) {
            (Some(r), Some(h)) => log::read_chain(&pool, r, h),
            (None, Some(_)) => {
                tracing::warn!("an intent log head without a ring: ignored, nothing to replay");
                (Vec::new(), 0)
            }
            (_, None) => (Vec::new(), 0),
        };
        {
            let mut l = self.log.lock();
            l.ring = ring;
            // New chains start after the replayed one, which stays intact
            // until the commit below is durable.
            l.cursor = end;
            l.floor = head.map_or(end, |h| h.pos);
            l.replaying = true;
        }
        let total = records.len();
        let mut applied = 0;
        for r in &records {
            let res = log::LogRec::decode(r).and_then(|rec| self.apply(&rec));
            if let Err(e) = res {
                tracing::warn!(applied, total, error = %e, "intent log replay stopped at a record that does not apply");
                break;
            }
            applied += 1;
        }
        {
            let mut l = self.log.lock();
            l.replaying = false;
            l.stats.replayed = applied as u64;
        }
        if let Some(h) = head {
            // The chain is spent: drop its head in this txg.
            let mut st = self.state.lock();
            self.tx(&mut st.meta, 1, AllocClass::Reserved, |tx| {
                tx.tree.remove(&keys::log_head())?;
                Ok(())
            })?;
            if total > 0 {
                tracing::info!(applied, total, chain = h.chain, "replayed the intent log");
            }
        }
        // Commit the replay and a ring just made.
        self.store.sync_if_dirty()?;
        Ok(())
    }

    /// Re-run one logged change.
    fn apply(&self, rec: &log::LogRec) -> Result<()> {
        use log::LogRec as L;
        let name = |n: &[u8]| OsStr::from_bytes(n).to_owned();
        match rec {
            L::Mknod {
                parent,
                name: n,
                mode,
                rdev,
                uid,
                gid,
                ino,
            } => {
                let req = Request {
                    uid: *uid,
                    gid: *gid,
                    pid: 0,
                };
                let mut st = self.state.lock();
                let a = self.create_node(
                    &mut st,
                    &req,
                    *parent,
                    n,
                    mode & S_IFMT,
                    mode & 0o7777,
                    *rdev,
                    None,
                )?;
                Self::forget_locked(&mut st, a.ino);
                self.check_replayed_ino(a.ino, *ino)
            }
            L::Symlink {
                parent,
                name: n,
                target,
                uid,
                gid,
                ino,
            } => {
                let req = Request {
                    uid: *uid,
                    gid: *gid,
                    pid: 0,
                };
                let mut st = self.state.lock();
                let a =
                    self.create_node(&mut st, &req, *parent, n, S_IFLNK, 0o777, 0, Some(target))?;
                Self::forget_locked(&mut st, a.ino);
                self.check_replayed_ino(a.ino, *ino)
            }
            L::Unlink { parent, name: n } => self.unlink(*parent, &name(n)),
            L::Rmdir { parent, name: n } => self.rmdir(*parent, &name(n)),
            L::Rename {
                parent,
                name: n,
                newparent,
                newname,
                flags,
            } => self.rename(*parent, &name(n), *newparent, &name(newname), *flags),
            L::Link {
                ino,
                newparent,
                newname,
            } => {
                let a = self.link(*ino, *newparent, &name(newname))?;
                self.forget(a.ino, 1);
                Ok(())
            }
            L::SetAttr {
                ino,
                mode,
                uid,
                gid,
                size,
                times,
            } => {
                let t = |v: Option<i64>| v.map(|n| TimeOrNow::Time(inode::from_ns(n)));
                let set = SetAttr {
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                    size: *size,
                    atime: t(times[0]),
                    mtime: t(times[1]),
                    ctime: times[2].map(inode::from_ns),
                    crtime: times[3].map(inode::from_ns),
                };
                self.setattr(&Request::root(), *ino, &set, None).map(|_| ())
            }
            L::Write { ino, offset, data } => {
                let mut st = self.state.lock();
                self.write_locked(&mut st, *ino, *offset, data)
            }
            L::Punch { ino, offset, end } => {
                let mut st = self.state.lock();
                self.punch_locked(&mut st, *ino, *offset, *end, None)
            }
            L::Extend { ino, size } => {
                let mut st = self.state.lock();
                self.extend_locked(&mut st, *ino, *size)
            }
            L::SetXattr {
                ino,
                name: n,
                value,
                flags,
            } => self.setxattr(*ino, &name(n), value, *flags),
            L::RemoveXattr { ino, name: n } => self.removexattr(*ino, &name(n)),
        }
    }

    fn check_replayed_ino(&self, got: Ino, want: Ino) -> Result<()> {
        if got == want {
            Ok(())
        } else {
            Err(FsError::Io(format!(
                "intent log replay created inode {got} where the log says {want}"
            )))
        }
    }

    fn forget_locked(st: &mut State, ino: Ino) {
        if let Some(r) = st.refs.get_mut(&ino) {
            r.lookups = r.lookups.saturating_sub(1);
        }
    }
}

/// An object's intent log policy; `full` unless set (or unreadable).
fn policy_of(tree: &aegis_btree::Tree, ino: Ino) -> log::LogPolicy {
    match tree.get(&keys::policy(ino)) {
        Ok(Some(v)) if v.len() == 1 => {
            log::LogPolicy::from_u8(v[0]).unwrap_or(log::LogPolicy::Full)
        }
        _ => log::LogPolicy::Full,
    }
}

fn dot(ino: Ino, cookie: u64, name: &[u8]) -> DirEntry {
    DirEntry {
        ino,
        offset: cookie,
        kind: FileType::Directory,
        name: name.to_vec(),
    }
}

impl FileSystem for DiskFs {
    fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr> {
        let name = bytes(name);
        check_name(name)?;
        let mut st = self.state.lock();
        let (ino, rec) = self.view(|t| {
            let p = read_inode(t, parent)?;
            if !p.is_dir() {
                return Err(FsError::NotDir);
            }
            let ino = match name {
                b"." => parent,
                b".." => p.parent,
                _ => dir::find(t, parent, name)?.ok_or(FsError::NotFound)?.ino,
            };
            Ok((ino, read_inode(t, ino)?))
        })?;
        Self::add_lookup(&mut st, ino);
        Ok(self.attr_of(ino, &rec))
    }

    fn forget(&self, ino: Ino, nlookup: u64) {
        let mut st = self.state.lock();
        if let Some(r) = st.refs.get_mut(&ino) {
            r.lookups = r.lookups.saturating_sub(nlookup);
            self.release_orphan(&mut st, ino);
        }
    }

    fn getattr(&self, ino: Ino) -> Result<Attr> {
        // A read of one record: no need to wait for the namespace lock.
        let r = self.inode(ino)?;
        Ok(attr(ino, &r, self.record_size))
    }

    fn setattr(&self, _req: &Request, ino: Ino, set: &SetAttr, fh: Option<Fh>) -> Result<Attr> {
        let mut st = self.state.lock();
        if let Some(fh) = fh {
            Self::handle(&st, ino, fh)?;
        }
        let records = match set.size {
            Some(_) => self.view(|t| file::record_count(t, ino))?,
            None => 0,
        };
        let r = self.tx(&mut st.meta, 4 + records / 8, AllocClass::Reserved, |tx| {
            let mut r = tx.inode(ino)?;
            let now = tx.now;
            if let Some(size) = set.size {
                regular(&r)?;
                check_range(size, 0)?;
                if size > r.size {
                    // Growing allocates nothing; only the check above applies.
                }
                file::truncate(tx, ino, &mut r, size)?;
                touch_modified(&mut r, now);
            }
            let mut changed = set.size.is_some();
            if let Some(mode) = set.mode {
                r.mode = (r.mode & S_IFMT) | (mode & 0o7777);
                changed = true;
            }
            if let Some(uid) = set.uid {
                r.uid = uid;
                changed = true;
            }
            if let Some(gid) = set.gid {
                r.gid = gid;
                changed = true;
            }
            if let Some(t) = set.atime {
                r.atime = set_time(t, now);
                changed = true;
            }
            if let Some(t) = set.mtime {
                r.mtime = set_time(t, now);
                changed = true;
            }
            if let Some(t) = set.crtime {
                r.crtime = to_ns(t);
                changed = true;
            }
            if let Some(t) = set.ctime {
                r.ctime = to_ns(t);
            } else if changed {
                r.ctime = now;
            }
            tx.put_inode(ino, &r)?;
            let t = |on: bool, v: i64| on.then_some(v);
            tx.log.push(log::LogRec::SetAttr {
                ino,
                mode: set.mode.map(|m| m & 0o7777),
                uid: set.uid,
                gid: set.gid,
                size: set.size,
                times: [
                    t(set.atime.is_some(), r.atime),
                    t(set.mtime.is_some() || set.size.is_some(), r.mtime),
                    Some(r.ctime),
                    t(set.crtime.is_some(), r.crtime),
                ],
            });
            Ok(r)
        })?;
        Ok(self.attr_of(ino, &r))
    }

    fn mknod(
        &self,
        req: &Request,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        rdev: u64,
    ) -> Result<Attr> {
        let (ftype, rdev) = match mode & S_IFMT {
            0 | S_IFREG => (S_IFREG, 0),
            S_IFDIR => return Err(FsError::NotPermitted),
            t @ (S_IFCHR | S_IFBLK) => (t, rdev),
            t @ (S_IFIFO | S_IFSOCK) => (t, 0),
            _ => return Err(FsError::InvalidArgument("bad file type for mknod")),
        };
        let mut st = self.state.lock();
        self.create_node(&mut st, req, parent, bytes(name), ftype, mode, rdev, None)
    }

    fn mkdir(&self, req: &Request, parent: Ino, name: &OsStr, mode: u32) -> Result<Attr> {
        let mut st = self.state.lock();
        self.create_node(&mut st, req, parent, bytes(name), S_IFDIR, mode, 0, None)
    }

    fn unlink(&self, parent: Ino, name: &OsStr) -> Result<()> {
        self.remove_entry(parent, bytes(name), false)
    }

    fn rmdir(&self, parent: Ino, name: &OsStr) -> Result<()> {
        self.remove_entry(parent, bytes(name), true)
    }

    fn symlink(&self, req: &Request, parent: Ino, name: &OsStr, target: &OsStr) -> Result<Attr> {
        let target = bytes(target);
        if target.is_empty() {
            return Err(FsError::NotFound);
        }
        if target.len() > SYMLINK_MAX {
            return Err(FsError::NameTooLong);
        }
        let mut st = self.state.lock();
        self.create_node(
            &mut st,
            req,
            parent,
            bytes(name),
            S_IFLNK,
            0o777,
            0,
            Some(target),
        )
    }

    fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        let _st = self.state.lock();
        self.view(|t| {
            let r = read_inode(t, ino)?;
            if r.mode & S_IFMT != S_IFLNK {
                return Err(FsError::InvalidArgument("not a symlink"));
            }
            xattr::read_symlink(t, ino)
        })
    }

    fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
    ) -> Result<()> {
        let (name, newname) = (bytes(name), bytes(newname));
        check_rename(name, newname, flags)?;
        let mut st = self.state.lock();
        let st = &mut *st;
        let limit = st.meta.inodes;
        let rec = log::LogRec::Rename {
            parent,
            name: name.to_vec(),
            newparent,
            newname: newname.to_vec(),
            flags,
        };
        let freed = self.tx(
            &mut st.meta,
            2 * NAMESPACE_OPS,
            AllocClass::Reserved,
            |tx| {
                // Kept only if the rename succeeds (a no-op one replays as one).
                tx.log.push(rec.clone());
                let now = tx.now;
                let p = tx.inode(parent)?;
                if !p.is_dir() {
                    return Err(FsError::NotDir);
                }
                let sf = dir::find(tx.tree, parent, name)?.ok_or(FsError::NotFound)?;
                let np = tx.inode(newparent)?;
                if !np.is_dir() {
                    return Err(FsError::NotDir);
                }
                if np.nlink == 0 {
                    return Err(FsError::NotFound);
                }
                let df = dir::find(tx.tree, newparent, newname)?;
                let src = sf.ino;
                let src_is_dir = sf.file_type == S_IFDIR;

                if flags == RENAME_EXCHANGE {
                    let df = df.ok_or(FsError::NotFound)?;
                    let dst = df.ino;
                    if src == dst {
                        return Ok(None);
                    }
                    let dst_is_dir = df.file_type == S_IFDIR;
                    if parent != newparent
                        && ((src_is_dir && dir::is_ancestor(tx.tree, src, newparent, limit)?)
                            || (dst_is_dir && dir::is_ancestor(tx.tree, dst, parent, limit)?))
                    {
                        return Err(FsError::InvalidArgument(
                            "directory moved into its own subtree",
                        ));
                    }
                    dir::repoint(tx, parent, name, &sf, dst, df.file_type)?;
                    dir::repoint(tx, newparent, newname, &df, src, sf.file_type)?;
                    let mut s = tx.inode(src)?;
                    let mut d = tx.inode(dst)?;
                    if parent != newparent {
                        if src_is_dir {
                            s.parent = newparent;
                        }
                        if dst_is_dir {
                            d.parent = parent;
                        }
                    }
                    s.ctime = now;
                    d.ctime = now;
                    tx.put_inode(src, &s)?;
                    tx.put_inode(dst, &d)?;
                    let mut p = tx.inode(parent)?;
                    let mut np = tx.inode(newparent)?;
                    if parent != newparent {
                        match (src_is_dir, dst_is_dir) {
                            (true, false) => {
                                p.nlink -= 1;
                                np.nlink += 1;
                            }
                            (false, true) => {
                                np.nlink -= 1;
                                p.nlink += 1;
                            }
                            _ => {}
                        }
                    }
                    touch_modified(&mut p, now);
                    tx.put_inode(parent, &p)?;
                    if parent != newparent {
                        touch_modified(&mut np, now);
                        tx.put_inode(newparent, &np)?;
                    }
                    return Ok(None);
                }

                if src_is_dir && dir::is_ancestor(tx.tree, src, newparent, limit)? {
                    return Err(FsError::InvalidArgument(
                        "directory moved into its own subtree",
                    ));
                }
                if let Some(df) = &df {
                    if flags == RENAME_NOREPLACE {
                        return Err(FsError::Exists);
                    }
                    if df.ino == src {
                        return Ok(None);
                    }
                    let d = tx.inode(df.ino)?;
                    match (src_is_dir, d.is_dir()) {
                        (true, false) => return Err(FsError::NotDir),
                        (false, true) => return Err(FsError::IsDir),
                        (true, true) if d.size != 0 => return Err(FsError::NotEmpty),
                        _ => {}
                    }
                }
                // All checks passed: change.
                let mut p = tx.inode(parent)?;
                dir::remove(tx, parent, &mut p, name, &sf)?;
                tx.put_inode(parent, &p)?;
                let mut freed = None;
                if let Some(df) = &df {
                    let mut np = tx.inode(newparent)?;
                    dir::remove(tx, newparent, &mut np, newname, df)?;
                    let mut d = tx.inode(df.ino)?;
                    d.ctime = now;
                    if d.is_dir() {
                        d.nlink = 0;
                        np.nlink -= 1;
                    } else {
                        d.nlink -= 1;
                    }
                    tx.put_inode(newparent, &np)?;
                    tx.put_inode(df.ino, &d)?;
                    if d.nlink == 0 {
                        Self::orphan(tx, df.ino)?;
                        freed = Some(df.ino);
                    }
                }
                let mut np = tx.inode(newparent)?;
                dir::insert(tx, newparent, &mut np, newname, src, sf.file_type)?;
                let mut s = tx.inode(src)?;
                if src_is_dir && parent != newparent {
                    s.parent = newparent;
                    np.nlink += 1;
                    tx.put_inode(newparent, &np)?;
                    let mut p = tx.inode(parent)?;
                    p.nlink -= 1;
                    tx.put_inode(parent, &p)?;
                } else {
                    tx.put_inode(newparent, &np)?;
                }
                s.ctime = now;
                tx.put_inode(src, &s)?;
                for d in [parent, newparent] {
                    let mut r = tx.inode(d)?;
                    touch_modified(&mut r, now);
                    tx.put_inode(d, &r)?;
                }
                Ok(freed)
            },
        )?;
        self.orphaned(st, freed);
        Ok(())
    }

    fn link(&self, ino: Ino, newparent: Ino, newname: &OsStr) -> Result<Attr> {
        let newname = bytes(newname);
        check_new_name(newname)?;
        let mut st = self.state.lock();
        let r = self.tx(&mut st.meta, NAMESPACE_OPS, AllocClass::Normal, |tx| {
            let mut r = tx.inode(ino)?;
            if r.is_dir() {
                return Err(FsError::NotPermitted);
            }
            if r.nlink == 0 {
                return Err(FsError::NotFound);
            }
            let mut np = tx.inode(newparent)?;
            if !np.is_dir() {
                return Err(FsError::NotDir);
            }
            if np.nlink == 0 {
                return Err(FsError::NotFound);
            }
            if dir::find(tx.tree, newparent, newname)?.is_some() {
                return Err(FsError::Exists);
            }
            dir::insert(tx, newparent, &mut np, newname, ino, r.mode & S_IFMT)?;
            touch_modified(&mut np, tx.now);
            tx.put_inode(newparent, &np)?;
            r.nlink += 1;
            r.ctime = tx.now;
            tx.put_inode(ino, &r)?;
            tx.log.push(log::LogRec::Link {
                ino,
                newparent,
                newname: newname.to_vec(),
            });
            Ok(r)
        })?;
        Self::add_lookup(&mut st, ino);
        Ok(self.attr_of(ino, &r))
    }

    fn open(&self, ino: Ino, flags: i32) -> Result<Fh> {
        let mut st = self.state.lock();
        self.open_locked(&mut st, ino, flags)
    }

    fn create(
        &self,
        req: &Request,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<(Attr, Fh)> {
        let name = bytes(name);
        check_new_name(name)?;
        let mut st = self.state.lock();
        let existing = self.view(|t| {
            let p = read_inode(t, parent)?;
            if !p.is_dir() {
                return Err(FsError::NotDir);
            }
            if p.nlink == 0 {
                return Err(FsError::NotFound);
            }
            dir::find(t, parent, name)
        })?;
        if let Some(f) = existing {
            if flags & libc::O_EXCL != 0 {
                return Err(FsError::Exists);
            }
            if f.file_type == S_IFDIR {
                return Err(FsError::IsDir);
            }
            let fh = self.open_locked(&mut st, f.ino, flags)?;
            Self::add_lookup(&mut st, f.ino);
            let r = self.inode(f.ino)?;
            return Ok((self.attr_of(f.ino, &r), fh));
        }
        let attr = self.create_node(&mut st, req, parent, name, S_IFREG, mode, 0, None)?;
        let fh = self.open_locked(&mut st, attr.ino, flags & !libc::O_TRUNC)?;
        Ok((attr, fh))
    }

    fn read(&self, ino: Ino, fh: Fh, offset: u64, size: u32) -> Result<Vec<u8>> {
        // Reads run in parallel (the kernel sends several for readahead):
        // the namespace lock only checks the handle, and the inode and its
        // records are read under one tree read lock, so they agree.
        let h = Self::handle(&self.state.lock(), ino, fh)?;
        let rs = self.record_size as u64;
        let (r, out) = self.view(|t| {
            let r = read_inode(t, ino)?;
            regular(&r)?;
            if !h.read {
                return Err(FsError::BadHandle);
            }
            let out = file::read(t, ino, &r, rs, offset, size)?;
            Ok((r, out))
        })?;
        let now = now_ns();
        if !self.read_only && atime_due(&r, now, self.opts.atime) {
            let mut st = self.state.lock();
            let touched = self.tx(&mut st.meta, 1, AllocClass::Normal, |tx| {
                let mut r = tx.inode(ino)?;
                r.atime = tx.now;
                tx.put_inode(ino, &r)
            });
            // The data was read: a full pool or a racing delete must not
            // turn that into an error just because atime stayed behind.
            if let Err(e) = touched {
                tracing::debug!(ino, error = %e, "atime not updated");
            }
        }
        Ok(out)
    }

    fn write(&self, ino: Ino, fh: Fh, offset: u64, data: &[u8]) -> Result<u32> {
        let len =
            u32::try_from(data.len()).map_err(|_| FsError::InvalidArgument("write over 4 GiB"))?;
        let mut st = self.state.lock();
        let h = Self::handle(&st, ino, fh)?;
        let r = self.inode(ino)?;
        regular(&r)?;
        if !h.write {
            return Err(FsError::BadHandle);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let offset = if h.append { r.size } else { offset };
        self.write_locked(&mut st, ino, offset, data)?;
        Ok(len)
    }

    fn flush(&self, ino: Ino, fh: Fh) -> Result<()> {
        Self::handle(&self.state.lock(), ino, fh).map(|_| ())
    }

    fn release(&self, ino: Ino, fh: Fh) -> Result<()> {
        let mut st = self.state.lock();
        Self::handle(&st, ino, fh)?;
        st.handles.remove(&fh);
        if let Some(r) = st.refs.get_mut(&ino) {
            r.opens = r.opens.saturating_sub(1);
        }
        self.release_orphan(&mut st, ino);
        Ok(())
    }

    fn fsync(&self, ino: Ino, fh: Fh, _datasync: bool) -> Result<()> {
        self.sync_handle(ino, fh)
    }

    fn opendir(&self, ino: Ino, _flags: i32) -> Result<Fh> {
        let mut st = self.state.lock();
        if !self.inode(ino)?.is_dir() {
            return Err(FsError::NotDir);
        }
        Ok(Self::new_handle(
            &mut st,
            Handle {
                ino,
                dir: true,
                read: true,
                write: false,
                append: false,
            },
        ))
    }

    fn readdir(&self, ino: Ino, fh: Fh, offset: u64, max_entries: usize) -> Result<Vec<DirEntry>> {
        Ok(self
            .list(ino, fh, offset, max_entries, false)?
            .into_iter()
            .map(|(e, _)| e)
            .collect())
    }

    fn readdirplus(
        &self,
        ino: Ino,
        fh: Fh,
        offset: u64,
        max_entries: usize,
    ) -> Result<Vec<(DirEntry, Attr)>> {
        Ok(self
            .list(ino, fh, offset, max_entries, true)?
            .into_iter()
            .map(|(e, a)| (e, a.expect("readdirplus lists attributes")))
            .collect())
    }

    fn releasedir(&self, ino: Ino, fh: Fh) -> Result<()> {
        self.release(ino, fh)
    }

    fn fsyncdir(&self, ino: Ino, fh: Fh, _datasync: bool) -> Result<()> {
        self.sync_handle(ino, fh)
    }

    fn statfs(&self, _ino: Ino) -> Result<StatFs> {
        let st = self.state.lock();
        let pool = self.store.pool();
        let bs = pool.block_size() as u64;
        let space = pool.space();
        let blocks = space.total / bs;
        let bfree = space.free / bs;
        let bavail = pool.available(AllocClass::Normal) / bs;
        Ok(StatFs {
            blocks,
            bfree,
            bavail,
            // No inode table: any free block can hold inodes.
            files: st.meta.inodes + bavail,
            ffree: bavail,
            bsize: self.record_size,
            namelen: NAME_MAX as u32,
            frsize: bs as u32,
        })
    }

    fn setxattr(&self, ino: Ino, name: &OsStr, value: &[u8], flags: i32) -> Result<()> {
        let name = bytes(name);
        if name == log::POLICY_XATTR {
            return self.set_policy(ino, value);
        }
        let user = check_xattr_name(name)?;
        let mut st = self.state.lock();
        let ops = 4 + value.len() as u64 / 128;
        self.tx(&mut st.meta, ops, AllocClass::Normal, |tx| {
            let mut r = tx.inode(ino)?;
            if user && !(r.is_reg() || r.is_dir()) {
                return Err(FsError::NotPermitted);
            }
            if flags & !(XATTR_CREATE | XATTR_REPLACE) != 0 || flags == XATTR_CREATE | XATTR_REPLACE
            {
                return Err(FsError::InvalidArgument("bad setxattr flags"));
            }
            if value.len() > XATTR_SIZE_MAX {
                return Err(FsError::XattrTooBig);
            }
            let names = xattr::names(tx.tree, ino)?;
            let exists = names.iter().any(|n| n == name);
            if exists && flags == XATTR_CREATE {
                return Err(FsError::Exists);
            }
            if !exists && flags == XATTR_REPLACE {
                return Err(FsError::NoData);
            }
            let list_len: usize = names.iter().map(|n| n.len() + 1).sum();
            if !exists && list_len + name.len() + 1 > XATTR_LIST_MAX {
                return Err(FsError::NoSpace);
            }
            xattr::set(tx, ino, name, value)?;
            r.ctime = tx.now;
            tx.log.push(log::LogRec::SetXattr {
                ino,
                name: name.to_vec(),
                value: value.to_vec(),
                flags,
            });
            tx.put_inode(ino, &r)
        })
    }

    fn getxattr(&self, ino: Ino, name: &OsStr, size: u32) -> Result<XattrReply> {
        let name = bytes(name);
        if name == log::POLICY_XATTR {
            let p = self.view(|t| {
                read_inode(t, ino)?;
                Ok(policy_of(t, ino))
            })?;
            return xattr_reply(p.name().as_bytes().to_vec(), size);
        }
        check_xattr_name(name)?;
        let _st = self.state.lock();
        let v = self.view(|t| {
            read_inode(t, ino)?;
            xattr::get(t, ino, name)?.ok_or(FsError::NoData)
        })?;
        xattr_reply(v, size)
    }

    fn listxattr(&self, ino: Ino, size: u32) -> Result<XattrReply> {
        let _st = self.state.lock();
        let names = self.view(|t| {
            read_inode(t, ino)?;
            xattr::names(t, ino)
        })?;
        let mut out = Vec::new();
        for n in names {
            out.extend_from_slice(&n);
            out.push(0);
        }
        xattr_reply(out, size)
    }

    fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<()> {
        let name = bytes(name);
        check_xattr_name(name)?;
        let mut st = self.state.lock();
        self.tx(&mut st.meta, 4 + 64, AllocClass::Reserved, |tx| {
            let mut r = tx.inode(ino)?;
            if xattr::get(tx.tree, ino, name)?.is_none() {
                return Err(FsError::NoData);
            }
            xattr::remove(tx, ino, name)?;
            r.ctime = tx.now;
            tx.log.push(log::LogRec::RemoveXattr {
                ino,
                name: name.to_vec(),
            });
            tx.put_inode(ino, &r)
        })
    }

    fn access(&self, req: &Request, ino: Ino, mask: i32) -> Result<()> {
        let r = self.inode(ino)?;
        check_access(req, r.uid, r.gid, r.mode & 0o7777, r.is_dir(), mask)
    }

    fn fallocate(&self, ino: Ino, fh: Fh, offset: u64, length: u64, mode: i32) -> Result<()> {
        let mut st = self.state.lock();
        let h = Self::handle(&st, ino, fh)?;
        let r = self.inode(ino)?;
        regular(&r)?;
        if !h.write {
            return Err(FsError::BadHandle);
        }
        if length == 0 {
            return Err(FsError::InvalidArgument("fallocate length 0"));
        }
        let end = check_range(offset, length)?;
        const KEEP: i32 = libc::FALLOC_FL_KEEP_SIZE;
        const PUNCH: i32 = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        match mode {
            // Copy-on-write cannot reserve blocks for later overwrites (ZFS
            // neither): allocation only extends the size.
            0 | KEEP => {
                if mode == 0 && end > r.size {
                    self.extend_locked(&mut st, ino, end)?;
                }
                Ok(())
            }
            PUNCH => self.punch_locked(&mut st, ino, offset, end, None),
            _ => Err(FsError::NotSupported),
        }
    }

    fn lseek(&self, ino: Ino, fh: Fh, offset: i64, whence: Whence) -> Result<u64> {
        let st = self.state.lock();
        Self::handle(&st, ino, fh)?;
        let rs = self.record_size as u64;
        let r = self.inode(ino)?;
        regular(&r)?;
        let neg = FsError::InvalidArgument("negative offset");
        match whence {
            Whence::Set => u64::try_from(offset).map_err(|_| neg),
            Whence::End => {
                let pos = (r.size as i128) + offset as i128;
                u64::try_from(pos).map_err(|_| neg)
            }
            Whence::Data | Whence::Hole => {
                let off = u64::try_from(offset).map_err(|_| FsError::NoSuchOffset)?;
                self.view(|t| {
                    if whence == Whence::Data {
                        file::seek_data(t, ino, &r, rs, off)
                    } else {
                        file::seek_hole(t, ino, &r, rs, off)
                    }
                })
            }
        }
    }

    fn copy_file_range(
        &self,
        ino_in: Ino,
        fh_in: Fh,
        offset_in: u64,
        ino_out: Ino,
        fh_out: Fh,
        offset_out: u64,
        len: u64,
        flags: u32,
    ) -> Result<u64> {
        if flags != 0 {
            return Err(FsError::InvalidArgument("copy_file_range flags"));
        }
        let mut st = self.state.lock();
        let (hi, ho) = (
            Self::handle(&st, ino_in, fh_in)?,
            Self::handle(&st, ino_out, fh_out)?,
        );
        let rin = self.inode(ino_in)?;
        regular(&rin)?;
        regular(&self.inode(ino_out)?)?;
        if !hi.read || !ho.write || ho.append {
            return Err(FsError::BadHandle);
        }
        let n = len.min(rin.size.saturating_sub(offset_in));
        check_range(offset_in, len)?;
        check_range(offset_out, n)?;
        if ino_in == ino_out
            && offset_in < offset_out.saturating_add(len)
            && offset_out < offset_in.saturating_add(len)
        {
            return Err(FsError::InvalidArgument(
                "overlapping copy_file_range in one file",
            ));
        }
        if n == 0 {
            return Ok(0);
        }
        let rs = self.record_size as u64;
        let mut done = 0u64;
        while done < n {
            let piece = (n - done).min(rs - (offset_out + done) % rs);
            let buf =
                self.view(|t| file::read(t, ino_in, &rin, rs, offset_in + done, piece as u32))?;
            let at = offset_out + done;
            if buf.iter().all(|&b| b == 0) {
                // A hole stays a hole: punch, and extend the size if needed.
                self.punch_locked(&mut st, ino_out, at, at + piece, Some(at + piece))?;
            } else {
                self.write_locked(&mut st, ino_out, at, &buf)?;
            }
            done += piece;
        }
        let now = now_ns();
        if !self.read_only && atime_due(&rin, now, self.opts.atime) {
            self.tx(&mut st.meta, 2, AllocClass::Normal, |tx| {
                let mut r = tx.inode(ino_in)?;
                r.atime = tx.now;
                tx.put_inode(ino_in, &r)?;
                let mut o = tx.inode(ino_out)?;
                touch_modified(&mut o, tx.now);
                tx.put_inode(ino_out, &o)
            })?;
        } else {
            self.tx(&mut st.meta, 1, AllocClass::Normal, |tx| {
                let mut o = tx.inode(ino_out)?;
                touch_modified(&mut o, tx.now);
                tx.put_inode(ino_out, &o)
            })?;
        }
        Ok(n)
    }
}
