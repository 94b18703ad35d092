//! The POSIX half of fsck: the invariants that tie a dataset's items
//! together, checked from one ordered scan of its tree.
//!
//! - each directory entry has an index item with the same value and a
//!   back-reference on the child naming it, and the child exists with the
//!   type the entry says; no index item or back-reference is left over;
//! - a directory's entry count and next cookie match its entries, its `..`
//!   is the one directory that names it, and its link count is 2 plus its
//!   subdirectories; any other inode's link count is its number of names;
//! - an inode without a name is an orphan, and every orphan exists;
//! - file records sit on record boundaries, inside the file's size;
//! - the meta record's inode count and next inode number fit what exists.
//!
//! Findings are strings naming the object; nothing is repaired here.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use aegis_btree::Tree;

use super::inode::S_IFDIR;
use super::{keys, DatasetMeta, DirentValue, FileRecord, InodeRecord, ROOT_INO};
use crate::error::Result;

#[derive(Default)]
struct Obj {
    inode: Option<InodeRecord>,
    /// (cookie → entry) from DIRENT items.
    entries: BTreeMap<u64, DirentValue>,
    index: BTreeMap<u64, DirentValue>,
    /// (parent, cookie) → name.
    backrefs: BTreeMap<(u64, u64), Vec<u8>>,
    /// (offset, length, inline).
    records: Vec<(u64, u32, bool)>,
}

/// Check the POSIX invariants of one dataset tree. Returns the findings
/// (empty when clean), or `None` if the tree holds no filesystem.
pub fn check_tree(tree: &Tree, limit: usize) -> Result<Option<Vec<String>>> {
    let Some(meta) = tree.get(&keys::meta())? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    let meta = match DatasetMeta::decode(&meta) {
        Ok(m) => m,
        Err(e) => return Ok(Some(vec![format!("meta record: {e}")])),
    };
    let mut objs: BTreeMap<u64, Obj> = BTreeMap::new();
    let mut orphans = BTreeSet::new();
    let bad = |out: &mut Vec<String>, s: String| {
        if out.len() < limit {
            out.push(s);
        }
    };
    for item in tree.range(Bound::Unbounded, Bound::Unbounded) {
        let (k, v) = item?;
        if k.len() < 9 {
            bad(&mut out, format!("key {k:02x?} too short"));
            continue;
        }
        let obj = u64::from_be_bytes(k[..8].try_into().expect("8 bytes"));
        if obj == keys::META_OBJECT {
            match (k[8], keys::parse_orphan(&k)) {
                (keys::META, _) | (keys::LOG_HEAD, _) | (keys::LOG_RING, _) => {}
                (keys::ORPHAN, Some(ino)) => {
                    orphans.insert(ino);
                }
                _ => bad(&mut out, format!("unknown dataset item {k:02x?}")),
            }
            continue;
        }
        let o = objs.entry(obj).or_default();
        let r = match k[8] {
            keys::INODE => InodeRecord::decode(&v).map(|i| o.inode = Some(i)),
            keys::DIRENT => DirentValue::decode(&v).map(|d| match keys::dirent_cookie(&k) {
                Some(c) if keys::dirent(obj, keys::name_hash(&d.name), c) == k => {
                    o.entries.insert(c, d);
                }
                _ => bad(
                    &mut out,
                    format!("directory {obj}: entry key does not match its name"),
                ),
            }),
            keys::DIRINDEX => DirentValue::decode(&v).map(|d| {
                if let Some(c) = keys::dirindex_cookie(&k) {
                    o.index.insert(c, d);
                }
            }),
            keys::BACKREF => {
                if let Some(pc) = keys::parse_backref(&k) {
                    o.backrefs.insert(pc, v);
                }
                Ok(())
            }
            keys::XATTR | keys::SYMLINK => Ok(()),
            keys::POLICY => {
                if !(v.len() == 1 && (1..=3).contains(&v[0])) {
                    bad(&mut out, format!("object {obj}: bad log policy {v:?}"));
                }
                Ok(())
            }
            keys::DATA => FileRecord::decode(&v).map(|rec| {
                if let Some(off) = keys::data_offset(&k) {
                    let inline = matches!(rec, FileRecord::Inline(_));
                    o.records.push((off, rec.len(), inline));
                }
            }),
            t => {
                bad(&mut out, format!("object {obj}: unknown item type {t}"));
                Ok(())
            }
        };
        if let Err(e) = r {
            bad(&mut out, format!("object {obj}: {e}"));
        }
    }

    // Names pointing at each inode, and subdirectory counts.
    let mut names: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    let mut subdirs: BTreeMap<u64, u32> = BTreeMap::new();
    for (&dir, o) in &objs {
        for (&cookie, e) in &o.entries {
            names.entry(e.ino).or_default().push((dir, cookie));
            if e.file_type == S_IFDIR {
                *subdirs.entry(dir).or_default() += 1;
            }
            if o.index.get(&cookie) != Some(e) {
                bad(
                    &mut out,
                    format!(
                        "directory {dir}: entry {:?} has no matching index item",
                        String::from_utf8_lossy(&e.name)
                    ),
                );
            }
            let back = objs
                .get(&e.ino)
                .and_then(|c| c.backrefs.get(&(dir, cookie)));
            if back != Some(&e.name) {
                bad(
                    &mut out,
                    format!(
                        "inode {}: no back-reference for its name {:?} in {dir}",
                        e.ino,
                        String::from_utf8_lossy(&e.name)
                    ),
                );
            }
            match objs.get(&e.ino).and_then(|c| c.inode.as_ref()) {
                None => bad(
                    &mut out,
                    format!(
                        "directory {dir}: entry {:?} points at missing inode {}",
                        String::from_utf8_lossy(&e.name),
                        e.ino
                    ),
                ),
                Some(c) if c.file_type() != e.file_type => bad(
                    &mut out,
                    format!(
                        "directory {dir}: entry {:?} has the wrong file type",
                        String::from_utf8_lossy(&e.name)
                    ),
                ),
                _ => {}
            }
        }
        for c in o.index.keys() {
            if !o.entries.contains_key(c) {
                bad(
                    &mut out,
                    format!("directory {dir}: index item {c} without an entry"),
                );
            }
        }
    }
    let mut count = 0u64;
    let mut max_ino = 0;
    for (&ino, o) in &objs {
        for &(p, c) in o.backrefs.keys() {
            if objs
                .get(&p)
                .is_none_or(|d| d.entries.get(&c).is_none_or(|e| e.ino != ino))
            {
                bad(
                    &mut out,
                    format!("inode {ino}: back-reference to {p}/{c} without an entry"),
                );
            }
        }
        let Some(r) = &o.inode else {
            bad(&mut out, format!("object {ino}: items without an inode"));
            continue;
        };
        count += 1;
        max_ino = max_ino.max(ino);
        let named = names.get(&ino).map_or(0, |v| v.len()) as u32;
        if r.is_dir() {
            let want = if r.nlink == 0 {
                0
            } else {
                2 + subdirs.get(&ino).copied().unwrap_or(0)
            };
            if r.nlink != want {
                bad(
                    &mut out,
                    format!(
                        "directory {ino}: link count {} but {want} expected",
                        r.nlink
                    ),
                );
            }
            if r.size != o.entries.len() as u64 {
                bad(
                    &mut out,
                    format!(
                        "directory {ino}: entry count {} but {} entries",
                        r.size,
                        o.entries.len()
                    ),
                );
            }
            if o.entries
                .keys()
                .next_back()
                .is_some_and(|&c| c >= r.next_cookie)
            {
                bad(
                    &mut out,
                    format!(
                        "directory {ino}: next cookie {} already used",
                        r.next_cookie
                    ),
                );
            }
            let parents: Vec<u64> = names
                .get(&ino)
                .map(|v| v.iter().map(|p| p.0).collect())
                .unwrap_or_default();
            let ok = if ino == ROOT_INO {
                parents.is_empty() && r.parent == ROOT_INO
            } else {
                parents.len() <= 1 && parents.first().is_none_or(|&p| p == r.parent)
            };
            if !ok {
                bad(
                    &mut out,
                    format!(
                        "directory {ino}: '..' is {} but it is named in {parents:?}",
                        r.parent
                    ),
                );
            }
        } else if r.nlink != named {
            bad(
                &mut out,
                format!("inode {ino}: link count {} but {named} names", r.nlink),
            );
        }
        if named == 0 && ino != ROOT_INO && !orphans.contains(&ino) {
            bad(
                &mut out,
                format!("inode {ino}: no name and not an orphan (leaked)"),
            );
        }
        for &(off, len, inline) in &o.records {
            let rs = meta.record_size as u64;
            if !r.is_reg()
                || off % rs != 0
                || len as u64 > rs
                || off + len as u64 > r.size
                || (inline && off != 0)
            {
                bad(&mut out, format!("inode {ino}: file record at {off} (length {len}) outside the file or its record"));
            }
        }
    }
    for o in &orphans {
        if objs.get(o).is_none_or(|x| x.inode.is_none()) {
            bad(&mut out, format!("orphan {o} does not exist"));
        }
    }
    if count != meta.inodes {
        bad(
            &mut out,
            format!(
                "meta record counts {} inodes, the tree holds {count}",
                meta.inodes
            ),
        );
    }
    if max_ino >= meta.next_ino {
        bad(
            &mut out,
            format!(
                "inode {max_ino} is not below the next inode number {}",
                meta.next_ino
            ),
        );
    }
    Ok(Some(out))
}
