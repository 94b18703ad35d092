//! One filesystem operation's view of the dataset tree: typed reads and
//! writes of inodes, the dataset meta record, and the data pool, all inside
//! one [`Store::with_tree_ops`](aegis_fs::Store::with_tree_ops) call so the
//! change lands in a single transaction group.
//!
//! Operations check every precondition before their first write, so an
//! error they return leaves the tree as it was; only an I/O error from the
//! tree itself can interrupt a change half way (the intent log's undo
//! closes that gap).

use std::ops::Bound;
use std::sync::Arc;

use aegis_btree::Tree;
use aegis_fs::posix::{keys, DatasetMeta, InodeRecord};
use aegis_pool::{BlockPtr, Pool};

use crate::error::{FsError, Result};

pub(crate) struct Tx<'a> {
    pub tree: &'a mut Tree,
    pub meta: &'a mut DatasetMeta,
    pub meta_dirty: bool,
    pub now: i64,
    /// Blocks written by this operation: freed again if it fails.
    pub written: Vec<BlockPtr>,
    /// Blocks this operation stops using: freed only if it succeeds.
    pub to_free: Vec<BlockPtr>,
    /// Intent log records of this operation, appended if it succeeds.
    pub log: Vec<super::log::LogRec>,
    /// The operation changed something it did not record (a write too
    /// large for the log): the log is spent until the next commit.
    pub unlogged: bool,
}

impl Tx<'_> {
    pub fn pool(&self) -> Arc<Pool> {
        self.tree.pool().clone()
    }

    pub fn inode(&self, ino: u64) -> Result<InodeRecord> {
        read_inode(self.tree, ino)
    }

    pub fn put_inode(&mut self, ino: u64, rec: &InodeRecord) -> Result<()> {
        self.tree.insert(&keys::inode(ino), &rec.encode())?;
        Ok(())
    }

    /// Every (key, value) of one object's items of type `item`.
    pub fn items(&self, ino: u64, item: u8) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        scan(
            self.tree,
            &keys::item_start(ino, item),
            &keys::item_end(ino, item),
        )
    }
}

pub(crate) fn read_inode(tree: &Tree, ino: u64) -> Result<InodeRecord> {
    match tree.get(&keys::inode(ino))? {
        Some(v) => Ok(InodeRecord::decode(&v)?),
        None => Err(FsError::NotFound),
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
