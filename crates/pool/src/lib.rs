//! The pool layer: devices → one pool of checksummed, optionally compressed
//! and replicated blocks, with labels, an uberblock ring and persistent
//! space maps. The tree layer above stores its nodes here; nothing above
//! sees device offsets except through [`BlockPtr`].
//!
//! The interface is the `pub use` list below. The modules that define
//! on-disk structures stay public too, each for the readers named on it;
//! the rest of the crate is private.

mod allocator;
/// Public for the decoders above (the tree sizes its nodes by the pointer
/// layout) and for the fuzzer.
pub mod blkptr;
mod block_cache;
/// Public for the fuzzer, which forges self-checksummed labels and
/// uberblocks.
pub mod checksum;
/// Public for the decoders above: every on-disk record of the tree, the
/// filesystem and the intent log is read and written with it.
pub mod codec;
mod compression;
mod error;
mod features;
mod gang_header;
/// Public for the CLI (device signatures, mkfs limits), the format tests
/// and the fuzzer.
pub mod label;
mod pool;
/// Public for the fuzzer, which decodes space map blocks.
pub mod space_map;
/// Public for the tree, which bounds its descent by the format's height.
pub mod tree_root;
/// Public for the format tests and the fuzzer, which read and forge the
/// uberblock ring.
pub mod uberblock;
mod write_behind;

pub use allocator::{AllocClass, Extent, DEFER_TXGS};
pub use blkptr::{BlockPtr, BlockType, Dva, BLKPTR_HEADER, DVA_SIZE};
pub use block_cache::{BlockData, CachePolicy, CacheStats, MIN_CACHE_BYTES};
pub use checksum::ChecksumType;
pub use compression::Compression;
pub use error::{PoolError, Result};
pub use features::Features;
pub use pool::{
    ClosedTxg, CopyCheck, CopyState, Counters, CreateOptions, EncodedBlock, OpenOptions,
    OpenReport, Pool, SpaceInfo, StoredForm, WriteProps,
};
pub use tree_root::TreeRoot;
pub use uberblock::Uberblock;
