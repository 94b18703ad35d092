//! Crash testing of the filesystem on a recording device, for the test
//! suite and for `aegisfs crashtest`.
//!
//! A [`Recorder`] runs a workload on [`DiskFs`] over a
//! [`RecordingDevice`]; after each acknowledged fsync the workload calls
//! [`Recorder::fsynced`], which remembers the whole tree. [`Recorder::check`]
//! then builds crash images — every flush point, and random subsets and
//! orders of the writes between two flushes — mounts each (intent log
//! replayed, orphans freed), and requires the tree of one remembered fsync
//! at or after the newest acknowledged one, and a clean fsck. Before the
//! first acknowledged fsync (an interrupted mkfs) a refusal to mount is
//! accepted.
//!
//! [`run_script`] drives a recorder from a small text workload, one
//! operation per line (see its documentation).

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use aegis_block::{DeviceRef, MemDevice, RecordedOp, RecordingDevice};
use aegis_diskfs::{AtimeMode, DiskFs, DiskFsOptions, FormatOptions, LogStats, MountOptions};
use aegis_fs::{CreateOptions, ObjectRead, OpenOptions, Store, StoreOptions};
use aegis_vfs::{FileSystem, FileType, FsError, Ino, Result, ROOT_INO};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

mod script;

pub use script::run_script;

/// No timer commits: every txg is one the workload caused.
fn mount_opts(atime: AtimeMode) -> MountOptions {
    MountOptions {
        store: StoreOptions {
            sync_interval: Duration::from_secs(3600),
            ..Default::default()
        },
        fs: DiskFsOptions {
            atime,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The whole tree as text, one line per entry: path, kind, mode, links,
/// size, xattrs, content hash or symlink target. Times are left out, and
/// so is `st_blocks` (ramfs counts it differently; see [`snapshot`]).
pub fn dump(fs: &dyn FileSystem) -> Vec<String> {
    dump_tree(fs, false)
}

/// [`dump`], with each regular file's `st_blocks` when `blocks`.
fn dump_tree(fs: &dyn FileSystem, blocks: bool) -> Vec<String> {
    fn walk(
        fs: &dyn FileSystem,
        ino: Ino,
        path: &mut Vec<u8>,
        out: &mut Vec<String>,
        blocks: bool,
    ) {
        let Ok(fh) = fs.opendir(ino, 0) else { return };
        let mut es = fs.readdir(ino, fh, 0, usize::MAX).unwrap_or_default();
        let _ = fs.releasedir(ino, fh);
        es.retain(|e| e.offset > 2);
        es.sort_by(|a, b| a.name.cmp(&b.name));
        for e in es {
            path.push(b'/');
            path.extend_from_slice(&e.name);
            let line = match fs.getattr(e.ino) {
                Ok(a) => {
                    let x = fs.listxattr(e.ino, 1 << 20);
                    let mut line = format!(
                        "{} {:?} {:o} n{} s{} x{:?}",
                        String::from_utf8_lossy(path),
                        a.kind,
                        a.perm,
                        a.nlink,
                        a.size,
                        x
                    );
                    match a.kind {
                        FileType::RegularFile => {
                            if blocks {
                                line += &format!(" b{}", a.blocks);
                            }
                            let d = fs.open(e.ino, libc::O_RDONLY).and_then(|fh| {
                                let d = fs.read(e.ino, fh, 0, a.size.min(u32::MAX as u64) as u32);
                                let _ = fs.release(e.ino, fh);
                                d
                            });
                            match d {
                                Ok(d) => line += &format!(" {}", blake3::hash(&d).to_hex()),
                                Err(err) => line += &format!(" unreadable: {err}"),
                            }
                        }
                        FileType::Symlink => match fs.readlink(e.ino) {
                            Ok(t) => line += &format!(" -> {}", String::from_utf8_lossy(&t)),
                            Err(err) => line += &format!(" unreadable: {err}"),
                        },
                        _ => {}
                    }
                    if a.kind == FileType::Directory {
                        out.push(line);
                        walk(fs, e.ino, path, out, blocks);
                        path.truncate(path.len() - e.name.len() - 1);
                        continue;
                    }
                    line
                }
                Err(err) => format!("{} unreadable: {err}", String::from_utf8_lossy(path)),
            };
            out.push(line);
            path.truncate(path.len() - e.name.len() - 1);
        }
    }
    let mut out = Vec::new();
    walk(fs, ROOT_INO, &mut Vec::new(), &mut out, blocks);
    out
}

/// [`dump`] with each file's `st_blocks` (which counts its reservations),
/// and the bytes the dataset's preallocated records hold back: a crash
/// must leave reservations exactly as the acknowledged state had them.
/// The reservation is the one the commit of the dirty records leaves
/// (it moves when a record written over a preallocated one is stored,
/// which a replay may do before the snapshot and the live side after).
fn snapshot(fs: &DiskFs) -> Vec<String> {
    let mut t = dump_tree(fs, true);
    let reserved = fs
        .store()
        .view(aegis_fs::dataset::ROOT_DATASET, |v| v.settled_reserved())
        .map_or_else(|e| format!("unreadable: {e}"), |n| n.to_string());
    t.push(format!("reserved {reserved}"));
    t
}

/// A workload on a recording device, remembering the tree at every fsync.
pub struct Recorder {
    rec: Arc<RecordingDevice>,
    fs: Arc<DiskFs>,
    /// Per fsync: the op index after it (acknowledged from there) and the tree.
    points: Vec<(usize, Vec<String>)>,
    last_txg: u64,
    logged: usize,
    committed: usize,
    /// Recorded ops when the filesystem was shut down, if it was.
    shut_at: Option<usize>,
}

/// What [`Recorder::check`] found.
#[derive(Debug, Default, Clone)]
pub struct CrashReport {
    pub fsyncs: usize,
    /// Of those, how many only wrote the intent log, and how many committed.
    pub logged: usize,
    pub committed: usize,
    pub flushes: usize,
    /// Crash images built and checked.
    pub states: usize,
    /// Images that showed an fsync later than the newest acknowledged one.
    pub newer: usize,
    /// Images before the first acknowledged fsync that refused to mount.
    pub refused: usize,
    /// What the intent log did during the workload.
    pub log: LogStats,
    /// Device writes and flushes recorded after a shutdown (must be 0).
    pub after_shutdown: usize,
    /// What went wrong (empty when every state passed); at most 20.
    pub failures: Vec<String>,
}

impl Recorder {
    /// A fresh 48 MiB filesystem with records of `record_size` bytes.
    pub fn new(record_size: u32) -> std::result::Result<Recorder, String> {
        let rec = Arc::new(RecordingDevice::new(MemDevice::new(48 << 20)));
        let fs = aegis_diskfs::create(
            vec![rec.clone() as DeviceRef],
            &CreateOptions::default(),
            &FormatOptions {
                record_size,
                ..Default::default()
            },
            &mount_opts(AtimeMode::default()),
        )
        .map_err(|e| e.to_string())?;
        let last_txg = fs.store().last_uberblock().map_or(0, |u| u.txg);
        let mut r = Recorder {
            rec,
            fs,
            points: Vec::new(),
            last_txg,
            logged: 0,
            committed: 0,
            shut_at: None,
        };
        r.points.push((r.rec.len(), snapshot(&r.fs)));
        Ok(r)
    }

    pub fn fs(&self) -> &Arc<DiskFs> {
        &self.fs
    }

    /// Call right after an fsync (or sync) returned: from here on the tree
    /// as it is now must survive a crash.
    pub fn fsynced(&mut self) {
        let t = self.fs.store().last_uberblock().map_or(0, |u| u.txg);
        if t == self.last_txg {
            self.logged += 1;
        } else {
            self.committed += 1;
        }
        self.last_txg = t;
        self.points.push((self.rec.len(), snapshot(&self.fs)));
    }

    /// Shut the filesystem down as `FS_IOC_SHUTDOWN` does: nothing more
    /// reaches the device, every later operation fails with EIO. `check`
    /// then also requires the image as the shutdown left it to show the
    /// newest acknowledged fsync, and no write after it.
    pub fn shutdown(&mut self) {
        let _ = FileSystem::shutdown(&*self.fs);
        self.shut_at = Some(self.rec.len());
    }

    /// Build and check the crash images: every flush point, and up to
    /// `subsets` random subsets (in random order) of the writes between
    /// two flushes, drawn with `seed`.
    pub fn check(self, subsets: usize, seed: u64) -> CrashReport {
        let ops = self.rec.ops();
        let flushes = self.rec.flush_points();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut report = CrashReport {
            fsyncs: self.points.len() - 1,
            logged: self.logged,
            committed: self.committed,
            flushes: flushes.len(),
            log: self.fs.log_stats(),
            ..Default::default()
        };
        let check = |prefix: usize, extra: Vec<usize>, report: &mut CrashReport| {
            report.states += 1;
            let acked = self.points.iter().rposition(|(i, _)| *i <= prefix);
            let fail = |report: &mut CrashReport, what: String| {
                if report.failures.len() < 20 {
                    report
                        .failures
                        .push(format!("crash after op {prefix} + {extra:?}: {what}"));
                }
            };
            match (recover(self.rec.image_with(prefix, &extra)), acked) {
                (Ok(tree), Some(a)) => match self.points[a..].iter().position(|(_, t)| *t == tree) {
                    Some(0) => {}
                    Some(_) => report.newer += 1,
                    None => fail(report, format!(
                        "the tree is not the one of fsync {a} or any later one:\n  got {tree:?}\n  wanted {:?}",
                        self.points[a].1
                    )),
                },
                (Err(_), None) => report.refused += 1,
                (Ok(_), None) => {}
                (Err(e), Some(a)) => fail(report, format!("fsync {a} was acknowledged but the image fails: {e}")),
            }
        };
        let mut prev = 0;
        for &f in &flushes {
            check(f + 1, Vec::new(), &mut report);
            let gap: Vec<usize> = (prev..f)
                .filter(|&i| !matches!(ops[i], RecordedOp::Flush))
                .collect();
            if !gap.is_empty() {
                for _ in 0..subsets.min(gap.len()) {
                    let mut pick: Vec<usize> =
                        gap.iter().copied().filter(|_| rng.gen_bool(0.5)).collect();
                    pick.shuffle(&mut rng);
                    check(prev, pick, &mut report);
                }
            }
            prev = f + 1;
        }
        if let Some(at) = self.shut_at {
            report.after_shutdown = ops.len() - at;
            check(at, Vec::new(), &mut report);
        }
        report
    }
}

/// Mount a crash image, return its tree, and fsck it after unmounting.
fn recover(img: MemDevice) -> std::result::Result<Vec<String>, String> {
    let dev = Arc::new(img);
    let fs = aegis_diskfs::open(
        vec![dev.clone() as DeviceRef],
        &mount_opts(AtimeMode::Noatime),
    )
    .map_err(|e| e.to_string())?;
    let tree = snapshot(&fs);
    fs.unmount().map_err(|e| e.to_string())?;
    let store = Store::open(
        vec![dev as DeviceRef],
        &OpenOptions::default(),
        mount_opts(AtimeMode::Noatime).store,
    )
    .map_err(|e| e.to_string())?;
    let r = aegis_fs::fsck::fsck(&store, false, &mut |_, _| {}).map_err(|e| e.to_string())?;
    if r.uncorrected() > 0 {
        return Err(format!(
            "fsck: {:?}",
            r.errors.iter().map(|f| &f.what).collect::<Vec<_>>()
        ));
    }
    Ok(tree)
}

/// Look up `path` (slash-separated, from the root).
pub fn lookup(fs: &dyn FileSystem, path: &str) -> Option<Ino> {
    let mut ino = ROOT_INO;
    for c in path.split('/').filter(|c| !c.is_empty()) {
        let a = fs.lookup(ino, OsStr::new(c)).ok()?;
        fs.forget(a.ino, 1);
        ino = a.ino;
    }
    Some(ino)
}

pub(crate) fn split(path: &str) -> (&str, &str) {
    let path = path.trim_matches('/');
    path.rsplit_once('/').unwrap_or(("", path))
}

/// fsync (`datasync`: fdatasync) of a file or fsyncdir of a directory.
pub fn fsync_path(fs: &DiskFs, path: &str, datasync: bool) -> Result<()> {
    let ino = lookup(fs, path).ok_or(FsError::NotFound)?;
    if fs.getattr(ino)?.kind == FileType::Directory {
        let fh = fs.opendir(ino, 0)?;
        let r = fs.fsyncdir(ino, fh, datasync);
        fs.releasedir(ino, fh)?;
        r
    } else {
        let fh = fs.open(ino, libc::O_RDONLY)?;
        let r = fs.fsync(ino, fh, datasync);
        fs.release(ino, fh)?;
        r
    }
}
