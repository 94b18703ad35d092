//! The daemon's side of [`crate::control`]: which ioctls it serves and
//! who may send them. Anything else is ENOTTY, as for a filesystem that
//! does not know the command.

use aegis_vfs::FileSystem;
use fuser::Errno;

use super::reply::errno;
use crate::control::{
    decode_command, encode_reply, AEGIS_IOC_COMMAND, AEGIS_IOC_GET_FIXED_OPTIONS,
    AEGIS_IOC_SET_WRITABLE, FIXED_OPTIONS_MAX, FS_IOC_SHUTDOWN,
};

/// Serve one ioctl from `uid` with the bytes the kernel copied in; returns
/// the bytes to copy out. `fixed` is what AEGIS_IOC_GET_FIXED_OPTIONS
/// answers.
pub(super) fn serve(
    fs: &dyn FileSystem,
    fixed: &str,
    uid: u32,
    cmd: u32,
    in_data: &[u8],
) -> Result<Vec<u8>, Errno> {
    match cmd {
        FS_IOC_SHUTDOWN
        | AEGIS_IOC_SET_WRITABLE
        | AEGIS_IOC_GET_FIXED_OPTIONS
        | AEGIS_IOC_COMMAND
            if uid != 0 =>
        {
            Err(Errno::EPERM)
        }
        AEGIS_IOC_COMMAND => Ok(command(fs, in_data)),
        AEGIS_IOC_GET_FIXED_OPTIONS => {
            let mut out = fixed.as_bytes().to_vec();
            out.truncate(FIXED_OPTIONS_MAX - 1);
            out.push(0);
            Ok(out)
        }
        FS_IOC_SHUTDOWN => {
            tracing::warn!("shut down by FS_IOC_SHUTDOWN: nothing more is written");
            fs.shutdown().map(|()| Vec::new()).map_err(|e| errno(&e))
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
            .map(|()| Vec::new())
            .map_err(|e| errno(&e))
        }
        _ => Err(Errno::ENOTTY),
    }
}

/// A live command: its words, the filesystem's answer, the reply buffer
/// (a refusal travels in the reply, with its message).
fn command(fs: &dyn FileSystem, in_data: &[u8]) -> Vec<u8> {
    let words = match decode_command(in_data) {
        Ok(w) => w,
        Err(errno) => return encode_reply(errno, "a malformed command"),
    };
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    tracing::info!(command = ?words, "live command");
    match fs.control(&words) {
        Ok(text) => encode_reply(0, &text),
        Err(e) => encode_reply(e.errno, &e.message),
    }
}
