//! Errors of the tree layer.

use aegis_pool::PoolError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TreeError {
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("corrupt tree node {node}: {detail}")]
    Corrupt { node: String, detail: String },
    #[error("key of {len} bytes is longer than the {max}-byte limit")]
    KeyTooLarge { len: usize, max: usize },
    #[error("value of {len} bytes is longer than the {max}-byte limit for this key")]
    ValueTooLarge { len: usize, max: usize },
}

impl TreeError {
    pub fn errno(&self) -> i32 {
        match self {
            TreeError::Pool(e) => e.errno(),
            TreeError::Corrupt { .. } => 5,
            TreeError::KeyTooLarge { .. } => 36,  // ENAMETOOLONG
            TreeError::ValueTooLarge { .. } => 7, // E2BIG
        }
    }
}

pub type Result<T> = std::result::Result<T, TreeError>;
