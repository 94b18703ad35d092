//! Errors of the filesystem layer.
//!
//! No errno here: the one mapping from engine errors to errno sits at the
//! VFS edge (the on-disk filesystem crate); this type only says what went
//! wrong and offers the two classifications that mapping needs.

use aegis_btree::TreeError;
use aegis_pool::PoolError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum FsError {
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("no dataset with id {0}")]
    NoDataset(u64),
    /// No inode record under this number (a POSIX "no such file").
    #[error("no inode {0}")]
    NoInode(u64),
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: String, detail: String },
    /// An object's items disagree with each other (a malformed key, a
    /// count that would underflow): the message names the object.
    #[error("{0}")]
    Damaged(String),
    /// A value that needs more chunks than a chunk index can count.
    #[error("value needs too many chunks")]
    ValueTooLong,
    #[error("{0}")]
    Invalid(String),
    /// A send stream that cannot be received: truncated, damaged, out of
    /// order, for another base, or from a newer format.
    #[error("send stream: {0}")]
    Stream(String),
    /// A change that would take a user, group or dataset past its quota.
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
}

impl FsError {
    pub fn is_no_space(&self) -> bool {
        matches!(
            self,
            FsError::Pool(PoolError::NoSpace { .. })
                | FsError::Tree(TreeError::Pool(PoolError::NoSpace { .. }))
        )
    }

    /// A write refused because the pool, or the device under it, is
    /// read-only.
    pub fn is_read_only(&self) -> bool {
        let pool = match self {
            FsError::Pool(p) | FsError::Tree(TreeError::Pool(p)) => p,
            _ => return false,
        };
        match pool {
            PoolError::ReadOnly => true,
            PoolError::Block(aegis_block::BlockError::Io { source, .. }) => {
                source.kind() == std::io::ErrorKind::ReadOnlyFilesystem
            }
            _ => false,
        }
    }
}

impl From<aegis_block::BlockError> for FsError {
    fn from(e: aegis_block::BlockError) -> Self {
        FsError::Pool(PoolError::Block(e))
    }
}

pub type Result<T> = std::result::Result<T, FsError>;
