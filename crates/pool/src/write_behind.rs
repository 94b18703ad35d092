//! Blocks written in the open txg but not yet sent to their devices.
//!
//! `Pool::write_block` leaves each new copy here; the commit writes them
//! all just before its first flush, which is the first moment any of them
//! has to be on the device. So a file record rewritten by many small
//! writes within one txg reaches the device once, a block freed in the
//! txg that made it never does, and no writeback of such short-lived
//! blocks competes with the intent log's durable writes between commits.
//! Reads of a buffered copy are served from here.
//!
//! Invariants: an entry is a whole copy (zero padded to whole blocks) of a
//! block born in the open txg, keyed by its (device, offset); freeing the
//! block drops it; past `limit` bytes everything is written out (as
//! before the buffer existed, to bound memory), and an entry leaves only
//! once its device accepted it, so a failed write-out loses nothing the
//! next commit could still write.

use std::collections::BTreeMap;
use std::sync::Arc;

use aegis_block::DeviceRef;

use crate::error::Result;

/// What the buffer holds at most before it writes itself out.
pub const WRITE_BEHIND_LIMIT: u64 = 32 << 20;

pub(crate) struct WriteBehind {
    blocks: BTreeMap<(u32, u64), Arc<Vec<u8>>>,
    bytes: u64,
    /// Past this many bytes, the pool writes everything out.
    pub limit: u64,
}

impl Default for WriteBehind {
    fn default() -> Self {
        WriteBehind {
            blocks: BTreeMap::new(),
            bytes: 0,
            limit: WRITE_BEHIND_LIMIT,
        }
    }
}

impl WriteBehind {
    pub fn insert(&mut self, device: u32, offset: u64, data: Arc<Vec<u8>>) {
        self.bytes += data.len() as u64;
        if let Some(old) = self.blocks.insert((device, offset), data) {
            // Only a self-heal of a buffered copy rewrites one in place.
            self.bytes -= old.len() as u64;
        }
    }

    /// The buffered copy at (device, offset), if any.
    pub fn get(&self, device: u32, offset: u64) -> Option<Arc<Vec<u8>>> {
        self.blocks.get(&(device, offset)).cloned()
    }

    /// The copy at (device, offset) is freed: it need never be written.
    pub fn drop_copy(&mut self, device: u32, offset: u64) {
        if let Some(old) = self.blocks.remove(&(device, offset)) {
            self.bytes -= old.len() as u64;
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Write every entry to its device, in device order (sequential where
    /// the allocator placed blocks together). Entries written leave; on an
    /// error the rest stay for the next try.
    pub fn write_out(&mut self, devices: &[DeviceRef]) -> Result<()> {
        while let Some((&(dev, off), data)) = self.blocks.first_key_value() {
            devices[dev as usize].write_at(data, off)?;
            self.bytes -= data.len() as u64;
            self.blocks.pop_first();
        }
        debug_assert_eq!(self.bytes, 0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aegis_block::{BlockDevice, MemDevice};

    #[test]
    fn freed_copies_are_never_written_and_the_rest_are() {
        let dev = Arc::new(MemDevice::new(1 << 20));
        let mut wb = WriteBehind::default();
        wb.insert(0, 4096, Arc::new(vec![1; 4096]));
        wb.insert(0, 8192, Arc::new(vec![2; 8192]));
        assert_eq!(wb.bytes(), 12288);
        assert_eq!(wb.get(0, 4096).unwrap()[0], 1);
        wb.drop_copy(0, 8192);
        assert_eq!(wb.bytes(), 4096);
        wb.write_out(&[dev.clone() as DeviceRef]).unwrap();
        assert_eq!(wb.bytes(), 0);
        assert!(wb.get(0, 4096).is_none());
        let mut b = vec![0u8; 4096];
        dev.read_at(&mut b, 4096).unwrap();
        assert_eq!(b, vec![1; 4096]);
        dev.read_at(&mut b, 8192).unwrap();
        assert_eq!(b, vec![0; 4096], "a freed copy never reaches the device");
    }
}
