//! The consistency checker.
//!
//! Walks every block reachable from the chosen uberblock — the pool tree,
//! every dataset tree, the space map chain — and checks:
//! - every copy of every block against its checksum (not just the first
//!   good one, so a latent bad copy is found before it is needed);
//! - node structure: keys ordered inside a node and within the bounds its
//!   parent gives, levels stepping down by one, counters in the root record
//!   equal to what the walk counted;
//! - ownership: no two reachable blocks overlap, except one block reached
//!   from several roots (a dataset and its snapshots) through identical
//!   pointers, which is checked and counted once; a node shared so is not
//!   walked again (its subtree's counts are remembered), so a pool of a
//!   hundred snapshots costs what changed between them, not a hundred
//!   walks;
//! - dead lists: every entry names a block some snapshot still reaches
//!   (or one whose delete is in progress) and the live dataset does not
//!   (but through a reflink's other pointer);
//! - references: every data block is named as many times as the clone
//!   table says, counting live trees and dead lists (`fsck/roots.rs`);
//! - accounting: the space map's allocated set equals the reachable set
//!   exactly, and nothing waiting out a deferred free is reachable.
//!
//! With `repair`, bad copies are rewritten from good ones and a space map
//! that disagrees with the reachable set is rebuilt from it (a commit).

use std::collections::BTreeMap;
use std::sync::Arc;

use aegis_btree::{Node, Tree};
use aegis_pool::{BlockPtr, CopyState, Extent, Pool, TreeRoot};
use serde::Serialize;

use crate::dataset::{DATASET_TREE_KIND, POOL_TREE_KIND};
use crate::error::Result;
use crate::posix;
use crate::store::Store;

mod roots;

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Finding {
    pub what: String,
    pub repaired: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct FsckReport {
    pub txg: u64,
    pub blocks_checked: u64,
    pub copies_checked: u64,
    pub bytes_reachable: u64,
    pub errors: Vec<Finding>,
    /// What was found that is not an error (a receive in progress).
    pub notes: Vec<String>,
}

impl FsckReport {
    pub fn uncorrected(&self) -> usize {
        self.errors.iter().filter(|f| !f.repaired).count()
    }
    pub fn corrected(&self) -> usize {
        self.errors.iter().filter(|f| f.repaired).count()
    }
    /// fsck(8) exit status: 0 clean, 1 errors corrected, 4 errors left.
    pub fn exit_code(&self) -> i32 {
        if self.uncorrected() > 0 {
            4
        } else if self.corrected() > 0 {
            1
        } else {
            0
        }
    }
}

/// Progress callback: (blocks done, blocks expected).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// A reachable extent: its length, what holds it, and for a block the
/// root it was first reached from and its checksum (another root may
/// reach the same block through an identical pointer).
struct Owned {
    len: u64,
    what: String,
    root: u32,
    checksum: Option<[u8; 32]>,
}

struct Walker<'a> {
    pool: &'a Arc<Pool>,
    repair: bool,
    report: FsckReport,
    /// Reachable extents by (device, offset).
    owned: BTreeMap<(u32, u64), Owned>,
    /// The root being walked (0: the pool tree; each dataset and snapshot
    /// its own number).
    root: u32,
    /// (nodes, entries) of each node's subtree, for nodes a later root
    /// shares.
    subtree: std::collections::HashMap<(u32, u64), (u64, u64)>,
    expected: u64,
    progress: Progress<'a>,
    /// Leaf entries of the pool tree, gathered on the way (dataset records).
    pool_entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// Root number of each live dataset → the txg at or before which its
    /// pointers are its origin's (0 but for a clone).
    live_floor: std::collections::HashMap<u32, u64>,
    /// References found to each data block, by its first address.
    references: std::collections::HashMap<(u32, u64), u64>,
}

impl Walker<'_> {
    fn error(&mut self, what: String, repaired: bool) {
        self.report.errors.push(Finding { what, repaired });
    }

    fn note(&mut self, what: String) {
        self.report.notes.push(what);
    }

    /// Check every copy (repairing when asked) and claim the block's space.
    /// Returns the block's contents if some copy was good.
    fn visit_block(&mut self, bp: &BlockPtr) -> Option<Vec<u8>> {
        self.report.blocks_checked += 1;
        (self.progress)(self.report.blocks_checked, self.expected);
        let check = match self.pool.check_copies(bp, self.repair) {
            Ok(c) => c,
            Err(e) => {
                self.error(format!("{}: {e}", bp.describe()), false);
                return None;
            }
        };
        self.report.copies_checked += check.states.len() as u64;
        for (i, s) in check.states.iter().enumerate() {
            if let CopyState::Bad(why) = s {
                let fixed = check.repaired.contains(&i);
                self.error(
                    format!(
                        "{} copy {i} ({}:{}): {why}",
                        bp.describe(),
                        bp.addrs[i].device,
                        bp.addrs[i].offset
                    ),
                    fixed,
                );
            }
        }
        // A gang block owns its header and its pieces.
        let extents = match self.pool.extents_of(bp) {
            Ok(x) => x,
            Err(e) => {
                self.error(format!("{}: {e}", bp.describe()), false);
                return check.data;
            }
        };
        for a in extents {
            self.claim(a, bp.describe(), Some(bp.checksum));
        }
        check.data
    }

    /// Claim an extent for the root being walked: overlapping anything
    /// already claimed is a block owned twice.
    fn claim(&mut self, a: Extent, what: String, checksum: Option<[u8; 32]>) {
        self.report.bytes_reachable += a.len;
        if let Some(prev) = self.overlapping(a.device, a.offset, a.len) {
            self.error(format!("{what} overlaps {prev} (block owned twice)"), false);
        }
        let root = self.root;
        self.owned.insert(
            (a.device, a.offset),
            Owned {
                len: a.len,
                what,
                root,
                checksum,
            },
        );
    }

    /// Did an earlier root reach `bp` through an identical pointer? Then
    /// it is shared (a snapshot's block): checked and counted already.
    fn shared(&self, bp: &BlockPtr) -> bool {
        self.same_block(bp).is_some_and(|root| root != self.root)
    }

    /// The root that first reached the block `bp` names, if one did with
    /// the same checksum and size (a reflink's second pointer may be in
    /// the same root; the reference count decides whether it may).
    fn same_block(&self, bp: &BlockPtr) -> Option<u32> {
        let a = bp.addrs.first()?;
        let o = self.owned.get(&(a.device, a.offset))?;
        (o.checksum == Some(bp.checksum) && o.len == bp.allocated_size(self.pool.block_size()))
            .then_some(o.root)
    }

    fn overlapping(&self, dev: u32, off: u64, len: u64) -> Option<String> {
        if let Some((&(d, o), owned)) = self.owned.range(..(dev, off + len)).next_back() {
            if d == dev && o + owned.len > off {
                return Some(owned.what.clone());
            }
        }
        None
    }

    /// Walk one tree of `kind` and check its root record's counters.
    fn walk_tree(&mut self, name: &str, kind: u64, root: &TreeRoot) {
        let Some(bp) = &root.root else { return };
        let Some(top_level) = (root.height as u32).checked_sub(1) else {
            self.error(format!("{name}: a root block in a tree of height 0"), false);
            return;
        };
        let mut counts = (0u64, 0u64);
        self.walk_node(name, kind, bp, None, None, top_level, &mut counts);
        if counts.0 != root.nodes || counts.1 != root.entries {
            self.error(
                format!(
                    "{name}: root record says {} nodes and {} entries, the walk found {} and {}",
                    root.nodes, root.entries, counts.0, counts.1
                ),
                false,
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn walk_node(
        &mut self,
        name: &str,
        kind: u64,
        bp: &BlockPtr,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        level: u32,
        counts: &mut (u64, u64),
    ) {
        let key = bp.addrs.first().map(|a| (a.device, a.offset));
        if self.shared(bp) {
            if let Some(sub) = key.and_then(|k| self.subtree.get(&k)) {
                counts.0 += sub.0;
                counts.1 += sub.1;
                return;
            }
        }
        let before = *counts;
        self.walk_node_once(name, kind, bp, (lo, hi), level, counts);
        if let Some(k) = key {
            let sub = (counts.0 - before.0, counts.1 - before.1);
            self.subtree.insert(k, sub);
        }
    }

    fn walk_node_once(
        &mut self,
        name: &str,
        kind: u64,
        bp: &BlockPtr,
        (lo, hi): (Option<&[u8]>, Option<&[u8]>),
        level: u32,
        counts: &mut (u64, u64),
    ) {
        let Some(data) = self.visit_block(bp) else {
            return;
        };
        if bp.level as u32 != level {
            self.error(
                format!(
                    "{name}: {} is at level {} where {} was expected",
                    bp.describe(),
                    bp.level,
                    level
                ),
                false,
            );
            return;
        }
        let node = match Node::decode(&data, bp, kind) {
            Ok(n) => n,
            Err(e) => {
                self.error(format!("{name}: {e}"), false);
                return;
            }
        };
        counts.0 += 1;
        self.check_bounds(name, bp, &node, lo, hi);
        if node.is_leaf() {
            counts.1 += node.len() as u64;
            self.visit_leaf(name, kind, &node);
            return;
        }
        for i in 0..node.len() {
            let Some(child) = node.child_ptr(i) else {
                continue;
            };
            let clo = Some(node.keys[i].as_slice());
            let chi = node.keys.get(i + 1).map(|k| k.as_slice()).or(hi);
            self.walk_node(name, kind, child, clo, chi, level - 1, counts);
        }
    }

    /// Keys inside a node must lie within the bounds its parent gives.
    fn check_bounds(
        &mut self,
        name: &str,
        bp: &BlockPtr,
        node: &Node,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
    ) {
        if let (Some(first), Some(lo)) = (node.keys.first(), lo) {
            if first.as_slice() < lo {
                self.error(
                    format!(
                        "{name}: {} holds a key below its parent's bound",
                        bp.describe()
                    ),
                    false,
                );
            }
        }
        if let (Some(last), Some(hi)) = (node.keys.last(), hi) {
            if last.as_slice() >= hi {
                self.error(
                    format!(
                        "{name}: {} holds a key at or above its parent's next key",
                        bp.describe()
                    ),
                    false,
                );
            }
        }
    }

    /// Gather the pool tree's dataset records; in a dataset tree, check and
    /// claim the data blocks that file records point at.
    fn visit_leaf(&mut self, name: &str, kind: u64, node: &Node) {
        if kind == POOL_TREE_KIND {
            let entries = node
                .keys
                .iter()
                .zip(&node.vals)
                .map(|(k, v)| (k.to_vec(), v.clone()));
            self.pool_entries.extend(entries);
        }
        if kind != DATASET_TREE_KIND {
            return;
        }
        for (k, v) in node.keys.iter().zip(&node.vals) {
            if posix::keys::data_offset(k).is_none() {
                continue;
            }
            match posix::FileRecord::decode(v) {
                Ok(
                    posix::FileRecord::Block { bp, .. }
                    | posix::FileRecord::Prealloc { data: Some(bp), .. },
                ) => {
                    if self.same_block(&bp).is_none() {
                        self.visit_block(&bp);
                    }
                    match self.live_floor.get(&self.root) {
                        Some(&floor) if bp.birth_txg > floor => self.count_reference(&bp, 1),
                        _ => {}
                    }
                }
                Ok(
                    posix::FileRecord::Inline(_) | posix::FileRecord::Prealloc { data: None, .. },
                ) => {}
                Err(e) => self.error(format!("{name}: {e}"), false),
            }
        }
    }
}

fn normalize(mut v: Vec<Extent>) -> Vec<Extent> {
    v.sort();
    let mut out: Vec<Extent> = Vec::with_capacity(v.len());
    for e in v {
        match out.last_mut() {
            Some(l) if l.device == e.device && l.offset + l.len == e.offset => l.len += e.len,
            _ => out.push(e),
        }
    }
    out
}

fn describe_diff(a: &[Extent], b: &[Extent]) -> String {
    let only: Vec<String> = a
        .iter()
        .filter(|x| b.binary_search(x).is_err())
        .take(5)
        .map(|e| format!("{}:{}+{}", e.device, e.offset, e.len))
        .collect();
    only.join(", ")
}

/// Check an opened store. The store must not be written while this runs.
pub fn fsck(store: &Store, repair: bool, progress: Progress<'_>) -> Result<FsckReport> {
    let pool = store.pool();
    // Newer txgs that did not verify mean the pool went back in time. A
    // commit on top supersedes them: their slots are never chosen again.
    let skipped = store.open_report().skipped.clone();
    let superseded =
        !skipped.is_empty() && repair && !pool.is_read_only() && store.commit().is_ok();
    let ub = pool
        .last_uberblock()
        .expect("opened store has an uberblock");
    let trees = store.trees.read();
    let expected = ub.pool_root.nodes
        + trees.records.values().map(|r| r.root.nodes).sum::<u64>()
        + ub.space_map_blocks;
    // Snapshot trees share most nodes with their datasets; progress
    // counts the blocks checked, so they add nothing certain here.
    let mut w = Walker {
        pool,
        // A read-only store is checked, not repaired.
        repair: repair && !pool.is_read_only(),
        report: FsckReport {
            txg: ub.txg,
            ..Default::default()
        },
        owned: BTreeMap::new(),
        root: 0,
        subtree: Default::default(),
        expected,
        progress,
        pool_entries: Vec::new(),
        live_floor: Default::default(),
        references: Default::default(),
    };

    // Opening read-write already healed what it read on the way in.
    for what in pool.take_heal_log() {
        w.error(format!("{what} (repaired when the pool was opened)"), true);
    }
    for (txg, why) in &skipped {
        w.error(
            format!(
                "txg {txg} is damaged ({why}); the pool is at txg {}",
                ub.txg
            ),
            superseded,
        );
    }
    w.walk_all_trees(&ub.pool_root);
    for bp in pool.space_map_chain() {
        w.visit_block(&bp);
    }
    for (id, tree) in &trees.datasets {
        w.check_intent_log(*id, tree);
    }
    // The POSIX layer's own invariants (links, entries, orphans, records)
    // only mean something on trees that read back whole.
    if w.report.uncorrected() == 0 {
        for (id, tree) in &trees.datasets {
            if !w.check_receiving(*id, tree) {
                w.check_posix(*id, tree);
            }
        }
        for (id, tree) in &trees.snap_trees {
            w.check_posix(*id, tree);
        }
    }
    drop(trees);
    w.check_accounting(store, repair);
    Ok(w.report)
}

impl Walker<'_> {
    /// Dataset names are valid and unique in the pool (mounts and the
    /// dataset commands find a dataset by its name).
    fn check_dataset_name(
        &mut self,
        id: u64,
        name: &str,
        names: &mut std::collections::HashMap<String, u64>,
    ) {
        if let Err(e) = crate::dataset_admin::validate_name(name) {
            self.error(format!("dataset {id}: {e}"), false);
        }
        if let Some(other) = names.insert(name.to_string(), id) {
            self.error(
                format!("dataset {id}: its name {name:?} is dataset {other}'s too"),
                false,
            );
        }
    }

    /// A dataset's intent log ring is allocated once, outside every tree:
    /// it is reachable through its record. The log head only names a
    /// position inside it.
    fn check_intent_log(&mut self, id: u64, tree: &Tree) {
        let ring = crate::intent_log::recorded_ring(tree, self.pool);
        let has_ring = matches!(ring, Ok(Some(_)));
        match ring {
            Ok(None) => {}
            Ok(Some(e)) => {
                if let Some(prev) = self.overlapping(e.device, e.offset, e.len) {
                    self.error(
                        format!("dataset {id}: the intent log ring overlaps {prev}"),
                        false,
                    );
                }
                self.report.bytes_reachable += e.len;
                let root = self.root;
                self.owned.insert(
                    (e.device, e.offset),
                    Owned {
                        len: e.len,
                        what: format!("dataset {id} intent log ring"),
                        root,
                        checksum: None,
                    },
                );
            }
            Err(e) => self.error(format!("dataset {id}: {e}"), false),
        }
        match tree.get(&posix::keys::log_head()) {
            Ok(Some(v)) => {
                if let Err(e) = crate::intent_log::LogHead::decode(&v) {
                    self.error(format!("dataset {id}: {e}"), false);
                } else if !has_ring {
                    self.error(
                        format!("dataset {id}: an intent log head without a usable ring"),
                        false,
                    );
                }
            }
            Ok(None) => {}
            Err(e) => self.error(format!("dataset {id}: {e}"), false),
        }
    }

    /// Is dataset `id` being received into (its items a prefix of a
    /// stream's, so the POSIX rules do not hold yet)? Its receive state
    /// and its meta record's `receiving` bit must agree.
    fn check_receiving(&mut self, id: u64, tree: &Tree) -> bool {
        let state = tree.get(&posix::keys::recv_state());
        let meta = crate::tx::read_meta(tree, id);
        let receiving = matches!(&meta, Ok(m) if m.features & posix::FEATURE_RECEIVING != 0);
        match (state, receiving) {
            (Ok(Some(v)), true) => match crate::receive_state::RecvState::decode(&v) {
                Ok(_) => self.note(format!(
                    "dataset {id}: a receive is in progress; its POSIX checks wait for it"
                )),
                Err(e) => self.error(format!("dataset {id}: {e}"), false),
            },
            (Ok(None), false) => {}
            (Ok(_), _) => self.error(
                format!("dataset {id}: receive state and the meta record's receiving bit disagree"),
                false,
            ),
            (Err(e), _) => self.error(format!("dataset {id}: {e}"), false),
        }
        receiving
    }

    fn check_posix(&mut self, id: u64, tree: &Tree) {
        match posix::check::check_tree(
            tree,
            (self.pool.block_size(), self.pool.config().metadata_copies),
            100,
        ) {
            Ok(Some(found)) => {
                for f in found {
                    self.error(format!("dataset {id}: {f}"), false);
                }
            }
            Ok(None) => {}
            Err(e) => self.error(format!("dataset {id}: {e}"), false),
        }
    }

    /// Allocated per the space map must equal reachable, and nothing that
    /// waits out a deferred free may be reachable.
    fn check_accounting(&mut self, store: &Store, repair: bool) {
        let pool = self.pool;
        let reachable = normalize(
            self.owned
                .iter()
                .map(|(&(device, offset), o)| Extent {
                    device,
                    offset,
                    len: o.len,
                })
                .collect(),
        );
        let allocated = normalize(pool.allocated_extents());
        if reachable != allocated {
            let leaked = describe_diff(&allocated, &reachable);
            let missing = describe_diff(&reachable, &allocated);
            let what = format!("space map disagrees with the reachable blocks (allocated but unreachable: [{leaked}]; reachable but free: [{missing}])");
            let fixed =
                repair && !pool.is_read_only() && rebuild_space_map(store, &reachable).is_ok();
            self.error(what, fixed);
        }
        for (txg, e) in pool.deferred_extents() {
            if self.overlapping(e.device, e.offset, e.len).is_some() {
                self.error(
                    format!(
                        "extent {}:{}+{} freed in txg {txg} is still reachable",
                        e.device, e.offset, e.len
                    ),
                    false,
                );
            }
        }
    }
}

fn rebuild_space_map(store: &Store, reachable: &[Extent]) -> Result<()> {
    store.pool().rebuild_space_map(reachable)?;
    store.commit()?;
    Ok(())
}

/// Shape of one tree, for `info`.
#[derive(Clone, Debug, Serialize)]
pub struct TreeShape {
    pub name: String,
    pub id: u64,
    pub height: u8,
    pub nodes: u64,
    pub entries: u64,
}

/// The shapes of the pool tree and every dataset tree.
pub fn tree_shapes(store: &Store) -> Vec<TreeShape> {
    let t = store.trees.read();
    let mut v = vec![TreeShape {
        name: "pool".into(),
        id: POOL_TREE_KIND,
        height: t.pool_tree.height(),
        nodes: t.pool_tree.node_count(),
        entries: t.pool_tree.len(),
    }];
    for (&id, tree) in &t.datasets {
        let name = t
            .records
            .get(&id)
            .map(|r| r.name.clone())
            .unwrap_or_default();
        v.push(TreeShape {
            name: format!("dataset {name}"),
            id,
            height: tree.height(),
            nodes: tree.node_count(),
            entries: tree.len(),
        });
    }
    v
}
