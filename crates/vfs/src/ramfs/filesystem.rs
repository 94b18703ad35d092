//! The [`FileSystem`] trait for [`RamFs`], call by call. A trait impl is
//! one block, so it lives here whole: the short calls in full, the longer
//! ones as one line into the file of their concern.
//!
//! Every call takes the state lock once and holds it until it returns, so
//! no caller sees an operation half done. The lock is not reentrant: a
//! helper that locks (an `impl RamFs` method) works on the locked
//! [`State`](super::State) only and never calls another locking method.

use std::ffi::OsStr;

use super::dir::Dir;
use super::inode::Data;
use super::{bytes, Handle, RamFs, CHUNK};
use crate::acl;
use crate::error::{FsError, Result};
use crate::filesystem::FileSystem;
use crate::types::*;
use crate::validate::{check_access, check_name, check_xattr_name, xattr_reply};

impl FileSystem for RamFs {
    fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr> {
        let name = bytes(name);
        check_name(name)?;
        let mut st = self.state.lock();
        let ino = if name == b"." {
            // Any inode that still has a name: the kernel resolves file
            // handles this way (FUSE export support).
            if st.get(parent)?.attr().nlink == 0 {
                return Err(FsError::NotFound);
            }
            parent
        } else {
            let dir = st.dir(parent)?;
            match name {
                b".." => dir.parent,
                _ => dir.get(name).ok_or(FsError::NotFound)?,
            }
        };
        let inode = st.get_mut(ino)?;
        inode.lookups += 1;
        Ok(inode.attr())
    }

    fn forget(&self, ino: Ino, nlookup: u64) {
        let mut st = self.state.lock();
        if let Some(inode) = st.inodes.get_mut(&ino) {
            inode.lookups = inode.lookups.saturating_sub(nlookup);
            st.maybe_free(ino);
        }
    }

    fn getattr(&self, ino: Ino) -> Result<Attr> {
        Ok(self.state.lock().get(ino)?.attr())
    }

    fn setattr(&self, req: &Request, ino: Ino, set: &SetAttr, fh: Option<Fh>) -> Result<Attr> {
        self.set_attr(req, ino, set, fh)
    }

    fn mknod(
        &self,
        req: &Request,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        rdev: u64,
    ) -> Result<Attr> {
        self.make_node(req, parent, name, mode, rdev)
    }

    fn mkdir(&self, req: &Request, parent: Ino, name: &OsStr, mode: u32) -> Result<Attr> {
        let data = Data::Dir(Dir::new(parent));
        self.state
            .lock()
            .create_node(req, parent, bytes(name), FileType::Directory, mode, 0, data)
    }

    fn unlink(&self, parent: Ino, name: &OsStr) -> Result<()> {
        self.unlink_entry(parent, name)
    }

    fn rmdir(&self, parent: Ino, name: &OsStr) -> Result<()> {
        self.rmdir_entry(parent, name)
    }

    fn symlink(&self, req: &Request, parent: Ino, name: &OsStr, target: &OsStr) -> Result<Attr> {
        self.make_symlink(req, parent, name, target)
    }

    fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        match &self.state.lock().get(ino)?.data {
            Data::Symlink(t) => Ok(t.clone()),
            _ => Err(FsError::InvalidArgument("not a symlink")),
        }
    }

    fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
    ) -> Result<()> {
        self.rename_entry(parent, name, newparent, newname, flags)
    }

    fn link(&self, ino: Ino, newparent: Ino, newname: &OsStr) -> Result<Attr> {
        self.link_entry(ino, newparent, newname)
    }

    fn open(&self, ino: Ino, flags: i32) -> Result<Fh> {
        self.state.lock().open(ino, flags)
    }

    fn create(
        &self,
        req: &Request,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<(Attr, Fh)> {
        self.create_file(req, parent, name, mode, flags)
    }

    fn read(&self, ino: Ino, fh: Fh, offset: u64, size: u32) -> Result<Vec<u8>> {
        self.read_at(ino, fh, offset, size)
    }

    fn write(&self, ino: Ino, fh: Fh, offset: u64, data: &[u8]) -> Result<u32> {
        self.write_at(ino, fh, offset, data)
    }

    fn flush(&self, ino: Ino, fh: Fh) -> Result<()> {
        self.state.lock().handle(ino, fh).map(|_| ())
    }

    fn release(&self, ino: Ino, fh: Fh) -> Result<()> {
        let mut st = self.state.lock();
        st.handle(ino, fh)?;
        st.handles.remove(&fh);
        st.inode(ino).opens -= 1;
        st.maybe_free(ino);
        Ok(())
    }

    fn fsync(&self, ino: Ino, fh: Fh, _datasync: bool) -> Result<()> {
        self.state.lock().handle(ino, fh).map(|_| ())
    }

    fn opendir(&self, ino: Ino, _flags: i32) -> Result<Fh> {
        let mut st = self.state.lock();
        let dir_end = st.dir(ino)?.next_cookie();
        Ok(st.new_handle(Handle {
            ino,
            dir: true,
            read: true,
            write: false,
            append: false,
            dir_end,
        }))
    }

    fn readdir(&self, ino: Ino, fh: Fh, offset: u64, max_entries: usize) -> Result<Vec<DirEntry>> {
        let mut st = self.state.lock();
        Ok(st
            .list(ino, fh, offset, max_entries, false)?
            .into_iter()
            .map(|(e, _)| e)
            .collect())
    }

    fn readdirplus(
        &self,
        ino: Ino,
        fh: Fh,
        offset: u64,
        max_entries: usize,
    ) -> Result<Vec<(DirEntry, Attr)>> {
        self.state.lock().list(ino, fh, offset, max_entries, true)
    }

    fn releasedir(&self, ino: Ino, fh: Fh) -> Result<()> {
        self.release(ino, fh)
    }

    fn fsyncdir(&self, ino: Ino, fh: Fh, _datasync: bool) -> Result<()> {
        self.state.lock().handle(ino, fh).map(|_| ())
    }

    fn statfs(&self, _ino: Ino) -> Result<StatFs> {
        let st = self.state.lock();
        let blocks = st.config.max_bytes / CHUNK;
        let used = st.used_bytes.div_ceil(CHUNK);
        let files = st.config.max_inodes;
        Ok(StatFs {
            blocks,
            bfree: blocks.saturating_sub(used),
            bavail: blocks.saturating_sub(used),
            files,
            ffree: files.saturating_sub(st.inodes.len() as u64),
            bsize: CHUNK as u32,
            namelen: NAME_MAX as u32,
            frsize: CHUNK as u32,
        })
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Result<()> {
        self.set_xattr(req, ino, name, value, flags)
    }

    fn getxattr(&self, ino: Ino, name: &OsStr, size: u32) -> Result<XattrReply> {
        let name = bytes(name);
        check_xattr_name(name)?;
        let st = self.state.lock();
        xattr_reply(st.get(ino)?.xattrs.get(name)?.to_vec(), size)
    }

    fn listxattr(&self, ino: Ino, size: u32) -> Result<XattrReply> {
        let st = self.state.lock();
        xattr_reply(st.get(ino)?.xattrs.list(), size)
    }

    fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<()> {
        self.remove_xattr(ino, name)
    }

    fn access(&self, req: &Request, ino: Ino, mask: i32) -> Result<()> {
        let st = self.state.lock();
        let inode = st.get(ino)?;
        let is_dir = inode.kind == FileType::Directory;
        let acl = match inode.xattrs.get(acl::ACCESS_XATTR) {
            Ok(v) => acl::decode_stored(v)?,
            Err(_) => None,
        };
        let perm = u32::from(inode.perm);
        check_access(req, inode.uid, inode.gid, perm, is_dir, mask, acl.as_ref())
    }

    fn fallocate(&self, ino: Ino, fh: Fh, offset: u64, length: u64, mode: i32) -> Result<()> {
        self.allocate(ino, fh, offset, length, mode)
    }

    fn lseek(&self, ino: Ino, fh: Fh, offset: i64, whence: Whence) -> Result<u64> {
        self.seek(ino, fh, offset, whence)
    }

    fn copy_file_range(
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
        self.copy_range(
            ino_in, fh_in, offset_in, ino_out, fh_out, offset_out, len, flags,
        )
    }

    fn tmpfile(&self, req: &Request, parent: Ino, mode: u32, flags: i32) -> Result<(Attr, Fh)> {
        self.create_tmpfile(req, parent, mode, flags)
    }
}
