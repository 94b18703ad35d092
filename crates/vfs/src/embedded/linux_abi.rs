//! The Linux shapes of what the calls return: `struct stat` (as `libc`
//! defines it for this target, so it is the kernel's own layout) and the
//! `linux_dirent64` records of `getdents64(2)`: u64 inode, i64 offset of
//! the next record, u16 record length, u8 type, the name and a NUL,
//! padded to a multiple of 8 bytes.

use std::time::{SystemTime, UNIX_EPOCH};

use super::MountId;
use crate::types::{Attr, DirEntry, FileType};

/// Device number the VFS reports for mount `id` (`st_dev`): an anonymous
/// device, major 0, as Linux gives filesystems without a block device.
pub(crate) fn dev_of(id: MountId) -> u64 {
    libc::makedev(0, 64 + id)
}

fn split(t: SystemTime) -> (i64, i64) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos() as i64),
        Err(e) => {
            let d = e.duration();
            let (s, n) = (d.as_secs() as i64, d.subsec_nanos() as i64);
            if n == 0 {
                (-s, 0)
            } else {
                (-s - 1, 1_000_000_000 - n)
            }
        }
    }
}

/// `struct stat` of `a` on mount `id`.
pub(crate) fn stat_of(a: &Attr, id: MountId) -> libc::stat {
    // SAFETY: `libc::stat` is plain old data; all-zero is a valid value
    // (the padding fields must be zero, as the kernel leaves them).
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    st.st_dev = dev_of(id);
    st.st_ino = a.ino;
    st.st_nlink = a.nlink as _;
    st.st_mode = a.kind.mode_bits() | a.perm as u32;
    st.st_uid = a.uid;
    st.st_gid = a.gid;
    st.st_rdev = a.rdev;
    st.st_size = a.size as i64;
    st.st_blksize = a.blksize as _;
    st.st_blocks = a.blocks as i64;
    (st.st_atime, st.st_atime_nsec) = split(a.atime);
    (st.st_mtime, st.st_mtime_nsec) = split(a.mtime);
    (st.st_ctime, st.st_ctime_nsec) = split(a.ctime);
    st
}

/// `d_type` of a kind (DT_*).
pub(crate) fn d_type(kind: FileType) -> u8 {
    match kind {
        FileType::RegularFile => libc::DT_REG,
        FileType::Directory => libc::DT_DIR,
        FileType::Symlink => libc::DT_LNK,
        FileType::NamedPipe => libc::DT_FIFO,
        FileType::Socket => libc::DT_SOCK,
        FileType::CharDevice => libc::DT_CHR,
        FileType::BlockDevice => libc::DT_BLK,
    }
}

/// Bytes the record of a name of `len` bytes takes.
pub(crate) fn reclen(len: usize) -> usize {
    (8 + 8 + 2 + 1 + len + 1).div_ceil(8) * 8
}

/// Append the record of `e` to `buf`.
pub(crate) fn push_record(buf: &mut Vec<u8>, e: &DirEntry) {
    let len = reclen(e.name.len());
    let start = buf.len();
    buf.extend_from_slice(&e.ino.to_ne_bytes());
    buf.extend_from_slice(&(e.offset as i64).to_ne_bytes());
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.push(d_type(e.kind));
    buf.extend_from_slice(&e.name);
    buf.resize(start + len, 0);
}

/// One decoded `linux_dirent64` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dirent64 {
    pub ino: u64,
    pub off: i64,
    pub reclen: u16,
    pub kind: u8,
    pub name: Vec<u8>,
}

/// Decode a `getdents64` buffer (for callers and tests); `None` if a
/// record is malformed.
pub fn dirent64_records(mut b: &[u8]) -> Option<Vec<Dirent64>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        if b.len() < 19 {
            return None;
        }
        let ino = u64::from_ne_bytes(b[0..8].try_into().ok()?);
        let off = i64::from_ne_bytes(b[8..16].try_into().ok()?);
        let reclen = u16::from_ne_bytes(b[16..18].try_into().ok()?);
        let kind = b[18];
        let rec = b.get(..reclen as usize)?;
        if reclen % 8 != 0 || reclen < 24 {
            return None;
        }
        let name_end = rec[19..].iter().position(|&c| c == 0)? + 19;
        out.push(Dirent64 {
            ino,
            off,
            reclen,
            kind,
            name: rec[19..name_end].to_vec(),
        });
        b = &b[reclen as usize..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_have_the_kernel_layout() {
        let e = DirEntry {
            ino: 0x0102_0304_0506_0708,
            offset: 9,
            kind: FileType::Directory,
            name: b"abcde".to_vec(),
        };
        let mut b = Vec::new();
        push_record(&mut b, &e);
        // 8 + 8 + 2 + 1 + 5 + NUL = 25, padded to 32.
        assert_eq!(b.len(), 32);
        assert_eq!(&b[0..8], &0x0102_0304_0506_0708u64.to_ne_bytes());
        assert_eq!(&b[8..16], &9i64.to_ne_bytes());
        assert_eq!(&b[16..18], &32u16.to_ne_bytes());
        assert_eq!(b[18], libc::DT_DIR);
        assert_eq!(&b[19..25], b"abcde\0");
        assert!(b[25..].iter().all(|&x| x == 0));
        let d = dirent64_records(&b).unwrap();
        assert_eq!(d[0].name, b"abcde");
        assert_eq!(reclen(4), 24);
        assert_eq!(reclen(5), 32);
    }

    #[test]
    fn times_before_the_epoch_split_as_timespec() {
        let t = UNIX_EPOCH - std::time::Duration::new(1, 250_000_000);
        assert_eq!(split(t), (-2, 750_000_000));
    }
}
