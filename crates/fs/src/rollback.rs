//! Rolling a dataset back to its newest snapshot, and the walk that finds
//! what a tree holds that was born after a txg (also what a clone's
//! destroy frees, and from txg 0, every block a dataset holds).
//!
//! Copy-on-write makes the walk cheap: a node is rewritten whenever a
//! child changes, so a node born at or before txg T reaches only blocks
//! born at or before T, and the walk skips its whole subtree. The cost
//! follows what changed after T, not the tree's size.
//!
//! A rollback to snapshot S (the newest; newer ones must be deleted
//! first, as `zfs rollback` without `-r` asks) happens in one txg: every
//! block the live tree holds born after S is freed; the live dead list
//! empties without freeing (its blocks are S's, which the dataset holds
//! again); the dataset's root becomes S's, without the intent log head
//! S recorded (that chain was written on after S and must not replay)
//! and with the dataset's own log ring record in place of S's.

use aegis_btree::{Child, Tree};
use aegis_pool::{AllocClass, BlockPtr};

use crate::dataset::{dataset_key, DATASET_TREE_KIND};
use crate::error::{FsError, Result};
use crate::posix::{keys, FileRecord};
use crate::store::{Store, Trees};
use crate::tx::TxSize;

/// Most nodes a walk visits: a damaged tree cannot make it loop (levels
/// must also fall by one per step).
const MAX_WALK_NODES: usize = 1 << 28;

/// Every block `tree` (as on disk) reaches that was born after `txg`:
/// nodes, and the data blocks of the leaves among them.
pub(crate) fn blocks_born_after(tree: &Tree, txg: u64) -> Result<Vec<BlockPtr>> {
    let mut out = Vec::new();
    let mut todo: Vec<(BlockPtr, Option<u8>)> = match tree.root_child() {
        Some(Child::Disk(bp)) if bp.birth_txg > txg => vec![(bp.clone(), None)],
        Some(Child::Dirty(_)) => {
            return Err(FsError::Invalid(
                "the tree has changes not committed".into(),
            ))
        }
        _ => Vec::new(),
    };
    while let Some((bp, want)) = todo.pop() {
        if out.len() >= MAX_WALK_NODES {
            return Err(FsError::Damaged("a tree walk does not end".into()));
        }
        let node = tree.load(&bp)?;
        if want.is_some_and(|l| l != node.level) {
            return Err(FsError::Damaged(format!(
                "tree node {} has level {}, not {}",
                bp.describe(),
                node.level,
                want.unwrap_or_default()
            )));
        }
        match node.level.checked_sub(1) {
            Some(below) => {
                for i in 0..node.children.len() {
                    match node.child_ptr(i) {
                        Some(c) if c.birth_txg > txg => todo.push((c.clone(), Some(below))),
                        _ => {}
                    }
                }
            }
            None => leaf_data_born_after(&node, txg, &mut out)?,
        }
        out.push(bp);
    }
    Ok(out)
}

fn leaf_data_born_after(node: &aegis_btree::Node, txg: u64, out: &mut Vec<BlockPtr>) -> Result<()> {
    for (k, v) in node.keys.iter().zip(&node.vals) {
        if keys::data_offset(k).is_none() {
            continue;
        }
        match FileRecord::decode(v)? {
            FileRecord::Block { bp, .. } | FileRecord::Prealloc { data: Some(bp), .. }
                if bp.birth_txg > txg =>
            {
                out.push(bp)
            }
            _ => {}
        }
    }
    Ok(())
}

impl Trees {
    /// Remove every entry of dead list `list` without freeing its blocks
    /// (someone else holds them). Returns how many went.
    pub(crate) fn drop_dead_list(&mut self, list: u64) -> Result<usize> {
        if list == 0 {
            return Ok(0);
        }
        let entries = self.dead_range(list, 0, u64::MAX, usize::MAX)?;
        for (k, _, _) in &entries {
            self.pool_tree.remove(k)?;
        }
        Ok(entries.len())
    }
}

impl Store {
    /// Roll dataset `ds` back to its snapshot `name`, which must be its
    /// newest, and commit. The dataset must not be mounted (the caller
    /// holds the image lock; a mount of this store is refused here).
    pub fn rollback(&self, ds: u64, name: &str) -> Result<()> {
        self.writable_with_snapshots()?;
        // Whatever the dataset changed in the open txg lands first, so its
        // tree is all on disk for the walk.
        self.commit()?;
        {
            let mut t = self.trees.write();
            if t.logs.contains_key(&ds) {
                return Err(FsError::Invalid(
                    "the dataset is mounted; unmount it before a rollback".into(),
                ));
            }
            let (id, snap) = crate::snapshot_admin::find(&t, ds, name)?;
            let (snap_txg, root) = (snap.txg, snap.root.clone());
            let newer: Vec<String> = t
                .snapshots
                .values()
                .filter(|r| r.dataset == ds && r.txg > snap_txg)
                .map(|r| r.name.clone())
                .collect();
            if !newer.is_empty() {
                return Err(FsError::Invalid(format!(
                    "snapshot {name:?} is not the newest ({} came after it); delete those first",
                    newer.join(", ")
                )));
            }
            self.check_space(&t, ds, TxSize::ops(4, AllocClass::Reserved))?;
            let tree = t.datasets.get(&ds).ok_or(FsError::NoDataset(ds))?;
            if tree.is_dirty() {
                return Err(FsError::Invalid(
                    "the dataset changed during the rollback".into(),
                ));
            }
            let discard = blocks_born_after(tree, snap_txg)?;
            self.swap_root(&mut t, ds, id, &root)?;
            t.release_blocks(&self.pool, &discard)?;
        }
        self.commit()?;
        Ok(())
    }

    /// The dataset's tree becomes snapshot `snap`'s root, its dead list
    /// empties, and the log head goes (see the module documentation).
    fn swap_root(
        &self,
        t: &mut Trees,
        ds: u64,
        snap: u64,
        root: &aegis_pool::TreeRoot,
    ) -> Result<()> {
        let rec = t.records.get(&ds).ok_or(FsError::NoDataset(ds))?;
        let list = rec.deadlist;
        // The dataset keeps its own log ring: the snapshot may have none
        // (it was received, or taken before the first mount), and the
        // ring's extent is the live dataset's to free.
        let ring = match t.datasets.get(&ds) {
            Some(live) => live.get(&keys::log_ring())?,
            None => None,
        };
        t.drop_dead_list(list)?;
        let mut tree = Tree::open(
            self.pool.clone(),
            self.cache.clone(),
            DATASET_TREE_KIND,
            root,
        );
        tree.remove(&keys::log_head())?;
        if let Some(ring) = ring {
            tree.insert(&keys::log_ring(), &ring)?;
        }
        let reserved = crate::store::reserved_in(&tree)?;
        let rec = t.records.get_mut(&ds).ok_or(FsError::NoDataset(ds))?;
        rec.root = root.clone();
        let encoded = rec.encode();
        t.pool_tree.insert(&dataset_key(ds), &encoded)?;
        t.datasets.insert(ds, tree);
        // The snapshot's usage items are the dataset's now.
        t.quotas.remove(&ds);
        t.dirty.remove(&ds);
        self.reserved.lock().insert(ds, reserved);
        tracing::info!(dataset = ds, snapshot = snap, "rolled back");
        Ok(())
    }
}
