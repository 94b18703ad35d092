//! Inode records as the VFS sees them: attributes, times, and the rules for
//! touching them (relatime and friends).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aegis_fs::posix::inode::S_IFMT;
use aegis_fs::posix::InodeRecord;

use aegis_fs::ObjectRead;
use aegis_vfs::{Attr, FileType, Ino};

/// Size a directory reports per entry, `.` and `..` included (as tmpfs
/// and ramfs do).
const DIRENT_SIZE: u64 = 20;

/// When `read` updates atime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AtimeMode {
    /// Only when atime is not newer than mtime or ctime, or a day old
    /// (Linux's default).
    #[default]
    Relatime,
    /// Never.
    Noatime,
    /// On every read.
    Strictatime,
}

pub(crate) fn to_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

pub(crate) fn from_ns(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

pub(crate) fn now_ns() -> i64 {
    to_ns(SystemTime::now())
}

pub(crate) fn kind_of(mode: u32) -> FileType {
    // Decoded records only hold known types (InodeRecord::decode checks).
    FileType::from_mode(mode & S_IFMT).unwrap_or(FileType::RegularFile)
}

/// `ino`'s attributes as `t` holds them, `st_blocks` counting the data
/// written since the last commit as the commit will store it.
pub(crate) fn stored_attr(
    t: &impl ObjectRead,
    ino: Ino,
    dataset_rs: u32,
) -> Result<Attr, aegis_fs::FsError> {
    let r = t.inode(ino)?;
    let mut a = attr(ino, &r, dataset_rs);
    if r.is_reg() {
        a.blocks = t.stored_alloc(ino, &r)?.div_ceil(512);
    }
    Ok(a)
}

/// `r`'s attributes; `st_blksize` is its record size (`dataset_rs`, the
/// dataset's, unless it has its own).
pub(crate) fn attr(ino: Ino, r: &InodeRecord, dataset_rs: u32) -> Attr {
    let kind = kind_of(r.mode);
    let size = match kind {
        FileType::Directory => (r.size + 2) * DIRENT_SIZE,
        _ => r.size,
    };
    Attr {
        ino,
        size,
        blocks: r.alloc_bytes.div_ceil(512),
        atime: from_ns(r.atime),
        mtime: from_ns(r.mtime),
        ctime: from_ns(r.ctime),
        crtime: from_ns(r.crtime),
        kind,
        perm: (r.mode & 0o7777) as u16,
        nlink: r.nlink,
        uid: r.uid,
        gid: r.gid,
        rdev: r.rdev,
        // The object's own record size, as ZFS reports its block size.
        blksize: r.record_size_bytes(dataset_rs) as u32,
        generation: r.generation,
    }
}

pub(crate) fn touch_modified(r: &mut InodeRecord, now: i64) {
    r.mtime = now;
    r.ctime = now;
}

/// Does a read at `now` change atime under `mode`?
pub(crate) fn atime_due(r: &InodeRecord, now: i64, mode: AtimeMode) -> bool {
    const DAY_NS: i64 = 24 * 3600 * 1_000_000_000;
    match mode {
        AtimeMode::Noatime => false,
        AtimeMode::Strictatime => r.atime != now,
        AtimeMode::Relatime => {
            r.atime <= r.mtime || r.atime <= r.ctime || now.saturating_sub(r.atime) >= DAY_NS
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_both_sides_of_the_epoch() {
        for ns in [0i64, 1, -1, 1_700_000_000_123_456_789, -86_400_000_000_000] {
            assert_eq!(to_ns(from_ns(ns)), ns);
        }
    }

    #[test]
    fn relatime_rules() {
        let mut r = InodeRecord {
            atime: 10,
            mtime: 5,
            ctime: 5,
            ..Default::default()
        };
        assert!(!atime_due(&r, 20, AtimeMode::Relatime));
        assert!(atime_due(&r, 20, AtimeMode::Strictatime));
        assert!(!atime_due(&r, 20, AtimeMode::Noatime));
        r.mtime = 10;
        assert!(atime_due(&r, 20, AtimeMode::Relatime));
    }
}
