//! The mount table: which filesystem answers for which place. Mount 0 is
//! the root filesystem; every other mount covers a directory of another
//! mount (its *mount point*, a [`Loc`]), and a walk that reaches a covered
//! directory continues at the root of the mount on it. `..` from a mount's
//! root goes to its mount point's parent.
//!
//! Invariants: a place is covered by at most one mount (a second mount
//! on the same path goes over the first one's root, stacking as on
//! Linux, and comes off first); a mount with mounts on it, or with open files,
//! cannot be unmounted unless forced (open files are counted by the
//! [`Mounted`] handles they hold); the root mount never goes.

use std::collections::HashMap;
use std::sync::Arc;

use super::Loc;
use crate::error::{FsError, Result};
use crate::filesystem::FileSystem;
use crate::types::ROOT_INO;

/// Index of a mount in the table.
pub type MountId = u32;

/// Mounts one table may hold.
pub const MOUNTS_MAX: usize = 4096;

/// One mounted filesystem; open files and directories hold an `Arc` of it.
pub struct Mounted {
    pub id: MountId,
    pub fs: Arc<dyn FileSystem>,
}

struct Mount {
    handle: Arc<Mounted>,
    /// The directory this mount covers; `None` for the root mount.
    covers: Option<Loc>,
}

pub(crate) struct MountTable {
    mounts: HashMap<MountId, Mount>,
    over: HashMap<Loc, MountId>,
    next: MountId,
}

impl MountTable {
    pub(crate) fn new(root: Arc<dyn FileSystem>) -> MountTable {
        let mut mounts = HashMap::new();
        let handle = Arc::new(Mounted { id: 0, fs: root });
        mounts.insert(
            0,
            Mount {
                handle,
                covers: None,
            },
        );
        MountTable {
            mounts,
            over: HashMap::new(),
            next: 1,
        }
    }

    pub(crate) fn get(&self, id: MountId) -> Result<&Arc<Mounted>> {
        self.mounts
            .get(&id)
            .map(|m| &m.handle)
            .ok_or(FsError::NotFound)
    }

    /// The root of the mount on `loc`, if one covers it.
    pub(crate) fn cross_down(&self, loc: Loc) -> Loc {
        let mut at = loc;
        // Bounded: each step moves to a newer mount.
        for _ in 0..MOUNTS_MAX {
            match self.over.get(&at) {
                Some(&m) => at = Loc::root_of(m),
                None => break,
            }
        }
        at
    }

    /// Where `..` of `loc` is looked up: for a mount's root, its mount
    /// point (repeatedly, for a mount on a mount's root); else `loc`.
    pub(crate) fn cross_up(&self, loc: Loc) -> Loc {
        let mut at = loc;
        for _ in 0..MOUNTS_MAX {
            if at.ino != ROOT_INO {
                break;
            }
            match self.mounts.get(&at.mount).and_then(|m| m.covers) {
                Some(below) => at = below,
                None => break,
            }
        }
        at
    }

    pub(crate) fn is_covered(&self, loc: Loc) -> bool {
        self.over.contains_key(&loc)
    }

    /// Mount `fs` over the directory `at`.
    pub(crate) fn mount(&mut self, at: Loc, fs: Arc<dyn FileSystem>) -> Result<MountId> {
        if self.over.contains_key(&at) {
            return Err(FsError::Busy);
        }
        if self.mounts.len() >= MOUNTS_MAX {
            return Err(FsError::NoSpace);
        }
        let id = self.next;
        self.next += 1;
        let handle = Arc::new(Mounted { id, fs });
        self.mounts.insert(
            id,
            Mount {
                handle,
                covers: Some(at),
            },
        );
        self.over.insert(at, id);
        Ok(id)
    }

    /// Take mount `id` out of the table: EINVAL for the root mount, EBUSY
    /// while mounts sit on it or (unless `force`) files are open on it.
    pub(crate) fn unmount(&mut self, id: MountId, force: bool) -> Result<Arc<Mounted>> {
        let m = self
            .mounts
            .get(&id)
            .ok_or(FsError::InvalidArgument("not a mount point"))?;
        let Some(covers) = m.covers else {
            return Err(FsError::Busy);
        };
        if self.over.keys().any(|l| l.mount == id) {
            return Err(FsError::Busy);
        }
        if !force && Arc::strong_count(&m.handle) > 1 {
            return Err(FsError::Busy);
        }
        self.over.remove(&covers);
        let m = self.mounts.remove(&id).expect("present above");
        Ok(m.handle)
    }

    /// Every mount, the root first.
    pub(crate) fn all(&self) -> Vec<Arc<Mounted>> {
        let mut v: Vec<_> = self.mounts.values().map(|m| m.handle.clone()).collect();
        v.sort_by_key(|m| m.id);
        v
    }
}
