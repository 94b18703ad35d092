//! The filesystem's intent log: what each change records, how `fsync`
//! writes the records, and how mount replays them.
//!
//! Every change made through [`DiskFs`](super::DiskFs) appends a record
//! inside its tree transaction, so records and txgs cut the history at the
//! same points: a commit covers exactly the records appended before it
//! (the commit hook drops them and starts a new chain). `fsync` writes the
//! records not yet logged, in order, as the next block of the chain in the
//! dataset's log ring and makes that one write durable (see
//! `aegis_fs::intent_log` for the ring and block format). Replay re-runs the
//! records on top of the last txg, in order; inode numbers come out the
//! same because allocation is deterministic, and each create checks it.
//!
//! Records: u8 type, then fields (little-endian; names and values with a
//! u16 or u32 length). Times set explicitly are recorded resolved, so a
//! replayed `utimensat(..., UTIME_NOW)` gives the original time.

use std::sync::Arc;

use aegis_fs::intent_log::{block_len, LogBlock, LogHead, LOG_HEADER, MAX_CHAIN, MAX_LOG_WRITE};
use aegis_fs::posix::keys;
use aegis_fs::CommitHook;
use aegis_pool::codec::{Reader, Writer};
use aegis_pool::{Extent, Pool};
use parking_lot::Mutex;

use crate::error::{FsError, Result};

/// How changes to a file or directory are logged (`aegisfs set
/// logging=... PATH`). New entries inherit their directory's policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogPolicy {
    /// Every change, file data included, goes to the log: fsync is fast and
    /// makes everything durable.
    Full = 1,
    /// Metadata changes go to the log; file data becomes durable at the next
    /// txg commit (within 5 s), so after a crash recently fsynced data of
    /// such a file may read as zeroes where it was written.
    Metadata = 2,
    /// Nothing about it is logged: its fsync commits a txg.
    None = 3,
}

impl LogPolicy {
    pub fn parse(s: &str) -> Option<LogPolicy> {
        match s {
            "full" => Some(LogPolicy::Full),
            "metadata" => Some(LogPolicy::Metadata),
            "none" => Some(LogPolicy::None),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            LogPolicy::Full => "full",
            LogPolicy::Metadata => "metadata",
            LogPolicy::None => "none",
        }
    }
    pub fn from_u8(v: u8) -> Option<LogPolicy> {
        match v {
            1 => Some(LogPolicy::Full),
            2 => Some(LogPolicy::Metadata),
            3 => Some(LogPolicy::None),
            _ => None,
        }
    }
}

/// The xattr name through which the policy is set and read.
pub const POLICY_XATTR: &[u8] = b"user.aegisfs.logging";

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LogRec {
    /// mknod, create and mkdir: `mode` holds the type, as given (before
    /// setgid inheritance); `ino` is what it created.
    Mknod {
        parent: u64,
        name: Vec<u8>,
        mode: u32,
        rdev: u64,
        uid: u32,
        gid: u32,
        ino: u64,
    },
    Symlink {
        parent: u64,
        name: Vec<u8>,
        target: Vec<u8>,
        uid: u32,
        gid: u32,
        ino: u64,
    },
    Unlink {
        parent: u64,
        name: Vec<u8>,
    },
    Rmdir {
        parent: u64,
        name: Vec<u8>,
    },
    Rename {
        parent: u64,
        name: Vec<u8>,
        newparent: u64,
        newname: Vec<u8>,
        flags: u32,
    },
    Link {
        ino: u64,
        newparent: u64,
        newname: Vec<u8>,
    },
    /// The attributes after the change (`None` = untouched).
    SetAttr {
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        times: [Option<i64>; 4],
    },
    Write {
        ino: u64,
        offset: u64,
        data: Vec<u8>,
    },
    Punch {
        ino: u64,
        offset: u64,
        end: u64,
    },
    Extend {
        ino: u64,
        size: u64,
    },
    SetXattr {
        ino: u64,
        name: Vec<u8>,
        value: Vec<u8>,
        flags: i32,
    },
    RemoveXattr {
        ino: u64,
        name: Vec<u8>,
    },
}

fn put_bytes(w: &mut Writer, b: &[u8]) {
    w.u32(b.len() as u32);
    w.bytes(b);
}

fn get_bytes(r: &mut Reader<'_>) -> Result<Vec<u8>> {
    let n = r.u32()? as usize;
    Ok(r.bytes(n)?.to_vec())
}

fn opt32(w: &mut Writer, v: Option<u32>) {
    w.u8(v.is_some() as u8);
    w.u32(v.unwrap_or(0));
}

fn opt64(w: &mut Writer, v: Option<u64>) {
    w.u8(v.is_some() as u8);
    w.u64(v.unwrap_or(0));
}

/// An optional field: a flag 0 or 1, then the value (zero when absent),
/// so every record has one encoding.
fn get_opt(flag: u8, v: u64) -> Result<Option<u64>> {
    match (flag, v) {
        (0, 0) => Ok(None),
        (1, v) => Ok(Some(v)),
        _ => Err(FsError::Io(
            "log record with a malformed optional field".into(),
        )),
    }
}

fn get_opt32(r: &mut Reader<'_>) -> Result<Option<u32>> {
    let flag = r.u8()?;
    Ok(get_opt(flag, r.u32()? as u64)?.map(|v| v as u32))
}

fn get_opt64(r: &mut Reader<'_>) -> Result<Option<u64>> {
    let flag = r.u8()?;
    get_opt(flag, r.u64()?)
}

impl LogRec {
    /// The inodes whose policy governs this record.
    pub fn inos(&self) -> Vec<u64> {
        match self {
            LogRec::Mknod { parent, ino, .. } | LogRec::Symlink { parent, ino, .. } => {
                vec![*parent, *ino]
            }
            LogRec::Unlink { parent, .. } | LogRec::Rmdir { parent, .. } => vec![*parent],
            LogRec::Rename {
                parent, newparent, ..
            } => vec![*parent, *newparent],
            LogRec::Link { ino, newparent, .. } => vec![*ino, *newparent],
            LogRec::SetAttr { ino, .. }
            | LogRec::Write { ino, .. }
            | LogRec::Punch { ino, .. }
            | LogRec::Extend { ino, .. }
            | LogRec::SetXattr { ino, .. }
            | LogRec::RemoveXattr { ino, .. } => vec![*ino],
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            LogRec::Mknod {
                parent,
                name,
                mode,
                rdev,
                uid,
                gid,
                ino,
            } => {
                w.u8(1);
                w.u64(*parent);
                w.u32(*mode);
                w.u64(*rdev);
                w.u32(*uid);
                w.u32(*gid);
                w.u64(*ino);
                put_bytes(&mut w, name);
            }
            LogRec::Symlink {
                parent,
                name,
                target,
                uid,
                gid,
                ino,
            } => {
                w.u8(2);
                w.u64(*parent);
                w.u32(*uid);
                w.u32(*gid);
                w.u64(*ino);
                put_bytes(&mut w, name);
                put_bytes(&mut w, target);
            }
            LogRec::Unlink { parent, name } | LogRec::Rmdir { parent, name } => {
                w.u8(if matches!(self, LogRec::Unlink { .. }) {
                    3
                } else {
                    4
                });
                w.u64(*parent);
                put_bytes(&mut w, name);
            }
            LogRec::Rename {
                parent,
                name,
                newparent,
                newname,
                flags,
            } => {
                w.u8(5);
                w.u64(*parent);
                w.u64(*newparent);
                w.u32(*flags);
                put_bytes(&mut w, name);
                put_bytes(&mut w, newname);
            }
            LogRec::Link {
                ino,
                newparent,
                newname,
            } => {
                w.u8(6);
                w.u64(*ino);
                w.u64(*newparent);
                put_bytes(&mut w, newname);
            }
            LogRec::SetAttr {
                ino,
                mode,
                uid,
                gid,
                size,
                times,
            } => {
                w.u8(7);
                w.u64(*ino);
                opt32(&mut w, *mode);
                opt32(&mut w, *uid);
                opt32(&mut w, *gid);
                opt64(&mut w, *size);
                for t in times {
                    opt64(&mut w, t.map(|v| v as u64));
                }
            }
            LogRec::Write { ino, offset, data } => {
                w.u8(8);
                w.u64(*ino);
                w.u64(*offset);
                put_bytes(&mut w, data);
            }
            LogRec::Punch { ino, offset, end } => {
                w.u8(9);
                w.u64(*ino);
                w.u64(*offset);
                w.u64(*end);
            }
            LogRec::Extend { ino, size } => {
                w.u8(10);
                w.u64(*ino);
                w.u64(*size);
            }
            LogRec::SetXattr {
                ino,
                name,
                value,
                flags,
            } => {
                w.u8(11);
                w.u64(*ino);
                w.u32(*flags as u32);
                put_bytes(&mut w, name);
                put_bytes(&mut w, value);
            }
            LogRec::RemoveXattr { ino, name } => {
                w.u8(12);
                w.u64(*ino);
                put_bytes(&mut w, name);
            }
        }
        w.into_inner()
    }

    pub fn decode(b: &[u8]) -> Result<LogRec> {
        let mut r = Reader::new(b, "log record");
        let rec = match r.u8()? {
            1 => {
                let (parent, mode, rdev, uid, gid, ino) =
                    (r.u64()?, r.u32()?, r.u64()?, r.u32()?, r.u32()?, r.u64()?);
                LogRec::Mknod {
                    parent,
                    name: get_bytes(&mut r)?,
                    mode,
                    rdev,
                    uid,
                    gid,
                    ino,
                }
            }
            2 => {
                let (parent, uid, gid, ino) = (r.u64()?, r.u32()?, r.u32()?, r.u64()?);
                let name = get_bytes(&mut r)?;
                LogRec::Symlink {
                    parent,
                    name,
                    target: get_bytes(&mut r)?,
                    uid,
                    gid,
                    ino,
                }
            }
            t @ (3 | 4) => {
                let parent = r.u64()?;
                let name = get_bytes(&mut r)?;
                if t == 3 {
                    LogRec::Unlink { parent, name }
                } else {
                    LogRec::Rmdir { parent, name }
                }
            }
            5 => {
                let (parent, newparent, flags) = (r.u64()?, r.u64()?, r.u32()?);
                let name = get_bytes(&mut r)?;
                LogRec::Rename {
                    parent,
                    name,
                    newparent,
                    newname: get_bytes(&mut r)?,
                    flags,
                }
            }
            6 => {
                let (ino, newparent) = (r.u64()?, r.u64()?);
                LogRec::Link {
                    ino,
                    newparent,
                    newname: get_bytes(&mut r)?,
                }
            }
            7 => {
                let ino = r.u64()?;
                let (mode, uid, gid, size) = (
                    get_opt32(&mut r)?,
                    get_opt32(&mut r)?,
                    get_opt32(&mut r)?,
                    get_opt64(&mut r)?,
                );
                let mut times = [None; 4];
                for t in &mut times {
                    *t = get_opt64(&mut r)?.map(|v| v as i64);
                }
                LogRec::SetAttr {
                    ino,
                    mode,
                    uid,
                    gid,
                    size,
                    times,
                }
            }
            8 => {
                let (ino, offset) = (r.u64()?, r.u64()?);
                LogRec::Write {
                    ino,
                    offset,
                    data: get_bytes(&mut r)?,
                }
            }
            9 => LogRec::Punch {
                ino: r.u64()?,
                offset: r.u64()?,
                end: r.u64()?,
            },
            10 => LogRec::Extend {
                ino: r.u64()?,
                size: r.u64()?,
            },
            11 => {
                let (ino, flags) = (r.u64()?, r.u32()? as i32);
                let name = get_bytes(&mut r)?;
                LogRec::SetXattr {
                    ino,
                    name,
                    value: get_bytes(&mut r)?,
                    flags,
                }
            }
            12 => {
                let ino = r.u64()?;
                LogRec::RemoveXattr {
                    ino,
                    name: get_bytes(&mut r)?,
                }
            }
            t => return Err(FsError::Io(format!("log record of unknown type {t}"))),
        };
        if r.remaining() != 0 {
            return Err(FsError::Io("log record with trailing bytes".into()));
        }
        Ok(rec)
    }
}

/// The log between two commits. Lock order: the store's trees lock, then
/// this (ops append inside their transaction; the commit hook runs inside
/// the commit); `fsync` takes only this.
#[derive(Default)]
pub(crate) struct LogState {
    /// The dataset's ring; without one, fsync commits.
    pub ring: Option<Extent>,
    /// Records appended since the last block was written, in order.
    pub pending: Vec<Vec<u8>>,
    /// Bytes of `pending` encoded.
    pub bytes: usize,
    /// The chain being written: id, next sequence number, and the position
    /// of its next block.
    pub chain: u64,
    pub seq: u64,
    pub cursor: u64,
    /// Whether a chain is open (a commit recorded its head).
    pub open: bool,
    /// The oldest position a crash could still need: the head the last
    /// durable commit names (or the replayed chain's). The writer never
    /// passes `floor + ring length`.
    pub floor: u64,
    /// The floor once the given txg is durable: set by the commit hook,
    /// which runs before the commit has reached the disk.
    pub next_floor: Option<(u64, u64)>,
    /// The txg of the last commit whose hook dropped records unwritten:
    /// until it is durable, an fsync must not report them safe.
    pub covered_txg: u64,
    /// Keep a chain ready at each commit (set by the first fsync).
    pub armed: bool,
    /// Replaying: changes are not logged again.
    pub replaying: bool,
    /// More changed than the log can hold: the next fsync commits.
    pub overflow: bool,
    pub stats: LogStats,
}

/// What the log has done since mount (`DiskFs::log_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Blocks written, and the bytes they took in the ring.
    pub blocks: u64,
    pub bytes: u64,
    /// Blocks that went over the ring's end (written in two pieces).
    pub wrapped: u64,
    /// fsyncs that committed because the ring had no room for their block.
    pub ring_full: u64,
    /// Records replayed at mount.
    pub replayed: u64,
}

pub(crate) type SharedLog = Arc<Mutex<LogState>>;

impl LogState {
    /// The most `pending` may hold: what one log block takes, and at most
    /// half the ring. Past it the log gives up until the next commit
    /// (fsync commits instead), so a large write does not keep its data
    /// twice in memory.
    fn limit(&self) -> usize {
        let ring = self.ring.map_or(0, |r| r.len);
        (MAX_LOG_WRITE.min(ring / 2) as usize).saturating_sub(LOG_HEADER)
    }

    /// Append an operation's records; `policy` gives each inode's policy.
    /// A record touching a `none` object stops the log until the next
    /// commit (fsync then commits).
    pub fn append(&mut self, recs: Vec<LogRec>, policy: impl Fn(u64) -> LogPolicy) {
        if self.replaying || self.overflow {
            return;
        }
        for r in recs {
            if r.inos().into_iter().any(|i| policy(i) == LogPolicy::None) {
                return self.unlogged();
            }
            let e = r.encode();
            self.bytes += 4 + e.len();
            self.pending.push(e);
        }
        if self.bytes > self.limit() {
            self.unlogged();
        }
    }

    /// Whether a write record of `len` data bytes would still fit, so its
    /// data is worth copying at all.
    pub fn takes(&self, len: usize) -> bool {
        !self.replaying && !self.overflow && self.bytes + len + 64 <= self.limit()
    }

    /// A change happened that the log does not hold: until the next commit
    /// the log cannot describe the state, so fsync must commit.
    pub fn unlogged(&mut self) {
        if self.replaying {
            return;
        }
        self.overflow = true;
        self.pending.clear();
        self.bytes = 0;
    }

    /// Move the floor up to the head of the last commit that is durable.
    fn settle_floor(&mut self, durable_txg: u64) {
        if let Some((txg, pos)) = self.next_floor {
            if txg <= durable_txg {
                self.floor = pos;
                self.next_floor = None;
            }
        }
    }
}

/// The hook the store calls inside each commit of the dataset: the
/// records are covered now, and a new chain starts at the position after
/// the last block written, recorded in the tree so it is durable with this
/// txg. The old chain stays untouched until this commit is durable.
pub(crate) fn commit_hook(log: SharedLog, pool: Arc<Pool>) -> CommitHook {
    Arc::new(move |tree| {
        let mut l = log.lock();
        let txg = pool.open_txg();
        // Commits are serialised: the one before this is durable (or the
        // pool has failed and nothing more is written).
        l.settle_floor(txg.saturating_sub(1));
        if !l.pending.is_empty() {
            l.covered_txg = txg;
        }
        l.pending.clear();
        l.bytes = 0;
        l.overflow = false;
        l.next_floor = Some((txg, l.cursor));
        l.open = false;
        if l.armed && !l.replaying && l.ring.is_some() {
            l.chain = loop {
                let c = rand::random::<u64>();
                if c != 0 && c != l.chain {
                    break c;
                }
            };
            l.seq = 0;
            l.open = true;
            let head = LogHead {
                chain: l.chain,
                pos: l.cursor,
            };
            tree.insert(&keys::log_head(), &head.encode())?;
        } else if tree.get(&keys::log_head())?.is_some() {
            tree.remove(&keys::log_head())?;
        }
        Ok(())
    })
}

/// What `fsync` must do after trying the log.
pub(crate) enum Logged {
    /// Everything is durable.
    Done,
    /// The log cannot take it (no chain yet, too much for one block, the
    /// ring full, or a commit covering it still in flight): commit a txg
    /// instead.
    NeedCommit,
}

/// Write the records not yet logged as the next block of the chain and
/// make it durable.
pub(crate) fn write_pending(log: &SharedLog, pool: &Pool) -> Result<Logged> {
    let mut l = log.lock();
    // Whatever happens now, the next commit starts a chain for the
    // fsyncs after it.
    l.armed = true;
    let durable = pool.open_txg().saturating_sub(1);
    l.settle_floor(durable);
    if l.overflow {
        return Ok(Logged::NeedCommit);
    }
    if l.pending.is_empty() {
        // What a commit in flight took over is safe only once it lands.
        return Ok(if l.covered_txg > durable {
            Logged::NeedCommit
        } else {
            Logged::Done
        });
    }
    let (Some(ring), true) = (l.ring, l.open) else {
        return Ok(Logged::NeedCommit);
    };
    let bs = pool.block_size();
    let len = block_len(&l.pending, bs);
    // `append` keeps `pending` within one block's worth.
    assert!(len <= MAX_LOG_WRITE, "log block of {len} bytes");
    if l.cursor + len > l.floor + ring.len {
        l.stats.ring_full += 1;
        return Ok(Logged::NeedCommit);
    }
    let block = LogBlock {
        chain: l.chain,
        seq: l.seq,
        pos: l.cursor,
        records: std::mem::take(&mut l.pending),
    };
    let bytes = block.encode(bs);
    // Only this block needs to be durable: its records carry their data,
    // and everything older is in a committed txg or an earlier block. (On
    // an image file this is one RWF_DSYNC write, which writes back nothing
    // else.)
    let [(off, a), (_, b)] = pieces(ring, l.cursor, bytes.len());
    let written = pool
        .write_log_durable(ring, off, &bytes[..a])
        .and_then(|()| match b > 0 {
            true => pool.write_log_durable(ring, 0, &bytes[a..]),
            false => Ok(()),
        });
    if let Err(e) = written {
        // The records are not durable: the next fsync commits them. The
        // position is spent: a torn block may sit there.
        l.cursor += len;
        l.unlogged();
        return Err(e.into());
    }
    l.seq += 1;
    l.cursor += len;
    l.bytes = 0;
    l.stats.blocks += 1;
    l.stats.bytes += len;
    l.stats.wrapped += (b > 0) as u64;
    Ok(Logged::Done)
}

/// Where `len` bytes at position `pos` lie in `ring`: (offset, length)
/// up to the ring's end, then (0, the rest), which is empty unless the
/// bytes go over the end.
fn pieces(ring: Extent, pos: u64, len: usize) -> [(u64, usize); 2] {
    let off = pos % ring.len;
    let first = (ring.len - off).min(len as u64) as usize;
    [(off, first), (0, len - first)]
}

/// Read `buf.len()` bytes at position `pos` of `ring`.
fn read_at(pool: &Pool, ring: Extent, pos: u64, buf: &mut [u8]) -> Result<()> {
    let [(off, a), (_, b)] = pieces(ring, pos, buf.len());
    pool.read_log(ring, off, &mut buf[..a])?;
    if b > 0 {
        pool.read_log(ring, 0, &mut buf[a..])?;
    }
    Ok(())
}

/// Read the chain that starts at `head` in `ring`: its records in order,
/// and the position after its last block.
pub(crate) fn read_chain(pool: &Pool, ring: Extent, head: LogHead) -> (Vec<Vec<u8>>, u64) {
    let bs = pool.block_size() as usize;
    let mut records = Vec::new();
    let mut pos = head.pos;
    for seq in 0..MAX_CHAIN {
        let mut buf = vec![0u8; bs];
        if read_at(pool, ring, pos, &mut buf).is_err() {
            break;
        }
        let Some(len) = LogBlock::peek_len(&buf, head.chain, seq, pos, bs as u32) else {
            if seq == 0 && buf.starts_with(&aegis_fs::intent_log::LOG_MAGIC) {
                tracing::info!(
                    chain = head.chain,
                    "the intent log's first place holds a block of another chain (an older lap or another pool): ignored, nothing to replay"
                );
            }
            break;
        };
        // A chain never laps its own head.
        if pos + len > head.pos + ring.len {
            break;
        }
        // The first block is read already; read the rest of this one.
        buf.resize(len as usize, 0);
        if len as usize > bs && read_at(pool, ring, pos + bs as u64, &mut buf[bs..]).is_err() {
            break;
        }
        let Some(block) = LogBlock::decode(&buf, head.chain, seq, pos, bs as u32) else {
            break;
        };
        records.extend(block.records);
        pos += len;
    }
    (records, pos)
}

/// One record of each kind (tests and fuzz seeds).
pub(crate) fn samples() -> Vec<LogRec> {
    vec![
        LogRec::Mknod {
            parent: 1,
            name: b"a".to_vec(),
            mode: 0o100644,
            rdev: 0,
            uid: 5,
            gid: 6,
            ino: 9,
        },
        LogRec::Symlink {
            parent: 1,
            name: b"s".to_vec(),
            target: b"t/u".to_vec(),
            uid: 0,
            gid: 0,
            ino: 10,
        },
        LogRec::Unlink {
            parent: 1,
            name: b"a".to_vec(),
        },
        LogRec::Rmdir {
            parent: 1,
            name: b"d".to_vec(),
        },
        LogRec::Rename {
            parent: 1,
            name: b"x".to_vec(),
            newparent: 2,
            newname: b"y".to_vec(),
            flags: 2,
        },
        LogRec::Link {
            ino: 9,
            newparent: 1,
            newname: b"b".to_vec(),
        },
        LogRec::SetAttr {
            ino: 9,
            mode: Some(0o600),
            uid: None,
            gid: Some(3),
            size: Some(7),
            times: [Some(-5), None, Some(1 << 60), None],
        },
        LogRec::Write {
            ino: 9,
            offset: 4096,
            data: vec![1, 2, 3],
        },
        LogRec::Punch {
            ino: 9,
            offset: 1,
            end: 2,
        },
        LogRec::Extend {
            ino: 9,
            size: 1 << 40,
        },
        LogRec::SetXattr {
            ino: 9,
            name: b"user.a".to_vec(),
            value: vec![0; 100],
            flags: 1,
        },
        LogRec::RemoveXattr {
            ino: 9,
            name: b"user.a".to_vec(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let recs = samples();
        for r in recs {
            let e = r.encode();
            assert_eq!(LogRec::decode(&e).unwrap(), r);
            assert!(LogRec::decode(&e[..e.len() - 1]).is_err());
        }
        assert!(LogRec::decode(&[99]).is_err());
    }
}
