//! Taking, listing and deleting snapshots.
//!
//! A snapshot is taken when the txg closes (`close_txg`), after its
//! dataset's dirty records are settled and its tree flushed: the record
//! keeps the root just written, so creation costs one record whatever
//! the dataset holds, and the snapshot holds exactly the changes of the
//! txgs up to its own.
//!
//! A delete is two phases, each crash-safe on its own. The first marks
//! the record *deleting* (from then on it is no longer listed as usable,
//! mounted or walked), and if it was the dataset's newest snapshot lowers
//! the dataset's `prev_snap_txg` to the one before it, so blocks born
//! after that one are freed directly from then on. The second frees and
//! moves dead list entries (`dead_list.rs`) in batches of at most
//! [`DELETE_BATCH`] entries, one commit each, so no commit holds the
//! trees lock for more than one batch; the record goes in the txg that
//! finds nothing left. A pool opened with a delete half done finishes it
//! with [`Store::resume_snapshot_deletes`], or, mounted with a sync
//! thread, in the background, one batch per round of that thread.
//!
//! Invariants: deletes run oldest first, so the snapshots before a
//! deleting one are never deleting themselves; a snapshot with clones is
//! never deleted.

use std::sync::Arc;

use aegis_btree::{NodeCache, Tree};
use aegis_pool::{AllocClass, Pool, PoolError};

use crate::dataset::{dataset_key, DATASET_TREE_KIND, ROOT_DATASET};
use crate::dataset_admin::validate_name;
use crate::dead_list::entry_bytes;
use crate::error::{FsError, Result};
use crate::snapshot::{snapshot_key, SnapshotRecord};
use crate::store::{now_ns, Store, Trees};
use crate::tx::TxSize;

/// Most snapshots a pool holds (so listing, fsck and open stay bounded).
pub const MAX_SNAPSHOTS: usize = 65536;
/// Most dead list entries one delete commit frees or moves.
pub const DELETE_BATCH: usize = 2048;

/// A snapshot to take when the open txg closes.
#[derive(Clone, Debug)]
pub(crate) struct SnapRequest {
    pub ds: u64,
    pub id: u64,
    /// The dead list the dataset starts (its old one becomes the snapshot's).
    pub new_deadlist: u64,
    pub name: String,
    pub created_ns: u64,
    /// For a received snapshot, the guid of the one it was sent from.
    pub received_guid: Option<u64>,
}

/// One snapshot, as `snapshot list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub id: u64,
    pub dataset: u64,
    pub name: String,
    pub txg: u64,
    pub created_ns: u64,
    pub deleting: bool,
}

impl From<(u64, &SnapshotRecord)> for SnapshotInfo {
    fn from((id, r): (u64, &SnapshotRecord)) -> Self {
        SnapshotInfo {
            id,
            dataset: r.dataset,
            name: r.name.clone(),
            txg: r.txg,
            created_ns: r.created_ns,
            deleting: r.deleting,
        }
    }
}

impl Trees {
    /// The id a new dataset, snapshot or dead list takes: above every id
    /// in use, or to be used by a snapshot the open txg will take.
    pub(crate) fn next_object_id(&self) -> u64 {
        let datasets = self
            .records
            .iter()
            .flat_map(|(&id, r)| [id, r.deadlist, r.origin]);
        let snaps = self.snapshots.iter().flat_map(|(&id, r)| [id, r.deadlist]);
        let asked = self
            .snap_requests
            .iter()
            .flat_map(|r| [r.id, r.new_deadlist]);
        datasets
            .chain(snaps)
            .chain(asked)
            .max()
            .map_or(ROOT_DATASET, |m| (m + 1).max(ROOT_DATASET))
    }

    /// For a clone, the txg of the snapshot it was cloned from (its
    /// blocks born by then are the origin's); 0 for any other dataset.
    pub(crate) fn origin_txg(&self, ds: u64) -> u64 {
        let origin = self.records.get(&ds).map_or(0, |r| r.origin);
        self.snapshots.get(&origin).map_or(0, |s| s.txg)
    }

    /// Dataset `ds`'s snapshots by txg, oldest first.
    pub(crate) fn snapshots_of(&self, ds: u64) -> Vec<(u64, &SnapshotRecord)> {
        let mut v: Vec<_> = self
            .snapshots
            .iter()
            .filter(|(_, r)| r.dataset == ds)
            .map(|(&id, r)| (id, r))
            .collect();
        v.sort_by_key(|(_, r)| r.txg);
        v
    }

    /// Take the snapshots asked for, at the close of txg `txg` (after
    /// every dataset tree is flushed and the released blocks are filed on
    /// the dead lists they belong to).
    pub(crate) fn take_snapshots(
        &mut self,
        pool: &Arc<Pool>,
        cache: &Arc<NodeCache>,
        txg: u64,
    ) -> Result<()> {
        for req in std::mem::take(&mut self.snap_requests) {
            // A request for a dataset gone meanwhile is dropped, not a
            // failed commit: the txg closes whole either way.
            let Some(rec) = self.records.get_mut(&req.ds) else {
                tracing::warn!(dataset = req.ds, "a snapshot of a dataset that is gone");
                continue;
            };
            let snap = SnapshotRecord {
                name: req.name,
                dataset: req.ds,
                txg,
                created_ns: req.created_ns,
                deadlist: rec.deadlist,
                clones: 0,
                deleting: false,
                root: rec.root.clone(),
                received_guid: req.received_guid,
            };
            rec.deadlist = req.new_deadlist;
            rec.prev_snap_txg = txg;
            let encoded = rec.encode();
            self.pool_tree.insert(&dataset_key(req.ds), &encoded)?;
            self.pool_tree
                .insert(&snapshot_key(req.id), &snap.encode())?;
            let tree = Tree::open(pool.clone(), cache.clone(), DATASET_TREE_KIND, &snap.root);
            self.snap_trees.insert(req.id, tree);
            self.snapshots.insert(req.id, snap);
        }
        Ok(())
    }
}

/// What one delete step found to do.
enum Step {
    /// Entries freed or moved; more may follow.
    Batch(usize),
    /// Nothing was left: the record is gone.
    Done,
}

impl Store {
    /// Dataset `ds`'s snapshots, oldest first (those being deleted too,
    /// marked so).
    pub fn snapshots(&self, ds: u64) -> Vec<SnapshotInfo> {
        let t = self.trees.read();
        t.snapshots_of(ds)
            .into_iter()
            .map(SnapshotInfo::from)
            .collect()
    }

    /// The id of dataset `ds`'s usable snapshot named `name`.
    pub fn snapshot_id(&self, ds: u64, name: &str) -> Result<u64> {
        let t = self.trees.read();
        find(&t, ds, name).map(|(id, _)| id)
    }

    /// Is `id` a snapshot that is not being deleted (so its tree may be
    /// read)?
    pub fn snapshot_usable(&self, id: u64) -> bool {
        self.trees
            .read()
            .snapshots
            .get(&id)
            .is_some_and(|r| !r.deleting)
    }

    /// Is `id` a snapshot (so its tree is read-only)?
    pub fn is_snapshot(&self, id: u64) -> bool {
        self.trees.read().snapshots.contains_key(&id)
    }

    /// Take a snapshot of dataset `ds` named `name`: committed, with
    /// everything the dataset held when this was called, when this
    /// returns. Returns its id.
    pub fn create_snapshot(&self, ds: u64, name: &str) -> Result<u64> {
        self.create_snapshot_at(ds, name, now_ns())
    }

    /// As [`Store::create_snapshot`], recording `created_ns` as its time
    /// (a schedule's time of the round that took it).
    pub(crate) fn create_snapshot_at(&self, ds: u64, name: &str, created_ns: u64) -> Result<u64> {
        self.snapshot_with(ds, name, created_ns, None, |_| Ok(()))
    }

    /// Take a snapshot as [`Store::create_snapshot_at`] does, with
    /// `received_guid` for a received one, after `prepare` has changed
    /// the trees in the same txg (so both are committed, or neither).
    /// `prepare` runs under the trees lock and the commit lock: it must
    /// not commit, nor wait for space.
    pub(crate) fn snapshot_with(
        &self,
        ds: u64,
        name: &str,
        created_ns: u64,
        received_guid: Option<u64>,
        prepare: impl FnOnce(&mut Trees) -> Result<()>,
    ) -> Result<u64> {
        validate_name(name)?;
        self.writable_with_snapshots()?;
        let _serial = self.commit_lock.lock();
        let id = {
            let mut t = self.trees.write();
            if !t.records.contains_key(&ds) {
                return Err(FsError::NoDataset(ds));
            }
            if t.snapshots_of(ds).iter().any(|(_, r)| r.name == name) {
                return Err(FsError::Invalid(format!(
                    "a snapshot named {name:?} exists already"
                )));
            }
            if t.snapshots.len() >= MAX_SNAPSHOTS {
                return Err(FsError::Invalid(format!(
                    "the pool holds {MAX_SNAPSHOTS} snapshots, the most it can"
                )));
            }
            prepare(&mut t)?;
            let id = t.next_object_id();
            t.snap_requests.push(SnapRequest {
                ds,
                id,
                new_deadlist: id + 1,
                name: name.to_string(),
                created_ns,
                received_guid,
            });
            id
        };
        let committed = self.commit_serialised();
        let mut t = self.trees.write();
        // A failed commit leaves the request unanswered: take it back.
        t.snap_requests.retain(|r| r.id != id);
        committed?;
        match t.snapshots.contains_key(&id) {
            true => Ok(id),
            false => Err(FsError::Invalid("the snapshot was not taken".into())),
        }
    }

    /// Delete dataset `ds`'s snapshot `name`: mark it (committed), then
    /// free what only it held, in batches. `progress` hears the entries
    /// done so far after each batch.
    pub fn delete_snapshot(
        &self,
        ds: u64,
        name: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        self.begin_snapshot_delete(ds, name)?;
        self.resume_snapshot_deletes(progress)
    }

    /// Phase one of a delete, committed: the snapshot is gone for every
    /// user from here on; its blocks are freed by the sync thread (a
    /// batch a round) or by [`Store::resume_snapshot_deletes`].
    pub fn begin_snapshot_delete(&self, ds: u64, name: &str) -> Result<()> {
        self.writable_with_snapshots()?;
        {
            let mut t = self.trees.write();
            let (id, rec) = find(&t, ds, name)?;
            if rec.clones > 0 {
                return Err(FsError::Invalid(format!(
                    "snapshot {name:?} has {} clone(s); destroy or promote them first",
                    rec.clones
                )));
            }
            mark_deleting(&mut t, id)?;
        }
        self.commit()?;
        self.sync.request();
        Ok(())
    }

    /// Whether some snapshot delete is unfinished.
    pub fn deletes_pending(&self) -> bool {
        self.oldest_deleting().is_some()
    }

    /// Finish every delete a crash or an earlier error left half done,
    /// oldest first.
    pub fn resume_snapshot_deletes(&self, progress: &mut dyn FnMut(u64)) -> Result<()> {
        let mut done = 0u64;
        // Each step frees or moves entries, or ends a delete; entries are
        // finite, so this ends. The bound only stops a damaged list that
        // would never shrink.
        for _ in 0..1_000_000_000u64 {
            let Some(id) = self.oldest_deleting() else {
                return Ok(());
            };
            match self.delete_step(id)? {
                Step::Batch(n) => {
                    done += n as u64;
                    progress(done);
                }
                Step::Done => {}
            }
            self.commit()?;
        }
        Err(FsError::Damaged("a snapshot delete does not finish".into()))
    }

    /// One batch of the oldest unfinished delete, committed (the sync
    /// thread's share of the work on a mounted pool, so a large delete
    /// never holds the trees lock for more than one batch). Returns
    /// whether a delete is still unfinished.
    pub(crate) fn delete_in_background(&self) -> Result<bool> {
        if self.is_read_only() || self.is_halted() {
            return Ok(false);
        }
        let Some(id) = self.oldest_deleting() else {
            return Ok(false);
        };
        if let Step::Batch(n) = self.delete_step(id)? {
            tracing::debug!(snapshot = id, entries = n, "snapshot delete batch");
        }
        self.commit()?;
        Ok(self.oldest_deleting().is_some())
    }

    fn oldest_deleting(&self) -> Option<u64> {
        let t = self.trees.read();
        t.snapshots
            .iter()
            .filter(|(_, r)| r.deleting)
            .min_by_key(|(_, r)| (r.txg, r.dataset))
            .map(|(&id, _)| id)
    }

    /// One batch of deleting snapshot `id` (S): free the entries of the
    /// next one's (N) dead list born after the previous snapshot (P),
    /// which only S held; then move S's own entries to N's list.
    fn delete_step(&self, id: u64) -> Result<Step> {
        let mut t = self.trees.write();
        let s = t.snapshots.get(&id).ok_or(FsError::NoDataset(id))?.clone();
        let (prev_txg, next_list) = neighbours(&t, id, &s)?;
        let batch = self.delete_batch.load(std::sync::atomic::Ordering::Relaxed);
        let room = TxSize {
            run_bytes: 2 * batch as u64 * entry_bytes(3),
            ..TxSize::ops(1, AllocClass::Reserved)
        };
        self.check_space(&t, s.dataset, room)?;
        let only_s = t.dead_range(next_list, prev_txg, s.txg, batch)?;
        if !only_s.is_empty() {
            for (k, bp, count) in &only_s {
                t.pool_tree.remove(k)?;
                for _ in 0..*count {
                    t.release_block(&self.pool, bp)?;
                }
            }
            return Ok(Step::Batch(only_s.len()));
        }
        let own = match s.deadlist {
            0 => Vec::new(),
            list => t.dead_range(list, 0, u64::MAX, batch)?,
        };
        if !own.is_empty() {
            for (k, bp, count) in &own {
                t.pool_tree.remove(k)?;
                t.add_dead(next_list, bp, *count)?;
            }
            return Ok(Step::Batch(own.len()));
        }
        t.pool_tree.remove(&snapshot_key(id))?;
        t.snapshots.remove(&id);
        Ok(Step::Done)
    }

    /// Bytes deleting snapshot `id` would free now: the next one's dead
    /// list entries born after the snapshot before it.
    pub fn snapshot_unique_bytes(&self, id: u64) -> Result<u64> {
        let t = self.trees.read();
        let s = t.snapshots.get(&id).ok_or(FsError::NoDataset(id))?;
        let (prev_txg, next_list) = neighbours(&t, id, s)?;
        let bs = self.pool.block_size();
        let entries = t.dead_range(next_list, prev_txg, s.txg, usize::MAX)?;
        Ok(entries
            .iter()
            .map(|(_, bp, _)| bp.allocated_size(bs) * bp.addrs.len() as u64)
            .sum())
    }

    pub(crate) fn writable_with_snapshots(&self) -> Result<()> {
        if self.is_read_only() {
            return Err(FsError::Pool(PoolError::ReadOnly));
        }
        if !self.pool.snapshots_enabled() {
            return Err(FsError::Invalid(
                "this pool was made before snapshots existed (feature `snapshots` is off); run `aegisfs upgrade` on it first".into(),
            ));
        }
        Ok(())
    }
}

/// Dataset `ds`'s snapshot named `name`, not being deleted.
pub(crate) fn find<'a>(t: &'a Trees, ds: u64, name: &str) -> Result<(u64, &'a SnapshotRecord)> {
    t.snapshots_of(ds)
        .into_iter()
        .find(|(_, r)| r.name == name && !r.deleting)
        .ok_or_else(|| {
            let ds_name = t.records.get(&ds).map_or("?", |r| r.name.as_str());
            FsError::Invalid(format!(
                "dataset {ds_name:?} has no snapshot named {name:?}"
            ))
        })
}

/// The txg of the snapshot before `s` (0: none) and the dead list of the
/// one after it (the dataset's own if `s` is the newest).
fn neighbours(t: &Trees, id: u64, s: &SnapshotRecord) -> Result<(u64, u64)> {
    let all = t.snapshots_of(s.dataset);
    let prev = all
        .iter()
        .filter(|(i, r)| *i != id && r.txg < s.txg)
        .map(|(_, r)| r.txg)
        .max()
        .unwrap_or(t.origin_txg(s.dataset));
    let next = all
        .iter()
        .filter(|(i, r)| *i != id && r.txg > s.txg)
        .min_by_key(|(_, r)| r.txg)
        .map(|(_, r)| r.deadlist);
    let list = match next {
        Some(l) => l,
        None => {
            let rec = t
                .records
                .get(&s.dataset)
                .ok_or(FsError::NoDataset(s.dataset))?;
            rec.deadlist
        }
    };
    if list == 0 {
        return Err(FsError::Damaged(format!(
            "snapshot {:?}: the snapshot or dataset after it has no dead list",
            s.name
        )));
    }
    Ok((prev, list))
}

/// Phase one of a delete: the record says *deleting*, its tree is out of
/// use, and the dataset's `prev_snap_txg` no longer counts it.
fn mark_deleting(t: &mut Trees, id: u64) -> Result<()> {
    let s = t.snapshots.get_mut(&id).ok_or(FsError::NoDataset(id))?;
    s.deleting = true;
    let (ds, txg) = (s.dataset, s.txg);
    let encoded = s.encode();
    t.pool_tree.insert(&snapshot_key(id), &encoded)?;
    t.snap_trees.remove(&id);
    let newest_other = t
        .snapshots_of(ds)
        .iter()
        .filter(|(i, _)| *i != id)
        .map(|(_, r)| r.txg)
        .max()
        .unwrap_or(t.origin_txg(ds));
    let rec = t.records.get_mut(&ds).ok_or(FsError::NoDataset(ds))?;
    if rec.prev_snap_txg == txg {
        rec.prev_snap_txg = newest_other;
        let encoded = rec.encode();
        t.pool_tree.insert(&dataset_key(ds), &encoded)?;
    }
    Ok(())
}
