//! Directories on disk: entries keyed by name hash and cookie, the index by
//! cookie that readdir walks, and the back-reference each entry leaves on
//! its child. The three items of one entry are always written and removed
//! together.

use aegis_btree::Tree;

use super::{keys, DirentValue, InodeRecord, ROOT_INO};
use crate::error::{FsError, Result};
use crate::tx::{scan, Tx};

/// An entry found by name.
#[derive(Debug, Clone)]
pub struct Found {
    pub cookie: u64,
    pub ino: u64,
    pub file_type: u32,
}

/// Look `name` up in directory `dir`: scan the entries of its hash (almost
/// always one) and compare names.
pub(crate) fn find(tree: &Tree, dir: u64, name: &[u8]) -> Result<Option<Found>> {
    let (lo, hi) = keys::dirent_hash_range(dir, keys::name_hash(name));
    for (k, v) in scan(tree, &lo, &hi)? {
        let d = DirentValue::decode(&v)?;
        if d.name == name {
            let cookie = keys::dirent_cookie(&k)
                .ok_or_else(|| FsError::Damaged(format!("directory {dir}: malformed entry key")))?;
            return Ok(Some(Found {
                cookie,
                ino: d.ino,
                file_type: d.file_type,
            }));
        }
    }
    Ok(None)
}

/// Add `name → ino` to directory `dir` (whose record the caller holds and
/// writes back): a new cookie, the entry, its index item, the child's
/// back-reference, and the entry count.
pub(crate) fn insert(
    tx: &mut Tx<'_>,
    dir: u64,
    drec: &mut InodeRecord,
    name: &[u8],
    ino: u64,
    file_type: u32,
) -> Result<u64> {
    let cookie = drec.next_cookie;
    drec.next_cookie += 1;
    drec.size += 1;
    let v = DirentValue {
        ino,
        file_type,
        name: name.to_vec(),
    }
    .encode();
    tx.tree
        .insert(&keys::dirent(dir, keys::name_hash(name), cookie), &v)?;
    tx.tree.insert(&keys::dirindex(dir, cookie), &v)?;
    tx.tree.insert(&keys::backref(ino, dir, cookie), name)?;
    Ok(cookie)
}

/// Remove entry `name` (found as `f`) from `dir`.
pub(crate) fn remove(
    tx: &mut Tx<'_>,
    dir: u64,
    drec: &mut InodeRecord,
    name: &[u8],
    f: &Found,
) -> Result<()> {
    drec.size = drec
        .size
        .checked_sub(1)
        .ok_or_else(|| FsError::Damaged(format!("directory {dir}: entry count underflow")))?;
    tx.tree
        .remove(&keys::dirent(dir, keys::name_hash(name), f.cookie))?;
    tx.tree.remove(&keys::dirindex(dir, f.cookie))?;
    tx.tree.remove(&keys::backref(f.ino, dir, f.cookie))?;
    Ok(())
}

/// Point the existing entry `name` (found as `f`) of `dir` at another inode,
/// keeping its cookie (RENAME_EXCHANGE).
pub(crate) fn repoint(
    tx: &mut Tx<'_>,
    dir: u64,
    name: &[u8],
    f: &Found,
    ino: u64,
    file_type: u32,
) -> Result<()> {
    let v = DirentValue {
        ino,
        file_type,
        name: name.to_vec(),
    }
    .encode();
    tx.tree
        .insert(&keys::dirent(dir, keys::name_hash(name), f.cookie), &v)?;
    tx.tree.insert(&keys::dirindex(dir, f.cookie), &v)?;
    tx.tree.remove(&keys::backref(f.ino, dir, f.cookie))?;
    tx.tree.insert(&keys::backref(ino, dir, f.cookie), name)?;
    Ok(())
}

/// Entries of `dir` with a cookie above `after`, at most `max`.
pub(crate) fn list_after(
    tree: &Tree,
    dir: u64,
    after: u64,
    max: usize,
) -> Result<Vec<(u64, DirentValue)>> {
    let lo = keys::dirindex(dir, after.saturating_add(1));
    let hi = keys::item_end(dir, keys::DIRINDEX);
    let mut out = Vec::new();
    for item in tree.range(
        std::ops::Bound::Included(&lo[..]),
        std::ops::Bound::Excluded(&hi[..]),
    ) {
        if out.len() >= max {
            break;
        }
        let (k, v) = item?;
        let cookie = keys::dirindex_cookie(&k)
            .ok_or_else(|| FsError::Damaged(format!("directory {dir}: malformed index key")))?;
        out.push((cookie, DirentValue::decode(&v)?));
    }
    Ok(out)
}

/// Is `ancestor` equal to `ino` or above it? Walks `..` links, at most
/// `limit` steps, so a damaged tree cannot make it loop.
pub(crate) fn is_ancestor(tree: &Tree, ancestor: u64, mut ino: u64, limit: u64) -> Result<bool> {
    for _ in 0..=limit {
        if ino == ancestor {
            return Ok(true);
        }
        if ino == ROOT_INO {
            return Ok(false);
        }
        let r = read_inode(tree, ino)?;
        if !r.is_dir() {
            return Ok(false);
        }
        ino = r.parent;
    }
    Err(FsError::Damaged(format!(
        "directory {ino}: parent chain longer than the inode count"
    )))
}

pub(crate) fn read_inode(tree: &Tree, ino: u64) -> Result<InodeRecord> {
    match tree.get(&keys::inode(ino))? {
        Some(v) => Ok(InodeRecord::decode(&v)?),
        None => Err(FsError::NoInode(ino)),
    }
}

impl Tx<'_> {
    /// Add `name → ino` to directory `dir`, whose record `drec` the caller
    /// holds and writes back; returns the entry's cookie.
    pub fn add_entry(
        &mut self,
        dir: u64,
        drec: &mut InodeRecord,
        name: &[u8],
        ino: u64,
        file_type: u32,
    ) -> Result<u64> {
        insert(self, dir, drec, name, ino, file_type)
    }

    /// Remove entry `name` (found as `f`) from `dir`.
    pub fn remove_entry(
        &mut self,
        dir: u64,
        drec: &mut InodeRecord,
        name: &[u8],
        f: &Found,
    ) -> Result<()> {
        remove(self, dir, drec, name, f)
    }

    /// Point entry `name` (found as `f`) of `dir` at another inode, keeping
    /// its cookie (RENAME_EXCHANGE).
    pub fn repoint_entry(
        &mut self,
        dir: u64,
        name: &[u8],
        f: &Found,
        ino: u64,
        file_type: u32,
    ) -> Result<()> {
        repoint(self, dir, name, f, ino, file_type)
    }
}
