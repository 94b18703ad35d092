//! rename(2) with its flags: RENAME_NOREPLACE, RENAME_EXCHANGE, and the
//! plain rename that replaces a target. Every rule is checked before the
//! first change (the same checks, in the same order, as `ramfs`).

use std::ffi::OsStr;

use aegis_fs::intent_log::LogRec;
use aegis_fs::posix::inode::S_IFDIR;
use aegis_fs::{AllocClass, ObjectRead};
use aegis_vfs::validate::*;
use aegis_vfs::*;

use crate::diskfs::*;
use crate::inode::*;

impl DiskFs {
    pub(crate) fn rename_entry(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
    ) -> Result<()>{
        let (name, newname) = (bytes(name), bytes(newname));
        check_rename(name, newname, flags)?;
        let mut st = self.state.lock();
        let st = &mut *st;
        let limit = st.meta.inodes;
        let rec = LogRec::Rename {
            parent,
            name: name.to_vec(),
            newparent,
            newname: newname.to_vec(),
            flags,
        };
        let freed = self.tx(
            &mut st.meta,
            2 * NAMESPACE_OPS,
            AllocClass::Reserved,
            |tx| {
                // Kept only if the rename succeeds (a no-op one replays as one).
                tx.log(rec.clone());
                let now = tx.now;
                let p = tx.inode(parent)?;
                if !p.is_dir() {
                    return Err(FsError::NotDir.into());
                }
                let sf = tx.find_entry(parent, name)?.ok_or(FsError::NotFound)?;
                let np = tx.inode(newparent)?;
                if !np.is_dir() {
                    return Err(FsError::NotDir.into());
                }
                if np.nlink == 0 {
                    return Err(FsError::NotFound.into());
                }
                let df = tx.find_entry(newparent, newname)?;
                let src = sf.ino;
                let src_is_dir = sf.file_type == S_IFDIR;

                if flags == RENAME_EXCHANGE {
                    let df = df.ok_or(FsError::NotFound)?;
                    let dst = df.ino;
                    if src == dst {
                        return Ok(None);
                    }
                    let dst_is_dir = df.file_type == S_IFDIR;
                    if parent != newparent
                        && ((src_is_dir && tx.is_ancestor(src, newparent, limit)?)
                            || (dst_is_dir && tx.is_ancestor(dst, parent, limit)?))
                    {
                        return Err(FsError::InvalidArgument(
                            "directory moved into its own subtree",
                        )
                        .into());
                    }
                    tx.repoint_entry(parent, name, &sf, dst, df.file_type)?;
                    tx.repoint_entry(newparent, newname, &df, src, sf.file_type)?;
                    let mut s = tx.inode(src)?;
                    let mut d = tx.inode(dst)?;
                    if parent != newparent {
                        if src_is_dir {
                            s.parent = newparent;
                        }
                        if dst_is_dir {
                            d.parent = parent;
                        }
                    }
                    s.ctime = now;
                    d.ctime = now;
                    tx.put_inode(src, &s)?;
                    tx.put_inode(dst, &d)?;
                    let mut p = tx.inode(parent)?;
                    let mut np = tx.inode(newparent)?;
                    if parent != newparent {
                        match (src_is_dir, dst_is_dir) {
                            (true, false) => {
                                p.nlink -= 1;
                                np.nlink += 1;
                            }
                            (false, true) => {
                                np.nlink -= 1;
                                p.nlink += 1;
                            }
                            _ => {}
                        }
                    }
                    touch_modified(&mut p, now);
                    tx.put_inode(parent, &p)?;
                    if parent != newparent {
                        touch_modified(&mut np, now);
                        tx.put_inode(newparent, &np)?;
                    }
                    return Ok(None);
                }

                if src_is_dir && tx.is_ancestor(src, newparent, limit)? {
                    return Err(FsError::InvalidArgument(
                        "directory moved into its own subtree",
                    )
                    .into());
                }
                if let Some(df) = &df {
                    if flags == RENAME_NOREPLACE {
                        return Err(FsError::Exists.into());
                    }
                    if df.ino == src {
                        return Ok(None);
                    }
                    let d = tx.inode(df.ino)?;
                    match (src_is_dir, d.is_dir()) {
                        (true, false) => return Err(FsError::NotDir.into()),
                        (false, true) => return Err(FsError::IsDir.into()),
                        (true, true) if d.size != 0 => return Err(FsError::NotEmpty.into()),
                        _ => {}
                    }
                }
                // All checks passed: change.
                let mut p = tx.inode(parent)?;
                tx.remove_entry(parent, &mut p, name, &sf)?;
                tx.put_inode(parent, &p)?;
                let mut freed = None;
                if let Some(df) = &df {
                    let mut np = tx.inode(newparent)?;
                    tx.remove_entry(newparent, &mut np, newname, df)?;
                    let mut d = tx.inode(df.ino)?;
                    d.ctime = now;
                    if d.is_dir() {
                        d.nlink = 0;
                        np.nlink -= 1;
                    } else {
                        d.nlink -= 1;
                    }
                    tx.put_inode(newparent, &np)?;
                    tx.put_inode(df.ino, &d)?;
                    if d.nlink == 0 {
                        tx.add_orphan(df.ino)?;
                        freed = Some(df.ino);
                    }
                }
                let mut np = tx.inode(newparent)?;
                tx.add_entry(newparent, &mut np, newname, src, sf.file_type)?;
                let mut s = tx.inode(src)?;
                if src_is_dir && parent != newparent {
                    s.parent = newparent;
                    np.nlink += 1;
                    tx.put_inode(newparent, &np)?;
                    let mut p = tx.inode(parent)?;
                    p.nlink -= 1;
                    tx.put_inode(parent, &p)?;
                } else {
                    tx.put_inode(newparent, &np)?;
                }
                s.ctime = now;
                tx.put_inode(src, &s)?;
                for d in [parent, newparent] {
                    let mut r = tx.inode(d)?;
                    touch_modified(&mut r, now);
                    tx.put_inode(d, &r)?;
                }
                Ok(freed)
            },
        )?;
        self.orphaned(st, freed);
        Ok(())
    }

}
