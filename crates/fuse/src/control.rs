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
//! - [`AEGIS_IOC_COMMAND`]: the one channel for every live command of
//!   the CLI (`snapshot create MOUNTPOINT@NAME` and those to come), so
//!   a new command needs no new ioctl. The kernel copies
//!   [`COMMAND_MAX`] bytes each way. Request: u32 version (1) · u32
//!   length · the command's words, UTF-8, each ended by NUL. Reply: u32
//!   version (1) · i32 errno (0: done) · u32 length · UTF-8 text (the
//!   answer, or what was wrong). Numbers little-endian. A request of
//!   another version is refused with EPROTO, so an older daemon tells a
//!   newer CLI so instead of misreading it.

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

/// `_IOWR(0xEA, 3, char[4096])`: a live command and its reply.
pub const AEGIS_IOC_COMMAND: u32 = 0xd000_ea03;
/// Size of the [`AEGIS_IOC_COMMAND`] buffer, each way.
pub const COMMAND_MAX: usize = 4096;
const COMMAND_VERSION: u32 = 1;
const HEADER: usize = 8;
const REPLY_HEADER: usize = 12;

/// The request buffer of `words`; `None` if they do not fit or hold NUL.
pub fn encode_command(words: &[&str]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    for w in words {
        if w.contains('\0') {
            return None;
        }
        body.extend_from_slice(w.as_bytes());
        body.push(0);
    }
    if HEADER + body.len() > COMMAND_MAX {
        return None;
    }
    let mut buf = vec![0u8; COMMAND_MAX];
    buf[..4].copy_from_slice(&COMMAND_VERSION.to_le_bytes());
    buf[4..8].copy_from_slice(&(body.len() as u32).to_le_bytes());
    buf[HEADER..HEADER + body.len()].copy_from_slice(&body);
    Some(buf)
}

/// The words of a request buffer, checked: Err(errno) if malformed.
pub fn decode_command(buf: &[u8]) -> Result<Vec<String>, i32> {
    if buf.len() < HEADER {
        return Err(libc::EINVAL);
    }
    if u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) != COMMAND_VERSION {
        return Err(libc::EPROTO);
    }
    let len = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes")) as usize;
    let body = buf.get(HEADER..HEADER + len).ok_or(libc::EINVAL)?;
    let text = std::str::from_utf8(body).map_err(|_| libc::EINVAL)?;
    let Some(text) = text.strip_suffix('\0') else {
        return Err(libc::EINVAL);
    };
    Ok(text.split('\0').map(str::to_string).collect())
}

/// The reply buffer: `errno` (0: done) and `text`, cut to fit.
pub fn encode_reply(errno: i32, text: &str) -> Vec<u8> {
    let mut text = text.as_bytes();
    if text.len() > COMMAND_MAX - REPLY_HEADER {
        let mut end = COMMAND_MAX - REPLY_HEADER;
        while std::str::from_utf8(&text[..end]).is_err() {
            end -= 1;
        }
        text = &text[..end];
    }
    let mut buf = Vec::with_capacity(REPLY_HEADER + text.len());
    buf.extend_from_slice(&COMMAND_VERSION.to_le_bytes());
    buf.extend_from_slice(&errno.to_le_bytes());
    buf.extend_from_slice(&(text.len() as u32).to_le_bytes());
    buf.extend_from_slice(text);
    buf
}

fn decode_reply(buf: &[u8]) -> io::Result<Result<String, (i32, String)>> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "a malformed reply from the daemon",
        )
    };
    if buf.len() < REPLY_HEADER
        || u32::from_le_bytes(buf[..4].try_into().expect("4")) != COMMAND_VERSION
    {
        return Err(bad());
    }
    let errno = i32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    let len = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes")) as usize;
    let text = buf.get(REPLY_HEADER..REPLY_HEADER + len).ok_or_else(bad)?;
    let text = String::from_utf8_lossy(text).into_owned();
    Ok(if errno == 0 {
        Ok(text)
    } else {
        Err((errno, text))
    })
}

/// Send `words` to the daemon of `mountpoint`: its reply text, or the
/// errno and message it refused with (`Err` of the outer result: the
/// ioctl itself failed, e.g. ENOTTY from a filesystem that is not
/// AegisFS).
pub fn command(mountpoint: &Path, words: &[&str]) -> io::Result<Result<String, (i32, String)>> {
    let mut buf = encode_command(words)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the command is too long"))?;
    ioctl_on(mountpoint, AEGIS_IOC_COMMAND, buf.as_mut_ptr())?;
    decode_reply(&buf)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_replies_round_trip_and_bad_ones_are_refused() {
        let buf = encode_command(&["snapshot", "create", "a b"]).unwrap();
        assert_eq!(buf.len(), COMMAND_MAX);
        assert_eq!(decode_command(&buf).unwrap(), ["snapshot", "create", "a b"]);
        assert!(encode_command(&["x\0y"]).is_none());
        assert!(encode_command(&[&"n".repeat(COMMAND_MAX)]).is_none());
        let mut other = buf.clone();
        other[0] = 2;
        assert_eq!(decode_command(&other), Err(libc::EPROTO));
        let mut long = buf.clone();
        long[4..8].copy_from_slice(&(COMMAND_MAX as u32).to_le_bytes());
        assert_eq!(decode_command(&long), Err(libc::EINVAL));
        let reply = encode_reply(libc::EEXIST, "exists already");
        assert_eq!(
            decode_reply(&reply).unwrap(),
            Err((libc::EEXIST, "exists already".into()))
        );
        let big = encode_reply(0, &"é".repeat(COMMAND_MAX));
        assert!(big.len() <= COMMAND_MAX);
        assert!(decode_reply(&big).unwrap().is_ok());
    }
}
