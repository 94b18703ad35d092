//! Creating, renaming, listing and destroying the datasets of a pool.
//!
//! A pool holds several filesystems, each a dataset: a record in the pool
//! tree (`dataset.rs`) naming its own tree. The root dataset (id 16, named
//! `root`) comes with the pool and cannot be destroyed or renamed; a new
//! one takes the largest id in use plus one, so ids grow as datasets come
//! and go (an id freed by a destroy of the newest one is taken again,
//! which is safe: nothing outside a dataset's own tree and record names
//! its id).
//!
//! Invariants: names are unique in a pool, 1 to [`MAX_DATASET_NAME`]
//! bytes of UTF-8 without `/`, `@`, NUL or control characters, and not `.`
//! or `..` (they become path components and `IMAGE/NAME@SNAP` arguments);
//! every change here happens under the trees lock and is committed before
//! it returns, so a crash leaves a dataset whole or absent. A destroy
//! frees every block the dataset's tree reaches (its nodes, its files'
//! data, its intent log ring) in the same txg that removes its record.

use aegis_btree::Tree;
use aegis_pool::{BlockPtr, Extent, Pool};

use crate::dataset::{
    dataset_key, DatasetRecord, DATASET_TREE_KIND, MAX_DATASET_NAME, ROOT_DATASET,
};
use crate::error::{FsError, Result};
use crate::store::{now_ns, Store, Trees};

/// Most datasets `create_dataset` lets a pool hold (so a pool this code
/// made keeps `list`, fsck and the open of its trees bounded).
pub const MAX_DATASETS: usize = 4096;

/// One dataset, as `list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetInfo {
    pub id: u64,
    pub name: String,
    pub created_txg: u64,
    pub created_ns: u64,
}

/// Check a dataset name: a clear refusal for each way it can be wrong.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |why: &str| Err(FsError::Invalid(format!("dataset name {name:?}: {why}")));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_DATASET_NAME {
        return bad(&format!("longer than {MAX_DATASET_NAME} bytes"));
    }
    if name == "." || name == ".." {
        return bad("not a usable name");
    }
    if name.starts_with('%') {
        return bad("starts with % (the names of time travel snapshots)");
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, '/' | '@') || c.is_control())
    {
        return bad(&format!("holds {c:?}"));
    }
    Ok(())
}

impl Store {
    /// Every dataset, in id order.
    pub fn datasets(&self) -> Vec<DatasetInfo> {
        self.trees
            .read()
            .records
            .iter()
            .map(|(&id, r)| DatasetInfo {
                id,
                name: r.name.clone(),
                created_txg: r.created_txg,
                created_ns: r.created_ns,
            })
            .collect()
    }

    /// The id of the dataset named `name`.
    pub fn dataset_id(&self, name: &str) -> Result<u64> {
        self.trees
            .read()
            .records
            .iter()
            .find(|(_, r)| r.name == name)
            .map(|(&id, _)| id)
            .ok_or_else(|| FsError::Invalid(format!("no dataset named {name:?}")))
    }

    /// Create a dataset named `name`, let `init` fill it (a filesystem:
    /// `posix::format`, which commits), and commit. If `init` fails the
    /// dataset is taken out again before any commit sees it. Returns its
    /// id.
    pub fn create_dataset(&self, name: &str, init: impl FnOnce(u64) -> Result<()>) -> Result<u64> {
        validate_name(name)?;
        self.check_writable()?;
        let id = {
            let mut t = self.trees.write();
            name_is_free(&t, name)?;
            room_for_dataset(&t)?;
            let id = t.next_object_id();
            let rec = DatasetRecord::new(name, self.pool().open_txg(), now_ns());
            t.pool_tree.insert(&dataset_key(id), &rec.encode())?;
            let tree = Tree::open(
                self.pool().clone(),
                self.cache().clone(),
                DATASET_TREE_KIND,
                &rec.root,
            );
            t.datasets.insert(id, tree);
            t.records.insert(id, rec);
            id
        };
        if let Err(e) = init(id) {
            self.forget_new_dataset(id);
            return Err(e);
        }
        self.commit()?;
        Ok(id)
    }

    /// Take a dataset created in the open txg out again (its `init`
    /// failed): nothing of it was committed, so dropping its tree drops
    /// all it holds; its log ring, if any was recorded, goes back too.
    fn forget_new_dataset(&self, id: u64) {
        let mut t = self.trees.write();
        if let Some(tree) = t.datasets.get(&id) {
            if let Ok(Some(e)) = crate::intent_log::recorded_ring(tree, self.pool()) {
                if let Err(f) = self.pool().free_unrecorded(e) {
                    tracing::warn!(error = %f, "could not free a new dataset's log ring");
                }
            }
        }
        if let Err(f) = t.pool_tree.remove(&dataset_key(id)) {
            tracing::warn!(error = %f, "could not take a new dataset's record out");
        }
        t.datasets.remove(&id);
        t.quotas.remove(&id);
        t.records.remove(&id);
        t.dirty.remove(&id);
    }

    /// Rename dataset `from` to `to` and commit.
    pub fn rename_dataset(&self, from: &str, to: &str) -> Result<()> {
        validate_name(to)?;
        self.check_writable()?;
        let id = self.dataset_id(from)?;
        if id == ROOT_DATASET {
            return Err(FsError::Invalid("the root dataset keeps its name".into()));
        }
        {
            let mut t = self.trees.write();
            name_is_free(&t, to)?;
            let rec = t.records.get_mut(&id).ok_or(FsError::NoDataset(id))?;
            rec.name = to.to_string();
            let encoded = rec.encode();
            t.pool_tree.insert(&dataset_key(id), &encoded)?;
        }
        self.commit()?;
        Ok(())
    }

    /// Destroy dataset `name`, freeing every block it holds, and commit.
    /// The caller makes sure nothing has it mounted (the image lock).
    pub fn destroy_dataset(&self, name: &str) -> Result<()> {
        self.check_writable()?;
        let id = self.dataset_id(name)?;
        if id == ROOT_DATASET {
            return Err(FsError::Invalid(
                "the root dataset cannot be destroyed; it is the pool's own".into(),
            ));
        }
        let snaps = self.snapshots(id).len();
        if snaps > 0 {
            return Err(FsError::Invalid(format!(
                "dataset {name:?} has {snaps} snapshot(s); delete them first"
            )));
        }
        // Anything the dataset changed in the open txg lands first, so its
        // tree is all on disk and the walk sees every block.
        self.commit()?;
        {
            let mut t = self.trees.write();
            let tree = t.datasets.get(&id).ok_or(FsError::NoDataset(id))?;
            if tree.is_dirty() {
                return Err(FsError::Invalid(
                    "the dataset changed while it was being destroyed".into(),
                ));
            }
            let (blocks, ring) = match t.records.get(&id).map_or(0, |r| r.origin) {
                0 => owned_blocks(tree, self.pool())?,
                _ => self.release_clone(&mut t, id)?,
            };
            t.pool_tree.remove(&dataset_key(id))?;
            t.datasets.remove(&id);
            t.quotas.remove(&id);
            t.quotas.remove(&id);
            t.records.remove(&id);
            t.dirty.remove(&id);
            t.logs.remove(&id);
            t.release_blocks(self.pool(), &blocks)?;
            if let Some(e) = ring {
                self.pool().free_log_ring(e)?;
            }
            self.reserved.lock().remove(&id);
        }
        self.commit()?;
        Ok(())
    }

    /// Bytes dataset `id` takes on disk as last committed: every copy of
    /// its tree's nodes and its files' blocks, and its intent log ring
    /// (a snapshot's: what its tree reaches, shared or not; the ring is
    /// its dataset's). A walk of the whole tree, for tools (`dataset
    /// list`, `snapshot list`).
    pub fn dataset_used_bytes(&self, id: u64) -> Result<u64> {
        let t = self.trees.read();
        let tree = t.tree(id).ok_or(FsError::NoDataset(id))?;
        let (blocks, ring) = owned_blocks(tree, self.pool())?;
        let ring = ring.filter(|_| !t.snapshots.contains_key(&id));
        let bs = self.pool().block_size();
        let data: u64 = blocks
            .iter()
            .map(|bp| bp.allocated_size(bs) * bp.addrs.len() as u64)
            .sum();
        Ok(data + ring.map_or(0, |e| e.len))
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.is_read_only() {
            return Err(FsError::Pool(aegis_pool::PoolError::ReadOnly));
        }
        Ok(())
    }
}

/// Refuse a new dataset when the pool holds the most it may.
pub(crate) fn room_for_dataset(t: &Trees) -> Result<()> {
    if t.records.len() >= MAX_DATASETS {
        return Err(FsError::Invalid(format!(
            "the pool holds {MAX_DATASETS} datasets, the most it can"
        )));
    }
    Ok(())
}

/// Refuse `name` if a dataset of the pool has it.
pub(crate) fn name_is_free(t: &Trees, name: &str) -> Result<()> {
    match t.records.values().any(|r| r.name == name) {
        true => Err(FsError::Invalid(format!(
            "a dataset named {name:?} exists already"
        ))),
        false => Ok(()),
    }
}

/// Every block of a dataset tree on disk (its nodes and the data blocks
/// of its file records: all born after txg 0, one walk) and its intent
/// log ring. A tree with changes not committed is refused.
pub(crate) fn owned_blocks(tree: &Tree, pool: &Pool) -> Result<(Vec<BlockPtr>, Option<Extent>)> {
    let blocks = crate::rollback::blocks_born_after(tree, 0)?;
    let ring = crate::intent_log::recorded_ring(tree, pool)?;
    Ok((blocks, ring))
}
