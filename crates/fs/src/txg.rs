//! Transaction groups: committing the open txg, and the thread that does
//! it on a timer and when asked.
//!
//! A commit flushes each dirty dataset tree (children before parents, so
//! every parent pointer carries its child's checksum), records the new
//! dataset roots in the pool tree, flushes the pool tree, frees the blocks
//! the txg replaced (the pool defers those frees DEFER_TXGS commits), and
//! hands the pool tree root to `Pool::commit`, which writes the space map
//! and every new block the txg still holds in memory (the pool's
//! write-behind buffer), flushes, writes the uberblock to every label and
//! flushes again.
//!
//! Commits are serialised by `commit_lock`; while one runs, writers wait on
//! the tree lock, so a txg never mixes half of an operation.

use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use crate::dataset::dataset_key;
use crate::error::{FsError, Result};
use crate::posix::{file_data, keys, DatasetMeta};
use crate::store::{Store, Trees};
use crate::tx::Tx;

/// The sync thread's control, shared on its own so that a waiting thread
/// holds only a weak reference to the store: a store dropped without
/// `shutdown` must not live on and commit stale state later.
#[derive(Default)]
pub(crate) struct SyncThread {
    shared: Arc<SyncShared>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct SyncShared {
    state: Mutex<SyncState>,
    cv: Condvar,
}

#[derive(Default)]
struct SyncState {
    requested: bool,
    stop: bool,
}

impl SyncThread {
    pub(crate) fn request(&self) {
        self.shared.state.lock().requested = true;
        self.shared.cv.notify_one();
    }

    fn stop(&self) {
        self.shared.state.lock().stop = true;
        self.shared.cv.notify_all();
    }
}

impl Drop for SyncThread {
    fn drop(&mut self) {
        // The store is going away (without shutdown: as a crash would); the
        // thread must not outlive it.
        self.stop();
    }
}

impl Store {
    /// Commit the open txg now (even when nothing is dirty: `sync` means
    /// "make what I did durable", and an empty commit is cheap). Returns
    /// the committed txg number.
    pub fn commit(&self) -> Result<u64> {
        let _serial = self.commit_lock.lock();
        if let Some(why) = self.broken.lock().as_ref() {
            return Err(FsError::Invalid(format!(
                "not committing: a failed change could not be undone ({why})"
            )));
        }
        let mut guard = self.trees.write();
        let t = &mut *guard;
        let ids: Vec<u64> = t.dirty.keys().copied().collect();
        for id in ids {
            self.settle_dirty(t, id)?;
        }
        for (&id, tree) in t.datasets.iter_mut() {
            if !tree.is_dirty() {
                continue;
            }
            // The dataset's intent log closes its chain and records the
            // next one's head in this txg, while nothing else can change
            // the tree.
            if let Some(log) = t.logs.get(&id) {
                log.on_commit(tree)?;
            }
            let flushed = tree.flush()?;
            for bp in &flushed.freed {
                self.pool.free(bp)?;
            }
            let rec = t.records.get_mut(&id).ok_or(FsError::NoDataset(id))?;
            rec.root = flushed.root;
            t.pool_tree.insert(&dataset_key(id), &rec.encode())?;
        }
        let flushed = t.pool_tree.flush()?;
        for bp in &flushed.freed {
            self.pool.free(bp)?;
        }
        Ok(self.pool.commit(&flushed.root)?)
    }

    /// Turn dataset `ds`'s dirty records into blocks, in the open txg: the
    /// compression, checksums and allocation of a whole txg's writes,
    /// once per record. Undone whole if it fails, so the commit fails
    /// with the dirty records still in memory.
    fn settle_dirty(&self, t: &mut Trees, ds: u64) -> Result<()> {
        let (Some(dirty), Some(tree)) = (t.dirty.get_mut(&ds), t.datasets.get_mut(&ds)) else {
            return Ok(());
        };
        if dirty.is_empty() {
            return Ok(());
        }
        let meta = match tree.get(&keys::meta())? {
            Some(v) => DatasetMeta::decode(&v)?,
            None => {
                return Err(FsError::Invalid(format!(
                    "dataset {ds}: dirty records but no filesystem"
                )))
            }
        };
        tree.begin_undo();
        let mut tx = Tx::new(tree, &self.pool, None, dirty, meta);
        if let Err(e) = file_data::settle_all(&mut tx) {
            self.undo(tx);
            return Err(e);
        }
        // Settling rewrites records that are not preallocated: the meta
        // record (and the upper layer's copy of it) stays as it was.
        debug_assert!(!tx.meta_dirty, "settling changed the dataset meta record");
        tx.tree.commit_undo();
        tx.dirty_undo.clear();
        for bp in &tx.to_free {
            self.pool.free(bp)?;
        }
        Ok(())
    }

    /// Commit only if something changed since the last commit.
    pub fn sync_if_dirty(&self) -> Result<Option<u64>> {
        if self.trees.read().is_dirty() {
            self.commit().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Start the background thread that commits every `sync_interval`
    /// while dirty, and at once when a writer asks.
    pub fn start_sync_thread(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let shared = self.sync.shared.clone();
        let interval = self.opts.sync_interval;
        let handle = std::thread::Builder::new()
            .name("aegis-txg-sync".into())
            .spawn(move || loop {
                {
                    let mut st = shared.state.lock();
                    if !st.requested && !st.stop {
                        shared.cv.wait_for(&mut st, interval);
                    }
                    if st.stop {
                        return;
                    }
                    st.requested = false;
                }
                // Strong only while committing.
                let Some(store) = weak.upgrade() else { return };
                if let Err(e) = store.sync_if_dirty() {
                    tracing::error!(error = %e, "background commit failed");
                }
            })
            .expect("spawn sync thread");
        *self.sync.handle.lock() = Some(handle);
    }

    /// Stop the sync thread and commit what is dirty: a clean close. A
    /// halted store commits nothing: it closes as it stood.
    pub fn shutdown(&self) -> Result<()> {
        self.stop_sync_thread();
        if !self.pool.is_read_only() && !self.pool.is_halted() {
            self.sync_if_dirty()?;
        }
        Ok(())
    }

    /// Stop every write to the devices now (`FS_IOC_SHUTDOWN`): what was
    /// durable stays exactly as it was, and every later commit fails. The
    /// changes since the last durable point are lost, as in a crash.
    pub fn halt(&self) {
        // Gates first: a commit in flight fails instead of finishing.
        self.pool.halt();
        self.stop_sync_thread();
    }

    pub fn is_halted(&self) -> bool {
        self.pool.is_halted()
    }

    fn stop_sync_thread(&self) {
        self.sync.stop();
        if let Some(h) = self.sync.handle.lock().take() {
            let _ = h.join();
        }
    }
}
