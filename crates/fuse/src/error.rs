//! Errors of mounting and of parsing mount options.
//!
//! Errors about the mount point name the path and the problem, so a CLI can
//! print them as they are. Errors of individual FUSE requests never appear
//! here: those go back to the kernel as an errno
//! ([`aegis_vfs::FsError::errno`]).

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Why a filesystem could not be mounted or served.
#[derive(Debug, Error)]
pub enum MountError {
    #[error("mount point {}: does not exist", .0.display())]
    MountpointMissing(PathBuf),
    #[error("mount point {}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("mount point {}: directory not empty", .0.display())]
    NotEmpty(PathBuf),
    #[error("fusermount3 not found in PATH (install the fuse3 package)")]
    FusermountMissing,
    #[error("/dev/fuse not found (load the fuse kernel module: modprobe fuse)")]
    FuseDeviceMissing,
    #[error("invalid mount configuration: {0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl MountError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> MountError {
        MountError::Io {
            context: context.into(),
            source,
        }
    }
}

/// A `-o` option list that could not be parsed. Each variant names the
/// offending option as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OptionError {
    #[error("unknown mount option '{0}'")]
    Unknown(String),
    #[error("mount option '{0}' needs a value ({0}=...)")]
    MissingValue(String),
    #[error("mount option '{0}' takes no value")]
    UnexpectedValue(String),
    #[error("mount option '{name}': invalid value '{value}': {reason}")]
    InvalidValue {
        name: String,
        value: String,
        reason: &'static str,
    },
    #[error("mount options '{0}' and '{1}' exclude each other")]
    Conflict(&'static str, &'static str),
}
