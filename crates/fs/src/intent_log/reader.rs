//! The intent log's reader and replay order: at a writable mount, find the
//! dataset's ring (making one for an image formatted without), read the
//! chain the last committed txg names, block by block in sequence, and
//! hand its records in order to the filesystem above, which re-runs them;
//! then drop the spent chain's head and commit.
//!
//! Reading stops cleanly at the first block that is torn, of another
//! chain or lap, or never written, and after at most `MAX_CHAIN` blocks,
//! whatever the blocks claim. New chains start after the replayed one,
//! which stays intact until the commit that replays it is durable.

use std::sync::Arc;

use aegis_pool::{Extent, Pool};

use super::block::{recorded_ring, LogBlock, LogHead, LOG_MAGIC, MAX_CHAIN};
use super::writer::{pieces, IntentLog, LogState};
use crate::error::{FsError, Result};
use crate::posix::{create_log_ring, keys};
use crate::store::Store;
use aegis_pool::AllocClass;

/// What a writable mount found in the log: the records of the chain a
/// crash left after the last txg, in the order they were made.
pub struct Replay {
    pub records: Vec<Vec<u8>>,
    head: Option<LogHead>,
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
            if seq == 0 && buf.starts_with(&LOG_MAGIC) {
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

impl Store {
    /// Open dataset `ds`'s intent log for a writable mount and register it
    /// with the store, whose commits then close its chains. With `enabled`
    /// false (`-o nolog`) no records are kept and no ring is made, but a
    /// log a crash left is still replayed. The caller re-runs
    /// `Replay::records` and then calls [`Store::finish_replay`].
    pub fn open_intent_log(&self, ds: u64, enabled: bool) -> Result<(Arc<IntentLog>, Replay)> {
        let (ring, head) = self.read_tree(ds, |t| {
            let ring = recorded_ring(t, &self.pool)?;
            let head = match t.get(&keys::log_head())? {
                Some(v) => Some(LogHead::decode(&v)?),
                None => None,
            };
            Ok((ring, head))
        })?;
        let ring = match ring {
            Some(r) => Some(r),
            None if enabled => match create_log_ring(self, ds, 0) {
                Ok(r) => {
                    tracing::info!(bytes = r.len, "made an intent log ring for this dataset");
                    Some(r)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no intent log ring could be made: every fsync commits a transaction group");
                    None
                }
            },
            None => None,
        };
        let (records, end) = match (ring, head) {
            (Some(r), Some(h)) => read_chain(&self.pool, r, h),
            (None, Some(_)) => {
                tracing::warn!("an intent log head without a ring: ignored, nothing to replay");
                (Vec::new(), 0)
            }
            (_, None) => (Vec::new(), 0),
        };
        let state = LogState {
            ring,
            cursor: end,
            floor: head.map_or(end, |h| h.pos),
            replaying: true,
            ..Default::default()
        };
        let log = Arc::new(IntentLog::new(self.pool.clone(), enabled, state));
        let mut t = self.trees.write();
        if !t.datasets.contains_key(&ds) {
            return Err(FsError::NoDataset(ds));
        }
        t.logs.insert(ds, log.clone());
        Ok((log, Replay { records, head }))
    }

    /// End the replay: `applied` records stood. The chain is spent: its
    /// head goes in this txg, which is committed with the replay (and a
    /// ring just made).
    pub fn finish_replay(&self, ds: u64, replay: Replay, applied: usize) -> Result<()> {
        let log = self
            .trees
            .read()
            .logs
            .get(&ds)
            .cloned()
            .ok_or(FsError::NoDataset(ds))?;
        {
            let mut l = log.state.lock();
            l.replaying = false;
            l.stats.replayed = applied as u64;
        }
        if let Some(h) = replay.head {
            self.with_tree(ds, AllocClass::Reserved, |t| {
                t.remove(&keys::log_head())?;
                Ok(())
            })?;
            let total = replay.records.len();
            if total > 0 {
                tracing::info!(applied, total, chain = h.chain, "replayed the intent log");
            }
        }
        self.sync_if_dirty()?;
        Ok(())
    }
}
