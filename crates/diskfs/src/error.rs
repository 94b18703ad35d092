//! The one mapping from engine errors to errno: an `aegis_fs` error
//! becomes the VFS error the kernel sees. Space and read-only keep their
//! errno, a missing inode is ENOENT, a value too long for its chunks
//! EINVAL; everything else (corruption, device errors) is EIO with the
//! lower layer's message, which names the damaged object or block.
//!
//! [`Error`] exists because both sides are foreign to this crate: a change
//! runs as a closure that may fail with either a POSIX refusal or an
//! engine error, and `?` needs one type to gather both.

use aegis_vfs::FsError;

/// A POSIX refusal or a lowered engine error, inside a transaction.
#[derive(Debug)]
pub(crate) struct Error(pub FsError);

pub(crate) fn lower(e: aegis_fs::FsError) -> FsError {
    if e.is_no_space() {
        return FsError::NoSpace;
    }
    if e.is_read_only() {
        return FsError::ReadOnly;
    }
    match e {
        aegis_fs::FsError::NoInode(_) => FsError::NotFound,
        aegis_fs::FsError::QuotaExceeded(_) => FsError::QuotaExceeded,
        aegis_fs::FsError::ValueTooLong => FsError::InvalidArgument("value needs too many chunks"),
        other => FsError::Io(other.to_string()),
    }
}

impl From<FsError> for Error {
    fn from(e: FsError) -> Self {
        Error(e)
    }
}

impl From<aegis_fs::FsError> for Error {
    fn from(e: aegis_fs::FsError) -> Self {
        Error(lower(e))
    }
}

impl From<Error> for FsError {
    fn from(e: Error) -> Self {
        e.0
    }
}

/// A result inside a transaction or view closure.
pub(crate) type TxResult<T> = std::result::Result<T, Error>;
