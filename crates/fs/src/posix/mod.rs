//! POSIX objects stored in a dataset's tree: the records and keys, and
//! the typed operations on them that a [`Tx`](crate::Tx) offers
//! (directory entries with their index and back-references, file data
//! records, xattr and symlink chunks). This module owns the bytes and
//! keeps each object's items consistent with each other; the POSIX
//! semantics (rename rules, link counts, open handles) live in the
//! on-disk filesystem crate above (`aegis_diskfs`, the ZPL of this design).
//!
//! Invariants the upper layer keeps and fsck may check: every directory
//! entry has an index item with the same cookie and a back-reference on the
//! child; a directory's `size` counts its entries and its `next_cookie` is
//! above every cookie used in it; an inode with `nlink == 0` exists only
//! while listed as an orphan.

pub mod check;
pub(crate) mod directory;
pub mod dirent;
#[doc(hidden)]
pub mod dirty_data;
pub mod file_clone;
pub(crate) mod file_data;
mod file_prealloc;
pub(crate) mod file_read;
pub mod file_record;
pub mod inode;
pub mod keys;
pub mod meta;
pub mod quota;
pub(crate) mod read_ahead;
pub(crate) mod record_size;
pub(crate) mod settle_encode;
pub(crate) mod xattr;

pub use directory::Found;
pub use dirent::DirentValue;
pub use file_data::write_size_bytes;
pub use file_record::{FileRecord, ShareRule, MAX_RECORD_SIZE};
pub use inode::{record_shift_of, InodeRecord};
pub use meta::{
    feature_names, DatasetMeta, DEFAULT_RECORD_SIZE, FEATURE_PREALLOC, FEATURE_PREALLOC_TREE,
    FEATURE_QUOTA, FEATURE_RECEIVING, FEATURE_RECORDSIZE, MIN_RECORD_SIZE,
};

use aegis_pool::{AllocClass, Compression, Extent};

use crate::error::{FsError, Result};
use crate::intent_log;
use crate::store::{now_ns, Store};

/// The root directory's inode number (FUSE's root).
pub const ROOT_INO: u64 = 1;
/// Readdir cookies 1 and 2 are `.` and `..`; entries start at 3.
pub const FIRST_COOKIE: u64 = 3;

/// How `format` lays out a new filesystem.
#[derive(Clone, Debug)]
pub struct FormatOptions {
    pub record_size: u32,
    pub compression: Compression,
    /// Owner and mode of the root directory.
    pub root_uid: u32,
    pub root_gid: u32,
    pub root_mode: u32,
    /// Bytes of the intent log ring; 0 picks 1/64 of the pool (256 KiB
    /// to 64 MiB).
    pub log_ring: u64,
}

impl Default for FormatOptions {
    fn default() -> Self {
        FormatOptions {
            record_size: DEFAULT_RECORD_SIZE,
            compression: Compression::Lz4,
            root_uid: 0,
            root_gid: 0,
            root_mode: 0o755,
            log_ring: 0,
        }
    }
}

/// Write an empty POSIX filesystem (meta record and root directory) into
/// dataset `ds`, which must be empty, and commit it.
pub fn format(store: &Store, ds: u64, opts: &FormatOptions) -> Result<()> {
    if !opts.record_size.is_power_of_two()
        || !(MIN_RECORD_SIZE..=MAX_RECORD_SIZE).contains(&opts.record_size)
    {
        return Err(FsError::Invalid(format!(
            "record size {} is not a power of two from {} to {}",
            opts.record_size, MIN_RECORD_SIZE, MAX_RECORD_SIZE
        )));
    }
    let now = now_ns() as i64;
    store.with_tree(ds, AllocClass::Normal, |t| {
        if !t.is_empty() {
            return Err(FsError::Invalid("dataset is not empty".into()));
        }
        let meta = DatasetMeta {
            compression: opts.compression,
            record_size: opts.record_size,
            next_ino: ROOT_INO + 1,
            inodes: 1,
            features: 0,
            reserved: 0,
        };
        t.insert(&keys::meta(), &meta.encode())?;
        let root = InodeRecord {
            mode: inode::S_IFDIR | (opts.root_mode & 0o7777),
            uid: opts.root_uid,
            gid: opts.root_gid,
            nlink: 2,
            generation: 1,
            parent: ROOT_INO,
            next_cookie: FIRST_COOKIE,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            ..Default::default()
        };
        t.insert(&keys::inode(ROOT_INO), &root.encode())?;
        Ok(())
    })?;
    create_log_ring(store, ds, opts.log_ring)?;
    store.commit()?;
    Ok(())
}

/// Give dataset `ds` an intent log ring of `len` bytes (0: the default for
/// the pool's size), zero-filled and recorded in its tree; durable with
/// the next commit.
pub fn create_log_ring(store: &Store, ds: u64, len: u64) -> Result<Extent> {
    let pool = store.pool();
    let bs = pool.block_size();
    let len = match len {
        0 => intent_log::default_ring_len(pool.space().total, bs),
        n => n,
    };
    intent_log::check_ring_len(len, bs).map_err(|e| FsError::Invalid(format!("log ring: {e}")))?;
    let extent = pool.alloc_log_ring(len)?;
    let ring = intent_log::LogRing { extent };
    let recorded = store.with_tree(ds, AllocClass::Normal, |t| {
        if t.get(&keys::log_ring())?.is_some() {
            return Err(FsError::Invalid(
                "the dataset has a log ring already".into(),
            ));
        }
        t.insert(&keys::log_ring(), &ring.encode())?;
        Ok(())
    });
    if let Err(e) = recorded {
        pool.free_unrecorded(extent)?;
        return Err(e);
    }
    Ok(extent)
}
