//! Conversions between the [`aegis_vfs`] types and fuser's: attributes,
//! file types, times, the request's caller, and errors to errno; and the
//! replies most requests share (an entry, nothing, an xattr).
//!
//! Invariant: every reply carrying an attribute gives the kernel the
//! mount's [`Ttls`], and [`reply_entry`] is the one place an entry (and so a lookup
//! the kernel will later forget) is sent, apart from readdirplus and
//! create, whose replies carry their own entry shapes.

use std::time::Duration;

use aegis_vfs::{Attr, FileSystem, FileType, FsError, Request, TimeOrNow, XattrReply};
use fuser::{Errno, FileAttr, Generation, INodeNo, ReplyEmpty, ReplyEntry, ReplyXattr};
use tracing::warn;

/// How long the kernel may cache what a reply tells it: attributes
/// (`attr_timeout=`) and name lookups (`entry_timeout=`). Every change
/// goes through this mount, so the kernel's caches are updated on the way;
/// the timeouts only bound staleness of `atime` and similar changes the
/// filesystem makes on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ttls {
    pub(crate) attr: Duration,
    pub(crate) entry: Duration,
}

impl Ttls {
    /// For replies that carry one timeout for both the entry and its
    /// attributes (create, readdirplus): the shorter, so that neither is
    /// cached longer than configured.
    pub(crate) fn both(&self) -> Duration {
        self.attr.min(self.entry)
    }
}

pub(crate) fn errno(e: &FsError) -> Errno {
    if let FsError::Io(msg) = e {
        // The only errors worth an operator's attention: the rest are the
        // caller's mistakes and reach it as an errno.
        warn!("I/O error returned to the kernel: {msg}");
    }
    Errno::from_i32(e.errno())
}

pub(crate) fn request(req: &fuser::Request) -> Request {
    Request {
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
        umask: 0,
    }
}

/// The caller of a `setattr` of `ino`, its gid the file's group when it
/// holds that group as a supplementary one: the filesystem decides from
/// the gid whether setgid survives ([`setattr_privileges`]), and the FUSE
/// request carries the primary group only. The groups come from
/// `/proc/PID/status`, as libfuse's `fuse_req_getgroups` reads them, and
/// only when setgid is at stake (a caller other than root, and a mode with
/// setgid or no mode at all).
///
/// [`setattr_privileges`]: aegis_vfs::validate::setattr_privileges
pub(crate) fn setattr_caller(
    fs: &dyn FileSystem,
    req: &fuser::Request,
    ino: u64,
    mode: Option<u32>,
    gid: Option<u32>,
) -> Request {
    let r = request(req);
    if r.uid == 0 || mode.is_some_and(|m| m & libc::S_ISGID == 0) {
        return r;
    }
    let Some(group) = gid.or_else(|| fs.getattr(ino).ok().map(|a| a.gid)) else {
        return r;
    };
    if group != r.gid && supplementary_groups(r.pid).contains(&group) {
        return Request { gid: group, ..r };
    }
    r
}

/// The supplementary groups of thread `pid`; none if it is gone.
fn supplementary_groups(pid: u32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The caller of a `mknod`, `mkdir` or `create`, with the umask the kernel
/// passes: with `FUSE_DONT_MASK` the mode arrives unmasked, and the
/// filesystem applies the umask unless a default ACL replaces it.
pub(crate) fn creator(req: &fuser::Request, umask: u32) -> Request {
    Request {
        umask: umask & 0o777,
        ..request(req)
    }
}

pub(crate) fn file_type(kind: FileType) -> fuser::FileType {
    match kind {
        FileType::RegularFile => fuser::FileType::RegularFile,
        FileType::Directory => fuser::FileType::Directory,
        FileType::Symlink => fuser::FileType::Symlink,
        FileType::NamedPipe => fuser::FileType::NamedPipe,
        FileType::Socket => fuser::FileType::Socket,
        FileType::CharDevice => fuser::FileType::CharDevice,
        FileType::BlockDevice => fuser::FileType::BlockDevice,
    }
}

pub(crate) fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.crtime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        // FUSE carries the kernel's 32-bit `new_encode_dev` form; that is
        // also what mknod handed the filesystem, so it round-trips.
        rdev: a.rdev as u32,
        blksize: a.blksize,
        flags: 0,
    }
}

/// The generation the kernel is told: the root's must be 0 for file
/// handles (the kernel warns otherwise), whatever the filesystem keeps.
pub(crate) fn generation(a: &Attr) -> Generation {
    if a.ino == aegis_vfs::ROOT_INO {
        Generation(0)
    } else {
        Generation(a.generation)
    }
}

pub(crate) fn reply_entry(reply: ReplyEntry, ttls: &Ttls, result: aegis_vfs::Result<Attr>) {
    match result {
        Ok(attr) => reply.entry_with_ttls(
            &ttls.attr,
            &ttls.entry,
            &file_attr(&attr),
            generation(&attr),
        ),
        Err(e) => reply.error(errno(&e)),
    }
}

pub(crate) fn reply_empty(reply: ReplyEmpty, result: aegis_vfs::Result<()>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(&e)),
    }
}

pub(crate) fn reply_xattr(reply: ReplyXattr, result: aegis_vfs::Result<XattrReply>) {
    match result {
        Ok(XattrReply::Size(n)) => reply.size(n),
        Ok(XattrReply::Data(d)) => reply.data(&d),
        Err(e) => reply.error(errno(&e)),
    }
}

pub(crate) fn time(t: fuser::TimeOrNow) -> TimeOrNow {
    match t {
        fuser::TimeOrNow::SpecificTime(t) => TimeOrNow::Time(t),
        fuser::TimeOrNow::Now => TimeOrNow::Now,
    }
}
