//! Control requests to a mounted filesystem, as ioctls on its mount point.
//!
//! FUSE forwards an ioctl to the daemon in "restricted" form: the kernel
//! copies in and out exactly the sizes the command number encodes, so
//! each command here is a well-formed `_IOW`/`_IOR` number. Both are
//! root's alone (the daemon answers EPERM to anyone else), as for XFS and
//! ext4:
//! - [`FS_IOC_SHUTDOWN`], the number ext4 and XFS use (`xfs_io -c
//!   shutdown` sends it). Its flag word cannot reach a FUSE daemon (the
//!   command is `_IOR` although the caller passes data in), so every
//!   shutdown is the strictest kind, `NOLOGFLUSH`: nothing more is written.
//! - [`AEGIS_IOC_SET_WRITABLE`]: the remount helper's freeze (0) and thaw
//!   (1), around the kernel's own remount.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `_IOR('X', 125, __u32)` from linux/fs.h.
pub const FS_IOC_SHUTDOWN: u32 = 0x8004_587d;
/// `_IOW(0xEA, 1, __u32)`: AegisFS's own, 1 makes writable, 0 read-only.
pub const AEGIS_IOC_SET_WRITABLE: u32 = 0x4004_ea01;

/// Shut down the filesystem mounted on `mountpoint`.
pub fn shutdown(mountpoint: &Path) -> io::Result<()> {
    let flags: u32 = 0;
    ioctl_on(mountpoint, FS_IOC_SHUTDOWN, &flags)
}

/// Freeze (`false`) or thaw (`true`) the filesystem on `mountpoint`.
pub fn set_writable(mountpoint: &Path, writable: bool) -> io::Result<()> {
    let value: u32 = writable.into();
    ioctl_on(mountpoint, AEGIS_IOC_SET_WRITABLE, &value)
}

fn ioctl_on(mountpoint: &Path, cmd: u32, arg: &u32) -> io::Result<()> {
    let c = CString::new(mountpoint.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is open; the command reads or writes one u32 at `arg`.
    let rc = unsafe { libc::ioctl(fd, cmd as libc::Ioctl, arg as *const u32) };
    let err = io::Error::last_os_error();
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(fd) };
    if rc < 0 {
        Err(err)
    } else {
        Ok(())
    }
}
