//! Errors of the block layer. Each names the device or range involved so a
//! message reaching the user says where the problem is.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum BlockError {
    #[error("I/O error on {device}: {source}")]
    Io {
        device: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "access of {len} bytes at offset {offset} is past the end of the device ({size} bytes)"
    )]
    OutOfRange { offset: u64, len: usize, size: u64 },
    #[error("injected I/O error at offset {offset}")]
    Injected { offset: u64 },
    #[error("{device} was shut down: nothing more is written to it")]
    ShutDown { device: String },
    #[error("{0}")]
    Invalid(String),
}

impl BlockError {
    pub fn io(device: impl Into<String>, source: std::io::Error) -> Self {
        BlockError::Io {
            device: device.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, BlockError>;
