//! The image lock: one process runs a pool on a device at a time, and a
//! process that is only closing it is waited for rather than refused.
//!
//! Two locks on the same open file description, so both last exactly as
//! long as the device is open and need no cleanup after a crash:
//! - an exclusive `flock`: held from open to close, the exclusion itself;
//! - an OFD read lock on byte 0, the "active" mark: held while the holder
//!   serves the pool, dropped by [`mark_closing`] once it only commits and
//!   closes (a FUSE daemon whose mount is gone).
//!
//! `umount` returns before a FUSE daemon has finished its last commit, so
//! a `mount` right after it finds the image locked. [`take`] tells the two
//! cases apart: a holder still marked active after a grace period is a
//! real user (refused at once, as before); one that is closing is waited
//! for, up to a bound. The grace covers the moment between the unmount and
//! the daemon noticing it. Both waits poll: `flock` cannot wait with a
//! timeout.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::{BlockError, Result};

/// How long a holder marked active may take to drop its mark: the time a
/// FUSE daemon takes to see that it was unmounted.
const ACTIVE_GRACE: Duration = Duration::from_millis(1500);
/// How long a closing holder may take for its last commit.
const CLOSING_WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(10);

/// Take the exclusive lock and the active mark, waiting for a holder that
/// is closing (see the module documentation).
pub(crate) fn take(file: &File, path: &Path) -> Result<()> {
    let start = Instant::now();
    let mut closing_since = None;
    loop {
        if try_flock(file, path)? {
            return set_active(file, libc::F_RDLCK as libc::c_short, path);
        }
        let active = holder_active(file, path)?;
        if active && start.elapsed() >= ACTIVE_GRACE {
            return Err(BlockError::Invalid(format!(
                "{} is in use by another process (locked)",
                path.display()
            )));
        }
        if !active {
            let since = *closing_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= CLOSING_WAIT {
                return Err(BlockError::Invalid(format!(
                    "{} is still being closed by another process after {} s (locked)",
                    path.display(),
                    CLOSING_WAIT.as_secs()
                )));
            }
        }
        std::thread::sleep(POLL);
    }
}

/// Drop the active mark: from now on this holder only commits and closes,
/// and the next opener waits for it instead of giving up.
pub(crate) fn mark_closing(file: &File, path: &Path) -> Result<()> {
    set_active(file, libc::F_UNLCK as libc::c_short, path)
}

/// `Ok(true)` when the flock was taken, `Ok(false)` when someone holds it.
fn try_flock(file: &File, path: &Path) -> Result<bool> {
    // SAFETY: flock only reads the descriptor, which `file` keeps open.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Ok(false);
    }
    Err(lock_err(path, err))
}

fn byte_zero(kind: libc::c_short) -> libc::flock {
    // SAFETY: flock is plain data; all-zero is a valid value (l_pid must be
    // 0 for OFD locks).
    let mut l: libc::flock = unsafe { std::mem::zeroed() };
    l.l_type = kind;
    l.l_whence = libc::SEEK_SET as libc::c_short;
    l.l_start = 0;
    l.l_len = 1;
    l
}

fn set_active(file: &File, kind: libc::c_short, path: &Path) -> Result<()> {
    let l = byte_zero(kind);
    // SAFETY: `l` is a valid flock for the duration of the call.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &l) } == 0 {
        Ok(())
    } else {
        Err(lock_err(path, std::io::Error::last_os_error()))
    }
}

/// Does another open file description hold the active mark?
fn holder_active(file: &File, path: &Path) -> Result<bool> {
    // A write probe conflicts with any read lock held elsewhere.
    let mut l = byte_zero(libc::F_WRLCK as libc::c_short);
    // SAFETY: `l` is a valid flock the kernel fills in.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut l) } != 0 {
        return Err(lock_err(path, std::io::Error::last_os_error()));
    }
    Ok(l.l_type != libc::F_UNLCK as libc::c_short)
}

fn lock_err(path: &Path, e: std::io::Error) -> BlockError {
    BlockError::io(format!("{} (locking)", path.display()), e)
}
