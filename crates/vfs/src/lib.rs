//! AegisFS VFS layer.
//!
//! Above the seam sits [`embedded`]: the [`Vfs`] (mount table, path walk,
//! descriptors, caches) that any Rust program can link, and its
//! [`Process`], whose methods are the Linux system calls.
//!
//! [`FileSystem`] is the inode-level seam of AegisFS: the FUSE adapter, the
//! embedded API and the differential tests all call it, and both
//! [`RamFs`] (in memory, the test oracle) and `aegis_diskfs::DiskFs` (the
//! on-disk filesystem, over `aegis_fs`) implement it. This crate depends
//! on no part of the storage engine. It is object safe: use it as `Arc<dyn FileSystem>`.
//!
//! Conventions (see [`filesystem`] for each method):
//! - inode numbers, [`ROOT_INO`] = 1, names as raw bytes;
//! - permission checks belong to the caller (FUSE `default_permissions`),
//!   ownership of new inodes comes from the [`Request`];
//! - lookup counts and open handles keep unlinked inodes alive;
//! - every error is an [`FsError`] with one errno.

pub mod acl;
pub mod embedded;
pub mod error;
pub mod filesystem;
pub mod ramfs;
pub mod types;
pub mod validate;

pub use embedded::{Creds, Process, Vfs};
pub use error::{FsError, Result};
pub use filesystem::{ControlError, FileSystem};
pub use ramfs::{RamFs, RamFsConfig};
pub use types::*;
