//! File contents through open handles: open, read, write, fallocate,
//! lseek and copy_file_range. [`file`](super::file) keeps the chunks;
//! this file decides who may touch them and pays for them.
//!
//! Rules kept here: a handle is checked against the inode it was opened on
//! and for the access it was opened with (EBADF otherwise); space is
//! checked before chunks are added, so a write or fallocate that fails with
//! ENOSPC leaves the file as it was (copy_file_range checks piece by piece
//! and may stop part way); every change of chunks goes through
//! [`State::with_file`] so the byte count stays exact; a change of size or
//! contents sets mtime and ctime, a read only atime (relatime).

use std::time::SystemTime;

use super::{Handle, RamFs, State, CHUNK};
use crate::error::{FsError, Result};
use crate::types::*;
use crate::validate::{check_range, check_shift, fallocate_mode, Falloc};

impl State {
    pub(super) fn open(&mut self, ino: Ino, flags: i32) -> Result<Fh> {
        let inode = self.get(ino)?;
        let acc = flags & libc::O_ACCMODE;
        let read = acc == libc::O_RDONLY || acc == libc::O_RDWR;
        let write = acc == libc::O_WRONLY || acc == libc::O_RDWR;
        match inode.kind {
            FileType::Directory if write => return Err(FsError::IsDir),
            FileType::Symlink => return Err(FsError::Loop),
            _ => {}
        }
        if write && flags & libc::O_TRUNC != 0 && inode.kind == FileType::RegularFile {
            self.with_file(ino, |f| f.truncate(0))?;
            self.inode(ino).touch_modified(SystemTime::now());
        }
        Ok(self.new_handle(Handle {
            ino,
            dir: false,
            read,
            write,
            append: flags & libc::O_APPEND != 0,
            dir_end: 0,
        }))
    }

    fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<()> {
        let end = check_range(offset, data.len() as u64)?;
        let needed = self
            .regular(ino)?
            .file()
            .expect("file")
            .chunks_needed(offset, end);
        self.check_space(needed * CHUNK)?;
        self.with_file(ino, |f| f.write(offset, data))?;
        Ok(())
    }

    /// Copy `n` bytes from `ino_in` to `ino_out` (handles and range already
    /// checked), one destination chunk at a time; all-zero source pieces
    /// become holes.
    fn copy_pieces(
        &mut self,
        ino_in: Ino,
        offset_in: u64,
        ino_out: Ino,
        offset_out: u64,
        n: u64,
    ) -> Result<()> {
        let mut done = 0u64;
        while done < n {
            let piece = (n - done).min(CHUNK - (offset_out + done) % CHUNK);
            let buf = self
                .inode(ino_in)
                .file()
                .expect("file")
                .read(offset_in + done, piece as u32);
            let at = offset_out + done;
            if buf.iter().all(|&b| b == 0) {
                self.with_file(ino_out, |f| {
                    f.punch(at, at + piece);
                    f.size = f.size.max(at + piece);
                })?;
            } else {
                self.write(ino_out, at, &buf)?;
            }
            done += piece;
        }
        Ok(())
    }
}

impl RamFs {
    pub(crate) fn read_at(&self, ino: Ino, fh: Fh, offset: u64, size: u32) -> Result<Vec<u8>> {
        let mut st = self.state.lock();
        let h = st.handle(ino, fh)?;
        st.regular(ino)?;
        if !h.read {
            return Err(FsError::BadHandle);
        }
        let inode = st.inode(ino);
        let out = inode.file().expect("file").read(offset, size);
        inode.touch_read(SystemTime::now());
        Ok(out)
    }

    pub(crate) fn write_at(&self, ino: Ino, fh: Fh, offset: u64, data: &[u8]) -> Result<u32> {
        let len =
            u32::try_from(data.len()).map_err(|_| FsError::InvalidArgument("write over 4 GiB"))?;
        let mut st = self.state.lock();
        let h = st.handle(ino, fh)?;
        let size = st.regular(ino)?.file().expect("file").size;
        if !h.write {
            return Err(FsError::BadHandle);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let offset = if h.append { size } else { offset };
        st.write(ino, offset, data)?;
        st.inode(ino).touch_modified(SystemTime::now());
        Ok(len)
    }

    /// fallocate(2): allocate (mode 0, or KEEP_SIZE), punch a hole, zero
    /// a range (allocated afterwards), or collapse or insert whole chunks.
    pub(crate) fn allocate(
        &self,
        ino: Ino,
        fh: Fh,
        offset: u64,
        length: u64,
        mode: i32,
    ) -> Result<()> {
        let mut st = self.state.lock();
        let h = st.handle(ino, fh)?;
        st.regular(ino)?;
        if !h.write {
            return Err(FsError::BadHandle);
        }
        let (op, end) = fallocate_mode(mode, offset, length)?;
        let file = st.get(ino)?.file().expect("file");
        let before = file.size;
        match op {
            Falloc::Allocate { .. } | Falloc::Zero { .. } => {
                // Zeroing keeps the chunks it covers, so both need only
                // the missing ones.
                st.check_space(file.chunks_needed(offset, end) * CHUNK)?
            }
            Falloc::Collapse | Falloc::Insert => check_shift(op, offset, length, file.size, CHUNK)?,
            Falloc::Punch => {}
        }
        st.with_file(ino, |f| match op {
            Falloc::Allocate { keep_size } => f.allocate(offset, end, keep_size),
            Falloc::Zero { keep_size } => {
                f.punch(offset, end);
                f.allocate(offset, end, keep_size);
            }
            Falloc::Punch => f.punch(offset, end),
            Falloc::Collapse => f.collapse(offset, length),
            Falloc::Insert => f.insert(offset, length),
        })?;
        let after = st.get(ino)?.file().expect("file").size;
        // A reservation alone leaves the times, as ext4 does.
        if !matches!(op, Falloc::Allocate { .. }) || after != before {
            st.inode(ino).touch_modified(SystemTime::now());
        }
        Ok(())
    }

    pub(crate) fn seek(&self, ino: Ino, fh: Fh, offset: i64, whence: Whence) -> Result<u64> {
        let st = self.state.lock();
        st.handle(ino, fh)?;
        let file = st.regular(ino)?.file().expect("file");
        let neg = FsError::InvalidArgument("negative offset");
        match whence {
            Whence::Set => u64::try_from(offset).map_err(|_| neg),
            Whence::End => {
                let pos = (file.size as i128) + offset as i128;
                u64::try_from(pos).map_err(|_| neg)
            }
            Whence::Data | Whence::Hole => {
                let off = u64::try_from(offset).map_err(|_| FsError::NoSuchOffset)?;
                if whence == Whence::Data {
                    file.seek_data(off)
                } else {
                    file.seek_hole(off)
                }
            }
        }
    }

    /// copy_file_range(2) between two handles: checks, then the copy.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn copy_range(
        &self,
        ino_in: Ino,
        fh_in: Fh,
        offset_in: u64,
        ino_out: Ino,
        fh_out: Fh,
        offset_out: u64,
        len: u64,
        flags: u32,
    ) -> Result<u64> {
        if flags != 0 {
            return Err(FsError::InvalidArgument("copy_file_range flags"));
        }
        let mut st = self.state.lock();
        let (hi, ho) = (st.handle(ino_in, fh_in)?, st.handle(ino_out, fh_out)?);
        let size_in = st.regular(ino_in)?.file().expect("file").size;
        st.regular(ino_out)?;
        if !hi.read || !ho.write || ho.append {
            return Err(FsError::BadHandle);
        }
        let n = len.min(size_in.saturating_sub(offset_in));
        check_range(offset_in, len)?;
        check_range(offset_out, n)?;
        if ino_in == ino_out
            && offset_in < offset_out.saturating_add(len)
            && offset_out < offset_in.saturating_add(len)
        {
            return Err(FsError::InvalidArgument(
                "overlapping copy_file_range in one file",
            ));
        }
        if n == 0 {
            return Ok(0);
        }
        st.copy_pieces(ino_in, offset_in, ino_out, offset_out, n)?;
        let now = SystemTime::now();
        st.inode(ino_in).touch_read(now);
        st.inode(ino_out).touch_modified(now);
        Ok(n)
    }
}
