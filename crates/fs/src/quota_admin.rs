//! Quotas at the store: the in-memory usage tables of the datasets that
//! keep quotas, the check a change passes before it stands, and the
//! commands that set and list limits (`posix/quota.rs` has the items and
//! the rules).
//!
//! A table is loaded from its dataset's items on first use and written
//! back, entries changed only, when the txg closes; anything that swaps a
//! dataset's tree (rollback, receive, destroy) drops the table, so the
//! next use reads the new tree's items. Enforcement can be turned off per
//! dataset while its intent log replays: the changes replayed were
//! allowed once, and must come back whole.

use crate::error::{FsError, Result};
use crate::posix::quota::{Deltas, QuotaEntry, QuotaId, QuotaTable};
use crate::posix::{keys, DatasetMeta, FEATURE_QUOTA};
use crate::store::{Store, Trees};
use crate::tx::TxSize;
use aegis_pool::AllocClass;

impl Trees {
    /// Dataset `ds`'s table, loaded if need be.
    pub(crate) fn quota_table(&mut self, ds: u64) -> Result<&mut QuotaTable> {
        if !self.quotas.contains_key(&ds) {
            let tree = self.datasets.get(&ds).ok_or(FsError::NoDataset(ds))?;
            self.quotas.insert(ds, QuotaTable::load(tree)?);
        }
        Ok(self.quotas.get_mut(&ds).expect("just inserted"))
    }

    /// A change of `ds` stood: its usage deltas go into the table.
    pub(crate) fn apply_quota(&mut self, ds: u64, d: &Deltas) -> Result<()> {
        if !d.is_empty() {
            self.quota_table(ds)?.apply(d);
        }
        Ok(())
    }

    /// Write every table's changed entries into its tree (closing txg).
    pub(crate) fn write_quotas(&mut self) -> Result<()> {
        for (ds, table) in self.quotas.iter_mut() {
            if let Some(tree) = self.datasets.get_mut(ds) {
                table.write_dirty(tree)?;
            }
        }
        Ok(())
    }
}

impl Store {
    /// EDQUOT for a change whose deltas would take a (kind, id) past its
    /// limit, unless enforcement is off for the dataset.
    pub(crate) fn quota_allows(&self, t: &mut Trees, ds: u64, d: &Deltas) -> Result<()> {
        if d.is_empty() {
            return Ok(());
        }
        match t.quota_table(ds)?.refuses(d) {
            Some(_) if self.quota_relaxed.lock().contains(&ds) => Ok(()),
            Some(q) => Err(FsError::QuotaExceeded(q.describe())),
            None => Ok(()),
        }
    }

    /// Turn quota enforcement of dataset `ds` off (`false`: a replay of
    /// its intent log) or on again. Usage is kept either way.
    pub fn set_quota_enforced(&self, ds: u64, on: bool) {
        let mut relaxed = self.quota_relaxed.lock();
        match on {
            true => relaxed.remove(&ds),
            false => relaxed.insert(ds),
        };
    }

    /// Set `q`'s limits in dataset `ds` (0: none), committed. The first
    /// limit of a dataset counts the usage of every inode and sets its
    /// `quota` feature. Returns the entry as it now stands.
    pub fn set_quota(&self, ds: u64, q: QuotaId, bytes: u64, inodes: u64) -> Result<QuotaEntry> {
        if self.is_read_only() {
            return Err(FsError::Pool(aegis_pool::PoolError::ReadOnly));
        }
        let entry = {
            let mut t = self.trees.write();
            self.check_space(&t, ds, TxSize::ops(4, AllocClass::Normal))?;
            let tree = t.datasets.get_mut(&ds).ok_or(FsError::NoDataset(ds))?;
            let mut meta = read_meta(tree)?;
            if meta.features & FEATURE_QUOTA == 0 {
                let mut table = QuotaTable::count(tree)?;
                table.mark_all_dirty();
                meta.features |= FEATURE_QUOTA;
                tree.insert(&keys::meta(), &meta.encode())?;
                t.quotas.insert(ds, table);
            }
            let table = t.quota_table(ds)?;
            table.set_limits(q, bytes, inodes);
            table.get(q)
        };
        self.commit()?;
        Ok(entry)
    }

    /// Test hook: record `used_bytes` as `q`'s usage, committed, so a
    /// test can check that fsck sees usage that is wrong.
    #[doc(hidden)]
    pub fn set_quota_usage_for_test(&self, ds: u64, q: QuotaId, used_bytes: u64) -> Result<()> {
        {
            let mut t = self.trees.write();
            let table = t.quota_table(ds)?;
            let have = table.get(q).used_bytes as i64;
            let mut d = Deltas::new();
            d.add(q, used_bytes as i64 - have, 0);
            table.apply(&d);
        }
        self.commit().map(|_| ())
    }

    /// Every user, group and dataset entry of `ds` (none without quotas).
    pub fn quotas(&self, ds: u64) -> Result<Vec<(QuotaId, QuotaEntry)>> {
        let mut t = self.trees.write();
        let tree = t.tree(ds).ok_or(FsError::NoDataset(ds))?;
        if read_meta(tree)?.features & FEATURE_QUOTA == 0 {
            return Ok(Vec::new());
        }
        if !t.datasets.contains_key(&ds) {
            // A snapshot: its items as they were.
            let tree = t.tree(ds).ok_or(FsError::NoDataset(ds))?;
            return Ok(QuotaTable::load(tree)?.entries().collect());
        }
        Ok(t.quota_table(ds)?.entries().collect())
    }
}

fn read_meta(tree: &aegis_btree::Tree) -> Result<DatasetMeta> {
    match tree.get(&keys::meta())? {
        Some(v) => DatasetMeta::decode(&v),
        None => Err(FsError::Invalid("the dataset holds no filesystem".into())),
    }
}
