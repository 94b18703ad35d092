//! `mkdir [-p]`, `rm [-r]`, `mv`, `ln [-s]` and `touch` on an image, as
//! the coreutils of the same names do them (modes from `-m` or 0755 for
//! directories, 0644 for touched files; `mv` onto an existing directory
//! moves into it).

use aegis_vfs::{FsError, Process, TimeOrNow};

use super::list::{join, read_dir};
use super::{targets, with_session, Target};
use crate::cmd::{CliError, CliResult};

/// Depth `rm -r` descends (a bound on recursion).
const DEPTH_MAX: usize = 256;

#[derive(clap::Args)]
pub struct MkdirArgs {
    /// Make missing parents too; an existing directory is not an error.
    #[arg(short = 'p')]
    pub parents: bool,
    /// Mode of the new directories (octal).
    #[arg(short = 'm', default_value = "755")]
    pub mode: String,
    #[arg(required = true)]
    pub places: Vec<String>,
}

#[derive(clap::Args)]
pub struct RmArgs {
    /// Remove directories and their contents.
    #[arg(short = 'r')]
    pub recursive: bool,
    #[arg(required = true)]
    pub places: Vec<String>,
}

#[derive(clap::Args)]
pub struct MvArgs {
    pub source: String,
    pub dest: String,
}

#[derive(clap::Args)]
pub struct LnArgs {
    /// Make a symbolic link holding TARGET as given.
    #[arg(short = 's')]
    pub symbolic: bool,
    /// For -s any text; else IMAGE:PATH of the file to link.
    pub target: String,
    /// IMAGE:PATH of the new name.
    pub link: String,
}

#[derive(clap::Args)]
pub struct TouchArgs {
    #[arg(required = true)]
    pub places: Vec<String>,
}

fn octal(s: &str) -> CliResult<u32> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| CliError::new(format!("invalid mode '{s}' (octal, at most 7777)")))
}

pub fn mkdir(a: MkdirArgs) -> CliResult<u8> {
    let mode = octal(&a.mode)?;
    let ts = targets(&a.places)?;
    with_session(&ts[0].image, true, |s| {
        for t in &ts {
            if a.parents {
                mkdir_parents(&s.p, t, mode)?;
            } else {
                s.p.mkdir(&t.path, mode).map_err(|e| t.fail(e))?;
            }
        }
        Ok(0)
    })
}

fn mkdir_parents(p: &Process, t: &Target, mode: u32) -> CliResult<()> {
    let mut at = Vec::new();
    for c in t.path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        at.push(b'/');
        at.extend_from_slice(c);
        match p.mkdir(&at, mode) {
            Ok(()) => {}
            Err(FsError::Exists)
                if p.stat(&at)
                    .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR) => {}
            Err(e) => return Err(t.fail_at(&at, e)),
        }
    }
    Ok(())
}

pub fn rm(a: RmArgs) -> CliResult<u8> {
    let ts = targets(&a.places)?;
    with_session(&ts[0].image, true, |s| {
        for t in &ts {
            remove(&s.p, t, &t.path, a.recursive, 0)?;
        }
        Ok(0)
    })
}

fn remove(p: &Process, t: &Target, path: &[u8], recursive: bool, depth: usize) -> CliResult<()> {
    let fail = |e| t.fail_at(path, e);
    let st = p.lstat(path).map_err(fail)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return p.unlink(path).map_err(fail);
    }
    if !recursive {
        return Err(fail(FsError::IsDir));
    }
    if depth > DEPTH_MAX {
        return Err(fail(FsError::Loop));
    }
    for (name, _) in read_dir(p, path).map_err(fail)? {
        if name != b"." && name != b".." {
            remove(p, t, &join(path, &name), true, depth + 1)?;
        }
    }
    p.rmdir(path).map_err(fail)
}

pub fn mv(a: MvArgs) -> CliResult<u8> {
    let ts = targets(&[a.source, a.dest])?;
    let (from, to) = (&ts[0], &ts[1]);
    with_session(&from.image, true, |s| {
        let mut dest = to.path.clone();
        if s.p
            .stat(&dest)
            .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
        {
            let name = from
                .path
                .rsplit(|&b| b == b'/')
                .find(|c| !c.is_empty())
                .unwrap_or(b"");
            dest = join(&dest, name);
        }
        s.p.rename(&from.path, &dest).map_err(|e| from.fail(e))?;
        Ok(0)
    })
}

pub fn ln(a: LnArgs) -> CliResult<u8> {
    let link = Target::parse(&a.link)?;
    if a.symbolic {
        return with_session(&link.image, true, |s| {
            s.p.symlink(a.target.as_bytes(), &link.path)
                .map_err(|e| link.fail(e))?;
            Ok(0)
        });
    }
    let ts = targets(&[a.target, a.link])?;
    with_session(&ts[0].image, true, |s| {
        s.p.link(&ts[0].path, &ts[1].path)
            .map_err(|e| ts[1].fail(e))?;
        Ok(0)
    })
}

pub fn touch(a: TouchArgs) -> CliResult<u8> {
    let ts = targets(&a.places)?;
    with_session(&ts[0].image, true, |s| {
        for t in &ts {
            // A missing file is made (its times are now); an existing one,
            // a directory too, gets its times set to now.
            match s.p.stat(&t.path) {
                Err(FsError::NotFound) => {
                    let flags = libc::O_WRONLY | libc::O_CREAT;
                    let fd = s.p.open(&t.path, flags, 0o644).map_err(|e| t.fail(e))?;
                    s.p.close(fd).map_err(|e| t.fail(e))?;
                }
                Err(e) => return Err(t.fail(e)),
                Ok(_) => {
                    let now = Some(TimeOrNow::Now);
                    s.p.utimensat(&t.path, now, now, true)
                        .map_err(|e| t.fail(e))?;
                }
            }
        }
        Ok(0)
    })
}
