//! `receive`: a send stream (`send_stream.rs`) applied to a dataset of
//! this pool, all or nothing.
//!
//! A full stream makes a new dataset; an incremental one goes onto the
//! dataset whose newest snapshot is the stream's base, unchanged since
//! (or rolled back to it when forced). The records are applied in
//! batches, each in a commit of its own that also rewrites the dataset's
//! receive state (`receive_state.rs`): after a crash or a broken stream
//! the dataset holds exactly the records up to the state's key, each of
//! which was verified (the checksum chain proves every record before it
//! too). While the state exists the dataset cannot be mounted; the
//! commit that removes it also takes the received snapshot, with the
//! sent snapshot's guid and time. A receive that fails is undone (the
//! new dataset destroyed, or the dataset rolled back to its base), so
//! the target is as it was, unless it was asked to be resumable: then
//! the state stays and its token lets the sender go on after its key.
//!
//! Nothing in a stream is trusted: only the items of a dataset's
//! contents are accepted (never the intent log's, which name raw
//! extents), keys must rise strictly, values of inodes, file records and
//! the meta record must decode, every block must match its checksum
//! and decode to its length before it is written (`Pool::write_stored`),
//! and before the snapshot is taken the whole tree must pass the POSIX
//! checks fsck makes (`posix::check`).

use std::io::Read;

use aegis_pool::AllocClass;

use crate::error::{FsError, Result};
use crate::posix::file_data::data_props;
use crate::posix::keys::{self, META_OBJECT};
use crate::posix::{
    DatasetMeta, FileRecord, InodeRecord, DEFAULT_RECORD_SIZE, FEATURE_PREALLOC, FEATURE_RECEIVING,
};
use crate::receive_state::RecvState;
use crate::send_stream::{Begin, Record, StreamReader};
use crate::snapshot_diff::differing_items;
use crate::store::{Store, Trees};
use crate::tx::{read_meta, Tx, TxSize};

/// Most records one commit applies.
pub(crate) const BATCH_RECORDS: usize = 4096;
/// Most block bytes one commit applies.
const BATCH_BYTES: u64 = 32 << 20;

#[derive(Clone, Copy, Debug, Default)]
pub struct ReceiveOptions {
    /// Roll an incremental target back to its base if it changed since.
    pub force: bool,
    /// Keep what arrived when the stream breaks off, to resume later.
    pub resumable: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiveSummary {
    pub dataset: u64,
    pub snapshot: String,
    pub incremental: bool,
    /// Records and bytes of this stream (a resumed one: its own part).
    pub records: u64,
    pub bytes: u64,
}

impl Store {
    /// Receive the stream `input` into dataset `target` (created by a
    /// full stream). `progress` hears the stream bytes applied so far.
    pub fn receive<R: Read>(
        &self,
        target: &str,
        input: R,
        opts: ReceiveOptions,
        progress: &mut dyn FnMut(u64),
    ) -> Result<ReceiveSummary> {
        self.check_writable()?;
        crate::dataset_admin::validate_name(target)?;
        if !self.pool.received_enabled() {
            return Err(FsError::Invalid(
                "this pool was made before send and receive existed (feature `received_snapshots` is off); run `aegisfs upgrade` on it first".into(),
            ));
        }
        let mut rd = StreamReader::new(input);
        let begin = match rd.next_record()? {
            Some(Record::Begin(b)) => b,
            _ => return Err(FsError::Stream("no BEGIN record".into())),
        };
        self.check_begin(&begin)?;
        // Whatever is open lands first, so the trees compare as committed
        // (and a refusal of a clean pool writes nothing).
        if self.trees.read().is_dirty() {
            self.commit()?;
        }
        let (ds, state, started) = self.receive_target(target, &begin, opts.force)?;
        match self.apply_stream(ds, &mut rd, state, progress) {
            Ok(records) => Ok(ReceiveSummary {
                dataset: ds,
                snapshot: begin.name,
                incremental: begin.base_guid != 0,
                records,
                bytes: rd.bytes(),
            }),
            Err(e) if started && !opts.resumable => match self.receive_abort(target) {
                Ok(()) => Err(e),
                Err(f) => Err(FsError::Invalid(format!("{e}; undoing it failed too: {f}"))),
            },
            Err(e) => Err(e),
        }
    }

    /// The receive in progress into dataset `ds`, if any.
    pub fn receive_state(&self, ds: u64) -> Result<Option<RecvState>> {
        self.read_tree(ds, |tree| match tree.get(&keys::recv_state())? {
            Some(v) => Ok(Some(RecvState::decode(&v)?)),
            None => Ok(None),
        })
    }

    /// Undo the receive in progress into `target`: a new dataset is
    /// destroyed, an incremental target rolled back to its base.
    pub fn receive_abort(&self, target: &str) -> Result<()> {
        let ds = self.dataset_id(target)?;
        let Some(st) = self.receive_state(ds)? else {
            return Err(FsError::Invalid(format!(
                "no receive into {target:?} is in progress"
            )));
        };
        if !st.is_incremental() {
            return self.destroy_dataset(target);
        }
        let base = {
            let t = self.trees.read();
            t.snapshots.get(&st.base_id).map(|r| r.name.clone())
        };
        let base = base.ok_or_else(|| {
            FsError::Damaged(format!(
                "the base snapshot {} of the receive is gone",
                st.base_id
            ))
        })?;
        self.rollback_over_hidden(ds, &base)
    }

    /// Roll dataset `ds` back to its snapshot `base`, first deleting the
    /// hidden time travel snapshots taken after it (a window's points
    /// past the state the receive starts from; user snapshots after it
    /// still refuse the rollback).
    fn rollback_over_hidden(&self, ds: u64, base: &str) -> Result<()> {
        let hidden: Vec<String> = {
            let t = self.trees.read();
            let snaps = t.snapshots_of(ds);
            let base_txg = snaps
                .iter()
                .find(|(_, r)| r.name == base && !r.deleting)
                .map_or(u64::MAX, |(_, r)| r.txg);
            snaps
                .iter()
                .filter(|(_, r)| r.txg > base_txg && !r.deleting)
                .filter(|(_, r)| crate::time_travel::is_hidden(&r.name))
                .map(|(_, r)| r.name.clone())
                .collect()
        };
        for name in hidden {
            self.delete_snapshot(ds, &name, &mut |_| {})?;
        }
        self.rollback(ds, base)
    }

    fn check_begin(&self, b: &Begin) -> Result<()> {
        if b.block_size != self.pool.block_size() {
            return Err(FsError::Stream(format!(
                "sent from a pool of {}-byte blocks; this pool's are {} bytes",
                b.block_size,
                self.pool.block_size()
            )));
        }
        let unknown = DatasetMeta::unknown_features(b.features) | (b.features & FEATURE_RECEIVING);
        if unknown != 0 {
            return Err(FsError::Stream(format!(
                "the dataset uses features this build does not know ({unknown:#x})"
            )));
        }
        Ok(())
    }

    /// The dataset the stream goes into and its receive state; `true` if
    /// this call started the receive (so a failure undoes it).
    fn receive_target(
        &self,
        target: &str,
        b: &Begin,
        force: bool,
    ) -> Result<(u64, RecvState, bool)> {
        let Ok(ds) = self.dataset_id(target) else {
            if b.base_guid != 0 || !b.resume_after.is_empty() {
                return Err(FsError::Invalid(format!(
                    "no dataset {target:?}: an incremental or resumed stream goes onto the dataset holding its base"
                )));
            }
            return self.begin_full(target, b).map(|(ds, st)| (ds, st, true));
        };
        if let Some(st) = self.receive_state(ds)? {
            // The stream must start where the receive stands (a receive
            // that applied nothing yet goes on from a whole stream).
            let token = st.token();
            if (st.snapshot_guid, st.base_guid) != (b.snapshot_guid, b.base_guid)
                || st.last_key != b.resume_after
            {
                return Err(FsError::Invalid(format!(
                    "a receive into {target:?} is in progress: resume it with a stream from `aegisfs send -t {token}`, or run `aegisfs receive --abort`"
                )));
            }
            return Ok((ds, st, false));
        }
        if !b.resume_after.is_empty() {
            return Err(FsError::Invalid(format!(
                "a resumed stream, but no receive into {target:?} is in progress"
            )));
        }
        if b.base_guid == 0 {
            return Err(FsError::Invalid(format!(
                "dataset {target:?} exists; a full stream makes a new dataset"
            )));
        }
        let st = self.begin_incremental(ds, target, b, force)?;
        Ok((ds, st, true))
    }

    fn begin_full(&self, target: &str, b: &Begin) -> Result<(u64, RecvState)> {
        let st = RecvState {
            snapshot_guid: b.snapshot_guid,
            base_guid: 0,
            created_ns: b.created_ns,
            records: 0,
            base_id: 0,
            name: b.name.clone(),
            last_key: Vec::new(),
        };
        let ds = self.create_dataset(target, |id| {
            let mut t = self.trees.write();
            let tree = t.datasets.get_mut(&id).ok_or(FsError::NoDataset(id))?;
            tree.insert(&keys::meta(), &placeholder_meta().encode())?;
            tree.insert(&keys::recv_state(), &st.encode())?;
            Ok(())
        })?;
        Ok((ds, st))
    }

    fn begin_incremental(
        &self,
        ds: u64,
        target: &str,
        b: &Begin,
        force: bool,
    ) -> Result<RecvState> {
        let (base_id, base_name, changed) = {
            let t = self.trees.read();
            let (base_id, base_name) = incremental_base(&t, ds, target, b)?;
            if t.logs.contains_key(&ds) {
                return Err(FsError::Invalid(format!(
                    "dataset {target:?} is mounted; unmount it before a receive"
                )));
            }
            let live = t.tree(ds).ok_or(FsError::NoDataset(ds))?;
            let base = t.tree(base_id).ok_or(FsError::NoDataset(base_id))?;
            (base_id, base_name, changed_since(base, live)?)
        };
        if changed && !force {
            return Err(FsError::Invalid(format!(
                "dataset {target:?} changed since its snapshot {base_name:?}; receive with -F to roll it back first"
            )));
        }
        if changed {
            self.rollback_over_hidden(ds, &base_name)?;
        }
        let st = RecvState {
            snapshot_guid: b.snapshot_guid,
            base_guid: b.base_guid,
            created_ns: b.created_ns,
            records: 0,
            base_id,
            name: b.name.clone(),
            last_key: Vec::new(),
        };
        self.transact(ds, TxSize::ops(2, AllocClass::Normal), |tx| {
            tx.tree.insert(&keys::recv_state(), &st.encode())?;
            tx.meta.features |= FEATURE_RECEIVING;
            tx.meta_dirty = true;
            Ok::<_, FsError>(())
        })?;
        self.commit()?;
        Ok(st)
    }

    /// Apply the records after BEGIN, batch by batch; returns the count.
    fn apply_stream<R: Read>(
        &self,
        ds: u64,
        rd: &mut StreamReader<R>,
        mut st: RecvState,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64> {
        let mut batch = Vec::new();
        let mut batch_bytes = 0u64;
        let mut last = st.last_key.clone();
        let mut count = 0u64;
        loop {
            let rec = rd
                .next_record()?
                .ok_or_else(|| FsError::Stream("records after END".into()))?;
            let Some(key) = rec.key() else {
                // END: the reader checked its counts and the whole chain.
                self.apply_batch(ds, &mut st, std::mem::take(&mut batch))?;
                self.check_received(ds)?;
                self.finish_receive(ds, &st)?;
                return Ok(count);
            };
            if key <= last.as_slice() {
                return Err(FsError::Stream(format!("key {key:02x?} out of order")));
            }
            if st.records == 0 && batch.is_empty() && !st.is_incremental() && key != keys::meta() {
                return Err(FsError::Stream(
                    "a full stream starts with the meta record".into(),
                ));
            }
            last = key.to_vec();
            if let Record::Data { block: Some(b), .. } = &rec {
                batch_bytes += b.stored.len() as u64;
            }
            batch.push(rec);
            count += 1;
            let most = self
                .receive_batch
                .load(std::sync::atomic::Ordering::Relaxed);
            if batch.len() >= most || batch_bytes >= BATCH_BYTES {
                self.apply_batch(ds, &mut st, std::mem::take(&mut batch))?;
                batch_bytes = 0;
                progress(rd.bytes());
            }
        }
    }

    /// One batch of records and the receive state after them, in one
    /// change, then committed.
    fn apply_batch(&self, ds: u64, st: &mut RecvState, batch: Vec<Record>) -> Result<()> {
        let Some(last) = batch.last().and_then(|r| r.key()).map(|k| k.to_vec()) else {
            return Ok(());
        };
        let n = batch.len() as u64;
        let size = batch_size(&batch);
        let mut next = st.clone();
        next.records += n;
        next.last_key = last;
        self.transact(ds, size, |tx| {
            for rec in batch {
                apply_record(tx, rec)?;
            }
            tx.tree.insert(&keys::recv_state(), &next.encode())?;
            Ok::<_, FsError>(())
        })?;
        self.commit()?;
        *st = next;
        Ok(())
    }

    /// A stream whose records all verified may still come from a sender
    /// that was wrong (or forged): the dataset it built must keep every
    /// POSIX rule fsck checks (links, entries, records, the meta counts)
    /// before it becomes a snapshot. A scan of the tree's items, not of
    /// its data blocks.
    fn check_received(&self, ds: u64) -> Result<()> {
        let geometry = (self.pool.block_size(), self.pool.config().metadata_copies);
        let found = self.read_tree(ds, |tree| {
            crate::posix::check::check_tree(tree, geometry, 4)
        })?;
        match found {
            Some(f) if f.is_empty() => Ok(()),
            Some(f) => Err(FsError::Stream(format!(
                "the dataset it describes is inconsistent: {}",
                f.join("; ")
            ))),
            None => Err(FsError::Stream(
                "the dataset it describes has no meta record".into(),
            )),
        }
    }

    /// The commit that ends the receive: the state goes, the dataset may
    /// be mounted again, and the snapshot is taken, all in one txg.
    fn finish_receive(&self, ds: u64, st: &RecvState) -> Result<()> {
        let prepare = |t: &mut Trees| -> Result<()> {
            let tree = t.datasets.get_mut(&ds).ok_or(FsError::NoDataset(ds))?;
            let mut meta = read_meta(tree, ds)?;
            meta.features &= !FEATURE_RECEIVING;
            tree.insert(&keys::meta(), &meta.encode())?;
            tree.remove(&keys::recv_state())?;
            // The received items hold the usage; a table loaded before
            // (none should be: the dataset is not mounted) goes.
            t.quotas.remove(&ds);
            Ok(())
        };
        self.snapshot_with(ds, &st.name, st.created_ns, Some(st.snapshot_guid), prepare)?;
        Ok(())
    }
}

/// What a new dataset holds until the stream's meta record arrives.
fn placeholder_meta() -> DatasetMeta {
    DatasetMeta {
        compression: aegis_pool::Compression::None,
        record_size: DEFAULT_RECORD_SIZE,
        next_ino: 2,
        inodes: 0,
        features: FEATURE_RECEIVING,
        reserved: 0,
    }
}

/// The id and name of `ds`'s snapshot that is the stream's base, which
/// must be its newest; and no snapshot may have the stream's name.
fn incremental_base(t: &Trees, ds: u64, target: &str, b: &Begin) -> Result<(u64, String)> {
    // A time travel window's hidden snapshots are not bases: one newer
    // than the base means the dataset changed, which the caller checks.
    let snaps: Vec<_> = t
        .snapshots_of(ds)
        .into_iter()
        .filter(|(_, r)| !r.deleting && !crate::time_travel::is_hidden(&r.name))
        .collect();
    if snaps.iter().any(|(_, r)| r.name == b.name) {
        return Err(FsError::Invalid(format!(
            "dataset {target:?} has a snapshot named {:?} already",
            b.name
        )));
    }
    let Some(pos) = snaps.iter().position(|(_, r)| r.guid() == b.base_guid) else {
        return Err(FsError::Invalid(format!(
            "dataset {target:?} has no snapshot that is the stream's base (guid {:016x}); receive the base first",
            b.base_guid
        )));
    };
    let (id, rec) = snaps[pos];
    if let Some((_, newest)) = snaps.last().filter(|_| pos + 1 != snaps.len()) {
        return Err(FsError::Invalid(format!(
            "the stream's base {:?} is not the newest snapshot of {target:?} ({:?} is); delete the newer ones first",
            rec.name, newest.name
        )));
    }
    Ok((id, rec.name.clone()))
}

/// Does `live` hold anything its newest snapshot `base` does not, other
/// than this pool's own items (the log's ring, schedules)? A log head
/// counts: it names changes not yet replayed.
fn changed_since(base: &aegis_btree::Tree, live: &aegis_btree::Tree) -> Result<bool> {
    let (old, new) = differing_items(base, live)?;
    let own = |k: &[u8]| {
        k.len() >= 9
            && k[..8] == META_OBJECT.to_be_bytes()
            && matches!(k[8], keys::LOG_RING | keys::SCHEDULE | keys::TIMETRAVEL)
    };
    Ok(old.keys().chain(new.keys()).any(|k| !own(k)))
}

/// The space check of one batch: its items, which rise in key order and
/// so fill leaves one after another (a run, not one path each), its
/// blocks, and what its preallocated records hold back; and the few
/// operations elsewhere (the receive state, the meta record).
fn batch_size(batch: &[Record]) -> TxSize {
    let mut size = TxSize::ops(4, AllocClass::Normal);
    for rec in batch {
        size.run_bytes += rec.key().map_or(0, |k| k.len() as u64) + 96;
        match rec {
            Record::Put { value, .. } => size.run_bytes += value.len() as u64,
            Record::Data { len, block, .. } => {
                size.data_bytes += block
                    .as_ref()
                    .map_or(*len as u64, |b| b.stored.len() as u64);
            }
            _ => {}
        }
    }
    size
}

fn not_base(key: &[u8]) -> FsError {
    FsError::Stream(format!(
        "it removes item {key:02x?}, which the dataset does not hold: the stream is not for this base"
    ))
}

/// May a stream carry an item with this key? Only the contents of a
/// dataset: its meta record, orphans, and the items of its objects.
fn check_key(key: &[u8]) -> Result<u8> {
    let item = key.get(8).copied().filter(|_| key.len() >= 9);
    let obj = key
        .get(..8)
        .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")));
    let ok = match (obj, item) {
        (Some(META_OBJECT), Some(keys::META)) => key.len() == 9,
        (Some(META_OBJECT), Some(keys::ORPHAN)) => keys::parse_orphan(key).is_some(),
        (Some(META_OBJECT), _) | (None, _) | (_, None) => false,
        (Some(_), Some(i)) => (keys::INODE..=keys::POLICY).contains(&i),
    };
    match (ok, item) {
        (true, Some(i)) => Ok(i),
        _ => Err(FsError::Stream(format!(
            "item {key:02x?} is not one a stream may carry"
        ))),
    }
}

fn apply_record(tx: &mut Tx<'_>, rec: Record) -> Result<()> {
    match rec {
        Record::Put { key, value } => put_item(tx, &key, value),
        Record::Data {
            key,
            len,
            prealloc,
            block,
        } => {
            if check_key(&key)? != keys::DATA {
                return Err(FsError::Stream("a data record under another key".into()));
            }
            let bp = match block {
                Some(b) => {
                    let props = data_props(tx, AllocClass::Normal);
                    let bp = tx.pool_ref().write_stored(b.stored, b.form, &props)?;
                    tx.written.push(bp.clone());
                    Some(bp)
                }
                None => None,
            };
            let rec = match (prealloc, bp) {
                (true, data) => FileRecord::Prealloc { len, data },
                (false, Some(bp)) => FileRecord::Block { len, bp },
                (false, None) => {
                    return Err(FsError::Stream("a data record without its block".into()))
                }
            };
            set_record(tx, &key, Some(rec))
        }
        Record::Del { key } => match check_key(&key)? {
            keys::META if key.len() == 9 && key[..8] == META_OBJECT.to_be_bytes() => {
                Err(FsError::Stream("it removes the meta record".into()))
            }
            keys::DATA => set_record(tx, &key, None),
            _ => tx
                .tree
                .remove(&key)?
                .map(|_| ())
                .ok_or_else(|| not_base(&key)),
        },
        Record::Begin(_) | Record::End { .. } => {
            Err(FsError::Stream("BEGIN or END among the items".into()))
        }
    }
}

fn put_item(tx: &mut Tx<'_>, key: &[u8], value: Vec<u8>) -> Result<()> {
    let item = check_key(key)?;
    if key == keys::meta() {
        let m = DatasetMeta::decode(&value)?;
        let reserved = tx.meta.reserved;
        let mut features = m.features | FEATURE_RECEIVING;
        if reserved > 0 {
            features |= FEATURE_PREALLOC;
        }
        tx.meta = DatasetMeta {
            features,
            reserved,
            ..m
        };
        tx.meta_dirty = true;
        return Ok(());
    }
    match item {
        keys::DATA => match FileRecord::decode(&value)? {
            rec @ FileRecord::Inline(_) => return set_record(tx, key, Some(rec)),
            _ => {
                return Err(FsError::Stream(
                    "a block record sent as a plain item".into(),
                ))
            }
        },
        keys::INODE => {
            InodeRecord::decode(&value)?;
        }
        _ => {}
    }
    tx.tree.insert(key, &value)?;
    Ok(())
}

/// Put (or with `None` remove) file record `key`, keeping the dataset's
/// reservations and freeing the block of the record it replaces.
fn set_record(tx: &mut Tx<'_>, key: &[u8], new: Option<FileRecord>) -> Result<()> {
    let rule = tx.meta.share_rule(
        tx.pool_ref().block_size(),
        tx.pool_ref().config().metadata_copies,
    );
    let old = match &new {
        Some(r) => tx.tree.insert(key, &r.encode())?,
        None => tx.tree.remove(key)?.ok_or_else(|| not_base(key))?.into(),
    };
    let mut reserved = tx.meta.reserved;
    if let Some(old) = old {
        let old = FileRecord::decode(&old)?;
        reserved = reserved.checked_sub(old.reserved(rule)).ok_or_else(|| {
            FsError::Damaged("the dataset's reservations are less than its records'".into())
        })?;
        match old {
            FileRecord::Block { bp, .. } | FileRecord::Prealloc { data: Some(bp), .. } => {
                tx.to_free.push(bp)
            }
            _ => {}
        }
    }
    if let Some(rec @ FileRecord::Prealloc { .. }) = &new {
        reserved += rec.reserved(rule);
        tx.meta.features |= FEATURE_PREALLOC;
    }
    if reserved != tx.meta.reserved {
        tx.meta.reserved = reserved;
        tx.meta_dirty = true;
    }
    Ok(())
}
