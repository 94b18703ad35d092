//! The pool layer: devices → one pool of checksummed, optionally compressed
//! and replicated blocks, with labels, an uberblock ring and persistent
//! space maps. The tree layer above stores its nodes here; nothing above
//! sees device offsets except through [`BlockPtr`].

pub mod allocator;
pub mod blkptr;
pub mod checksum;
pub mod codec;
pub mod compression;
pub mod error;
pub mod features;
pub mod label;
pub mod pool;
pub mod space_map;
pub mod tree_root;
pub mod uberblock;
pub mod write_behind;

pub use allocator::{AllocClass, Extent, DEFER_TXGS};
pub use blkptr::{BlockPtr, BlockType, Dva};
pub use checksum::ChecksumType;
pub use compression::Compression;
pub use error::{PoolError, Result};
pub use pool::{
    CopyCheck, CopyState, CreateOptions, OpenOptions, OpenReport, Pool, SpaceInfo, WriteProps,
};
pub use tree_root::TreeRoot;
pub use uberblock::Uberblock;
