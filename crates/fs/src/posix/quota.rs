//! Quotas: bytes and inodes per user, per group and per dataset, kept
//! exact by every change and enforced at the change that would pass them.
//!
//! What counts: an inode's `alloc_bytes` (its `st_blocks` in bytes) and
//! the inode itself, charged to its owner, its group and the dataset
//! (ZFS's `refquota` for the dataset: its live files, not its
//! snapshots). Usage is the sum over every inode record of the tree at
//! any moment, so it follows the records wherever they go: a commit that
//! settles dirty estimates into blocks, a replay after a crash (which
//! re-runs the changes), a rollback or a receive (whose trees carry their
//! own items), a snapshot delete (which changes no live inode).
//!
//! How: a dataset with the `quota` meta feature has one item per
//! (kind, id) in object 0. Each change computes its deltas as it writes
//! inode records (old against new, one tree read per inode write, only
//! in such datasets) and, before it stands, is refused whole with EDQUOT
//! if a delta that adds would leave its (kind, id) past a limit; deletes,
//! truncates and anything that only frees never are. Deltas go into an
//! in-memory table per dataset (`Trees::quotas`), written to the items
//! when the txg closes, so a write costs no item update. fsck recomputes
//! every usage from the inodes.
//!
//! Item: key object 0 · [`keys::QUOTA`] · kind u8 (0 user, 1 group, 2
//! dataset) · id u32 (BE; 0 for the dataset). Value (32 bytes LE): bytes
//! limit, inodes limit (0: none), bytes used, inodes used. An item with
//! no limit and no usage is removed.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use aegis_btree::Tree;
use aegis_pool::codec::{Reader, Writer};

use super::{keys, InodeRecord};
use crate::error::{FsError, Result};

pub const KIND_USER: u8 = 0;
pub const KIND_GROUP: u8 = 1;
pub const KIND_DATASET: u8 = 2;
const VALUE_LEN: usize = 32;

/// What a quota is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QuotaId {
    pub kind: u8,
    pub id: u32,
}

impl QuotaId {
    pub fn user(uid: u32) -> QuotaId {
        QuotaId {
            kind: KIND_USER,
            id: uid,
        }
    }
    pub fn group(gid: u32) -> QuotaId {
        QuotaId {
            kind: KIND_GROUP,
            id: gid,
        }
    }
    pub fn dataset() -> QuotaId {
        QuotaId {
            kind: KIND_DATASET,
            id: 0,
        }
    }
    pub fn describe(&self) -> String {
        match self.kind {
            KIND_USER => format!("user {}", self.id),
            KIND_GROUP => format!("group {}", self.id),
            _ => "the dataset".to_string(),
        }
    }
}

/// One (kind, id)'s limits and usage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaEntry {
    /// 0: no limit.
    pub limit_bytes: u64,
    pub limit_inodes: u64,
    pub used_bytes: u64,
    pub used_inodes: u64,
}

impl QuotaEntry {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(VALUE_LEN);
        for v in [
            self.limit_bytes,
            self.limit_inodes,
            self.used_bytes,
            self.used_inodes,
        ] {
            w.u64(v);
        }
        w.into_inner()
    }

    pub fn decode(v: &[u8]) -> Result<QuotaEntry> {
        if v.len() != VALUE_LEN {
            return Err(FsError::Corrupt {
                what: "quota item".into(),
                detail: format!("{} bytes, not {VALUE_LEN}", v.len()),
            });
        }
        let mut r = Reader::new(v, "quota item");
        Ok(QuotaEntry {
            limit_bytes: r.u64()?,
            limit_inodes: r.u64()?,
            used_bytes: r.u64()?,
            used_inodes: r.u64()?,
        })
    }

    fn is_empty(&self) -> bool {
        *self == QuotaEntry::default()
    }

    /// Would `(bytes, inodes)` more pass a limit? Only what adds counts.
    fn passes(&self, bytes: i64, inodes: i64) -> bool {
        let over = |limit: u64, used: u64, d: i64| {
            limit != 0 && d > 0 && used.saturating_add(d as u64) > limit
        };
        over(self.limit_bytes, self.used_bytes, bytes)
            || over(self.limit_inodes, self.used_inodes, inodes)
    }
}

pub fn quota_key(q: QuotaId) -> Vec<u8> {
    let mut k = keys::item_start(keys::META_OBJECT, keys::QUOTA);
    k.push(q.kind);
    k.extend_from_slice(&q.id.to_be_bytes());
    k
}

/// The quota id a key names, if it is a quota key.
pub fn parse_quota_key(k: &[u8]) -> Option<QuotaId> {
    let start = keys::item_start(keys::META_OBJECT, keys::QUOTA);
    let rest = k.strip_prefix(&start[..])?;
    (rest.len() == 5 && rest[0] <= KIND_DATASET).then(|| QuotaId {
        kind: rest[0],
        id: u32::from_be_bytes(rest[1..5].try_into().expect("4 bytes")),
    })
}

/// Usage changes of one change: (kind, id) → (bytes, inodes). A change
/// touches a few ids (an owner, a group, the dataset), so a short list
/// searched in order beats a map, and an empty one allocates nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deltas {
    inline: [(QuotaId, i64, i64); 6],
    len: usize,
    more: Vec<(QuotaId, i64, i64)>,
}

impl Default for QuotaId {
    fn default() -> QuotaId {
        QuotaId::dataset()
    }
}

impl Deltas {
    pub fn new() -> Deltas {
        Deltas::default()
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Add `(bytes, inodes)` to `q`'s change.
    pub fn add(&mut self, q: QuotaId, bytes: i64, inodes: i64) {
        let found = self.inline[..self.len]
            .iter_mut()
            .chain(self.more.iter_mut())
            .find(|(id, _, _)| *id == q);
        match found {
            Some(e) => {
                e.1 += bytes;
                e.2 += inodes;
            }
            None if self.len < 6 => {
                self.inline[self.len] = (q, bytes, inodes);
                self.len += 1;
            }
            None => self.more.push((q, bytes, inodes)),
        }
    }
    /// `q`'s change: (bytes, inodes).
    pub fn get(&self, q: QuotaId) -> (i64, i64) {
        self.iter()
            .find(|(id, _, _)| *id == q)
            .map_or((0, 0), |e| (e.1, e.2))
    }
    fn iter(&self) -> impl Iterator<Item = &(QuotaId, i64, i64)> {
        self.inline[..self.len].iter().chain(self.more.iter())
    }
}

/// Add to `d` what replacing inode record `old` by `new` moves (either
/// may be absent: a create, a delete).
pub(crate) fn account(d: &mut Deltas, old: Option<&InodeRecord>, new: Option<&InodeRecord>) {
    account_charges(d, old.map(Charge::of), new.map(Charge::of))
}

/// What an inode record is charged for: its owner, its group, its bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Charge {
    uid: u32,
    gid: u32,
    bytes: u64,
}

impl Charge {
    pub(crate) fn of(r: &InodeRecord) -> Charge {
        Charge {
            uid: r.uid,
            gid: r.gid,
            bytes: r.alloc_bytes,
        }
    }
}

/// What each inode a change touched is charged for now: a change
/// touches one to four inodes, held inline so the write path allocates
/// nothing for them; more spill into a list.
#[derive(Default)]
pub(crate) struct Charges {
    inline: [(u64, Option<Charge>); 4],
    len: usize,
    more: Vec<(u64, Option<Charge>)>,
}

impl Charges {
    /// `Some(charge)` if `ino` was seen (the inner `None`: no record).
    pub(crate) fn get(&self, ino: u64) -> Option<Option<Charge>> {
        self.inline[..self.len]
            .iter()
            .chain(self.more.iter())
            .find(|(i, _)| *i == ino)
            .map(|(_, c)| *c)
    }

    /// Note `ino`'s charge; `first` keeps one already noted.
    pub(crate) fn note(&mut self, ino: u64, c: Option<Charge>, first: bool) {
        let seen = self.inline[..self.len]
            .iter_mut()
            .chain(self.more.iter_mut())
            .find(|(i, _)| *i == ino);
        match seen {
            Some(_) if first => {}
            Some(e) => e.1 = c,
            None if self.len < 4 => {
                self.inline[self.len] = (ino, c);
                self.len += 1;
            }
            None => self.more.push((ino, c)),
        }
    }
}

/// [`account`] of two charges.
pub(crate) fn account_charges(d: &mut Deltas, old: Option<Charge>, new: Option<Charge>) {
    if old == new {
        return;
    }
    let mut add = |c: Charge, sign: i64| {
        let bytes = sign * c.bytes.min(i64::MAX as u64) as i64;
        for q in [
            QuotaId::user(c.uid),
            QuotaId::group(c.gid),
            QuotaId::dataset(),
        ] {
            d.add(q, bytes, sign);
        }
    };
    if let Some(o) = old {
        add(o, -1);
    }
    if let Some(n) = new {
        add(n, 1);
    }
}

/// A dataset's quota items in memory, with the ones changed since they
/// were last written.
#[derive(Default)]
pub(crate) struct QuotaTable {
    entries: BTreeMap<QuotaId, QuotaEntry>,
    dirty: BTreeSet<QuotaId>,
}

impl QuotaTable {
    /// The items of `tree`.
    pub(crate) fn load(tree: &Tree) -> Result<QuotaTable> {
        let mut t = QuotaTable::default();
        let lo = keys::item_start(keys::META_OBJECT, keys::QUOTA);
        let hi = keys::item_end(keys::META_OBJECT, keys::QUOTA);
        for item in tree.range(Bound::Included(&lo[..]), Bound::Excluded(&hi[..])) {
            let (k, v) = item?;
            let q = parse_quota_key(&k).ok_or_else(|| FsError::Corrupt {
                what: "quota item".into(),
                detail: format!("key {k:02x?}"),
            })?;
            t.entries.insert(q, QuotaEntry::decode(&v)?);
        }
        Ok(t)
    }

    /// Usage from a scan of every inode of `tree` (turning quotas on).
    pub(crate) fn count(tree: &Tree) -> Result<QuotaTable> {
        let mut d = Deltas::new();
        for item in tree.range(Bound::Unbounded, Bound::Unbounded) {
            let (k, v) = item?;
            if k.len() == 9 && k[8] == keys::INODE && k[..8] != [0; 8] {
                account(&mut d, None, Some(&InodeRecord::decode(&v)?));
            }
        }
        let mut t = QuotaTable::default();
        t.apply(&d);
        Ok(t)
    }

    pub(crate) fn get(&self, q: QuotaId) -> QuotaEntry {
        self.entries.get(&q).copied().unwrap_or_default()
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = (QuotaId, QuotaEntry)> + '_ {
        self.entries.iter().map(|(q, e)| (*q, *e))
    }

    /// The first (kind, id) that `d` would take past a limit.
    pub(crate) fn refuses(&self, d: &Deltas) -> Option<QuotaId> {
        d.iter()
            .find(|(q, b, i)| self.get(*q).passes(*b, *i))
            .map(|(q, _, _)| *q)
    }

    pub(crate) fn apply(&mut self, d: &Deltas) {
        for (q, b, i) in d.iter() {
            if (*b, *i) == (0, 0) {
                continue;
            }
            let e = self.entries.entry(*q).or_default();
            e.used_bytes = e.used_bytes.saturating_add_signed(*b);
            e.used_inodes = e.used_inodes.saturating_add_signed(*i);
            self.dirty.insert(*q);
        }
    }

    pub(crate) fn set_limits(&mut self, q: QuotaId, bytes: u64, inodes: u64) {
        let e = self.entries.entry(q).or_default();
        e.limit_bytes = bytes;
        e.limit_inodes = inodes;
        self.dirty.insert(q);
    }

    /// Every entry, written (the table just counted).
    pub(crate) fn mark_all_dirty(&mut self) {
        self.dirty = self.entries.keys().copied().collect();
    }

    /// Write the changed entries into `tree` (the txg is closing).
    pub(crate) fn write_dirty(&mut self, tree: &mut Tree) -> Result<()> {
        for q in std::mem::take(&mut self.dirty) {
            let e = self.get(q);
            if e.is_empty() {
                self.entries.remove(&q);
                tree.remove(&quota_key(q))?;
            } else {
                tree.insert(&quota_key(q), &e.encode())?;
            }
        }
        Ok(())
    }
}

/// fsck: the usage the items of `tree` record must be what its inodes
/// add up to. Returns the findings.
pub fn check_usage(tree: &Tree) -> Result<Vec<String>> {
    let stored = QuotaTable::load(tree)?;
    let counted = QuotaTable::count(tree)?;
    let ids: BTreeSet<QuotaId> = stored
        .entries
        .keys()
        .chain(counted.entries.keys())
        .copied()
        .collect();
    let mut out = Vec::new();
    for q in ids {
        let (s, c) = (stored.get(q), counted.get(q));
        if (s.used_bytes, s.used_inodes) != (c.used_bytes, c.used_inodes) {
            out.push(format!(
                "quota of {}: records {} bytes in {} inodes, the inodes hold {} in {}",
                q.describe(),
                s.used_bytes,
                s.used_inodes,
                c.used_bytes,
                c.used_inodes
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inode(uid: u32, gid: u32, bytes: u64) -> InodeRecord {
        InodeRecord {
            mode: 0o100644,
            uid,
            gid,
            alloc_bytes: bytes,
            ..Default::default()
        }
    }

    #[test]
    fn keys_and_items_round_trip() {
        for q in [QuotaId::user(1000), QuotaId::group(7), QuotaId::dataset()] {
            assert_eq!(parse_quota_key(&quota_key(q)), Some(q));
        }
        assert!(quota_key(QuotaId::user(9)) < quota_key(QuotaId::group(0)));
        let e = QuotaEntry {
            limit_bytes: 1 << 30,
            limit_inodes: 0,
            used_bytes: 4096,
            used_inodes: 3,
        };
        assert_eq!(QuotaEntry::decode(&e.encode()).unwrap(), e);
        assert!(QuotaEntry::decode(&e.encode()[..31]).is_err());
    }

    #[test]
    fn deltas_follow_owner_size_and_existence() {
        let mut d = Deltas::new();
        account(&mut d, None, Some(&inode(5, 6, 8192)));
        account(&mut d, Some(&inode(5, 6, 8192)), Some(&inode(7, 6, 4096)));
        assert_eq!(d.get(QuotaId::user(5)), (0, 0));
        assert_eq!(d.get(QuotaId::user(7)), (4096, 1));
        assert_eq!(d.get(QuotaId::group(6)), (4096, 1));
        assert_eq!(d.get(QuotaId::dataset()), (4096, 1));
        account(&mut d, Some(&inode(7, 6, 4096)), None);
        assert_eq!(d.get(QuotaId::user(7)), (0, 0));
    }

    #[test]
    fn only_what_adds_past_a_limit_is_refused() {
        let mut t = QuotaTable::default();
        t.set_limits(QuotaId::user(1), 10_000, 2);
        let one = |b, i| {
            let mut d = Deltas::new();
            d.add(QuotaId::user(1), b, i);
            d
        };
        assert_eq!(
            t.refuses(&one(10_000, 1)),
            None,
            "up to the limit is allowed"
        );
        t.apply(&one(10_000, 1));
        assert_eq!(t.refuses(&one(1, 0)), Some(QuotaId::user(1)));
        assert_eq!(t.refuses(&one(-500, 0)), None, "freeing is always allowed");
        assert_eq!(
            t.refuses(&one(-500, 2)),
            Some(QuotaId::user(1)),
            "inodes past theirs"
        );
        // A limit set below the usage refuses growth, not shrinking.
        t.set_limits(QuotaId::user(1), 100, 0);
        assert_eq!(t.refuses(&one(-100, 0)), None);
    }
}
