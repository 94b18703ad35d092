//! `aegisfs mount`: serve an image through FUSE.
//!
//! Without `--foreground` the command starts itself again in the
//! background (a new session, stdio detached) and returns once the kernel
//! lists the mount, or with the daemon's one-line error if it failed, so
//! it behaves like mount(8) and can stand behind `mount -t fuse.aegisfs`.
//!
//! Everything is checked before the kernel mount: the options, the mount
//! point (exists, a directory, empty), the image (AegisFS, opens, not in
//! use: the image is locked with `flock` while mounted, so a second mount
//! is refused). A clean unmount, SIGTERM, SIGINT or SIGHUP commits every
//! change before the process ends.
//!
//! `--ram MOUNTPOINT` mounts an empty in-memory filesystem instead
//! (`mount/ram.rs`), through the same daemon start and signal handling.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_block::{DeviceRef, FileDevice, OpenMode};
use aegis_diskfs::{AtimeMode, DiskFsOptions, MountOptions};
use aegis_fs::time_travel::At;
use aegis_fs::{
    default_data_cache_bytes, default_dirty_limit, CachePolicy, OpenOptions, StoreOptions,
    MIN_CACHE_BYTES,
};
use aegis_fuse::{check_mountpoint, parse_options, FsOption};
use aegis_vfs::FileSystem;

use super::{CliError, CliResult};
use crate::units::{human, parse_size};

mod ram;

/// What `aegisfs mount` parses: `IMAGE MOUNTPOINT`, or `--ram
/// MOUNTPOINT` for an empty in-memory filesystem (see `mount/ram.rs`).
#[derive(clap::Args)]
#[command(override_usage = "aegisfs mount [OPTIONS] IMAGE MOUNTPOINT\n       \
                            aegisfs mount [OPTIONS] --ram MOUNTPOINT")]
pub struct CliArgs {
    /// Image file or block device holding an AegisFS pool.
    #[arg(required_unless_present = "ram")]
    pub image: Option<PathBuf>,
    /// Empty directory to mount it on.
    #[arg(required_unless_present = "ram")]
    pub mountpoint: Option<PathBuf>,
    /// Mount an empty RAM filesystem on MOUNTPOINT instead of an image
    /// (no image, no lock; its contents vanish at unmount). Options as
    /// tmpfs: size=SIZE (512M, 1G, 100k, bytes, 50%; default half of
    /// RAM), nr_inodes=N, mode=OCTAL, uid=N, gid=N, plus the FUSE options.
    #[arg(long, value_name = "MOUNTPOINT", conflicts_with_all = ["image", "mountpoint"])]
    pub ram: Option<PathBuf>,
    /// Mount options, comma separated: ro, rw, noatime, relatime,
    /// strictatime, allow_other, allow_root, dev, nodev, suid, nosuid,
    /// exec, noexec, auto_unmount, fsname=NAME, threads=N, nolog (fsync
    /// commits a transaction group instead of writing the intent log),
    /// norecovery (with ro: do not replay the intent log; a read-only mount
    /// never replays it), writeback_cache / nowriteback_cache (default),
    /// attr_timeout=SECONDS (default 1), entry_timeout=SECONDS (default 10).
    #[arg(short = 'o', value_name = "OPTIONS")]
    pub options: Vec<String>,
    /// Stay in the foreground (logs go to stderr) until unmounted.
    #[arg(long, short = 'f')]
    pub foreground: bool,
    /// Mount the dataset read-only as it was at this time (RFC 3339, UTC:
    /// 2026-12-01T10:00:00Z) from its time travel window or snapshots.
    #[arg(long, value_name = "TIME", conflicts_with = "txg")]
    pub at: Option<String>,
    /// Mount the dataset read-only as it was at this txg.
    #[arg(long, value_name = "N")]
    pub txg: Option<u64>,
}

/// `aegisfs mount` from the command line: an image, or `--ram`.
pub fn run_cli(a: CliArgs) -> CliResult<u8> {
    if let Some(mountpoint) = a.ram {
        return ram::run(ram::Args {
            mountpoint,
            options: a.options,
            foreground: a.foreground,
        });
    }
    // clap requires both unless --ram is given.
    let (Some(image), Some(mountpoint)) = (a.image, a.mountpoint) else {
        return Err(CliError::new(
            "mount needs IMAGE MOUNTPOINT, or --ram MOUNTPOINT",
        ));
    };
    let mut options = a.options;
    // As mount options, so the daemon a background mount starts gets them.
    if let Some(t) = a.at {
        options.push(format!("at={t}"));
    }
    if let Some(n) = a.txg {
        options.push(format!("txg={n}"));
    }
    run(Args {
        image,
        mountpoint,
        options,
        foreground: a.foreground,
    })
}

/// The `at=TIME` or `txg=N` option of a mount (time travel), parsed.
fn travel_option(parsed: &aegis_fuse::ParsedOptions) -> CliResult<Option<At>> {
    let mut at = None;
    for o in &parsed.fs {
        let v = o.value.as_deref().unwrap_or("");
        at = match o.name.as_str() {
            "at" => {
                let t = humantime::parse_rfc3339_weak(v).map_err(|e| {
                    CliError::new(format!("at={v}: {e} (give a time as 2026-12-01T10:00:00Z)"))
                })?;
                let ns = t
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_err(|_| CliError::new(format!("at={v}: before 1970")))?
                    .as_nanos();
                Some(At::TimeNs(u64::try_from(ns).unwrap_or(u64::MAX)))
            }
            "txg" => {
                Some(At::Txg(v.parse().map_err(|_| {
                    CliError::new(format!("txg={v}: not a txg number"))
                })?))
            }
            _ => continue,
        };
    }
    Ok(at)
}

/// An image mount, as the command line, mount(8)'s helper and `up` ask
/// for it.
#[derive(Clone)]
pub struct Args {
    /// Image file or block device holding an AegisFS pool.
    pub image: PathBuf,
    /// Empty directory to mount it on.
    pub mountpoint: PathBuf,
    /// Mount options, as `-o` gives them (see [`CliArgs::options`]).
    pub options: Vec<String>,
    /// Stay in the foreground until unmounted.
    pub foreground: bool,
}

/// Options mount(8) passes to helpers that only mean something to it.
const MOUNT8_ONLY: &[&str] = &[
    "defaults",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "nofail",
    "_netdev",
    "loop",
    "sync",
    "async",
    "atime",
    "diratime",
    "nodiratime",
    "lazytime",
    "nolazytime",
];

/// Drop what mount(8) and fstab add on top of our options.
pub fn strip_mount8_options(spec: &str) -> String {
    spec.split(',')
        .map(str::trim)
        .filter(|o| {
            !o.is_empty()
                && !MOUNT8_ONLY.contains(o)
                && !o.starts_with("x-")
                && !o.starts_with("comment=")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// What the filesystem options choose.
struct FsChoices {
    read_only: bool,
    atime: AtimeMode,
    intent_log: bool,
    cache: DataCache,
    dirty_bytes: u64,
}

/// `cache_size=` and `cache_policy=`: the engine's cache of decoded file
/// data.
struct DataCache {
    size_bytes: u64,
    policy: CachePolicy,
}

/// Largest `cache_size=`: more than the machine has would only be paged
/// out (and a typo of a unit should not pass).
fn max_cache_bytes() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages <= 0 || page <= 0 {
        return 1 << 40;
    }
    (pages as u64).saturating_mul(page as u64)
}

fn cache_size(value: Option<&str>) -> CliResult<u64> {
    let v = value
        .ok_or_else(|| CliError::new("mount option 'cache_size' needs a size (cache_size=512M)"))?;
    let n = parse_size(v).map_err(|e| CliError::new(format!("mount option 'cache_size': {e}")))?;
    let (lo, hi) = (MIN_CACHE_BYTES, max_cache_bytes());
    if n != 0 && !(lo..=hi).contains(&n) {
        return Err(CliError::new(format!(
            "mount option 'cache_size={v}' is out of range: 0 (off) or {} to {} (this machine's memory)",
            human(lo),
            human(hi)
        )));
    }
    Ok(n)
}

/// Smallest `dirty_max=`: below a few records per txg every write would
/// wait for a commit.
const MIN_DIRTY_BYTES: u64 = 16 << 20;

/// `dirty_max=`: the most the open and the syncing txg hold in memory
/// (ZFS's `zfs_dirty_data_max`); writers wait past it. Up to half of the
/// machine's memory.
fn dirty_max(value: Option<&str>) -> CliResult<u64> {
    let v = value
        .ok_or_else(|| CliError::new("mount option 'dirty_max' needs a size (dirty_max=256M)"))?;
    let n = parse_size(v).map_err(|e| CliError::new(format!("mount option 'dirty_max': {e}")))?;
    let (lo, hi) = (MIN_DIRTY_BYTES, max_cache_bytes() / 2);
    if !(lo..=hi).contains(&n) {
        return Err(CliError::new(format!(
            "mount option 'dirty_max={v}' is out of range: {} to {} (half this machine's memory)",
            human(lo),
            human(hi)
        )));
    }
    Ok(n)
}

fn cache_policy(value: Option<&str>) -> CliResult<CachePolicy> {
    value.and_then(CachePolicy::parse).ok_or_else(|| {
        CliError::new(format!(
            "mount option 'cache_policy={}' is not a policy: arc, lru2 or lru",
            value.unwrap_or("")
        ))
    })
}

fn fs_choices(options: &[FsOption]) -> CliResult<FsChoices> {
    let mut intent_log = true;
    let mut norecovery = false;
    let mut atime = AtimeMode::Relatime;
    let mut read_only = false;
    let mut cache = DataCache {
        size_bytes: default_data_cache_bytes(),
        policy: CachePolicy::default(),
    };
    let mut dirty_bytes = default_dirty_limit();
    for FsOption { name, value } in options {
        match name.as_str() {
            "cache_size" => cache.size_bytes = cache_size(value.as_deref())?,
            "dirty_max" => dirty_bytes = dirty_max(value.as_deref())?,
            "cache_policy" => cache.policy = cache_policy(value.as_deref())?,
            "ro" => read_only = true,
            "rw" => read_only = false,
            "noatime" => atime = AtimeMode::Noatime,
            "relatime" => atime = AtimeMode::Relatime,
            "strictatime" => atime = AtimeMode::Strictatime,
            "nolog" => intent_log = false,
            "norecovery" => norecovery = true,
            _ => {}
        }
    }
    if norecovery && !read_only {
        return Err(CliError::new(
            "mount option 'norecovery' needs 'ro': a writable mount must replay the intent log",
        ));
    }
    Ok(FsChoices {
        read_only,
        atime,
        intent_log,
        cache,
        dirty_bytes,
    })
}

pub fn run(a: Args) -> CliResult<u8> {
    if super::remount::is_remount(&a.options) {
        return super::remount::run(&a);
    }
    // IMAGE[/NAME]@SNAP mounts a snapshot, which is read-only.
    let (target, snapshot) = super::snapshot::split_snapshot(&a.image);
    let mut options = a.options.clone();
    let travels = options
        .iter()
        .flat_map(|o| o.split(','))
        .any(|o| o.starts_with("at=") || o.starts_with("txg="));
    if snapshot.is_some() || travels {
        options.push("ro".into());
    }
    let spec = options.join(",");
    let mut parsed = parse_options(
        &spec,
        &[
            "nolog",
            "norecovery",
            "cache_size",
            "cache_policy",
            "dirty_max",
            "at",
            "txg",
        ],
    )
    .map_err(|e| CliError::new(e.to_string()))?;
    let at = travel_option(&parsed)?;
    if at.is_some() && snapshot.is_some() {
        return Err(CliError::new(
            "a snapshot mount takes no at= or txg=: it is a moment already",
        ));
    }
    let FsChoices {
        read_only,
        atime,
        intent_log,
        cache,
        dirty_bytes,
    } = fs_choices(&parsed.fs)?;
    parsed.mount.fixed_options = fixed_options(&parsed, intent_log);
    let mountpoint = check_mountpoint(&a.mountpoint).map_err(|e| CliError::new(e.to_string()))?;
    // IMAGE/NAME mounts dataset NAME; a bare IMAGE the root dataset.
    let (image_arg, dataset) = super::dataset::split_target(&target);
    if !image_arg.exists() {
        return Err(CliError::new(format!(
            "{}: no such file or device",
            a.image.display()
        )));
    }
    let image = image_arg
        .canonicalize()
        .map_err(|e| CliError::new(format!("{}: {e}", image_arg.display())))?;
    // What the mount shows as its source, and what the daemon is given.
    let source = match &dataset {
        Some(name) => image.join(name),
        None => image.clone(),
    };
    let source = match &snapshot {
        Some(snap) => PathBuf::from(format!("{}@{snap}", source.display())),
        None => source,
    };
    if !a.foreground {
        let args = [source.as_os_str(), mountpoint.as_os_str()];
        return daemonize(&args, &a.options, &mountpoint);
    }

    let mode = if read_only {
        OpenMode::ReadOnly
    } else {
        OpenMode::ReadWrite
    };
    let dev = FileDevice::open(&image, mode)
        .map_err(|e| CliError::new(format!("{}: {e}", image.display())))?;
    dev.lock_exclusive()
        .map_err(|e| CliError::new(format!("{}: {e}", image.display())))?;
    let opts = MountOptions {
        pool: OpenOptions {
            read_only,
            rewind_txg: None,
        },
        store: StoreOptions {
            data_cache_bytes: cache.size_bytes,
            data_cache_policy: cache.policy,
            dirty_limit: dirty_bytes,
            ..Default::default()
        },
        fs: DiskFsOptions {
            atime,
            intent_log,
            ..Default::default()
        },
        sync_thread: true,
        dataset_name: dataset.clone(),
        snapshot_name: snapshot.clone(),
        at,
    };
    let dev = Arc::new(dev);
    let fs = aegis_diskfs::open(vec![dev.clone() as DeviceRef], &opts)
        .map_err(|e| CliError::new(format!("{}: {e}", a.image.display())))?;
    if parsed.mount.fsname == "aegisfs" {
        parsed.mount.fsname = source.display().to_string();
    }
    let loop_hold = choose_fuseblk(&mut parsed.mount, dev.is_block_device(), &image, read_only)?;
    // A dataset's snapshots are browsable under `.snapshots/` (a snapshot
    // mount has none of its own).
    let served_fs: Arc<dyn FileSystem> = match (&snapshot, at) {
        (None, None) => aegis_diskfs::SnapshotDir::new(fs.clone()),
        _ => fs.clone(),
    };
    let served = aegis_fuse::mount(served_fs, &mountpoint, &parsed.mount);
    // Our hold on the loop device; the kernel let go at unmount, so it
    // detaches now.
    drop(loop_hold);
    // The mount is gone: a `mount` of this image from now on waits for
    // this process to finish instead of being refused (a failure to say so
    // only costs that wait its patience).
    if let Err(e) = dev.mark_closing() {
        tracing::warn!("{e}");
    }
    // Commit whatever the session left, even if it ended with an error.
    let closed = fs.unmount();
    served.map_err(|e| CliError::new(e.to_string()))?;
    closed.map_err(|e| CliError::new(format!("{}: closing: {e}", image.display())))?;
    Ok(0)
}

/// The options of this mount a remount cannot change, for the remount
/// helper to compare against (see `remount.rs`).
fn fixed_options(parsed: &aegis_fuse::ParsedOptions, intent_log: bool) -> String {
    let m = &parsed.mount;
    let mut o: Vec<String> = Vec::new();
    if !intent_log {
        o.push("nolog".into());
    }
    if parsed.fs.iter().any(|f| f.name == "norecovery") {
        o.push("norecovery".into());
    }
    if let Some(n) = m.threads {
        o.push(format!("threads={n}"));
    }
    for f in parsed.fs.iter().filter(|f| f.name.starts_with("cache_")) {
        o.push(format!("{}={}", f.name, f.value.as_deref().unwrap_or("")));
    }
    match m.access {
        aegis_fuse::AccessPolicy::AllowOther => o.push("allow_other".into()),
        // The kernel lists allow_other for it, which mount(8) hands back.
        aegis_fuse::AccessPolicy::AllowRoot => {
            o.push("allow_root".into());
            o.push("allow_other".into());
        }
        aegis_fuse::AccessPolicy::Owner => {}
    }
    if m.auto_unmount {
        o.push("auto_unmount".into());
    }
    // The FUSE cache settings are agreed at INIT or given with every
    // reply: always listed, so a remount that names them must match.
    o.push(
        if m.writeback_cache {
            "writeback_cache"
        } else {
            "nowriteback_cache"
        }
        .into(),
    );
    o.push(format!(
        "attr_timeout={}",
        aegis_fuse::options::format_timeout(m.attr_timeout)
    ));
    o.push(format!(
        "entry_timeout={}",
        aegis_fuse::options::format_timeout(m.entry_timeout)
    ));
    o.join(",")
}

/// fuseblk where the kernel allows it: only then do `sync` and `syncfs`
/// reach the daemon and does umount wait for its last commit. As root, a
/// block device is its own source and an image gets a loop device (held
/// here until the mount holds it; it then clears itself with the mount);
/// `nofuseblk`, `auto_unmount` (which needs fusermount3) and unprivileged
/// mounts stay plain `fuse`. A default attempt that cannot get a loop
/// device falls back to `fuse`; an explicit `fuseblk` fails instead.
fn choose_fuseblk(
    mount: &mut aegis_fuse::MountConfig,
    block_device: bool,
    image: &Path,
    read_only: bool,
) -> CliResult<Option<crate::loop_device::LoopDevice>> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let asked = mount.fuseblk == Some(true);
    if asked && !root {
        return Err(CliError::new(format!(
            "{}: mount option 'fuseblk' needs root",
            image.display()
        )));
    }
    if !root || mount.fuseblk == Some(false) || (mount.auto_unmount && !asked) {
        return Ok(None);
    }
    if block_device {
        mount.blkdev = Some(image.to_path_buf());
        return Ok(None);
    }
    match crate::loop_device::attach(image, read_only) {
        Ok(l) => {
            mount.blkdev = Some(l.path.clone());
            Ok(Some(l))
        }
        Err(e) if asked => Err(CliError::new(format!(
            "{}: attaching a loop device for fuseblk: {e}",
            image.display()
        ))),
        Err(e) => {
            tracing::warn!(
                "no loop device for {} ({e}); mounting as fuse: sync(2) will not reach it",
                image.display()
            );
            Ok(None)
        }
    }
}

/// Is `mountpoint` a mount point of an AegisFS FUSE mount right now?
pub fn is_mounted(mountpoint: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = mountpoint.to_string_lossy();
    info.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        // Field 5 is the mount point; the file system type follows " - ".
        let fstype = l.split(" - ").nth(1).and_then(|r| r.split(' ').next());
        f.get(4).is_some_and(|m| unescape(m) == want)
            && fstype.is_some_and(|t| t.starts_with("fuse"))
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Run the same mount in the foreground as a detached child (`aegisfs
/// mount --foreground ARGS... -o OPTIONS...`) and wait until `mountpoint`
/// is mounted or the child has failed. Image and RAM mounts share it.
fn daemonize(args: &[&OsStr], options: &[String], mountpoint: &Path) -> CliResult<u8> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::new(format!("cannot find the aegisfs executable: {e}")))?;
    // The child's stderr goes to an unlinked temporary file: read on
    // failure, harmless to write to forever after success.
    let log = tempfile::tempfile()
        .map_err(|e| CliError::new(format!("cannot create a temporary file: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.arg("mount").arg("--foreground").args(args);
    for o in options {
        cmd.arg("-o").arg(o);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            log.try_clone()
                .map_err(|e| CliError::new(format!("temporary file: {e}")))?,
        ));
    // A new session: the mount must outlive the terminal that started it.
    // SAFETY: setsid is async-signal-safe and touches no memory.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| CliError::new(format!("cannot start the mount daemon: {e}")))?;
    let start = Instant::now();
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| CliError::new(format!("waiting for the mount daemon: {e}")))?
        {
            use std::io::{Read, Seek};
            let mut log = log;
            let mut text = String::new();
            let _ = log.rewind();
            let _ = log.read_to_string(&mut text);
            let line = text
                .lines()
                .rev()
                .find(|l| l.starts_with("aegisfs: "))
                .map(|l| l.trim_start_matches("aegisfs: ").to_string())
                .unwrap_or_else(|| format!("the mount daemon exited ({status})"));
            return Err(CliError::new(line));
        }
        if is_mounted(mountpoint) {
            return Ok(0);
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            return Err(CliError::new(format!(
                "{}: not mounted after 60 s; gave up",
                mountpoint.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
