//! Gang blocks in the pipeline: writing a block in pieces when no free
//! extent holds it whole, reading the pieces back joined, freeing them,
//! and listing them for fsck (see `gang_header.rs` for the format).
//!
//! Only single-copy blocks longer than one block gang (data records): a
//! block of one block fits any free block, and the metadata that has
//! ditto copies is always one block long. A pool without the `gang`
//! feature never gangs; it gets ENOSPC as before. A gang block has one
//! copy, so a damaged piece is reported, not healed.

use std::sync::Arc;

use super::Pool;
use crate::allocator::{AllocClass, Extent};
use crate::blkptr::BlockPtr;
use crate::error::{PoolError, Result};
use crate::features::INCOMPAT_GANG;
use crate::gang_header::{max_pieces, GangHeader};
use crate::write_behind::Buffered;

impl Pool {
    /// Does this pool have the `gang` feature?
    pub(super) fn gangs(&self) -> bool {
        self.config.features.incompat & INCOMPAT_GANG != 0
    }

    /// May a block of `stored` bytes with `copies` copies that found no
    /// free extent go in pieces?
    pub(super) fn may_gang(&self, stored: usize, copies: usize) -> bool {
        self.gangs() && copies == 1 && stored > self.config.block_size as usize
    }

    /// Allocate the pieces and the header of a gang block for `stored`,
    /// and buffer them for the commit. Returns the header's extent.
    pub(super) fn place_gang(
        &self,
        stored: &[u8],
        checksum: [u8; 32],
        logical: &[u8],
        class: AllocClass,
    ) -> Result<Extent> {
        let bs = self.config.block_size;
        let (header, pieces) = {
            let mut a = self.alloc.lock();
            let pieces = a.alloc_pieces(stored.len() as u64, max_pieces(bs), class)?;
            match a.alloc(bs as u64, 1, class) {
                Ok(h) => (h[0], pieces),
                Err(e) => {
                    let txg = self.open_txg();
                    for p in pieces {
                        let _ = a.free(p, txg, true);
                    }
                    return Err(e);
                }
            }
        };
        let mut wb = self.behind.lock();
        let mut at = 0usize;
        for p in &pieces {
            let end = (at + p.len as usize).min(stored.len());
            let mut bytes = stored[at..end].to_vec();
            bytes.resize(p.len as usize, 0);
            wb.insert(
                p.device,
                p.offset,
                Buffered {
                    checksum: self.config.checksum.compute(&bytes),
                    stored: Arc::new(bytes),
                    logical: None,
                },
            );
            at = end;
        }
        // The header's entry carries the whole block's checksum and its
        // logical bytes, so a read of this txg finds them as for any block.
        let head = GangHeader {
            block_checksum: checksum,
            pieces,
        }
        .encode(bs);
        wb.insert(
            header.device,
            header.offset,
            Buffered {
                stored: Arc::new(head),
                checksum,
                logical: Some(Arc::new(logical.to_vec())),
            },
        );
        Ok(header)
    }

    /// The header of gang block `bp`, from the write-behind buffer or the
    /// device, checked.
    fn gang_header(&self, bp: &BlockPtr) -> Result<GangHeader> {
        let bs = self.config.block_size;
        let a = bp.addrs[0];
        let bytes = match self.behind.lock().get(a.device, a.offset) {
            Some(b) => b.stored.to_vec(),
            None => {
                let mut buf = vec![0u8; bs as usize];
                self.devices[a.device as usize].read_at(&mut buf, a.offset)?;
                buf
            }
        };
        let h = GangHeader::decode(&bytes, bs)?;
        if h.block_checksum != bp.checksum {
            return Err(PoolError::corrupt(
                "gang header",
                format!("belongs to another block than {}", bp.describe()),
            ));
        }
        let want = bp.allocated_size(bs) - bs as u64;
        if h.len() != want {
            return Err(PoolError::corrupt(
                "gang header",
                format!("pieces hold {} bytes, the block {want}", h.len()),
            ));
        }
        for p in &h.pieces {
            self.check_extent(p)?;
        }
        Ok(h)
    }

    /// The stored bytes of gang block `bp`, joined from its pieces (not
    /// yet checked against `bp`'s checksum).
    pub(super) fn read_gang(&self, bp: &BlockPtr) -> std::result::Result<Vec<u8>, String> {
        let h = self.gang_header(bp).map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(h.len() as usize);
        for p in &h.pieces {
            let buffered = self.behind.lock().get(p.device, p.offset);
            match buffered {
                // A header names any address: a buffered block there may
                // be another, shorter one.
                Some(b) => match b.stored.get(..p.len as usize) {
                    Some(bytes) => out.extend_from_slice(bytes),
                    None => return Err("gang piece shorter than its header says".into()),
                },
                None => {
                    let mut buf = vec![0u8; p.len as usize];
                    self.devices[p.device as usize]
                        .read_at(&mut buf, p.offset)
                        .map_err(|e| format!("read error in a gang piece: {e}"))?;
                    out.extend_from_slice(&buf);
                }
            }
        }
        out.truncate(bp.physical_size as usize);
        Ok(out)
    }

    /// Every extent `bp` occupies: each copy's, and for a gang block its
    /// header's and its pieces' (fsck claims them; a free gives them back).
    pub fn extents_of(&self, bp: &BlockPtr) -> Result<Vec<Extent>> {
        let len = bp.copy_size(self.config.block_size);
        let mut out: Vec<Extent> = bp
            .addrs
            .iter()
            .map(|a| Extent {
                device: a.device,
                offset: a.offset,
                len,
            })
            .collect();
        if bp.gang {
            out.extend(self.gang_header(bp)?.pieces);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use aegis_block::{DeviceRef, MemDevice};

    use super::*;
    use crate::blkptr::BlockType;
    use crate::checksum::ChecksumType;
    use crate::compression::Compression;
    use crate::pool::{CreateOptions, OpenOptions, WriteProps};
    use crate::tree_root::TreeRoot;

    fn props(class: AllocClass) -> WriteProps {
        WriteProps {
            block_type: BlockType::Data,
            level: 0,
            copies: 1,
            checksum: ChecksumType::Blake3,
            compression: Compression::None,
            class,
        }
    }

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        use rand::{Rng, SeedableRng};
        let mut b = vec![0u8; len];
        rand::rngs::StdRng::seed_from_u64(seed).fill(&mut b[..]);
        b
    }

    /// A pool whose free space is in single 4 KiB holes but for less than
    /// 192 KiB: filled with one-block writes, then every other one freed
    /// and the frees let out of their deferral.
    fn fragmented() -> (Vec<DeviceRef>, Pool) {
        let devs: Vec<DeviceRef> = vec![Arc::new(MemDevice::new(16 << 20))];
        let pool = Pool::create(devs.clone(), &CreateOptions::default()).unwrap();
        let mut blocks = Vec::new();
        // Halve the free space, commit, again: each commit's own blocks
        // fit what is left, and under 192 KiB remain in one piece.
        while pool.space().free > 192 << 10 {
            let goal = pool.space().free / 2;
            while pool.space().free > goal {
                let n = blocks.len() as u64;
                let bp = pool.write_block(&noise(4096, n), &props(AllocClass::Reserved));
                blocks.push(bp.unwrap());
            }
            pool.commit(&TreeRoot::default()).unwrap();
        }
        // Free in small batches: each commit records its frees in what
        // the frees before it gave back.
        let every_other: Vec<_> = blocks.iter().step_by(2).collect();
        for batch in every_other.chunks(32) {
            for bp in batch {
                pool.free(bp).unwrap();
            }
            pool.commit(&TreeRoot::default()).unwrap();
        }
        for _ in 0..3 {
            pool.commit(&TreeRoot::default()).unwrap();
        }
        (devs, pool)
    }

    #[test]
    fn a_block_no_hole_holds_goes_in_pieces_and_reads_back() {
        let (devs, pool) = fragmented();
        let free_before = pool.space().free;
        const LEN: u64 = 256 << 10;
        let data = noise(LEN as usize, 99);
        let bp = pool.write_block(&data, &props(AllocClass::Normal)).unwrap();
        assert!(bp.gang, "no free extent holds 256 KiB: the block must gang");
        let extents = pool.extents_of(&bp).unwrap();
        let pieces = &extents[1..];
        assert!(pieces.len() > 1 && pieces.iter().map(|p| p.len).sum::<u64>() == LEN);
        let mut all = extents.clone();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), extents.len(), "no extent twice");
        assert_eq!(pool.space().free, free_before - LEN - 4096);
        assert_eq!(bp.allocated_size(4096), LEN + 4096);
        // From the write-behind buffer, after the commit, after a reopen.
        assert_eq!(pool.read_block(&bp).unwrap(), data);
        pool.commit(&TreeRoot::default()).unwrap();
        assert_eq!(pool.read_block(&bp).unwrap(), data);
        let enc = bp.encode();
        assert_eq!(enc[2], 2, "layout byte: gang");
        assert_eq!(crate::blkptr::BlockPtr::decode_slice(&enc).unwrap(), bp);
        drop(pool);
        let (pool, _) = Pool::open(devs.clone(), &OpenOptions::default()).unwrap();
        assert_eq!(pool.read_block(&bp).unwrap(), data);
        let check = pool.check_copies(&bp, false).unwrap();
        assert_eq!(check.data.as_deref(), Some(&data[..]));
        // A damaged piece fails the whole block's checksum.
        let p = *extents.last().unwrap();
        devs[0].write_at(&[0xa5; 16], p.offset + 100).unwrap();
        assert!(matches!(
            pool.read_block(&bp),
            Err(PoolError::Checksum { .. })
        ));
        // Freeing gives back the header and every piece.
        let free = pool.space().free + pool.space().deferred;
        pool.free(&bp).unwrap();
        assert_eq!(pool.space().free + pool.space().deferred, free + LEN + 4096);
    }

    #[test]
    fn a_damaged_header_is_an_error_not_a_panic() {
        let (devs, pool) = fragmented();
        let bp = pool
            .write_block(&noise(256 << 10, 1), &props(AllocClass::Normal))
            .unwrap();
        pool.commit(&TreeRoot::default()).unwrap();
        assert!(bp.gang);
        let h = bp.addrs[0];
        // Intact, but another block's (as a lost write would leave): its
        // table must not be acted on, a free above all.
        let mut head = vec![0u8; 4096];
        devs[0].read_at(&mut head, h.offset).unwrap();
        let mut other = GangHeader::decode(&head, 4096).unwrap();
        other.block_checksum[0] ^= 1;
        devs[0].write_at(&other.encode(4096), h.offset).unwrap();
        assert!(pool.read_block(&bp).is_err());
        assert!(pool.extents_of(&bp).is_err());
        assert!(pool.free(&bp).is_err());
        // Damaged.
        devs[0].write_at(&[0xff; 8], h.offset + 4).unwrap();
        assert!(pool.read_block(&bp).is_err());
        assert!(pool.extents_of(&bp).is_err());
        assert!(pool.free(&bp).is_err());
    }

    #[test]
    fn single_blocks_and_ditto_blocks_never_gang() {
        let (_devs, pool) = fragmented();
        let one = pool
            .write_block(&noise(4096, 5), &props(AllocClass::Normal))
            .unwrap();
        assert!(!one.gang);
        let mut two = props(AllocClass::Normal);
        two.copies = 2;
        assert!(matches!(
            pool.write_block(&noise(256 << 10, 6), &two),
            Err(PoolError::NoSpace { .. })
        ));
    }
}
