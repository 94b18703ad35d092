//! The intent log's writer: the records of the changes since the last
//! commit, kept in memory in order, and the ring they are written to.
//!
//! Every change made through a [`Tx`](crate::Tx) appends its records
//! inside its tree transaction, so records and txgs cut the history at the
//! same points: a commit covers exactly the records appended before it
//! ([`IntentLog::on_commit`], which the commit calls for the dataset's
//! tree, drops them and starts a new chain). `fsync` writes the records
//! not yet logged, in order, as the next block of the chain in the
//! dataset's ring and makes that one write durable. The writer never laps
//! the oldest chain a crash could still need (`floor`).
//!
//! Lock order: the store's trees lock, then this log's lock (changes append
//! inside their transaction; the commit runs `on_commit` under the trees
//! lock); `fsync` takes only the log's lock.

use std::sync::Arc;

use aegis_btree::Tree;
use aegis_pool::{Extent, Pool};
use parking_lot::Mutex;

use super::block::{block_len, LogBlock, LogHead, LOG_HEADER, MAX_LOG_WRITE};
use super::policy::LogPolicy;
use super::record::LogRec;
use crate::error::Result;
use crate::posix::keys;

/// The log between two commits.
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
    /// The txg whose tree records the open chain's head: its blocks count
    /// only once that txg is durable (a commit's second stage may still be
    /// writing it while fsyncs of the next txg append to the chain).
    pub chain_txg: u64,
    /// The oldest position a crash could still need: the head the last
    /// durable commit names (or the replayed chain's). The writer never
    /// passes `floor + ring length`.
    pub floor: u64,
    /// The floor once the given txg is durable: set inside the commit,
    /// which runs before the commit has reached the disk.
    pub next_floor: Option<(u64, u64)>,
    /// The txg of the last commit that dropped records unwritten:
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

/// What the log has done since mount.
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
    pub(crate) fn append(&mut self, recs: Vec<LogRec>, policy: impl Fn(u64) -> LogPolicy) {
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
    pub(crate) fn takes(&self, len: usize) -> bool {
        !self.replaying && !self.overflow && self.bytes + len + 64 <= self.limit()
    }

    /// A change happened that the log does not hold: until the next commit
    /// the log cannot describe the state, so fsync must commit.
    pub(crate) fn unlogged(&mut self) {
        if self.replaying {
            return;
        }
        self.overflow = true;
        self.pending.clear();
        self.bytes = 0;
    }

    /// Move the floor up to the head of the last commit that is durable.
    pub(crate) fn settle_floor(&mut self, durable_txg: u64) {
        if let Some((txg, pos)) = self.next_floor {
            if txg <= durable_txg {
                self.floor = pos;
                self.next_floor = None;
            }
        }
    }
}

/// What `fsync` must do after trying the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logged {
    /// Everything is durable.
    Done,
    /// Written, and durable once this txg is: the commit in flight that
    /// covers earlier records or records the chain's head. Wait for it
    /// (`Store::wait_durable`).
    AfterTxg(u64),
    /// The log cannot take it (no chain yet, too much for one block, the
    /// ring full): commit a txg instead.
    NeedCommit,
}

impl Logged {
    /// Done, or after `txg` when that is not durable yet.
    fn after(txg: u64, durable: u64) -> Logged {
        if txg > durable {
            Logged::AfterTxg(txg)
        } else {
            Logged::Done
        }
    }
}

/// One dataset's intent log, owned by the store: the transaction appends
/// to it, the commit closes its chain, `fsync` writes it.
pub struct IntentLog {
    pub(crate) state: Mutex<LogState>,
    pool: Arc<Pool>,
    /// Records are kept at all (false with `-o nolog`: fsync commits).
    enabled: bool,
}

impl IntentLog {
    pub(crate) fn new(pool: Arc<Pool>, enabled: bool, state: LogState) -> IntentLog {
        IntentLog {
            state: Mutex::new(state),
            pool,
            enabled,
        }
    }

    /// What the log has done since mount.
    pub fn stats(&self) -> LogStats {
        self.state.lock().stats
    }

    /// Whether mount is still re-running the log's records.
    pub fn is_replaying(&self) -> bool {
        self.state.lock().replaying
    }

    /// Whether a write record of `len` data bytes would still fit, so its
    /// data is worth copying at all.
    pub(crate) fn takes(&self, len: usize) -> bool {
        self.enabled && self.state.lock().takes(len)
    }

    /// Append a change's records (or note that it was not recorded);
    /// `policy` gives each inode's policy.
    pub(crate) fn record(
        &self,
        recs: Vec<LogRec>,
        unlogged: bool,
        policy: impl Fn(u64) -> LogPolicy,
    ) {
        if !self.enabled {
            return;
        }
        let mut l = self.state.lock();
        if unlogged {
            l.unlogged();
        } else if !recs.is_empty() {
            l.append(recs, policy);
        }
    }

    /// Inside each commit that writes the dataset's tree, under the trees
    /// lock: the records are covered now, and a new chain starts at the
    /// position after the last block written, recorded in the tree so it
    /// is durable with this txg. The old chain stays untouched until this
    /// commit is durable.
    pub(crate) fn on_commit(&self, tree: &mut Tree) -> Result<()> {
        let mut l = self.state.lock();
        let txg = self.pool.open_txg();
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
            l.chain_txg = txg;
            let head = LogHead {
                chain: l.chain,
                pos: l.cursor,
            };
            tree.insert(&keys::log_head(), &head.encode())?;
        } else if tree.get(&keys::log_head())?.is_some() {
            tree.remove(&keys::log_head())?;
        }
        Ok(())
    }

    /// fsync: write the records not yet logged as the next block of the
    /// chain and make it durable.
    pub fn fsync(&self) -> Result<Logged> {
        let mut l = self.state.lock();
        // Whatever happens now, the next commit starts a chain for the
        // fsyncs after it.
        l.armed = true;
        let durable = self.pool.durable_txg();
        l.settle_floor(durable);
        if l.overflow {
            return Ok(Logged::NeedCommit);
        }
        // What a commit in flight took over is safe only once it lands;
        // so is a block of a chain whose head it records.
        let covered = Logged::after(l.covered_txg, durable);
        if l.pending.is_empty() {
            return Ok(covered);
        }
        let (Some(ring), true) = (l.ring, l.open) else {
            return Ok(Logged::NeedCommit);
        };
        let bs = self.pool.block_size();
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
        self.write_block(&mut l, ring, &bytes, len)?;
        Ok(Logged::after(l.chain_txg.max(l.covered_txg), durable))
    }

    /// Write one encoded block at the cursor. Only this block needs to be
    /// durable: its records carry their data, and everything older is in
    /// a committed txg or an earlier block. (On an image file this is one
    /// RWF_DSYNC write, which writes back nothing else.)
    fn write_block(&self, l: &mut LogState, ring: Extent, bytes: &[u8], len: u64) -> Result<()> {
        let [(off, a), (_, b)] = pieces(ring, l.cursor, bytes.len());
        let written = self
            .pool
            .write_log_durable(ring, off, &bytes[..a])
            .and_then(|()| match b > 0 {
                true => self.pool.write_log_durable(ring, 0, &bytes[a..]),
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
        Ok(())
    }
}

/// Where `len` bytes at position `pos` lie in `ring`: (offset, length)
/// up to the ring's end, then (0, the rest), which is empty unless the
/// bytes go over the end.
pub(crate) fn pieces(ring: Extent, pos: u64, len: usize) -> [(u64, usize); 2] {
    let off = pos % ring.len;
    let first = (ring.len - off).min(len as u64) as usize;
    [(off, first), (0, len - first)]
}
