//! fsck across roots: the pool tree's records name every dataset,
//! snapshot, dead list entry and clone table entry, and together they
//! must account for every data block exactly.
//!
//! Each data block has as many references as the clone table says (one,
//! plus its entry's count): the pointers to it in the live datasets'
//! trees (a clone's only if born after its origin, which holds the
//! older ones) and its dead list entries' counts (on a clone's lists,
//! again only those born after the origin). Snapshots add none: what a
//! snapshot holds is either still in its dataset's tree or on a dead
//! list of that dataset. So a block freed too early, or leaked, or named
//! twice without an entry, shows as a count that is not the table's.
//! Live datasets are walked before snapshots, and clones after the
//! datasets they come from: a node reached again is not walked again,
//! and nodes a clone shares hold only pointers it does not count.

use std::collections::{BTreeMap, HashMap, HashSet};

use aegis_pool::{BlockPtr, BlockType, TreeRoot};

use super::Walker;
use crate::clone_table::{parse_clone_key, CloneEntry};
use crate::dataset::{parse_dataset_key, DatasetRecord, DATASET_TREE_KIND, POOL_TREE_KIND};
use crate::dead_list::{decode_counted, parse_dead_key};
use crate::snapshot::{parse_snapshot_key, SnapshotRecord};

/// What the dead list and reference checks need of the records walked.
#[derive(Default)]
pub(super) struct Lists {
    /// A live dataset's dead list id → the root number of its tree.
    live: BTreeMap<u64, u32>,
    /// Dataset id → its `prev_snap_txg`.
    datasets: BTreeMap<u64, u64>,
    /// Dead list id → the txg at or before which its entries are its
    /// dataset's origin's (0 but for a clone's lists).
    floors: HashMap<u64, u64>,
    /// Some snapshot is being deleted.
    deleting: bool,
    /// Snapshot id → how many datasets name it as their origin.
    clones: BTreeMap<u64, u32>,
}

/// The pool tree's records, sorted by kind.
#[derive(Default)]
struct Records {
    datasets: Vec<(u64, DatasetRecord)>,
    snapshots: Vec<(u64, SnapshotRecord)>,
    dead: Vec<(Vec<u8>, Vec<u8>)>,
    clone_table: HashMap<(u32, u64), CloneEntry>,
}

impl Walker<'_> {
    /// The pool tree, then every dataset tree its records name. Nodes are
    /// decoded from the copies just read and verified, never from the node
    /// cache: a check must see the disk.
    pub(super) fn walk_all_trees(&mut self, pool_root: &TreeRoot) {
        self.walk_tree("pool tree", POOL_TREE_KIND, pool_root);
        let recs = self.sort_records();
        let mut lists = Lists::default();
        let txg_of: HashMap<u64, u64> = recs.snapshots.iter().map(|(id, r)| (*id, r.txg)).collect();
        let floor_of = |rec: &DatasetRecord| match rec.origin {
            0 => 0,
            o => txg_of.get(&o).copied().unwrap_or(0),
        };
        let mut names = HashMap::new();
        let mut order: Vec<&(u64, DatasetRecord)> = recs.datasets.iter().collect();
        order.sort_by_key(|(id, rec)| (rec.origin != 0, *id));
        for (id, rec) in order {
            self.check_dataset_name(*id, &rec.name, &mut names);
            self.root += 1;
            let floor = floor_of(rec);
            self.live_floor.insert(self.root, floor);
            lists.live.insert(rec.deadlist, self.root);
            lists.floors.insert(rec.deadlist, floor);
            lists.datasets.insert(*id, rec.prev_snap_txg);
            if rec.origin != 0 {
                *lists.clones.entry(rec.origin).or_default() += 1;
            }
            let name = format!("dataset {id} ({})", rec.name);
            self.walk_tree(&name, DATASET_TREE_KIND, &rec.root);
        }
        let floors: HashMap<u64, u64> = recs
            .datasets
            .iter()
            .map(|(id, rec)| (*id, floor_of(rec)))
            .collect();
        for (_, s) in &recs.snapshots {
            lists
                .floors
                .insert(s.deadlist, floors.get(&s.dataset).copied().unwrap_or(0));
        }
        self.walk_snapshots(&recs.snapshots, &mut lists);
        for origin in std::mem::take(&mut lists.clones).keys() {
            self.error(
                format!("a dataset is a clone of snapshot {origin}, which does not exist"),
                false,
            );
        }
        self.check_dead_lists(&recs.dead, &lists, &recs.clone_table);
        self.check_references(&recs.clone_table);
    }

    /// Decode the pool tree's records gathered by its walk.
    fn sort_records(&mut self) -> Records {
        let mut recs = Records::default();
        for (k, v) in std::mem::take(&mut self.pool_entries) {
            if let Some(id) = parse_snapshot_key(&k) {
                match SnapshotRecord::decode(&v) {
                    Ok(rec) => recs.snapshots.push((id, rec)),
                    Err(e) => self.error(format!("snapshot {id}: {e}"), false),
                }
            } else if parse_dead_key(&k).is_some() {
                recs.dead.push((k, v));
            } else if let Some(at) = parse_clone_key(&k) {
                match CloneEntry::decode(&v) {
                    Ok(e) => {
                        recs.clone_table.insert(at, e);
                    }
                    Err(e) => self.error(format!("pool tree: {e}"), false),
                }
            } else if let Some(id) = parse_dataset_key(&k) {
                match DatasetRecord::decode(&v) {
                    Ok(rec) => recs.datasets.push((id, rec)),
                    Err(e) => self.error(format!("dataset {id}: {e}"), false),
                }
            }
        }
        recs
    }

    /// Every snapshot not being deleted is a root of its own; its blocks
    /// shared with its dataset or another snapshot are counted once.
    fn walk_snapshots(&mut self, snapshots: &[(u64, SnapshotRecord)], lists: &mut Lists) {
        let mut names = HashSet::new();
        for (id, rec) in snapshots {
            let what = format!("snapshot {id} ({})", rec.name);
            match lists.datasets.get(&rec.dataset) {
                None => self.error(
                    format!("{what}: its dataset {} does not exist", rec.dataset),
                    false,
                ),
                Some(&prev) if rec.txg > prev && !rec.deleting => self.error(
                    format!(
                        "{what}: taken at txg {} after its dataset's newest snapshot txg {prev}",
                        rec.txg
                    ),
                    false,
                ),
                Some(_) => {}
            }
            let clones = lists.clones.remove(id).unwrap_or(0);
            if clones != rec.clones {
                self.error(
                    format!(
                        "{what}: counts {} clones, {clones} datasets name it",
                        rec.clones
                    ),
                    false,
                );
            }
            if !names.insert((rec.dataset, rec.name.clone())) {
                self.error(
                    format!("{what}: another snapshot of its dataset has its name"),
                    false,
                );
            }
            if rec.deleting {
                lists.deleting = true;
                continue;
            }
            self.root += 1;
            self.walk_tree(&what, DATASET_TREE_KIND, &rec.root);
        }
    }

    /// Each dead list entry is a block some snapshot reaches (the live
    /// dataset whose list it is on may reach it too only through another
    /// pointer, a reflink's); while a delete is in progress, entries only
    /// the deleted snapshot reached are claimed here (the delete frees
    /// them). Data entries count their releases toward their block.
    fn check_dead_lists(
        &mut self,
        dead: &[(Vec<u8>, Vec<u8>)],
        lists: &Lists,
        table: &HashMap<(u32, u64), CloneEntry>,
    ) {
        self.root = u32::MAX;
        for (k, v) in dead {
            let (bp, count) = match decode_counted(k, v) {
                Ok(x) => x,
                Err(e) => {
                    self.error(format!("pool tree: {e}"), false);
                    continue;
                }
            };
            let (list, _) = parse_dead_key(k).unwrap_or_default();
            let Some(a) = bp.addrs.first() else { continue };
            let at = (a.device, a.offset);
            match self.owned.get(&at) {
                Some(o) if lists.live.get(&list) == Some(&o.root) && !table.contains_key(&at) => {
                    self.error(
                        format!(
                            "dead list {list}: {} is still used by its live dataset",
                            bp.describe()
                        ),
                        false,
                    )
                }
                Some(o) if o.checksum == Some(bp.checksum) => {}
                Some(o) => {
                    let what = format!(
                        "dead list {list}: {} is not the block at its place ({})",
                        bp.describe(),
                        o.what
                    );
                    self.error(what, false);
                    continue;
                }
                None if lists.deleting => {
                    self.visit_block(&bp);
                }
                None => {
                    let what =
                        format!("dead list {list}: {} is held by no snapshot", bp.describe());
                    self.error(what, false);
                    continue;
                }
            }
            if bp.birth_txg > lists.floors.get(&list).copied().unwrap_or(0) {
                self.count_reference(&bp, count as u64);
            }
        }
    }

    /// One more reference to data block `bp` (a pointer in a live tree,
    /// or releases a dead list entry stands for).
    pub(super) fn count_reference(&mut self, bp: &BlockPtr, n: u64) {
        if bp.block_type != BlockType::Data {
            return;
        }
        if let Some(a) = bp.addrs.first() {
            *self.references.entry((a.device, a.offset)).or_default() += n;
        }
    }

    /// Every data block's references equal one plus its clone table
    /// entry's count, and every entry names a data block.
    fn check_references(&mut self, table: &HashMap<(u32, u64), CloneEntry>) {
        let refs = std::mem::take(&mut self.references);
        for (&(device, offset), &found) in &refs {
            let entry = table.get(&(device, offset));
            let want = 1 + entry.map_or(0, |e| e.extra);
            if found != want {
                self.error(
                    format!("data block at {device}:{offset}: {found} references found, the clone table accounts for {want}"),
                    false,
                );
            }
        }
        for &(device, offset) in table.keys() {
            if !refs.contains_key(&(device, offset)) {
                self.error(
                    format!("clone table: an entry for {device}:{offset}, which no file holds"),
                    false,
                );
            }
        }
    }
}
