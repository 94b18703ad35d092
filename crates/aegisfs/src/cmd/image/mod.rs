//! Commands on an unmounted image, as debugfs and mtools work: `ls`,
//! `stat`, `cat`, `get`, `put`, `mkdir`, `rm`, `mv`, `ln`, `touch`, `df`
//! and `tree`, each naming places as `IMAGE:PATH`. They go through the
//! embedded VFS (`aegis_vfs::embedded`) as root, with no FUSE and no
//! kernel mount, so they work in containers without `/dev/fuse`.
//!
//! Each command takes the image lock (a mounted image is refused, as a
//! second mount would be), opens the pool read-only unless it writes,
//! and a writing command commits before it exits. An error is one line
//! naming the `IMAGE:PATH` and the errno's text, with exit code 1; what
//! went before it in the same command stands (as with `rm a b`).

mod copy;
mod edit;
mod list;
mod show;

pub use copy::{get_any, put, GetAnyArgs, PutArgs};
pub use edit::{ln, mkdir, mv, rm, touch};
pub use edit::{LnArgs, MkdirArgs, MvArgs, RmArgs, TouchArgs};
pub use list::{ls, tree};
pub use list::{LsArgs, TreeArgs};
pub use show::{cat, df, stat};
pub use show::{CatArgs, DfArgs, StatArgs};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aegis_block::DeviceRef;
use aegis_diskfs::{AtimeMode, DiskFs, DiskFsOptions, MountOptions};
use aegis_fs::OpenOptions;
use aegis_vfs::{Creds, FileSystem, FsError, Process, Vfs};

use super::{CliError, CliResult};

/// A place on an image: `IMAGE:PATH` (PATH absolute inside the image;
/// a relative one is taken from its root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub image: PathBuf,
    pub path: Vec<u8>,
}

impl Target {
    pub fn parse(s: &str) -> CliResult<Target> {
        let Some((image, path)) = s.split_once(':') else {
            return Err(CliError::new(format!(
                "{s}: expected IMAGE:PATH (for example disk.img:/etc)"
            )));
        };
        if image.is_empty() {
            return Err(CliError::new(format!("{s}: no image before ':'")));
        }
        let mut p = path.as_bytes().to_vec();
        if p.first() != Some(&b'/') {
            p.insert(0, b'/');
        }
        Ok(Target {
            image: PathBuf::from(image),
            path: p,
        })
    }

    pub fn shown(&self) -> String {
        format!(
            "{}:{}",
            self.image.display(),
            String::from_utf8_lossy(&self.path)
        )
    }

    /// An error of a call on `path` of this target's image, as one line.
    pub fn fail_at(&self, path: &[u8], e: FsError) -> CliError {
        let at = Target {
            image: self.image.clone(),
            path: path.to_vec(),
        };
        at.fail(e)
    }

    /// An error of the call on this place, as one line.
    pub fn fail(&self, e: FsError) -> CliError {
        CliError::new(format!("{}: {}", self.shown(), errno_text(&e)))
    }
}

/// The kernel's words for an errno (`strerror`), as ls or cp print them.
pub fn errno_text(e: &FsError) -> String {
    let s = std::io::Error::from_raw_os_error(e.errno()).to_string();
    // "No such file or directory (os error 2)" → as ls prints it.
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Parse every argument as a target on one and the same image.
pub fn targets(args: &[String]) -> CliResult<Vec<Target>> {
    let t: Vec<Target> = args
        .iter()
        .map(|a| Target::parse(a))
        .collect::<CliResult<_>>()?;
    if let Some(first) = t.first() {
        if let Some(other) = t.iter().find(|x| x.image != first.image) {
            return Err(CliError::new(format!(
                "{}: all places must be on one image ({})",
                other.shown(),
                first.image.display()
            )));
        }
    }
    Ok(t)
}

/// An image opened for one command: the filesystem and a root caller.
pub struct Session {
    image: PathBuf,
    fs: Arc<DiskFs>,
    vfs: Option<Arc<Vfs>>,
    pub p: Process,
    writable: bool,
}

impl Session {
    /// Lock and open `image`, writable or not.
    pub fn open(image: &Path, writable: bool) -> CliResult<Session> {
        let shown = image.display();
        let dev = super::open_locked(image, writable)?;
        let opts = MountOptions {
            pool: OpenOptions {
                read_only: !writable,
                rewind_txg: None,
            },
            fs: DiskFsOptions {
                // Looking does not write: no atime updates.
                atime: AtimeMode::Noatime,
                ..Default::default()
            },
            sync_thread: false,
            ..Default::default()
        };
        let fs = aegis_diskfs::open(vec![Arc::new(dev) as DeviceRef], &opts).map_err(|e| {
            CliError::new(format!("{shown}: not an AegisFS image, or damaged: {e}"))
        })?;
        let vfs = Vfs::new(fs.clone() as Arc<dyn FileSystem>);
        let mut creds = Creds::root();
        // Modes are given as meant (put copies them; mkdir says them).
        creds.umask = 0;
        let p = vfs.process(creds);
        Ok(Session {
            image: image.to_path_buf(),
            fs,
            vfs: Some(vfs),
            p,
            writable,
        })
    }

    /// Commit (when writable) and close; the command's last step.
    pub fn close(mut self) -> CliResult<()> {
        self.vfs.take();
        if self.writable {
            self.fs
                .unmount()
                .map_err(|e| CliError::new(format!("{}: commit: {e}", self.image.display())))?;
        }
        Ok(())
    }
}

/// Run `f` on a session of the targets' image, closing it after (with a
/// commit when `writable`, even when `f` failed part way: what it did
/// stands).
pub fn with_session<T>(
    image: &Path,
    writable: bool,
    f: impl FnOnce(&Session) -> CliResult<T>,
) -> CliResult<T> {
    let s = Session::open(image, writable)?;
    let r = f(&s);
    let closed = s.close();
    let v = r?;
    closed?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_need_a_colon_and_one_image() {
        let t = Target::parse("disk.img:/a/b").unwrap();
        assert_eq!(
            (t.image.to_str().unwrap(), &t.path[..]),
            ("disk.img", &b"/a/b"[..])
        );
        assert_eq!(Target::parse("disk.img:").unwrap().path, b"/");
        assert_eq!(Target::parse("d.img:rel").unwrap().path, b"/rel");
        assert!(Target::parse("disk.img").is_err());
        assert!(Target::parse(":/x").is_err());
        let two = ["a.img:/x".to_string(), "b.img:/y".to_string()];
        assert!(targets(&two).is_err());
    }
}
