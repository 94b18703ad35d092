//! The `recordsize` property of a file or directory, as ZFS's: set and
//! read through the xattr [`RECORDSIZE_XATTR`] that this filesystem
//! answers itself (`aegisfs set recordsize=64K PATH`, or `setfattr`), and
//! the record size each data operation works with.
//!
//! Values are a power of two from 4K to 1M, written `4096`, `16K` or
//! `1M` (K and M binary, either case); read back as `16K` or `1M`. A
//! directory's value is inherited by the files and directories made in it
//! later (`namespace.rs`); a file's value shapes its records, and may
//! change only while the file holds at most one record no longer than the
//! new size (the engine's rule, `aegis_fs::posix::record_size`); later it
//! is EBUSY and the file is left as it was. Each change is logged as its
//! setxattr, whose replay re-runs it.

use aegis_fs::intent_log::LogRec;
use aegis_fs::posix::record_shift_of;
use aegis_fs::{AllocClass, ObjectRead};
use aegis_vfs::*;

use crate::diskfs::*;
use crate::RECORDSIZE_XATTR;

const BAD_VALUE: FsError =
    FsError::InvalidArgument("record size is a power of two from 4K to 1M (4096, 16K, 1M)");

/// `value` as a record size in bytes: decimal digits with an optional `K`
/// or `M` (binary), a trailing newline or NUL allowed (as `setfattr`
/// may send).
pub(crate) fn parse_record_size(value: &[u8]) -> Result<u64> {
    let text = std::str::from_utf8(value).map_err(|_| BAD_VALUE)?;
    let text = text.trim_end_matches(['\n', '\0']);
    let (digits, unit) = match text.as_bytes().last() {
        Some(b'k' | b'K') => (&text[..text.len() - 1], 1u64 << 10),
        Some(b'm' | b'M') => (&text[..text.len() - 1], 1u64 << 20),
        _ => (text, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BAD_VALUE);
    }
    let bytes = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or(BAD_VALUE)?;
    record_shift_of(bytes).map(|_| bytes).ok_or(BAD_VALUE)
}

/// `bytes` (a valid record size) as it reads back: `16K`, `1M`.
pub(crate) fn format_record_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{}M", b >> 20),
        b => format!("{}K", b >> 10),
    }
}

impl DiskFs {
    /// The record size of `ino` in bytes: its own, or the dataset's.
    pub fn record_size_of(&self, ino: Ino) -> Result<u64> {
        Ok(self.inode(ino)?.record_size_bytes(self.dataset_record_size))
    }

    /// `(offset, length)` of each stored record of file `ino`, in order
    /// (data written since the last commit is listed once committed):
    /// how a file is laid out, for tools and tests.
    pub fn file_records(&self, ino: Ino) -> Result<Vec<(u64, u32)>> {
        self.view(|t| Ok(t.file_records(ino)?))
    }

    /// getxattr of [`RECORDSIZE_XATTR`].
    pub(crate) fn get_record_size(&self, ino: Ino) -> Result<Vec<u8>> {
        let r = self.inode(ino)?;
        if !(r.is_reg() || r.is_dir()) {
            return Err(FsError::NoData);
        }
        let bytes = r.record_size_bytes(self.dataset_record_size);
        Ok(format_record_size(bytes).into_bytes())
    }

    /// setxattr of [`RECORDSIZE_XATTR`]: the record size of a file or
    /// directory; EINVAL for a bad value, EBUSY for a file whose records
    /// cannot take it, EPERM on other kinds. Nothing changes on error.
    pub(crate) fn set_record_size(&self, ino: Ino, value: &[u8]) -> Result<()> {
        let bytes = parse_record_size(value)?;
        // Writes size their pieces by the record size before their
        // transaction: none may run while it changes.
        let _st = self.state.lock();
        let _file = self.files.lock(ino);
        let size = aegis_fs::TxSize {
            ops: 3,
            run_bytes: 0,
            // A dirty first record is stored: its block was reserved.
            data_bytes: 0,
            class: AllocClass::Normal,
        };
        self.tx_sized(size, |tx| {
            let mut r = tx.inode(ino)?;
            if !(r.is_reg() || r.is_dir()) {
                return Err(FsError::NotPermitted.into());
            }
            if r.is_reg() && !tx.record_size_fits(ino, &mut r, bytes)? {
                return Err(FsError::Busy.into());
            }
            tx.set_record_size(&mut r, bytes)?;
            r.ctime = tx.now;
            tx.put_inode(ino, &r)?;
            tx.log(LogRec::SetXattr {
                ino,
                name: RECORDSIZE_XATTR.to_vec(),
                value: format_record_size(bytes).into_bytes(),
                flags: 0,
            });
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_and_print() {
        for (text, bytes) in [
            ("4096", 4096u64),
            ("4K", 4096),
            ("16k", 16 << 10),
            ("128K", 128 << 10),
            ("1M", 1 << 20),
            ("1024K\n", 1 << 20),
            ("65536\0", 64 << 10),
        ] {
            assert_eq!(parse_record_size(text.as_bytes()), Ok(bytes), "{text}");
        }
        for bad in [
            "",
            "K",
            "abc",
            "3K",
            "2M",
            "2K",
            "0",
            "6000",
            "-4K",
            "4 K",
            "4KB",
            "1G",
            "99999999999999999999K",
            "1.5M",
        ] {
            assert_eq!(parse_record_size(bad.as_bytes()), Err(BAD_VALUE), "{bad}");
        }
        assert_eq!(parse_record_size(&[0xff, b'K']), Err(BAD_VALUE));
        assert_eq!(format_record_size(4096), "4K");
        assert_eq!(format_record_size(128 << 10), "128K");
        assert_eq!(format_record_size(1 << 20), "1M");
    }
}
