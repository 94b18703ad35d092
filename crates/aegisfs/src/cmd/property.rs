//! `aegisfs set PROPERTY=VALUE PATH...` and `aegisfs get PROPERTY PATH...`:
//! per-file and per-directory properties of a mounted AegisFS, read and
//! written through an extended attribute the filesystem answers itself.
//!
//! Properties:
//! - `logging` (`full`, `metadata`, `none`): how changes to the file, or
//!   to the directory and what is created in it later, go to the intent
//!   log;
//! - `recordsize` (a power of two from `4K` to `1M`, any size the unit
//!   parser reads: `16K`, `65536`, `1M`): the record size of a file, or
//!   of what is created in a directory later, as ZFS's. A file's may
//!   change only while it holds at most one record of the new size.
//!
//! `get` prints `PATH: PROPERTY=VALUE`. A bad value is refused before any
//! path is touched; every path is checked to be on AegisFS before the
//! first is changed.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use aegis_diskfs::{LogPolicy, POLICY_XATTR, RECORDSIZE_XATTR};

use super::{CliError, CliResult};
use crate::units::parse_size;

#[derive(clap::Args)]
pub struct SetArgs {
    /// PROPERTY=VALUE, e.g. logging=metadata.
    pub assignment: String,
    /// Files or directories on a mounted AegisFS.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

#[derive(clap::Args)]
pub struct GetArgs {
    /// The property, e.g. logging.
    pub property: String,
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

fn xattr_name(property: &str) -> CliResult<&'static [u8]> {
    match property {
        "logging" => Ok(POLICY_XATTR),
        "recordsize" => Ok(RECORDSIZE_XATTR),
        other => Err(CliError::new(format!(
            "unknown property '{other}' (known: logging, recordsize)"
        ))),
    }
}

/// Smallest and largest record size (4 KiB, 1 MiB).
const RECORD_SIZE_BYTES: std::ops::RangeInclusive<u64> = 4096..=1 << 20;

/// `value` of `property` as the filesystem takes it, or the one line
/// saying what is wrong with it.
fn canonical(property: &str, value: &str) -> CliResult<String> {
    match property {
        "logging" => match LogPolicy::parse(value) {
            Some(p) => Ok(p.name().to_string()),
            None => Err(CliError::new(format!(
                "logging: '{value}' is not full, metadata or none"
            ))),
        },
        _ => record_size(value),
    }
}

/// A record size: a power of two from 4K to 1M, sent as `16K` or `1M`.
fn record_size(value: &str) -> CliResult<String> {
    let bad = || {
        CliError::new(format!(
            "recordsize: '{value}' is not a power of two from 4K to 1M (e.g. 4K, 16K, 128K, 1M)"
        ))
    };
    let bytes = parse_size(value).map_err(|_| bad())?;
    if !bytes.is_power_of_two() || !RECORD_SIZE_BYTES.contains(&bytes) {
        return Err(bad());
    }
    Ok(match bytes {
        b if b >= 1 << 20 => format!("{}M", b >> 20),
        b => format!("{}K", b >> 10),
    })
}

/// The one line for a refused setxattr of `property` on `path`.
fn set_error(path: &Path, property: &str, e: std::io::Error) -> CliError {
    let why = match (property, e.raw_os_error()) {
        ("recordsize", Some(libc::EBUSY)) => {
            "recordsize of a file can change only while it holds at most one record \
             no longer than the new size (it keeps its records; copy it into a new file instead)"
                .to_string()
        }
        (_, Some(libc::EPERM)) => format!("only files and directories have a {property}"),
        _ => e.to_string(),
    };
    CliError::new(format!("{}: {why}", path.display()))
}

fn cpath(p: &Path) -> CliResult<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| CliError::new(format!("{}: path holds a NUL byte", p.display())))
}

/// The property's value on `path`, or an error saying the path is not on
/// AegisFS (only AegisFS answers this attribute on every file).
fn read(path: &Path, name: &[u8]) -> CliResult<String> {
    let p = cpath(path)?;
    let n = CString::new(name).expect("no NUL in a constant");
    let mut buf = [0u8; 64];
    // SAFETY: valid C strings; the buffer outlives the call and its length is given.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        let e = std::io::Error::last_os_error();
        return Err(CliError::new(match e.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::EOPNOTSUPP) => {
                format!("{}: not on a mounted AegisFS", path.display())
            }
            _ => format!("{}: {e}", path.display()),
        }));
    }
    Ok(String::from_utf8_lossy(&buf[..len as usize]).into_owned())
}

pub fn set(a: SetArgs) -> CliResult<u8> {
    let (prop, value) = a.assignment.split_once('=').ok_or_else(|| {
        CliError::new(format!(
            "'{}': expected PROPERTY=VALUE, e.g. logging=metadata",
            a.assignment
        ))
    })?;
    let name = xattr_name(prop)?;
    let value = canonical(prop, value)?;
    for path in &a.paths {
        read(path, name)?;
    }
    for path in &a.paths {
        let p = cpath(path)?;
        let n = CString::new(name).expect("no NUL in a constant");
        // SAFETY: valid C strings and value buffer for the call's duration.
        let rc = unsafe {
            libc::setxattr(
                p.as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if rc != 0 {
            return Err(set_error(path, prop, std::io::Error::last_os_error()));
        }
    }
    Ok(0)
}

pub fn get(a: GetArgs) -> CliResult<u8> {
    let name = xattr_name(&a.property)?;
    for path in &a.paths {
        let v = read(path, name)?;
        println!("{}: {}={v}", path.display(), a.property);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_sizes_parse_or_say_why_not() {
        for (v, want) in [("4K", "4K"), ("16k", "16K"), ("65536", "64K"), ("1M", "1M")] {
            assert_eq!(record_size(v).unwrap(), want);
        }
        for bad in ["3K", "abc", "2M", "2K", "0", "", "1.5M", "1G"] {
            let e = record_size(bad).unwrap_err();
            assert!(
                e.0.contains(&format!("'{bad}'")) && e.0.contains("4K to 1M"),
                "{}",
                e.0
            );
            assert!(!e.0.contains('\n'));
        }
        assert!(xattr_name("recordsize").is_ok());
        assert!(xattr_name("compression").is_err());
    }
}
