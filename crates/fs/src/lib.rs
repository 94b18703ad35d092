//! The filesystem layer: datasets on trees, transaction groups, the one
//! transaction type ([`Tx`]), the POSIX objects and the operations that
//! keep their items consistent, the intent log, and the consistency
//! checker. The on-disk filesystem above (`aegis_diskfs`) gives these
//! objects POSIX semantics and reaches the engine only through here.

pub mod clone_admin;
pub mod clone_table;
pub mod dataset;
pub mod dataset_admin;
pub mod dead_list;
pub mod error;
pub mod fsck;
pub mod intent_log;
pub mod posix;
mod quota_admin;
pub mod receive;
pub mod receive_state;
mod rollback;
pub mod send;
pub mod send_stream;
pub mod snapshot;
pub mod snapshot_admin;
pub mod snapshot_diff;
pub mod snapshot_schedule;
pub mod store;
pub mod time_travel;
mod tx;
mod txg;

pub use error::{FsError, Result};
pub use store::{default_data_cache_bytes, default_dirty_limit, Store, StoreOptions};
pub use tx::{ObjectRead, Tx, TxSize, View};

pub use aegis_pool::label::LabelConfig;

/// The pool format's limits and label places, for argument checks and
/// for recognising a device that already holds a pool.
pub mod limits {
    pub use aegis_pool::label::{
        label_offsets, BLOCK_SIZES, LABEL_MAGIC, LABEL_SIZE, MAX_LABEL_NAME, MIN_DEVICE_SIZE,
    };
}
/// Pool types the layers above name when they create, open or describe a
/// pool; they reach the pool itself only through [`Store`].
pub use aegis_pool::{
    AllocClass, BlockPtr, CachePolicy, CacheStats, ChecksumType, Compression, CreateOptions,
    OpenOptions, OpenReport, SpaceInfo, Uberblock, MIN_CACHE_BYTES,
};
