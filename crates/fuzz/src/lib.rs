//! Fuzz targets: every decoder of on-disk bytes (intent log blocks and
//! records, and the POSIX ACLs xattrs hold, included), and open + fsck + mount +
//! walk of a small damaged image. A target must return (Ok or Err) for any
//! input: a panic, a hang or an allocation blow-up is a finding.
//!
//! The driver ([`driver`]) is a stable-toolchain mutation fuzzer without
//! coverage feedback: it mutates the committed seed corpus
//! (`crates/fuzz/corpus/<target>/`) with bit flips, byte sets, inserts,
//! deletes, splices and interesting integers, runs each input under
//! `catch_unwind` with a watchdog, and saves what fails. Checksummed
//! structures (labels, uberblocks) are re-sealed after mutation so inputs
//! reach the parser behind the checksum.

pub mod driver;
pub mod image;
pub mod seeds;
pub mod stream;

use aegis_btree::Node;
use aegis_fs::dataset::DatasetRecord;
use aegis_fs::posix::{keys, DatasetMeta, DirentValue, FileRecord, InodeRecord};
use aegis_pool::blkptr::{BlockPtr, BlockType};
use aegis_pool::checksum::self_checksum;
use aegis_pool::label::{LabelConfig, CONFIG_SIZE};
use aegis_pool::space_map::SpaceMapBlock;
use aegis_pool::uberblock::{Uberblock, UBERBLOCK_SIZE};
use aegis_pool::{ChecksumType, Compression, TreeRoot};

/// A fuzz target: a name and a function that must not panic on any input.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

pub fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "label",
            run: label,
        },
        Target {
            name: "uberblock",
            run: uberblock,
        },
        Target {
            name: "blkptr",
            run: blkptr,
        },
        Target {
            name: "tree_root",
            run: tree_root,
        },
        Target {
            name: "space_map",
            run: space_map,
        },
        Target {
            name: "tree_node",
            run: tree_node,
        },
        Target {
            name: "dataset_record",
            run: dataset_record,
        },
        Target {
            name: "snapshot_record",
            run: snapshot_record,
        },
        Target {
            name: "send_stream",
            run: stream::send_stream,
        },
        Target {
            name: "inode",
            run: inode,
        },
        Target {
            name: "dirent",
            run: dirent,
        },
        Target {
            name: "file_record",
            run: file_record,
        },
        Target {
            name: "posix_keys",
            run: posix_keys,
        },
        Target {
            name: "log_block",
            run: log_block,
        },
        Target {
            name: "log_record",
            run: log_record,
        },
        Target {
            name: "acl",
            run: acl,
        },
        Target {
            name: "image",
            run: image::run,
        },
    ]
}

fn label(data: &[u8]) {
    let mut b = data.to_vec();
    if b.len() >= CONFIG_SIZE {
        let sum = self_checksum(&b[..CONFIG_SIZE - 32]);
        b[CONFIG_SIZE - 32..CONFIG_SIZE].copy_from_slice(&sum);
    }
    let _ = LabelConfig::decode(&b, "fuzz");
}

fn uberblock(data: &[u8]) {
    let mut b = data.to_vec();
    if b.len() >= UBERBLOCK_SIZE {
        let sum = self_checksum(&b[..UBERBLOCK_SIZE - 32]);
        b[UBERBLOCK_SIZE - 32..UBERBLOCK_SIZE].copy_from_slice(&sum);
    }
    let _ = Uberblock::decode(&b);
}

fn blkptr(data: &[u8]) {
    if let Ok(bp) = BlockPtr::decode_slice(data) {
        // What decodes must encode back to the same bytes.
        assert_eq!(bp.encode(), data, "block pointer does not round-trip");
        let _ = bp.describe();
    }
}

fn tree_root(data: &[u8]) {
    let _ = TreeRoot::decode_slice(data);
}

fn space_map(data: &[u8]) {
    let _ = SpaceMapBlock::decode(data);
}

fn dummy_bp(len: usize) -> BlockPtr {
    BlockPtr {
        checksum_type: ChecksumType::Blake3,
        compression: Compression::None,
        block_type: BlockType::TreeNode,
        level: 0,
        logical_size: len as u32,
        physical_size: len as u32,
        birth_txg: 5,
        birth_delta: 0,
        checksum: [0; 32],
        addrs: Vec::new(),
        gang: false,
    }
}

fn tree_node(data: &[u8]) {
    let _ = Node::decode(data, &dummy_bp(data.len()), 2);
}

fn dataset_record(data: &[u8]) {
    if let Ok(r) = DatasetRecord::decode(data) {
        let again = DatasetRecord::decode(&r.encode()).expect("an encoded record decodes");
        assert_eq!(again, r, "dataset record does not round-trip");
    }
}

/// A snapshot record (what decodes encodes to a record that decodes the
/// same: the padding of its root's pointer field is not kept), and the
/// same bytes as a dead list entry: a 29-byte key, then the value; and
/// as a clone table entry.
fn snapshot_record(data: &[u8]) {
    use aegis_fs::snapshot::SnapshotRecord;
    if let Ok(r) = SnapshotRecord::decode(data) {
        let again = SnapshotRecord::decode(&r.encode()).expect("an encoded record decodes");
        assert_eq!(again, r, "snapshot record does not round-trip");
    }
    if data.len() > 29 {
        let (key, value) = data.split_at(29);
        if let Ok((bp, count)) = aegis_fs::dead_list::decode_counted(key, value) {
            assert_eq!(
                aegis_fs::dead_list::encode_entry(&bp, count),
                value,
                "dead list entry does not round-trip"
            );
        }
    }
    if let Ok(e) = aegis_fs::clone_table::CloneEntry::decode(data) {
        assert_eq!(e.encode(), data, "clone table entry does not round-trip");
    }
}

/// An ACL xattr value, as stored: decoding must be canonical (what it
/// encodes decodes to the same ACL), and the algorithms run on any valid
/// one without panicking.
fn acl(data: &[u8]) {
    use aegis_vfs::acl::{inherit, Acl};
    if let Ok(Some(a)) = Acl::decode(data) {
        let again = Acl::decode(&a.encode()).expect("an encoded ACL decodes");
        assert_eq!(again.as_ref(), Some(&a), "ACL does not round-trip");
        let mode = data.len() as u32 * 0o1234;
        let _ = a.equiv_mode();
        let mut c = a.clone();
        c.chmod(mode);
        let got = inherit(Some(&a), mode & 1 == 0, false, mode, 0o022);
        assert_eq!(
            got.perm & !0o777,
            mode & !0o777,
            "inheritance changed more than rwx bits"
        );
    }
}

fn inode(data: &[u8]) {
    if let Ok(r) = InodeRecord::decode(data) {
        assert_eq!(r.encode(), data, "inode record does not round-trip");
    }
}

fn dirent(data: &[u8]) {
    if let Ok(d) = DirentValue::decode(data) {
        assert_eq!(d.encode(), data, "directory entry does not round-trip");
    }
}

fn file_record(data: &[u8]) {
    let _ = FileRecord::decode(data);
    let _ = DatasetMeta::decode(data);
}

fn posix_keys(data: &[u8]) {
    let _ = keys::parse_backref(data);
    let _ = keys::parse_xattr(data);
    let _ = keys::parse_orphan(data);
    let _ = keys::dirent_cookie(data);
    let _ = keys::dirindex_cookie(data);
    let _ = keys::data_offset(data);
    let _ = keys::name_hash(data);
}

fn log_block(data: &[u8]) {
    use aegis_fs::intent_log::{LogBlock, LogHead, LogRing, LOG_HEADER};
    // Re-seal the checksum so mutations reach the parser behind it.
    let mut b = data.to_vec();
    if b.len() >= LOG_HEADER {
        let plen = u32::from_le_bytes([b[12], b[13], b[14], b[15]]) as usize;
        if LOG_HEADER + plen <= b.len() {
            b[64..96].fill(0);
            let sum = blake3::hash(&b[..LOG_HEADER + plen]);
            b[64..96].copy_from_slice(sum.as_bytes());
        }
        let chain = u64::from_le_bytes(b[16..24].try_into().expect("8 bytes"));
        let seq = u64::from_le_bytes(b[24..32].try_into().expect("8 bytes"));
        let pos = u64::from_le_bytes(b[32..40].try_into().expect("8 bytes"));
        let _ = LogBlock::peek_len(&b, chain, seq, pos, 4096);
        if let Some(block) = LogBlock::decode(&b, chain, seq, pos, 4096) {
            for r in &block.records {
                let _ = aegis_fs::intent_log::fuzz_record(r);
            }
        }
    }
    let _ = LogHead::decode(data);
    let _ = LogRing::decode(data, 4096);
}

fn log_record(data: &[u8]) {
    let _ = aegis_fs::intent_log::fuzz_record(data);
}
