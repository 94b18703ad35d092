//! The crash-test workload language: one operation per line, run on a
//! fresh [`Recorder`], then every crash state checked.
//!
//! A line is parsed whole (operation known, argument count, numbers) before
//! anything runs, so a bad script fails naming its line and runs nothing
//! more; an operation that fails on the filesystem (ENOENT, say) is only a
//! note, as it would be for a program.

use std::ffi::{OsStr, OsString};

use aegis_diskfs::DiskFs;
use aegis_vfs::{
    Fh, FileSystem, FsError, Ino, Request, Result, SetAttr, RENAME_EXCHANGE, RENAME_WHITEOUT,
};

use crate::{fsync_path, lookup, split, CrashReport, Recorder};

/// Run a workload script on a fresh recorded filesystem and check every
/// crash state. One operation per line; `#` starts a comment. Paths are
/// relative to the root; data is generated from the line number.
///
/// ```text
/// mkdir PATH            rmdir PATH            unlink PATH
/// create PATH           write PATH OFFSET LEN  append PATH LEN
/// truncate PATH SIZE    punch PATH OFFSET LEN  fallocate PATH SIZE
/// falloc PATH MODE OFFSET LEN
/// rename FROM TO        exchange A B          link FROM TO
/// whiteout FROM TO      (rename leaving a whiteout at FROM)
/// symlink TARGET PATH   setxattr PATH NAME VALUE
/// fsync PATH            fdatasync PATH        sync
/// shutdown
/// ```
///
/// `shutdown` stops the filesystem as `FS_IOC_SHUTDOWN` does: every later
/// line fails with EIO (a note each), and the image it leaves must show
/// the newest fsync.
///
/// `fallocate PATH SIZE` reserves `[0, SIZE)` and extends the size (mode
/// 0); `falloc` takes a mode: `alloc`, `keep` (KEEP_SIZE), `punch`,
/// `zero`, `zero-keep`, `collapse` or `insert`.
///
/// A line that does not parse is an error naming it; an operation that
/// fails (e.g. ENOENT) is reported and the script goes on, as a program
/// would.
pub fn run_script(
    text: &str,
    subsets: usize,
    seed: u64,
) -> std::result::Result<(CrashReport, Vec<String>), String> {
    let mut r = Recorder::new(16 << 10)?;
    let mut notes = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let op = parse_line(n + 1, line)?;
        if op.w[0] == "shutdown" {
            r.shutdown();
            continue;
        }
        let fs = r.fs().clone();
        match op.apply(&fs) {
            Ok(true) => r.fsynced(),
            Ok(false) => {}
            Err(e) => notes.push(format!("line {}: '{line}': {e}", n + 1)),
        }
    }
    Ok((r.check(subsets, seed), notes))
}

/// One parsed line: the words, numbers parsed where the operation wants
/// them, and the line number that seeds its data.
struct Line<'a> {
    w: Vec<&'a str>,
    nums: [u64; 5],
    number: usize,
}

/// The `fallocate(2)` mode a `falloc` line names.
fn falloc_mode(word: &str) -> Option<i32> {
    use libc::{
        FALLOC_FL_COLLAPSE_RANGE as COLLAPSE, FALLOC_FL_INSERT_RANGE as INSERT,
        FALLOC_FL_KEEP_SIZE as KEEP, FALLOC_FL_PUNCH_HOLE as PUNCH, FALLOC_FL_ZERO_RANGE as ZERO,
    };
    Some(match word {
        "alloc" => 0,
        "keep" => KEEP,
        "punch" => PUNCH | KEEP,
        "zero" => ZERO,
        "zero-keep" => ZERO | KEEP,
        "collapse" => COLLAPSE,
        "insert" => INSERT,
        _ => return None,
    })
}

fn parse_line(number: usize, line: &str) -> std::result::Result<Line<'_>, String> {
    let w: Vec<&str> = line.split_whitespace().collect();
    // (arguments, which of them are numbers)
    let (argc, numeric): (usize, &[usize]) = match w[0] {
        "mkdir" | "rmdir" | "unlink" | "create" | "fsync" | "fdatasync" => (1, &[]),
        "write" | "punch" => (3, &[2, 3]),
        "append" | "truncate" | "fallocate" => (2, &[2]),
        "rename" | "exchange" | "whiteout" | "link" | "symlink" => (2, &[]),
        "setxattr" => (3, &[]),
        "falloc" => (4, &[3, 4]),
        "sync" | "shutdown" => (0, &[]),
        other => return Err(format!("line {number}: unknown operation '{other}'")),
    };
    if w.len() != argc + 1 {
        return Err(format!(
            "line {number}: '{line}': {} takes {argc} argument(s)",
            w[0]
        ));
    }
    if w[0] == "falloc" && falloc_mode(w[2]).is_none() {
        return Err(format!(
            "line {number}: '{line}': unknown fallocate mode '{}'",
            w[2]
        ));
    }
    let mut nums = [0u64; 5];
    for &i in numeric {
        nums[i] = w[i]
            .parse()
            .map_err(|_| format!("line {number}: '{line}': '{}' is not a number", w[i]))?;
    }
    Ok(Line { w, nums, number })
}

impl Line<'_> {
    /// Run the operation; `Ok(true)` when it made things durable.
    fn apply(&self, fs: &DiskFs) -> Result<bool> {
        let w = &self.w;
        match w[0] {
            "fsync" | "fdatasync" => fsync_path(fs, w[1], w[0] == "fdatasync").map(|_| true),
            "sync" => fs.sync().map(|_| true),
            "write" | "append" | "truncate" | "punch" | "fallocate" | "falloc" => {
                self.apply_data(fs).map(|_| false)
            }
            _ => self.apply_namespace(fs).map(|_| false),
        }
    }

    fn apply_namespace(&self, fs: &DiskFs) -> Result<()> {
        let (w, req) = (&self.w, Request::root());
        match w[0] {
            "mkdir" => fs
                .mkdir(&req, parent(fs, w[1])?, &name(w[1]), 0o755)
                .map(|a| fs.forget(a.ino, 1)),
            "rmdir" => fs.rmdir(parent(fs, w[1])?, &name(w[1])),
            "unlink" => fs.unlink(parent(fs, w[1])?, &name(w[1])),
            "create" => open_rw(fs, w[1], true).and_then(|(i, fh)| fs.release(i, fh)),
            "rename" | "exchange" | "whiteout" => {
                let flags = match w[0] {
                    "exchange" => RENAME_EXCHANGE,
                    "whiteout" => RENAME_WHITEOUT,
                    _ => 0,
                };
                let (from, to) = (parent(fs, w[1])?, parent(fs, w[2])?);
                fs.rename(from, &name(w[1]), to, &name(w[2]), flags)
            }
            "link" => {
                let i = lookup(fs, w[1]).ok_or(FsError::NotFound)?;
                fs.link(i, parent(fs, w[2])?, &name(w[2]))
                    .map(|a| fs.forget(a.ino, 1))
            }
            "symlink" => fs
                .symlink(&req, parent(fs, w[2])?, &name(w[2]), OsStr::new(w[1]))
                .map(|a| fs.forget(a.ino, 1)),
            "setxattr" => {
                let i = lookup(fs, w[1]).ok_or(FsError::NotFound)?;
                fs.setxattr(&Request::root(), i, OsStr::new(w[2]), w[3].as_bytes(), 0)
            }
            other => unreachable!("parse_line admits no operation '{other}'"),
        }
    }

    fn apply_data(&self, fs: &DiskFs) -> Result<()> {
        let (w, nums) = (&self.w, &self.nums);
        if w[0] == "truncate" {
            let i = lookup(fs, w[1]).ok_or(FsError::NotFound)?;
            let set = SetAttr {
                size: Some(nums[2]),
                ..Default::default()
            };
            return fs.setattr(&Request::root(), i, &set, None).map(|_| ());
        }
        let (i, fh) = open_rw(fs, w[1], w[0] == "write" || w[0] == "append")?;
        let r = match w[0] {
            "write" => fs.write(i, fh, nums[2], &self.data(nums[3])).map(|_| ()),
            "append" => fs
                .getattr(i)
                .and_then(|a| fs.write(i, fh, a.size, &self.data(nums[2])))
                .map(|_| ()),
            "punch" => fs.fallocate(
                i,
                fh,
                nums[2],
                nums[3],
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            ),
            "falloc" => {
                let mode = falloc_mode(w[2]).expect("checked by parse_line");
                fs.fallocate(i, fh, nums[3], nums[4], mode)
            }
            _ => fs.fallocate(i, fh, 0, nums[2], 0),
        };
        fs.release(i, fh)?;
        r
    }

    /// Data for a write, generated from the line number so that every
    /// line writes bytes of its own.
    fn data(&self, len: u64) -> Vec<u8> {
        let tag = (self.number - 1) as u8;
        (0..len).map(|i| (i as u8) ^ tag.wrapping_mul(31)).collect()
    }
}

fn parent(fs: &DiskFs, p: &str) -> Result<Ino> {
    lookup(fs, split(p).0).ok_or(FsError::NotFound)
}

fn name(p: &str) -> OsString {
    OsStr::new(split(p).1).to_owned()
}

/// Open a file read-write, creating it (mode 0644) when asked.
fn open_rw(fs: &DiskFs, p: &str, create: bool) -> Result<(Ino, Fh)> {
    match lookup(fs, p) {
        Some(ino) => Ok((ino, fs.open(ino, libc::O_RDWR)?)),
        None if create => {
            let (a, fh) = fs.create(
                &Request::root(),
                parent(fs, p)?,
                &name(p),
                0o644,
                libc::O_RDWR,
            )?;
            fs.forget(a.ino, 1);
            Ok((a.ino, fh))
        }
        None => Err(FsError::NotFound),
    }
}
