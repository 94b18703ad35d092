//! `snapshot diff`: the paths created, deleted, modified and renamed
//! between two states of one dataset (a snapshot and a later one, or the
//! live dataset), as `zfs diff` lists them.
//!
//! The trees are compared level by level, top down: a node both trees
//! reach through the same pointer holds the same subtree, so both drop
//! it; only the nodes that differ are opened further. The work follows
//! what changed, not the dataset's size. The leaf items that differ are
//! then grouped by object: an inode only in the newer tree was created,
//! one only in the older was deleted (an inode number used again, with a
//! new generation, is both), one whose names (back-references) changed
//! was renamed, any other change modified it. Paths come from walking
//! back-references up to the root in the tree the object is in.

use std::collections::{BTreeMap, HashSet};

use aegis_btree::{Child, Node, Tree};
use aegis_pool::BlockPtr;

use crate::error::{FsError, Result};
use crate::posix::keys::{self, BACKREF, META_OBJECT};
use crate::posix::{InodeRecord, ROOT_INO};
use crate::store::Store;

/// Deepest path walked up (a damaged tree cannot loop the walk).
const MAX_DEPTH: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Created,
    Deleted,
    Modified,
    Renamed,
}

/// One changed path: for a rename, `path` is the old one.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DiffEntry {
    pub change: Change,
    pub path: String,
    pub new_path: Option<String>,
}

pub(crate) type Items = BTreeMap<Vec<u8>, Vec<u8>>;

impl Store {
    /// What changed in dataset `ds` from snapshot `from` to snapshot `to`
    /// (`None`: the live dataset as last committed), sorted by path.
    pub fn diff_snapshots(&self, ds: u64, from: &str, to: Option<&str>) -> Result<Vec<DiffEntry>> {
        let t = self.trees.read();
        let (a, _) = crate::snapshot_admin::find(&t, ds, from)?;
        let b = match to {
            Some(name) => crate::snapshot_admin::find(&t, ds, name)?.0,
            None => ds,
        };
        let (ta, tb) = (
            t.tree(a).ok_or(FsError::NoDataset(a))?,
            t.tree(b).ok_or(FsError::NoDataset(b))?,
        );
        let (old, new) = differing_items(ta, tb)?;
        let mut out = describe(ta, tb, &old, &new)?;
        out.sort_by(|x, y| x.path.cmp(&y.path));
        Ok(out)
    }
}

/// The items of the leaves only one of the two trees reaches, per tree,
/// less those equal in both.
pub(crate) fn differing_items(a: &Tree, b: &Tree) -> Result<(Items, Items)> {
    let (mut fa, mut la) = frontier(a)?;
    let (mut fb, mut lb) = frontier(b)?;
    // Each round goes one level down in at least one tree.
    for _ in 0..=2 * aegis_pool::tree_root::MAX_TREE_HEIGHT as usize {
        if la > lb {
            fa = expand(a, &fa)?;
            la -= 1;
            continue;
        }
        if lb > la {
            fb = expand(b, &fb)?;
            lb -= 1;
            continue;
        }
        drop_shared(&mut fa, &mut fb);
        if la == 0 {
            let (ia, ib) = (leaf_items(a, &fa)?, leaf_items(b, &fb)?);
            let only = |x: &Items, y: &Items| -> Items {
                x.iter()
                    .filter(|(k, v)| y.get(*k) != Some(v))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            return Ok((only(&ia, &ib), only(&ib, &ia)));
        }
        fa = expand(a, &fa)?;
        fb = expand(b, &fb)?;
        la -= 1;
        lb -= 1;
    }
    Err(FsError::Damaged(
        "a tree deeper than the format allows".into(),
    ))
}

/// A tree's root and its level (an empty tree: nothing, level 0).
fn frontier(t: &Tree) -> Result<(Vec<BlockPtr>, u32)> {
    match t.root_child() {
        None => Ok((Vec::new(), 0)),
        Some(Child::Disk(bp)) => Ok((vec![bp.clone()], bp.level as u32)),
        Some(Child::Dirty(_)) => Err(FsError::Invalid(
            "the dataset has changes not committed; commit first".into(),
        )),
    }
}

fn id_of(bp: &BlockPtr) -> ((u32, u64), [u8; 32]) {
    let a = bp.addrs.first().map_or((0, 0), |d| (d.device, d.offset));
    (a, bp.checksum)
}

/// Nodes both frontiers hold: the same subtree, dropped from both.
fn drop_shared(fa: &mut Vec<BlockPtr>, fb: &mut Vec<BlockPtr>) {
    let ia: HashSet<_> = fa.iter().map(id_of).collect();
    let ib: HashSet<_> = fb.iter().map(id_of).collect();
    fa.retain(|bp| !ib.contains(&id_of(bp)));
    fb.retain(|bp| !ia.contains(&id_of(bp)));
}

fn load(t: &Tree, bp: &BlockPtr) -> Result<std::sync::Arc<Node>> {
    Ok(t.load(bp)?)
}

/// The children of every node of a frontier.
fn expand(t: &Tree, nodes: &[BlockPtr]) -> Result<Vec<BlockPtr>> {
    let mut out = Vec::new();
    for bp in nodes {
        let node = load(t, bp)?;
        if node.is_leaf() {
            return Err(FsError::Damaged(format!(
                "{} is a leaf above the leaf level",
                bp.describe()
            )));
        }
        out.extend((0..node.children.len()).filter_map(|i| node.child_ptr(i).cloned()));
    }
    Ok(out)
}

fn leaf_items(t: &Tree, leaves: &[BlockPtr]) -> Result<Items> {
    let mut out = Items::new();
    for bp in leaves {
        let node = load(t, bp)?;
        for (k, v) in node.keys.iter().zip(&node.vals) {
            out.insert(k.to_vec(), v.clone());
        }
    }
    Ok(out)
}

/// The object number of a dataset tree key.
fn object_of(k: &[u8]) -> Option<(u64, u8)> {
    (k.len() >= 9).then(|| {
        (
            u64::from_be_bytes(k[..8].try_into().expect("8 bytes")),
            k[8],
        )
    })
}

/// Group the differing items by object and name what happened to each.
fn describe(a: &Tree, b: &Tree, old: &Items, new: &Items) -> Result<Vec<DiffEntry>> {
    let mut objects: BTreeMap<u64, bool> = BTreeMap::new();
    for k in old.keys().chain(new.keys()) {
        if let Some((obj, item)) = object_of(k) {
            if obj != META_OBJECT {
                let renamed = objects.entry(obj).or_default();
                *renamed |= item == BACKREF;
            }
        }
    }
    let mut out = Vec::new();
    for (obj, names_changed) in objects {
        // An object without a name (an open file unlinked, freed when
        // closed) is gone for a user reading paths.
        let (ia, ib) = (named_inode(a, obj)?, named_inode(b, obj)?);
        let path_a = || path_of(a, obj);
        let path_b = || path_of(b, obj);
        match (ia, ib) {
            (None, None) => {}
            (None, Some(_)) => out.push(entry(Change::Created, path_b()?, None)),
            (Some(_), None) => out.push(entry(Change::Deleted, path_a()?, None)),
            (Some(x), Some(y)) if x.generation != y.generation => {
                out.push(entry(Change::Deleted, path_a()?, None));
                out.push(entry(Change::Created, path_b()?, None));
            }
            (Some(_), Some(_)) => {
                let (pa, pb) = (path_a()?, path_b()?);
                if names_changed && pa != pb {
                    out.push(entry(Change::Renamed, pa, Some(pb)));
                } else {
                    out.push(entry(Change::Modified, pb, None));
                }
            }
        }
    }
    Ok(out)
}

fn entry(change: Change, path: String, new_path: Option<String>) -> DiffEntry {
    DiffEntry {
        change,
        path,
        new_path,
    }
}

fn named_inode(t: &Tree, ino: u64) -> Result<Option<InodeRecord>> {
    let Some(v) = t.get(&keys::inode(ino))? else {
        return Ok(None);
    };
    if ino != ROOT_INO && first_name(t, ino)?.is_none() {
        return Ok(None);
    }
    Ok(Some(InodeRecord::decode(&v)?))
}

/// The first back-reference of `ino`: (parent, name).
fn first_name(t: &Tree, ino: u64) -> Result<Option<(u64, Vec<u8>)>> {
    let lo = keys::item_start(ino, BACKREF);
    let hi = keys::item_end(ino, BACKREF);
    let first = t
        .range(
            std::ops::Bound::Included(&lo[..]),
            std::ops::Bound::Excluded(&hi[..]),
        )
        .next()
        .transpose()?;
    let Some((k, name)) = first else {
        return Ok(None);
    };
    let (parent, _) = keys::parse_backref(&k).ok_or_else(|| FsError::Corrupt {
        what: "back-reference".into(),
        detail: "malformed key".into(),
    })?;
    Ok(Some((parent, name)))
}

/// `/a/b` of object `ino` in `t`, through its first name at each step
/// (a file with several hard links shows one of them).
fn path_of(t: &Tree, ino: u64) -> Result<String> {
    let mut parts: Vec<String> = Vec::new();
    let mut at = ino;
    for _ in 0..MAX_DEPTH {
        if at == ROOT_INO {
            parts.reverse();
            return Ok(format!("/{}", parts.join("/")));
        }
        let Some((parent, name)) = first_name(t, at)? else {
            return Err(FsError::Damaged(format!(
                "inode {at} on a path has no name"
            )));
        };
        parts.push(String::from_utf8_lossy(&name).into_owned());
        at = parent;
    }
    Err(FsError::Damaged(format!(
        "the path of inode {ino} does not end at the root"
    )))
}
