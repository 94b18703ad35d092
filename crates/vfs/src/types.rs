//! Plain data types shared by every [`FileSystem`](crate::FileSystem)
//! implementation: inode numbers, attributes, directory entries, requests.

use std::time::SystemTime;

/// An inode number. Never reused by `ramfs` within one instance.
pub type Ino = u64;

/// A file or directory handle returned by `open`, `create` and `opendir`.
pub type Fh = u64;

/// The inode number of the root directory, as FUSE expects.
pub const ROOT_INO: Ino = 1;

/// Longest name of one directory entry, in bytes (NAME_MAX).
pub const NAME_MAX: usize = 255;

/// Longest symlink target, in bytes (PATH_MAX - 1).
pub const SYMLINK_MAX: usize = 4095;

/// Longest extended attribute name, in bytes, prefix included (XATTR_NAME_MAX).
pub const XATTR_NAME_MAX: usize = 255;

/// Largest extended attribute value, in bytes (XATTR_SIZE_MAX).
pub const XATTR_SIZE_MAX: usize = 65536;

/// Largest total size of the NUL-separated list of xattr names of one inode
/// (XATTR_LIST_MAX); a `setxattr` that would exceed it fails with ENOSPC.
pub const XATTR_LIST_MAX: usize = 65536;

/// `rename` flag: fail with EEXIST if the target exists.
pub const RENAME_NOREPLACE: u32 = libc::RENAME_NOREPLACE;
/// `rename` flag: atomically swap source and target, both must exist.
pub const RENAME_EXCHANGE: u32 = libc::RENAME_EXCHANGE;
/// `rename` flag: leave a whiteout (a character device 0:0, owned by
/// root) at the source name, in the same step (overlayfs's upper layer).
pub const RENAME_WHITEOUT: u32 = libc::RENAME_WHITEOUT;

/// `setxattr` flag: fail with EEXIST if the attribute exists.
pub const XATTR_CREATE: i32 = libc::XATTR_CREATE;
/// `setxattr` flag: fail with ENODATA if the attribute does not exist.
pub const XATTR_REPLACE: i32 = libc::XATTR_REPLACE;

/// The kind of an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    RegularFile,
    Directory,
    Symlink,
    NamedPipe,
    Socket,
    CharDevice,
    BlockDevice,
}

impl FileType {
    /// The `S_IFMT` bits of this kind.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileType::RegularFile => libc::S_IFREG,
            FileType::Directory => libc::S_IFDIR,
            FileType::Symlink => libc::S_IFLNK,
            FileType::NamedPipe => libc::S_IFIFO,
            FileType::Socket => libc::S_IFSOCK,
            FileType::CharDevice => libc::S_IFCHR,
            FileType::BlockDevice => libc::S_IFBLK,
        }
    }

    /// The kind named by the `S_IFMT` bits of `mode`, if any.
    pub fn from_mode(mode: u32) -> Option<FileType> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => FileType::RegularFile,
            libc::S_IFDIR => FileType::Directory,
            libc::S_IFLNK => FileType::Symlink,
            libc::S_IFIFO => FileType::NamedPipe,
            libc::S_IFSOCK => FileType::Socket,
            libc::S_IFCHR => FileType::CharDevice,
            libc::S_IFBLK => FileType::BlockDevice,
            _ => return None,
        })
    }
}

/// Attributes of an inode, as `stat(2)` and FUSE report them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    /// Size in bytes (regular files: logical size; symlinks: target length).
    pub size: u64,
    /// Allocated space in 512-byte units.
    pub blocks: u64,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    /// Creation (birth) time.
    pub crtime: SystemTime,
    pub kind: FileType,
    /// Permission bits including setuid, setgid and sticky (`0o7777`).
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    /// Device number of character and block devices, 0 otherwise.
    pub rdev: u64,
    /// Preferred I/O size.
    pub blksize: u32,
    /// Generation number; (ino, generation) is unique for the filesystem's life.
    pub generation: u64,
}

/// A time to set: a given instant or the filesystem's current time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeOrNow {
    Time(SystemTime),
    Now,
}

/// The attributes `setattr` changes; `None` leaves one alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// New permission bits (`0o7777`); type bits are ignored.
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// New size: truncates or extends (with a hole) a regular file.
    pub size: Option<u64>,
    pub atime: Option<TimeOrNow>,
    pub mtime: Option<TimeOrNow>,
    /// Explicit ctime (FUSE may pass one); otherwise ctime becomes now
    /// whenever anything changes.
    pub ctime: Option<SystemTime>,
    pub crtime: Option<SystemTime>,
}

/// One entry returned by `readdir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: Ino,
    /// The cookie to pass back as `offset` to continue *after* this entry.
    pub offset: u64,
    pub kind: FileType,
    pub name: Vec<u8>,
}

/// Filesystem statistics, as `statfs(2)` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatFs {
    /// Total data blocks, in `frsize` units.
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    /// Total inodes.
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

/// The caller of an operation: owner of the inodes it creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Request {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
    /// The caller's umask, for `mknod`, `mkdir` and `create`: applied to
    /// the new inode's mode unless its directory has a default ACL, which
    /// replaces it (as Linux does; FUSE with the POSIX ACL capability
    /// passes it). 0 when the caller masked the mode itself.
    pub umask: u32,
}

impl Request {
    /// The superuser (uid 0, gid 0).
    pub fn root() -> Request {
        Request::default()
    }
}

/// The answer of `getxattr` and `listxattr`, following FUSE: asked with
/// size 0 they report the size needed, otherwise they return the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XattrReply {
    Size(u32),
    Data(Vec<u8>),
}

/// Where `lseek` looks from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whence {
    Set,
    End,
    Data,
    Hole,
}

impl Whence {
    /// Decode a `SEEK_*` constant; `SEEK_CUR` is not representable because
    /// the position of an open file is kept by the caller (kernel or fd table).
    pub fn from_raw(whence: i32) -> Option<Whence> {
        match whence {
            libc::SEEK_SET => Some(Whence::Set),
            libc::SEEK_END => Some(Whence::End),
            libc::SEEK_DATA => Some(Whence::Data),
            libc::SEEK_HOLE => Some(Whence::Hole),
            _ => None,
        }
    }
}
