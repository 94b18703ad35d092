//! `aegisfs mkfs`: format an image file or block device.

use std::path::PathBuf;
use std::sync::Arc;

use aegis_block::{BlockDevice, DeviceRef, FileDevice, OpenMode};
use aegis_diskfs::{FormatOptions, MountOptions};
use aegis_fs::intent_log::check_ring_len;
use aegis_fs::limits::{BLOCK_SIZES, MAX_LABEL_NAME, MIN_DEVICE_SIZE};
use aegis_fs::posix::{MAX_RECORD_SIZE, MIN_RECORD_SIZE};
use aegis_fs::{ChecksumType, Compression, CreateOptions};

use super::{CliError, CliResult};
use crate::signature;
use crate::units::{human, parse_size};

#[derive(clap::Args)]
pub struct Args {
    /// Image file or block device.
    pub image: PathBuf,
    /// Size of a new image file (e.g. 4G). Ignored for block devices and
    /// existing files unless it differs, which is an error.
    #[arg(long, short = 's')]
    pub size: Option<String>,
    /// Block size: 4K, 8K, 16K, 32K or 64K.
    #[arg(long, short = 'b', default_value = "4K")]
    pub block_size: String,
    /// Pool label (up to 64 bytes).
    #[arg(long, short = 'L', default_value = "")]
    pub label: String,
    /// Checksum for blocks: blake3 or xxh3.
    #[arg(long, default_value = "blake3")]
    pub checksum: String,
    /// Compression for metadata and file data: none, lz4 or zstd.
    #[arg(long, default_value = "lz4")]
    pub compression: String,
    /// Record size of files: a power of two from 4K to 1M.
    #[arg(long, short = 'r', default_value = "128K")]
    pub record_size: String,
    /// Size of the intent log ring that fsync writes (256K to 1G, whole
    /// blocks); the default is 1/64 of the pool, 256K to 64M.
    #[arg(long)]
    pub log_size: Option<String>,
    /// Copies of each metadata block (1-3).
    #[arg(long, default_value_t = 2)]
    pub metadata_copies: u8,
    /// Format even if the target holds a filesystem.
    #[arg(long, short = 'f')]
    pub force: bool,
}

const DEFAULT_SIZE: u64 = 1 << 30;

/// Every argument, checked before the target is touched.
struct Plan {
    bs: u32,
    size: Option<u64>,
    checksum: ChecksumType,
    compression: Compression,
    record_size: u32,
    log_ring: u64,
}

pub fn run(a: Args) -> CliResult<u8> {
    let p = plan(&a)?;
    let (dev, created) = open_target(&a, p.size)?;
    make(&a, &p, dev, created)
}

fn plan(a: &Args) -> CliResult<Plan> {
    // Validate every argument before touching the target.
    let bs = parse_size(&a.block_size).map_err(|e| CliError::new(format!("--block-size: {e}")))?;
    let bs = u32::try_from(bs)
        .ok()
        .filter(|b| BLOCK_SIZES.contains(b))
        .ok_or_else(|| {
            CliError::new(format!(
                "--block-size: {} is not one of 4K, 8K, 16K, 32K, 64K",
                a.block_size
            ))
        })?;
    let size = a
        .size
        .as_deref()
        .map(parse_size)
        .transpose()
        .map_err(|e| CliError::new(format!("--size: {e}")))?;
    if a.label.len() > MAX_LABEL_NAME || a.label.contains('\0') {
        return Err(CliError::new(format!(
            "--label: at most {MAX_LABEL_NAME} bytes, no NUL"
        )));
    }
    let checksum = ChecksumType::parse(&a.checksum).ok_or_else(|| {
        CliError::new(format!(
            "--checksum: '{}' is not blake3 or xxh3",
            a.checksum
        ))
    })?;
    let compression = parse_compression(&a.compression)?;
    let record_size = parse_record_size(&a.record_size)?;
    let log_ring = match a.log_size.as_deref() {
        None => 0,
        Some(v) => {
            let n = parse_size(v).map_err(|e| CliError::new(format!("--log-size: {e}")))?;
            check_ring_len(n, bs).map_err(|e| CliError::new(format!("--log-size: {v}: {e}")))?;
            n
        }
    };
    if !(1..=3).contains(&a.metadata_copies) {
        return Err(CliError::new("--metadata-copies: must be 1, 2 or 3"));
    }
    if let Some(s) = size {
        if s < MIN_DEVICE_SIZE {
            return Err(CliError::new(format!(
                "--size: {} is too small; AegisFS needs at least {}",
                human(s),
                human(MIN_DEVICE_SIZE)
            )));
        }
    }
    Ok(Plan {
        bs,
        size,
        checksum,
        compression,
        record_size,
        log_ring,
    })
}

/// The image file (made sparse if missing) or device, locked; whether
/// this call created it (and removes it again on failure).
fn open_target(a: &Args, size: Option<u64>) -> CliResult<(DeviceRef, bool)> {
    let path = &a.image;
    let (dev, created): (DeviceRef, bool) = if path.exists() {
        let d = FileDevice::open(path, OpenMode::ReadWrite)
            .map_err(|e| CliError::new(format!("{}: {e}", path.display())))?;
        if let Some(s) = size {
            if !d.is_block_device() && s != d.size() {
                return Err(CliError::new(format!(
                    "{}: exists with size {}; --size {} differs (remove the file or omit --size)",
                    path.display(),
                    human(d.size()),
                    human(s)
                )));
            }
        }
        if d.size() < MIN_DEVICE_SIZE {
            return Err(CliError::new(format!(
                "{}: {} is too small; AegisFS needs at least {}",
                path.display(),
                human(d.size()),
                human(MIN_DEVICE_SIZE)
            )));
        }
        if let Some(found) = signature::detect(&d) {
            if !a.force {
                return Err(CliError::new(format!(
                    "{}: holds {found}; use --force to overwrite it",
                    path.display()
                )));
            }
        }
        d.lock_exclusive()
            .map_err(|e| CliError::new(e.to_string()))?;
        (Arc::new(d), false)
    } else {
        let s = size.unwrap_or(DEFAULT_SIZE);
        let d = FileDevice::create(path, s)
            .map_err(|e| CliError::new(format!("{}: {e}", path.display())))?;
        (Arc::new(d), true)
    };
    Ok((dev, created))
}

/// Format the pool and its filesystem, close it, and say what was made.
fn make(a: &Args, p: &Plan, dev: DeviceRef, created: bool) -> CliResult<u8> {
    let path = &a.image;
    let (bs, checksum, compression) = (p.bs, p.checksum, p.compression);
    let (record_size, log_ring) = (p.record_size, p.log_ring);
    let opts = CreateOptions {
        block_size: bs,
        label: a.label.clone(),
        metadata_copies: a.metadata_copies,
        checksum,
        metadata_compression: compression,
    };
    let dev_size = dev.size();
    let (uid, gid) = super::caller_ids();
    let fmt = FormatOptions {
        record_size,
        compression,
        root_uid: uid,
        root_gid: gid,
        root_mode: 0o755,
        log_ring,
    };
    let made = aegis_diskfs::create(vec![dev], &opts, &fmt, &MountOptions::default())
        .map_err(|e| e.to_string())
        .and_then(|fs| {
            let cfg = fs.store().config().clone();
            fs.unmount().map(|()| cfg).map_err(|e| e.to_string())
        });
    match made {
        Ok(cfg) => {
            println!(
                "created AegisFS pool '{}' on {}: {}, block size {}, record size {}, pool {}",
                cfg.label,
                path.display(),
                human(dev_size),
                human(bs as u64),
                human(record_size as u64),
                uuid::Uuid::from_bytes(cfg.pool_uuid)
            );
            Ok(0)
        }
        Err(e) => {
            if created {
                let _ = std::fs::remove_file(path);
            }
            Err(CliError::new(format!("{}: {e}", path.display())))
        }
    }
}

/// `--compression`'s value: none, lz4 or zstd.
pub(crate) fn parse_compression(v: &str) -> CliResult<Compression> {
    Compression::parse(v)
        .ok_or_else(|| CliError::new(format!("--compression: '{v}' is not none, lz4 or zstd")))
}

/// `--record-size`'s value: a power of two from 4K to 1M.
pub(crate) fn parse_record_size(v: &str) -> CliResult<u32> {
    let rs = parse_size(v).map_err(|e| CliError::new(format!("--record-size: {e}")))?;
    u32::try_from(rs)
        .ok()
        .filter(|r| r.is_power_of_two() && (MIN_RECORD_SIZE..=MAX_RECORD_SIZE).contains(r))
        .ok_or_else(|| {
            CliError::new(format!(
                "--record-size: {v} is not a power of two from 4K to 1M"
            ))
        })
}
