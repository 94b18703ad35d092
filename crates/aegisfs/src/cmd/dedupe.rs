//! `aegisfs dedupe IMAGE[/DATASET] [--dry-run] [--json]`: offline
//! deduplication of an unmounted dataset, as duperemove does on btrfs
//! and XFS, but without reading every file: the block pointers already
//! carry a checksum of each record's stored bytes, so one walk of the
//! tree groups the records that may be equal (same checksum, sizes and
//! compression). Each candidate is then compared byte for byte and
//! shared with the group's first record by the filesystem's dedupe
//! (`FileSystem::dedupe_range`, FIDEDUPERANGE's semantics), so a hash
//! collision can never merge different data. Records already sharing a
//! block are skipped; records of files of another record size or phase
//! cannot be shared and are counted apart.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use aegis_block::DeviceRef;
use aegis_diskfs::{DiskFs, MountOptions};
use aegis_fs::BlockPtr;
use aegis_vfs::FileSystem;
use serde::Serialize;

use super::dataset::split_target;
use super::{CliError, CliResult};
use crate::units::human;

#[derive(clap::Args)]
pub struct Args {
    /// The dataset: IMAGE[/DATASET] (not mounted).
    pub target: PathBuf,
    /// Find and count duplicates, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
}

/// What makes two records possibly equal: their stored bytes' checksum,
/// its kind, the sizes and the compression.
type Key = ([u8; 32], u8, u32, u32, u8);

/// A record: (inode, start, first address).
type Place = (u64, u64, (u32, u64));

#[derive(Default, Serialize)]
struct Report {
    records: u64,
    groups: u64,
    candidates: u64,
    shared_records: u64,
    shared_bytes: u64,
    differed: u64,
    not_shareable: u64,
}

fn key_of(bp: &BlockPtr) -> Key {
    (
        bp.checksum,
        bp.checksum_type as u8,
        bp.logical_size,
        bp.physical_size,
        bp.compression as u8,
    )
}

pub fn run(a: Args) -> CliResult<u8> {
    let (image, dataset) = split_target(&a.target);
    let where_ = super::snapshot::shown(&image, &dataset);
    let dev = super::open_locked(&image, !a.dry_run)?;
    let opts = MountOptions {
        dataset_name: dataset.clone(),
        pool: aegis_fs::OpenOptions {
            read_only: a.dry_run,
            rewind_txg: None,
        },
        ..Default::default()
    };
    let fs = aegis_diskfs::open(vec![Arc::new(dev) as DeviceRef], &opts)
        .map_err(|e| CliError::new(format!("{where_}: {e}")))?;
    let result = dedupe(&fs, a.dry_run);
    let closed = fs.unmount();
    let report = result.map_err(|e| CliError::new(format!("{where_}: {e}")))?;
    closed.map_err(|e| CliError::new(format!("{where_}: {e}")))?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serialisable")
        );
        return Ok(0);
    }
    let verb = if a.dry_run { "could share" } else { "shared" };
    println!(
        "{where_}: {} records, {} candidates in {} groups; {verb} {} records ({}); {} differed, {} not shareable",
        report.records,
        report.candidates,
        report.groups,
        report.shared_records,
        human(report.shared_bytes),
        report.differed,
        report.not_shareable
    );
    Ok(0)
}

/// Group the dataset's block records, then share each group's others
/// with its first.
fn dedupe(fs: &DiskFs, dry_run: bool) -> Result<Report, String> {
    let mut groups: HashMap<Key, Vec<Place>> = HashMap::new();
    let records = fs
        .store()
        .view(fs.dataset_id(), |v| {
            v.each_block_record(&mut |ino, start, bp| {
                let at = bp.addrs.first().map_or((0, 0), |a| (a.device, a.offset));
                groups.entry(key_of(bp)).or_default().push((ino, start, at));
            })
        })
        .map_err(|e: aegis_fs::FsError| e.to_string())?;
    let mut report = Report {
        records,
        ..Default::default()
    };
    for places in groups.into_values() {
        let first = places[0];
        let others: Vec<Place> = places.into_iter().filter(|p| p.2 != first.2).collect();
        if others.is_empty() {
            continue;
        }
        report.groups += 1;
        report.candidates += others.len() as u64;
        for other in others {
            match share(fs, first, other, dry_run).map_err(|e| e.to_string())? {
                Some(n) if n > 0 => {
                    report.shared_records += 1;
                    report.shared_bytes += n;
                }
                Some(_) => report.not_shareable += 1,
                None => report.differed += 1,
            }
        }
    }
    Ok(report)
}

/// Share record `b` with record `a`: the bytes shared, `Some(0)` if the
/// files' records cannot share, `None` if they differ. The range is
/// `a`'s whole record (a block may hold less: trailing zeroes are not
/// stored), cut at its end of file. A dry run compares and counts only.
fn share(fs: &DiskFs, a: Place, b: Place, dry_run: bool) -> aegis_vfs::Result<Option<u64>> {
    let attr = fs.getattr(a.0)?;
    let len = (attr.blksize as u64).min(attr.size.saturating_sub(a.1));
    let fa = fs.open(a.0, libc::O_RDONLY)?;
    let fb = match fs.open(
        b.0,
        if dry_run {
            libc::O_RDONLY
        } else {
            libc::O_RDWR
        },
    ) {
        Ok(fh) => fh,
        Err(e) => {
            fs.release(a.0, fa)?;
            return Err(e);
        }
    };
    let r = if dry_run {
        let x = fs.read(a.0, fa, a.1, len as u32)?;
        let y = fs.read(b.0, fb, b.1, len as u32)?;
        Ok((x == y).then_some(len))
    } else {
        fs.dedupe_range(a.0, fa, a.1, b.0, fb, b.1, len)
    };
    fs.release(a.0, fa)?;
    fs.release(b.0, fb)?;
    r
}
