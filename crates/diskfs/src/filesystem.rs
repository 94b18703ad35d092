//! The [`FileSystem`] trait for [`DiskFs`], call by call: argument checks
//! and short operations here, the longer ones in the files of their
//! concern.

use std::ffi::OsStr;

use aegis_fs::intent_log::LogRec;
use aegis_fs::posix::inode::{
    S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK,
};
use aegis_fs::{AllocClass, ObjectRead};
use aegis_vfs::acl;
use aegis_vfs::validate::*;
use aegis_vfs::*;

use crate::attrs::{apply_mode, mode_ops};
use crate::diskfs::*;
use crate::inode::*;
use crate::{POLICY_XATTR, RECORDSIZE_XATTR};

impl FileSystem for DiskFs {
    fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr> {
        let name = bytes(name);
        check_name(name)?;
        // Shared: the name cannot go (and its inode be freed) before the
        // kernel's reference is counted.
        let _dir = self.dirs.read(parent);
        let (ino, rec) = self.view(|t| {
            let p = t.inode(parent)?;
            if name == b"." {
                // Any inode that still has a name: the kernel resolves
                // file handles this way (FUSE export support).
                if p.nlink == 0 {
                    return Err(FsError::NotFound.into());
                }
                return Ok((parent, p));
            }
            if !p.is_dir() {
                return Err(FsError::NotDir.into());
            }
            let ino = match name {
                b".." => p.parent,
                _ => t.find_entry(parent, name)?.ok_or(FsError::NotFound)?.ino,
            };
            Ok((ino, t.inode(ino)?))
        })?;
        Self::add_lookup(&mut self.state.lock(), ino);
        Ok(self.attr_of(ino, &rec))
    }

    fn forget(&self, ino: Ino, nlookup: u64) {
        let claimed = {
            let mut st = self.state.lock();
            match st.refs.get_mut(&ino) {
                Some(r) => {
                    r.lookups = r.lookups.saturating_sub(nlookup);
                    self.claim_orphan(&mut st, ino)
                }
                None => false,
            }
        };
        if claimed {
            self.free_claimed(ino);
        }
    }

    fn getattr(&self, ino: Ino) -> Result<Attr> {
        // A read of one record: no need to wait for the namespace lock.
        self.view(|t| Ok(stored_attr(t, ino, self.dataset_record_size)?))
    }

    fn setattr(&self, req: &Request, ino: Ino, set: &SetAttr, fh: Option<Fh>) -> Result<Attr> {
        let _st = self.state.lock();
        // A size change is a data change: no write may run beside it.
        let _file = self.files.lock(ino);
        if let Some(fh) = fh {
            self.handle(ino, fh)?;
        }
        let records = match set.size {
            Some(_) => self.view(|t| Ok(t.record_count(ino)?))?,
            None => 0,
        };
        let ops = 4 + records / 8 + mode_ops(set);
        let r = self.tx(ops, AllocClass::Reserved, |tx| {
            let mut r = tx.inode(ino)?;
            let now = tx.now;
            if let Some(size) = set.size {
                regular(&r)?;
                check_range(size, 0)?;
                if size > r.size {
                    // Growing allocates nothing; only the check above applies.
                }
                tx.truncate_file(ino, &mut r, size)?;
                touch_modified(&mut r, now);
            }
            let mode = apply_mode(tx, ino, &mut r, req, set)?;
            let mut changed = set.size.is_some() || mode.is_some();
            if let Some(uid) = set.uid {
                r.uid = uid;
                changed = true;
            }
            if let Some(gid) = set.gid {
                r.gid = gid;
                changed = true;
            }
            if let Some(t) = set.atime {
                r.atime = set_time(t, now);
                changed = true;
            }
            if let Some(t) = set.mtime {
                r.mtime = set_time(t, now);
                changed = true;
            }
            if let Some(t) = set.crtime {
                r.crtime = to_ns(t);
                changed = true;
            }
            if let Some(t) = set.ctime {
                r.ctime = to_ns(t);
            } else if changed {
                r.ctime = now;
            }
            tx.put_inode(ino, &r)?;
            let t = |on: bool, v: i64| on.then_some(v);
            tx.log(LogRec::SetAttr {
                ino,
                mode,
                uid: set.uid,
                gid: set.gid,
                size: set.size,
                times: [
                    t(set.atime.is_some(), r.atime),
                    t(set.mtime.is_some() || set.size.is_some(), r.mtime),
                    Some(r.ctime),
                    t(set.crtime.is_some(), r.crtime),
                ],
            });
            Ok(r)
        })?;
        Ok(self.attr_of(ino, &r))
    }

    fn mknod(
        &self,
        req: &Request,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        rdev: u64,
    ) -> Result<Attr> {
        let (ftype, rdev) = match mode & S_IFMT {
            0 | S_IFREG => (S_IFREG, 0),
            S_IFDIR => return Err(FsError::NotPermitted),
            t @ (S_IFCHR | S_IFBLK) => (t, rdev),
            t @ (S_IFIFO | S_IFSOCK) => (t, 0),
            _ => return Err(FsError::InvalidArgument("bad file type for mknod")),
        };
        let _dir = self.dirs.lock(parent);
        self.create_node(req, parent, bytes(name), ftype, mode, rdev, None)
    }

    fn mkdir(&self, req: &Request, parent: Ino, name: &OsStr, mode: u32) -> Result<Attr> {
        let _dir = self.dirs.lock(parent);
        self.create_node(req, parent, bytes(name), S_IFDIR, mode, 0, None)
    }

    fn unlink(&self, parent: Ino, name: &OsStr) -> Result<()> {
        self.remove_entry(parent, bytes(name), false)
    }

    fn rmdir(&self, parent: Ino, name: &OsStr) -> Result<()> {
        self.remove_entry(parent, bytes(name), true)
    }

    fn symlink(&self, req: &Request, parent: Ino, name: &OsStr, target: &OsStr) -> Result<Attr> {
        let target = bytes(target);
        if target.is_empty() {
            return Err(FsError::NotFound);
        }
        if target.len() > SYMLINK_MAX {
            return Err(FsError::NameTooLong);
        }
        let _dir = self.dirs.lock(parent);
        self.create_node(req, parent, bytes(name), S_IFLNK, 0o777, 0, Some(target))
    }

    fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        self.view(|t| {
            let r = t.inode(ino)?;
            if r.mode & S_IFMT != S_IFLNK {
                return Err(FsError::InvalidArgument("not a symlink").into());
            }
            Ok(t.symlink_target(ino)?)
        })
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
        let newname = bytes(newname);
        check_new_name(newname)?;
        let _dir = self.dirs.lock(newparent);
        let mut st = self.state.lock();
        // Only an O_TMPFILE file may get its first name (and a replay may
        // re-run that link).
        let replaying = self.log.as_ref().is_some_and(|l| l.is_replaying());
        let linkable = st.linkable.contains(&ino) || (replaying && st.orphans.contains(&ino));
        let r = self.tx(NAMESPACE_OPS, AllocClass::Normal, |tx| {
            let mut r = tx.inode(ino)?;
            if r.is_dir() {
                return Err(FsError::NotPermitted.into());
            }
            if r.nlink == 0 && !linkable {
                return Err(FsError::NotFound.into());
            }
            if r.nlink == 0 {
                tx.remove_orphan(ino)?;
            }
            let mut np = tx.inode(newparent)?;
            if !np.is_dir() {
                return Err(FsError::NotDir.into());
            }
            if np.nlink == 0 {
                return Err(FsError::NotFound.into());
            }
            if tx.find_entry(newparent, newname)?.is_some() {
                return Err(FsError::Exists.into());
            }
            tx.add_entry(newparent, &mut np, newname, ino, r.mode & S_IFMT)?;
            touch_modified(&mut np, tx.now);
            tx.put_inode(newparent, &np)?;
            r.nlink += 1;
            r.ctime = tx.now;
            tx.put_inode(ino, &r)?;
            tx.log(LogRec::Link {
                ino,
                newparent,
                newname: newname.to_vec(),
            });
            Ok(r)
        })?;
        if linkable {
            st.orphans.remove(&ino);
            st.linkable.remove(&ino);
        }
        Self::add_lookup(&mut st, ino);
        Ok(self.attr_of(ino, &r))
    }

    fn open(&self, ino: Ino, flags: i32) -> Result<Fh> {
        let mut st = self.state.lock();
        self.open_locked(&mut st, ino, flags)
    }

    fn create(
        &self,
        req: &Request,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<(Attr, Fh)> {
        let name = bytes(name);
        check_new_name(name)?;
        let _dir = self.dirs.lock(parent);
        let existing = self.view(|t| {
            let p = t.inode(parent)?;
            if !p.is_dir() {
                return Err(FsError::NotDir.into());
            }
            if p.nlink == 0 {
                return Err(FsError::NotFound.into());
            }
            Ok(t.find_entry(parent, name)?)
        })?;
        if let Some(f) = existing {
            if flags & libc::O_EXCL != 0 {
                return Err(FsError::Exists);
            }
            if f.file_type == S_IFDIR {
                return Err(FsError::IsDir);
            }
            let mut st = self.state.lock();
            let fh = self.open_locked(&mut st, f.ino, flags)?;
            Self::add_lookup(&mut st, f.ino);
            let r = self.inode(f.ino)?;
            return Ok((self.attr_of(f.ino, &r), fh));
        }
        let attr = self.create_node(req, parent, name, S_IFREG, mode, 0, None)?;
        let fh = self.open_locked(&mut self.state.lock(), attr.ino, flags & !libc::O_TRUNC)?;
        Ok((attr, fh))
    }

    fn read(&self, ino: Ino, fh: Fh, offset: u64, size: u32) -> Result<Vec<u8>> {
        // Reads run in parallel (the kernel sends several for readahead):
        // the namespace lock only checks the handle, and the inode and its
        // records are read under one tree read lock, so they agree.
        let h = self.handle(ino, fh)?;
        // The dataset's: the file's own comes from its inode in `read_file`.
        let rs = self.dataset_record_size as u64;
        let (r, out) = self.view(|t| {
            let r = t.inode(ino)?;
            regular(&r)?;
            if !h.read {
                return Err(FsError::BadHandle.into());
            }
            let out = t.read_file(ino, &r, rs, offset, size)?;
            Ok((r, out))
        })?;
        let now = now_ns();
        if !self.read_only() && atime_due(&r, now, self.opts.atime) {
            // One inode in one transaction; shared, so that a freeze
            // (which takes every stripe) finds no change in flight.
            let _file = self.files.read(ino);
            let touched = self.tx(1, AllocClass::Normal, |tx| {
                let mut r = tx.inode(ino)?;
                r.atime = tx.now;
                Ok(tx.put_inode(ino, &r)?)
            });
            // The data was read: a full pool or a racing delete must not
            // turn that into an error just because atime stayed behind.
            if let Err(e) = touched {
                tracing::debug!(ino, error = %e, "atime not updated");
            }
        }
        Ok(out)
    }

    fn write(&self, ino: Ino, fh: Fh, offset: u64, data: &[u8]) -> Result<u32> {
        u32::try_from(data.len()).map_err(|_| FsError::InvalidArgument("write over 4 GiB"))?;
        // The file's lock, not the namespace's: writes of different
        // files run side by side up to the tree lock.
        let _file = self.files.lock(ino);
        let h = self.handle(ino, fh)?;
        let (r, shape) = self.write_shape(ino)?;
        regular(&r)?;
        if !h.write {
            return Err(FsError::BadHandle);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let offset = if h.append { r.size } else { offset };
        self.write_in_pieces(ino, offset, data, shape)
    }

    fn flush(&self, ino: Ino, fh: Fh) -> Result<()> {
        self.handle(ino, fh).map(|_| ())
    }

    fn release(&self, ino: Ino, fh: Fh) -> Result<()> {
        let claimed = {
            let mut st = self.state.lock();
            self.handle(ino, fh)?;
            self.handles.write().remove(&fh);
            if let Some(r) = st.refs.get_mut(&ino) {
                r.opens = r.opens.saturating_sub(1);
            }
            self.claim_orphan(&mut st, ino)
        };
        if claimed {
            self.free_claimed(ino);
        }
        Ok(())
    }

    fn fsync(&self, ino: Ino, fh: Fh, _datasync: bool) -> Result<()> {
        self.sync_handle(ino, fh)
    }

    fn opendir(&self, ino: Ino, _flags: i32) -> Result<Fh> {
        let mut st = self.state.lock();
        let d = self.inode(ino)?;
        if !d.is_dir() {
            return Err(FsError::NotDir);
        }
        Ok(self.new_handle(
            &mut st,
            Handle {
                ino,
                dir: true,
                read: true,
                write: false,
                append: false,
                dir_end: d.next_cookie,
            },
        ))
    }

    fn readdir(&self, ino: Ino, fh: Fh, offset: u64, max_entries: usize) -> Result<Vec<DirEntry>> {
        Ok(self
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
        Ok(self
            .list(ino, fh, offset, max_entries, true)?
            .into_iter()
            .map(|(e, a)| (e, a.expect("readdirplus lists attributes")))
            .collect())
    }

    fn releasedir(&self, ino: Ino, fh: Fh) -> Result<()> {
        self.release(ino, fh)
    }

    fn fsyncdir(&self, ino: Ino, fh: Fh, _datasync: bool) -> Result<()> {
        self.sync_handle(ino, fh)
    }

    fn statfs(&self, _ino: Ino) -> Result<StatFs> {
        self.check_alive()?;
        let _st = self.state.lock();
        let bs = self.store.block_size() as u64;
        let space = self.store.space();
        let blocks = space.total / bs;
        // Preallocated space is in use, as on ext4.
        let bfree = space.free.saturating_sub(self.store.reserved_bytes()) / bs;
        let bavail = self.store.available(AllocClass::Normal) / bs;
        Ok(StatFs {
            blocks,
            bfree,
            bavail,
            // No inode table: any free block can hold inodes.
            files: self.meta()?.inodes + bavail,
            ffree: bavail,
            bsize: self.dataset_record_size,
            namelen: NAME_MAX as u32,
            frsize: bs as u32,
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
        let name = bytes(name);
        if name == POLICY_XATTR {
            return self.set_policy(ino, value);
        }
        if name == RECORDSIZE_XATTR {
            return self.set_record_size(ino, value);
        }
        let user = check_xattr_name(name)?;
        if let Some(kind) = acl::AclKind::of_xattr(name) {
            return self.set_acl(req, ino, kind, value);
        }
        let _st = self.state.lock();
        let ops = 4 + value.len() as u64 / 128;
        self.tx(ops, AllocClass::Normal, |tx| {
            let mut r = tx.inode(ino)?;
            if user && !(r.is_reg() || r.is_dir()) {
                return Err(FsError::NotPermitted.into());
            }
            if flags & !(XATTR_CREATE | XATTR_REPLACE) != 0 || flags == XATTR_CREATE | XATTR_REPLACE
            {
                return Err(FsError::InvalidArgument("bad setxattr flags").into());
            }
            if value.len() > XATTR_SIZE_MAX {
                return Err(FsError::XattrTooBig.into());
            }
            let names = tx.xattr_names(ino)?;
            let exists = names.iter().any(|n| n == name);
            if exists && flags == XATTR_CREATE {
                return Err(FsError::Exists.into());
            }
            if !exists && flags == XATTR_REPLACE {
                return Err(FsError::NoData.into());
            }
            let list_len: usize = names.iter().map(|n| n.len() + 1).sum();
            if !exists && list_len + name.len() + 1 > XATTR_LIST_MAX {
                return Err(FsError::NoSpace.into());
            }
            tx.set_xattr(ino, name, value)?;
            r.ctime = tx.now;
            tx.log(LogRec::SetXattr {
                ino,
                name: name.to_vec(),
                value: value.to_vec(),
                flags,
            });
            Ok(tx.put_inode(ino, &r)?)
        })
    }

    fn getxattr(&self, ino: Ino, name: &OsStr, size: u32) -> Result<XattrReply> {
        let name = bytes(name);
        if name == POLICY_XATTR {
            let p = self.view(|t| {
                t.inode(ino)?;
                Ok(t.log_policy(ino))
            })?;
            return xattr_reply(p.name().as_bytes().to_vec(), size);
        }
        if name == RECORDSIZE_XATTR {
            return xattr_reply(self.get_record_size(ino)?, size);
        }
        check_xattr_name(name)?;
        // One view: no lock of ours (the kernel asks this before every
        // write, for security.capability).
        let v = self.view(|t| {
            t.inode(ino)?;
            Ok(t.xattr(ino, name)?.ok_or(FsError::NoData)?)
        })?;
        xattr_reply(v, size)
    }

    fn listxattr(&self, ino: Ino, size: u32) -> Result<XattrReply> {
        let names = self.view(|t| {
            t.inode(ino)?;
            Ok(t.xattr_names(ino)?)
        })?;
        let mut out = Vec::new();
        for n in names {
            out.extend_from_slice(&n);
            out.push(0);
        }
        xattr_reply(out, size)
    }

    fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<()> {
        let name = bytes(name);
        check_xattr_name(name)?;
        let _st = self.state.lock();
        self.tx(4 + 64, AllocClass::Reserved, |tx| {
            let mut r = tx.inode(ino)?;
            if tx.xattr(ino, name)?.is_none() {
                return Err(FsError::NoData.into());
            }
            tx.remove_xattr(ino, name)?;
            r.ctime = tx.now;
            tx.log(LogRec::RemoveXattr {
                ino,
                name: name.to_vec(),
            });
            Ok(tx.put_inode(ino, &r)?)
        })
    }

    fn access(&self, req: &Request, ino: Ino, mask: i32) -> Result<()> {
        let (r, stored) = self.view(|t| Ok((t.inode(ino)?, t.xattr(ino, acl::ACCESS_XATTR)?)))?;
        let acl = match stored {
            Some(v) => acl::decode_stored(&v)?,
            None => None,
        };
        let perm = r.mode & 0o7777;
        check_access(req, r.uid, r.gid, perm, r.is_dir(), mask, acl.as_ref())
    }

    fn fallocate(&self, ino: Ino, fh: Fh, offset: u64, length: u64, mode: i32) -> Result<()> {
        let _file = self.files.lock(ino);
        let h = self.handle(ino, fh)?;
        let r = self.inode(ino)?;
        regular(&r)?;
        if !h.write {
            return Err(FsError::BadHandle);
        }
        let (op, end) = fallocate_mode(mode, offset, length)?;
        self.fallocate_locked(ino, (op, mode), offset, end)
    }

    fn lseek(&self, ino: Ino, fh: Fh, offset: i64, whence: Whence) -> Result<u64> {
        // Held so that no data change lands between the inode and the seek.
        let _file = self.files.lock(ino);
        self.handle(ino, fh)?;
        // The dataset's: the file's own comes from `r` in the seek.
        let rs = self.dataset_record_size as u64;
        let r = self.inode(ino)?;
        regular(&r)?;
        let neg = FsError::InvalidArgument("negative offset");
        match whence {
            Whence::Set => u64::try_from(offset).map_err(|_| neg),
            Whence::End => {
                let pos = (r.size as i128) + offset as i128;
                u64::try_from(pos).map_err(|_| neg)
            }
            Whence::Data | Whence::Hole => {
                let off = u64::try_from(offset).map_err(|_| FsError::NoSuchOffset)?;
                self.view(|t| {
                    if whence == Whence::Data {
                        t.seek_data(ino, &r, rs, off)?
                            .ok_or(FsError::NoSuchOffset.into())
                    } else {
                        t.seek_hole(ino, &r, rs, off)?
                            .ok_or(FsError::NoSuchOffset.into())
                    }
                })
            }
        }
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
        if flags != 0 {
            return Err(FsError::InvalidArgument("copy_file_range flags"));
        }
        check_range(offset_in, len)?;
        let _files = self.files.lock_two(ino_in, ino_out);
        let pair = ((ino_in, fh_in, offset_in), (ino_out, fh_out, offset_out));
        let (rin, _, n) = self.range_pair(pair, len, true)?;
        if n == 0 {
            return Ok(0);
        }
        self.copy_range_locked((ino_in, &rin, offset_in), (ino_out, offset_out), n)?;
        Ok(n)
    }

    fn clone_range(
        &self,
        ino_in: Ino,
        fh_in: Fh,
        offset_in: u64,
        ino_out: Ino,
        fh_out: Fh,
        offset_out: u64,
        len: u64,
    ) -> Result<u64> {
        let _files = self.files.lock_two(ino_in, ino_out);
        let pair = ((ino_in, fh_in, offset_in), (ino_out, fh_out, offset_out));
        let len = match len {
            0 => self.inode(ino_in)?.size.saturating_sub(offset_in),
            n => n,
        };
        let (rin, _, n) = self.range_pair(pair, len, true)?;
        if n == 0 {
            return Ok(0);
        }
        self.clone_locked((ino_in, &rin, offset_in), (ino_out, offset_out), n)?;
        Ok(n)
    }

    fn dedupe_range(
        &self,
        ino_in: Ino,
        fh_in: Fh,
        offset_in: u64,
        ino_out: Ino,
        fh_out: Fh,
        offset_out: u64,
        len: u64,
    ) -> Result<Option<u64>> {
        let _files = self.files.lock_two(ino_in, ino_out);
        let pair = ((ino_in, fh_in, offset_in), (ino_out, fh_out, offset_out));
        let len = len.min(crate::reflink::MAX_DEDUPE_BYTES);
        let (rin, rout, n) = self.range_pair(pair, len, false)?;
        // Past the target's end the bytes are not the same: none there.
        if offset_out.saturating_add(n) > rout.size {
            return Ok(None);
        }
        if n == 0 {
            return Ok(Some(0));
        }
        let src = (ino_in, &rin, offset_in);
        self.dedupe_locked(src, (ino_out, &rout, offset_out), n)
    }

    fn set_writable(&self, writable: bool) -> Result<()> {
        self.set_writable_now(writable)
    }

    fn shutdown(&self) -> Result<()> {
        self.shutdown_now();
        Ok(())
    }

    fn control(&self, words: &[&str]) -> std::result::Result<String, aegis_vfs::ControlError> {
        self.run_control(words)
    }

    fn tmpfile(&self, req: &Request, parent: Ino, mode: u32, flags: i32) -> Result<(Attr, Fh)> {
        self.make_tmpfile(req, parent, mode, flags)
    }

    fn syncfs(&self) -> Result<()> {
        self.sync()
    }
}
