//! `MOUNTPOINT/.snapshots/NAME/`: the dataset's snapshots, read-only,
//! inside its own mount, as ZFS's `.zfs/snapshot` (hidden: the root's
//! `readdir` does not list `.snapshots`, a lookup of it finds it).
//!
//! [`SnapshotDir`] is a [`FileSystem`] around the mounted dataset's
//! [`DiskFs`]: the dataset itself is slot 0, the `.snapshots` directory
//! is virtual, and each snapshot looked up or listed gets a slot whose
//! read-only `DiskFs` opens on first use, over the same store. Inode
//! numbers and file handles carry the slot in their high bits, so the
//! kernel sees one filesystem: a dataset inode is its own number (every
//! one lies below 2^40), a snapshot's is `slot << 40 | its number`, and
//! a handle's slot sits above bit 48. A change of anything in a
//! snapshot, or of `.snapshots` itself, is EROFS; a rename or link
//! between slots is EXDEV.
//!
//! Invariant: a slot names one snapshot for the mount's life; a snapshot
//! deleted through this mount loses its view first (its inodes then
//! answer ENOENT), so no view reads a tree whose blocks are being freed.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::Arc;

use aegis_vfs::{
    Attr, ControlError, DirEntry, Fh, FileSystem, FileType, FsError, Ino, Request, Result, SetAttr,
    StatFs, Whence, XattrReply, ROOT_INO,
};
use parking_lot::RwLock;

use crate::diskfs::DiskFs;
use crate::DiskFsOptions;

/// The name of the directory, in the dataset's root.
pub const SNAPSHOTS_DIR: &str = ".snapshots";
const SLOT_SHIFT: u32 = 40;
const FH_SHIFT: u32 = 48;
/// The `.snapshots` directory: slot 1, number 0 (no dataset inode is 0).
const SNAPDIR_INO: Ino = 1 << SLOT_SHIFT;
/// Its one directory handle.
const SNAPDIR_FH: Fh = 1 << FH_SHIFT;
/// Slots 0 (the dataset) and 1 (the directory) are taken.
const FIRST_SNAP_SLOT: usize = 2;
/// Most snapshot slots one mount hands out (the handle's 16 high bits).
const MAX_SLOTS: usize = (1 << (64 - FH_SHIFT)) - 1;

/// One snapshot slot: its snapshot (`None` once deleted through this
/// mount: the slot's numbers then name nothing) and its view, once open.
struct Slot {
    id: Option<u64>,
    fs: Option<Arc<DiskFs>>,
}

struct Views {
    /// Slot `FIRST_SNAP_SLOT + i` is `slots[i]`.
    slots: Vec<Slot>,
    by_id: HashMap<u64, usize>,
}

pub struct SnapshotDir {
    live: Arc<DiskFs>,
    views: RwLock<Views>,
    /// Names under `.snapshots` a live command made or removed, for the
    /// kernel to forget (`take_stale_entries`). Bounded by the commands.
    stale: parking_lot::Mutex<Vec<(Ino, Vec<u8>)>>,
}

fn slot_of(ino: Ino) -> usize {
    (ino >> SLOT_SHIFT) as usize
}

fn inner(ino: Ino) -> Ino {
    ino & ((1 << SLOT_SHIFT) - 1)
}

fn encode(slot: usize, ino: Ino) -> Result<Ino> {
    if ino >> SLOT_SHIFT != 0 {
        return Err(FsError::Io(format!("inode {ino} is past 2^40")));
    }
    Ok((slot as u64) << SLOT_SHIFT | ino)
}

fn attr_in(slot: usize, mut a: Attr) -> Result<Attr> {
    a.ino = encode(slot, a.ino)?;
    Ok(a)
}

fn fh_in(slot: usize, fh: Fh) -> Result<Fh> {
    if fh >> FH_SHIFT != 0 {
        return Err(FsError::Io(format!("handle {fh} is past 2^48")));
    }
    Ok((slot as u64) << FH_SHIFT | fh)
}

fn fh_inner(fh: Fh) -> Fh {
    fh & ((1 << FH_SHIFT) - 1)
}

impl SnapshotDir {
    pub fn new(live: Arc<DiskFs>) -> Arc<SnapshotDir> {
        Arc::new(SnapshotDir {
            live,
            views: RwLock::new(Views {
                slots: Vec::new(),
                by_id: HashMap::new(),
            }),
            stale: parking_lot::Mutex::new(Vec::new()),
        })
    }

    /// The filesystem and inner number behind `ino`: EROFS for the
    /// virtual directory (callers that serve it look first), ENOENT for a
    /// slot never handed out or whose view was closed.
    fn target(&self, ino: Ino) -> Result<(usize, Arc<DiskFs>, Ino)> {
        match slot_of(ino) {
            0 => Ok((0, self.live.clone(), ino)),
            1 => Err(FsError::ReadOnly),
            s => {
                let fs = self.view(s)?;
                Ok((s, fs, inner(ino)))
            }
        }
    }

    /// Slot `s`'s view, opened on first use. A snapshot that is gone or
    /// being deleted (a schedule's retention deletes without this mount's
    /// commands) closes its slot: its blocks are being freed.
    fn view(&self, s: usize) -> Result<Arc<DiskFs>> {
        let i = s.checked_sub(FIRST_SNAP_SLOT).ok_or(FsError::NotFound)?;
        let (id, open) = {
            let v = self.views.read();
            match v.slots.get(i) {
                Some(Slot { id: Some(id), fs }) => (*id, fs.clone()),
                _ => return Err(FsError::NotFound),
            }
        };
        if !self.live.store().snapshot_usable(id) {
            let mut v = self.views.write();
            v.by_id.remove(&id);
            if let Some(slot) = v.slots.get_mut(i) {
                *slot = Slot { id: None, fs: None };
            }
            return Err(FsError::NotFound);
        }
        if let Some(fs) = open {
            return Ok(fs);
        }
        let opts = DiskFsOptions {
            dataset: id,
            atime: self.live.opts.atime,
            intent_log: false,
        };
        let fs = DiskFs::open(self.live.store().clone(), opts)?;
        let mut v = self.views.write();
        match v.slots.get_mut(i) {
            Some(slot) if slot.id == Some(id) => Ok(slot.fs.get_or_insert(fs).clone()),
            _ => Err(FsError::NotFound),
        }
    }

    /// The slot of snapshot `id`, handed out on first sight.
    fn slot_for(&self, id: u64) -> Result<usize> {
        if let Some(&s) = self.views.read().by_id.get(&id) {
            return Ok(s);
        }
        let mut v = self.views.write();
        if let Some(&s) = v.by_id.get(&id) {
            return Ok(s);
        }
        if v.slots.len() >= MAX_SLOTS - FIRST_SNAP_SLOT {
            return Err(FsError::TooManyFiles);
        }
        v.slots.push(Slot {
            id: Some(id),
            fs: None,
        });
        let s = v.slots.len() - 1 + FIRST_SNAP_SLOT;
        v.by_id.insert(id, s);
        Ok(s)
    }

    /// The live dataset's usable snapshots, by name.
    fn snapshots(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self
            .live
            .store()
            .snapshots(self.live.ds)
            .into_iter()
            .filter(|s| !s.deleting && !aegis_fs::time_travel::is_hidden(&s.name))
            .map(|s| (s.name, s.id))
            .collect();
        v.sort();
        v
    }

    fn snapdir_attr(&self) -> Result<Attr> {
        let root = self.live.getattr(ROOT_INO)?;
        Ok(Attr {
            ino: SNAPDIR_INO,
            size: 0,
            blocks: 0,
            kind: FileType::Directory,
            perm: 0o555,
            nlink: 2,
            ..root
        })
    }

    /// `.snapshots/NAME`: the snapshot's root, through its view.
    fn lookup_snapshot(&self, name: &OsStr) -> Result<Attr> {
        let name = name.to_str().ok_or(FsError::NotFound)?;
        let id = self
            .snapshots()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| id)
            .ok_or(FsError::NotFound)?;
        let s = self.slot_for(id)?;
        let fs = self.view(s)?;
        attr_in(s, fs.lookup(ROOT_INO, OsStr::new("."))?)
    }

    fn snapdir_entries(&self, offset: u64, max: usize) -> Result<Vec<DirEntry>> {
        let mut all = vec![
            DirEntry {
                ino: SNAPDIR_INO,
                offset: 1,
                kind: FileType::Directory,
                name: b".".to_vec(),
            },
            DirEntry {
                ino: ROOT_INO,
                offset: 2,
                kind: FileType::Directory,
                name: b"..".to_vec(),
            },
        ];
        for (i, (name, id)) in self.snapshots().into_iter().enumerate() {
            all.push(DirEntry {
                ino: encode(self.slot_for(id)?, ROOT_INO)?,
                offset: 3 + i as u64,
                kind: FileType::Directory,
                name: name.into_bytes(),
            });
        }
        Ok(all
            .into_iter()
            .filter(|e| e.offset > offset)
            .take(max)
            .collect())
    }

    /// A live command; a snapshot delete closes that snapshot's view
    /// first, and a create or delete makes the name stale in the kernel.
    fn control_live(&self, words: &[&str]) -> std::result::Result<String, ControlError> {
        if let ["snapshot", "create" | "delete", name] = words {
            let mut stale = self.stale.lock();
            if stale.len() < 1024 {
                stale.push((SNAPDIR_INO, name.as_bytes().to_vec()));
            }
        }
        if let ["snapshot", "delete", name] = words {
            let id = self.snapshots().into_iter().find(|(n, _)| n == name);
            if let Some((_, id)) = id {
                let mut v = self.views.write();
                if let Some(s) = v.by_id.remove(&id) {
                    // The slot stays taken: its numbers must not name
                    // another snapshot's inodes.
                    v.slots[s - FIRST_SNAP_SLOT] = Slot { id: None, fs: None };
                }
            }
        }
        self.live.control(words)
    }
}

/// `.snapshots` in the root is taken: nothing may be made under it.
fn reserved(parent: Ino, name: &OsStr) -> Result<()> {
    match parent == ROOT_INO && name == SNAPSHOTS_DIR {
        true => Err(FsError::Exists),
        false => Ok(()),
    }
}

/// Both inodes in one slot, or EXDEV.
fn same_slot(a: Ino, b: Ino) -> Result<()> {
    match slot_of(a) == slot_of(b) {
        true => Ok(()),
        false => Err(FsError::CrossDevice),
    }
}

impl FileSystem for SnapshotDir {
    fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr> {
        if parent == SNAPDIR_INO {
            return match name.as_encoded_bytes() {
                b"." => self.snapdir_attr(),
                b".." => self.live.lookup(ROOT_INO, OsStr::new(".")),
                _ => self.lookup_snapshot(name),
            };
        }
        if parent == ROOT_INO && name == SNAPSHOTS_DIR {
            return self.snapdir_attr();
        }
        let (s, fs, p) = self.target(parent)?;
        attr_in(s, fs.lookup(p, name)?)
    }

    fn forget(&self, ino: Ino, nlookup: u64) {
        if let Ok((_, fs, i)) = self.target(ino) {
            fs.forget(i, nlookup);
        }
    }

    fn getattr(&self, ino: Ino) -> Result<Attr> {
        if ino == SNAPDIR_INO {
            return self.snapdir_attr();
        }
        let (s, fs, i) = self.target(ino)?;
        attr_in(s, fs.getattr(i)?)
    }

    fn setattr(&self, req: &Request, ino: Ino, set: &SetAttr, fh: Option<Fh>) -> Result<Attr> {
        let (s, fs, i) = self.target(ino)?;
        attr_in(s, fs.setattr(req, i, set, fh.map(fh_inner))?)
    }

    fn mknod(
        &self,
        req: &Request,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        rdev: u64,
    ) -> Result<Attr> {
        reserved(parent, name)?;
        let (s, fs, p) = self.target(parent)?;
        attr_in(s, fs.mknod(req, p, name, mode, rdev)?)
    }

    fn mkdir(&self, req: &Request, parent: Ino, name: &OsStr, mode: u32) -> Result<Attr> {
        reserved(parent, name)?;
        let (s, fs, p) = self.target(parent)?;
        attr_in(s, fs.mkdir(req, p, name, mode)?)
    }

    fn unlink(&self, parent: Ino, name: &OsStr) -> Result<()> {
        let (_, fs, p) = self.target(parent)?;
        fs.unlink(p, name)
    }

    fn rmdir(&self, parent: Ino, name: &OsStr) -> Result<()> {
        let (_, fs, p) = self.target(parent)?;
        fs.rmdir(p, name)
    }

    fn symlink(&self, req: &Request, parent: Ino, name: &OsStr, target: &OsStr) -> Result<Attr> {
        reserved(parent, name)?;
        let (s, fs, p) = self.target(parent)?;
        attr_in(s, fs.symlink(req, p, name, target)?)
    }

    fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        let (_, fs, i) = self.target(ino)?;
        fs.readlink(i)
    }

    fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
    ) -> Result<()> {
        reserved(parent, name)?;
        reserved(newparent, newname)?;
        same_slot(parent, newparent)?;
        let (_, fs, p) = self.target(parent)?;
        fs.rename(p, name, inner(newparent), newname, flags)
    }

    fn link(&self, ino: Ino, newparent: Ino, newname: &OsStr) -> Result<Attr> {
        reserved(newparent, newname)?;
        same_slot(ino, newparent)?;
        let (s, fs, i) = self.target(ino)?;
        attr_in(s, fs.link(i, inner(newparent), newname)?)
    }

    fn open(&self, ino: Ino, flags: i32) -> Result<Fh> {
        let (s, fs, i) = self.target(ino)?;
        // As on a read-only mount: a snapshot opens for reading only.
        if s != 0 && flags & libc::O_ACCMODE != libc::O_RDONLY {
            return Err(FsError::ReadOnly);
        }
        fh_in(s, fs.open(i, flags)?)
    }

    fn create(
        &self,
        req: &Request,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<(Attr, Fh)> {
        reserved(parent, name)?;
        let (s, fs, p) = self.target(parent)?;
        let (a, fh) = fs.create(req, p, name, mode, flags)?;
        Ok((attr_in(s, a)?, fh_in(s, fh)?))
    }

    fn read(&self, ino: Ino, fh: Fh, offset: u64, size: u32) -> Result<Vec<u8>> {
        let (_, fs, i) = self.target(ino)?;
        fs.read(i, fh_inner(fh), offset, size)
    }

    fn write(&self, ino: Ino, fh: Fh, offset: u64, data: &[u8]) -> Result<u32> {
        let (_, fs, i) = self.target(ino)?;
        fs.write(i, fh_inner(fh), offset, data)
    }

    fn flush(&self, ino: Ino, fh: Fh) -> Result<()> {
        let (_, fs, i) = self.target(ino)?;
        fs.flush(i, fh_inner(fh))
    }

    fn release(&self, ino: Ino, fh: Fh) -> Result<()> {
        let (_, fs, i) = self.target(ino)?;
        fs.release(i, fh_inner(fh))
    }

    fn fsync(&self, ino: Ino, fh: Fh, datasync: bool) -> Result<()> {
        let (_, fs, i) = self.target(ino)?;
        fs.fsync(i, fh_inner(fh), datasync)
    }

    fn opendir(&self, ino: Ino, flags: i32) -> Result<Fh> {
        if ino == SNAPDIR_INO {
            return Ok(SNAPDIR_FH);
        }
        let (s, fs, i) = self.target(ino)?;
        fh_in(s, fs.opendir(i, flags)?)
    }

    fn readdir(&self, ino: Ino, fh: Fh, offset: u64, max_entries: usize) -> Result<Vec<DirEntry>> {
        if ino == SNAPDIR_INO {
            return self.snapdir_entries(offset, max_entries);
        }
        let (s, fs, i) = self.target(ino)?;
        let mut es = fs.readdir(i, fh_inner(fh), offset, max_entries)?;
        for e in &mut es {
            e.ino = encode(s, e.ino)?;
        }
        Ok(es)
    }

    fn readdirplus(
        &self,
        ino: Ino,
        fh: Fh,
        offset: u64,
        max_entries: usize,
    ) -> Result<Vec<(DirEntry, Attr)>> {
        if ino == SNAPDIR_INO {
            let mut out = Vec::new();
            for e in self.snapdir_entries(offset, max_entries)? {
                let a = match e.name.as_slice() {
                    b"." => self.snapdir_attr()?,
                    b".." => self.live.getattr(ROOT_INO)?,
                    // Entries other than `.` and `..` count a lookup.
                    n => self.lookup_snapshot(std::os::unix::ffi::OsStrExt::from_bytes(n))?,
                };
                out.push((e, a));
            }
            return Ok(out);
        }
        let (s, fs, i) = self.target(ino)?;
        let mut es = fs.readdirplus(i, fh_inner(fh), offset, max_entries)?;
        for (e, a) in &mut es {
            e.ino = encode(s, e.ino)?;
            a.ino = encode(s, a.ino)?;
        }
        Ok(es)
    }

    fn releasedir(&self, ino: Ino, fh: Fh) -> Result<()> {
        if ino == SNAPDIR_INO {
            return Ok(());
        }
        let (_, fs, i) = self.target(ino)?;
        fs.releasedir(i, fh_inner(fh))
    }

    fn fsyncdir(&self, ino: Ino, fh: Fh, datasync: bool) -> Result<()> {
        if ino == SNAPDIR_INO {
            return Ok(());
        }
        let (_, fs, i) = self.target(ino)?;
        fs.fsyncdir(i, fh_inner(fh), datasync)
    }

    fn statfs(&self, _ino: Ino) -> Result<StatFs> {
        self.live.statfs(ROOT_INO)
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Result<()> {
        let (_, fs, i) = self.target(ino)?;
        fs.setxattr(req, i, name, value, flags)
    }

    fn getxattr(&self, ino: Ino, name: &OsStr, size: u32) -> Result<XattrReply> {
        if ino == SNAPDIR_INO {
            return Err(FsError::NoData);
        }
        let (_, fs, i) = self.target(ino)?;
        fs.getxattr(i, name, size)
    }

    fn listxattr(&self, ino: Ino, size: u32) -> Result<XattrReply> {
        if ino == SNAPDIR_INO {
            return Ok(match size {
                0 => XattrReply::Size(0),
                _ => XattrReply::Data(Vec::new()),
            });
        }
        let (_, fs, i) = self.target(ino)?;
        fs.listxattr(i, size)
    }

    fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<()> {
        let (_, fs, i) = self.target(ino)?;
        fs.removexattr(i, name)
    }

    fn access(&self, req: &Request, ino: Ino, mask: i32) -> Result<()> {
        if ino == SNAPDIR_INO {
            return match mask & libc::W_OK {
                0 => Ok(()),
                _ => Err(FsError::ReadOnly),
            };
        }
        let (_, fs, i) = self.target(ino)?;
        fs.access(req, i, mask)
    }

    fn fallocate(&self, ino: Ino, fh: Fh, offset: u64, length: u64, mode: i32) -> Result<()> {
        let (_, fs, i) = self.target(ino)?;
        fs.fallocate(i, fh_inner(fh), offset, length, mode)
    }

    fn lseek(&self, ino: Ino, fh: Fh, offset: i64, whence: Whence) -> Result<u64> {
        let (_, fs, i) = self.target(ino)?;
        fs.lseek(i, fh_inner(fh), offset, whence)
    }

    fn copy_file_range(
        &self,
        ino_in: Ino,
        fh_in_: Fh,
        offset_in: u64,
        ino_out: Ino,
        fh_out: Fh,
        offset_out: u64,
        len: u64,
        flags: u32,
    ) -> Result<u64> {
        same_slot(ino_in, ino_out)?;
        let (_, fs, i) = self.target(ino_in)?;
        fs.copy_file_range(
            i,
            fh_inner(fh_in_),
            offset_in,
            inner(ino_out),
            fh_inner(fh_out),
            offset_out,
            len,
            flags,
        )
    }

    fn clone_range(
        &self,
        ino_in: Ino,
        fh_in_: Fh,
        offset_in: u64,
        ino_out: Ino,
        fh_out: Fh,
        offset_out: u64,
        len: u64,
    ) -> Result<u64> {
        same_slot(ino_in, ino_out)?;
        let (_, fs, i) = self.target(ino_in)?;
        let (o, fo) = (inner(ino_out), fh_inner(fh_out));
        fs.clone_range(i, fh_inner(fh_in_), offset_in, o, fo, offset_out, len)
    }

    fn dedupe_range(
        &self,
        ino_in: Ino,
        fh_in_: Fh,
        offset_in: u64,
        ino_out: Ino,
        fh_out: Fh,
        offset_out: u64,
        len: u64,
    ) -> Result<Option<u64>> {
        same_slot(ino_in, ino_out)?;
        let (_, fs, i) = self.target(ino_in)?;
        let (o, fo) = (inner(ino_out), fh_inner(fh_out));
        fs.dedupe_range(i, fh_inner(fh_in_), offset_in, o, fo, offset_out, len)
    }

    fn set_writable(&self, writable: bool) -> Result<()> {
        self.live.set_writable(writable)
    }

    fn shutdown(&self) -> Result<()> {
        self.live.shutdown()
    }

    fn control(&self, words: &[&str]) -> std::result::Result<String, ControlError> {
        self.control_live(words)
    }

    fn tmpfile(&self, req: &Request, parent: Ino, mode: u32, flags: i32) -> Result<(Attr, Fh)> {
        let (s, fs, p) = self.target(parent)?;
        let (a, fh) = fs.tmpfile(req, p, mode, flags)?;
        Ok((attr_in(s, a)?, fh_in(s, fh)?))
    }

    fn take_stale_entries(&self) -> Vec<(Ino, Vec<u8>)> {
        std::mem::take(&mut *self.stale.lock())
    }

    fn syncfs(&self) -> Result<()> {
        self.live.syncfs()
    }
}
