//! `aegisfs info`: what a pool is and how full it is.

use std::path::PathBuf;

use aegis_fs::fsck::{tree_shapes, TreeShape};
use aegis_fs::{ObjectRead, OpenOptions};
use serde::Serialize;

use super::{open_store, CliError, CliResult};
use crate::units::human;

#[derive(clap::Args)]
pub struct Args {
    pub image: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct DeviceInfo {
    index: usize,
    uuid: String,
    size: u64,
    data_start: u64,
    data_end: u64,
}

#[derive(Serialize)]
struct Info {
    pool_uuid: String,
    label: String,
    format_version: u16,
    block_size: u32,
    metadata_copies: u8,
    checksum: String,
    metadata_compression: String,
    features: Vec<String>,
    features_compat: u64,
    features_ro_compat: u64,
    features_incompat: u64,
    devices: Vec<DeviceInfo>,
    txg: u64,
    txg_time_ns: u64,
    newest_txg_seen: u64,
    fallback: Vec<String>,
    size: u64,
    used: u64,
    free: u64,
    deferred_free: u64,
    reserved: u64,
    /// Bytes reflinks save: blocks named by several pointers, counted
    /// once per extra pointer.
    reflinked: u64,
    space_map_blocks: u64,
    trees: Vec<TreeShape>,
    /// The filesystem in the root dataset, if it holds one.
    filesystem: Option<FsInfo>,
}

/// The root dataset's meta record: how files are stored, its features.
#[derive(Serialize)]
struct FsInfo {
    record_size: u32,
    compression: String,
    inodes: u64,
    features: Vec<String>,
    /// Bytes held back by preallocated records (fallocate).
    preallocated: u64,
}

fn fs_info(store: &aegis_fs::Store) -> CliResult<Option<FsInfo>> {
    let meta = store
        .view(aegis_fs::dataset::ROOT_DATASET, |v| v.meta())
        .map_err(|e: aegis_fs::FsError| {
            CliError::new(format!("the filesystem's meta record: {e}"))
        })?;
    Ok(meta.map(|m| FsInfo {
        record_size: m.record_size,
        compression: m.compression.name().into(),
        inodes: m.inodes,
        features: aegis_fs::posix::feature_names(m.features),
        preallocated: m.reserved,
    }))
}

pub fn run(a: Args) -> CliResult<u8> {
    let store = open_store(
        &a.image,
        &OpenOptions {
            read_only: true,
            rewind_txg: None,
        },
    )?;
    let cfg = store.config();
    let ub = store
        .last_uberblock()
        .ok_or_else(|| CliError::new(format!("{}: no uberblock", a.image.display())))?;
    let sp = store.space();
    let rep = store.open_report();
    let info = Info {
        pool_uuid: uuid::Uuid::from_bytes(cfg.pool_uuid).to_string(),
        label: cfg.label.clone(),
        format_version: cfg.version,
        block_size: cfg.block_size,
        metadata_copies: cfg.metadata_copies,
        checksum: cfg.checksum.name().into(),
        metadata_compression: cfg.metadata_compression.name().into(),
        features: cfg.features.names(),
        features_compat: cfg.features.compat,
        features_ro_compat: cfg.features.ro_compat,
        features_incompat: cfg.features.incompat,
        devices: cfg
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| DeviceInfo {
                index: i,
                uuid: uuid::Uuid::from_bytes(d.uuid).to_string(),
                size: d.size,
                data_start: d.data_start,
                data_end: d.data_end,
            })
            .collect(),
        txg: ub.txg,
        txg_time_ns: ub.timestamp_ns,
        newest_txg_seen: rep.newest_txg,
        fallback: rep
            .skipped
            .iter()
            .map(|(t, e)| format!("txg {t} skipped: {e}"))
            .chain(rep.label_problems.iter().cloned())
            .collect(),
        size: sp.total,
        used: sp.used(),
        free: sp.free,
        deferred_free: sp.deferred,
        reserved: sp.reserve,
        reflinked: store
            .reflinked_bytes()
            .map_err(|e| CliError::new(format!("the clone table: {e}")))?,
        space_map_blocks: ub.space_map_blocks,
        trees: tree_shapes(&store),
        filesystem: fs_info(&store)?,
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&info).expect("serialisable")
        );
    } else {
        print_text(&info);
    }
    Ok(0)
}

/// The report for a person, one aspect a line.
fn print_text(info: &Info) {
    println!("pool         {} '{}'", info.pool_uuid, info.label);
    println!(
        "format       version {}, features {}",
        info.format_version,
        info.features.join(",")
    );
    println!("block size   {}", human(info.block_size as u64));
    println!(
        "metadata     {} copies, {} checksum, {} compression",
        info.metadata_copies, info.checksum, info.metadata_compression
    );
    for d in &info.devices {
        println!("device {}     {} {}", d.index, d.uuid, human(d.size));
    }
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(info.txg_time_ns);
    println!(
        "txg          {} (committed {})",
        info.txg,
        humantime::format_rfc3339_seconds(when)
    );
    if info.txg != info.newest_txg_seen {
        println!(
            "WARNING      newest txg {} is damaged; opened txg {} instead",
            info.newest_txg_seen, info.txg
        );
    }
    for f in &info.fallback {
        println!("note         {f}");
    }
    println!(
        "space        {} used, {} free, {} pending free, {} reserved, of {}",
        human(info.used),
        human(info.free),
        human(info.deferred_free),
        human(info.reserved),
        human(info.size)
    );
    if info.reflinked > 0 {
        println!("reflinks     {} shared", human(info.reflinked));
    }
    println!("space map    {} blocks", info.space_map_blocks);
    for t in &info.trees {
        println!(
            "tree         {:<16} id {:<4} height {} nodes {} entries {}",
            t.name, t.id, t.height, t.nodes, t.entries
        );
    }
    if let Some(f) = &info.filesystem {
        let features = if f.features.is_empty() {
            "none".to_string()
        } else {
            f.features.join(",")
        };
        println!(
            "filesystem   {} records, {} compression, {} inodes, features {}, {} preallocated",
            human(f.record_size as u64),
            f.compression,
            f.inodes,
            features,
            human(f.preallocated)
        );
    }
}
