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
//! Commits are serialised by `commit_lock`. A commit holds the trees lock
//! exclusively only while it closes the txg (settling dirty records and
//! flushing the trees into new blocks), so a txg never mixes half of an
//! operation; the closed txg's blocks, flushes and uberblock are written
//! after the lock is released, while readers and the next txg's changes
//! go on (ZFS's syncing txg beside the open one). Writers that reach the
//! dirty limit meanwhile wait for that write (`commit_over_limit`): the
//! dirty limit counts the syncing txg's blocks too.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use aegis_pool::ClosedTxg;
use parking_lot::{Condvar, Mutex};

use crate::dataset::dataset_key;
use crate::error::{FsError, Result};
use crate::posix::file_data;
use crate::store::{Store, Trees};
use crate::tx::{read_meta, Tx};

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
    /// the committed txg number, durable when this returns.
    pub fn commit(&self) -> Result<u64> {
        let _serial = self.commit_lock.lock();
        self.commit_serialised()
    }

    /// A writer past the dirty limit: wait for the commit in flight, then
    /// commit unless that one brought dirty memory back under the limit
    /// (so a crowd of throttled writers makes one commit, not one each).
    pub(crate) fn commit_over_limit(&self) -> Result<()> {
        let _serial = self.commit_lock.lock();
        if self.dirty_now() > self.opts.dirty_limit {
            self.commit_serialised()?;
        }
        Ok(())
    }

    /// Block until txg `txg` is durable: wait for the commit in flight,
    /// and commit if that was not it.
    pub fn wait_durable(&self, txg: u64) -> Result<()> {
        if self.pool.durable_txg() >= txg {
            return Ok(());
        }
        let _serial = self.commit_lock.lock();
        if self.pool.durable_txg() < txg {
            self.commit_serialised()?;
        }
        Ok(())
    }

    /// Memory the open and the syncing txg hold.
    pub(crate) fn dirty_now(&self) -> u64 {
        self.trees.read().dirty_bytes(self.pool.block_size()) + self.pool.buffered_bytes()
    }

    /// The commit, in two stages: under the exclusive trees lock the txg
    /// is closed (dirty records settled, trees flushed into new blocks,
    /// space map written); then, with the trees free for the next txg's
    /// changes and readers, its blocks go to disk and the uberblock after
    /// them. The caller holds `commit_lock`: one closed txg at a time.
    pub(crate) fn commit_serialised(&self) -> Result<u64> {
        if let Some(why) = self.broken.lock().as_ref() {
            return Err(FsError::Invalid(format!(
                "not committing: a failed change could not be undone ({why})"
            )));
        }
        let started = Instant::now();
        let closed = {
            let mut guard = self.trees.write();
            self.close_txg(&mut guard)?
        };
        let closed_at = Instant::now();
        let txg = self.pool.finish_commit(closed)?;
        tracing::debug!(
            txg,
            close_ms = (closed_at - started).as_millis() as u64,
            write_ms = closed_at.elapsed().as_millis() as u64,
            "committed"
        );
        Ok(txg)
    }

    fn close_txg(&self, t: &mut Trees) -> Result<ClosedTxg> {
        let ids: Vec<u64> = t.dirty.keys().copied().collect();
        for id in ids {
            self.settle_dirty(t, id)?;
        }
        // Usage items land with the inodes they add up.
        t.write_quotas()?;
        let mut travel = Vec::new();
        let mut released = Vec::new();
        for (&id, tree) in t.datasets.iter_mut() {
            if !tree.is_dirty() {
                continue;
            }
            // A window takes a snapshot of each txg that changed the
            // dataset; not of a receive's half-applied batches.
            if crate::time_travel::window_of(tree)?.is_some()
                && tree.get(&crate::posix::keys::recv_state())?.is_none()
            {
                travel.push(id);
            }
            // The dataset's intent log closes its chain and records the
            // next one's head in this txg, while nothing else can change
            // the tree.
            if let Some(log) = t.logs.get(&id) {
                log.on_commit(tree)?;
            }
            let flushed = tree.flush()?;
            let rec = t.records.get_mut(&id).ok_or(FsError::NoDataset(id))?;
            rec.root = flushed.root;
            t.pool_tree.insert(&dataset_key(id), &rec.encode())?;
            released.push((id, flushed.freed));
        }
        // Node blocks, never reflinked, are released like any pointer.
        for (id, freed) in released {
            t.release(&self.pool, id, &freed)?;
        }
        t.file_dead_entries()?;
        t.request_time_travel(&travel, self.pool.open_txg());
        t.take_snapshots(&self.pool, &self.cache, self.pool.open_txg())?;
        let flushed = t.pool_tree.flush()?;
        for bp in &flushed.freed {
            self.pool.free(bp)?;
        }
        Ok(self.pool.begin_commit(&flushed.root)?)
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
        let meta = read_meta(tree, ds)?;
        let held_before = meta.reserved;
        tree.begin_undo();
        let mut tx = Tx::new(tree, &self.pool, None, dirty, meta);
        // A record written over a preallocated one moves part of its
        // share into its block: the meta record's counter follows.
        if let Err(e) = file_data::settle_all(&mut tx).and_then(|()| tx.write_meta()) {
            self.undo(tx);
            return Err(e);
        }
        tx.tree.commit_undo();
        tx.dirty_undo.clear();
        self.publish_reserved(ds, held_before, tx.meta.reserved);
        let to_free = std::mem::take(&mut tx.to_free);
        let quota = std::mem::take(&mut tx.quota);
        drop(tx);
        t.apply_quota(ds, &quota)?;
        t.release(&self.pool, ds, &to_free)
    }

    /// Commit only if something changed since the last commit.
    pub fn sync_if_dirty(&self) -> Result<Option<u64>> {
        if self.trees.read().is_dirty() {
            return self.commit().map(Some);
        }
        // A commit in flight may still be writing changes made before
        // this call: they are durable once it lands.
        self.wait_durable(self.pool.open_txg().saturating_sub(1))?;
        Ok(None)
    }

    /// Start the background thread that commits every `sync_interval`
    /// while dirty, and at once when a writer asks.
    pub fn start_sync_thread(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let shared = self.sync.shared.clone();
        let interval = self.opts.sync_interval;
        let mut schedules_at = Instant::now();
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
                // Snapshot schedules, at most once a second.
                if schedules_at.elapsed().as_secs() >= 1 {
                    schedules_at = Instant::now();
                    store.run_mounted_schedules();
                    store.expire_mounted_time_travel();
                }
                // Snapshot deletes go on a batch a round, the next round
                // at once while one is unfinished.
                match store.delete_in_background() {
                    Ok(true) => shared.state.lock().requested = true,
                    Ok(false) => {}
                    Err(e) => tracing::error!(error = %e, "background snapshot delete failed"),
                }
            })
            .expect("spawn sync thread");
        *self.sync.handle.lock() = Some(handle);
        // A delete a crash cut short goes on at once.
        if self.deletes_pending() {
            self.sync.request();
        }
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
