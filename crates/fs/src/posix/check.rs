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
//! - file records sit on boundaries of the file's own record size, no
//!   longer than it, inside the file's size (preallocated ones may lie
//!   past it: KEEP_SIZE);
//! - an inode names its own record size only in a dataset with the
//!   `recordsize` feature, and only a file or directory does;
//! - preallocated records exist only with the dataset's `prealloc`
//!   feature, and the meta record's reserved bytes are exactly the sum of
//!   their shares;
//! - the meta record's inode count and next inode number fit what exists.
//!
//! Findings are strings naming the object; nothing is repaired here.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use aegis_btree::Tree;

use super::inode::S_IFDIR;
use super::{
    keys, DatasetMeta, DirentValue, FileRecord, InodeRecord, ShareRule, FEATURE_PREALLOC,
    FEATURE_RECORDSIZE, ROOT_INO,
};
use crate::error::Result;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Inline,
    Block,
    Prealloc,
}

#[derive(Default)]
struct Obj {
    inode: Option<InodeRecord>,
    /// (cookie → entry) from DIRENT items.
    entries: BTreeMap<u64, DirentValue>,
    index: BTreeMap<u64, DirentValue>,
    /// (parent, cookie) → name.
    backrefs: BTreeMap<(u64, u64), Vec<u8>>,
    /// (offset, length, kind).
    records: Vec<(u64, u32, Kind)>,
}

/// Check the POSIX invariants of one dataset tree. Returns the findings
/// (empty when clean), or `None` if the tree holds no filesystem.
pub fn check_tree(
    tree: &Tree,
    (block_size, metadata_copies): (u32, u8),
    limit: usize,
) -> Result<Option<Vec<String>>> {
    let Some(meta) = tree.get(&keys::meta())? else {
        return Ok(None);
    };
    let meta = match DatasetMeta::decode(&meta) {
        Ok(m) => m,
        Err(e) => return Ok(Some(vec![format!("meta record: {e}")])),
    };
    let mut c = Checker {
        limit,
        rule: meta.share_rule(block_size, metadata_copies),
        reserved: 0,
        prealloc_records: 0,
        out: Vec::new(),
        objs: BTreeMap::new(),
        orphans: BTreeSet::new(),
        names: BTreeMap::new(),
        subdirs: BTreeMap::new(),
    };
    for item in tree.range(Bound::Unbounded, Bound::Unbounded) {
        let (k, v) = item?;
        c.scan_item(&k, v);
    }
    c.check_entries();
    let (count, max_ino) = c.check_inodes(&meta);
    c.check_meta(&meta, count, max_ino);
    if meta.features & super::FEATURE_QUOTA != 0 {
        for f in super::quota::check_usage(tree)? {
            c.bad(f);
        }
    }
    Ok(Some(c.out))
}

/// What one scan of the tree gathered, and the findings so far.
struct Checker {
    /// Findings stop being recorded past this many.
    limit: usize,
    rule: ShareRule,
    /// Sum of the preallocated records' shares, and their number.
    reserved: u64,
    prealloc_records: u64,
    out: Vec<String>,
    objs: BTreeMap<u64, Obj>,
    orphans: BTreeSet<u64>,
    /// Names pointing at each inode: inode → [(directory, cookie)].
    names: BTreeMap<u64, Vec<(u64, u64)>>,
    /// Subdirectory count of each directory.
    subdirs: BTreeMap<u64, u32>,
}

impl Checker {
    fn bad(&mut self, s: String) {
        if self.out.len() < self.limit {
            self.out.push(s);
        }
    }

    /// File one item of the scan under its object.
    fn scan_item(&mut self, k: &[u8], v: Vec<u8>) {
        let Some(obj) = k.get(..8).filter(|_| k.len() >= 9) else {
            self.bad(format!("key {k:02x?} too short"));
            return;
        };
        let obj = u64::from_be_bytes(obj.try_into().expect("8 bytes"));
        if obj == keys::META_OBJECT {
            match (k[8], keys::parse_orphan(k)) {
                (keys::META, _) | (keys::LOG_HEAD, _) | (keys::LOG_RING, _) => {}
                (keys::SCHEDULE, _) if k.len() == 17 && v.len() == 8 => {}
                (keys::RECV_STATE, _) if k.len() == 9 => {}
                (keys::TIMETRAVEL, _) if k.len() == 9 && v.len() == 8 => {}
                (keys::QUOTA, _) if super::quota::parse_quota_key(k).is_some() => {
                    if let Err(e) = super::quota::QuotaEntry::decode(&v) {
                        self.bad(format!("{e}"));
                    }
                }
                (keys::ORPHAN, Some(ino)) => {
                    self.orphans.insert(ino);
                }
                _ => self.bad(format!("unknown dataset item {k:02x?}")),
            }
            return;
        }
        if let Err(e) = self.scan_object_item(obj, k, v) {
            self.bad(format!("object {obj}: {e}"));
        }
    }

    fn scan_object_item(&mut self, obj: u64, k: &[u8], v: Vec<u8>) -> Result<()> {
        let mut finding = None;
        let o = self.objs.entry(obj).or_default();
        match k[8] {
            keys::INODE => o.inode = Some(InodeRecord::decode(&v)?),
            keys::DIRENT => {
                let d = DirentValue::decode(&v)?;
                match keys::dirent_cookie(k) {
                    Some(c) if keys::dirent(obj, keys::name_hash(&d.name), c) == k => {
                        o.entries.insert(c, d);
                    }
                    _ => {
                        finding = Some(format!(
                            "directory {obj}: entry key does not match its name"
                        ))
                    }
                }
            }
            keys::DIRINDEX => {
                let d = DirentValue::decode(&v)?;
                if let Some(c) = keys::dirindex_cookie(k) {
                    o.index.insert(c, d);
                }
            }
            keys::BACKREF => {
                if let Some(pc) = keys::parse_backref(k) {
                    o.backrefs.insert(pc, v);
                }
            }
            keys::XATTR | keys::SYMLINK => {}
            keys::POLICY => {
                if !(v.len() == 1 && (1..=3).contains(&v[0])) {
                    finding = Some(format!("object {obj}: bad log policy {v:?}"));
                }
            }
            keys::DATA => {
                let rec = FileRecord::decode(&v)?;
                if let Some(off) = keys::data_offset(k) {
                    let kind = match rec {
                        FileRecord::Inline(_) => Kind::Inline,
                        FileRecord::Block { .. } => Kind::Block,
                        FileRecord::Prealloc { .. } => Kind::Prealloc,
                    };
                    o.records.push((off, rec.len(), kind));
                }
                if let FileRecord::Prealloc { .. } = rec {
                    self.reserved = self.reserved.saturating_add(rec.reserved(self.rule));
                    self.prealloc_records += 1;
                }
            }
            t => finding = Some(format!("object {obj}: unknown item type {t}")),
        }
        if let Some(f) = finding {
            self.bad(f);
        }
        Ok(())
    }

    /// Each directory entry against its index item, the child's
    /// back-reference and the child itself; gathers names and subdirs.
    fn check_entries(&mut self) {
        let mut found = Vec::new();
        for (&dir, o) in &self.objs {
            for (&cookie, e) in &o.entries {
                self.names.entry(e.ino).or_default().push((dir, cookie));
                if e.file_type == S_IFDIR {
                    *self.subdirs.entry(dir).or_default() += 1;
                }
                found.extend(entry_findings(&self.objs, dir, cookie, e));
            }
            for c in o.index.keys() {
                if !o.entries.contains_key(c) {
                    found.push(format!("directory {dir}: index item {c} without an entry"));
                }
            }
        }
        for f in found {
            self.bad(f);
        }
    }

    /// Every object: back-references, link counts, directory shape,
    /// orphans and file records. Returns (inodes counted, highest inode).
    fn check_inodes(&mut self, meta: &DatasetMeta) -> (u64, u64) {
        let mut count = 0u64;
        let mut max_ino = 0;
        let mut found = Vec::new();
        for (&ino, o) in &self.objs {
            for &(p, c) in o.backrefs.keys() {
                if self
                    .objs
                    .get(&p)
                    .is_none_or(|d| d.entries.get(&c).is_none_or(|e| e.ino != ino))
                {
                    found.push(format!(
                        "inode {ino}: back-reference to {p}/{c} without an entry"
                    ));
                }
            }
            let Some(r) = &o.inode else {
                found.push(format!("object {ino}: items without an inode"));
                continue;
            };
            count += 1;
            max_ino = max_ino.max(ino);
            let names = self.names.get(&ino).map(|v| v.as_slice()).unwrap_or(&[]);
            let named = names.len() as u32;
            if r.is_dir() {
                let subdirs = self.subdirs.get(&ino).copied().unwrap_or(0);
                found.extend(directory_findings(ino, o, r, names, subdirs));
            } else if r.nlink != named {
                found.push(format!(
                    "inode {ino}: link count {} but {named} names",
                    r.nlink
                ));
            }
            if named == 0 && ino != ROOT_INO && !self.orphans.contains(&ino) {
                found.push(format!("inode {ino}: no name and not an orphan (leaked)"));
            }
            found.extend(record_size_findings(ino, r, meta));
            let rs = r.record_size_bytes(meta.record_size);
            found.extend(record_findings(ino, o, r, rs));
        }
        for f in found {
            self.bad(f);
        }
        (count, max_ino)
    }

    /// Orphans exist, and the meta record's counters fit what exists.
    fn check_meta(&mut self, meta: &DatasetMeta, count: u64, max_ino: u64) {
        let missing: Vec<u64> = self
            .orphans
            .iter()
            .copied()
            .filter(|o| self.objs.get(o).is_none_or(|x| x.inode.is_none()))
            .collect();
        for o in missing {
            self.bad(format!("orphan {o} does not exist"));
        }
        if count != meta.inodes {
            self.bad(format!(
                "meta record counts {} inodes, the tree holds {count}",
                meta.inodes
            ));
        }
        if self.prealloc_records > 0 && meta.features & FEATURE_PREALLOC == 0 {
            self.bad(format!(
                "{} preallocated file records without the prealloc feature",
                self.prealloc_records
            ));
        }
        if self.reserved != meta.reserved {
            self.bad(format!(
                "meta record counts {} reserved bytes, the preallocated records hold {}",
                meta.reserved, self.reserved
            ));
        }
        if max_ino >= meta.next_ino {
            self.bad(format!(
                "inode {max_ino} is not below the next inode number {}",
                meta.next_ino
            ));
        }
    }
}

/// One directory entry: its index item, the child's back-reference, and
/// the child's existence and type.
fn entry_findings(
    objs: &BTreeMap<u64, Obj>,
    dir: u64,
    cookie: u64,
    e: &DirentValue,
) -> Vec<String> {
    let mut found = Vec::new();
    let name = String::from_utf8_lossy(&e.name);
    if objs[&dir].index.get(&cookie) != Some(e) {
        found.push(format!(
            "directory {dir}: entry {name:?} has no matching index item"
        ));
    }
    let child = objs.get(&e.ino);
    if child.and_then(|c| c.backrefs.get(&(dir, cookie))) != Some(&e.name) {
        found.push(format!(
            "inode {}: no back-reference for its name {name:?} in {dir}",
            e.ino
        ));
    }
    match child.and_then(|c| c.inode.as_ref()) {
        None => found.push(format!(
            "directory {dir}: entry {name:?} points at missing inode {}",
            e.ino
        )),
        Some(c) if c.file_type() != e.file_type => found.push(format!(
            "directory {dir}: entry {name:?} has the wrong file type"
        )),
        _ => {}
    }
    found
}

/// A directory's link count, entry count, next cookie and `..`.
fn directory_findings(
    ino: u64,
    o: &Obj,
    r: &InodeRecord,
    names: &[(u64, u64)],
    subdirs: u32,
) -> Vec<String> {
    let mut found = Vec::new();
    let want = if r.nlink == 0 { 0 } else { 2 + subdirs };
    if r.nlink != want {
        found.push(format!(
            "directory {ino}: link count {} but {want} expected",
            r.nlink
        ));
    }
    if r.size != o.entries.len() as u64 {
        found.push(format!(
            "directory {ino}: entry count {} but {} entries",
            r.size,
            o.entries.len()
        ));
    }
    if o.entries
        .keys()
        .next_back()
        .is_some_and(|&c| c >= r.next_cookie)
    {
        found.push(format!(
            "directory {ino}: next cookie {} already used",
            r.next_cookie
        ));
    }
    let parents: Vec<u64> = names.iter().map(|p| p.0).collect();
    let ok = if ino == ROOT_INO {
        parents.is_empty() && r.parent == ROOT_INO
    } else {
        parents.len() <= 1 && parents.first().is_none_or(|&p| p == r.parent)
    };
    if !ok {
        found.push(format!(
            "directory {ino}: '..' is {} but it is named in {parents:?}",
            r.parent
        ));
    }
    found
}

/// An inode's own record size: only with the dataset's feature, and only
/// on a file or directory (decode already checked its range).
fn record_size_findings(ino: u64, r: &InodeRecord, meta: &DatasetMeta) -> Vec<String> {
    let mut found = Vec::new();
    if r.record_shift != 0 && meta.features & FEATURE_RECORDSIZE == 0 {
        found.push(format!(
            "inode {ino}: record size {} without the recordsize feature",
            1u64 << r.record_shift
        ));
    }
    if r.record_shift != 0 && !(r.is_reg() || r.is_dir()) {
        found.push(format!(
            "inode {ino}: a record size on an object that is neither file nor directory"
        ));
    }
    found
}

/// File records sit on record boundaries, inside the file's size (a
/// preallocated one may lie past it); an inline record is at offset 0.
fn record_findings(ino: u64, o: &Obj, r: &InodeRecord, record_size: u64) -> Vec<String> {
    o.records
        .iter()
        .filter(|&&(off, len, kind)| {
            !r.is_reg()
                || record_size == 0
                || off % record_size != 0
                || len as u64 > record_size
                || (kind != Kind::Prealloc && off.saturating_add(len as u64) > r.size)
                || (kind == Kind::Inline && off != 0)
        })
        .map(|&(off, len, _)| {
            format!(
                "inode {ino}: file record at {off} (length {len}) outside the file or its record"
            )
        })
        .collect()
}
