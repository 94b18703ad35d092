//! The namespace: making a node (file, directory, symlink, device) under
//! a name, removing a name (unlink, rmdir), and listing a directory. An
//! inode that loses its last name becomes an orphan, freed once nothing
//! references it.

use aegis_fs::intent_log::LogRec;
use aegis_fs::posix::inode::{S_IFCHR, S_IFDIR, S_IFREG};
use aegis_fs::posix::{InodeRecord, FIRST_COOKIE};
use aegis_fs::{AllocClass, ObjectRead, Tx};
use aegis_vfs::acl;
use aegis_vfs::validate::*;
use aegis_vfs::*;

use crate::attrs::{inherit_ops, write_inherited};
use crate::diskfs::*;
use crate::error::TxResult;
use crate::inode::*;

impl DiskFs {
    /// Create an inode named `name` in `parent`, with one lookup. The
    /// caller holds `parent`'s directory lock.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn create_node(
        &self,
        req: &Request,
        parent: Ino,
        name: &[u8],
        ftype: u32,
        perm: u32,
        rdev: u64,
        target: Option<&[u8]>,
    ) -> Result<Attr> {
        check_new_name(name)?;
        let generation = self.store.open_txg();
        // Read under the directory's lock, so it cannot change before the
        // transaction uses it.
        let default = self.default_acl(parent)?;
        let ops = NAMESPACE_OPS
            + target.map_or(0, |t| t.len() as u64 / 256 + 1)
            + inherit_ops(default.as_ref());
        let (ino, rec) = self.tx(ops, AllocClass::Normal, |tx| {
            let mut p = tx.inode(parent)?;
            if !p.is_dir() {
                return Err(FsError::NotDir.into());
            }
            if p.nlink == 0 {
                return Err(FsError::NotFound.into());
            }
            if tx.find_entry(parent, name)?.is_some() {
                return Err(FsError::Exists.into());
            }
            let is_link = target.is_some();
            let got = acl::inherit(default.as_ref(), ftype == S_IFDIR, is_link, perm, req.umask);
            let n = NewNode {
                req,
                parent,
                name,
                ftype,
                // Replay inherits again from the same default ACL, so it
                // needs the mode as asked; without one, the mode as masked.
                perm: if default.is_some() {
                    perm & 0o7777
                } else {
                    got.perm
                },
                rdev,
                target,
            };
            let (ino, rec) = alloc_inode(tx, &n, got.perm, &p, generation);
            tx.put_inode(ino, &rec)?;
            write_inherited(tx, ino, &got)?;
            if let Some(t) = target {
                tx.write_symlink(ino, t)?;
            }
            // New entries inherit their directory's log policy.
            tx.inherit_log_policy(parent, ino)?;
            tx.log(n.log_record(ino));
            let (is_dir, now) = (ftype == S_IFDIR, tx.now);
            tx.add_entry(parent, &mut p, name, ino, ftype)?;
            touch_modified(&mut p, now);
            if is_dir {
                p.nlink += 1;
            }
            tx.put_inode(parent, &p)?;
            Ok((ino, rec))
        })?;
        Self::add_lookup(&mut self.state.lock(), ino);
        Ok(self.attr_of(ino, &rec))
    }

    /// unlink (`rmdir` false) or rmdir (`rmdir` true) of `parent/name`: the
    /// entry goes, the child loses a link and becomes an orphan at zero.
    pub(crate) fn remove_entry(&self, parent: Ino, name: &[u8], rmdir: bool) -> Result<()> {
        check_removable_name(name)?;
        let _dir = self.dirs.lock(parent);
        let ino = self.tx(NAMESPACE_OPS, AllocClass::Reserved, |tx| {
            let mut p = tx.inode(parent)?;
            if !p.is_dir() {
                return Err(FsError::NotDir.into());
            }
            let f = tx.find_entry(parent, name)?.ok_or(FsError::NotFound)?;
            let mut c = tx.inode(f.ino)?;
            match (rmdir, c.is_dir()) {
                (false, true) => return Err(FsError::IsDir.into()),
                (true, false) => return Err(FsError::NotDir.into()),
                (true, true) if c.size != 0 => return Err(FsError::NotEmpty.into()),
                _ => {}
            }
            tx.remove_entry(parent, &mut p, name, &f)?;
            touch_modified(&mut p, tx.now);
            if rmdir {
                p.nlink = p.nlink.saturating_sub(1);
                c.nlink = 0;
            } else {
                c.nlink = c.nlink.saturating_sub(1);
            }
            tx.put_inode(parent, &p)?;
            c.ctime = tx.now;
            tx.put_inode(f.ino, &c)?;
            if c.nlink == 0 {
                tx.add_orphan(f.ino)?;
            }
            let name = name.to_vec();
            tx.log(if rmdir {
                LogRec::Rmdir { parent, name }
            } else {
                LogRec::Unlink { parent, name }
            });
            Ok((c.nlink == 0).then_some(f.ino))
        })?;
        self.orphaned(ino);
        Ok(())
    }

    pub(crate) fn list(
        &self,
        ino: Ino,
        fh: Fh,
        offset: u64,
        max: usize,
        plus: bool,
    ) -> Result<Vec<(DirEntry, Option<Attr>)>> {
        // Shared: no entry listed can go (and its inode be freed) before
        // its lookup is counted.
        let _dir = self.dirs.read(ino);
        let h = self.handle(ino, fh)?;
        if !h.dir {
            return Err(FsError::BadHandle);
        }
        let rs = self.dataset_record_size;
        let rewound = offset == 0;
        let (rows, end) = self.view(|t| {
            let d = t.inode(ino)?;
            if !d.is_dir() {
                return Err(FsError::NotDir.into());
            }
            // A rewind moves the stream's end to what the directory holds now.
            let end = if rewound { d.next_cookie } else { h.dir_end };
            let mut out: Vec<(DirEntry, Option<Attr>)> = Vec::new();
            if offset < 1 {
                out.push((dot(ino, 1, b"."), plus.then(|| attr(ino, &d, rs))));
            }
            if offset < 2 {
                let a = match plus {
                    true => Some(attr(d.parent, &t.inode(d.parent)?, rs)),
                    false => None,
                };
                out.push((dot(d.parent, 2, b".."), a));
            }
            if out.len() < max {
                for (cookie, e) in t.entries_after(ino, offset.max(2), max - out.len())? {
                    if cookie >= end {
                        break;
                    }
                    // Plain readdir needs only the entry: the child's inode
                    // is read for readdirplus alone.
                    let a = if plus {
                        Some(stored_attr(t, e.ino, rs)?)
                    } else {
                        None
                    };
                    let entry = DirEntry {
                        ino: e.ino,
                        offset: cookie,
                        kind: kind_of(e.file_type),
                        name: e.name,
                    };
                    out.push((entry, a));
                }
            }
            out.truncate(max);
            Ok((out, end))
        })?;
        if let Some(h) = self.handles.write().get_mut(&fh) {
            h.dir_end = end;
        }
        if plus {
            let mut st = self.state.lock();
            for (e, _) in &rows {
                if e.offset > 2 {
                    Self::add_lookup(&mut st, e.ino);
                }
            }
        }
        Ok(rows)
    }
}

pub(crate) fn dot(ino: Ino, cookie: u64, name: &[u8]) -> DirEntry {
    DirEntry {
        ino,
        offset: cookie,
        kind: FileType::Directory,
        name: name.to_vec(),
    }
}

/// What `create_node` is asked to make.
struct NewNode<'a> {
    req: &'a Request,
    parent: Ino,
    name: &'a [u8],
    ftype: u32,
    perm: u32,
    rdev: u64,
    target: Option<&'a [u8]>,
}

impl NewNode<'_> {
    /// The record replay re-runs: the mode as given (before setgid
    /// inheritance), so replay inherits the same way.
    fn log_record(&self, ino: Ino) -> LogRec {
        let (parent, name) = (self.parent, self.name.to_vec());
        let (uid, gid) = (self.req.uid, self.req.gid);
        match self.target {
            Some(t) => LogRec::Symlink {
                parent,
                name,
                target: t.to_vec(),
                uid,
                gid,
                ino,
            },
            None => LogRec::Mknod {
                parent,
                name,
                mode: self.ftype | (self.perm & 0o7777),
                rdev: self.rdev,
                uid,
                gid,
                ino,
            },
        }
    }
}

/// The next inode number and the new inode's record with permission bits
/// `perm`: the group and a directory's setgid bit come from a setgid
/// parent `p`.
fn alloc_inode(
    tx: &mut Tx<'_>,
    n: &NewNode<'_>,
    perm: u32,
    p: &InodeRecord,
    generation: u64,
) -> (Ino, InodeRecord) {
    let mut perm = perm & 0o7777;
    let mut gid = n.req.gid;
    let is_dir = n.ftype == S_IFDIR;
    if p.mode & libc::S_ISGID != 0 {
        gid = p.gid;
        if is_dir {
            perm |= libc::S_ISGID;
        }
    }
    let ino = tx.meta.next_ino;
    tx.meta.next_ino += 1;
    tx.meta.inodes += 1;
    tx.meta_dirty = true;
    let now = tx.now;
    let rec = InodeRecord {
        mode: n.ftype | perm,
        uid: n.req.uid,
        gid,
        nlink: if is_dir { 2 } else { 1 },
        size: n.target.map_or(0, |t| t.len() as u64),
        rdev: n.rdev,
        generation,
        parent: if is_dir { n.parent } else { 0 },
        next_cookie: if is_dir { FIRST_COOKIE } else { 0 },
        alloc_bytes: 0,
        atime: now,
        mtime: now,
        ctime: now,
        crtime: now,
        // Files and directories inherit their directory's record size
        // (0, the dataset's, unless it has its own); other kinds have none.
        record_shift: match n.ftype {
            S_IFREG | S_IFDIR => p.record_shift,
            _ => 0,
        },
    };
    (ino, rec)
}

impl DiskFs {
    /// O_TMPFILE: a regular file in no directory, an orphan from the start
    /// (a crash frees it), open with `flags`. Its creation is not logged:
    /// the log is spent until the next commit instead, so no logged record
    /// (a write, the `link` that names it) can reach a replay that lacks
    /// the inode.
    pub(crate) fn make_tmpfile(
        &self,
        req: &Request,
        parent: Ino,
        mode: u32,
        flags: i32,
    ) -> Result<(Attr, Fh)> {
        // Shared: the parent's default ACL is read before the transaction.
        let _dir = self.dirs.read(parent);
        let generation = self.store.open_txg();
        let default = self.default_acl(parent)?;
        let ops = NAMESPACE_OPS + inherit_ops(default.as_ref());
        let (ino, rec) = self.tx(ops, AllocClass::Normal, |tx| {
            let p = tx.inode(parent)?;
            if !p.is_dir() {
                return Err(FsError::NotDir.into());
            }
            if p.nlink == 0 {
                return Err(FsError::NotFound.into());
            }
            let got = acl::inherit(default.as_ref(), false, false, mode, req.umask);
            let n = NewNode {
                req,
                parent,
                name: b"",
                ftype: S_IFREG,
                perm: got.perm,
                rdev: 0,
                target: None,
            };
            let (ino, mut rec) = alloc_inode(tx, &n, got.perm, &p, generation);
            rec.nlink = 0;
            tx.put_inode(ino, &rec)?;
            write_inherited(tx, ino, &got)?;
            tx.add_orphan(ino)?;
            tx.inherit_log_policy(parent, ino)?;
            tx.mark_unlogged();
            Ok((ino, rec))
        })?;
        let mut st = self.state.lock();
        st.orphans.insert(ino);
        st.linkable.insert(ino);
        Self::add_lookup(&mut st, ino);
        let fh = self.open_locked(&mut st, ino, flags & (libc::O_ACCMODE | libc::O_APPEND))?;
        Ok((self.attr_of(ino, &rec), fh))
    }
}

/// The whiteout RENAME_WHITEOUT leaves at `parent/name` in the rename's own
/// transaction: a character device 0:0 owned by root (the name is free,
/// the source has just left it). No lookup is counted: the kernel gets no
/// entry for it. Logged only as part of the rename's record, whose replay
/// makes it again.
pub(crate) fn add_whiteout(
    tx: &mut Tx<'_>,
    parent: Ino,
    name: &[u8],
    generation: u64,
) -> TxResult<Ino> {
    let root = Request::root();
    let n = NewNode {
        req: &root,
        parent,
        name,
        ftype: S_IFCHR,
        perm: 0,
        rdev: 0,
        target: None,
    };
    let mut p = tx.inode(parent)?;
    let (ino, rec) = alloc_inode(tx, &n, 0, &p, generation);
    tx.put_inode(ino, &rec)?;
    tx.add_entry(parent, &mut p, name, ino, S_IFCHR)?;
    tx.put_inode(parent, &p)?;
    Ok(ino)
}
