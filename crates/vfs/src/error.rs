//! Errors of the VFS layer: each variant is one errno.

use thiserror::Error;

/// An error of a [`FileSystem`](crate::FileSystem) operation. Every variant
/// maps to exactly one errno through [`FsError::errno`], which the FUSE
/// adapter replies with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("name too long")]
    NameTooLong,
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// EACCES: the permission bits refuse the access.
    #[error("permission denied")]
    Permission,
    /// EPERM: the operation is not permitted on this object.
    #[error("operation not permitted")]
    NotPermitted,
    #[error("no space left on device")]
    NoSpace,
    /// EDQUOT: a user's, group's or dataset's quota would be passed.
    #[error("disk quota exceeded")]
    QuotaExceeded,
    #[error("file too large")]
    TooBig,
    #[error("extended attribute value too large")]
    XattrTooBig,
    #[error("result does not fit in the given buffer size")]
    RangeTooSmall,
    #[error("no such extended attribute")]
    NoData,
    #[error("too many levels of symbolic links, or not a symlink where one is needed")]
    Loop,
    #[error("cross-device link")]
    CrossDevice,
    #[error("operation not supported")]
    NotSupported,
    #[error("bad file handle")]
    BadHandle,
    /// ENXIO: `lseek` SEEK_DATA/SEEK_HOLE at or past end of file, or no data after the offset.
    #[error("no such offset")]
    NoSuchOffset,
    #[error("I/O error: {0}")]
    Io(String),
    #[error("read-only filesystem")]
    ReadOnly,
    /// EMFILE: the descriptor table is full.
    #[error("too many open files")]
    TooManyFiles,
    /// EBUSY: a mount point in use, or a mount over a mount point.
    #[error("device or resource busy")]
    Busy,
}

impl FsError {
    /// The positive errno of this error.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::Exists => libc::EEXIST,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::InvalidArgument(_) => libc::EINVAL,
            FsError::Permission => libc::EACCES,
            FsError::NotPermitted => libc::EPERM,
            FsError::NoSpace => libc::ENOSPC,
            FsError::QuotaExceeded => libc::EDQUOT,
            FsError::TooBig => libc::EFBIG,
            FsError::XattrTooBig => libc::E2BIG,
            FsError::RangeTooSmall => libc::ERANGE,
            FsError::NoData => libc::ENODATA,
            FsError::Loop => libc::ELOOP,
            FsError::CrossDevice => libc::EXDEV,
            FsError::NotSupported => libc::EOPNOTSUPP,
            FsError::BadHandle => libc::EBADF,
            FsError::NoSuchOffset => libc::ENXIO,
            FsError::Io(_) => libc::EIO,
            FsError::ReadOnly => libc::EROFS,
            FsError::TooManyFiles => libc::EMFILE,
            FsError::Busy => libc::EBUSY,
        }
    }
}

/// Result of a VFS operation.
pub type Result<T> = std::result::Result<T, FsError>;
