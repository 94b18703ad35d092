//! Recognising what a device already holds, so mkfs does not destroy a
//! filesystem by accident. Offsets and magics are those blkid uses.

use aegis_block::BlockDevice;
use aegis_fs::limits::{label_offsets, LABEL_MAGIC, LABEL_SIZE, MIN_DEVICE_SIZE};

/// Name of the filesystem or container found on `dev`, if any.
pub fn detect(dev: &dyn BlockDevice) -> Option<&'static str> {
    let size = dev.size();
    let read = |off: u64, len: usize| -> Option<Vec<u8>> {
        if off + len as u64 > size {
            return None;
        }
        let mut b = vec![0u8; len];
        dev.read_at(&mut b, off).ok().map(|_| b)
    };
    // Any of the four AegisFS labels: a pool whose front labels were wiped
    // still has its back ones (only a device of pool size can hold those).
    let aegis_labels = if size >= MIN_DEVICE_SIZE {
        label_offsets(size).to_vec()
    } else {
        vec![0, LABEL_SIZE]
    };
    if aegis_labels
        .iter()
        .any(|&off| read(off, LABEL_MAGIC.len()).as_deref() == Some(&LABEL_MAGIC[..]))
    {
        return Some("AegisFS");
    }
    // (name, offset, magic)
    const MAGICS: &[(&str, u64, &[u8])] = &[
        ("ext2/ext3/ext4", 1080, &[0x53, 0xef]),
        ("btrfs", 65536 + 64, b"_BHRfS_M"),
        ("xfs", 0, b"XFSB"),
        ("LUKS", 0, b"LUKS\xba\xbe"),
        ("swap", 4086, b"SWAPSPACE2"),
        ("swap", 4086, b"SWAP-SPACE"),
        (
            "bcachefs",
            4096 + 24,
            &[
                0xc6, 0x85, 0x73, 0xf6, 0x4e, 0x1a, 0x45, 0xca, 0x82, 0x65, 0xf5, 0x7f, 0x48, 0xba,
                0x6d, 0x81,
            ],
        ),
        ("f2fs", 1024, &[0x10, 0x20, 0xf5, 0xf2]),
        ("squashfs", 0, b"hsqs"),
        ("iso9660", 32769, b"CD001"),
        ("ntfs", 3, b"NTFS    "),
        ("vfat", 82, b"FAT32   "),
        ("vfat", 54, b"FAT16   "),
        ("vfat", 54, b"FAT12   "),
        ("GPT partition table", 512, b"EFI PART"),
    ];
    for (name, off, magic) in MAGICS {
        if let Some(b) = read(*off, magic.len()) {
            if b == *magic {
                return Some(name);
            }
        }
    }
    // ZFS keeps an array of uberblocks with this magic at 128K in its labels.
    if let Some(b) = read(128 * 1024, 8) {
        if b == 0x00bab10c_u64.to_le_bytes() || b == 0x00bab10c_u64.to_be_bytes() {
            return Some("zfs");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use aegis_block::MemDevice;

    #[test]
    fn finds_known_magics_and_nothing_on_zeroes() {
        let d = MemDevice::new(16 << 20);
        assert_eq!(detect(&d), None);
        d.write_at(&[0x53, 0xef], 1080).unwrap();
        assert_eq!(detect(&d), Some("ext2/ext3/ext4"));
        let d = MemDevice::new(16 << 20);
        d.write_at(b"_BHRfS_M", 65536 + 64).unwrap();
        assert_eq!(detect(&d), Some("btrfs"));
        let d = MemDevice::new(16 << 20);
        d.write_at(b"XFSB", 0).unwrap();
        assert_eq!(detect(&d), Some("xfs"));
    }
}
