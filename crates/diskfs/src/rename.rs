//! rename(2) with its flags: RENAME_NOREPLACE, RENAME_EXCHANGE,
//! RENAME_WHITEOUT (with or without NOREPLACE), and the plain rename that
//! replaces a target. Every rule is checked before the
//! first change (the same checks, in the same order, as `ramfs`).
//!
//! Link counts read from the device are decremented with `saturating_sub`:
//! a damaged count must not panic, and fsck reports it.

use std::ffi::OsStr;

use aegis_fs::intent_log::LogRec;
use aegis_fs::posix::inode::S_IFDIR;
use aegis_fs::posix::Found;
use aegis_fs::{AllocClass, ObjectRead, Tx};
use aegis_vfs::validate::check_rename;
use aegis_vfs::{FsError, Ino, Result, RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT};

use crate::diskfs::{bytes, DiskFs, NAMESPACE_OPS};
use crate::error::TxResult;
use crate::inode::touch_modified;

/// One rename, its source entry found and its names checked.
struct Move<'a> {
    parent: Ino,
    name: &'a [u8],
    newparent: Ino,
    newname: &'a [u8],
    src: Found,
    /// The most steps an ancestor walk may take: the inode count.
    limit: u64,
    now: i64,
    /// Generation for a whiteout inode.
    generation: u64,
}

impl Move<'_> {
    fn src_is_dir(&self) -> bool {
        self.src.file_type == S_IFDIR
    }
}

fn into_own_subtree() -> crate::error::Error {
    FsError::InvalidArgument("directory moved into its own subtree").into()
}

impl DiskFs {
    pub(crate) fn rename_entry(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
    ) -> Result<()> {
        let (name, newname) = (bytes(name), bytes(newname));
        check_rename(name, newname, flags)?;
        let _dirs = self.dirs.lock_two(parent, newparent);
        let limit = self.meta()?.inodes;
        let generation = self.store.open_txg();
        let rec = LogRec::Rename {
            parent,
            name: name.to_vec(),
            newparent,
            newname: newname.to_vec(),
            flags,
        };
        let ops = 2 * NAMESPACE_OPS;
        let freed = self.tx(ops, AllocClass::Reserved, |tx| {
            // Kept only if the rename succeeds (a no-op one replays as one).
            tx.log(rec.clone());
            let p = tx.inode(parent)?;
            if !p.is_dir() {
                return Err(FsError::NotDir.into());
            }
            let src = tx.find_entry(parent, name)?.ok_or(FsError::NotFound)?;
            let np = tx.inode(newparent)?;
            if !np.is_dir() {
                return Err(FsError::NotDir.into());
            }
            if np.nlink == 0 {
                return Err(FsError::NotFound.into());
            }
            let dst = tx.find_entry(newparent, newname)?;
            let m = Move {
                parent,
                name,
                newparent,
                newname,
                src,
                limit,
                now: tx.now,
                generation,
            };
            if flags == RENAME_EXCHANGE {
                exchange(tx, &m, dst.ok_or(FsError::NotFound)?).map(|()| None)
            } else {
                replace(tx, &m, dst, flags)
            }
        })?;
        self.orphaned(freed);
        Ok(())
    }
}

/// RENAME_EXCHANGE: the two entries swap inodes, keeping their cookies.
fn exchange(tx: &mut Tx<'_>, m: &Move<'_>, df: Found) -> TxResult<()> {
    let (src, dst) = (m.src.ino, df.ino);
    if src == dst {
        return Ok(());
    }
    let (parent, newparent) = (m.parent, m.newparent);
    let (src_is_dir, dst_is_dir) = (m.src_is_dir(), df.file_type == S_IFDIR);
    if parent != newparent
        && ((src_is_dir && tx.is_ancestor(src, newparent, m.limit)?)
            || (dst_is_dir && tx.is_ancestor(dst, parent, m.limit)?))
    {
        return Err(into_own_subtree());
    }
    tx.repoint_entry(parent, m.name, &m.src, dst, df.file_type)?;
    tx.repoint_entry(newparent, m.newname, &df, src, m.src.file_type)?;
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
    s.ctime = m.now;
    d.ctime = m.now;
    tx.put_inode(src, &s)?;
    tx.put_inode(dst, &d)?;
    let mut p = tx.inode(parent)?;
    let mut np = tx.inode(newparent)?;
    if parent != newparent {
        match (src_is_dir, dst_is_dir) {
            (true, false) => {
                p.nlink = p.nlink.saturating_sub(1);
                np.nlink += 1;
            }
            (false, true) => {
                np.nlink = np.nlink.saturating_sub(1);
                p.nlink += 1;
            }
            _ => {}
        }
    }
    touch_modified(&mut p, m.now);
    tx.put_inode(parent, &p)?;
    if parent != newparent {
        touch_modified(&mut np, m.now);
        tx.put_inode(newparent, &np)?;
    }
    Ok(())
}

/// A plain rename or RENAME_NOREPLACE: checks, then the move. Returns the
/// replaced inode if it lost its last name (an orphan now).
fn replace(tx: &mut Tx<'_>, m: &Move<'_>, dst: Option<Found>, flags: u32) -> TxResult<Option<Ino>> {
    if m.src_is_dir() && tx.is_ancestor(m.src.ino, m.newparent, m.limit)? {
        return Err(into_own_subtree());
    }
    if let Some(df) = &dst {
        if flags & RENAME_NOREPLACE != 0 {
            return Err(FsError::Exists.into());
        }
        if df.ino == m.src.ino {
            return Ok(None);
        }
        let d = tx.inode(df.ino)?;
        match (m.src_is_dir(), d.is_dir()) {
            (true, false) => return Err(FsError::NotDir.into()),
            (false, true) => return Err(FsError::IsDir.into()),
            (true, true) if d.size != 0 => return Err(FsError::NotEmpty.into()),
            _ => {}
        }
    }
    // All checks passed: change.
    let mut p = tx.inode(m.parent)?;
    tx.remove_entry(m.parent, &mut p, m.name, &m.src)?;
    tx.put_inode(m.parent, &p)?;
    let freed = match &dst {
        Some(df) => drop_target(tx, m, df)?,
        None => None,
    };
    move_source(tx, m)?;
    if flags & RENAME_WHITEOUT != 0 {
        crate::namespace::add_whiteout(tx, m.parent, m.name, m.generation)?;
    }
    Ok(freed)
}

/// The replaced entry goes; its inode loses a link (a directory all).
fn drop_target(tx: &mut Tx<'_>, m: &Move<'_>, df: &Found) -> TxResult<Option<Ino>> {
    let mut np = tx.inode(m.newparent)?;
    tx.remove_entry(m.newparent, &mut np, m.newname, df)?;
    let mut d = tx.inode(df.ino)?;
    d.ctime = m.now;
    if d.is_dir() {
        d.nlink = 0;
        np.nlink = np.nlink.saturating_sub(1);
    } else {
        d.nlink = d.nlink.saturating_sub(1);
    }
    tx.put_inode(m.newparent, &np)?;
    tx.put_inode(df.ino, &d)?;
    if d.nlink == 0 {
        tx.add_orphan(df.ino)?;
        return Ok(Some(df.ino));
    }
    Ok(None)
}

/// The source's new entry, its `..` and the link counts of both parents.
fn move_source(tx: &mut Tx<'_>, m: &Move<'_>) -> TxResult<()> {
    let (src, parent, newparent) = (m.src.ino, m.parent, m.newparent);
    let mut np = tx.inode(newparent)?;
    tx.add_entry(newparent, &mut np, m.newname, src, m.src.file_type)?;
    let mut s = tx.inode(src)?;
    if m.src_is_dir() && parent != newparent {
        s.parent = newparent;
        np.nlink += 1;
        tx.put_inode(newparent, &np)?;
        let mut p = tx.inode(parent)?;
        p.nlink = p.nlink.saturating_sub(1);
        tx.put_inode(parent, &p)?;
    } else {
        tx.put_inode(newparent, &np)?;
    }
    s.ctime = m.now;
    tx.put_inode(src, &s)?;
    for d in [parent, newparent] {
        let mut r = tx.inode(d)?;
        touch_modified(&mut r, m.now);
        tx.put_inode(d, &r)?;
    }
    Ok(())
}
