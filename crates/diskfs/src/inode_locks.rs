//! Striped locks by inode number, two tables of them in `DiskFs`:
//!
//! - `files`: every change of one file's data or size (write, fallocate,
//!   truncate, copy_file_range, record size, the freeing of an orphan, the
//!   replay of a logged write) holds that file's lock, so each is atomic
//!   against the others on the file (a write in several pieces, an
//!   `O_APPEND` write's offset and its data) without the namespace lock.
//! - `dirs`: every namespace change holds its directories' locks (create,
//!   unlink, link: the parent; rename: both parents), and a lookup holds
//!   its parent's shared, so a name cannot go (and its inode be freed)
//!   between finding it and counting the kernel's reference to it.
//!
//! Changes of different files and directories meet only at the store's
//! tree lock, for the span of their tree edits; each check and change is
//! one transaction under it, so a rename's loop check sees every other
//! rename whole. Two inodes that share a stripe are serialised, which is
//! only slower. Lock order: `dirs` (two at once only in stripe order, see
//! [`InodeLocks::lock_two`]), the namespace state (`DiskFs::state`, a
//! short lock for the reference counts and orphans), `files`, the
//! handles, the store's locks. Freezing and shutting down take every
//! stripe of both tables ([`InodeLocks::lock_all`]), so no change is half
//! made when they act.

use aegis_vfs::Ino;
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Stripes in the table: enough that a few busy files rarely share one.
const STRIPES: usize = 64;

pub(crate) struct InodeLocks {
    stripes: Box<[RwLock<()>]>,
}

pub(crate) type InodeGuard<'a> = RwLockWriteGuard<'a, ()>;

impl InodeLocks {
    pub(crate) fn new() -> InodeLocks {
        InodeLocks {
            stripes: (0..STRIPES).map(|_| RwLock::new(())).collect(),
        }
    }

    fn stripe(ino: Ino) -> usize {
        // Inode numbers are dense: the low bits spread them.
        (ino % STRIPES as u64) as usize
    }

    /// Lock inode `ino` for a change.
    pub(crate) fn lock(&self, ino: Ino) -> InodeGuard<'_> {
        self.stripes[Self::stripe(ino)].write()
    }

    /// Lock inode `ino` shared (a lookup in a directory).
    pub(crate) fn read(&self, ino: Ino) -> RwLockReadGuard<'_, ()> {
        self.stripes[Self::stripe(ino)].read()
    }

    /// Lock inodes `a` and `b` (copy_file_range, rename), lower stripe
    /// first so that two such calls in opposite directions cannot
    /// deadlock; one guard when they share a stripe.
    pub(crate) fn lock_two(&self, a: Ino, b: Ino) -> (InodeGuard<'_>, Option<InodeGuard<'_>>) {
        let (x, y) = (Self::stripe(a), Self::stripe(b));
        if x == y {
            return (self.stripes[x].write(), None);
        }
        let (lo, hi) = (x.min(y), x.max(y));
        let first = self.stripes[lo].write();
        (first, Some(self.stripes[hi].write()))
    }

    /// Every stripe, in order: no change under this table is in flight
    /// while the guards live.
    pub(crate) fn lock_all(&self) -> Vec<InodeGuard<'_>> {
        self.stripes.iter().map(|s| s.write()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn opposite_pairs_never_deadlock() {
        // Two threads locking the same two files in opposite argument
        // order, many times: stripe order makes this finish.
        let locks = Arc::new(InodeLocks::new());
        let spawn = |a: Ino, b: Ino| {
            let l = locks.clone();
            std::thread::spawn(move || {
                for _ in 0..20_000 {
                    let _g = l.lock_two(a, b);
                }
            })
        };
        let (t1, t2) = (spawn(3, 70), spawn(70, 3));
        t1.join().unwrap();
        t2.join().unwrap();
    }

    #[test]
    fn one_guard_when_files_share_a_stripe() {
        let locks = InodeLocks::new();
        let (_g, second) = locks.lock_two(5, 5 + STRIPES as u64);
        assert!(second.is_none(), "a stripe locked twice would deadlock");
        drop(_g);
        let (_g, second) = locks.lock_two(5, 6);
        assert!(second.is_some());
    }
}
