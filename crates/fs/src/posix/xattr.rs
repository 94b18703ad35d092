//! Extended attributes and symlink targets: byte strings split into chunks
//! that each fit one tree value. Chunk 0 always exists (an empty value is
//! one empty chunk), so presence is one lookup.

use std::ops::Bound;

use aegis_btree::Tree;

use super::keys;
use crate::error::{FsError, Result};
use crate::tx::Tx;

/// Chunk size for values under keys of `key_len` bytes.
fn chunk_len(tree: &Tree, key_len: usize) -> usize {
    tree.max_value_len(key_len).max(1)
}

fn read_chunks(tree: &Tree, lo: &[u8], hi: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut out: Option<Vec<u8>> = None;
    for item in tree.range(Bound::Included(lo), Bound::Included(hi)) {
        let (_, v) = item?;
        out.get_or_insert_with(Vec::new).extend_from_slice(&v);
    }
    Ok(out)
}

fn write_chunks(tx: &mut Tx<'_>, key: impl Fn(u16) -> Vec<u8>, value: &[u8]) -> Result<()> {
    let n = chunk_len(tx.tree, key(0).len());
    let mut chunks: Vec<&[u8]> = value.chunks(n).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    let count = u16::try_from(chunks.len()).map_err(|_| FsError::ValueTooLong)?;
    for (i, c) in chunks.into_iter().enumerate() {
        tx.tree.insert(&key(i as u16), c)?;
    }
    // Drop chunks a longer old value left behind.
    let mut i = count;
    while tx.tree.remove(&key(i))?.is_some() {
        i += 1;
    }
    Ok(())
}

fn remove_chunks(tx: &mut Tx<'_>, key: impl Fn(u16) -> Vec<u8>) -> Result<bool> {
    let mut i = 0u16;
    while tx.tree.remove(&key(i))?.is_some() {
        i += 1;
    }
    Ok(i > 0)
}

pub(crate) fn get(tree: &Tree, ino: u64, name: &[u8]) -> Result<Option<Vec<u8>>> {
    read_chunks(
        tree,
        &keys::xattr(ino, name, 0),
        &keys::xattr(ino, name, u16::MAX),
    )
}

pub(crate) fn set(tx: &mut Tx<'_>, ino: u64, name: &[u8], value: &[u8]) -> Result<()> {
    write_chunks(tx, |i| keys::xattr(ino, name, i), value)
}

pub(crate) fn remove(tx: &mut Tx<'_>, ino: u64, name: &[u8]) -> Result<bool> {
    remove_chunks(tx, |i| keys::xattr(ino, name, i))
}

/// Names of all xattrs of `ino`, sorted.
pub(crate) fn names(tree: &Tree, ino: u64) -> Result<Vec<Vec<u8>>> {
    let (lo, hi) = (
        keys::item_start(ino, keys::XATTR),
        keys::item_end(ino, keys::XATTR),
    );
    let mut out = Vec::new();
    for item in tree.range(Bound::Included(&lo[..]), Bound::Excluded(&hi[..])) {
        let (k, _) = item?;
        match keys::parse_xattr(&k) {
            Some((name, 0)) => out.push(name.to_vec()),
            Some(_) => {}
            None => {
                return Err(FsError::Damaged(format!(
                    "inode {ino}: malformed xattr key"
                )))
            }
        }
    }
    Ok(out)
}

pub(crate) fn read_symlink(tree: &Tree, ino: u64) -> Result<Vec<u8>> {
    read_chunks(tree, &keys::symlink(ino, 0), &keys::symlink(ino, u16::MAX))?
        .ok_or_else(|| FsError::Damaged(format!("symlink {ino} has no target")))
}

fn write_symlink_chunks(tx: &mut Tx<'_>, ino: u64, target: &[u8]) -> Result<()> {
    write_chunks(tx, |i| keys::symlink(ino, i), target)
}

impl Tx<'_> {
    pub fn set_xattr(&mut self, ino: u64, name: &[u8], value: &[u8]) -> Result<()> {
        set(self, ino, name, value)
    }

    /// Whether there was one to remove.
    pub fn remove_xattr(&mut self, ino: u64, name: &[u8]) -> Result<bool> {
        remove(self, ino, name)
    }

    pub fn write_symlink(&mut self, ino: u64, target: &[u8]) -> Result<()> {
        write_symlink_chunks(self, ino, target)
    }
}
