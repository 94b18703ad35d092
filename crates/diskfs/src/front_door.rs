//! The front door: a pool and its filesystem from a list of devices. The
//! CLI, the fuzzer, the crash harness and embedded users all come in here,
//! so a pool is made and mounted one way everywhere. (Tools that look at
//! a pool without mounting it, `fsck` and `info`, open an
//! [`aegis_fs::Store`] directly.)

use std::sync::Arc;

use aegis_block::DeviceRef;
use aegis_fs::dataset::ROOT_DATASET;
use aegis_fs::{CreateOptions, OpenOptions, Store, StoreOptions};
use thiserror::Error;

use crate::diskfs::{DiskFs, DiskFsOptions};

pub use aegis_fs::posix::FormatOptions;

/// Why a pool could not be made or mounted: the engine's refusal (a bad
/// label, no verifying uberblock, a bad format option) or the
/// filesystem's (no filesystem in the dataset, a failed log replay), each
/// with its own message.
#[derive(Debug, Error)]
pub enum OpenError {
    #[error(transparent)]
    Engine(#[from] aegis_fs::FsError),
    #[error(transparent)]
    Fs(#[from] aegis_vfs::FsError),
}

/// At the VFS edge an open error is a VFS error like any other, through
/// the one mapping (`error::lower`).
impl From<OpenError> for aegis_vfs::FsError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Engine(e) => crate::error::lower(e),
            OpenError::Fs(e) => e,
        }
    }
}

/// How [`open`] mounts: the pool (read-only, a txg to go back to), the
/// store (cache, commit interval), and the filesystem (dataset, atime,
/// intent log). [`create`] ignores `pool`.
#[derive(Clone, Debug, Default)]
pub struct MountOptions {
    pub pool: OpenOptions,
    pub store: StoreOptions,
    pub fs: DiskFsOptions,
    /// Start the thread that commits on a timer and on dirty size (a
    /// mount does; a test that wants every txg to be one it caused does
    /// not).
    pub sync_thread: bool,
    /// Mount the dataset of this name instead of `fs.dataset` (resolved
    /// once the pool is open).
    pub dataset_name: Option<String>,
    /// Mount this snapshot of the dataset, read-only.
    pub snapshot_name: Option<String>,
    /// Mount the dataset as it was then, read-only: the newest snapshot
    /// at or before it (time travel's window keeps one per txg).
    pub at: Option<aegis_fs::time_travel::At>,
}

/// Format `devices` as a new pool holding an empty filesystem in its root
/// dataset (committed), and mount it. `mkfs` unmounts it at once.
pub fn create(
    devices: Vec<DeviceRef>,
    pool: &CreateOptions,
    format: &FormatOptions,
    mount: &MountOptions,
) -> Result<Arc<DiskFs>, OpenError> {
    let store = Store::create(devices, pool, mount.store.clone())?;
    aegis_fs::posix::format(&store, ROOT_DATASET, format)?;
    mount_store(store, mount)
}

/// Open the pool on `devices` and mount its filesystem (on a writable
/// mount the intent log is replayed and orphans are freed).
pub fn open(devices: Vec<DeviceRef>, mount: &MountOptions) -> Result<Arc<DiskFs>, OpenError> {
    let store = Store::open(devices, &mount.pool, mount.store.clone())?;
    mount_store(store, mount)
}

fn mount_store(store: Arc<Store>, mount: &MountOptions) -> Result<Arc<DiskFs>, OpenError> {
    let mut fs_opts = mount.fs.clone();
    if let Some(name) = &mount.dataset_name {
        fs_opts.dataset = store.dataset_id(name)?;
    }
    if let Some(snap) = &mount.snapshot_name {
        fs_opts.dataset = store.snapshot_id(fs_opts.dataset, snap)?;
    } else if let Some(at) = mount.at {
        let snap = store.snapshot_at(fs_opts.dataset, at)?;
        fs_opts.dataset = store.snapshot_id(fs_opts.dataset, &snap)?;
    }
    let fs = DiskFs::open(store.clone(), fs_opts)?;
    if store.is_read_only() {
        return Ok(fs);
    }
    // A snapshot delete a crash cut short finishes: in the background on
    // a mount with a sync thread (a batch a round), else before this
    // returns.
    if mount.sync_thread {
        store.start_sync_thread();
    } else {
        store.resume_snapshot_deletes(&mut |_| {})?;
    }
    Ok(fs)
}

/// Create dataset `name` in the pool of `store`, holding an empty
/// filesystem made as `format` says, and commit it. Returns its id.
pub fn create_dataset(
    store: &Arc<Store>,
    name: &str,
    format: &FormatOptions,
) -> Result<u64, OpenError> {
    Ok(store.create_dataset(name, |id| aegis_fs::posix::format(store, id, format))?)
}
