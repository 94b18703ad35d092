//! `send`: a snapshot of a dataset as a stream (`send_stream.rs`), whole
//! or as the changes from an older snapshot of the same dataset.
//!
//! A full stream is every item of the snapshot's tree in key order. An
//! incremental one compares the base's tree with the snapshot's top
//! down, skipping every subtree both reach through the same pointer
//! (`snapshot_diff::differing_items`), so its cost follows what changed:
//! a key only the base has becomes DEL, a key whose value differs or is
//! new becomes PUT or DATA. Holes are keys missing against the base, not
//! birth times, so the hole-birth bugs of other systems (a hole whose
//! birth was never recorded, skipped by an incremental stream) cannot
//! happen here. Blocks are read in their stored form, verified against
//! their checksums, and sent as they are.
//!
//! Items that belong to the pool rather than to the dataset's contents
//! (the intent log's ring and head, snapshot schedules, the time travel
//! window, a receive's own state) are never sent. Both orders are deterministic, which is what a
//! resumed stream relies on: it is the same stream after a key.

use std::collections::BTreeSet;
use std::io::Write;
use std::ops::Bound;

use aegis_btree::Tree;
use aegis_pool::{Pool, StoredForm};

use crate::error::{FsError, Result};
use crate::posix::keys::{self, META_OBJECT};
use crate::posix::FileRecord;
use crate::receive_state::ResumeToken;
use crate::send_stream::{Begin, Record, StreamBlock, StreamWriter};
use crate::snapshot_diff::differing_items;
use crate::store::Store;

/// What a send wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendSummary {
    pub records: u64,
    pub bytes: u64,
    /// Stored bytes of the blocks it carried.
    pub block_bytes: u64,
}

/// Is `key` an item of the dataset's contents (sent), not of its place in
/// this pool?
pub(crate) fn is_sent(key: &[u8]) -> bool {
    let local = key.len() >= 9
        && key[..8] == META_OBJECT.to_be_bytes()
        && matches!(
            key[8],
            keys::LOG_HEAD | keys::LOG_RING | keys::SCHEDULE | keys::RECV_STATE | keys::TIMETRAVEL
        );
    !local
}

impl Store {
    /// Write dataset `ds`'s snapshot `snap` to `out`: whole, or with
    /// `base` the changes since that older snapshot; with `resume`, only
    /// what comes after the token's key. `progress` hears the bytes
    /// written now and then.
    pub fn send<W: Write>(
        &self,
        ds: u64,
        snap: &str,
        base: Option<&str>,
        resume: Option<&ResumeToken>,
        out: W,
        progress: &mut dyn FnMut(u64),
    ) -> Result<SendSummary> {
        // Readers of their own over the snapshots' roots, which never
        // change: the send holds no lock, so a mounted dataset goes on
        // taking writes meanwhile. A snapshot deleted under a send makes
        // it fail on a block that no longer verifies, never send wrong
        // bytes.
        let (rec, tree, base) = {
            let t = self.trees.read();
            let (_, rec) = crate::snapshot_admin::find(&t, ds, snap)?;
            let base = match base {
                Some(name) => {
                    let (_, brec) = crate::snapshot_admin::find(&t, ds, name)?;
                    if brec.txg >= rec.txg {
                        return Err(FsError::Invalid(format!(
                            "the base {name:?} is not older than {snap:?}"
                        )));
                    }
                    Some((brec.guid(), self.reader(&brec.root)))
                }
                None => None,
            };
            (rec.clone(), self.reader(&rec.root), base)
        };
        let tree = &tree;
        let base_guid = base.as_ref().map_or(0, |(g, _)| *g);
        let after = match resume {
            Some(tok) if (tok.snapshot_guid, tok.base_guid) != (rec.guid(), base_guid) => {
                return Err(FsError::Invalid(
                    "the resume token is for another snapshot or base".into(),
                ))
            }
            Some(tok) => tok.after_key.clone(),
            None => Vec::new(),
        };
        let meta = crate::tx::read_meta(tree, ds)?;
        let begin = Begin {
            snapshot_guid: rec.guid(),
            base_guid,
            created_ns: rec.created_ns,
            source_txg: rec.txg,
            block_size: self.pool.block_size(),
            features: meta.features,
            name: rec.name.clone(),
            resume_after: after.clone(),
        };
        let mut s = Sender {
            w: StreamWriter::new(out),
            pool: &self.pool,
            summary: SendSummary::default(),
            progress,
        };
        s.w.write(&Record::Begin(begin))?;
        match base {
            None => s.full(tree, &after)?,
            Some((_, btree)) => s.incremental(&btree, tree, &after)?,
        }
        let records = s.summary.records + 2;
        let block_bytes = s.summary.block_bytes;
        let (_, bytes) = s.w.finish()?;
        Ok(SendSummary {
            records,
            bytes,
            block_bytes,
        })
    }

    /// A tree reader of its own over `root` (a snapshot's).
    fn reader(&self, root: &aegis_pool::TreeRoot) -> Tree {
        Tree::open(
            self.pool.clone(),
            self.cache.clone(),
            crate::dataset::DATASET_TREE_KIND,
            root,
        )
    }
}

struct Sender<'a, W: Write> {
    w: StreamWriter<W>,
    pool: &'a Pool,
    summary: SendSummary,
    progress: &'a mut dyn FnMut(u64),
}

/// Bytes between two progress reports.
const PROGRESS_BYTES: u64 = 16 << 20;

impl<W: Write> Sender<'_, W> {
    fn full(&mut self, tree: &Tree, after: &[u8]) -> Result<()> {
        let lo = match after.is_empty() {
            true => Bound::Unbounded,
            false => Bound::Excluded(after),
        };
        for item in tree.range(lo, Bound::Unbounded) {
            let (k, v) = item?;
            if is_sent(&k) {
                self.item(k, v)?;
            }
        }
        Ok(())
    }

    fn incremental(&mut self, base: &Tree, tree: &Tree, after: &[u8]) -> Result<()> {
        let (old, mut new) = differing_items(base, tree)?;
        let keys: BTreeSet<Vec<u8>> = old.keys().chain(new.keys()).cloned().collect();
        for k in keys {
            if k.as_slice() <= after || !is_sent(&k) {
                continue;
            }
            match new.remove(&k) {
                Some(v) => self.item(k, v)?,
                None => self.record(Record::Del { key: k })?,
            }
        }
        Ok(())
    }

    /// One item as its record: a file record with a block carries the
    /// block in its stored form.
    fn item(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        if key.get(8) != Some(&keys::DATA) {
            return self.record(Record::Put { key, value });
        }
        let (len, prealloc, bp) = match FileRecord::decode(&value)? {
            FileRecord::Inline(_) => return self.record(Record::Put { key, value }),
            FileRecord::Block { len, bp } => (len, false, Some(bp)),
            FileRecord::Prealloc { len, data } => (len, true, data),
        };
        let block = match bp {
            Some(bp) => {
                let stored = self.pool.read_stored(&bp)?;
                self.summary.block_bytes += stored.len() as u64;
                Some(StreamBlock {
                    form: StoredForm::of(&bp),
                    stored,
                })
            }
            None => None,
        };
        self.record(Record::Data {
            key,
            len,
            prealloc,
            block,
        })
    }

    fn record(&mut self, rec: Record) -> Result<()> {
        let before = self.w.bytes();
        self.w.write(&rec)?;
        self.summary.records += 1;
        if before / PROGRESS_BYTES != self.w.bytes() / PROGRESS_BYTES {
            (self.progress)(self.w.bytes());
        }
        Ok(())
    }
}
