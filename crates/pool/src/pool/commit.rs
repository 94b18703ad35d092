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
    /// committed txg.
    pub fn commit(&self, pool_root: &TreeRoot) -> Result<u64> {
        self.check_writable()?;
        let txg = self.open_txg();
        match self.commit_inner(txg, pool_root) {
            Ok(()) => Ok(txg),
            Err(e) => {
                self.state.lock().failed = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn commit_inner(&self, txg: u64, pool_root: &TreeRoot) -> Result<()> {
        let (head, nblocks) = self.write_space_map(txg)?;
        self.behind.lock().write_out(&self.devices)?;
        for d in &self.devices {
            d.flush()?;
        }
        let ub = Uberblock {
            txg,
            timestamp_ns: now_ns(),
            pool_uuid: self.config.pool_uuid,
            space_map_blocks: nblocks,
            pool_root: pool_root.clone(),
            space_map: head,
            log_head: None,
        };
        self.write_uberblock(&ub)?;
        for d in &self.devices {
            d.flush()?;
        }
        self.alloc.lock().release_deferred(txg);
        let mut st = self.state.lock();
        st.last = Some(ub);
        st.open_txg = txg + 1;
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
            self.write_copies(&bp, &data, 0..ext.len())?;
            prev = Some(bp.clone());
            chain.push(bp);
        }
        let n = chain.len() as u64;
        self.state.lock().chain = chain;
        Ok((prev, n))
    }
}
