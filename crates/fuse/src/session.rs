//! Mounting and running a FUSE session.
//!
//! [`mount`] serves a filesystem in the calling thread until it is
//! unmounted: by `umount`/`fusermount3 -u`, or by SIGTERM, SIGINT or SIGHUP,
//! which it turns into a clean unmount. [`spawn`] serves it from a
//! background thread and returns a [`MountHandle`] whose `unmount()` (or
//! drop) unmounts and waits for the session to end.
//!
//! Invariants:
//! - the mount point is checked before mounting (exists, is a directory,
//!   is empty), so a typo cannot hide a directory's contents;
//! - when `mount` returns or a handle's `unmount` returns, the session's
//!   worker threads have ended and the adapter's reference to the
//!   filesystem is dropped: the caller holds the last `Arc` and can commit
//!   and close it;
//! - an unmount that finds the mount busy (EBUSY: a process still has a
//!   file open or its working directory inside) detaches it lazily instead:
//!   the name disappears at once and the session ends when the last user
//!   lets go, so open files keep working and no data is cut off.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};

use aegis_vfs::FileSystem;
use fuser::{Config, MountOption, Session, SessionACL, SessionUnmounter};
use parking_lot::Mutex;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::{info, warn};

use crate::adapter::FuseAdapter;
use crate::error::MountError;
use crate::options::{AccessPolicy, MountConfig};

/// The FUSE device the kernel module provides.
const FUSE_DEVICE: &str = "/dev/fuse";

/// Check that `path` can be a mount point: it exists, is a directory and is
/// empty. Returns its canonical form, which is what the kernel records.
pub fn check_mountpoint(path: &Path) -> Result<PathBuf, MountError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(MountError::MountpointMissing(path.to_path_buf()))
        }
        Err(e) => return Err(MountError::io(format!("mount point {}", path.display()), e)),
    };
    if !meta.is_dir() {
        return Err(MountError::NotADirectory(path.to_path_buf()));
    }
    let mut entries = std::fs::read_dir(path)
        .map_err(|e| MountError::io(format!("mount point {}", path.display()), e))?;
    if entries.next().is_some() {
        return Err(MountError::NotEmpty(path.to_path_buf()));
    }
    path.canonicalize()
        .map_err(|e| MountError::io(format!("mount point {}", path.display()), e))
}

/// Whether an executable `name` is on `PATH`.
fn in_path(name: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(name))
            .map(|m| m.is_file())
            .unwrap_or(false)
    })
}

/// Check what mounting needs besides the mount point: the FUSE device, and
/// fusermount3 where the mount goes through it (not root, or auto_unmount).
fn check_environment(config: &MountConfig) -> Result<(), MountError> {
    if !Path::new(FUSE_DEVICE).exists() {
        return Err(MountError::FuseDeviceMissing);
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    // fuser mounts with mount(2) directly when it may, else through the
    // setuid helper; it also accepts the older `fusermount` name.
    if (!root || config.auto_unmount) && !in_path("fusermount3") && !in_path("fusermount") {
        return Err(MountError::FusermountMissing);
    }
    if config.blkdev.is_some() && !root {
        return Err(MountError::Config("a fuseblk mount needs root".to_string()));
    }
    if config.auto_unmount && config.access == AccessPolicy::Owner {
        return Err(MountError::Config(
            "auto_unmount needs allow_other or allow_root".to_string(),
        ));
    }
    Ok(())
}

/// The fuser configuration for `config`.
fn fuser_config(config: &MountConfig) -> Config {
    let mut opts = vec![
        MountOption::FSName(config.fsname.clone()),
        MountOption::Subtype(config.subtype.clone()),
        // The adapter never checks permissions; the kernel must.
        MountOption::DefaultPermissions,
        if config.dev {
            MountOption::Dev
        } else {
            MountOption::NoDev
        },
        if config.suid {
            MountOption::Suid
        } else {
            MountOption::NoSuid
        },
        if config.exec {
            MountOption::Exec
        } else {
            MountOption::NoExec
        },
    ];
    // As root fuser calls mount(2) itself and passes the subtype only to
    // fusermount3; given to the kernel, the type reads `fuse.<subtype>`,
    // which mount(8) needs to find our helper for a remount.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        opts.push(MountOption::CUSTOM(format!("subtype={}", config.subtype)));
    }
    if config.read_only {
        opts.push(MountOption::RO);
    }
    if config.noatime {
        opts.push(MountOption::NoAtime);
    }
    if config.auto_unmount {
        opts.push(MountOption::AutoUnmount);
    }
    let mut c = Config::default();
    c.mount_options = opts;
    c.acl = match config.access {
        AccessPolicy::Owner => SessionACL::Owner,
        AccessPolicy::AllowOther => SessionACL::All,
        AccessPolicy::AllowRoot => SessionACL::RootAndOwner,
    };
    c.n_threads = Some(config.effective_threads());
    // One /dev/fuse descriptor per worker: requests spread over the
    // threads without them contending on a single queue.
    c.clone_fd = true;
    c
}

/// Everything that can be checked before mounting; returns the canonical
/// mount point.
fn preflight(mountpoint: &Path, config: &MountConfig) -> Result<PathBuf, MountError> {
    let path = check_mountpoint(mountpoint)?;
    check_environment(config)?;
    Ok(path)
}

/// Mounts `fs` on the checked `path` and completes the FUSE handshake.
/// Returns the session ready to run and its unmounter.
fn start(
    fs: Arc<dyn FileSystem>,
    path: PathBuf,
    config: &MountConfig,
) -> Result<(Session<FuseAdapter>, Arc<Unmounter>), MountError> {
    let notifier = Arc::new(OnceLock::new());
    let adapter = FuseAdapter::new(fs, Arc::clone(&notifier), config);
    let (mut session, direct) = match &config.blkdev {
        Some(dev) => {
            let fd = crate::fuseblk::mount(dev, &path, config)?;
            let acl = fuser_config(config).acl;
            let s = Session::from_fd(adapter, fd, acl, fuser_config(config)).map_err(|e| {
                let _ = detach(&path);
                MountError::io(
                    format!("starting the fuseblk session on {}", path.display()),
                    e,
                )
            })?;
            (s, true)
        }
        None => {
            let s = Session::new(adapter, &path, &fuser_config(config)).map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound && !in_path("fusermount3") {
                    MountError::FusermountMissing
                } else {
                    MountError::io(format!("mounting {}", path.display()), e)
                }
            })?;
            (s, false)
        }
    };
    let _ = notifier.set(session.notifier());
    let unmounter = Arc::new(Unmounter {
        inner: Mutex::new(session.unmount_callable()),
        direct,
        path,
    });
    Ok((session, unmounter))
}

/// Unmounts a session from any thread, at most once.
struct Unmounter {
    inner: Mutex<SessionUnmounter>,
    /// Mounted by us (fuseblk), not by fuser: unmount with umount2.
    direct: bool,
    path: PathBuf,
}

impl Unmounter {
    fn unmount(&self) -> io::Result<()> {
        let result = if self.direct {
            umount(&self.path)
        } else {
            self.inner.lock().unmount()
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                warn!(
                    "{} is busy; detaching it, the session ends when the last open file closes",
                    self.path.display()
                );
                detach(&self.path)
            }
            Err(e) => Err(e),
        }
    }
}

/// umount2(2) of `path`, no flags.
fn umount(path: &Path) -> io::Result<()> {
    umount2(path, 0)
}

/// Lazy unmount: remove the mount from the namespace now, let the kernel
/// end the connection once nothing uses it.
fn detach(path: &Path) -> io::Result<()> {
    umount2(path, libc::MNT_DETACH)
}

fn umount2(path: &Path, flags: libc::c_int) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn session_result(path: &Path, result: io::Result<()>) -> Result<(), MountError> {
    match result {
        // The kernel tore the connection down rather than ending it: what
        // a detached (lazy) mount gets, about one time in fifty, when its
        // superblock goes with the last open file, instead of the ENODEV
        // fuser takes as the end. Nothing is left to serve: the session
        // ended, and the filesystem is closed as after any unmount.
        Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => Ok(()),
        r => r.map_err(|e| MountError::io(format!("FUSE session on {}", path.display()), e)),
    }
}

/// Mount `fs` on `mountpoint` and serve it until it is unmounted. With
/// `config.handle_signals`, SIGTERM, SIGINT and SIGHUP unmount it (lazily
/// if busy) and make this function return.
///
/// When it returns, every worker thread has ended and the adapter's clone
/// of `fs` is dropped, so the caller can commit and close the filesystem.
/// The three signals stay caught (signal-hook keeps its handler installed,
/// doing nothing), so a second Ctrl-C cannot cut that commit short.
pub fn mount(
    fs: Arc<dyn FileSystem>,
    mountpoint: impl AsRef<Path>,
    config: &MountConfig,
) -> Result<(), MountError> {
    let path = preflight(mountpoint.as_ref(), config)?;
    // Registered before mounting, so a signal arriving while the mount is
    // being set up is kept and acted on as soon as the watcher starts.
    let signals = if config.handle_signals {
        Some(
            Signals::new([SIGTERM, SIGINT, SIGHUP])
                .map_err(|e| MountError::io("installing signal handlers", e))?,
        )
    } else {
        None
    };
    let (session, unmounter) = start(fs, path.clone(), config)?;
    let watcher = match signals {
        Some(mut signals) => {
            let handle = signals.handle();
            let unmounter = Arc::clone(&unmounter);
            let thread = thread::Builder::new()
                .name("aegis-fuse-signals".to_string())
                .spawn(move || {
                    for sig in signals.forever() {
                        info!("signal {sig}: unmounting {}", unmounter.path.display());
                        if let Err(e) = unmounter.unmount() {
                            warn!("unmounting {}: {e}", unmounter.path.display());
                        }
                    }
                })
                .map_err(|e| MountError::io("starting the signal thread", e))?;
            Some((handle, thread))
        }
        None => None,
    };
    info!("serving {}", path.display());
    let result = session.run();
    if let Some((handle, thread)) = watcher {
        handle.close();
        let _ = thread.join();
    }
    session_result(&path, result)
}

/// Mount `fs` on `mountpoint` and serve it from a background thread. The
/// filesystem is mounted and answering when this returns. Signals are left
/// alone: the owner of the handle decides when to unmount.
pub fn spawn(
    fs: Arc<dyn FileSystem>,
    mountpoint: impl AsRef<Path>,
    config: &MountConfig,
) -> Result<MountHandle, MountError> {
    let path = preflight(mountpoint.as_ref(), config)?;
    let (session, unmounter) = start(fs, path, config)?;
    let thread = thread::Builder::new()
        .name("aegis-fuse-session".to_string())
        .spawn(move || session.run())
        .map_err(|e| MountError::io("starting the session thread", e))?;
    Ok(MountHandle {
        unmounter,
        thread: Some(thread),
    })
}

/// A filesystem mounted by [`spawn`]. Dropping it unmounts and waits for
/// the session to end, like [`MountHandle::unmount`] without the result.
pub struct MountHandle {
    unmounter: Arc<Unmounter>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl std::fmt::Debug for MountHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountHandle")
            .field("mountpoint", &self.unmounter.path)
            .finish_non_exhaustive()
    }
}

impl MountHandle {
    /// The canonical path the filesystem is mounted on.
    pub fn mountpoint(&self) -> &Path {
        &self.unmounter.path
    }

    /// Unmount and wait for the session to end. If the mount is busy it is
    /// detached lazily, and this waits until the last user lets go.
    pub fn unmount(mut self) -> Result<(), MountError> {
        let unmounted = self.unmounter.unmount().map_err(|e| {
            MountError::io(format!("unmounting {}", self.unmounter.path.display()), e)
        });
        let joined = self.join_session();
        unmounted.and(joined)
    }

    /// Wait until the filesystem is unmounted from outside (`umount`,
    /// `fusermount3 -u`) and the session has ended.
    pub fn wait(mut self) -> Result<(), MountError> {
        self.join_session()
    }

    fn join_session(&mut self) -> Result<(), MountError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let result = thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("FUSE session thread panicked")));
        session_result(&self.unmounter.path, result)
    }
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        if self.thread.is_none() {
            return;
        }
        if let Err(e) = self.unmounter.unmount() {
            warn!("unmounting {}: {e}", self.unmounter.path.display());
        }
        if let Err(e) = self.join_session() {
            warn!("{e}");
        }
    }
}
