//! A loop device for an image file, so that it can be mounted as
//! `fuseblk` (`-o fuseblk`): the kernel sends `syncfs` and waits at umount
//! only for servers whose source is a block device.
//!
//! The device is configured with LO_FLAGS_AUTOCLEAR: it detaches itself
//! when its last user closes it, which is the mount once it holds it (or
//! this process, if the mount failed), so nothing is left attached after
//! a crash or an unmount.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// linux/loop.h
const LOOP_CTL_GET_FREE: libc::Ioctl = 0x4C82;
const LOOP_CONFIGURE: libc::Ioctl = 0x4C0A;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
/// Tries when another process takes the free device first.
const ATTACH_TRIES: usize = 8;

/// `struct loop_info64`.
#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

/// `struct loop_config`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// An attached loop device; dropping it closes this process's hold.
pub struct LoopDevice {
    pub path: PathBuf,
    _file: File,
}

/// Attach `image` to a free loop device.
pub fn attach(image: &Path, read_only: bool) -> io::Result<LoopDevice> {
    let img = OpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(image)?;
    let ctl = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")?;
    let mut last = io::Error::from(io::ErrorKind::NotFound);
    for _ in 0..ATTACH_TRIES {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let dev = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(&path)?;
        match configure(&dev, &img, image, read_only) {
            Ok(()) => return Ok(LoopDevice { path, _file: dev }),
            // Taken by someone else between GET_FREE and CONFIGURE.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

fn configure(dev: &File, img: &File, image: &Path, read_only: bool) -> io::Result<()> {
    // SAFETY: plain data; all-zero is the kernel's "no setting".
    let mut cfg: LoopConfig = unsafe { std::mem::zeroed() };
    cfg.fd = img.as_raw_fd() as u32;
    cfg.info.flags = LO_FLAGS_AUTOCLEAR | if read_only { LO_FLAGS_READ_ONLY } else { 0 };
    let name = image.as_os_str().as_bytes();
    let n = name.len().min(cfg.info.file_name.len() - 1);
    cfg.info.file_name[..n].copy_from_slice(&name[..n]);
    // SAFETY: `cfg` is a valid loop_config for the call.
    if unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, &cfg) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
