//! The copy-on-write B+tree.
//!
//! Reads descend from the root through the node cache. A change copies the
//! path from the root to its leaf into an in-memory arena of dirty nodes
//! (each clean node copied once per txg); the replaced blocks are reported
//! by [`Tree::flush`] so the caller can free them once it knows whether a
//! snapshot still holds them. `flush` writes dirty nodes bottom-up, each
//! after its children, so a parent's pointer always carries its child's
//! checksum.
//!
//! Invariants: keys in a node strictly increase; in an internal node key i
//! is ≤ every key under child i and > every key under child i-1; every
//! node's encoded size fits one block; leaves are all at level 0 and the
//! root at level height-1; `entries` and `nodes` count exactly what the
//! tree holds (fsck checks them).

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use aegis_pool::blkptr::{BlockPtr, BlockType, BLKPTR_HEADER, DVA_SIZE};
use aegis_pool::tree_root::MAX_TREE_HEIGHT;
use aegis_pool::{Pool, TreeRoot};

use crate::cache::NodeCache;
use crate::error::{Result, TreeError};
use crate::iter::RangeIter;
use crate::node::{Child, Key, Node, MAX_KEY, NODE_HEADER};

/// A node to read from: borrowed from the dirty arena or shared from cache.
pub enum NodeRef<'a> {
    Mem(&'a Node),
    Disk(Arc<Node>),
}

impl std::ops::Deref for NodeRef<'_> {
    type Target = Node;
    fn deref(&self) -> &Node {
        match self {
            NodeRef::Mem(n) => n,
            NodeRef::Disk(n) => n,
        }
    }
}

pub struct Tree {
    id: u64,
    pool: Arc<Pool>,
    cache: Arc<NodeCache>,
    root: Option<Child>,
    height: u8,
    /// The shape counters start as the root record on disk says, so they
    /// may be wrong on a damaged image; fsck compares them with what the
    /// tree holds. Arithmetic on them saturates rather than overflowing.
    nodes: u64,
    entries: u64,
    dirty: HashMap<u64, Node>,
    next_id: u64,
    freed: Vec<BlockPtr>,
    capacity: usize,
    ptr_len: usize,
    /// While recording: each change's key and the value it replaced, so a
    /// failed multi-step operation can be undone (see [`Tree::rollback`]).
    undo: Option<Vec<(Key, Option<Vec<u8>>)>>,
}

/// What a flush produced: the new root record and the blocks it replaced.
pub struct Flushed {
    pub root: TreeRoot,
    pub freed: Vec<BlockPtr>,
}

impl Tree {
    /// Open the tree `id` described by `root` (default = empty tree).
    pub fn open(pool: Arc<Pool>, cache: Arc<NodeCache>, id: u64, root: &TreeRoot) -> Tree {
        let capacity = pool.block_size() as usize;
        let ptr_len = BLKPTR_HEADER + DVA_SIZE * pool.config().metadata_copies as usize;
        Tree {
            id,
            pool,
            cache,
            root: root.root.clone().map(Child::Disk),
            height: root.height,
            nodes: root.nodes,
            entries: root.entries,
            dirty: HashMap::new(),
            next_id: 1,
            freed: Vec::new(),
            capacity,
            ptr_len,
            undo: None,
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }
    pub fn height(&self) -> u8 {
        self.height
    }
    pub fn node_count(&self) -> u64 {
        self.nodes
    }
    pub fn len(&self) -> u64 {
        self.entries
    }
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty() || !self.freed.is_empty()
    }
    /// Bytes the dirty nodes will take when written (one block each).
    pub fn dirty_bytes(&self) -> u64 {
        (self.dirty.len() * self.capacity) as u64
    }
    pub fn dirty_nodes(&self) -> usize {
        self.dirty.len()
    }

    /// Largest value that can be stored under a key of `key_len` bytes.
    /// An entry is at most a quarter of a node, so any overfull node splits
    /// into two that fit and a merge always has room to redistribute.
    pub fn max_value_len(&self, key_len: usize) -> usize {
        ((self.capacity - NODE_HEADER) / 4).saturating_sub(4 + key_len)
    }

    /// Read a node through its pointer: cache first, else the pool
    /// (checksum verified there), decoded and validated for this tree.
    pub fn load(&self, bp: &BlockPtr) -> Result<Arc<Node>> {
        if let Some(n) = self.cache.get(bp) {
            return Ok(n);
        }
        if bp.block_type != BlockType::TreeNode {
            return Err(TreeError::Corrupt {
                node: bp.describe(),
                detail: "not a tree node".into(),
            });
        }
        let buf = self.pool.read_block(bp)?;
        if buf.len() > self.capacity {
            return Err(TreeError::Corrupt {
                node: bp.describe(),
                detail: format!("{} bytes, more than a block", buf.len()),
            });
        }
        let node = Arc::new(Node::decode(&buf, bp, self.id)?);
        self.cache.put(bp, node.clone());
        Ok(node)
    }

    pub fn node<'a>(&'a self, c: &Child) -> Result<NodeRef<'a>> {
        match c {
            Child::Disk(bp) => Ok(NodeRef::Disk(self.load(bp)?)),
            Child::Dirty(id) => Ok(NodeRef::Mem(
                self.dirty
                    .get(id)
                    .expect("dirty child missing from the arena"),
            )),
        }
    }

    pub fn root_child(&self) -> Option<&Child> {
        self.root.as_ref()
    }

    /// Follow child `i` of `node`, checking the level steps down by one.
    pub(crate) fn descend<'a>(&'a self, node: &Node, i: usize) -> Result<NodeRef<'a>> {
        let child = self.node(&node.children[i])?;
        if child.level.checked_add(1) != Some(node.level) {
            return Err(TreeError::Corrupt {
                node: format!("child {i} of a level-{} node", node.level),
                detail: format!("has level {}", child.level),
            });
        }
        Ok(child)
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some(root) = &self.root else {
            return Ok(None);
        };
        let mut node = self.node(root)?;
        let mut depth = 0;
        while !node.is_leaf() {
            depth += 1;
            if depth > MAX_TREE_HEIGHT {
                return Err(TreeError::Corrupt {
                    node: "path".into(),
                    detail: "deeper than the format allows".into(),
                });
            }
            let i = node.child_index(key);
            node = self.descend(&node, i)?;
        }
        Ok(node
            .keys
            .binary_search_by(|k| k.as_slice().cmp(key))
            .ok()
            .map(|i| node.vals[i].clone()))
    }

    /// Entries with keys in `range`, ascending.
    pub fn range<'a>(&'a self, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> RangeIter<'a> {
        RangeIter::new(self, lo, hi, false)
    }
    /// Entries with keys in `range`, descending.
    pub fn range_rev<'a>(&'a self, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> RangeIter<'a> {
        RangeIter::new(self, lo, hi, true)
    }
    pub fn iter(&self) -> RangeIter<'_> {
        self.range(Bound::Unbounded, Bound::Unbounded)
    }

    fn check_sizes(&self, key: &[u8], val: &[u8]) -> Result<()> {
        if key.len() > MAX_KEY {
            return Err(TreeError::KeyTooLarge {
                len: key.len(),
                max: MAX_KEY,
            });
        }
        let max = self.max_value_len(key.len());
        if val.len() > max {
            return Err(TreeError::ValueTooLarge {
                len: val.len(),
                max,
            });
        }
        Ok(())
    }

    fn new_dirty(&mut self, node: Node) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.dirty.insert(id, node);
        id
    }

    /// Make `c` a dirty node (copying it from disk if needed) and return its id.
    fn make_dirty(&mut self, c: &Child) -> Result<u64> {
        match c {
            Child::Dirty(id) => Ok(*id),
            Child::Disk(bp) => {
                let node = (*self.load(bp)?).clone();
                self.check_entry_sizes(&node, bp)?;
                self.freed.push(bp.clone());
                Ok(self.new_dirty(node))
            }
        }
    }

    /// A node from disk that is about to change must keep the size rule
    /// every writer keeps (no leaf entry over a quarter of a node, see
    /// [`Tree::max_value_len`]): a split relies on it to leave two halves
    /// that fit, and `write_node` asserts that they do. A node that breaks
    /// it was not written by this code. Internal entries need no check:
    /// a key of at most `MAX_KEY` bytes and one pointer are always smaller.
    fn check_entry_sizes(&self, node: &Node, bp: &BlockPtr) -> Result<()> {
        if !node.is_leaf() {
            return Ok(());
        }
        for (k, v) in node.keys.iter().zip(&node.vals) {
            if v.len() > self.max_value_len(k.len()) {
                return Err(TreeError::Corrupt {
                    node: bp.describe(),
                    detail: format!(
                        "an entry of {} bytes, more than a quarter of a node",
                        4 + k.len() + v.len()
                    ),
                });
            }
        }
        Ok(())
    }

    fn dirty_child(&mut self, parent: u64, i: usize) -> Result<u64> {
        let c = self.dirty[&parent].children[i].clone();
        let id = self.make_dirty(&c)?;
        self.dirty.get_mut(&parent).expect("parent").children[i] = Child::Dirty(id);
        Ok(id)
    }

    /// Insert or replace; returns the previous value.
    pub fn insert(&mut self, key: &[u8], val: &[u8]) -> Result<Option<Vec<u8>>> {
        let old = self.insert_inner(key, val)?;
        if let Some(u) = &mut self.undo {
            u.push((Key::from_slice(key), old.clone()));
        }
        Ok(old)
    }

    /// Remove a key; returns its value if it was there.
    pub fn remove(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let old = self.remove_inner(key)?;
        if let (Some(u), Some(v)) = (&mut self.undo, &old) {
            u.push((Key::from_slice(key), Some(v.clone())));
        }
        Ok(old)
    }

    /// Start recording changes for [`Tree::rollback`]; nested calls are
    /// not supported (asserted).
    pub fn begin_undo(&mut self) {
        assert!(self.undo.is_none(), "undo recording already active");
        self.undo = Some(Vec::new());
    }

    /// Stop recording and keep the changes.
    pub fn commit_undo(&mut self) {
        self.undo = None;
    }

    /// Stop recording and put every recorded key back as it was, newest
    /// change first. The nodes involved are already dirty in memory, so
    /// this reads nothing from disk except after a split or merge moved
    /// entries into clean siblings; an error here leaves the tree changed.
    pub fn rollback(&mut self) -> Result<()> {
        let Some(undo) = self.undo.take() else {
            return Ok(());
        };
        for (k, old) in undo.into_iter().rev() {
            match old {
                Some(v) => {
                    self.insert_inner(&k, &v)?;
                }
                None => {
                    self.remove_inner(&k)?;
                }
            }
        }
        Ok(())
    }

    fn insert_inner(&mut self, key: &[u8], val: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_sizes(key, val)?;
        let Some(root) = self.root.clone() else {
            let id = self.new_dirty(Node {
                level: 0,
                keys: vec![Key::from_slice(key)],
                vals: vec![val.to_vec()],
                children: vec![],
            });
            self.root = Some(Child::Dirty(id));
            self.height = 1;
            self.nodes = 1;
            self.entries = 1;
            return Ok(None);
        };
        let rid = self.make_dirty(&root)?;
        self.root = Some(Child::Dirty(rid));
        let (old, split) = self.insert_at(rid, key, val)?;
        if let Some((sep, right)) = split {
            if self.height >= MAX_TREE_HEIGHT {
                return Err(TreeError::Corrupt {
                    node: "root".into(),
                    detail: "tree would exceed the height limit".into(),
                });
            }
            let left_min = self.dirty[&rid].keys[0].clone();
            let level = self.dirty[&rid].level + 1;
            let new_root = self.new_dirty(Node {
                level,
                keys: vec![left_min, sep],
                vals: vec![],
                children: vec![Child::Dirty(rid), Child::Dirty(right)],
            });
            self.root = Some(Child::Dirty(new_root));
            self.height += 1;
            self.nodes = self.nodes.saturating_add(1);
        }
        if old.is_none() {
            self.entries = self.entries.saturating_add(1);
        }
        Ok(old)
    }

    #[allow(clippy::type_complexity)]
    fn insert_at(
        &mut self,
        id: u64,
        key: &[u8],
        val: &[u8],
    ) -> Result<(Option<Vec<u8>>, Option<(Key, u64)>)> {
        let old;
        if self.dirty[&id].is_leaf() {
            let node = self.dirty.get_mut(&id).expect("node");
            match node.keys.binary_search_by(|k| k.as_slice().cmp(key)) {
                Ok(i) => old = Some(std::mem::replace(&mut node.vals[i], val.to_vec())),
                Err(i) => {
                    node.keys.insert(i, Key::from_slice(key));
                    node.vals.insert(i, val.to_vec());
                    old = None;
                }
            }
        } else {
            let i = {
                let node = self.dirty.get_mut(&id).expect("node");
                let i = node.child_index(key);
                if key < node.keys[0].as_slice() {
                    node.keys[0] = Key::from_slice(key);
                }
                i
            };
            let cid = self.dirty_child(id, i)?;
            let (o, split) = self.insert_at(cid, key, val)?;
            old = o;
            if let Some((sep, right)) = split {
                let node = self.dirty.get_mut(&id).expect("node");
                node.keys.insert(i + 1, sep);
                node.children.insert(i + 1, Child::Dirty(right));
            }
        }
        let node = self.dirty.get_mut(&id).expect("node");
        if node.encoded_size(self.ptr_len) > self.capacity {
            let right = node.split_off_half(self.ptr_len);
            debug_assert!(
                node.encoded_size(self.ptr_len) <= self.capacity
                    && right.encoded_size(self.ptr_len) <= self.capacity
            );
            let sep = right.keys[0].clone();
            let rid = self.new_dirty(right);
            self.nodes = self.nodes.saturating_add(1);
            return Ok((old, Some((sep, rid))));
        }
        Ok((old, None))
    }

    fn remove_inner(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        // Look first so that removing an absent key dirties nothing.
        if self.get(key)?.is_none() {
            return Ok(None);
        }
        if self.entries == 0 {
            // Checked before anything changes: the record on disk counts
            // no entries, yet the tree holds this key.
            return Err(TreeError::Corrupt {
                node: "root".into(),
                detail: "the tree records no entries but holds the key".into(),
            });
        }
        let root = self.root.clone().expect("non-empty");
        let rid = self.make_dirty(&root)?;
        self.root = Some(Child::Dirty(rid));
        let old = self.remove_at(rid, key)?;
        debug_assert!(old.is_some());
        self.entries -= 1;
        // Shrink the root: an internal root with one child, or an empty leaf.
        loop {
            let rid = rid_of(&self.root);
            let r = &self.dirty[&rid];
            if !r.is_leaf() && r.children.len() == 1 {
                let child = r.children[0].clone();
                // The child first: should it fail to load, the old root
                // must still be in the arena for the root to name it.
                let cid = self.make_dirty(&child)?;
                self.dirty.remove(&rid);
                // Saturating: the height comes from the root record, and
                // a cached node is not checked against its pointer's level.
                self.height = self.height.saturating_sub(1);
                self.nodes = self.nodes.saturating_sub(1);
                self.root = Some(Child::Dirty(cid));
            } else if r.is_leaf() && r.is_empty() {
                self.dirty.remove(&rid);
                self.root = None;
                self.height = 0;
                self.nodes = 0;
                break;
            } else {
                break;
            }
        }
        Ok(old)
    }

    fn remove_at(&mut self, id: u64, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if self.dirty[&id].is_leaf() {
            let node = self.dirty.get_mut(&id).expect("node");
            return Ok(
                match node.keys.binary_search_by(|k| k.as_slice().cmp(key)) {
                    Ok(i) => {
                        node.keys.remove(i);
                        Some(node.vals.remove(i))
                    }
                    Err(_) => None,
                },
            );
        }
        let i = self.dirty[&id].child_index(key);
        let cid = self.dirty_child(id, i)?;
        let old = self.remove_at(cid, key)?;
        let underflow = {
            let c = &self.dirty[&cid];
            c.is_empty() || c.encoded_size(self.ptr_len) < self.capacity / 4
        };
        if underflow && self.dirty[&id].children.len() > 1 {
            self.rebalance(id, i)?;
        }
        Ok(old)
    }

    /// Merge child `i` of `parent` with a sibling, or share entries evenly
    /// when the two do not fit in one node.
    fn rebalance(&mut self, parent: u64, i: usize) -> Result<()> {
        let n = self.dirty[&parent].children.len();
        let (l, r) = if i + 1 < n { (i, i + 1) } else { (i - 1, i) };
        let lid = self.dirty_child(parent, l)?;
        let rid = self.dirty_child(parent, r)?;
        let right = self.dirty.remove(&rid).expect("right");
        let left = self.dirty.get_mut(&lid).expect("left");
        left.append(right);
        if left.encoded_size(self.ptr_len) <= self.capacity {
            let p = self.dirty.get_mut(&parent).expect("parent");
            p.keys.remove(r);
            p.children.remove(r);
            self.nodes = self.nodes.saturating_sub(1);
            // An empty left (both emptied) stays only until its parent
            // rebalances; a lone empty leaf root is cleared by `remove`.
        } else {
            let new_right = left.split_off_half(self.ptr_len);
            let sep = new_right.keys[0].clone();
            self.dirty.insert(rid, new_right);
            self.dirty.get_mut(&parent).expect("parent").keys[r] = sep;
        }
        Ok(())
    }

    /// Write every dirty node, bottom-up. Returns the new root record and
    /// the blocks this txg replaced (the caller frees them).
    pub fn flush(&mut self) -> Result<Flushed> {
        if let Some(Child::Dirty(id)) = self.root.clone() {
            let bp = self.write_node(id)?;
            self.root = Some(Child::Disk(bp));
        }
        assert!(
            self.dirty.is_empty(),
            "dirty nodes left after flush: {}",
            self.dirty.len()
        );
        Ok(Flushed {
            root: self.root_record(),
            freed: std::mem::take(&mut self.freed),
        })
    }

    fn write_node(&mut self, id: u64) -> Result<BlockPtr> {
        let mut node = self.dirty.remove(&id).expect("dirty node");
        for i in 0..node.children.len() {
            if let Child::Dirty(cid) = node.children[i] {
                match self.write_node(cid) {
                    Ok(bp) => node.children[i] = Child::Disk(bp),
                    Err(e) => {
                        // Keep the tree whole so the caller may retry or drop it.
                        self.dirty.insert(id, node);
                        return Err(e);
                    }
                }
            }
        }
        let txg = self.pool.open_txg();
        let bytes = node.encode(self.id, txg);
        assert!(
            bytes.len() <= self.capacity,
            "node of {} bytes exceeds block {}",
            bytes.len(),
            self.capacity
        );
        let props = self.pool.metadata_props(BlockType::TreeNode, node.level);
        match self.pool.write_block(&bytes, &props) {
            Ok(bp) => {
                self.cache.put(&bp, Arc::new(node));
                Ok(bp)
            }
            Err(e) => {
                self.dirty.insert(id, node);
                Err(e.into())
            }
        }
    }

    /// The root record as of the last flush (dirty changes not included).
    pub fn root_record(&self) -> TreeRoot {
        match &self.root {
            Some(Child::Disk(bp)) => TreeRoot {
                root: Some(bp.clone()),
                height: self.height,
                nodes: self.nodes,
                entries: self.entries,
            },
            None => TreeRoot::default(),
            Some(Child::Dirty(_)) => panic!("root_record of a dirty tree; flush first"),
        }
    }
}

fn rid_of(c: &Option<Child>) -> u64 {
    match c {
        Some(Child::Dirty(id)) => *id,
        _ => panic!("root is not dirty"),
    }
}
