//! The filesystem layer: datasets on trees, transaction groups, and the
//! consistency checker. POSIX objects (inodes, directories, file records)
//! are stored in a dataset's tree on top of this.

pub mod dataset;
pub mod error;
pub mod fsck;
pub mod intent_log;
pub mod posix;
pub mod store;
mod txg;

pub use error::{FsError, Result};
pub use store::{CommitHook, Store, StoreOptions};
