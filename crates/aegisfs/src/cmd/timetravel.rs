//! `aegisfs timetravel IMAGE[/DATASET] [--window 15m|off]` and `aegisfs
//! restore IMAGE[/DATASET]:PATH --at TIME|--txg N [--to PATH]`, on an
//! unmounted pool. The window (`aegis_fs::time_travel`) keeps a hidden
//! snapshot of every txg that changed the dataset while it is mounted;
//! `mount --at`/`--txg` mounts one, `restore` copies a file or tree of
//! one back into the dataset.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aegis_block::DeviceRef;
use aegis_diskfs::{DiskFs, DiskFsOptions, MountOptions};
use aegis_fs::time_travel::At;
use aegis_vfs::{FileSystem, Ino, ROOT_INO};
use serde::Serialize;

use super::dataset::split_target;
use super::{CliError, CliResult};

#[derive(clap::Args)]
pub struct Args {
    /// The dataset: IMAGE[/DATASET].
    pub target: PathBuf,
    /// Keep every txg of the last WINDOW (10s to 30d: 15m, 2h, 1d), or
    /// `off`. Without it: show the window.
    #[arg(long)]
    pub window: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// What to bring back: IMAGE[/DATASET]:PATH.
    pub source: String,
    /// From the dataset as it was at this time (RFC 3339: 2026-12-01T10:00:00Z).
    #[arg(long, conflicts_with = "txg", required_unless_present = "txg")]
    pub at: Option<String>,
    /// From the dataset as it was at this txg.
    #[arg(long)]
    pub txg: Option<u64>,
    /// Where to put it (a path in the dataset that does not exist); the
    /// same path if left out, which must then be gone.
    #[arg(long)]
    pub to: Option<String>,
}

#[derive(Serialize)]
struct Shown {
    window_secs: u64,
    snapshots: usize,
    oldest_txg: Option<u64>,
    newest_txg: Option<u64>,
    held_bytes: u64,
}

fn parse_window(s: &str) -> CliResult<u64> {
    if s == "off" || s == "0" {
        return Ok(0);
    }
    humantime::parse_duration(s)
        .map(|d| d.as_secs())
        .map_err(|e| CliError::new(format!("--window {s}: {e} (give 15m, 2h, 1d or off)")))
}

pub fn run(a: Args) -> CliResult<u8> {
    let window = a.window.as_deref().map(parse_window).transpose()?;
    let (image, dataset) = split_target(&a.target);
    let store = super::dataset::open_locked(&image, window.is_some())?;
    let where_ = super::snapshot::shown(&image, &dataset);
    let id = super::snapshot::dataset_id(&store, &dataset)?;
    let fail = |e: aegis_fs::FsError| CliError::new(format!("{where_}: {e}"));
    if let Some(w) = window {
        let set = store.set_time_travel(id, w);
        let closed = store.shutdown();
        set.map_err(fail)?;
        closed.map_err(fail)?;
        match w {
            0 => println!("{where_}: time travel off (its snapshots go at once)"),
            w => println!("{where_}: every txg of the last {w} s is kept while it is mounted"),
        }
        return Ok(0);
    }
    let shown = match store.time_travel(id).map_err(fail)? {
        None => Shown {
            window_secs: 0,
            snapshots: 0,
            oldest_txg: None,
            newest_txg: None,
            held_bytes: 0,
        },
        Some(w) => Shown {
            window_secs: w.window_secs,
            snapshots: w.points.len(),
            oldest_txg: w.points.first().map(|p| p.0),
            newest_txg: w.points.last().map(|p| p.0),
            held_bytes: w.held_bytes,
        },
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&shown).expect("serialisable")
        );
        return Ok(0);
    }
    match (shown.window_secs, shown.oldest_txg, shown.newest_txg) {
        (0, None, _) => println!("{where_}: time travel off"),
        (w, Some(o), Some(n)) => println!(
            "{where_}: window {w} s, {} txgs kept ({o} to {n}), holding {}",
            shown.snapshots,
            crate::units::human(shown.held_bytes)
        ),
        (w, _, _) => println!("{where_}: window {w} s, nothing kept yet (mount it and write)"),
    }
    Ok(0)
}

/// `at=`: a txg, or an RFC 3339 time.
pub fn parse_at(at: Option<&str>, txg: Option<u64>) -> CliResult<At> {
    if let Some(n) = txg {
        return Ok(At::Txg(n));
    }
    let s = at.unwrap_or_default();
    let t = humantime::parse_rfc3339_weak(s)
        .map_err(|e| CliError::new(format!("--at {s}: {e} (give 2026-12-01T10:00:00Z)")))?;
    let ns = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| CliError::new(format!("--at {s}: before 1970")))?
        .as_nanos();
    Ok(At::TimeNs(u64::try_from(ns).unwrap_or(u64::MAX)))
}

/// The inode at `path` of `fs` (each step's lookup forgotten after).
fn walk(fs: &dyn FileSystem, path: &[u8]) -> aegis_vfs::Result<Ino> {
    let mut ino = ROOT_INO;
    for part in path.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
        let next = fs.lookup(ino, OsStr::from_bytes(part))?.ino;
        if ino != ROOT_INO {
            fs.forget(ino, 1);
        }
        ino = next;
    }
    Ok(ino)
}

/// The parent directory and last name of `path`.
fn split_last(path: &[u8]) -> CliResult<(&[u8], &OsStr)> {
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) if i + 1 < trimmed.len() => {
            Ok((&trimmed[..i], OsStr::from_bytes(&trimmed[i + 1..])))
        }
        _ => Err(CliError::new(
            "restore a file or directory, not the root (give --to a path)",
        )),
    }
}

pub fn restore(a: RestoreArgs) -> CliResult<u8> {
    let src = super::image::Target::parse(&a.source)?;
    let at = parse_at(a.at.as_deref(), a.txg)?;
    let dest: Vec<u8> = match &a.to {
        Some(t) if t.starts_with('/') => t.as_bytes().to_vec(),
        Some(t) => [b"/", t.as_bytes()].concat(),
        None => src.path.clone(),
    };
    let (dest_dir, dest_name) = split_last(&dest)?;
    split_last(&src.path)?;
    let (image, dataset) = split_target(&src.image);
    let dev = super::open_locked(&image, true)?;
    let opts = MountOptions {
        dataset_name: dataset.clone(),
        ..Default::default()
    };
    let live = aegis_diskfs::open(vec![Arc::new(dev) as DeviceRef], &opts)
        .map_err(|e| CliError::new(format!("{}: {e}", image.display())))?;
    let done = restore_in(&live, &src, at, dest_dir, dest_name);
    let closed = live.unmount();
    let (snap, r) = done?;
    closed.map_err(|e| CliError::new(format!("{}: {e}", image.display())))?;
    println!(
        "restored {} from {snap} to {}: {} objects, {} bytes",
        src.shown(),
        String::from_utf8_lossy(&dest),
        r.objects,
        r.bytes
    );
    Ok(0)
}

fn restore_in(
    live: &Arc<DiskFs>,
    src: &super::image::Target,
    at: At,
    dest_dir: &[u8],
    dest_name: &OsStr,
) -> CliResult<(String, aegis_diskfs::Restored)> {
    let store = live.store();
    let ds = live_dataset(live, src)?;
    let fail = |e: aegis_fs::FsError| CliError::new(format!("{}: {e}", src.shown()));
    let snap = store.snapshot_at(ds, at).map_err(fail)?;
    let id = store.snapshot_id(ds, &snap).map_err(fail)?;
    let view = DiskFs::open(
        store.clone(),
        DiskFsOptions {
            dataset: id,
            intent_log: false,
            ..Default::default()
        },
    )
    .map_err(|e| src.fail(e))?;
    let from = walk(&*view, &src.path).map_err(|e| src.fail(e))?;
    let dir = walk(&**live, dest_dir).map_err(|e| src.fail_at(dest_dir, e))?;
    if live.lookup(dir, dest_name).is_ok() {
        return Err(CliError::new(format!(
            "{}: {} exists in the dataset; name another place with --to",
            src.shown(),
            Path::new(dest_name).display()
        )));
    }
    let r =
        aegis_diskfs::restore(&*view, from, &**live, dir, dest_name).map_err(|e| src.fail(e))?;
    Ok((snap, r))
}

/// The id of the dataset `src` names (the root one for a bare image).
fn live_dataset(live: &DiskFs, src: &super::image::Target) -> CliResult<u64> {
    let (_, dataset) = split_target(&src.image);
    super::snapshot::dataset_id(live.store(), &dataset)
}
