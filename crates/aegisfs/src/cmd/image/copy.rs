//! `get [-r] IMAGE:SRC DEST` and `put [-r] SRC IMAGE:DEST`: copy a file
//! or (with `-r`) a tree out of or into an image, keeping what `cp -a`
//! keeps: contents, mode bits (setuid, setgid and sticky included),
//! owner and group (when run as root, as cp does), access and
//! modification times, symlinks as symlinks, device nodes, FIFOs, and
//! extended attributes (ACLs among them). A directory's mode and times
//! are set after its contents are in, so writing them does not move
//! them. A destination that is an existing directory receives the
//! source under its own name.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use aegis_vfs::{FsError, Process, TimeOrNow};

use super::list::{join, read_dir};
use super::{with_session, Target};
use crate::cmd::{CliError, CliResult};

/// Depth of a tree either command descends (a bound on recursion).
const DEPTH_MAX: usize = 256;

/// `get`: with a first argument `IMAGE:PATH`, a copy out of an image;
/// else `get PROPERTY PATH...` of a mounted AegisFS (a property name
/// holds no ':').
#[derive(clap::Args)]
pub struct GetAnyArgs {
    /// Copy directories and their contents (image copies).
    #[arg(short = 'r')]
    pub recursive: bool,
    /// IMAGE:PATH DEST, or PROPERTY PATH...
    #[arg(required = true, num_args = 2..)]
    pub args: Vec<String>,
}

pub fn get_any(a: GetAnyArgs) -> CliResult<u8> {
    if a.args[0].contains(':') {
        if a.args.len() != 2 {
            return Err(CliError::new(
                "get IMAGE:PATH DEST: one source and one destination",
            ));
        }
        return get(GetArgs {
            recursive: a.recursive,
            source: a.args[0].clone(),
            dest: PathBuf::from(&a.args[1]),
        });
    }
    if a.recursive {
        return Err(CliError::new(
            "get PROPERTY PATH...: -r is for copies out of an image",
        ));
    }
    crate::cmd::property::get(crate::cmd::property::GetArgs {
        property: a.args[0].clone(),
        paths: a.args[1..].iter().map(PathBuf::from).collect(),
    })
}

pub struct GetArgs {
    pub recursive: bool,
    /// IMAGE:PATH to copy out.
    pub source: String,
    /// A host path (an existing directory receives it by name).
    pub dest: PathBuf,
}

#[derive(clap::Args)]
pub struct PutArgs {
    /// Copy directories and their contents.
    #[arg(short = 'r')]
    pub recursive: bool,
    /// A host path to copy in.
    pub source: PathBuf,
    /// IMAGE:PATH (an existing directory receives it by name).
    pub dest: String,
}

fn cstr(p: &Path) -> CliResult<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| CliError::new(format!("{}: NUL in path", p.display())))
}

fn host(p: &Path, e: std::io::Error) -> CliError {
    CliError::new(format!("{}: {e}", p.display()))
}

fn base_name(path: &[u8]) -> &[u8] {
    path.rsplit(|&b| b == b'/')
        .find(|c| !c.is_empty())
        .unwrap_or(b"/")
}

pub fn get(a: GetArgs) -> CliResult<u8> {
    let t = Target::parse(&a.source)?;
    with_session(&t.image, false, |s| {
        let st = s.p.lstat(&t.path).map_err(|e| t.fail(e))?;
        let mut dest = a.dest.clone();
        if dest.is_dir() && st.st_mode & libc::S_IFMT != libc::S_IFLNK {
            dest.push(std::ffi::OsStr::from_bytes(base_name(&t.path)));
        }
        let out = Out {
            p: &s.p,
            t: &t,
            recursive: a.recursive,
        };
        out.copy(&t.path, &dest, 0)?;
        Ok(0)
    })
}

/// Copying out of an image.
struct Out<'a> {
    p: &'a Process,
    t: &'a Target,
    recursive: bool,
}

impl Out<'_> {
    fn fail(&self, path: &[u8], e: FsError) -> CliError {
        self.t.fail_at(path, e)
    }

    fn copy(&self, src: &[u8], dest: &Path, depth: usize) -> CliResult<()> {
        let st = self.p.lstat(src).map_err(|e| self.fail(src, e))?;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                if !self.recursive {
                    return Err(CliError::new(format!(
                        "{}: is a directory (use -r)",
                        self.t.shown()
                    )));
                }
                if depth > DEPTH_MAX {
                    return Err(self.fail(src, FsError::Loop));
                }
                match std::fs::create_dir(dest) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dest.is_dir() => {}
                    Err(e) => return Err(host(dest, e)),
                }
                for (name, _) in read_dir(self.p, src).map_err(|e| self.fail(src, e))? {
                    if name != b"." && name != b".." {
                        let child = dest.join(std::ffi::OsStr::from_bytes(&name));
                        self.copy(&join(src, &name), &child, depth + 1)?;
                    }
                }
            }
            libc::S_IFLNK => {
                let target = self.p.readlink(src).map_err(|e| self.fail(src, e))?;
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), dest)
                    .map_err(|e| host(dest, e))?;
            }
            libc::S_IFREG => self.file(src, dest)?,
            _ => {
                let c = cstr(dest)?;
                // SAFETY: c is a valid NUL-terminated path.
                if unsafe { libc::mknod(c.as_ptr(), st.st_mode, st.st_rdev) } != 0 {
                    return Err(host(dest, std::io::Error::last_os_error()));
                }
            }
        }
        self.finish(src, dest, &st)
    }

    fn file(&self, src: &[u8], dest: &Path) -> CliResult<()> {
        use std::io::Write;
        let fd = self
            .p
            .open(src, libc::O_RDONLY, 0)
            .map_err(|e| self.fail(src, e))?;
        let mut f = std::fs::File::create(dest).map_err(|e| host(dest, e))?;
        let r = (|| loop {
            let chunk = self.p.read(fd, 1 << 20).map_err(|e| self.fail(src, e))?;
            if chunk.is_empty() {
                return Ok(());
            }
            f.write_all(&chunk).map_err(|e| host(dest, e))?;
        })();
        self.p.close(fd).map_err(|e| self.fail(src, e))?;
        r
    }

    /// Owner, mode, xattrs and times of `dest` from `st`, in that order
    /// (chown clears setuid; times last, after everything that moves them).
    fn finish(&self, src: &[u8], dest: &Path, st: &libc::stat) -> CliResult<()> {
        let c = cstr(dest)?;
        let link = st.st_mode & libc::S_IFMT == libc::S_IFLNK;
        // SAFETY: plain libc calls on a valid NUL-terminated path.
        unsafe {
            if libc::geteuid() == 0 && libc::lchown(c.as_ptr(), st.st_uid, st.st_gid) != 0 {
                return Err(host(dest, std::io::Error::last_os_error()));
            }
        }
        if !link {
            std::fs::set_permissions(dest, std::fs::Permissions::from_mode(st.st_mode & 0o7777))
                .map_err(|e| host(dest, e))?;
        }
        let names = self
            .p
            .listxattr(src, false)
            .map_err(|e| self.fail(src, e))?;
        for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
            let value = self
                .p
                .getxattr(src, name, false)
                .map_err(|e| self.fail(src, e))?;
            let n = CString::new(name).map_err(|_| CliError::new("xattr name with NUL"))?;
            // SAFETY: valid pointers and lengths for the duration of the call.
            let r = unsafe {
                libc::lsetxattr(
                    c.as_ptr(),
                    n.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            };
            if r != 0 {
                return Err(host(dest, std::io::Error::last_os_error()));
            }
        }
        let times = [
            libc::timespec {
                tv_sec: st.st_atime,
                tv_nsec: st.st_atime_nsec,
            },
            libc::timespec {
                tv_sec: st.st_mtime,
                tv_nsec: st.st_mtime_nsec,
            },
        ];
        // SAFETY: valid path and a two-element timespec array.
        if unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        } != 0
        {
            return Err(host(dest, std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

pub fn put(a: PutArgs) -> CliResult<u8> {
    let t = Target::parse(&a.dest)?;
    with_session(&t.image, true, |s| {
        let mut dest = t.path.clone();
        if let Ok(st) = s.p.stat(&dest) {
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                let name = a
                    .source
                    .file_name()
                    .map(|n| n.as_bytes().to_vec())
                    .unwrap_or_default();
                dest = join(&dest, &name);
            }
        }
        let put = In {
            p: &s.p,
            t: &t,
            recursive: a.recursive,
        };
        put.copy(&a.source, &dest, 0)?;
        Ok(0)
    })
}

/// Copying into an image.
struct In<'a> {
    p: &'a Process,
    t: &'a Target,
    recursive: bool,
}

impl In<'_> {
    fn fail(&self, path: &[u8], e: FsError) -> CliError {
        self.t.fail_at(path, e)
    }

    fn copy(&self, src: &Path, dest: &[u8], depth: usize) -> CliResult<()> {
        let md = std::fs::symlink_metadata(src).map_err(|e| host(src, e))?;
        let ft = md.file_type();
        if ft.is_dir() {
            if !self.recursive {
                return Err(CliError::new(format!(
                    "{}: is a directory (use -r)",
                    src.display()
                )));
            }
            if depth > DEPTH_MAX {
                return Err(self.fail(dest, FsError::Loop));
            }
            match self.p.mkdir(dest, 0o700) {
                Ok(()) | Err(FsError::Exists) => {}
                Err(e) => return Err(self.fail(dest, e)),
            }
            let mut names: Vec<_> = std::fs::read_dir(src)
                .map_err(|e| host(src, e))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()
                .map_err(|e| host(src, e))?;
            names.sort();
            for n in names {
                self.copy(&src.join(&n), &join(dest, n.as_bytes()), depth + 1)?;
            }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(src).map_err(|e| host(src, e))?;
            self.p
                .symlink(target.as_os_str().as_bytes(), dest)
                .map_err(|e| self.fail(dest, e))?;
        } else if ft.is_file() {
            self.file(src, dest)?;
        } else {
            self.p
                .mknodat(None, dest, md.mode(), md.rdev())
                .map_err(|e| self.fail(dest, e))?;
        }
        self.finish(src, dest, &md)
    }

    fn file(&self, src: &Path, dest: &[u8]) -> CliResult<()> {
        use std::io::Read;
        let mut f = std::fs::File::open(src).map_err(|e| host(src, e))?;
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC;
        let fd = self
            .p
            .open(dest, flags, 0o600)
            .map_err(|e| self.fail(dest, e))?;
        let mut buf = vec![0u8; 1 << 20];
        let r = (|| loop {
            let n = f.read(&mut buf).map_err(|e| host(src, e))?;
            if n == 0 {
                return Ok(());
            }
            let mut done = 0;
            while done < n {
                let w = self
                    .p
                    .write(fd, &buf[done..n])
                    .map_err(|e| self.fail(dest, e))?;
                if w == 0 {
                    return Err(self.fail(dest, FsError::NoSpace));
                }
                done += w;
            }
        })();
        self.p.close(fd).map_err(|e| self.fail(dest, e))?;
        r
    }

    fn finish(&self, src: &Path, dest: &[u8], md: &std::fs::Metadata) -> CliResult<()> {
        let link = md.file_type().is_symlink();
        let fail = |e| self.fail(dest, e);
        self.p
            .chown(dest, Some(md.uid()), Some(md.gid()), false)
            .map_err(fail)?;
        if !link {
            self.p.chmod(dest, md.mode() & 0o7777).map_err(fail)?;
        }
        for (name, value) in host_xattrs(src)? {
            self.p
                .setxattr(dest, &name, &value, 0, false)
                .map_err(fail)?;
        }
        let at = UNIX_EPOCH + Duration::new(md.atime().max(0) as u64, md.atime_nsec() as u32);
        let mt = UNIX_EPOCH + Duration::new(md.mtime().max(0) as u64, md.mtime_nsec() as u32);
        self.p
            .utimensat(
                dest,
                Some(TimeOrNow::Time(at)),
                Some(TimeOrNow::Time(mt)),
                false,
            )
            .map_err(fail)
    }
}

/// The extended attributes of host path `p` (not following a symlink).
fn host_xattrs(p: &Path) -> CliResult<Vec<(Vec<u8>, Vec<u8>)>> {
    let c = cstr(p)?;
    let mut names = vec![0u8; 1 << 16];
    // SAFETY: valid path; buffer and its length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOTSUP) {
            return Ok(Vec::new());
        }
        return Err(host(p, e));
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cn = CString::new(name).map_err(|_| CliError::new("xattr name with NUL"))?;
        let mut v = vec![0u8; 1 << 16];
        // SAFETY: valid path, name, buffer and length.
        let len =
            unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        if len < 0 {
            return Err(host(p, std::io::Error::last_os_error()));
        }
        v.truncate(len as usize);
        out.push((name.to_vec(), v));
    }
    Ok(out)
}
