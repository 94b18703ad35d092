//! Errors of the filesystem layer.

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
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("{0}")]
    Invalid(String),
}

impl FsError {
    pub fn errno(&self) -> i32 {
        match self {
            FsError::Tree(e) => e.errno(),
            FsError::Pool(e) => e.errno(),
            FsError::NoDataset(_) => 2,
            FsError::Corrupt { .. } => 5,
            FsError::Invalid(_) => 22,
        }
    }
    pub fn is_no_space(&self) -> bool {
        matches!(
            self,
            FsError::Pool(PoolError::NoSpace { .. })
                | FsError::Tree(TreeError::Pool(PoolError::NoSpace { .. }))
        )
    }
}

impl From<aegis_block::BlockError> for FsError {
    fn from(e: aegis_block::BlockError) -> Self {
        FsError::Pool(PoolError::Block(e))
    }
}

pub type Result<T> = std::result::Result<T, FsError>;
