//! The commit: this txg's space map records, the write-behind flush, the
//! uberblock in every label, and the flushes that order them.
//!
//! The order is the whole point. Every block the new uberblock can reach
//! (the txg's space map blocks and its new blocks) is on stable storage
//! before the first flush returns, and the uberblock is written only after
//! it: a crash at any moment leaves either the old root or the new one,
//! each complete. Only after the second flush is the txg durable, and only
//! then are frees deferred past it released for reuse, so the last
//! `DEFER_TXGS` uberblocks stay openable. A commit that fails poisons the
//! pool (`check_writable` refuses from then on): its in-memory state no
//! longer matches any root on disk.
//!
//! The space map is a chain of append-only blocks shared by every recent
//! uberblock; a commit either appends one txg's records to it or, when the
//! chain has grown well past what the allocated set needs (or fsck rebuilt
//! the space state), writes a fresh condensed chain that starts over. The
//! chain's own blocks are allocated before the records are taken, so the
//! records written include the allocations of the blocks that hold them.

use super::io::make_ptr;
use super::{empty_allocator, free_ptr, now_ns, Pool, WriteProps};
use crate::allocator::{AllocClass, Allocator, Extent};
use crate::blkptr::{BlockPtr, BlockType};
use crate::compression::Compression;
use crate::error::{PoolError, Result};
use crate::label::{label_offsets, UBER_RING_OFFSET};
use crate::space_map::{entries_per_block, SpaceEntry, SpaceMapBlock, SpaceOp, FLAG_CONDENSED};
use crate::tree_root::TreeRoot;
use crate::uberblock::{Uberblock, UBER_SLOTS, UBER_SLOT_SIZE};
use crate::write_behind::write_set;

/// A txg closed by [`Pool::begin_commit`], to be made durable by
/// [`Pool::finish_commit`]. Dropping one unfinished leaves the pool
/// unable to commit (the next `begin_commit` would close a second txg
/// over it), as a failed commit does.
#[must_use = "a closed txg is durable only once finish_commit returns"]
pub struct ClosedTxg {
    uberblock: Uberblock,
}

impl ClosedTxg {
    pub fn txg(&self) -> u64 {
        self.uberblock.txg
    }
}

/// Condense when the chain is this many blocks longer than a fresh one.
const CONDENSE_SLACK: u64 = 32;

/// What one commit writes to the space map: the records, the extents
/// (every copy) of each block that holds them, the block the first of them
/// points back to, and the first block's flags.
struct SpacePlan {
    entries: Vec<SpaceEntry>,
    extents: Vec<Vec<Extent>>,
    prev: Option<BlockPtr>,
    flags: u16,
}

impl Pool {
    /// Worst-case bytes a commit needs beyond writing `dirty_blocks` blocks
    /// of metadata: its space map records (an alloc per copy of each block
    /// written, a free per copy of each block replaced) and, should this
    /// commit condense, a fresh copy of the whole map. Writers check this
    /// before changing anything so that a commit can never run out of room.
    pub fn commit_overhead(&self, dirty_blocks: u64) -> u64 {
        let copies = self.config.metadata_copies as u64;
        let bs = self.config.block_size;
        let per = entries_per_block(bs) as u64;
        let records = 2 * copies * dirty_blocks + 16;
        let log_blocks = records.div_ceil(per) + 1;
        let condensed_blocks =
            (self.alloc.lock().extent_count() as u64 + records).div_ceil(per) + 1;
        (log_blocks + condensed_blocks + 2) * self.space_map_copies() as u64 * bs as u64
    }

    /// Space map blocks carry one copy more than other metadata (at most
    /// 3): every recent uberblock shares the older blocks of the chain, so
    /// one block lost on every copy would leave no txg that opens (ZFS gives
    /// its pool-wide metadata an extra ditto copy for the same reason).
    pub(crate) fn space_map_copies(&self) -> usize {
        (self.config.metadata_copies as usize + 1).min(3)
    }

    /// Replace the in-memory space state with exactly `allocated` (fsck
    /// repair: the reachable set is the truth). The next commit writes it
    /// as a condensed space map.
    pub fn rebuild_space_map(&self, allocated: &[Extent]) -> Result<()> {
        self.check_writable()?;
        let mut fresh = empty_allocator(&self.config);
        let txg = self.open_txg();
        for e in allocated {
            let rec = SpaceEntry {
                op: SpaceOp::Alloc,
                device: e.device,
                offset: e.offset,
                len: e.len,
                txg,
            };
            fresh.replay(&rec, txg)?;
        }
        *self.alloc.lock() = fresh;
        self.state.lock().force_condense = true;
        Ok(())
    }

    /// Make the open txg durable with `pool_root` as its root. Returns the
    /// committed txg. Both stages at once (see [`Pool::begin_commit`]).
    pub fn commit(&self, pool_root: &TreeRoot) -> Result<u64> {
        let closed = self.begin_commit(pool_root)?;
        self.finish_commit(closed)
    }

    /// The commit's first stage: write this txg's space map records, close
    /// the txg (its new blocks become the syncing set, and new blocks are
    /// born in the next txg from now on) and return what the second stage
    /// needs. The caller holds whatever keeps its trees still; the second
    /// stage, [`Pool::finish_commit`], needs no such lock, so the next txg
    /// takes changes while the closed one goes to disk (ZFS's quiescing
    /// and syncing txgs, folded into one). Until it returns, the closed
    /// txg is not durable: `durable_txg` still names the one before.
    /// Commits must be serialised by the caller: one closed txg at a time.
    pub fn begin_commit(&self, pool_root: &TreeRoot) -> Result<ClosedTxg> {
        self.check_writable()?;
        let txg = self.open_txg();
        let closed = self.write_space_map(txg).map(|(head, nblocks)| {
            self.behind.lock().begin_sync();
            self.state.lock().open_txg = txg + 1;
            ClosedTxg {
                uberblock: Uberblock {
                    txg,
                    timestamp_ns: now_ns(),
                    pool_uuid: self.config.pool_uuid,
                    space_map_blocks: nblocks,
                    pool_root: pool_root.clone(),
                    space_map: head,
                    log_head: None,
                },
            }
        });
        closed.inspect_err(|e| self.fail(e))
    }

    /// The commit's second stage: the closed txg's blocks to their devices,
    /// a flush, the uberblock, a flush. Returns the txg, now durable.
    pub fn finish_commit(&self, closed: ClosedTxg) -> Result<u64> {
        let txg = closed.uberblock.txg;
        match self.write_closed(closed) {
            Ok(()) => Ok(txg),
            Err(e) => {
                self.fail(&e);
                Err(e)
            }
        }
    }

    fn fail(&self, e: &PoolError) {
        let mut st = self.state.lock();
        st.failed.get_or_insert_with(|| e.to_string());
    }

    fn write_closed(&self, closed: ClosedTxg) -> Result<()> {
        let ub = closed.uberblock;
        // Written with no lock held: reads of these blocks are served from
        // the set until `end_sync`, and nothing else writes them.
        let set = self.behind.lock().syncing_set();
        write_set(&set, &self.devices)?;
        for d in &self.devices {
            d.flush()?;
        }
        self.write_uberblock(&ub)?;
        for d in &self.devices {
            d.flush()?;
        }
        self.alloc.lock().release_deferred(ub.txg);
        self.behind.lock().end_sync();
        self.state.lock().last = Some(ub);
        Ok(())
    }

    /// Write `ub` to its slot in every label of every device; it is enough
    /// that one label took it.
    fn write_uberblock(&self, ub: &Uberblock) -> Result<()> {
        let bytes = ub.encode();
        let slot = (ub.txg % UBER_SLOTS) * UBER_SLOT_SIZE as u64;
        let mut written = 0;
        let mut last_err = None;
        for (dev, entry) in self.devices.iter().zip(&self.config.devices) {
            for off in label_offsets(entry.size) {
                // One bad label must not fail the commit: the others carry it.
                match dev.write_at(&bytes, off + UBER_RING_OFFSET + slot) {
                    Ok(()) => written += 1,
                    Err(e) => last_err = Some(e),
                }
            }
        }
        if written == 0 {
            return Err(last_err
                .map(PoolError::from)
                .unwrap_or_else(|| PoolError::Invalid("no label written".into())));
        }
        Ok(())
    }

    /// Persist this txg's space records; returns the new chain head and length.
    fn write_space_map(&self, txg: u64) -> Result<(Option<BlockPtr>, u64)> {
        let per = entries_per_block(self.config.block_size);
        let (old_chain, old_head, forced) = {
            let mut st = self.state.lock();
            (
                st.chain.clone(),
                st.last.as_ref().and_then(|u| u.space_map.clone()),
                std::mem::take(&mut st.force_condense),
            )
        };
        let mut alloc = self.alloc.lock();
        if alloc.log_len() == 0 && old_head.is_some() && !forced {
            return Ok((old_head, old_chain.len() as u64));
        }
        let fresh_estimate = (alloc.extent_count() as u64 + 1).div_ceil(per as u64);
        let condense = forced
            || old_head.is_none()
            || old_chain.len() as u64 > 2 * fresh_estimate + CONDENSE_SLACK;

        let plan = if condense {
            self.plan_condensed(&mut alloc, &old_chain, txg, fresh_estimate)?
        } else {
            self.plan_append(&mut alloc, old_head)?
        };
        drop(alloc);

        let chain = if plan.flags == FLAG_CONDENSED {
            Vec::new()
        } else {
            old_chain
        };
        self.write_chain(plan, chain, txg)
    }

    /// A fresh chain: free the old one, then allocate blocks until the
    /// condensed records (which count these very allocations) fit.
    fn plan_condensed(
        &self,
        alloc: &mut Allocator,
        old_chain: &[BlockPtr],
        txg: u64,
        fresh_estimate: u64,
    ) -> Result<SpacePlan> {
        let bs = self.config.block_size;
        let per = entries_per_block(bs);
        let copies = self.space_map_copies();
        for bp in old_chain {
            free_ptr(alloc, bp, bs, txg)?;
        }
        let mut n = fresh_estimate.max(1) as usize;
        loop {
            let mut extents = Vec::with_capacity(n);
            for _ in 0..n {
                extents.push(alloc.alloc(bs as u64, copies, AllocClass::Reserved)?);
            }
            let entries = alloc.condensed();
            if entries.len() <= n * per {
                alloc.take_log(); // the condensed records subsume this txg's log
                return Ok(SpacePlan {
                    entries,
                    extents,
                    prev: None,
                    flags: FLAG_CONDENSED,
                });
            }
            for x in extents.iter().flatten() {
                alloc.free(*x, txg, true)?;
            }
            n = entries.len().div_ceil(per) + 1;
        }
    }

    /// This txg's records appended to the chain after `old_head`, in
    /// blocks allocated first so that their own records are among them.
    fn plan_append(&self, alloc: &mut Allocator, old_head: Option<BlockPtr>) -> Result<SpacePlan> {
        let bs = self.config.block_size;
        let per = entries_per_block(bs);
        let copies = self.space_map_copies();
        let mut entries = alloc.take_log();
        let mut n = entries.len().div_ceil(per);
        while (entries.len() + n * copies).div_ceil(per) > n {
            n = (entries.len() + n * copies).div_ceil(per);
        }
        let mut extents = Vec::with_capacity(n);
        for _ in 0..n {
            extents.push(alloc.alloc(bs as u64, copies, AllocClass::Reserved)?);
        }
        entries.extend(alloc.take_log());
        assert!(entries.len() <= n * per, "space map blocks under-allocated");
        Ok(SpacePlan {
            entries,
            extents,
            prev: old_head,
            flags: 0,
        })
    }

    /// Write the planned blocks, each pointing back at the one before, onto
    /// `chain`; the new chain becomes the pool's. Returns its head and length.
    fn write_chain(
        &self,
        plan: SpacePlan,
        mut chain: Vec<BlockPtr>,
        txg: u64,
    ) -> Result<(Option<BlockPtr>, u64)> {
        let bs = self.config.block_size;
        let props = WriteProps {
            compression: Compression::None,
            ..self.metadata_props(BlockType::SpaceMap, 0)
        };
        let SpacePlan {
            entries,
            extents,
            mut prev,
            flags,
        } = plan;
        let mut chunks = entries.chunks(entries_per_block(bs));
        for (i, ext) in extents.iter().enumerate() {
            let blk = SpaceMapBlock {
                flags: if i == 0 { flags } else { 0 },
                txg,
                prev: prev.take(),
                entries: chunks.next().map(|c| c.to_vec()).unwrap_or_default(),
            };
            let data = blk.encode(bs);
            let bp = make_ptr(&props, Compression::None, data.len(), &data, txg, ext);
            // Into the txg's buffer like its other blocks: the first
            // stage, which runs under the layer above's lock, sends
            // nothing to a device.
            self.buffer_copies(&bp, &data);
            prev = Some(bp.clone());
            chain.push(bp);
        }
        let n = chain.len() as u64;
        self.state.lock().chain = chain;
        Ok((prev, n))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use aegis_block::{BlockDevice, DeviceRef, MemDevice};

    use super::*;
    use crate::pool::CreateOptions;

    fn pool() -> (Pool, Arc<MemDevice>) {
        let dev = Arc::new(MemDevice::new(16 << 20));
        let pool = Pool::create(vec![dev.clone() as DeviceRef], &CreateOptions::default()).unwrap();
        pool.commit(&TreeRoot::default()).unwrap();
        (pool, dev)
    }

    fn write(pool: &Pool, fill: u8) -> (BlockPtr, Vec<u8>) {
        let props = WriteProps {
            compression: Compression::None,
            ..pool.metadata_props(BlockType::Data, 0)
        };
        let data: Vec<u8> = (0..8192u32).map(|i| (i as u8) ^ fill).collect();
        (pool.write_block(&data, &props).unwrap(), data)
    }

    fn on_device(dev: &MemDevice, bp: &BlockPtr) -> Vec<u8> {
        let mut b = vec![0u8; bp.physical_size as usize];
        dev.read_at(&mut b, bp.addrs[0].offset).unwrap();
        b
    }

    #[test]
    fn a_closed_txg_is_readable_while_the_next_one_takes_blocks() {
        let (pool, dev) = pool();
        let before = pool.durable_txg();
        let (a, data_a) = write(&pool, 1);
        let closed = pool.begin_commit(&TreeRoot::default()).unwrap();
        assert_eq!(closed.txg(), a.birth_txg);
        assert_eq!(pool.open_txg(), a.birth_txg + 1, "the next txg is open");
        assert_eq!(
            pool.durable_txg(),
            before,
            "not durable before the second stage"
        );
        assert_ne!(
            on_device(&dev, &a),
            data_a,
            "not written before the second stage"
        );
        assert_eq!(
            pool.read_block(&a).unwrap(),
            data_a,
            "served from the syncing set"
        );
        // The next txg writes and frees meanwhile: a's free is deferred,
        // so the closed txg still writes it.
        let (b, data_b) = write(&pool, 2);
        assert_eq!(b.birth_txg, a.birth_txg + 1);
        pool.free(&a).unwrap();
        assert!(
            pool.buffered_bytes() >= 2 * 8192,
            "both txgs' blocks counted"
        );
        assert_eq!(pool.finish_commit(closed).unwrap(), a.birth_txg);
        assert_eq!(pool.durable_txg(), a.birth_txg);
        assert_eq!(
            on_device(&dev, &a),
            data_a,
            "the closed txg's block is on disk"
        );
        assert_eq!(pool.read_block(&a).unwrap(), data_a);
        assert_ne!(on_device(&dev, &b), data_b, "the open txg's block waits");
        assert_eq!(pool.read_block(&b).unwrap(), data_b);
        pool.commit(&TreeRoot::default()).unwrap();
        assert_eq!(on_device(&dev, &b), data_b);
        assert_eq!(pool.buffered_bytes(), 0);
    }

    #[test]
    fn a_failed_second_stage_refuses_later_commits() {
        let (pool, _dev) = pool();
        write(&pool, 3);
        let closed = pool.begin_commit(&TreeRoot::default()).unwrap();
        pool.halt();
        assert!(pool.finish_commit(closed).is_err());
        assert!(pool.begin_commit(&TreeRoot::default()).is_err());
        assert!(pool.failure().is_some());
    }
}
