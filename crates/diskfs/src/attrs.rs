//! The intent log policy of a file or directory, set through its xattr.

use aegis_fs::intent_log::{LogPolicy, LogRec};
use aegis_fs::{AllocClass, ObjectRead};
use aegis_vfs::*;

use crate::diskfs::*;
use crate::POLICY_XATTR;

impl DiskFs {
    /// Set the intent log policy of a file or directory (`full`,
    /// `metadata`, `none`); logged like any change.
    pub(crate) fn set_policy(&self, ino: Ino, value: &[u8]) -> Result<()> {
        let p = std::str::from_utf8(value)
            .ok()
            .and_then(|v| LogPolicy::parse(v.trim_end_matches(['\n', '\0'])))
            .ok_or(FsError::InvalidArgument(
                "logging policy is full, metadata or none",
            ))?;
        let mut st = self.state.lock();
        self.tx(&mut st.meta, 2, AllocClass::Normal, |tx| {
            let mut r = tx.inode(ino)?;
            if !(r.is_reg() || r.is_dir()) {
                return Err(FsError::NotPermitted.into());
            }
            tx.set_log_policy(ino, p)?;
            r.ctime = tx.now;
            tx.put_inode(ino, &r)?;
            tx.log(LogRec::SetXattr {
                ino,
                name: POLICY_XATTR.to_vec(),
                value: p.name().as_bytes().to_vec(),
                flags: 0,
            });
            Ok(())
        })
    }
}
