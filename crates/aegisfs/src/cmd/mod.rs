//! One module per subcommand, plus the shared error and device opening.

pub mod crashtest;
pub mod dataset;
pub mod dedupe;
pub mod fsck;
pub mod image;
pub mod info;
pub mod mkfs;
pub mod mount;
pub mod property;
pub mod quota;
pub mod remount;
pub mod send;
pub mod shutdown;
pub mod snapshot;
pub mod timetravel;
pub mod up;
pub mod upgrade;

use std::path::Path;
use std::sync::Arc;

use aegis_block::{DeviceRef, FileDevice, OpenMode};
use aegis_fs::{OpenOptions, Store, StoreOptions};

/// A CLI failure: one line of context, and the exit code it maps to.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(pub String, pub u8);

impl CliError {
    pub fn new(msg: impl Into<String>) -> Self {
        CliError(msg.into(), 1)
    }
    pub fn exit_code(&self) -> u8 {
        self.1
    }
}

pub type CliResult<T> = Result<T, CliError>;

pub fn open_device(path: &Path, mode: OpenMode) -> CliResult<DeviceRef> {
    if !path.exists() {
        return Err(CliError::new(format!(
            "{}: no such file or device",
            path.display()
        )));
    }
    let dev = FileDevice::open(path, mode)
        .map_err(|e| CliError::new(format!("{}: {e}", path.display())))?;
    Ok(Arc::new(dev))
}

/// The caller's uid and gid: the root directory of a filesystem a command
/// makes (mkfs, dataset create) is theirs, as with mkfs.ext4 -E
/// root_owner.
pub fn caller_ids() -> (u32, u32) {
    // SAFETY: getuid/getgid cannot fail and touch no memory.
    unsafe { (libc::getuid(), libc::getgid()) }
}

/// Open `image` (writable or not) and take its exclusive lock, which a
/// mount holds: a command that changes or reads a pool as a whole refuses
/// a mounted one.
pub fn open_locked(image: &Path, writable: bool) -> CliResult<FileDevice> {
    let shown = image.display();
    if !image.exists() {
        return Err(CliError::new(format!("{shown}: no such file or device")));
    }
    let mode = if writable {
        OpenMode::ReadWrite
    } else {
        OpenMode::ReadOnly
    };
    let dev = FileDevice::open(image, mode).map_err(|e| CliError::new(format!("{shown}: {e}")))?;
    dev.lock_exclusive()
        .map_err(|e| CliError::new(format!("{shown}: {e}")))?;
    Ok(dev)
}

pub fn open_store(path: &Path, opts: &OpenOptions) -> CliResult<Arc<Store>> {
    let mode = if opts.read_only {
        OpenMode::ReadOnly
    } else {
        OpenMode::ReadWrite
    };
    let dev = open_device(path, mode)?;
    Store::open(vec![dev], opts, StoreOptions::default())
        .map_err(|e| CliError::new(format!("{}: {e}", path.display())))
}
