//! `stat IMAGE:PATH...`, `cat IMAGE:PATH...` and `df IMAGE`: one
//! inode's attributes as stat(1) shows them, a file's bytes to standard
//! output, and the filesystem's space and inodes as df shows them.

use std::io::Write;

use super::list::time_string;
use super::{targets, with_session, Target};
use crate::cmd::{CliError, CliResult};

#[derive(clap::Args)]
pub struct StatArgs {
    /// IMAGE:PATH, one or more (symlinks are not followed).
    #[arg(required = true)]
    pub places: Vec<String>,
}

#[derive(clap::Args)]
pub struct CatArgs {
    /// IMAGE:PATH of regular files, printed in order.
    #[arg(required = true)]
    pub places: Vec<String>,
}

#[derive(clap::Args)]
pub struct DfArgs {
    /// The image (or IMAGE:PATH).
    pub image: String,
}

fn io(e: std::io::Error) -> CliError {
    CliError::new(format!("writing the output: {e}"))
}

fn kind_name(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => "directory",
        libc::S_IFLNK => "symbolic link",
        libc::S_IFCHR => "character special file",
        libc::S_IFBLK => "block special file",
        libc::S_IFIFO => "fifo",
        libc::S_IFSOCK => "socket",
        _ => "regular file",
    }
}

pub fn stat(a: StatArgs) -> CliResult<u8> {
    let ts = targets(&a.places)?;
    let out = std::io::stdout();
    let mut out = out.lock();
    with_session(&ts[0].image, false, |s| {
        for t in &ts {
            let st = s.p.lstat(&t.path).map_err(|e| t.fail(e))?;
            let mut name = t.shown();
            if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
                let l = s.p.readlink(&t.path).map_err(|e| t.fail(e))?;
                name.push_str(&format!(" -> {}", String::from_utf8_lossy(&l)));
            }
            writeln!(
                out,
                "  File: {name}\n  Size: {}\tBlocks: {}\tIO Block: {}\t{}\n Inode: {}\tLinks: {}\n Access: ({:04o})\tUid: {}\tGid: {}\nAccess: {}\nModify: {}\nChange: {}",
                st.st_size,
                st.st_blocks,
                st.st_blksize,
                kind_name(st.st_mode),
                st.st_ino,
                st.st_nlink,
                st.st_mode & 0o7777,
                st.st_uid,
                st.st_gid,
                time_string(st.st_atime),
                time_string(st.st_mtime),
                time_string(st.st_ctime),
            )
            .map_err(io)?;
        }
        Ok(0)
    })
}

pub fn cat(a: CatArgs) -> CliResult<u8> {
    let ts = targets(&a.places)?;
    let out = std::io::stdout();
    let mut out = out.lock();
    with_session(&ts[0].image, false, |s| {
        for t in &ts {
            let fd =
                s.p.open(&t.path, libc::O_RDONLY, 0)
                    .map_err(|e| t.fail(e))?;
            let r = copy_out(s, t, fd, &mut out);
            s.p.close(fd).map_err(|e| t.fail(e))?;
            r?;
        }
        Ok(0)
    })
}

/// Every byte of open file `fd` to `out`, 1 MiB at a time.
fn copy_out(s: &super::Session, t: &Target, fd: i32, out: &mut impl Write) -> CliResult<()> {
    loop {
        let chunk = s.p.read(fd, 1 << 20).map_err(|e| t.fail(e))?;
        if chunk.is_empty() {
            return Ok(());
        }
        out.write_all(&chunk).map_err(io)?;
    }
}

pub fn df(a: DfArgs) -> CliResult<u8> {
    let t = match Target::parse(&a.image) {
        Ok(t) => t,
        Err(_) => Target {
            image: a.image.clone().into(),
            path: b"/".to_vec(),
        },
    };
    with_session(&t.image, false, |s| {
        let f = s.p.statfs(&t.path).map_err(|e| t.fail(e))?;
        let unit = f.frsize as u64;
        let (size, free, avail) = (f.blocks * unit, f.bfree * unit, f.bavail * unit);
        let used = size.saturating_sub(free);
        let pct = if used + avail == 0 {
            0
        } else {
            (used * 100).div_ceil(used + avail)
        };
        println!("Filesystem            Size       Used      Avail Use%  Inodes  IFree");
        println!(
            "{:<16} {:>10} {:>10} {:>10} {:>3}% {:>7} {:>6}",
            t.image.display(),
            size,
            used,
            avail,
            pct,
            f.files,
            f.ffree
        );
        Ok(0)
    })
}
