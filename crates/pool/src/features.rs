//! Feature flags in three sets, as ext4 has them:
//! - compat: an old reader may ignore them entirely;
//! - ro_compat: an old reader may open the pool read-only;
//! - incompat: an old reader must refuse the pool.
//!
//! This build knows the bits below; `KNOWN_*` masks are what it accepts.

/// The version-1 format itself (labels, uberblock ring, space map log).
pub(crate) const INCOMPAT_BASE_V1: u64 = 1 << 0;
/// Gang blocks (block pointer layout 2, `gang_header.rs`): a data block
/// may lie in pieces when no free extent holds it whole. Set on pools
/// made by this build; a pool without it never gets a gang block.
pub(crate) const INCOMPAT_GANG: u64 = 1 << 1;
/// Snapshots (pool tree records 2 and 3 of the filesystem layer): a
/// block a dataset frees may still be held by a snapshot and go on a
/// dead list instead. A build without it would free such blocks, so it
/// must refuse the pool. Set on pools made by this build; an older pool
/// takes no snapshot until `aegisfs upgrade` sets it.
pub(crate) const INCOMPAT_SNAPSHOTS: u64 = 1 << 2;
/// Received snapshots (snapshot record version 2, which keeps the guid
/// of the snapshot a send stream came from): a build without it would
/// refuse such records, or a later incremental receive onto them. Set on
/// pools made by this build and by `aegisfs upgrade`; a receive into a
/// pool without it is refused.
pub(crate) const INCOMPAT_RECEIVED: u64 = 1 << 3;
/// Reflinks (the filesystem layer's clone table, pool tree record type
/// 4, and block pointers with a birth delta): a block may be named by
/// several pointers, and is freed when the table says the last went. A
/// build without it would free a shared block at its first pointer's
/// free, so it must refuse the pool. Set on pools made by this build and
/// by `aegisfs upgrade`; without it a copy_file_range copies.
pub(crate) const INCOMPAT_REFLINKS: u64 = 1 << 4;

/// Unused by the code (an old reader ignores compat bits by definition);
/// kept so the three masks read as one table.
#[allow(dead_code)]
pub(crate) const KNOWN_COMPAT: u64 = 0;
pub(crate) const KNOWN_RO_COMPAT: u64 = 0;
pub(crate) const KNOWN_INCOMPAT: u64 =
    INCOMPAT_BASE_V1 | INCOMPAT_GANG | INCOMPAT_SNAPSHOTS | INCOMPAT_RECEIVED | INCOMPAT_REFLINKS;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Features {
    pub compat: u64,
    pub ro_compat: u64,
    pub incompat: u64,
}

impl Features {
    pub fn current() -> Self {
        Features {
            compat: 0,
            ro_compat: 0,
            incompat: KNOWN_INCOMPAT,
        }
    }
    /// Names of the set bits, for `info`.
    pub fn names(&self) -> Vec<String> {
        let mut v = Vec::new();
        for bit in 0..64 {
            if self.incompat & (1 << bit) != 0 {
                v.push(match bit {
                    0 => "base_v1".to_string(),
                    1 => "gang".to_string(),
                    2 => "snapshots".to_string(),
                    3 => "received_snapshots".to_string(),
                    4 => "reflinks".to_string(),
                    _ => format!("incompat_{bit}"),
                });
            }
            if self.ro_compat & (1 << bit) != 0 {
                v.push(format!("ro_compat_{bit}"));
            }
            if self.compat & (1 << bit) != 0 {
                v.push(format!("compat_{bit}"));
            }
        }
        v
    }
}
