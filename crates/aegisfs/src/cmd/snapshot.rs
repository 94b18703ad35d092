//! `aegisfs snapshot create|list|delete|rollback` and `aegisfs clone`:
//! snapshots of a dataset of an
//! unmounted pool (the image lock refuses a mounted one; commands on a
//! mount point need the daemon's channel, which is not built yet).
//!
//! A snapshot is named `IMAGE[/DATASET]@NAME` ([`split_snapshot`]). A
//! create mounts the dataset first, so a log a crash left is replayed and
//! the snapshot holds every change that was fsynced.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aegis_block::DeviceRef;
use aegis_diskfs::{DiskFs, MountOptions};
use aegis_fs::dataset::ROOT_DATASET;
use aegis_fs::dataset_admin::validate_name;
use aegis_fs::Store;
use serde::Serialize;

use super::dataset::split_target;
use super::{CliError, CliResult};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(clap::Subcommand)]
pub enum Action {
    /// Take a snapshot: snapshot create IMAGE[/DATASET]@NAME.
    Create { target: PathBuf },
    /// List a dataset's snapshots: snapshot list IMAGE[/DATASET] [--json].
    List {
        dataset: PathBuf,
        #[arg(long)]
        json: bool,
        /// Also the time travel window's snapshots (%txg-N).
        #[arg(long)]
        all: bool,
    },
    /// Delete a snapshot, freeing what only it holds: snapshot delete IMAGE[/DATASET]@NAME.
    Delete { target: PathBuf },
    /// List the paths created (+), deleted (-), modified (M) and renamed (R) from one snapshot to another, or to the dataset now: snapshot diff IMAGE[/DATASET]@A [B] [--json].
    Diff {
        from: PathBuf,
        /// The later snapshot's name (or @NAME); the dataset as it is if left out.
        to: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Snapshots on a schedule, taken by the mounted daemon: snapshot schedule IMAGE[/DATASET]|MOUNTPOINT --every 1h --keep 24 (or --list, or --remove --every 1h).
    Schedule {
        target: PathBuf,
        #[arg(long)]
        every: Option<String>,
        #[arg(long)]
        keep: Option<u32>,
        #[arg(long)]
        list: bool,
        #[arg(long)]
        remove: bool,
    },
    /// Bring a dataset back to its newest snapshot, discarding what came after: snapshot rollback IMAGE[/DATASET]@NAME.
    Rollback { target: PathBuf },
}

#[derive(clap::Args)]
pub struct CloneArgs {
    /// The snapshot: IMAGE[/DATASET]@NAME.
    pub snapshot: PathBuf,
    /// The new dataset: IMAGE/NEW (or just NEW).
    pub target: String,
}

/// Split `IMAGE[/DATASET]@NAME` at its last `@` (a path that exists as
/// given is an image, whatever it holds).
pub fn split_snapshot(arg: &Path) -> (PathBuf, Option<String>) {
    if arg.exists() {
        return (arg.to_path_buf(), None);
    }
    let s = arg.to_string_lossy();
    match s.rsplit_once('@') {
        Some((left, snap)) if !snap.contains('/') => (PathBuf::from(left), Some(snap.to_string())),
        _ => (arg.to_path_buf(), None),
    }
}

/// The image, dataset name and snapshot name of `IMAGE[/DATASET]@NAME`.
pub(super) fn snapshot_target(arg: &Path) -> CliResult<(PathBuf, Option<String>, String)> {
    let (left, snap) = split_snapshot(arg);
    let Some(snap) = snap else {
        return Err(CliError::new(format!(
            "{}: name a snapshot as IMAGE[/DATASET]@NAME or MOUNTPOINT@NAME",
            arg.display()
        )));
    };
    validate_name(&snap)
        .map_err(|e| CliError::new(e.to_string().replace("dataset", "snapshot")))?;
    let (image, dataset) = split_target(&left);
    if !image.exists() {
        return Err(CliError::new(format!(
            "{}: no such file or device",
            image.display()
        )));
    }
    Ok((image, dataset, snap))
}

pub fn run(a: Args) -> CliResult<u8> {
    match a.action {
        Action::Create { target } => create(&target),
        Action::List { dataset, json, all } => list(&dataset, json, all),
        Action::Delete { target } => delete(&target),
        Action::Rollback { target } => rollback(&target),
        Action::Diff { from, to, json } => diff(&from, to.as_deref(), json),
        Action::Schedule {
            target,
            every,
            keep,
            list,
            remove,
        } => schedule(&target, every.as_deref(), keep, list, remove),
    }
}

/// `aegisfs clone IMAGE[/DATASET]@SNAP IMAGE/NEW`: a writable dataset
/// that starts as the snapshot.
pub fn clone(a: CloneArgs) -> CliResult<u8> {
    let (image, dataset, snap) = snapshot_target(&a.snapshot)?;
    let new_name = match a.target.rsplit_once('/') {
        Some((img, n)) if Path::new(img) == image => n,
        Some(_) => {
            return Err(CliError::new(format!(
                "{}: a clone is made in its snapshot's own pool ({})",
                a.target,
                image.display()
            )))
        }
        None => a.target.as_str(),
    };
    validate_name(new_name).map_err(|e| CliError::new(e.to_string()))?;
    let fs = mount(&image, &dataset)?;
    let store = fs.store().clone();
    let id = dataset_id(&store, &dataset)?;
    let made = store.clone_snapshot(id, &snap, new_name);
    let closed = fs.unmount();
    let where_ = shown(&image, &dataset);
    made.map_err(|e| CliError::new(format!("{where_}@{snap}: {e}")))?;
    closed.map_err(|e| CliError::new(format!("{where_}: {e}")))?;
    println!("cloned {where_}@{snap} as {}/{new_name}", image.display());
    Ok(0)
}

/// `snapshot list MOUNTPOINT`: the daemon's lines, as the table or JSON.
fn list_live(mountpoint: &Path, json: bool, all: bool) -> CliResult<u8> {
    let text = live(mountpoint, &["snapshot", "list"])?;
    let bad = || CliError::new(format!("{}: a malformed answer", mountpoint.display()));
    let mut rows = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let [name, txg, created, unique, rest @ ..] = f.as_slice() else {
            return Err(bad());
        };
        rows.push(Row {
            id: 0,
            name: name.to_string(),
            txg: txg.parse().map_err(|_| bad())?,
            created_ns: created.parse().map_err(|_| bad())?,
            unique_bytes: unique.parse().map_err(|_| bad())?,
            referenced_bytes: 0,
            deleting: rest.first() == Some(&"deleting"),
        });
    }
    print_rows(&rows, json, all)
}

fn diff(from: &Path, to: Option<&str>, json: bool) -> CliResult<u8> {
    let (image, dataset, snap) = snapshot_target(from)?;
    let to = to.map(|t| t.rsplit_once('@').map_or(t, |(_, n)| n));
    let where_ = shown(&image, &dataset);
    let store = super::dataset::open_locked(&image, false)?;
    let id = dataset_id(&store, &dataset)?;
    let entries = store
        .diff_snapshots(id, &snap, to)
        .map_err(|e| CliError::new(format!("{where_}@{snap}: {e}")))?;
    if json {
        let out =
            serde_json::to_string_pretty(&entries).map_err(|e| CliError::new(e.to_string()))?;
        println!("{out}");
        return Ok(0);
    }
    use aegis_fs::snapshot_diff::Change;
    for e in entries {
        match (e.change, e.new_path) {
            (Change::Created, _) => println!("+\t{}", e.path),
            (Change::Deleted, _) => println!("-\t{}", e.path),
            (Change::Modified, _) => println!("M\t{}", e.path),
            (Change::Renamed, new) => println!("R\t{} -> {}", e.path, new.unwrap_or_default()),
        }
    }
    Ok(0)
}

/// What `snapshot schedule` was asked to do.
enum ScheduleOp {
    List,
    Set(u64, u32),
    Remove(u64),
}

fn schedule_op(
    every: Option<&str>,
    keep: Option<u32>,
    list: bool,
    remove: bool,
) -> CliResult<ScheduleOp> {
    let secs = |e: &str| -> CliResult<u64> {
        humantime::parse_duration(e)
            .map(|d| d.as_secs())
            .map_err(|err| CliError::new(format!("--every {e}: {err} (say 15m, 1h, 1d)")))
    };
    match (every, keep, list, remove) {
        (None, None, true, false) => Ok(ScheduleOp::List),
        (Some(e), None, false, true) => Ok(ScheduleOp::Remove(secs(e)?)),
        (Some(e), Some(k), false, false) => Ok(ScheduleOp::Set(secs(e)?, k)),
        _ => Err(CliError::new(
            "snapshot schedule takes --every INTERVAL --keep N, --list, or --remove --every INTERVAL",
        )),
    }
}

fn schedule(
    target: &Path,
    every: Option<&str>,
    keep: Option<u32>,
    list: bool,
    remove: bool,
) -> CliResult<u8> {
    let op = schedule_op(every, keep, list, remove)?;
    if target.is_dir() {
        let words: Vec<String> = match op {
            ScheduleOp::List => vec!["list".into()],
            ScheduleOp::Set(s, k) => vec!["set".into(), s.to_string(), k.to_string()],
            ScheduleOp::Remove(s) => vec!["remove".into(), s.to_string()],
        };
        let mut all = vec!["schedule"];
        all.extend(words.iter().map(String::as_str));
        print!("{}", with_newline(live(target, &all)?));
        return Ok(0);
    }
    let (image, dataset) = split_target(target);
    let fs = mount(&image, &dataset)?;
    let store = fs.store().clone();
    let id = dataset_id(&store, &dataset)?;
    let done = match op {
        ScheduleOp::List => store.schedules(id).map(|l| {
            l.iter()
                .map(|s| format!("{}\t{}\n", s.every_secs, s.keep))
                .collect::<String>()
        }),
        ScheduleOp::Set(every_secs, keep) => {
            let s = aegis_fs::snapshot_schedule::Schedule { every_secs, keep };
            store
                .set_schedule(id, s)
                .map(|()| format!("snapshots every {} kept {keep}", s.label()))
        }
        ScheduleOp::Remove(s) => store
            .remove_schedule(id, s)
            .map(|()| "schedule removed".into()),
    };
    let closed = fs.unmount();
    let where_ = shown(&image, &dataset);
    let text = done.map_err(|e| CliError::new(format!("{where_}: {e}")))?;
    closed.map_err(|e| CliError::new(format!("{where_}: {e}")))?;
    print!("{}", with_newline(text));
    Ok(0)
}

fn with_newline(mut s: String) -> String {
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// Roll back on an unmounted pool: the store is opened without a mount,
/// since a rollback discards whatever the dataset's log holds too.
fn rollback(target: &Path) -> CliResult<u8> {
    let (image, dataset, snap) = snapshot_target(target)?;
    let where_ = shown(&image, &dataset);
    let store = super::dataset::open_locked(&image, true)?;
    let id = dataset_id(&store, &dataset)?;
    let rolled = store.rollback(id, &snap);
    let closed = store.shutdown();
    rolled.map_err(|e| CliError::new(format!("{where_}@{snap}: {e}")))?;
    closed.map_err(|e| CliError::new(format!("{where_}: {e}")))?;
    println!("rolled {where_} back to @{snap}");
    Ok(0)
}

/// Mount dataset `dataset` of `image` writable, without a timer: a log a
/// crash left is replayed, a delete a crash cut short finishes.
fn mount(image: &Path, dataset: &Option<String>) -> CliResult<Arc<DiskFs>> {
    let dev = super::open_locked(image, true)?;
    let opts = MountOptions {
        dataset_name: dataset.clone(),
        ..Default::default()
    };
    aegis_diskfs::open(vec![Arc::new(dev) as DeviceRef], &opts)
        .map_err(|e| CliError::new(format!("{}: {e}", shown(image, dataset))))
}

pub(super) fn shown(image: &Path, dataset: &Option<String>) -> String {
    match dataset {
        Some(d) => format!("{}/{d}", image.display()),
        None => image.display().to_string(),
    }
}

/// `MOUNTPOINT@NAME`: the mount point, if the target is one (a
/// directory), and the snapshot name, checked.
pub(super) fn live_target(arg: &Path) -> CliResult<Option<(PathBuf, String)>> {
    let (left, snap) = split_snapshot(arg);
    match snap {
        Some(snap) if left.is_dir() => {
            validate_name(&snap)
                .map_err(|e| CliError::new(e.to_string().replace("dataset", "snapshot")))?;
            Ok(Some((left, snap)))
        }
        _ => Ok(None),
    }
}

/// syncfs(2) on the filesystem of `dir`: the kernel writes its dirty
/// pages to the daemon.
fn write_back(dir: &Path) -> CliResult<()> {
    let f =
        std::fs::File::open(dir).map_err(|e| CliError::new(format!("{}: {e}", dir.display())))?;
    // SAFETY: `f` is an open descriptor for the call's duration.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f)) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(CliError::new(format!("{}: {e}", dir.display())));
    }
    Ok(())
}

/// Send a live command to the daemon serving `mountpoint`.
pub(super) fn live(mountpoint: &Path, words: &[&str]) -> CliResult<String> {
    let shown = mountpoint.display();
    match aegis_fuse::control::command(mountpoint, words) {
        Ok(Ok(text)) => Ok(text),
        Ok(Err((_, message))) => Err(CliError::new(format!("{shown}: {message}"))),
        Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => Err(CliError::new(format!(
            "{shown}: not the mount point of an AegisFS (name a snapshot as IMAGE[/DATASET]@NAME or MOUNTPOINT@NAME)"
        ))),
        Err(e) => Err(CliError::new(format!("{shown}: {e}"))),
    }
}

fn create(target: &Path) -> CliResult<u8> {
    if let Some((mnt, snap)) = live_target(target)? {
        // Pages the kernel holds for the daemon reach it first, so the
        // snapshot has every write that returned before this command.
        write_back(&mnt)?;
        println!("{}", live(&mnt, &["snapshot", "create", &snap])?);
        return Ok(0);
    }
    let (image, dataset, snap) = snapshot_target(target)?;
    let fs = mount(&image, &dataset)?;
    let store = fs.store().clone();
    let id = dataset_id(&store, &dataset)?;
    let started = std::time::Instant::now();
    let taken = store.create_snapshot(id, &snap);
    let took_ms = started.elapsed().as_secs_f64() * 1000.0;
    let closed = fs.unmount();
    let where_ = shown(&image, &dataset);
    taken.map_err(|e| CliError::new(format!("{where_}@{snap}: {e}")))?;
    closed.map_err(|e| CliError::new(format!("{where_}: {e}")))?;
    println!("created snapshot {where_}@{snap} in {took_ms:.1} ms");
    Ok(0)
}

pub(super) fn dataset_id(store: &Store, dataset: &Option<String>) -> CliResult<u64> {
    match dataset {
        None => Ok(ROOT_DATASET),
        Some(name) => store
            .dataset_id(name)
            .map_err(|e| CliError::new(e.to_string())),
    }
}

fn delete(target: &Path) -> CliResult<u8> {
    if let Some((mnt, snap)) = live_target(target)? {
        println!("{}", live(&mnt, &["snapshot", "delete", &snap])?);
        return Ok(0);
    }
    let (image, dataset, snap) = snapshot_target(target)?;
    let fs = mount(&image, &dataset)?;
    let store = fs.store().clone();
    let id = dataset_id(&store, &dataset)?;
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut done = 0;
    let deleted = store.delete_snapshot(id, &snap, &mut |n| {
        done = n;
        if terminal {
            eprint!("\rfreed or moved {n} dead list entries");
        }
    });
    if terminal && done > 0 {
        eprintln!();
    }
    let closed = fs.unmount();
    let where_ = shown(&image, &dataset);
    deleted.map_err(|e| CliError::new(format!("{where_}@{snap}: {e}")))?;
    closed.map_err(|e| CliError::new(format!("{where_}: {e}")))?;
    println!("deleted snapshot {where_}@{snap}");
    Ok(0)
}

#[derive(Serialize)]
struct Row {
    id: u64,
    name: String,
    txg: u64,
    created_ns: u64,
    /// Bytes deleting it would free now.
    unique_bytes: u64,
    /// Bytes its tree reaches (shared or not).
    referenced_bytes: u64,
    deleting: bool,
}

fn list(target: &Path, json: bool, all: bool) -> CliResult<u8> {
    if target.is_dir() {
        return list_live(target, json, all);
    }
    let (image, dataset) = split_target(target);
    let where_ = shown(&image, &dataset);
    let store = super::dataset::open_locked(&image, false)?;
    let id = dataset_id(&store, &dataset)?;
    let mut rows = Vec::new();
    for s in store.snapshots(id) {
        if !all && aegis_fs::time_travel::is_hidden(&s.name) {
            continue;
        }
        let err = |e: aegis_fs::FsError| CliError::new(format!("{where_}@{}: {e}", s.name));
        let (unique_bytes, referenced_bytes) = match s.deleting {
            true => (0, 0),
            false => (
                store.snapshot_unique_bytes(s.id).map_err(err)?,
                store.dataset_used_bytes(s.id).map_err(err)?,
            ),
        };
        rows.push(Row {
            id: s.id,
            name: s.name,
            txg: s.txg,
            created_ns: s.created_ns,
            unique_bytes,
            referenced_bytes,
            deleting: s.deleting,
        });
    }
    print_rows(&rows, json, all)
}

fn print_rows(rows: &[Row], json: bool, all: bool) -> CliResult<u8> {
    let rows: Vec<&Row> = rows
        .iter()
        .filter(|r| all || !aegis_fs::time_travel::is_hidden(&r.name))
        .collect();
    if json {
        let out = serde_json::to_string_pretty(&rows).map_err(|e| CliError::new(e.to_string()))?;
        println!("{out}");
        return Ok(0);
    }
    println!(
        "{:<32} {:>10} {:>10} {:>10}  CREATED",
        "NAME", "UNIQUE", "REFER", "TXG"
    );
    for r in &rows {
        let created = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_nanos(r.created_ns),
        );
        let name = match r.deleting {
            true => format!("{} (deleting)", r.name),
            false => r.name.clone(),
        };
        println!(
            "{:<32} {:>10} {:>10} {:>10}  {created}",
            name,
            crate::units::human(r.unique_bytes),
            crate::units::human(r.referenced_bytes),
            r.txg
        );
    }
    Ok(0)
}
