//! In-memory space allocation for every device of the pool.
//!
//! Free space is a map of free extents per device (offset → length),
//! coalesced on insert. Frees of blocks that an older uberblock may still
//! reference are *deferred*: held aside for `DEFER_TXGS` commits, so the
//! last three uberblocks stay valid roots after a crash. Every allocation
//! and free is also appended to the current txg's log, which the commit
//! persists as space map records.
//!
//! Invariants (checked, returning `Corrupt` rather than panicking when a
//! replayed space map violates them): free extents never overlap or touch
//! (they are coalesced); an allocation takes only free space; a free
//! returns only allocated, not-yet-freed space; `free_bytes` equals the sum
//! of the free map, and the size index holds exactly the free map's
//! extents.
//!
//! Placement: first fit from a cursor while a device has room (writes stay
//! sequential); best fit (the smallest free extent that holds the block)
//! once less than [`TIGHT_FRACTION`] of it is free, so that small blocks
//! (tree nodes, 4 KiB) fill the small holes COW leaves behind and the
//! larger extents stay whole for data records. A nearly full pool whose
//! free bytes are all in holes smaller than a record could otherwise not
//! take the writes its reservations promise.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{PoolError, Result};
use crate::space_map::{SpaceEntry, SpaceOp};

/// Frees in txg F become allocatable once txg F + DEFER_TXGS has committed.
pub const DEFER_TXGS: u64 = 2;

/// A device with less than 1/TIGHT_FRACTION of its space free places by
/// best fit.
const TIGHT_FRACTION: u64 = 8;

/// Candidates a best-fit search looks at for a ditto copy (which must lie
/// in the far half from its sibling) before falling back to first fit.
const DITTO_CANDIDATES: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Extent {
    pub device: u32,
    pub offset: u64,
    pub len: u64,
}

/// Who is asking for space: ordinary writes stop at the reserve; commits
/// and deletes may use it, so a full pool can still shrink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocClass {
    Normal,
    Reserved,
}

#[derive(Clone, Debug)]
struct DeviceSpace {
    start: u64,
    end: u64,
    free: BTreeMap<u64, u64>,
    /// The free map's extents by (length, offset), for best fit.
    by_size: BTreeSet<(u64, u64)>,
    free_bytes: u64,
    cursor: u64,
}

impl DeviceSpace {
    fn new(start: u64, end: u64) -> Self {
        let mut d = DeviceSpace {
            start,
            end,
            free: BTreeMap::new(),
            by_size: BTreeSet::new(),
            free_bytes: end - start,
            cursor: start,
        };
        d.insert_free(start, end - start);
        d
    }

    fn insert_free(&mut self, off: u64, len: u64) {
        self.free.insert(off, len);
        self.by_size.insert((len, off));
    }

    fn remove_free(&mut self, off: u64) {
        if let Some(len) = self.free.remove(&off) {
            self.by_size.remove(&(len, off));
        }
    }

    fn is_tight(&self) -> bool {
        self.free_bytes < (self.end - self.start) / TIGHT_FRACTION
    }

    /// Smallest free extent of at least `len` bytes; with `far`, only one
    /// starting at least half a device from `far` (a ditto copy's sibling),
    /// looking at a bounded number of candidates.
    fn best_fit(&self, len: u64, far: Option<u64>) -> Option<u64> {
        let mut fits = self.by_size.range((len, 0)..).map(|&(_, off)| off);
        match far {
            None => fits.next(),
            Some(sibling) => {
                let half = (self.end - self.start) / 2;
                fits.take(DITTO_CANDIDATES)
                    .find(|&off| off.abs_diff(sibling) >= half.saturating_sub(len))
            }
        }
    }

    /// Take `[off, off+len)` out of the free map; it must be wholly free.
    fn take(&mut self, off: u64, len: u64) -> bool {
        let Some((&s, &l)) = self.free.range(..=off).next_back() else {
            return false;
        };
        if off + len > s + l {
            return false;
        }
        self.remove_free(s);
        if off > s {
            self.insert_free(s, off - s);
        }
        if s + l > off + len {
            self.insert_free(off + len, s + l - off - len);
        }
        self.free_bytes -= len;
        true
    }

    /// Return `[off, off+len)` to the free map; it must not overlap free space.
    fn give(&mut self, mut off: u64, mut len: u64) -> bool {
        if off < self.start || off + len > self.end {
            return false;
        }
        if let Some((&s, &l)) = self.free.range(..off + len).next_back() {
            if s + l > off {
                return false; // overlaps a free extent: double free
            }
        }
        let orig = len;
        if let Some((&s, &l)) = self.free.range(..off).next_back() {
            if s + l == off {
                self.remove_free(s);
                off = s;
                len += l;
            }
        }
        if let Some(&l) = self.free.get(&(off + len)) {
            self.remove_free(off + len);
            len += l;
        }
        self.insert_free(off, len);
        self.free_bytes += orig;
        true
    }

    /// First free extent of at least `len` bytes at or after `from`, wrapping.
    fn find(&self, len: u64, from: u64) -> Option<u64> {
        let from = from.clamp(self.start, self.end);
        if let Some((&s, &l)) = self.free.range(..from).next_back() {
            if s + l >= from + len {
                return Some(from);
            }
        }
        self.free
            .range(from..)
            .chain(self.free.range(..from))
            .find(|(_, &l)| l >= len)
            .map(|(&s, _)| s)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Allocator {
    block_size: u64,
    devices: Vec<DeviceSpace>,
    /// free txg → extents waiting out their deferral.
    deferred: BTreeMap<u64, Vec<Extent>>,
    /// The same extents by address, for overlap checks in O(log n).
    deferred_index: BTreeMap<(u32, u64), u64>,
    deferred_bytes: u64,
    /// This txg's records, persisted by the next commit.
    log: Vec<SpaceEntry>,
    reserve: u64,
    /// Allocations made so far, and the one to refuse with ENOSPC (fault
    /// injection: tests make every allocation point of a workload fail).
    allocs: u64,
    fail_at: Option<u64>,
}

impl Allocator {
    /// All of each device's data area `(start, end)` free.
    pub(crate) fn new(areas: &[(u64, u64)], block_size: u32) -> Self {
        let devices: Vec<DeviceSpace> =
            areas.iter().map(|&(s, e)| DeviceSpace::new(s, e)).collect();
        let total: u64 = devices.iter().map(|d| d.end - d.start).sum();
        let bs = block_size as u64;
        // 1/32 of the pool, at least 16 blocks: enough to commit the deletes
        // that free space on a full pool.
        let reserve = (total / 32).max(16 * bs).min(total / 4) / bs * bs;
        Allocator {
            block_size: bs,
            devices,
            deferred: BTreeMap::new(),
            deferred_index: BTreeMap::new(),
            deferred_bytes: 0,
            log: Vec::new(),
            reserve,
            allocs: 0,
            fail_at: None,
        }
    }

    /// Refuse the `n`th allocation from now (1 = the next) with NoSpace;
    /// `None` stops refusing.
    pub(crate) fn inject_no_space(&mut self, n: Option<u64>) {
        self.fail_at = n.map(|n| self.allocs + n.max(1));
    }

    /// Allocations made since the allocator was built.
    pub(crate) fn allocation_count(&self) -> u64 {
        self.allocs
    }

    pub(crate) fn total_bytes(&self) -> u64 {
        self.devices.iter().map(|d| d.end - d.start).sum()
    }
    pub(crate) fn free_bytes(&self) -> u64 {
        self.devices.iter().map(|d| d.free_bytes).sum()
    }
    pub(crate) fn deferred_bytes(&self) -> u64 {
        self.deferred_bytes
    }
    pub(crate) fn reserve_bytes(&self) -> u64 {
        self.reserve
    }
    /// Bytes an allocation of `class` may still take.
    pub(crate) fn available(&self, class: AllocClass) -> u64 {
        match class {
            AllocClass::Normal => self.free_bytes().saturating_sub(self.reserve),
            AllocClass::Reserved => self.free_bytes(),
        }
    }

    fn round(&self, len: u64) -> u64 {
        len.div_ceil(self.block_size) * self.block_size
    }

    /// Record allocation `e` in this txg's space map log.
    fn log_alloc(&mut self, e: &Extent) {
        self.log.push(SpaceEntry {
            op: SpaceOp::Alloc,
            device: e.device,
            offset: e.offset,
            len: e.len,
            txg: 0,
        });
    }

    /// Allocate `len` bytes (rounded up to the block size) as at most
    /// `max_pieces` extents of whole blocks, largest free extents first
    /// (a gang block's pieces, when no one extent holds `len`). All or
    /// nothing; the pieces come back in allocation order.
    pub(crate) fn alloc_pieces(
        &mut self,
        len: u64,
        max_pieces: usize,
        class: AllocClass,
    ) -> Result<Vec<Extent>> {
        let len = self.round(len);
        let short = |a: &Self| PoolError::NoSpace {
            needed: len,
            available: a.available(class),
        };
        if len == 0 || len > self.available(class) {
            return Err(short(self));
        }
        // Plan first, from the size indexes, so a refusal changes nothing.
        let mut plan = Vec::new();
        let mut left = len;
        let mut holes = self
            .devices
            .iter()
            .enumerate()
            .flat_map(|(i, d)| {
                d.by_size
                    .iter()
                    .rev()
                    .take(max_pieces)
                    .map(move |&(l, o)| (l, i, o))
            })
            .collect::<Vec<_>>();
        holes.sort_unstable_by(|a, b| b.cmp(a));
        for (l, dev, off) in holes.into_iter().take(max_pieces) {
            let take = l.min(left) / self.block_size * self.block_size;
            if take == 0 {
                break;
            }
            plan.push(Extent {
                device: dev as u32,
                offset: off,
                len: take,
            });
            left -= take;
            if left == 0 {
                break;
            }
        }
        self.allocs += 1;
        if left > 0 || self.fail_at == Some(self.allocs) {
            return Err(short(self));
        }
        for e in &plan {
            let taken = self.devices[e.device as usize].take(e.offset, e.len);
            assert!(taken, "a planned piece is not free");
            self.log_alloc(e);
        }
        Ok(plan)
    }

    /// Allocate `copies` extents of `len` bytes (rounded up to the block
    /// size), on distinct devices while there are enough, else spread over
    /// one device (ditto blocks half a device apart). All or nothing.
    pub(crate) fn alloc(
        &mut self,
        len: u64,
        copies: usize,
        class: AllocClass,
    ) -> Result<Vec<Extent>> {
        assert!(copies >= 1 && len > 0);
        self.allocs += 1;
        if self.fail_at == Some(self.allocs) {
            return Err(PoolError::NoSpace {
                needed: len,
                available: 0,
            });
        }
        let len = self.round(len);
        let needed = len * copies as u64;
        if needed > self.available(class) {
            return Err(PoolError::NoSpace {
                needed,
                available: self.available(class),
            });
        }
        // Devices by most free space first: balances fill across the pool.
        let mut order: Vec<usize> = (0..self.devices.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.devices[i].free_bytes));
        let mut out: Vec<Extent> = Vec::with_capacity(copies);
        for c in 0..copies {
            let dev = order[c % order.len()];
            let d = &self.devices[dev];
            let sibling = out.iter().rev().find(|e| e.device as usize == dev);
            let from = match sibling {
                // A ditto copy on the same device: start half a device away so
                // one damaged region does not take both.
                Some(prev) => {
                    d.start + (prev.offset - d.start + (d.end - d.start) / 2) % (d.end - d.start)
                }
                None => d.cursor,
            };
            let best = if d.is_tight() {
                d.best_fit(len, sibling.map(|e| e.offset))
            } else {
                None
            };
            let Some(off) = best.or_else(|| d.find(len, from)) else {
                for e in out.drain(..) {
                    self.devices[e.device as usize].give(e.offset, e.len);
                }
                return Err(PoolError::NoSpace {
                    needed,
                    available: self.available(class),
                });
            };
            let d = &mut self.devices[dev];
            assert!(d.take(off, len), "allocator found an extent it cannot take");
            if out.iter().all(|e| e.device as usize != dev) {
                d.cursor = off + len;
            }
            out.push(Extent {
                device: dev as u32,
                offset: off,
                len,
            });
        }
        for e in &out {
            self.log_alloc(e);
        }
        Ok(out)
    }

    /// Free an extent. `now` frees (the block was born in the open txg, so no
    /// committed root references it) are reusable at once; others wait.
    pub(crate) fn free(&mut self, e: Extent, free_txg: u64, now: bool) -> Result<()> {
        let e = Extent {
            len: self.round(e.len),
            ..e
        };
        self.check_allocated(e)?;
        if now {
            self.give(e)?;
            self.log.push(SpaceEntry {
                op: SpaceOp::Free,
                device: e.device,
                offset: e.offset,
                len: e.len,
                txg: 0,
            });
        } else {
            self.defer(e, free_txg);
            self.log.push(SpaceEntry {
                op: SpaceOp::Free,
                device: e.device,
                offset: e.offset,
                len: e.len,
                txg: free_txg,
            });
        }
        Ok(())
    }

    fn check_allocated(&self, e: Extent) -> Result<()> {
        let d = self.devices.get(e.device as usize).ok_or_else(|| {
            PoolError::corrupt("block address", format!("no device {}", e.device))
        })?;
        if e.offset < d.start
            || e.offset.checked_add(e.len).is_none_or(|end| end > d.end)
            || !e.offset.is_multiple_of(self.block_size)
        {
            return Err(PoolError::corrupt(
                "block address",
                format!("{}:{}+{} outside the data area", e.device, e.offset, e.len),
            ));
        }
        if let Some((&s, &l)) = d.free.range(..e.offset + e.len).next_back() {
            if s + l > e.offset {
                return Err(PoolError::corrupt(
                    "space map",
                    format!(
                        "free of unallocated extent {}:{}+{}",
                        e.device, e.offset, e.len
                    ),
                ));
            }
        }
        let pending = self
            .deferred_index
            .range(..(e.device, e.offset + e.len))
            .next_back()
            .is_some_and(|(&(d, o), &l)| d == e.device && o + l > e.offset);
        if pending {
            return Err(PoolError::corrupt(
                "space map",
                format!("double free of {}:{}+{}", e.device, e.offset, e.len),
            ));
        }
        Ok(())
    }

    fn defer(&mut self, e: Extent, txg: u64) {
        self.deferred.entry(txg).or_default().push(e);
        self.deferred_index.insert((e.device, e.offset), e.len);
        self.deferred_bytes += e.len;
    }

    /// Free extents plus deferred ones: a cheap bound on the records a
    /// condensed space map needs.
    pub(crate) fn extent_count(&self) -> usize {
        self.devices.iter().map(|d| d.free.len()).sum::<usize>() + self.deferred_index.len()
    }

    fn give(&mut self, e: Extent) -> Result<()> {
        let ok = self
            .devices
            .get_mut(e.device as usize)
            .is_some_and(|d| d.give(e.offset, e.len));
        if !ok {
            return Err(PoolError::corrupt(
                "space map",
                format!("cannot free {}:{}+{}", e.device, e.offset, e.len),
            ));
        }
        Ok(())
    }

    /// After txg `committed` is durable: frees old enough become free space.
    pub(crate) fn release_deferred(&mut self, committed: u64) {
        let limit = committed.saturating_sub(DEFER_TXGS);
        let ready: Vec<u64> = self.deferred.range(..=limit).map(|(&t, _)| t).collect();
        for t in ready {
            for e in self.deferred.remove(&t).unwrap_or_default() {
                self.deferred_bytes -= e.len;
                self.deferred_index.remove(&(e.device, e.offset));
                // The extent was checked when it was deferred; a failure here
                // is a bug in this module, not on-disk corruption.
                let ok = self.devices[e.device as usize].give(e.offset, e.len);
                assert!(ok, "deferred extent {e:?} overlapped free space");
            }
        }
    }

    /// Take this txg's records for the commit to persist.
    pub(crate) fn take_log(&mut self) -> Vec<SpaceEntry> {
        std::mem::take(&mut self.log)
    }
    pub(crate) fn log_len(&self) -> usize {
        self.log.len()
    }

    /// Apply one persisted record while loading, as of committed txg `current`.
    pub(crate) fn replay(&mut self, e: &SpaceEntry, current: u64) -> Result<()> {
        let x = Extent {
            device: e.device,
            offset: e.offset,
            len: e.len,
        };
        let bad = || {
            PoolError::corrupt(
                "space map",
                format!("record {e:?} contradicts the records before it"),
            )
        };
        if !x.len.is_multiple_of(self.block_size)
            || !x.offset.is_multiple_of(self.block_size)
            || x.offset.checked_add(x.len).is_none()
        {
            return Err(bad());
        }
        match e.op {
            SpaceOp::Alloc => {
                let ok = self
                    .devices
                    .get_mut(e.device as usize)
                    .is_some_and(|d| d.take(x.offset, x.len));
                if !ok {
                    return Err(bad());
                }
            }
            SpaceOp::Free => {
                self.check_allocated(x).map_err(|_| bad())?;
                // The free's txg comes from disk: one too large to defer
                // past is a contradiction, not an overflow.
                let Some(release) = e.txg.checked_add(DEFER_TXGS) else {
                    return Err(bad());
                };
                if e.txg == 0 || release <= current {
                    self.give(x)?;
                } else {
                    self.defer(x, e.txg);
                }
            }
        }
        Ok(())
    }

    /// Allocated extents (neither free nor waiting out a deferral), sorted.
    pub(crate) fn allocated_extents(&self) -> Vec<Extent> {
        let mut out = Vec::new();
        for (i, d) in self.devices.iter().enumerate() {
            let dev = i as u32;
            let mut gaps = Vec::new();
            let mut pos = d.start;
            for (&s, &l) in &d.free {
                if s > pos {
                    gaps.push((pos, s));
                }
                pos = s + l;
            }
            if d.end > pos {
                gaps.push((pos, d.end));
            }
            for (s0, e) in gaps {
                let mut s = s0;
                // Deferred extents never straddle free space, so those in
                // this gap start inside it.
                for (&(_, o), &l) in self.deferred_index.range((dev, s0)..(dev, e)) {
                    if o > s {
                        out.push(Extent {
                            device: dev,
                            offset: s,
                            len: o - s,
                        });
                    }
                    s = s.max(o + l);
                }
                if e > s {
                    out.push(Extent {
                        device: dev,
                        offset: s,
                        len: e - s,
                    });
                }
            }
        }
        out
    }

    /// Records that rebuild this allocator's state from nothing: every
    /// non-free extent allocated, then the deferred ones freed at their txg.
    pub(crate) fn condensed(&self) -> Vec<SpaceEntry> {
        let mut out = Vec::new();
        for (i, d) in self.devices.iter().enumerate() {
            let mut pos = d.start;
            for (&s, &l) in d.free.iter().chain(std::iter::once((&d.end, &0))) {
                if s > pos {
                    out.push(SpaceEntry {
                        op: SpaceOp::Alloc,
                        device: i as u32,
                        offset: pos,
                        len: s - pos,
                        txg: 0,
                    });
                }
                pos = s + l;
            }
        }
        for (&t, v) in &self.deferred {
            for e in v {
                out.push(SpaceEntry {
                    op: SpaceOp::Free,
                    device: e.device,
                    offset: e.offset,
                    len: e.len,
                    txg: t,
                });
            }
        }
        out
    }

    /// Deferred extents with the txg they were freed in (for fsck).
    pub(crate) fn deferred_extents(&self) -> Vec<(u64, Extent)> {
        self.deferred
            .iter()
            .flat_map(|(&t, v)| v.iter().map(move |&e| (t, e)))
            .collect()
    }

    /// Cross-check the free-byte counters against the maps.
    #[cfg(test)]
    pub(crate) fn check_counters(&self) -> bool {
        self.devices.iter().all(|d| {
            d.free.values().sum::<u64>() == d.free_bytes
                && d.by_size.len() == d.free.len()
                && d.free.iter().all(|(&o, &l)| d.by_size.contains(&(l, o)))
        }) && self.deferred.values().flatten().map(|e| e.len).sum::<u64>() == self.deferred_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    const MB: u64 = 1 << 20;

    #[test]
    fn alloc_free_defer_release() {
        let mut a = Allocator::new(&[(MB, 9 * MB)], 4096);
        let total = a.free_bytes();
        let e = a.alloc(5000, 1, AllocClass::Normal).unwrap();
        assert_eq!(e[0].len, 8192);
        assert_eq!(a.free_bytes(), total - 8192);
        a.free(e[0], 5, false).unwrap();
        assert_eq!(a.deferred_bytes(), 8192);
        assert!(a.free(e[0], 5, false).is_err(), "double free accepted");
        a.release_deferred(6);
        assert_eq!(a.deferred_bytes(), 8192, "released one txg early");
        a.release_deferred(7);
        assert_eq!(a.free_bytes(), total);
        assert!(a.check_counters());
    }

    #[test]
    fn ditto_copies_are_apart_and_distinct_devices_preferred() {
        let mut one = Allocator::new(&[(MB, 65 * MB)], 4096);
        let e = one.alloc(4096, 2, AllocClass::Normal).unwrap();
        assert!(e[0].offset.abs_diff(e[1].offset) >= 16 * MB);
        let mut two = Allocator::new(&[(MB, 65 * MB), (MB, 65 * MB)], 4096);
        let e = two.alloc(4096, 2, AllocClass::Normal).unwrap();
        assert_ne!(e[0].device, e[1].device);
    }

    #[test]
    fn reserve_is_kept_for_reserved_class() {
        let mut a = Allocator::new(&[(MB, 9 * MB)], 4096);
        while a.alloc(4096, 1, AllocClass::Normal).is_ok() {}
        assert_eq!(a.free_bytes(), a.reserve_bytes());
        assert!(a.alloc(4096, 1, AllocClass::Reserved).is_ok());
    }

    #[test]
    fn replay_of_log_or_condensed_rebuilds_state() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut a = Allocator::new(&[(MB, 33 * MB), (MB, 17 * MB)], 4096);
        let mut log = Vec::new();
        let mut live: Vec<Extent> = Vec::new();
        for txg in 1..60u64 {
            for _ in 0..20 {
                if rng.gen_bool(0.6) || live.is_empty() {
                    if let Ok(v) = a.alloc(
                        rng.gen_range(1..40000),
                        rng.gen_range(1..3),
                        AllocClass::Normal,
                    ) {
                        live.extend(v);
                    }
                } else {
                    let e = live.swap_remove(rng.gen_range(0..live.len()));
                    a.free(e, txg, rng.gen_bool(0.2)).unwrap();
                }
            }
            log.extend(a.take_log());
            a.release_deferred(txg);
            let mut b = Allocator::new(&[(MB, 33 * MB), (MB, 17 * MB)], 4096);
            for e in &log {
                b.replay(e, txg).unwrap();
            }
            assert_eq!(
                b.allocated_extents(),
                a.allocated_extents(),
                "log replay at txg {txg}"
            );
            assert_eq!(b.free_bytes(), a.free_bytes());
            let mut c = Allocator::new(&[(MB, 33 * MB), (MB, 17 * MB)], 4096);
            for e in &a.condensed() {
                c.replay(e, txg).unwrap();
            }
            assert_eq!(
                c.allocated_extents(),
                a.allocated_extents(),
                "condensed replay at txg {txg}"
            );
            assert_eq!(c.deferred_bytes(), a.deferred_bytes());
            assert!(a.check_counters() && b.check_counters() && c.check_counters());
        }
    }

    #[test]
    fn replay_rejects_contradictions() {
        let mut a = Allocator::new(&[(MB, 9 * MB)], 4096);
        let e = SpaceEntry {
            op: SpaceOp::Alloc,
            device: 0,
            offset: MB,
            len: 4096,
            txg: 0,
        };
        a.replay(&e, 1).unwrap();
        assert!(a.replay(&e, 1).is_err(), "double alloc accepted");
        let f = SpaceEntry {
            op: SpaceOp::Free,
            device: 0,
            offset: 2 * MB,
            len: 4096,
            txg: 0,
        };
        assert!(a.replay(&f, 1).is_err(), "free of free space accepted");
        let g = SpaceEntry {
            op: SpaceOp::Alloc,
            device: 3,
            offset: MB,
            len: 4096,
            txg: 0,
        };
        assert!(a.replay(&g, 1).is_err(), "unknown device accepted");
    }

    #[test]
    fn replay_rejects_records_that_would_overflow() {
        let mut a = Allocator::new(&[(MB, 9 * MB)], 4096);
        let alloc = SpaceEntry {
            op: SpaceOp::Alloc,
            device: 0,
            offset: MB,
            len: 4096,
            txg: 0,
        };
        a.replay(&alloc, 1).unwrap();
        let late_free = SpaceEntry {
            op: SpaceOp::Free,
            txg: u64::MAX,
            ..alloc
        };
        assert!(
            a.replay(&late_free, 1).is_err(),
            "free txg overflow accepted"
        );
        let wrapping = SpaceEntry {
            offset: u64::MAX - 4095,
            len: 8192,
            ..alloc
        };
        assert!(a.replay(&wrapping, 1).is_err(), "wrapping extent accepted");
    }
}
