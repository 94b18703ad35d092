//! rename(2) with its flags: RENAME_NOREPLACE, RENAME_EXCHANGE, and the
//! plain rename that replaces a target. One short function per case
//! (exchange, replace, drop the target, move the source), as in `diskfs`,
//! whose checks run in the same order: the differential test compares the
//! errno of every call, so which check fails first is part of the
//! behaviour.
//!
//! Every rule is checked before the first change, so a rename that fails
//! leaves the tree as it was. A directory's link count follows its
//! subdirectories' `..` entries, which is why moving a directory between
//! parents moves a link from one parent to the other.

use std::ffi::OsStr;
use std::time::SystemTime;

use super::inode::{Data, Inode};
use super::{bytes, RamFs, State};
use crate::error::{FsError, Result};
use crate::types::*;
use crate::validate::check_rename;

/// One rename, its source entry found and its names checked.
struct Move<'a> {
    parent: Ino,
    name: &'a [u8],
    newparent: Ino,
    newname: &'a [u8],
    src: Ino,
    src_is_dir: bool,
    now: SystemTime,
}

fn into_own_subtree() -> FsError {
    FsError::InvalidArgument("directory moved into its own subtree")
}

impl RamFs {
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
        let mut st = self.state.lock();
        let src = st.dir(parent)?.get(name).ok_or(FsError::NotFound)?;
        let dst = st.live_dir(newparent)?.get(newname);
        let m = Move {
            parent,
            name,
            newparent,
            newname,
            src,
            src_is_dir: st.get(src)?.kind == FileType::Directory,
            now: SystemTime::now(),
        };
        if flags == RENAME_EXCHANGE {
            st.exchange(&m, dst.ok_or(FsError::NotFound)?)
        } else {
            st.replace(&m, dst, flags)
        }
    }
}

impl State {
    /// Is `ancestor` equal to `ino` or one of its ancestors?
    fn is_ancestor(&self, ancestor: Ino, mut ino: Ino) -> bool {
        // Bounded by the number of inodes: a walk cannot loop forever.
        for _ in 0..=self.inodes.len() {
            if ino == ancestor {
                return true;
            }
            if ino == ROOT_INO {
                return false;
            }
            match self.inodes.get(&ino).and_then(Inode::dir) {
                Some(d) => ino = d.parent,
                None => return false,
            }
        }
        false
    }

    /// RENAME_EXCHANGE: the two entries swap inodes, keeping their cookies.
    fn exchange(&mut self, m: &Move<'_>, dst: Ino) -> Result<()> {
        let (src, parent, newparent, now) = (m.src, m.parent, m.newparent, m.now);
        if src == dst {
            return Ok(());
        }
        let dst_is_dir = self.get(dst)?.kind == FileType::Directory;
        if parent != newparent
            && ((m.src_is_dir && self.is_ancestor(src, newparent))
                || (dst_is_dir && self.is_ancestor(dst, parent)))
        {
            return Err(into_own_subtree());
        }
        self.inode(parent)
            .dir_mut()
            .expect("dir")
            .replace(m.name, dst);
        self.inode(newparent)
            .dir_mut()
            .expect("dir")
            .replace(m.newname, src);
        if parent != newparent {
            if let Some(d) = self.inode(src).dir_mut() {
                d.parent = newparent;
            }
            if let Some(d) = self.inode(dst).dir_mut() {
                d.parent = parent;
            }
            match (m.src_is_dir, dst_is_dir) {
                (true, false) => {
                    self.inode(parent).nlink -= 1;
                    self.inode(newparent).nlink += 1;
                }
                (false, true) => {
                    self.inode(newparent).nlink -= 1;
                    self.inode(parent).nlink += 1;
                }
                _ => {}
            }
        }
        for ino in [src, dst] {
            self.inode(ino).ctime = now;
        }
        for ino in [parent, newparent] {
            self.inode(ino).touch_modified(now);
        }
        Ok(())
    }

    /// A plain rename or RENAME_NOREPLACE: checks, then the move.
    fn replace(&mut self, m: &Move<'_>, dst: Option<Ino>, flags: u32) -> Result<()> {
        if m.src_is_dir && self.is_ancestor(m.src, m.newparent) {
            return Err(into_own_subtree());
        }
        if let Some(dst) = dst {
            if flags & RENAME_NOREPLACE != 0 {
                return Err(FsError::Exists);
            }
            if dst == m.src {
                return Ok(());
            }
            let dst_inode = self.get(dst)?;
            match (m.src_is_dir, dst_inode.kind == FileType::Directory) {
                (true, false) => return Err(FsError::NotDir),
                (false, true) => return Err(FsError::IsDir),
                (true, true) if !dst_inode.dir().expect("dir").is_empty() => {
                    return Err(FsError::NotEmpty)
                }
                _ => {}
            }
        }
        let whiteout = flags & RENAME_WHITEOUT != 0;
        if whiteout && self.inodes.len() as u64 >= self.config.max_inodes {
            return Err(FsError::NoSpace);
        }
        // All checks passed: change.
        self.inode(m.parent).dir_mut().expect("dir").remove(m.name);
        if let Some(dst) = dst {
            self.drop_target(m, dst);
        }
        self.move_source(m);
        if let Some(dst) = dst {
            self.maybe_free(dst);
        }
        if whiteout {
            self.add_whiteout(m.parent, m.name)?;
        }
        Ok(())
    }

    /// The whiteout RENAME_WHITEOUT leaves: a character device 0:0 owned
    /// by root, with no lookup counted (the kernel gets no entry for it).
    fn add_whiteout(&mut self, parent: Ino, name: &[u8]) -> Result<()> {
        let a = self.create_node(
            &Request::root(),
            parent,
            name,
            FileType::CharDevice,
            0,
            0,
            Data::Special,
        )?;
        self.inode(a.ino).lookups -= 1;
        Ok(())
    }

    /// The replaced entry goes; its inode loses a link (a directory all).
    /// Freeing it waits until the source has moved in.
    fn drop_target(&mut self, m: &Move<'_>, dst: Ino) {
        self.inode(m.newparent)
            .dir_mut()
            .expect("dir")
            .remove(m.newname);
        let d = self.inode(dst);
        d.ctime = m.now;
        if d.kind == FileType::Directory {
            d.nlink = 0;
            self.inode(m.newparent).nlink -= 1;
        } else {
            d.nlink -= 1;
        }
    }

    /// The source's new entry, its `..` and the link counts of both parents.
    fn move_source(&mut self, m: &Move<'_>) {
        let (src, parent, newparent, now) = (m.src, m.parent, m.newparent, m.now);
        self.inode(newparent)
            .dir_mut()
            .expect("dir")
            .insert(m.newname, src);
        if m.src_is_dir && parent != newparent {
            self.inode(src).dir_mut().expect("dir").parent = newparent;
            self.inode(parent).nlink -= 1;
            self.inode(newparent).nlink += 1;
        }
        self.inode(src).ctime = now;
        self.inode(parent).touch_modified(now);
        self.inode(newparent).touch_modified(now);
    }
}
