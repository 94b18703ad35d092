//! Errors of the pool layer. Each variant names what was being read or
//! written so that the CLI can print one clear line.

use aegis_block::BlockError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PoolError {
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error("{device} is not an AegisFS device (no valid label found)")]
    NotAegis { device: String },
    #[error(
        "{device}: unsupported format version {version} (this build reads version {supported})"
    )]
    UnsupportedVersion {
        device: String,
        version: u32,
        supported: u32,
    },
    #[error("{device}: pool uses features this build does not know (incompat bits {bits:#x}); upgrade aegisfs")]
    UnknownIncompat { device: String, bits: u64 },
    #[error("{device}: pool uses read-only-compatible features this build does not know (bits {bits:#x}); it can only be opened read-only")]
    UnknownRoCompat { device: String, bits: u64 },
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("checksum mismatch on every copy of {what}")]
    Checksum { what: String },
    #[error("no space left in the pool (need {needed} bytes, {available} available)")]
    NoSpace { needed: u64, available: u64 },
    #[error("the pool is open read-only")]
    ReadOnly,
    #[error("no usable uberblock: {0}")]
    NoUberblock(String),
    #[error("invalid argument: {0}")]
    Invalid(String),
}

impl PoolError {
    pub fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> Self {
        PoolError::Corrupt {
            what: what.into(),
            detail: detail.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, PoolError>;
