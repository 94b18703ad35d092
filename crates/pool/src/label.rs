//! Device labels: who a device is and which pool it belongs to.
//!
//! Every device carries four 256 KiB labels, two at its start and two at its
//! end, so a wiped start or a truncated end alone does not lose the pool:
//!
//! ```text
//! [L0 0..256K][L1 256K..512K][ data area ... ][L2 end-512K][L3 end-256K]
//! ```
//!
//! (`end` is the device size rounded down to 256 KiB.) Inside a label:
//! `[0, 4K)` the config header below, `[4K, 128K)` zero, `[128K, 256K)` the
//! uberblock ring of 32 slots of 4 KiB (see `uberblock.rs`).
//!
//! Config header (little-endian):
//! 0 magic "AEGISFS\0" · 8 u16 format version · 10 u16 reserved ·
//! 12 u32 block size · 16 u64 compat · 24 u64 ro_compat · 32 u64 incompat ·
//! 40 pool UUID (16) · 56 device UUID (16) · 72 u32 this device's index ·
//! 76 u32 device count · 80 u64 this device's size · 88 u64 creation time
//! (ns since the epoch) · 96 u64 config generation · 104 pool label (64,
//! UTF-8, NUL-padded) · 168 u8 metadata copies · 169 u8 default checksum
//! type · 170 u8 metadata compression · 171 reserved (21) · 192 device table, 48 bytes per
//! device: UUID (16), u64 size, u64 data start, u64 data end, u64 reserved ·
//! 4064 BLAKE3 of bytes [0, 4064).

use crate::checksum::{self_checksum, ChecksumType};
use crate::codec::{Reader, Writer};
use crate::compression::Compression;
use crate::error::{PoolError, Result};
use crate::features::{Features, KNOWN_INCOMPAT, KNOWN_RO_COMPAT};

pub const LABEL_MAGIC: [u8; 8] = *b"AEGISFS\0";
pub(crate) const FORMAT_VERSION: u16 = 1;
pub const LABEL_SIZE: u64 = 256 * 1024;
pub const LABEL_COUNT: usize = 4;
pub const CONFIG_SIZE: usize = 4096;
pub const UBER_RING_OFFSET: u64 = 128 * 1024;
pub(crate) const MAX_DEVICES: usize = (CONFIG_SIZE - 32 - 192) / 48;
pub const MAX_LABEL_NAME: usize = 64;
pub const BLOCK_SIZES: [u32; 5] = [4096, 8192, 16384, 32768, 65536];
/// Smallest device that holds the labels and a useful data area.
pub const MIN_DEVICE_SIZE: u64 = 8 << 20;

/// One row of the device table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceEntry {
    pub uuid: [u8; 16],
    pub size: u64,
    pub data_start: u64,
    pub data_end: u64,
}

/// The config header of a label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelConfig {
    pub version: u16,
    pub block_size: u32,
    pub features: Features,
    pub pool_uuid: [u8; 16],
    pub device_uuid: [u8; 16],
    pub device_index: u32,
    pub device_size: u64,
    pub created_ns: u64,
    pub generation: u64,
    pub label: String,
    /// Copies of every metadata block (ditto blocks), 1..=3.
    pub metadata_copies: u8,
    pub checksum: ChecksumType,
    pub metadata_compression: Compression,
    pub devices: Vec<DeviceEntry>,
}

/// Byte offsets of the four labels on a device of `size` bytes.
pub fn label_offsets(size: u64) -> [u64; LABEL_COUNT] {
    let end = size / LABEL_SIZE * LABEL_SIZE;
    [0, LABEL_SIZE, end - 2 * LABEL_SIZE, end - LABEL_SIZE]
}

/// The data area of a device: after the front labels, before the back ones,
/// aligned to the block size.
pub(crate) fn data_area(size: u64, block_size: u32) -> (u64, u64) {
    let end = size / LABEL_SIZE * LABEL_SIZE - 2 * LABEL_SIZE;
    let bs = block_size as u64;
    (2 * LABEL_SIZE, end / bs * bs)
}

impl LabelConfig {
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.devices.len() <= MAX_DEVICES && self.label.len() <= MAX_LABEL_NAME);
        let mut w = Writer::with_capacity(CONFIG_SIZE);
        w.bytes(&LABEL_MAGIC);
        w.u16(self.version);
        w.u16(0);
        w.u32(self.block_size);
        w.u64(self.features.compat);
        w.u64(self.features.ro_compat);
        w.u64(self.features.incompat);
        w.bytes(&self.pool_uuid);
        w.bytes(&self.device_uuid);
        w.u32(self.device_index);
        w.u32(self.devices.len() as u32);
        w.u64(self.device_size);
        w.u64(self.created_ns);
        w.u64(self.generation);
        let start = w.len();
        w.bytes(self.label.as_bytes());
        w.pad_to(start + MAX_LABEL_NAME);
        w.u8(self.metadata_copies);
        w.u8(self.checksum as u8);
        w.u8(self.metadata_compression as u8);
        w.zeros(21);
        debug_assert_eq!(w.len(), 192);
        for d in &self.devices {
            w.bytes(&d.uuid);
            w.u64(d.size);
            w.u64(d.data_start);
            w.u64(d.data_end);
            w.u64(0);
        }
        w.pad_to(CONFIG_SIZE - 32);
        let sum = self_checksum(&w.buf);
        w.bytes(&sum);
        w.into_inner()
    }

    /// Decode and validate a config header read from `device` (for messages).
    /// Returns `Ok(None)` when the magic is absent: not an AegisFS label.
    ///
    /// Longer than most functions here on purpose: it is one pass over the
    /// header in the order of the layout above, each check beside the
    /// field it checks, and splitting it would part the reads from the
    /// offsets they stand for (the device table, a layout of its own, is
    /// read apart).
    pub fn decode(buf: &[u8], device: &str) -> Result<Option<LabelConfig>> {
        if buf.len() < CONFIG_SIZE || buf[..8] != LABEL_MAGIC {
            return Ok(None);
        }
        let bad = |d: String| PoolError::corrupt(format!("label on {device}"), d);
        if self_checksum(&buf[..CONFIG_SIZE - 32]) != buf[CONFIG_SIZE - 32..CONFIG_SIZE] {
            return Err(bad("checksum mismatch".into()));
        }
        let mut r = Reader::new(&buf[..CONFIG_SIZE - 32], "label");
        r.skip(8)?;
        let version = r.u16()?;
        if version != FORMAT_VERSION {
            return Err(PoolError::UnsupportedVersion {
                device: device.into(),
                version: version as u32,
                supported: FORMAT_VERSION as u32,
            });
        }
        r.skip(2)?;
        let block_size = r.u32()?;
        let features = Features {
            compat: r.u64()?,
            ro_compat: r.u64()?,
            incompat: r.u64()?,
        };
        if features.incompat & !KNOWN_INCOMPAT != 0 {
            return Err(PoolError::UnknownIncompat {
                device: device.into(),
                bits: features.incompat & !KNOWN_INCOMPAT,
            });
        }
        let pool_uuid = r.array::<16>()?;
        let device_uuid = r.array::<16>()?;
        let device_index = r.u32()?;
        let ndev = r.u32()? as usize;
        let device_size = r.u64()?;
        let created_ns = r.u64()?;
        let generation = r.u64()?;
        let name = r.bytes(MAX_LABEL_NAME)?;
        let name_len = name.iter().position(|&b| b == 0).unwrap_or(MAX_LABEL_NAME);
        let label = std::str::from_utf8(&name[..name_len])
            .map_err(|_| bad("pool label is not UTF-8".into()))?
            .to_string();
        let metadata_copies = r.u8()?;
        let checksum = ChecksumType::from_u8(r.u8()?)?;
        let metadata_compression = Compression::from_u8(r.u8()?)?;
        r.skip(21)?;
        if !(1..=3).contains(&metadata_copies) {
            return Err(bad(format!(
                "metadata copies {metadata_copies} outside 1..=3"
            )));
        }
        if !BLOCK_SIZES.contains(&block_size) {
            return Err(bad(format!("unsupported block size {block_size}")));
        }
        if ndev == 0 || ndev > MAX_DEVICES || device_index as usize >= ndev {
            return Err(bad(format!(
                "device index {device_index} of {ndev} devices"
            )));
        }
        let devices = decode_device_table(&mut r, ndev, block_size, device)?;
        // In range (checked against `ndev` above), but looked up with
        // `get` so that no header value can reach an index panic.
        let agrees = devices
            .get(device_index as usize)
            .is_some_and(|me| me.uuid == device_uuid && me.size == device_size);
        if !agrees {
            return Err(bad("device table disagrees with the header".into()));
        }
        Ok(Some(LabelConfig {
            version,
            block_size,
            features,
            pool_uuid,
            device_uuid,
            device_index,
            device_size,
            created_ns,
            generation,
            label,
            metadata_copies,
            checksum,
            metadata_compression,
            devices,
        }))
    }

    /// Read-only compatible features this build does not know.
    pub fn unknown_ro_compat(&self) -> u64 {
        self.features.ro_compat & !KNOWN_RO_COMPAT
    }
}

/// The `ndev` rows of the device table, each with a geometry the device
/// could have: labels around a non-empty data area of whole blocks.
fn decode_device_table(
    r: &mut Reader<'_>,
    ndev: usize,
    block_size: u32,
    device: &str,
) -> Result<Vec<DeviceEntry>> {
    let mut devices = Vec::with_capacity(ndev);
    for _ in 0..ndev {
        let d = DeviceEntry {
            uuid: r.array()?,
            size: r.u64()?,
            data_start: r.u64()?,
            data_end: r.u64()?,
        };
        r.skip(8)?;
        let bs = block_size as u64;
        if d.size < MIN_DEVICE_SIZE
            || d.data_start >= d.data_end
            || d.data_end > d.size
            || !d.data_start.is_multiple_of(bs)
            || !d.data_end.is_multiple_of(bs)
        {
            return Err(PoolError::corrupt(
                format!("label on {device}"),
                format!("device table row has impossible geometry {d:?}"),
            ));
        }
        devices.push(d);
    }
    Ok(devices)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> LabelConfig {
        let (s, e) = data_area(64 << 20, 4096);
        LabelConfig {
            version: FORMAT_VERSION,
            block_size: 4096,
            features: Features::current(),
            pool_uuid: [1; 16],
            device_uuid: [2; 16],
            device_index: 0,
            device_size: 64 << 20,
            created_ns: 123,
            generation: 1,
            label: "tank".into(),
            metadata_copies: 2,
            checksum: ChecksumType::Blake3,
            metadata_compression: Compression::Lz4,
            devices: vec![DeviceEntry {
                uuid: [2; 16],
                size: 64 << 20,
                data_start: s,
                data_end: e,
            }],
        }
    }

    #[test]
    fn round_trip_and_checksum() {
        let l = sample();
        let enc = l.encode();
        assert_eq!(enc.len(), CONFIG_SIZE);
        assert_eq!(LabelConfig::decode(&enc, "d").unwrap(), Some(l));
        let mut bad = enc.clone();
        bad[200] ^= 1;
        assert!(LabelConfig::decode(&bad, "d").is_err());
        assert_eq!(LabelConfig::decode(&[0u8; 4096], "d").unwrap(), None);
    }

    #[test]
    fn unknown_incompat_is_refused() {
        let mut l = sample();
        l.features.incompat |= 1 << 40;
        let err = LabelConfig::decode(&l.encode(), "d").unwrap_err();
        assert!(matches!(err, PoolError::UnknownIncompat { bits, .. } if bits == 1 << 40));
    }

    #[test]
    fn geometry() {
        let size = (64 << 20) + 12345;
        let offs = label_offsets(size);
        assert_eq!(offs[3] + LABEL_SIZE, 64 << 20);
        let (s, e) = data_area(size, 65536);
        assert_eq!(s, 512 * 1024);
        assert!(e <= offs[2] && e % 65536 == 0);
    }
}
