//! The on-disk filesystem of AegisFS: [`DiskFs`] implements the
//! [`aegis_vfs::FileSystem`] seam with POSIX semantics over the objects,
//! transactions and intent log of [`aegis_fs`], and reaches the engine
//! only through that crate. [`create`] and [`open`] are the front door: a
//! pool and its filesystem from a list of devices, for the CLI, the
//! fuzzer, the crash harness and embedded users alike.
//!
//! Files by concern: `diskfs.rs` (the type, mount, transactions, orphans,
//! fsync), `namespace.rs` (create, remove, readdir), `rename.rs`, `data.rs`
//! (open, write, punch, extend), `attrs.rs` (attributes, xattrs, the
//! logging policy), `record_size.rs` (the `recordsize` property),
//! `replay.rs` (the intent log at mount), `filesystem.rs`
//! (the trait, call by call), `inode.rs` (attributes and atime rules),
//! `front_door.rs`, and `error.rs` (the one errno mapping).

mod attrs;
mod control;
mod data;
mod diskfs;
mod error;
mod filesystem;
mod front_door;
mod inode;
mod inode_locks;
mod namespace;
mod record_size;
mod reflink;
mod rename;
mod replay;
mod restore;
mod snapshot_dir;

pub use aegis_fs::intent_log::{LogPolicy, LogStats};
pub use diskfs::{DiskFs, DiskFsOptions};
pub use front_door::{create, create_dataset, open, FormatOptions, MountOptions, OpenError};
pub use inode::AtimeMode;
pub use restore::{restore, Restored};
pub use snapshot_dir::{SnapshotDir, SNAPSHOTS_DIR};

/// The xattr name through which the logging policy is set and read
/// (`aegisfs set logging=... PATH`).
pub const POLICY_XATTR: &[u8] = b"user.aegisfs.logging";

/// The xattr name through which a file's or directory's record size is
/// set and read (`aegisfs set recordsize=64K PATH`): a power of two from
/// `4K` to `1M`, read back as `16K` or `1M`. See `record_size.rs`.
pub const RECORDSIZE_XATTR: &[u8] = b"user.aegisfs.recordsize";
