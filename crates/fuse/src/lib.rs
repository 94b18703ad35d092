//! AegisFS FUSE adapter: serves any [`aegis_vfs::FileSystem`] to the kernel.
//!
//! The crate is a thin translation layer. [`mount`] (blocking, turns
//! SIGTERM/SIGINT/SIGHUP into a clean unmount) and [`spawn`] (background,
//! for tests and embedding) mount an `Arc<dyn FileSystem>` with the kernel
//! checking permissions (`default_permissions`) and several worker threads.
//! [`parse_options`] reads a `mount -o` style list and separates what the
//! filesystem itself must see (`ro`, the atime policy, declared options).
//!
//! The filesystem keeps all state: inode lookup counts, open handles,
//! readdir cookies. The adapter (private module `adapter`) only converts
//! arguments and replies, and keeps lookup counts exact where FUSE would
//! let them drift (readdirplus entries that do not fit a reply). When a
//! session ends the adapter drops its reference, so the caller commits and
//! closes the filesystem afterwards.

mod adapter;
pub mod control;
pub mod error;
mod fuseblk;
pub mod options;
pub mod session;

pub use error::{MountError, OptionError};
pub use options::{
    default_threads, parse_options, AccessPolicy, FsOption, MountConfig, ParsedOptions,
};
pub use session::{check_mountpoint, mount, spawn, MountHandle};
