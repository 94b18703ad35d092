//! Intent log replay at a writable mount: the records `aegis_fs` read
//! from the chain the last txg names are re-run, in order, through the
//! same operations that made them (inode numbers come out the same
//! because allocation is deterministic; each create checks it). A record
//! that does not apply ends the replay there, as a torn block does.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use aegis_fs::intent_log::{LogRec, Replay};
use aegis_fs::posix::inode::{S_IFLNK, S_IFMT};
use aegis_vfs::validate::fallocate_mode;
use aegis_vfs::{FileSystem, FsError, Ino, Request, Result, SetAttr, TimeOrNow};

use crate::diskfs::DiskFs;
use crate::error::lower;
use crate::inode::from_ns;

impl DiskFs {
    /// Re-run the records a crash left, then let the store drop the
    /// spent chain and commit (with a ring just made).
    pub(crate) fn replay(&self, replay: Replay) -> Result<()> {
        let total = replay.records.len();
        let mut applied = 0;
        for r in &replay.records {
            let res = LogRec::decode(r)
                .map_err(lower)
                .and_then(|rec| self.apply(&rec));
            if let Err(e) = res {
                tracing::warn!(applied, total, error = %e, "intent log replay stopped at a record that does not apply");
                break;
            }
            applied += 1;
        }
        self.store
            .finish_replay(self.ds, replay, applied)
            .map_err(lower)
    }

    // Not split: one arm per record type, each a call of the operation that made it.
    /// Re-run one logged change.
    fn apply(&self, rec: &LogRec) -> Result<()> {
        use LogRec as L;
        let name = |n: &[u8]| OsStr::from_bytes(n).to_owned();
        match rec {
            L::Mknod {
                parent,
                name: n,
                mode,
                rdev,
                uid,
                gid,
                ino,
            } => {
                let req = Request {
                    uid: *uid,
                    gid: *gid,
                    pid: 0,
                    umask: 0,
                };
                let _dir = self.dirs.lock(*parent);
                let a =
                    self.create_node(&req, *parent, n, mode & S_IFMT, mode & 0o7777, *rdev, None)?;
                Self::forget_locked(&mut self.state.lock(), a.ino);
                self.check_replayed_ino(a.ino, *ino)
            }
            L::Symlink {
                parent,
                name: n,
                target,
                uid,
                gid,
                ino,
            } => {
                let req = Request {
                    uid: *uid,
                    gid: *gid,
                    pid: 0,
                    umask: 0,
                };
                let _dir = self.dirs.lock(*parent);
                let a = self.create_node(&req, *parent, n, S_IFLNK, 0o777, 0, Some(target))?;
                Self::forget_locked(&mut self.state.lock(), a.ino);
                self.check_replayed_ino(a.ino, *ino)
            }
            L::Unlink { parent, name: n } => self.unlink(*parent, &name(n)),
            L::Rmdir { parent, name: n } => self.rmdir(*parent, &name(n)),
            L::Rename {
                parent,
                name: n,
                newparent,
                newname,
                flags,
            } => self.rename(*parent, &name(n), *newparent, &name(newname), *flags),
            L::Link {
                ino,
                newparent,
                newname,
            } => {
                let a = self.link(*ino, *newparent, &name(newname))?;
                self.forget(a.ino, 1);
                Ok(())
            }
            L::SetAttr {
                ino,
                mode,
                uid,
                gid,
                size,
                times,
            } => {
                let t = |v: Option<i64>| v.map(|n| TimeOrNow::Time(from_ns(n)));
                let set = SetAttr {
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                    size: *size,
                    atime: t(times[0]),
                    mtime: t(times[1]),
                    ctime: times[2].map(from_ns),
                    crtime: times[3].map(from_ns),
                };
                self.setattr(&Request::root(), *ino, &set, None).map(|_| ())
            }
            L::Write { ino, offset, data } => {
                let _file = self.files.lock(*ino);
                let (_, shape) = self.write_shape(*ino)?;
                self.write_locked(*ino, *offset, data, shape)
            }
            L::Punch { ino, offset, end } => {
                let _file = self.files.lock(*ino);
                self.punch_locked(*ino, *offset, *end, None)
            }
            L::Extend { ino, size } => {
                let _file = self.files.lock(*ino);
                self.extend_locked(*ino, *size)
            }
            L::Fallocate {
                ino,
                mode,
                offset,
                len,
            } => {
                let mode = *mode as i32;
                let (op, end) = fallocate_mode(mode, *offset, *len)?;
                let _file = self.files.lock(*ino);
                self.fallocate_locked(*ino, (op, mode), *offset, end)
            }
            L::SetXattr {
                ino,
                name: n,
                value,
                flags,
            } => self.setxattr(&Request::root(), *ino, &name(n), value, *flags),
            L::RemoveXattr { ino, name: n } => self.removexattr(*ino, &name(n)),
        }
    }

    fn check_replayed_ino(&self, got: Ino, want: Ino) -> Result<()> {
        if got == want {
            Ok(())
        } else {
            Err(FsError::Io(format!(
                "intent log replay created inode {got} where the log says {want}"
            )))
        }
    }
}
