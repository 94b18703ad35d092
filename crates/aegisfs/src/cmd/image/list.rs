//! `ls [-l] [-a] [-R] IMAGE:PATH...` and `tree IMAGE:PATH`: directory
//! listings read with `getdents64`, sorted by name as ls sorts in the C
//! locale; `-l` prints mode, links, owner, group, size, mtime and name
//! (with `-> target` for symlinks).

use std::io::Write;

use aegis_vfs::embedded::dirent64_records;
use aegis_vfs::{FsError, Process};

use super::{targets, with_session, Target};
use crate::cmd::{CliError, CliResult};

/// Entries one listing may hold, and directories one tree may visit.
const ENTRIES_MAX: usize = 1 << 24;

#[derive(clap::Args)]
pub struct LsArgs {
    /// Long listing: mode, links, owner, group, size, time.
    #[arg(short = 'l')]
    pub long: bool,
    /// Show names starting with '.', "." and ".." included.
    #[arg(short = 'a')]
    pub all: bool,
    /// List subdirectories too.
    #[arg(short = 'R')]
    pub recursive: bool,
    /// IMAGE:PATH, one or more.
    #[arg(required = true)]
    pub places: Vec<String>,
}

#[derive(clap::Args)]
pub struct TreeArgs {
    /// IMAGE:PATH of the top directory.
    pub place: String,
}

/// The names in directory `path`, sorted, with their d_type.
pub(crate) fn read_dir(p: &Process, path: &[u8]) -> Result<Vec<(Vec<u8>, u8)>, FsError> {
    let fd = p.open(path, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let mut out = Vec::new();
    let r = (|| -> Result<(), FsError> {
        while out.len() < ENTRIES_MAX {
            let buf = p.getdents64(fd, 1 << 16)?;
            if buf.is_empty() {
                break;
            }
            let recs =
                dirent64_records(&buf).ok_or(FsError::Io("malformed directory records".into()))?;
            out.extend(recs.into_iter().map(|d| (d.name, d.kind)));
        }
        Ok(())
    })();
    p.close(fd)?;
    r?;
    out.sort();
    Ok(out)
}

pub(crate) fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

fn mode_string(mode: u32) -> String {
    let kind = match mode & libc::S_IFMT {
        libc::S_IFDIR => 'd',
        libc::S_IFLNK => 'l',
        libc::S_IFCHR => 'c',
        libc::S_IFBLK => 'b',
        libc::S_IFIFO => 'p',
        libc::S_IFSOCK => 's',
        _ => '-',
    };
    let mut s = String::from(kind);
    let bits = [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o40, 'r'),
        (0o20, 'w'),
        (0o10, 'x'),
        (0o4, 'r'),
        (0o2, 'w'),
        (0o1, 'x'),
    ];
    for (i, (bit, c)) in bits.iter().enumerate() {
        let special = match i {
            2 => mode & libc::S_ISUID != 0,
            5 => mode & libc::S_ISGID != 0,
            8 => mode & libc::S_ISVTX != 0,
            _ => false,
        };
        let set = mode & bit != 0;
        s.push(match (special, set, i) {
            (true, true, 8) => 't',
            (true, false, 8) => 'T',
            (true, true, _) => 's',
            (true, false, _) => 'S',
            (false, true, _) => *c,
            (false, false, _) => '-',
        });
    }
    s
}

pub(crate) fn time_string(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    // "2026-12-02T05:30:00Z" → "2026-12-02 05:30"
    s.get(..16).map(|x| x.replace('T', " ")).unwrap_or(s)
}

fn long_line(p: &Process, path: &[u8], name: &[u8]) -> Result<String, FsError> {
    let st = p.lstat(path)?;
    let mut line = format!(
        "{} {:>3} {:>5} {:>5} {:>10} {} {}",
        mode_string(st.st_mode),
        st.st_nlink,
        st.st_uid,
        st.st_gid,
        st.st_size,
        time_string(st.st_mtime),
        String::from_utf8_lossy(name)
    );
    if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        let t = p.readlink(path)?;
        line.push_str(&format!(" -> {}", String::from_utf8_lossy(&t)));
    }
    Ok(line)
}

fn list_one(
    p: &Process,
    a: &LsArgs,
    t: &Target,
    path: &[u8],
    out: &mut impl Write,
    header: bool,
) -> CliResult<()> {
    let fail = |e| t.fail_at(path, e);
    let st = p.lstat(path).map_err(fail)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        let line = if a.long {
            long_line(p, path, path).map_err(fail)?
        } else {
            String::from_utf8_lossy(path).into_owned()
        };
        return writeln!(out, "{line}").map_err(io);
    }
    if header {
        writeln!(out, "{}:", String::from_utf8_lossy(path)).map_err(io)?;
    }
    let entries = read_dir(p, path).map_err(fail)?;
    let shown: Vec<_> = entries
        .iter()
        .filter(|(n, _)| a.all || !n.starts_with(b"."))
        .collect();
    for (name, _) in &shown {
        let line = if a.long {
            long_line(p, &join(path, name), name).map_err(fail)?
        } else {
            String::from_utf8_lossy(name).into_owned()
        };
        writeln!(out, "{line}").map_err(io)?;
    }
    if a.recursive {
        for (name, kind) in shown {
            if *kind == libc::DT_DIR && name != b"." && name != b".." {
                writeln!(out).map_err(io)?;
                list_one(p, a, t, &join(path, name), out, true)?;
            }
        }
    }
    Ok(())
}

fn io(e: std::io::Error) -> CliError {
    CliError::new(format!("writing the output: {e}"))
}

pub fn ls(a: LsArgs) -> CliResult<u8> {
    let ts = targets(&a.places)?;
    let out = std::io::stdout();
    let mut out = out.lock();
    with_session(&ts[0].image, false, |s| {
        let many = ts.len() > 1 || a.recursive;
        for (i, t) in ts.iter().enumerate() {
            if i > 0 {
                writeln!(out).map_err(io)?;
            }
            list_one(&s.p, &a, t, &t.path, &mut out, many)?;
        }
        Ok(0)
    })
}

fn tree_of(
    p: &Process,
    t: &Target,
    path: &[u8],
    prefix: &str,
    out: &mut impl Write,
    counts: &mut (u64, u64),
) -> CliResult<()> {
    let fail = |e| t.fail_at(path, e);
    let entries: Vec<_> = read_dir(p, path)
        .map_err(fail)?
        .into_iter()
        .filter(|(n, _)| n != b"." && n != b"..")
        .collect();
    for (i, (name, kind)) in entries.iter().enumerate() {
        let last = i + 1 == entries.len();
        let child = join(path, name);
        let mut line = format!(
            "{prefix}{}{}",
            if last { "└── " } else { "├── " },
            String::from_utf8_lossy(name)
        );
        if *kind == libc::DT_LNK {
            let target = p.readlink(&child).map_err(fail)?;
            line.push_str(&format!(" -> {}", String::from_utf8_lossy(&target)));
        }
        writeln!(out, "{line}").map_err(io)?;
        if *kind == libc::DT_DIR {
            counts.0 += 1;
            if counts.0 as usize > ENTRIES_MAX {
                return Err(CliError::new("tree: too many directories"));
            }
            let deeper = format!("{prefix}{}", if last { "    " } else { "│   " });
            tree_of(p, t, &child, &deeper, out, counts)?;
        } else {
            counts.1 += 1;
        }
    }
    Ok(())
}

pub fn tree(a: TreeArgs) -> CliResult<u8> {
    let t = Target::parse(&a.place)?;
    let out = std::io::stdout();
    let mut out = out.lock();
    with_session(&t.image, false, |s| {
        writeln!(out, "{}", String::from_utf8_lossy(&t.path)).map_err(io)?;
        let mut counts = (0, 0);
        tree_of(&s.p, &t, &t.path, "", &mut out, &mut counts)?;
        writeln!(out, "\n{} directories, {} files", counts.0, counts.1).map_err(io)?;
        Ok(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_print_as_ls_prints_them() {
        assert_eq!(mode_string(libc::S_IFDIR | 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(libc::S_IFREG | 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(libc::S_IFDIR | 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(libc::S_IFREG | 0o2640), "-rw-r-S---");
        assert_eq!(mode_string(libc::S_IFLNK | 0o777), "lrwxrwxrwx");
    }
}
