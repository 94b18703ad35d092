//! `aegisfs set PROPERTY=VALUE PATH...` and `aegisfs get PROPERTY PATH...`:
//! per-file and per-directory properties of a mounted AegisFS, read and
//! written through an extended attribute the filesystem answers itself.
//!
//! The one property today is `logging` (`full`, `metadata`, `none`): how
//! changes to the file, or to the directory and what is created in it
//! later, go to the intent log. `get` prints `PATH: logging=VALUE`.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use aegis_diskfs::{LogPolicy, POLICY_XATTR};

use super::{CliError, CliResult};

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
        other => Err(CliError::new(format!(
            "unknown property '{other}' (known: logging)"
        ))),
    }
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
    if LogPolicy::parse(value).is_none() {
        return Err(CliError::new(format!(
            "logging: '{value}' is not full, metadata or none"
        )));
    }
    for path in &a.paths {
        read(path, name)?;
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
            return Err(CliError::new(format!(
                "{}: {}",
                path.display(),
                std::io::Error::last_os_error()
            )));
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
