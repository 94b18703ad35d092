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
//! - [`AEGIS_IOC_GET_FIXED_OPTIONS`]: the options the daemon was started
//!   with that a remount cannot change (`nolog`, `threads=N`, the atime
//!   mode …), comma separated, so that the helper can refuse a remount
//!   that asks to change one (EINVAL, as Linux filesystems do).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `_IOR('X', 125, __u32)` from linux/fs.h.
pub const FS_IOC_SHUTDOWN: u32 = 0x8004_587d;
/// `_IOW(0xEA, 1, __u32)`: AegisFS's own, 1 makes writable, 0 read-only.
pub const AEGIS_IOC_SET_WRITABLE: u32 = 0x4004_ea01;

/// `_IOR(0xEA, 2, char[512])`: the fixed options, NUL-terminated.
pub const AEGIS_IOC_GET_FIXED_OPTIONS: u32 = 0x8200_ea02;
/// Size of the [`AEGIS_IOC_GET_FIXED_OPTIONS`] buffer.
pub const FIXED_OPTIONS_MAX: usize = 512;

/// The options the daemon of `mountpoint` cannot change while mounted.
pub fn fixed_options(mountpoint: &Path) -> io::Result<String> {
    let mut buf = [0u8; FIXED_OPTIONS_MAX];
    ioctl_on(mountpoint, AEGIS_IOC_GET_FIXED_OPTIONS, buf.as_mut_ptr())?;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// Shut down the filesystem mounted on `mountpoint`.
pub fn shutdown(mountpoint: &Path) -> io::Result<()> {
    let mut flags: u32 = 0;
    ioctl_on(mountpoint, FS_IOC_SHUTDOWN, (&mut flags as *mut u32).cast())
}

/// Freeze (`false`) or thaw (`true`) the filesystem on `mountpoint`.
pub fn set_writable(mountpoint: &Path, writable: bool) -> io::Result<()> {
    let mut value: u32 = writable.into();
    ioctl_on(
        mountpoint,
        AEGIS_IOC_SET_WRITABLE,
        (&mut value as *mut u32).cast(),
    )
}

/// `arg` points at as many bytes as `cmd` encodes.
fn ioctl_on(mountpoint: &Path, cmd: u32, arg: *mut u8) -> io::Result<()> {
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
    // SAFETY: `fd` is open; `arg` holds the bytes the command encodes.
    let rc = unsafe { libc::ioctl(fd, cmd as libc::Ioctl, arg) };
    let err = io::Error::last_os_error();
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(fd) };
    if rc < 0 {
        Err(err)
    } else {
        Ok(())
    }
}
