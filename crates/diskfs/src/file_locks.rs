//! Per-file locks: every change of one file's data or size (write,
//! fallocate, truncate, copy_file_range, the freeing of an orphan, the
//! replay of a logged write) holds that file's lock, so each is atomic
//! against the others on the file (a write in several pieces, an
//! `O_APPEND` write's offset and its data) without the namespace lock.
//! Changes of different files meet only at the store's tree lock, for the
//! span of their tree edits.
//!
//! A fixed table of stripes chosen by inode number: two files that share
//! a stripe are serialised, which is only slower. Lock order: the
//! namespace lock (`DiskFs::state`), then file locks (two at once only in
//! stripe order, see [`FileLocks::lock_two`]), then the handles, then the
//! store's locks.

use aegis_vfs::Ino;
use parking_lot::{Mutex, MutexGuard};

/// Stripes in the table: enough that a few busy files rarely share one.
const STRIPES: usize = 64;

pub(crate) struct FileLocks {
    stripes: Box<[Mutex<()>]>,
}

pub(crate) type FileGuard<'a> = MutexGuard<'a, ()>;

impl FileLocks {
    pub(crate) fn new() -> FileLocks {
        FileLocks {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    fn stripe(ino: Ino) -> usize {
        // Inode numbers are dense: the low bits spread them.
        (ino % STRIPES as u64) as usize
    }

    /// Lock file `ino`.
    pub(crate) fn lock(&self, ino: Ino) -> FileGuard<'_> {
        self.stripes[Self::stripe(ino)].lock()
    }

    /// Lock files `a` and `b` (copy_file_range), lower stripe first so
    /// that two such calls in opposite directions cannot deadlock; one
    /// guard when they share a stripe.
    pub(crate) fn lock_two(&self, a: Ino, b: Ino) -> (FileGuard<'_>, Option<FileGuard<'_>>) {
        let (x, y) = (Self::stripe(a), Self::stripe(b));
        if x == y {
            return (self.stripes[x].lock(), None);
        }
        let (lo, hi) = (x.min(y), x.max(y));
        let first = self.stripes[lo].lock();
        (first, Some(self.stripes[hi].lock()))
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
        let locks = Arc::new(FileLocks::new());
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
        let locks = FileLocks::new();
        let (_g, second) = locks.lock_two(5, 5 + STRIPES as u64);
        assert!(second.is_none(), "a stripe locked twice would deadlock");
        drop(_g);
        let (_g, second) = locks.lock_two(5, 6);
        assert!(second.is_some());
    }
}
