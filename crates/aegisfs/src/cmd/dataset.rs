//! `aegisfs dataset create|list|destroy|rename`: the filesystems of a
//! pool, on an unmounted image (the image lock refuses a mounted one).
//!
//! A dataset is named as `IMAGE/NAME`: the image path, then the dataset's
//! name as one more path component ([`split_target`]). A bare `IMAGE` is
//! the root dataset wherever a dataset is mounted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aegis_block::DeviceRef;
use aegis_diskfs::FormatOptions;
use aegis_fs::dataset::ROOT_DATASET;
use aegis_fs::dataset_admin::validate_name;
use aegis_fs::{ObjectRead, OpenOptions, Store, StoreOptions};
use serde::Serialize;

use super::mkfs::{parse_compression, parse_record_size};
use super::{CliError, CliResult};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(clap::Subcommand)]
pub enum Action {
    /// Create an empty filesystem: dataset create IMAGE/NAME (record size and compression default to the root dataset's).
    Create {
        target: PathBuf,
        #[arg(long)]
        record_size: Option<String>,
        #[arg(long)]
        compression: Option<String>,
    },
    /// List a pool's datasets: dataset list IMAGE [--json].
    List {
        image: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Destroy a dataset and free all it holds: dataset destroy IMAGE/NAME.
    Destroy { target: PathBuf },
    /// Rename a dataset: dataset rename IMAGE/NAME NEW (or IMAGE/NEW).
    Rename { target: PathBuf, new_name: String },
}

/// Split `IMAGE/NAME` into the image and the dataset name: a path that
/// names an existing file or device is the image itself (`None`: the
/// root dataset); otherwise its last component is a dataset name when
/// the rest names one.
pub fn split_target(arg: &Path) -> (PathBuf, Option<String>) {
    if arg.exists() {
        return (arg.to_path_buf(), None);
    }
    let (Some(parent), Some(name)) = (arg.parent(), arg.file_name()) else {
        return (arg.to_path_buf(), None);
    };
    if parent.is_file() || is_block_device(parent) {
        return (
            parent.to_path_buf(),
            Some(name.to_string_lossy().into_owned()),
        );
    }
    (arg.to_path_buf(), None)
}

fn is_block_device(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device())
}

/// `IMAGE/NAME` with a name, for the commands that need one.
pub(super) fn named_target(arg: &Path) -> CliResult<(PathBuf, String)> {
    match split_target(arg) {
        (image, Some(name)) => Ok((image, name)),
        (image, None) if image.exists() => Err(CliError::new(format!(
            "{}: name a dataset as IMAGE/NAME",
            image.display()
        ))),
        (image, None) => Err(CliError::new(format!(
            "{}: no such file or device",
            image.display()
        ))),
    }
}

/// Lock and open the pool on `image`, without mounting anything.
pub(super) fn open_locked(image: &Path, writable: bool) -> CliResult<Arc<Store>> {
    let shown = image.display();
    let dev = super::open_locked(image, writable)?;
    let opts = OpenOptions {
        read_only: !writable,
        rewind_txg: None,
    };
    Store::open(
        vec![Arc::new(dev) as DeviceRef],
        &opts,
        StoreOptions::default(),
    )
    .map_err(|e| CliError::new(format!("{shown}: {e}")))
}

pub fn run(a: Args) -> CliResult<u8> {
    match a.action {
        Action::Create {
            target,
            record_size,
            compression,
        } => create(&target, record_size.as_deref(), compression.as_deref()),
        Action::List { image, json } => list(&image, json),
        Action::Destroy { target } => destroy(&target),
        Action::Rename { target, new_name } => rename(&target, &new_name),
    }
}

fn create(target: &Path, record_size: Option<&str>, compression: Option<&str>) -> CliResult<u8> {
    let (image, name) = named_target(target)?;
    // Every argument is checked before the image is opened for writing.
    validate_name(&name).map_err(|e| CliError::new(e.to_string()))?;
    let record_size = record_size.map(parse_record_size).transpose()?;
    let compression = compression.map(parse_compression).transpose()?;
    let store = open_locked(&image, true)?;
    let shown = image.display();
    let root = store
        .view(ROOT_DATASET, |v| v.meta())
        .map_err(|e: aegis_fs::FsError| CliError::new(format!("{shown}: {e}")))?;
    let defaults = FormatOptions::default();
    let (uid, gid) = super::caller_ids();
    let format = FormatOptions {
        record_size: record_size
            .or(root.as_ref().map(|m| m.record_size))
            .unwrap_or(defaults.record_size),
        compression: compression
            .or(root.as_ref().map(|m| m.compression))
            .unwrap_or(defaults.compression),
        root_uid: uid,
        root_gid: gid,
        root_mode: 0o755,
        log_ring: 0,
    };
    let id = aegis_diskfs::create_dataset(&store, &name, &format)
        .map_err(|e| CliError::new(format!("{shown}/{name}: {e}")))?;
    close(&store, &image)?;
    println!("created dataset {name} (id {id}) in {shown}");
    Ok(0)
}

#[derive(Serialize)]
struct Row {
    id: u64,
    name: String,
    created_txg: u64,
    created_ns: u64,
    /// Whether it holds a filesystem (a meta record).
    filesystem: bool,
    /// Bytes on disk: every copy of its nodes and blocks, its log ring.
    used_bytes: u64,
}

fn list(image: &Path, json: bool) -> CliResult<u8> {
    let store = open_locked(image, false)?;
    let shown = image.display();
    let mut rows = Vec::new();
    for d in store.datasets() {
        let used_bytes = store
            .dataset_used_bytes(d.id)
            .map_err(|e| CliError::new(format!("{shown}/{}: {e}", d.name)))?;
        rows.push(Row {
            filesystem: store
                .view(d.id, |v| v.meta())
                .is_ok_and(|m: Option<_>| m.is_some()),
            id: d.id,
            name: d.name,
            created_txg: d.created_txg,
            created_ns: d.created_ns,
            used_bytes,
        });
    }
    if json {
        let out = serde_json::to_string_pretty(&rows).map_err(|e| CliError::new(e.to_string()))?;
        println!("{out}");
    } else {
        println!(
            "{:<6} {:<32} {:>10} {:>10}  CREATED",
            "ID", "NAME", "USED", "TXG"
        );
        for r in &rows {
            println!(
                "{:<6} {:<32} {:>10} {:>10}  {}",
                r.id,
                r.name,
                crate::units::human(r.used_bytes),
                r.created_txg,
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_nanos(r.created_ns)
                )
            );
        }
    }
    Ok(0)
}

fn destroy(target: &Path) -> CliResult<u8> {
    let (image, name) = named_target(target)?;
    let store = open_locked(&image, true)?;
    let shown = image.display();
    store
        .destroy_dataset(&name)
        .map_err(|e| CliError::new(format!("{shown}/{name}: {e}")))?;
    close(&store, &image)?;
    println!("destroyed dataset {name} in {shown}");
    Ok(0)
}

fn rename(target: &Path, new_name: &str) -> CliResult<u8> {
    let (image, name) = named_target(target)?;
    // `IMAGE/NEW` names the same pool; any other path is a mistake.
    let new_name = match new_name.rsplit_once('/') {
        Some((img, n)) if Path::new(img) == image => n,
        Some(_) => {
            return Err(CliError::new(format!(
                "{new_name}: a dataset is renamed within its own pool ({})",
                image.display()
            )))
        }
        None => new_name,
    };
    validate_name(new_name).map_err(|e| CliError::new(e.to_string()))?;
    let store = open_locked(&image, true)?;
    let shown = image.display();
    store
        .rename_dataset(&name, new_name)
        .map_err(|e| CliError::new(format!("{shown}/{name}: {e}")))?;
    close(&store, &image)?;
    println!("renamed dataset {name} to {new_name} in {shown}");
    Ok(0)
}

fn close(store: &Store, image: &Path) -> CliResult<()> {
    store
        .shutdown()
        .map_err(|e| CliError::new(format!("{}: {e}", image.display())))
}
