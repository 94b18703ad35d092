//! [`FileDevice`]: a pool stored in an image file or on a raw block device.
//!
//! Invariants:
//! - the size is read once at open (file length, or `BLKGETSIZE64` for a block
//!   device) and never changes afterwards; every access is checked against it,
//!   so a file shrunk behind our back shows up as an I/O error, not zeroes;
//! - reads and writes are positional (`pread`/`pwrite`), so the device holds
//!   no cursor and is safe to share between threads;
//! - `flush` is `fdatasync`: data and the metadata needed to read it back;
//! - large aligned writes of a writable device go past the host's page
//!   cache (`direct_write.rs`), the rest through it;
//! - `discard` is only a hint: when the filesystem or device cannot do it,
//!   it succeeds without doing anything;
//! - the image lock taken with [`FileDevice::lock_exclusive`] lasts as long
//!   as the device (it belongs to the open file description).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::direct_write::DirectWriter;
use crate::{check_range, check_range_u64, BlockDevice, BlockError, Result};

/// `BLKGETSIZE64` from `<linux/fs.h>`: `_IOR(0x12, 114, size_t)`.
const BLKGETSIZE64: libc::Ioctl = libc::_IOR::<libc::size_t>(0x12, 114);
/// `BLKDISCARD` from `<linux/fs.h>`: `_IO(0x12, 119)`, takes `u64[2]`.
const BLKDISCARD: libc::Ioctl = libc::_IO(0x12, 119);

/// How to open an existing device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    ReadOnly,
    ReadWrite,
}

/// An image file or a raw block device.
pub struct FileDevice {
    file: File,
    path: PathBuf,
    size: u64,
    block_device: bool,
    /// Logical sector size of a block device; `BLKDISCARD` rejects ranges
    /// not aligned to it. 1 for regular files (any range can be punched).
    discard_align: u64,
    /// `O_DIRECT` descriptor for large writes; `None` when read-only or
    /// refused by the filesystem.
    direct: Option<DirectWriter>,
}

impl FileDevice {
    /// Open an existing image file or block device.
    pub fn open(path: &Path, mode: OpenMode) -> Result<FileDevice> {
        let file = OpenOptions::new()
            .read(true)
            .write(mode == OpenMode::ReadWrite)
            .open(path)
            .map_err(|e| io_err(path, e))?;
        let direct = match mode {
            OpenMode::ReadWrite => DirectWriter::open(path),
            OpenMode::ReadOnly => None,
        };
        // Metadata of the open handle, not of the path, so a rename between
        // open and stat cannot make us size a different file.
        let meta = file.metadata().map_err(|e| io_err(path, e))?;
        let ftype = meta.file_type();
        if ftype.is_file() {
            Ok(FileDevice {
                file,
                path: path.to_path_buf(),
                size: meta.len(),
                block_device: false,
                discard_align: 1,
                direct,
            })
        } else if ftype.is_block_device() {
            let size = block_device_size(&file).map_err(|e| io_err(path, e))?;
            let sector = logical_sector_size(&file).map_err(|e| io_err(path, e))?;
            Ok(FileDevice {
                file,
                path: path.to_path_buf(),
                size,
                block_device: true,
                discard_align: sector,
                direct,
            })
        } else {
            Err(BlockError::Invalid(format!(
                "{} is neither a regular file nor a block device",
                path.display()
            )))
        }
    }

    /// Create a new sparse image file of `size` bytes. Fails if `path` exists,
    /// so an existing pool or unrelated file is never overwritten.
    pub fn create(path: &Path, size: u64) -> Result<FileDevice> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| io_err(path, e))?;
        if let Err(e) = file.set_len(size) {
            // We created the file a moment ago, so removing it only undoes our
            // own half-done work; the removal error is secondary to `e`.
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(io_err(path, e));
        }
        Ok(FileDevice {
            file,
            path: path.to_path_buf(),
            size,
            block_device: false,
            discard_align: 1,
            direct: DirectWriter::open(path),
        })
    }

    /// Whether this is a raw block device rather than an image file.
    pub fn is_block_device(&self) -> bool {
        self.block_device
    }

    /// The path the device was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Take the image lock, so two processes never run a pool on the same
    /// device at once: refused when another process uses the device,
    /// waited for (bounded) when that process is only closing it (see
    /// `image_lock`). The lock is released when this `FileDevice` is
    /// dropped.
    pub fn lock_exclusive(&self) -> Result<()> {
        crate::image_lock::take(&self.file, &self.path)
    }

    /// Tell the next opener that this process only commits and closes the
    /// device now, so it waits instead of being refused.
    pub fn mark_closing(&self) -> Result<()> {
        crate::image_lock::mark_closing(&self.file, &self.path)
    }

    fn io(&self, e: std::io::Error) -> BlockError {
        io_err(&self.path, e)
    }

    fn punch_hole(&self, offset: u64, len: u64) -> std::io::Result<()> {
        let (off, len) = match (i64::try_from(offset), i64::try_from(len)) {
            (Ok(o), Ok(l)) => (o, l),
            // Past what off_t can express; the range check makes this
            // unreachable for real files, and discard is only a hint anyway.
            _ => return Ok(()),
        };
        // SAFETY: plain syscall on a descriptor we own; no pointers involved.
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                off,
                len,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    fn blk_discard(&self, offset: u64, len: u64) -> std::io::Result<()> {
        // The kernel rejects unaligned ranges with EINVAL; shrink the range
        // inward to whole sectors, since discarding less than asked is allowed.
        let align = self.discard_align.max(1);
        let start = offset.div_ceil(align) * align;
        let end = (offset + len) / align * align;
        if end <= start {
            return Ok(());
        }
        let range: [u64; 2] = [start, end - start];
        // SAFETY: BLKDISCARD reads a `u64[2]` through the pointer; `range`
        // lives across the call.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), BLKDISCARD, range.as_ptr()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

impl BlockDevice for FileDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(offset, buf.len(), self.size)?;
        // read_exact_at turns EOF into UnexpectedEof: a file shorter than the
        // size we recorded is corruption to report, not zeroes to invent.
        self.file.read_exact_at(buf, offset).map_err(|e| self.io(e))
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        check_range(offset, buf.len(), self.size)?;
        if let Some(d) = &self.direct {
            if d.write(buf, offset).map_err(|e| self.io(e))? {
                return Ok(());
            }
        }
        self.file.write_all_at(buf, offset).map_err(|e| self.io(e))
    }

    fn flush(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| self.io(e))
    }

    fn write_durable(&self, buf: &[u8], offset: u64) -> Result<()> {
        check_range(offset, buf.len(), self.size)?;
        let mut done = 0usize;
        while done < buf.len() {
            let iov = libc::iovec {
                iov_base: buf[done..].as_ptr() as *mut libc::c_void,
                iov_len: buf.len() - done,
            };
            // SAFETY: one iovec over a live slice; the descriptor is ours.
            // RWF_DSYNC makes just this write durable (its pages, the
            // metadata needed to read them, and a cache flush).
            let n = unsafe {
                libc::pwritev2(
                    self.file.as_raw_fd(),
                    &iov,
                    1,
                    (offset + done as u64) as libc::off_t,
                    libc::RWF_DSYNC,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // Kernels without pwritev2/RWF_DSYNC: write, then flush all.
                    Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)
                        if done == 0 =>
                    {
                        self.write_at(buf, offset)?;
                        return self.flush();
                    }
                    _ => return Err(self.io(e)),
                }
            }
            if n == 0 {
                return Err(self.io(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "short durable write",
                )));
            }
            done += n as usize;
        }
        Ok(())
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        check_range_u64(offset, len, self.size)?;
        if len == 0 {
            return Ok(());
        }
        let res = if self.block_device {
            self.blk_discard(offset, len)
        } else {
            self.punch_hole(offset, len)
        };
        match res {
            Ok(()) => Ok(()),
            // Discard is a hint: a filesystem or device that cannot do it
            // leaves the old bytes, which callers must tolerate anyway.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP) | Some(libc::ENOTTY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(self.io(e)),
        }
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn name(&self) -> String {
        self.path.display().to_string()
    }
}

impl fmt::Debug for FileDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileDevice")
            .field("path", &self.path)
            .field("size", &self.size)
            .field("block_device", &self.block_device)
            .finish()
    }
}

fn io_err(path: &Path, e: std::io::Error) -> BlockError {
    BlockError::io(path.display().to_string(), e)
}

fn block_device_size(file: &File) -> std::io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points
    // at a live local.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size as *mut u64) };
    if rc == 0 {
        Ok(size)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn logical_sector_size(file: &File) -> std::io::Result<u64> {
    let mut sector: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer, which points at a
    // live local.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            libc::BLKSSZGET,
            &mut sector as *mut libc::c_int,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // A nonsensical answer falls back to the classic sector size rather than
    // making every discard fail.
    Ok(u64::try_from(sector).ok().filter(|&s| s > 0).unwrap_or(512))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    #[test]
    fn create_write_read_flush_reopen() {
        let dir = tmp();
        let path = dir.path().join("pool.img");
        let dev = FileDevice::create(&path, 1 << 20).unwrap();
        assert_eq!(dev.size(), 1 << 20);
        assert!(!dev.is_block_device());
        assert_eq!(dev.path(), path.as_path());
        assert_eq!(dev.name(), path.display().to_string());

        let data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        dev.write_at(&data, 4096).unwrap();
        dev.flush().unwrap();
        let mut back = vec![0u8; data.len()];
        dev.read_at(&mut back, 4096).unwrap();
        assert_eq!(back, data);

        // Untouched space of a fresh sparse file reads as zeroes.
        let mut zero = vec![0xffu8; 4096];
        dev.read_at(&mut zero, 0).unwrap();
        assert!(zero.iter().all(|&b| b == 0));
        drop(dev);

        let dev = FileDevice::open(&path, OpenMode::ReadOnly).unwrap();
        assert_eq!(dev.size(), 1 << 20);
        let mut back = vec![0u8; data.len()];
        dev.read_at(&mut back, 4096).unwrap();
        assert_eq!(back, data);
        // A read-only device refuses writes with an error naming the path.
        let err = dev.write_at(&[1], 0).unwrap_err();
        assert!(err.to_string().contains("pool.img"), "{err}");
    }

    #[test]
    fn create_refuses_existing_file() {
        let dir = tmp();
        let path = dir.path().join("pool.img");
        FileDevice::create(&path, 4096).unwrap();
        let err = FileDevice::create(&path, 4096).unwrap_err();
        assert!(err.to_string().contains("pool.img"), "{err}");
    }

    #[test]
    fn open_missing_names_path() {
        let dir = tmp();
        let path = dir.path().join("missing.img");
        let err = FileDevice::open(&path, OpenMode::ReadWrite).unwrap_err();
        assert!(err.to_string().contains("missing.img"), "{err}");
    }

    #[test]
    fn open_directory_is_invalid() {
        let dir = tmp();
        let err = FileDevice::open(dir.path(), OpenMode::ReadOnly).unwrap_err();
        assert!(matches!(err, BlockError::Invalid(_)), "{err}");
    }

    #[test]
    fn out_of_range() {
        let dir = tmp();
        let dev = FileDevice::create(&dir.path().join("a.img"), 8192).unwrap();
        let mut buf = [0u8; 16];
        assert!(matches!(
            dev.read_at(&mut buf, 8190),
            Err(BlockError::OutOfRange { .. })
        ));
        assert!(matches!(
            dev.write_at(&buf, 8190),
            Err(BlockError::OutOfRange { .. })
        ));
        assert!(matches!(
            dev.read_at(&mut buf, u64::MAX),
            Err(BlockError::OutOfRange { .. })
        ));
        assert!(matches!(
            dev.discard(4096, 8192),
            Err(BlockError::OutOfRange { .. })
        ));
        assert!(matches!(
            dev.discard(u64::MAX, 2),
            Err(BlockError::OutOfRange { .. })
        ));
        // The last byte and an empty access at the end are fine.
        dev.write_at(&[7], 8191).unwrap();
        dev.read_at(&mut [], 8192).unwrap();
    }

    #[test]
    fn discard_punches_hole() {
        let dir = tmp();
        let dev = FileDevice::create(&dir.path().join("a.img"), 64 * 1024).unwrap();
        dev.write_at(&vec![0xabu8; 64 * 1024], 0).unwrap();
        dev.discard(0, 0).unwrap();
        dev.discard(8192, 16384).unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        dev.read_at(&mut buf, 0).unwrap();
        assert!(buf[..8192].iter().all(|&b| b == 0xab));
        assert!(buf[8192 + 16384..].iter().all(|&b| b == 0xab));
        assert_eq!(
            std::fs::metadata(dev.path()).unwrap().len(),
            64 * 1024,
            "KEEP_SIZE"
        );

        // discard() hides EOPNOTSUPP; ask fallocate directly whether this
        // filesystem punches holes before insisting on zeroes.
        match dev.punch_hole(8192, 16384) {
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                eprintln!("tempdir filesystem cannot punch holes; zero check skipped");
                assert!(buf[8192..8192 + 16384].iter().all(|&b| b == 0xab));
            }
            res => {
                res.unwrap();
                assert!(buf[8192..8192 + 16384].iter().all(|&b| b == 0));
            }
        }
    }

    #[test]
    fn short_file_read_is_error_not_zero_fill() {
        let dir = tmp();
        let path = dir.path().join("a.img");
        let dev = FileDevice::create(&path, 8192).unwrap();
        // Shrink the file behind the device's back: the recorded size stays.
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(4096)
            .unwrap();
        let mut buf = [0u8; 4096];
        let err = dev.read_at(&mut buf, 4096).unwrap_err();
        assert!(matches!(err, BlockError::Io { .. }), "{err}");
    }

    #[test]
    fn lock_is_exclusive() {
        let dir = tmp();
        let path = dir.path().join("a.img");
        let a = FileDevice::create(&path, 4096).unwrap();
        a.lock_exclusive().unwrap();
        let b = FileDevice::open(&path, OpenMode::ReadWrite).unwrap();
        let err = b.lock_exclusive().unwrap_err();
        match &err {
            BlockError::Invalid(msg) => {
                assert!(msg.contains("in use by another process"), "{msg}");
                assert!(msg.contains("a.img"), "{msg}");
            }
            other => panic!("unexpected error {other}"),
        }
        // The lock dies with its device.
        drop(a);
        b.lock_exclusive().unwrap();
    }

    #[test]
    fn a_closing_holder_is_waited_for() {
        let dir = tmp();
        let path = dir.path().join("a.img");
        let a = FileDevice::create(&path, 4096).unwrap();
        a.lock_exclusive().unwrap();
        a.mark_closing().unwrap();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(a);
        });
        let b = FileDevice::open(&path, OpenMode::ReadOnly).unwrap();
        let start = std::time::Instant::now();
        b.lock_exclusive().unwrap();
        assert!(start.elapsed() >= std::time::Duration::from_millis(250));
        closer.join().unwrap();
        // b is now the active holder: a third opener is refused.
        let c = FileDevice::open(&path, OpenMode::ReadOnly).unwrap();
        assert!(c.lock_exclusive().is_err());
    }
}
