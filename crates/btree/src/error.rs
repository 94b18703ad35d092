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

pub type Result<T> = std::result::Result<T, TreeError>;
