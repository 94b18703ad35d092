//! Mounting as `fuseblk`: the FUSE flavour whose source is a block device.
//!
//! Two things only a fuseblk mount gets from the kernel, and why AegisFS
//! wants them: `syncfs(2)` and `sync(2)` reach the server (Linux 6.18 and
//! later send FUSE_SYNCFS to fuseblk servers; a plain `fuse` mount gets
//! nothing), and umount waits for the server's answer to FUSE_DESTROY, so
//! the last commit is made before `umount` returns.
//!
//! fuser mounts only `fuse`, so this mounts with mount(2) itself (root
//! only: the kernel requires CAP_SYS_ADMIN for fuseblk) and hands the
//! `/dev/fuse` descriptor to `Session::from_fd`. The kernel opens the block
//! device exclusively for the mount but never reads it; the daemon reads
//! and writes its own descriptor of the image.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::MountError;
use crate::options::{AccessPolicy, MountConfig};

/// Open /dev/fuse and mount it as fuseblk of `device` on `mountpoint`.
/// Returns the descriptor the session serves.
pub(crate) fn mount(
    device: &Path,
    mountpoint: &Path,
    config: &MountConfig,
) -> Result<OwnedFd, MountError> {
    let fuse = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|e| MountError::io("opening /dev/fuse", e))?;
    let data = kernel_options(fuse.as_raw_fd(), config);
    let c = |p: &[u8], what: &str| {
        CString::new(p).map_err(|_| MountError::Config(format!("{what} holds a NUL byte")))
    };
    let (src, dst) = (
        c(device.as_os_str().as_bytes(), "the device")?,
        c(mountpoint.as_os_str().as_bytes(), "the mount point")?,
    );
    let (fstype, data) = (c(b"fuseblk", "")?, c(data.as_bytes(), "an option")?);
    // SAFETY: every pointer is a valid NUL-terminated string for the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            fstype.as_ptr(),
            mount_flags(config),
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        return Err(MountError::io(
            format!(
                "mounting {} as fuseblk on {}",
                device.display(),
                mountpoint.display()
            ),
            e,
        ));
    }
    Ok(OwnedFd::from(fuse))
}

/// The fuse module's own options (what fusermount3 would pass).
fn kernel_options(fd: i32, config: &MountConfig) -> String {
    // SAFETY: getuid and getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut o = format!(
        "fd={fd},rootmode=40000,user_id={uid},group_id={gid},blksize=4096,default_permissions,subtype={}",
        config.subtype
    );
    // allow_root is enforced by the session; the kernel must let others in.
    if config.access != AccessPolicy::Owner {
        o.push_str(",allow_other");
    }
    o
}

fn mount_flags(config: &MountConfig) -> libc::c_ulong {
    let mut f = 0;
    for (on, flag) in [
        (!config.dev, libc::MS_NODEV),
        (!config.suid, libc::MS_NOSUID),
        (!config.exec, libc::MS_NOEXEC),
        (config.read_only, libc::MS_RDONLY),
        (config.noatime, libc::MS_NOATIME),
    ] {
        if on {
            f |= flag;
        }
    }
    f
}
