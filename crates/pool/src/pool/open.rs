//! Creating and opening a pool: labels, the choice of uberblock, and the
//! replay of its space map.
//!
//! Everything read here comes from devices that may be damaged or crafted,
//! so nothing read is trusted until it has been checked: a label only with
//! its own checksum and sane geometry, the device set only when every
//! label names the same pool and the newest config's table matches the
//! devices given (later code indexes `devices` by table positions), an
//! uberblock only once its space map chain replays without contradiction
//! and the caller's `verify` accepts its trees. A candidate that fails is
//! passed over for an older one and reported, never repaired here: the
//! only writes an open makes are self-heal's rewrites of damaged copies
//! (and none at all when read-only).

use std::collections::BTreeMap;
use std::sync::Arc;

use aegis_block::DeviceRef;

use super::{empty_allocator, now_ns, CreateOptions, OpenOptions, OpenReport, Pool};
use crate::allocator::Allocator;
use crate::blkptr::{BlockPtr, BlockType};
use crate::error::{PoolError, Result};
use crate::features::Features;
use crate::label::{
    data_area, label_offsets, DeviceEntry, LabelConfig, BLOCK_SIZES, CONFIG_SIZE, FORMAT_VERSION,
    LABEL_COUNT, LABEL_SIZE, MAX_DEVICES, MAX_LABEL_NAME, MIN_DEVICE_SIZE, UBER_RING_OFFSET,
};
use crate::space_map::{SpaceMapBlock, FLAG_CONDENSED};
use crate::uberblock::{Uberblock, UBER_SLOTS, UBER_SLOT_SIZE};

/// Hard cap on a space map chain walked at open: a damaged uberblock must
/// not send the loader around forever.
const MAX_SPACE_MAP_BLOCKS: u64 = 1 << 20;

impl Pool {
    /// Write fresh labels on `devices` and return the pool, with txg 1 open
    /// and nothing committed: the caller builds its trees and commits.
    pub fn create(devices: Vec<DeviceRef>, opts: &CreateOptions) -> Result<Pool> {
        check_create(&devices, opts)?;
        let pool_uuid = *uuid::Uuid::new_v4().as_bytes();
        let created_ns = now_ns();
        let table: Vec<DeviceEntry> = devices
            .iter()
            .map(|d| {
                let (data_start, data_end) = data_area(d.size(), opts.block_size);
                DeviceEntry {
                    uuid: *uuid::Uuid::new_v4().as_bytes(),
                    size: d.size(),
                    data_start,
                    data_end,
                }
            })
            .collect();
        let mut config = None;
        for (i, dev) in devices.iter().enumerate() {
            let cfg = LabelConfig {
                version: FORMAT_VERSION,
                block_size: opts.block_size,
                features: Features::current(),
                pool_uuid,
                device_uuid: table[i].uuid,
                device_index: i as u32,
                device_size: table[i].size,
                created_ns,
                generation: 1,
                label: opts.label.clone(),
                metadata_copies: opts.metadata_copies,
                checksum: opts.checksum,
                metadata_compression: opts.metadata_compression,
                devices: table.clone(),
            };
            // The whole label region is written, so stale signatures of other
            // filesystems and stale uberblocks inside it are gone.
            let mut region = vec![0u8; LABEL_SIZE as usize];
            region[..CONFIG_SIZE].copy_from_slice(&cfg.encode());
            for off in label_offsets(dev.size()) {
                dev.write_at(&region, off)?;
            }
            dev.flush()?;
            if i == 0 {
                config = Some(cfg);
            }
        }
        let config = config.expect("at least one device");
        Ok(Pool::assemble(devices, config, false, 1))
    }

    /// Open an existing pool: best label per device, then the newest
    /// uberblock whose space map and root block verify.
    pub fn open(devices: Vec<DeviceRef>, opts: &OpenOptions) -> Result<(Arc<Pool>, OpenReport)> {
        // Without a layer above to decode it, reading the pool tree's root
        // block (checksum verified) is the test of a candidate.
        Pool::open_verified(devices, opts, &|pool, ub| match &ub.pool_root.root {
            Some(bp) => pool.read_block(bp).map(|_| ()),
            None => Ok(()),
        })
    }

    /// As [`Pool::open`], with `verify` deciding whether a candidate
    /// uberblock whose space map replays is usable (the layer above decodes
    /// its trees).
    pub fn open_verified(
        devices: Vec<DeviceRef>,
        opts: &OpenOptions,
        verify: &dyn Fn(&Arc<Pool>, &Uberblock) -> Result<()>,
    ) -> Result<(Arc<Pool>, OpenReport)> {
        let mut report = OpenReport::default();
        let (config, devices) = read_labels(devices, opts, &mut report)?;
        let pool = Arc::new(Pool::assemble(devices, config, opts.read_only, 0));
        pool.choose_uberblock(opts, verify, &mut report)?;
        Ok((pool, report))
    }

    /// Try the uberblocks newest first (or just `opts.rewind_txg`) and
    /// install the first whose space map replays and that `verify` accepts.
    fn choose_uberblock(
        self: &Arc<Pool>,
        opts: &OpenOptions,
        verify: &dyn Fn(&Arc<Pool>, &Uberblock) -> Result<()>,
        report: &mut OpenReport,
    ) -> Result<()> {
        let candidates = self.read_uberblocks(&mut report.label_problems);
        report.newest_txg = candidates.keys().next_back().copied().unwrap_or(0);
        if candidates.is_empty() {
            return Err(PoolError::NoUberblock(
                "no valid uberblock in any label (was mkfs interrupted?)".into(),
            ));
        }
        // The next txg after the newest on disk, whichever is chosen.
        let open_txg = report
            .newest_txg
            .checked_add(1)
            .ok_or_else(|| PoolError::corrupt("uberblock", "txg at the end of the counter"));
        for (&txg, ub) in candidates.iter().rev() {
            if let Some(want) = opts.rewind_txg {
                if txg != want {
                    continue;
                }
            }
            match self
                .load_space(ub)
                .and_then(|r| verify(self, ub).map(|()| r))
            {
                Ok((alloc, chain)) => {
                    let open_txg = open_txg?;
                    *self.alloc.lock() = alloc;
                    {
                        let mut st = self.state.lock();
                        st.open_txg = open_txg;
                        st.last = Some(ub.clone());
                        st.chain = chain;
                    }
                    report.txg = txg;
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(txg, error = %e, "uberblock does not verify; trying an older one");
                    report.skipped.push((txg, e.to_string()));
                }
            }
        }
        let why = match opts.rewind_txg {
            Some(t) if !candidates.contains_key(&t) => format!(
                "txg {t} is not in the uberblock ring (have {:?})",
                candidates.keys().collect::<Vec<_>>()
            ),
            _ => report
                .skipped
                .iter()
                .map(|(t, e)| format!("txg {t}: {e}"))
                .collect::<Vec<_>>()
                .join("; "),
        };
        Err(PoolError::NoUberblock(why))
    }

    /// Every valid uberblock in every label of every device, by txg.
    fn read_uberblocks(&self, problems: &mut Vec<String>) -> BTreeMap<u64, Uberblock> {
        let mut out = BTreeMap::new();
        let mut ring = vec![0u8; (UBER_SLOTS as usize) * UBER_SLOT_SIZE];
        for (dev, entry) in self.devices.iter().zip(&self.config.devices) {
            for off in label_offsets(entry.size) {
                if let Err(e) = dev.read_at(&mut ring, off + UBER_RING_OFFSET) {
                    problems.push(format!("{}: uberblock ring at {off}: {e}", dev.name()));
                    continue;
                }
                for slot in ring.chunks(UBER_SLOT_SIZE) {
                    match Uberblock::decode(slot) {
                        Ok(Some(ub)) if ub.pool_uuid == self.config.pool_uuid => {
                            out.entry(ub.txg).or_insert(ub);
                        }
                        Ok(_) => {}
                        // A torn or damaged slot: the ring holds older ones.
                        Err(_) => {}
                    }
                }
            }
        }
        out
    }

    /// Replay the space map chain of `ub`.
    fn load_space(&self, ub: &Uberblock) -> Result<(Allocator, Vec<BlockPtr>)> {
        let mut alloc = empty_allocator(&self.config);
        let mut blocks = Vec::new();
        let mut chain = Vec::new();
        let mut next = ub.space_map.clone();
        let limit = ub.space_map_blocks.min(MAX_SPACE_MAP_BLOCKS);
        while let Some(bp) = next {
            if chain.len() as u64 >= limit {
                return Err(PoolError::corrupt(
                    "space map",
                    format!(
                        "chain longer than the {} blocks the uberblock records",
                        ub.space_map_blocks
                    ),
                ));
            }
            if bp.block_type != BlockType::SpaceMap || bp.birth_txg > ub.txg {
                return Err(PoolError::corrupt(
                    "space map",
                    format!("chain points at {}", bp.describe()),
                ));
            }
            let blk = SpaceMapBlock::decode(&self.read_block(&bp)?)?;
            next = blk.prev.clone();
            chain.push(bp);
            blocks.push(blk);
        }
        if chain.len() as u64 != ub.space_map_blocks {
            return Err(PoolError::corrupt(
                "space map",
                format!(
                    "chain has {} blocks, uberblock records {}",
                    chain.len(),
                    ub.space_map_blocks
                ),
            ));
        }
        if let Some(first) = blocks.last() {
            if first.flags & FLAG_CONDENSED == 0 {
                return Err(PoolError::corrupt(
                    "space map",
                    "chain does not start with a condensed block",
                ));
            }
        }
        for blk in blocks.iter().rev() {
            for e in &blk.entries {
                alloc.replay(e, ub.txg)?;
            }
        }
        chain.reverse();
        Ok((alloc, chain))
    }
}

/// The checks `create` makes before it writes anything.
fn check_create(devices: &[DeviceRef], opts: &CreateOptions) -> Result<()> {
    if !BLOCK_SIZES.contains(&opts.block_size) {
        return Err(PoolError::Invalid(format!(
            "block size {} is not one of 4K, 8K, 16K, 32K, 64K",
            opts.block_size
        )));
    }
    if opts.label.len() > MAX_LABEL_NAME {
        return Err(PoolError::Invalid(format!(
            "label is {} bytes; at most {MAX_LABEL_NAME}",
            opts.label.len()
        )));
    }
    if opts.label.contains('\0') {
        return Err(PoolError::Invalid("label contains a NUL byte".into()));
    }
    if !(1..=3).contains(&opts.metadata_copies) {
        return Err(PoolError::Invalid(
            "metadata copies must be 1, 2 or 3".into(),
        ));
    }
    if devices.is_empty() || devices.len() > MAX_DEVICES {
        return Err(PoolError::Invalid(format!(
            "a pool has 1 to {MAX_DEVICES} devices"
        )));
    }
    for d in devices {
        if d.size() < MIN_DEVICE_SIZE {
            return Err(PoolError::Invalid(format!(
                "{} is {} bytes; the smallest device AegisFS can use is {} MiB",
                d.name(),
                d.size(),
                MIN_DEVICE_SIZE >> 20
            )));
        }
    }
    Ok(())
}

impl Pool {
    /// Turn on every feature this build adds to an older pool (today
    /// `snapshots`), offline: each label's config header is rewritten with
    /// the new bits and the next generation, label by label with a flush
    /// after each, so a crash leaves every label either old or new and the
    /// open takes the newest. The uberblock rings are not touched. Returns
    /// the names of the features turned on (none: nothing written).
    pub fn upgrade(devices: Vec<DeviceRef>) -> Result<Vec<String>> {
        let mut report = OpenReport::default();
        let (config, devices) = read_labels(devices, &OpenOptions::default(), &mut report)?;
        let add = Features::current().incompat & !config.features.incompat;
        if add == 0 {
            return Ok(Vec::new());
        }
        let mut problems = Vec::new();
        for dev in &devices {
            let mut cfg = read_best_label(dev, &mut problems)?;
            cfg.features.incompat |= add;
            cfg.generation = config.generation + 1;
            cfg.devices = config.devices.clone();
            let header = cfg.encode();
            for off in label_offsets(dev.size()) {
                dev.write_at(&header, off)?;
                dev.flush()?;
            }
        }
        let added = Features {
            incompat: add,
            ..Default::default()
        };
        Ok(added.names())
    }
}

/// The best label of each device, checked to form one whole pool; returns
/// the config that carries the current device table (the highest
/// generation) and the devices in table order.
fn read_labels(
    devices: Vec<DeviceRef>,
    opts: &OpenOptions,
    report: &mut OpenReport,
) -> Result<(LabelConfig, Vec<DeviceRef>)> {
    let mut found: Vec<(LabelConfig, DeviceRef)> = Vec::new();
    for dev in devices {
        let cfg = read_best_label(&dev, &mut report.label_problems)?;
        found.push((cfg, dev));
    }
    check_members(&mut found)?;
    // The config with the highest generation carries the current table.
    let config = found
        .iter()
        .max_by_key(|(c, _)| c.generation)
        .map(|(c, _)| c.clone())
        .expect("non-empty");
    // Each label's own table was checked against its device, but not
    // against the others: block addresses are checked against this table
    // and then index the device list, so the two must have one length.
    if config.devices.len() != found.len() {
        return Err(PoolError::corrupt(
            "labels",
            format!(
                "the newest config lists {} devices, {} were given",
                config.devices.len(),
                found.len()
            ),
        ));
    }
    let unknown_ro = config.unknown_ro_compat();
    if unknown_ro != 0 && !opts.read_only {
        return Err(PoolError::UnknownRoCompat {
            device: found[0].1.name(),
            bits: unknown_ro,
        });
    }
    let devices: Vec<DeviceRef> = found.into_iter().map(|(_, d)| d).collect();
    for (d, entry) in devices.iter().zip(&config.devices) {
        if d.size() < entry.size {
            return Err(PoolError::corrupt(
                format!("device {}", d.name()),
                format!(
                    "it is {} bytes but was formatted with {} (truncated?)",
                    d.size(),
                    entry.size
                ),
            ));
        }
    }
    Ok((config, devices))
}

/// Every device given belongs to one pool, each once, and together they
/// are as many as the first one's table lists; sorts `found` into table
/// order.
fn check_members(found: &mut [(LabelConfig, DeviceRef)]) -> Result<()> {
    let first = found
        .first()
        .ok_or_else(|| PoolError::Invalid("no devices given".into()))?
        .0
        .clone();
    if found.len() != first.devices.len() {
        return Err(PoolError::Invalid(format!(
            "the pool has {} devices, {} given",
            first.devices.len(),
            found.len()
        )));
    }
    for (cfg, dev) in found.iter() {
        if cfg.pool_uuid != first.pool_uuid {
            return Err(PoolError::Invalid(format!(
                "{} belongs to another pool",
                dev.name()
            )));
        }
    }
    found.sort_by_key(|(c, _)| c.device_index);
    if found
        .iter()
        .enumerate()
        .any(|(i, (c, _))| c.device_index as usize != i)
    {
        return Err(PoolError::Invalid("the same device was given twice".into()));
    }
    Ok(())
}

/// The valid label with the highest generation on `dev`. Labels of a future
/// version or with unknown incompat features stop the open with that error.
fn read_best_label(dev: &DeviceRef, problems: &mut Vec<String>) -> Result<LabelConfig> {
    let name = dev.name();
    if dev.size() < CONFIG_SIZE as u64 {
        return Err(PoolError::NotAegis { device: name });
    }
    let mut offsets: Vec<u64> = vec![0, LABEL_SIZE];
    offsets.retain(|&o| o + CONFIG_SIZE as u64 <= dev.size());
    if dev.size() >= MIN_DEVICE_SIZE {
        offsets.extend(&label_offsets(dev.size())[2..]);
    }
    let mut best: Option<LabelConfig> = None;
    let mut damaged = 0;
    let mut buf = vec![0u8; CONFIG_SIZE];
    for (i, off) in offsets.iter().enumerate() {
        if let Err(e) = dev.read_at(&mut buf, *off) {
            problems.push(format!("{name}: label {i}: {e}"));
            damaged += 1;
            continue;
        }
        match LabelConfig::decode(&buf, &name) {
            Ok(Some(c)) => {
                if best.as_ref().is_none_or(|b| c.generation > b.generation) {
                    best = Some(c);
                }
            }
            Ok(None) => {}
            Err(e @ (PoolError::UnknownIncompat { .. } | PoolError::UnsupportedVersion { .. })) => {
                return Err(e)
            }
            Err(e) => {
                problems.push(format!("{name}: label {i}: {e}"));
                damaged += 1;
            }
        }
    }
    debug_assert!(offsets.len() <= LABEL_COUNT);
    match best {
        Some(c) => Ok(c),
        None if damaged > 0 => Err(PoolError::corrupt(
            format!("labels of {name}"),
            problems.join("; "),
        )),
        None => Err(PoolError::NotAegis { device: name }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use aegis_block::{DeviceRef, MemDevice};

    use super::*;
    use crate::tree_root::TreeRoot;

    const MB: u64 = 1 << 20;

    fn committed_pool(n: usize) -> Vec<DeviceRef> {
        let devs: Vec<DeviceRef> = (0..n)
            .map(|_| Arc::new(MemDevice::new(16 * MB)) as DeviceRef)
            .collect();
        let pool = Pool::create(devs.clone(), &CreateOptions::default()).unwrap();
        pool.commit(&TreeRoot::default()).unwrap();
        devs
    }

    fn write_labels(dev: &DeviceRef, cfg: &LabelConfig) {
        for off in label_offsets(dev.size()) {
            dev.write_at(&cfg.encode(), off).unwrap();
        }
    }

    #[test]
    fn newest_label_with_a_longer_device_table_is_corruption() {
        let devs = committed_pool(2);
        let mut buf = vec![0u8; CONFIG_SIZE];
        devs[1].read_at(&mut buf, 0).unwrap();
        let mut cfg = LabelConfig::decode(&buf, "d1").unwrap().unwrap();
        // Validly checksummed, newest, and naming a third device that was
        // never given: block addresses checked against this table would
        // index past the device list.
        cfg.generation = 2;
        cfg.devices.push(cfg.devices[0].clone());
        write_labels(&devs[1], &cfg);
        let err = Pool::open(devs, &OpenOptions::default()).err().unwrap();
        assert!(matches!(err, PoolError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn an_uberblock_at_the_last_txg_is_corruption() {
        let devs = committed_pool(1);
        let pool_uuid = {
            let mut buf = vec![0u8; CONFIG_SIZE];
            devs[0].read_at(&mut buf, 0).unwrap();
            LabelConfig::decode(&buf, "d0").unwrap().unwrap().pool_uuid
        };
        let ub = Uberblock {
            txg: u64::MAX,
            timestamp_ns: 0,
            pool_uuid,
            space_map_blocks: 0,
            pool_root: TreeRoot::default(),
            space_map: None,
            log_head: None,
        };
        let slot = (u64::MAX % UBER_SLOTS) * UBER_SLOT_SIZE as u64;
        devs[0]
            .write_at(&ub.encode(), UBER_RING_OFFSET + slot)
            .unwrap();
        let err = Pool::open(devs, &OpenOptions::default()).err().unwrap();
        assert!(matches!(err, PoolError::Corrupt { .. }), "{err}");
    }
}
