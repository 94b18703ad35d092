//! The daemon's side of [`crate::control`]: which ioctls it serves and
//! who may send them. Anything else is ENOTTY, as for a filesystem that
//! does not know the command.

use aegis_vfs::FileSystem;
use fuser::Errno;

use super::reply::errno;
use crate::control::{AEGIS_IOC_SET_WRITABLE, FS_IOC_SHUTDOWN};

/// Serve one ioctl from `uid` with the bytes the kernel copied in.
pub(super) fn serve(fs: &dyn FileSystem, uid: u32, cmd: u32, in_data: &[u8]) -> Result<(), Errno> {
    match cmd {
        FS_IOC_SHUTDOWN | AEGIS_IOC_SET_WRITABLE if uid != 0 => Err(Errno::EPERM),
        FS_IOC_SHUTDOWN => {
            tracing::warn!("shut down by FS_IOC_SHUTDOWN: nothing more is written");
            fs.shutdown().map_err(|e| errno(&e))
        }
        AEGIS_IOC_SET_WRITABLE => {
            let Ok(word) = <[u8; 4]>::try_from(in_data) else {
                return Err(Errno::EINVAL);
            };
            match u32::from_ne_bytes(word) {
                0 => fs.set_writable(false),
                1 => fs.set_writable(true),
                _ => return Err(Errno::EINVAL),
            }
            .map_err(|e| errno(&e))
        }
        _ => Err(Errno::ENOTTY),
    }
}
