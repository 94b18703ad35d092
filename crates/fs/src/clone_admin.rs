//! Writable clones: a dataset whose tree starts at a snapshot's root.
//!
//! Creating one copies nothing: the new dataset record names the
//! snapshot's root, its `prev_snap_txg` is the snapshot's txg (so every
//! block it inherits goes on its own dead list when it lets go of it,
//! never to the free path) and its origin is the snapshot, whose clone
//! count goes up by one in the same txg. The origin's intent log ring is
//! not the clone's: the clone's tree loses the ring and head records, and
//! its first writable mount makes a ring of its own.
//!
//! Destroying a clone frees only what it wrote: the blocks its tree
//! reaches born after the origin's txg (`rollback::blocks_born_after`),
//! its own log ring; its dead list entries are the origin's blocks and
//! only go from the list. The origin's clone count goes down with it.
//!
//! Invariants: a snapshot with clones is never deleted (`delete_snapshot`
//! refuses, naming the way out); a clone's snapshots are never older than
//! its origin, so the origin's txg is the floor of its `prev_snap_txg`.

use aegis_btree::Tree;
use aegis_pool::{AllocClass, BlockPtr, Extent};

use crate::dataset::{dataset_key, DatasetRecord, DATASET_TREE_KIND};
use crate::dataset_admin::{name_is_free, room_for_dataset, validate_name};
use crate::error::{FsError, Result};
use crate::posix::keys;
use crate::snapshot::snapshot_key;
use crate::store::{now_ns, Store, Trees};
use crate::tx::TxSize;

impl Store {
    /// Make dataset `name` a writable clone of dataset `ds`'s snapshot
    /// `snap`, and commit. Returns the new dataset's id.
    pub fn clone_snapshot(&self, ds: u64, snap: &str, name: &str) -> Result<u64> {
        validate_name(name)?;
        self.writable_with_snapshots()?;
        let id = {
            let mut t = self.trees.write();
            name_is_free(&t, name)?;
            room_for_dataset(&t)?;
            let (origin, rec) = crate::snapshot_admin::find(&t, ds, snap)?;
            let (txg, root) = (rec.txg, rec.root.clone());
            self.check_space(&t, ds, TxSize::ops(4, AllocClass::Normal))?;
            let id = t.next_object_id();
            let mut rec = DatasetRecord::new(name, self.pool.open_txg(), now_ns());
            rec.root = root;
            rec.prev_snap_txg = txg;
            rec.deadlist = id + 1;
            rec.origin = origin;
            let mut tree = Tree::open(
                self.pool.clone(),
                self.cache.clone(),
                DATASET_TREE_KIND,
                &rec.root,
            );
            tree.remove(&keys::log_ring())?;
            tree.remove(&keys::log_head())?;
            let reserved = crate::store::reserved_in(&tree)?;
            t.pool_tree.insert(&dataset_key(id), &rec.encode())?;
            t.datasets.insert(id, tree);
            t.records.insert(id, rec);
            count_clone(&mut t, origin, 1)?;
            self.reserved.lock().insert(id, reserved);
            id
        };
        self.commit()?;
        Ok(id)
    }

    /// What destroying clone `id` frees: the blocks it wrote and its own
    /// log ring. Its dead list goes (the origin holds those blocks) and
    /// the origin counts one clone less, in the caller's txg.
    pub(crate) fn release_clone(
        &self,
        t: &mut Trees,
        id: u64,
    ) -> Result<(Vec<BlockPtr>, Option<Extent>)> {
        let rec = t.records.get(&id).ok_or(FsError::NoDataset(id))?;
        let (origin, list) = (rec.origin, rec.deadlist);
        let floor = t.origin_txg(id);
        let tree = t.datasets.get(&id).ok_or(FsError::NoDataset(id))?;
        let blocks = crate::rollback::blocks_born_after(tree, floor)?;
        let ring = crate::intent_log::recorded_ring(tree, &self.pool)?;
        t.drop_dead_list(list)?;
        count_clone(t, origin, -1)?;
        Ok((blocks, ring))
    }
}

/// Snapshot `origin` has `delta` clones more.
fn count_clone(t: &mut Trees, origin: u64, delta: i64) -> Result<()> {
    let snap = t
        .snapshots
        .get_mut(&origin)
        .ok_or_else(|| FsError::Damaged(format!("a clone's origin snapshot {origin} is gone")))?;
    snap.clones = u32::try_from(snap.clones as i64 + delta)
        .map_err(|_| FsError::Damaged(format!("snapshot {origin}'s clone count")))?;
    let encoded = snap.encode();
    t.pool_tree.insert(&snapshot_key(origin), &encoded)?;
    Ok(())
}
