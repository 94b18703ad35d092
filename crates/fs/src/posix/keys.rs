//! Keys of a dataset's object tree.
//!
//! Every key starts with the object (inode) number, big-endian, then an item
//! type byte, so all items of one object sit together and in a fixed order
//! (inode, then entries, index, back-references, xattrs, data). Suffixes
//! are big-endian too, so a range scan walks them in numeric order.
//!
//! | item | suffix | value |
//! |---|---|---|
//! | [`INODE`] | — | [`InodeRecord`](super::InodeRecord) |
//! | [`DIRENT`] | name hash u64 · cookie u64 | [`DirentValue`](super::DirentValue) |
//! | [`DIRINDEX`] | cookie u64 | [`DirentValue`](super::DirentValue) |
//! | [`BACKREF`] | parent u64 · cookie u64 | the name |
//! | [`XATTR`] | name · 0x00 · chunk u16 | a slice of the value |
//! | [`SYMLINK`] | chunk u16 | a slice of the target |
//! | [`DATA`] | record offset u64 | [`FileRecord`](super::FileRecord) |
//! | [`POLICY`] | — | intent log policy, one byte |
//!
//! Object 0 holds the dataset's own items: [`META`] (the
//! [`DatasetMeta`](super::DatasetMeta)), one [`ORPHAN`] key per inode
//! whose last name is gone while it is still open, and the intent log's
//! [`LOG_RING`] and [`LOG_HEAD`] (see `crate::intent_log`), and one
//! [`SCHEDULE`] per snapshot schedule (`crate::snapshot_schedule`), and
//! while a send stream is being received into the dataset, its
//! [`RECV_STATE`] (`crate::receive_state`), and the [`TIMETRAVEL`]
//! window (`crate::time_travel`), and one [`QUOTA`] item per user, group
//! or the dataset with a limit or usage, in a dataset with quotas
//! (`quota.rs`).
//!
//! Directory entries are keyed by a 64-bit hash of the name *and* the
//! entry's cookie, so two names with the same hash are two keys: a lookup
//! scans the (tiny) range of one hash and compares names. That makes the
//! layout collision-safe without overflow chains.

use xxhash_rust::xxh3::xxh3_64_with_seed;

pub const INODE: u8 = 1;
pub const DIRENT: u8 = 2;
pub const DIRINDEX: u8 = 3;
pub const BACKREF: u8 = 4;
pub const XATTR: u8 = 5;
pub const SYMLINK: u8 = 6;
pub const DATA: u8 = 7;
/// The object's intent log policy (one byte: 1 full, 2 metadata, 3 none).
pub const POLICY: u8 = 8;
pub const META: u8 = 16;
pub const ORPHAN: u8 = 17;
/// Object 0: where the intent log chain of the next txg starts.
pub const LOG_HEAD: u8 = 18;
/// Object 0: the extent of the dataset's intent log ring.
pub const LOG_RING: u8 = 19;
/// Object 0: one snapshot schedule per interval (`snapshot_schedule.rs`).
pub const SCHEDULE: u8 = 20;
/// Object 0: a receive in progress (`receive_state.rs`).
pub const RECV_STATE: u8 = 21;
/// Object 0: the time travel window, u64 seconds (`time_travel.rs`).
pub const TIMETRAVEL: u8 = 22;

/// Object 0: one per (kind, id) with a quota or usage (`quota.rs`).
pub const QUOTA: u8 = 23;
/// The object holding dataset-wide items; inode numbers start above it.
pub const META_OBJECT: u64 = 0;

/// Seed of the name hash, fixed by format version 1.
const NAME_HASH_SEED: u64 = 0x4165_6769_7346_5331; // "AegisFS1"

pub fn name_hash(name: &[u8]) -> u64 {
    xxh3_64_with_seed(name, NAME_HASH_SEED)
}

fn key(obj: u64, item: u8, extra: usize) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + extra);
    k.extend_from_slice(&obj.to_be_bytes());
    k.push(item);
    k
}

/// The first key of object `obj`'s items of type `item`.
pub fn item_start(obj: u64, item: u8) -> Vec<u8> {
    key(obj, item, 0)
}

/// The first key after every item of type `item` of object `obj`.
pub fn item_end(obj: u64, item: u8) -> Vec<u8> {
    assert!(item < u8::MAX);
    key(obj, item + 1, 0)
}

/// The first key after every item of object `obj`.
pub fn object_end(obj: u64) -> Vec<u8> {
    match obj.checked_add(1) {
        Some(n) => key(n, 0, 0),
        None => vec![0xff; 10],
    }
}

pub fn inode(ino: u64) -> Vec<u8> {
    key(ino, INODE, 0)
}

pub fn dirent(dir: u64, hash: u64, cookie: u64) -> Vec<u8> {
    let mut k = key(dir, DIRENT, 16);
    k.extend_from_slice(&hash.to_be_bytes());
    k.extend_from_slice(&cookie.to_be_bytes());
    k
}

/// The range of entry keys of one name hash: `[start, end)`.
pub fn dirent_hash_range(dir: u64, hash: u64) -> (Vec<u8>, Vec<u8>) {
    let start = dirent(dir, hash, 0);
    let end = match hash.checked_add(1) {
        Some(h) => dirent(dir, h, 0),
        None => item_end(dir, DIRENT),
    };
    (start, end)
}

/// The cookie at the end of a [`DIRENT`] key.
pub fn dirent_cookie(k: &[u8]) -> Option<u64> {
    (k.len() == 25 && k[8] == DIRENT).then(|| be64(&k[17..25]))
}

pub fn dirindex(dir: u64, cookie: u64) -> Vec<u8> {
    let mut k = key(dir, DIRINDEX, 8);
    k.extend_from_slice(&cookie.to_be_bytes());
    k
}

/// The cookie of a [`DIRINDEX`] key.
pub fn dirindex_cookie(k: &[u8]) -> Option<u64> {
    (k.len() == 17 && k[8] == DIRINDEX).then(|| be64(&k[9..17]))
}

pub fn backref(ino: u64, parent: u64, cookie: u64) -> Vec<u8> {
    let mut k = key(ino, BACKREF, 16);
    k.extend_from_slice(&parent.to_be_bytes());
    k.extend_from_slice(&cookie.to_be_bytes());
    k
}

/// (parent, cookie) of a [`BACKREF`] key.
pub fn parse_backref(k: &[u8]) -> Option<(u64, u64)> {
    (k.len() == 25 && k[8] == BACKREF).then(|| (be64(&k[9..17]), be64(&k[17..25])))
}

/// Key of chunk `chunk` of xattr `name` (a name never holds NUL, so the
/// 0x00 separator keeps one name's chunks apart from a longer name's).
pub fn xattr(ino: u64, name: &[u8], chunk: u16) -> Vec<u8> {
    debug_assert!(!name.contains(&0));
    let mut k = key(ino, XATTR, name.len() + 3);
    k.extend_from_slice(name);
    k.push(0);
    k.extend_from_slice(&chunk.to_be_bytes());
    k
}

/// (name, chunk) of an [`XATTR`] key.
pub fn parse_xattr(k: &[u8]) -> Option<(&[u8], u16)> {
    if k.len() < 12 || k[8] != XATTR || k[k.len() - 3] != 0 {
        return None;
    }
    let n = k.len();
    Some((&k[9..n - 3], u16::from_be_bytes([k[n - 2], k[n - 1]])))
}

pub fn symlink(ino: u64, chunk: u16) -> Vec<u8> {
    let mut k = key(ino, SYMLINK, 2);
    k.extend_from_slice(&chunk.to_be_bytes());
    k
}

pub fn data(ino: u64, offset: u64) -> Vec<u8> {
    let mut k = key(ino, DATA, 8);
    k.extend_from_slice(&offset.to_be_bytes());
    k
}

/// The record offset of a [`DATA`] key.
pub fn data_offset(k: &[u8]) -> Option<u64> {
    (k.len() == 17 && k[8] == DATA).then(|| be64(&k[9..17]))
}

pub fn policy(ino: u64) -> Vec<u8> {
    key(ino, POLICY, 0)
}

pub fn meta() -> Vec<u8> {
    key(META_OBJECT, META, 0)
}

pub fn timetravel() -> Vec<u8> {
    key(META_OBJECT, TIMETRAVEL, 0)
}

pub fn recv_state() -> Vec<u8> {
    key(META_OBJECT, RECV_STATE, 0)
}

pub fn log_head() -> Vec<u8> {
    key(META_OBJECT, LOG_HEAD, 0)
}

pub fn log_ring() -> Vec<u8> {
    key(META_OBJECT, LOG_RING, 0)
}

/// Object 0: the snapshot schedule of interval `every_secs`.
pub fn schedule(every_secs: u64) -> Vec<u8> {
    let mut k = key(META_OBJECT, SCHEDULE, 8);
    k.extend_from_slice(&every_secs.to_be_bytes());
    k
}

pub fn orphan(ino: u64) -> Vec<u8> {
    let mut k = key(META_OBJECT, ORPHAN, 8);
    k.extend_from_slice(&ino.to_be_bytes());
    k
}

pub fn parse_orphan(k: &[u8]) -> Option<u64> {
    (k.len() == 17 && k[..8] == [0; 8] && k[8] == ORPHAN).then(|| be64(&k[9..17]))
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b.try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_object_then_item_then_suffix() {
        let mut ks = vec![
            data(2, 0),
            inode(3),
            dirent(2, 5, 9),
            dirindex(2, 3),
            inode(2),
            xattr(2, b"user.a", 0),
            xattr(2, b"user.a", 1),
            xattr(2, b"user.ab", 0),
            data(2, 1 << 20),
            meta(),
        ];
        ks.sort();
        assert_eq!(ks[0], meta());
        assert_eq!(ks[1], inode(2));
        assert_eq!(ks.last().unwrap(), &inode(3));
        let x: Vec<_> = ks.iter().filter_map(|k| parse_xattr(k)).collect();
        assert_eq!(
            x,
            vec![
                (&b"user.a"[..], 0),
                (&b"user.a"[..], 1),
                (&b"user.ab"[..], 0)
            ]
        );
        assert_eq!(dirent_cookie(&dirent(2, 5, 9)), Some(9));
        assert_eq!(dirindex_cookie(&dirindex(2, 3)), Some(3));
        assert_eq!(data_offset(&data(2, 1 << 20)), Some(1 << 20));
        assert_eq!(parse_backref(&backref(4, 2, 7)), Some((2, 7)));
        assert_eq!(parse_orphan(&orphan(99)), Some(99));
        let (s, e) = dirent_hash_range(2, u64::MAX);
        assert!(s < e && e == item_end(2, DIRENT));
    }
}
