//! [`FaultDevice`]: a wrapper that injects I/O faults into another device,
//! in the manner of TigerBeetle's storage simulator: each fault rule targets
//! a zone of the device and fires on a countdown, then with a probability.
//!
//! Invariants:
//! - the schedule is deterministic for a given seed and sequence of I/Os:
//!   every random choice comes from one seeded generator, drawn under a lock;
//! - an access outside the device is reported as `OutOfRange` before any rule
//!   sees it, and does not count towards any countdown;
//! - a rule counts only the I/Os it can affect (reads for read faults, writes
//!   for write faults, flushes for flush faults) and that overlap its zone;
//!   a flush covers the whole device, so it matches every zone;
//! - at most one fault fires per I/O: the first rule (in order of `add`) that
//!   fires wins, but every matching rule still counts the I/O;
//! - discards pass through untouched: they are hints and the layers above
//!   must already cope with a discard that did nothing;
//! - while disabled, the wrapper is a plain pass-through and counts nothing.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{check_range, BlockDevice, BlockError, DeviceRef, Result};

/// Torn writes keep a prefix made of whole sectors of this size, as a power
/// cut on a real disk does.
const SECTOR: usize = 512;

/// Which part of the device a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    All,
    /// Bytes `[start, end)`; an I/O matches if it overlaps them.
    Range {
        start: u64,
        end: u64,
    },
}

impl Zone {
    fn matches(&self, offset: u64, len: usize) -> bool {
        match *self {
            Zone::All => true,
            Zone::Range { start, end } => {
                // An empty I/O still happens somewhere: treat it as one byte
                // so it can be targeted.
                let io_end = offset.saturating_add((len as u64).max(1));
                offset < end && start < io_end
            }
        }
    }
}

/// What a rule does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The read fails with [`BlockError::Injected`]; the buffer is untouched.
    ReadError,
    /// The write fails with [`BlockError::Injected`] and writes nothing.
    WriteError,
    /// The flush fails with [`BlockError::Injected`].
    FlushError,
    /// Only a random whole-sector prefix strictly shorter than the buffer
    /// (possibly empty) is written, and the write reports success.
    TornWrite,
    /// Nothing is written and the write reports success.
    DroppedWrite,
    /// The read succeeds, then one random bit of the returned buffer is
    /// flipped; the device content is intact.
    BitFlipOnRead,
    /// The buffer is written with one random bit flipped.
    BitFlipOnWrite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Write,
    Flush,
}

impl FaultKind {
    fn op(self) -> Op {
        match self {
            FaultKind::ReadError | FaultKind::BitFlipOnRead => Op::Read,
            FaultKind::WriteError
            | FaultKind::TornWrite
            | FaultKind::DroppedWrite
            | FaultKind::BitFlipOnWrite => Op::Write,
            FaultKind::FlushError => Op::Flush,
        }
    }
}

/// One fault rule.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    pub kind: FaultKind,
    pub zone: Zone,
    /// Number of matching I/Os to let through before the first fault.
    pub after: u64,
    /// Once armed, the chance that each matching I/O faults; 1.0 = always.
    /// Values outside `[0, 1]` are clamped, NaN counts as 0.
    pub probability: f64,
    /// Stop after this many faults; `None` = never stop.
    pub max_faults: Option<u64>,
}

impl FaultConfig {
    /// A rule that fires on every matching I/O anywhere on the device.
    pub fn new(kind: FaultKind) -> FaultConfig {
        FaultConfig {
            kind,
            zone: Zone::All,
            after: 0,
            probability: 1.0,
            max_faults: None,
        }
    }

    pub fn zone(mut self, zone: Zone) -> FaultConfig {
        self.zone = zone;
        self
    }

    pub fn after(mut self, n: u64) -> FaultConfig {
        self.after = n;
        self
    }

    pub fn probability(mut self, p: f64) -> FaultConfig {
        self.probability = p;
        self
    }

    pub fn max(mut self, n: u64) -> FaultConfig {
        self.max_faults = Some(n);
        self
    }
}

struct Rule {
    cfg: FaultConfig,
    /// Matching I/Os seen so far.
    seen: u64,
    /// Faults fired so far.
    fired: u64,
}

struct State {
    rng: StdRng,
    rules: Vec<Rule>,
}

impl State {
    /// Count the I/O in every matching rule and return the kind of the first
    /// rule that fires.
    fn decide(&mut self, op: Op, offset: u64, len: usize) -> Option<FaultKind> {
        let mut chosen = None;
        for rule in &mut self.rules {
            if rule.cfg.kind.op() != op || !(op == Op::Flush || rule.cfg.zone.matches(offset, len))
            {
                continue;
            }
            rule.seen += 1;
            if chosen.is_some() || rule.seen <= rule.cfg.after {
                continue;
            }
            if rule.cfg.max_faults.is_some_and(|max| rule.fired >= max) {
                continue;
            }
            let p = rule.cfg.probability;
            // Certain outcomes draw nothing, so adding an always-firing rule
            // does not shift the random choices of the others.
            let fire = if p >= 1.0 {
                true
            } else if p > 0.0 {
                self.rng.gen_bool(p)
            } else {
                false
            };
            if fire {
                rule.fired += 1;
                chosen = Some(rule.cfg.kind);
            }
        }
        chosen
    }
}

/// A device that passes I/O to an inner device and injects faults by rule.
pub struct FaultDevice {
    inner: DeviceRef,
    state: Mutex<State>,
    enabled: AtomicBool,
    injected: AtomicU64,
}

impl FaultDevice {
    /// Wrap `inner`, drawing every random choice from a generator seeded
    /// with `seed`. Starts enabled, with no rules.
    pub fn new(inner: DeviceRef, seed: u64) -> FaultDevice {
        FaultDevice {
            inner,
            state: Mutex::new(State {
                rng: StdRng::seed_from_u64(seed),
                rules: Vec::new(),
            }),
            enabled: AtomicBool::new(true),
            injected: AtomicU64::new(0),
        }
    }

    /// Add a rule; returns its id (its index, for [`FaultDevice::fired`]).
    pub fn add(&self, cfg: FaultConfig) -> usize {
        let mut st = self.state.lock();
        st.rules.push(Rule {
            cfg,
            seen: 0,
            fired: 0,
        });
        st.rules.len() - 1
    }

    /// Remove every rule. Ids handed out before are no longer valid.
    pub fn clear(&self) {
        self.state.lock().rules.clear();
    }

    /// How many faults fired in total since the device was created.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// How many faults rule `id` fired; 0 for an unknown id.
    pub fn fired(&self, id: usize) -> u64 {
        self.state.lock().rules.get(id).map_or(0, |r| r.fired)
    }

    /// Turn injection on or off without losing the rules or their counts.
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    /// The wrapped device.
    pub fn inner(&self) -> &DeviceRef {
        &self.inner
    }

    /// Decide whether this I/O faults. The random parameter of the fault
    /// (torn length, bit index) is drawn under the same lock so the schedule
    /// depends only on the seed and the I/O sequence.
    fn decide(&self, op: Op, offset: u64, len: usize) -> Option<(FaultKind, usize)> {
        if !self.enabled.load(Ordering::Relaxed) {
            return None;
        }
        let mut st = self.state.lock();
        let kind = st.decide(op, offset, len)?;
        let param = match kind {
            // k whole sectors with k * SECTOR < len; an empty write can only
            // be torn to nothing.
            FaultKind::TornWrite if len > 0 => st.rng.gen_range(0..=(len - 1) / SECTOR) * SECTOR,
            FaultKind::BitFlipOnRead | FaultKind::BitFlipOnWrite if len > 0 => {
                st.rng.gen_range(0..len * 8)
            }
            _ => 0,
        };
        drop(st);
        self.injected.fetch_add(1, Ordering::Relaxed);
        Some((kind, param))
    }
}

fn flip_bit(buf: &mut [u8], bit: usize) {
    if let Some(byte) = buf.get_mut(bit / 8) {
        *byte ^= 1 << (bit % 8);
    }
}

impl BlockDevice for FaultDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(offset, buf.len(), self.inner.size())?;
        match self.decide(Op::Read, offset, buf.len()) {
            Some((FaultKind::ReadError, _)) => Err(BlockError::Injected { offset }),
            Some((FaultKind::BitFlipOnRead, bit)) => {
                self.inner.read_at(buf, offset)?;
                flip_bit(buf, bit);
                Ok(())
            }
            _ => self.inner.read_at(buf, offset),
        }
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        check_range(offset, buf.len(), self.inner.size())?;
        match self.decide(Op::Write, offset, buf.len()) {
            Some((FaultKind::WriteError, _)) => Err(BlockError::Injected { offset }),
            Some((FaultKind::DroppedWrite, _)) => Ok(()),
            Some((FaultKind::TornWrite, keep)) => {
                if keep > 0 {
                    self.inner.write_at(&buf[..keep], offset)?;
                }
                Ok(())
            }
            Some((FaultKind::BitFlipOnWrite, bit)) => {
                let mut copy = buf.to_vec();
                flip_bit(&mut copy, bit);
                self.inner.write_at(&copy, offset)
            }
            _ => self.inner.write_at(buf, offset),
        }
    }

    fn flush(&self) -> Result<()> {
        match self.decide(Op::Flush, 0, 0) {
            Some((FaultKind::FlushError, _)) => Err(BlockError::Injected { offset: 0 }),
            _ => self.inner.flush(),
        }
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        self.inner.discard(offset, len)
    }

    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn name(&self) -> String {
        format!("fault({})", self.inner.name())
    }
}

impl fmt::Debug for FaultDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultDevice")
            .field("inner", &self.inner.name())
            .field("rules", &self.state.lock().rules.len())
            .field("enabled", &self.enabled.load(Ordering::Relaxed))
            .field("injected", &self.injected())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemDevice;
    use std::sync::Arc;

    const OLD: u8 = 0x11;
    const NEW: u8 = 0xee;

    /// A 64 KiB memory device filled with OLD, and a fault wrapper over it.
    fn setup(seed: u64) -> (Arc<MemDevice>, FaultDevice) {
        let mem = Arc::new(MemDevice::new(64 * 1024));
        mem.write_at(&[OLD; 64 * 1024], 0).unwrap();
        let dev = FaultDevice::new(mem.clone(), seed);
        (mem, dev)
    }

    fn read(dev: &dyn BlockDevice, offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        dev.read_at(&mut buf, offset).unwrap();
        buf
    }

    fn differing_bits(a: &[u8], b: &[u8]) -> u32 {
        a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
    }

    #[test]
    fn pass_through_without_rules() {
        let (mem, dev) = setup(1);
        dev.write_at(&[NEW; 100], 10).unwrap();
        assert_eq!(read(&dev, 10, 100), vec![NEW; 100]);
        dev.flush().unwrap();
        assert_eq!(mem.flush_count(), 1);
        dev.discard(0, 4096).unwrap();
        assert_eq!(read(&*mem, 0, 4096), vec![0; 4096]);
        assert_eq!(dev.size(), 64 * 1024);
        assert_eq!(dev.name(), "fault(mem)");
        assert_eq!(dev.injected(), 0);
    }

    #[test]
    fn out_of_range_is_not_a_fault() {
        let (_mem, dev) = setup(1);
        dev.add(FaultConfig::new(FaultKind::ReadError));
        dev.add(FaultConfig::new(FaultKind::WriteError));
        let mut buf = [0u8; 8];
        assert!(matches!(
            dev.read_at(&mut buf, 64 * 1024 - 4),
            Err(BlockError::OutOfRange { .. })
        ));
        assert!(matches!(
            dev.write_at(&buf, u64::MAX),
            Err(BlockError::OutOfRange { .. })
        ));
        assert!(matches!(
            dev.discard(64 * 1024, 1),
            Err(BlockError::OutOfRange { .. })
        ));
        assert_eq!(dev.injected(), 0);
    }

    #[test]
    fn read_error() {
        let (_mem, dev) = setup(1);
        dev.add(FaultConfig::new(FaultKind::ReadError));
        let mut buf = [7u8; 16];
        let err = dev.read_at(&mut buf, 512).unwrap_err();
        assert!(matches!(err, BlockError::Injected { offset: 512 }), "{err}");
        assert_eq!(buf, [7u8; 16], "a failed read leaves the buffer alone");
        // Writes are not affected by a read rule.
        dev.write_at(&[NEW; 4], 0).unwrap();
        assert_eq!(dev.injected(), 1);
    }

    #[test]
    fn write_error_writes_nothing() {
        let (mem, dev) = setup(1);
        dev.add(FaultConfig::new(FaultKind::WriteError));
        let err = dev.write_at(&[NEW; 1024], 1024).unwrap_err();
        assert!(
            matches!(err, BlockError::Injected { offset: 1024 }),
            "{err}"
        );
        assert_eq!(read(&*mem, 1024, 1024), vec![OLD; 1024]);
    }

    #[test]
    fn flush_error() {
        let (mem, dev) = setup(1);
        dev.add(FaultConfig::new(FaultKind::FlushError).zone(Zone::Range { start: 0, end: 1 }));
        assert!(matches!(dev.flush(), Err(BlockError::Injected { .. })));
        assert_eq!(mem.flush_count(), 0);
        assert_eq!(dev.injected(), 1);
    }

    #[test]
    fn torn_write_keeps_prefix_of_new_rest_old() {
        let mut prefixes = std::collections::BTreeSet::new();
        for seed in 0..64 {
            let (mem, dev) = setup(seed);
            dev.add(FaultConfig::new(FaultKind::TornWrite));
            dev.write_at(&[NEW; 4096], 8192).unwrap();
            let got = read(&*mem, 8192, 4096);
            let keep = got.iter().take_while(|&&b| b == NEW).count();
            assert_eq!(
                keep % SECTOR,
                0,
                "seed {seed}: prefix {keep} not whole sectors"
            );
            assert!(keep < 4096, "seed {seed}: torn write wrote everything");
            assert!(got[keep..].iter().all(|&b| b == OLD), "seed {seed}");
            // Neighbours untouched.
            assert_eq!(read(&*mem, 8191, 1), vec![OLD]);
            assert_eq!(read(&*mem, 8192 + 4096, 1), vec![OLD]);
            prefixes.insert(keep);
        }
        assert!(prefixes.len() > 1, "torn length never varies: {prefixes:?}");

        // A buffer of one sector or less can only be torn to nothing.
        let (mem, dev) = setup(9);
        dev.add(FaultConfig::new(FaultKind::TornWrite));
        dev.write_at(&[NEW; 512], 0).unwrap();
        dev.write_at(&[NEW; 100], 1024).unwrap();
        dev.write_at(&[], 2048).unwrap();
        assert_eq!(read(&*mem, 0, 2048), vec![OLD; 2048]);
        assert_eq!(dev.injected(), 3);
    }

    #[test]
    fn dropped_write_leaves_all_old() {
        let (mem, dev) = setup(1);
        dev.add(FaultConfig::new(FaultKind::DroppedWrite));
        dev.write_at(&[NEW; 4096], 0).unwrap();
        assert_eq!(read(&*mem, 0, 64 * 1024), vec![OLD; 64 * 1024]);
    }

    #[test]
    fn bit_flip_on_read_changes_one_bit_of_buffer_only() {
        for seed in 0..16 {
            let (mem, dev) = setup(seed);
            dev.add(FaultConfig::new(FaultKind::BitFlipOnRead).max(1));
            let got = read(&dev, 100, 300);
            assert_eq!(differing_bits(&got, &[OLD; 300]), 1, "seed {seed}");
            assert_eq!(read(&*mem, 100, 300), vec![OLD; 300], "device intact");
            assert_eq!(read(&dev, 100, 300), vec![OLD; 300], "max reached");
        }
    }

    #[test]
    fn bit_flip_on_write_changes_one_bit_on_device() {
        for seed in 0..16 {
            let (mem, dev) = setup(seed);
            dev.add(FaultConfig::new(FaultKind::BitFlipOnWrite));
            let data = vec![NEW; 777];
            dev.write_at(&data, 3000).unwrap();
            assert_eq!(
                differing_bits(&read(&*mem, 3000, 777), &data),
                1,
                "seed {seed}"
            );
            assert_eq!(read(&*mem, 2999, 1), vec![OLD]);
            assert_eq!(read(&*mem, 3777, 1), vec![OLD]);
        }
    }

    #[test]
    fn after_and_max_are_counted() {
        let (_mem, dev) = setup(1);
        let id = dev.add(FaultConfig::new(FaultKind::WriteError).after(3).max(2));
        let results: Vec<bool> = (0..8).map(|i| dev.write_at(&[NEW], i).is_err()).collect();
        assert_eq!(
            results,
            [false, false, false, true, true, false, false, false]
        );
        assert_eq!(dev.fired(id), 2);
        assert_eq!(dev.injected(), 2);
        // Reads and flushes do not advance a write rule's countdown.
        let (_mem, dev) = setup(1);
        dev.add(FaultConfig::new(FaultKind::WriteError).after(1));
        read(&dev, 0, 1);
        dev.flush().unwrap();
        dev.write_at(&[NEW], 0).unwrap();
        assert!(dev.write_at(&[NEW], 0).is_err());
    }

    #[test]
    fn zone_matching_counts_only_overlapping_io() {
        let (mem, dev) = setup(1);
        dev.add(
            FaultConfig::new(FaultKind::DroppedWrite)
                .zone(Zone::Range {
                    start: 4096,
                    end: 8192,
                })
                .after(1),
        );
        // Outside the zone: written, not counted.
        dev.write_at(&[NEW; 4096], 0).unwrap();
        dev.write_at(&[NEW; 10], 8192).unwrap();
        // First overlapping write goes through (after = 1), second is dropped,
        // third overlaps only by its last four bytes and is dropped too.
        dev.write_at(&[NEW; 8], 4096).unwrap();
        dev.write_at(&[NEW; 8], 5000).unwrap();
        dev.write_at(&[0x77; 8], 4092).unwrap();
        assert_eq!(read(&*mem, 0, 4096), vec![NEW; 4096]);
        assert_eq!(read(&*mem, 8192, 10), vec![NEW; 10]);
        assert_eq!(read(&*mem, 4096, 8), vec![NEW; 8]);
        assert_eq!(read(&*mem, 5000, 8), vec![OLD; 8]);
        assert_eq!(dev.injected(), 2);
    }

    #[test]
    fn probability_is_deterministic_per_seed() {
        let run = |seed| {
            let (_mem, dev) = setup(seed);
            dev.add(FaultConfig::new(FaultKind::ReadError).probability(0.3));
            (0..200)
                .map(|i| dev.read_at(&mut [0u8; 1], i).is_err())
                .collect::<Vec<_>>()
        };
        let a = run(42);
        assert_eq!(a, run(42));
        assert_ne!(a, run(43));
        let hits = a.iter().filter(|&&x| x).count();
        assert!(
            (20..120).contains(&hits),
            "{hits} faults out of 200 at p = 0.3"
        );

        let (_mem, dev) = setup(1);
        dev.add(FaultConfig::new(FaultKind::ReadError).probability(0.0));
        dev.add(FaultConfig::new(FaultKind::WriteError).probability(f64::NAN));
        dev.read_at(&mut [0u8; 1], 0).unwrap();
        dev.write_at(&[0u8; 1], 0).unwrap();
    }

    #[test]
    fn first_firing_rule_wins_and_disable_clear_work() {
        let (mem, dev) = setup(1);
        dev.add(FaultConfig::new(FaultKind::DroppedWrite).max(1));
        dev.add(FaultConfig::new(FaultKind::WriteError));
        dev.write_at(&[NEW], 0).unwrap(); // dropped by the first rule
        assert!(dev.write_at(&[NEW], 0).is_err()); // first is spent
        assert_eq!(dev.injected(), 2);

        dev.set_enabled(false);
        dev.write_at(&[NEW], 1).unwrap();
        assert_eq!(read(&*mem, 0, 2), vec![OLD, NEW]);
        assert_eq!(dev.injected(), 2);
        dev.set_enabled(true);
        assert!(dev.write_at(&[NEW], 1).is_err());
        dev.clear();
        dev.write_at(&[NEW], 0).unwrap();
        assert_eq!(read(&*mem, 0, 1), vec![NEW]);
    }
}
