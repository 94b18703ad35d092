//! [`GatedDevice`]: a pass-through that can be shut, after which no write,
//! flush or discard reaches the device underneath.
//!
//! This is how a filesystem is stopped the way crash tests stop it
//! (`FS_IOC_SHUTDOWN`): whatever the layers above still try — a background
//! commit, an intent log write already on its way — fails with
//! [`BlockError::ShutDown`], so the device holds exactly what was durable
//! at that moment. Reads still pass (the layers above refuse them anyway),
//! so a closing process can read what it needs to close.
//!
//! Invariant: once [`GatedDevice::shut`] returns, no write started after it
//! reaches the inner device; one already inside `write_at` may finish, as a
//! write in flight on a disk at power loss may.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::{BlockDevice, BlockError, DeviceRef, Result};

pub struct GatedDevice {
    inner: DeviceRef,
    shut: AtomicBool,
}

impl GatedDevice {
    pub fn new(inner: DeviceRef) -> GatedDevice {
        GatedDevice {
            inner,
            shut: AtomicBool::new(false),
        }
    }

    /// Shut the gate for good.
    pub fn shut(&self) {
        self.shut.store(true, Ordering::SeqCst);
    }

    pub fn is_shut(&self) -> bool {
        self.shut.load(Ordering::SeqCst)
    }

    fn check(&self) -> Result<()> {
        if self.is_shut() {
            return Err(BlockError::ShutDown {
                device: self.inner.name(),
            });
        }
        Ok(())
    }
}

impl BlockDevice for GatedDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.check()?;
        self.inner.write_at(buf, offset)
    }
    fn flush(&self) -> Result<()> {
        self.check()?;
        self.inner.flush()
    }
    fn write_durable(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.check()?;
        self.inner.write_durable(buf, offset)
    }
    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        self.check()?;
        self.inner.discard(offset, len)
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn name(&self) -> String {
        self.inner.name()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::MemDevice;

    #[test]
    fn nothing_reaches_the_device_once_shut() {
        let mem = Arc::new(MemDevice::new(8192));
        let gate = GatedDevice::new(mem.clone());
        gate.write_at(&[1; 512], 0).unwrap();
        gate.flush().unwrap();
        gate.shut();
        assert!(matches!(
            gate.write_at(&[2; 512], 0),
            Err(BlockError::ShutDown { .. })
        ));
        assert!(gate.write_durable(&[2; 512], 512).is_err());
        assert!(gate.flush().is_err());
        assert!(gate.discard(0, 512).is_err());
        let mut back = [0u8; 1024];
        gate.read_at(&mut back, 0).unwrap();
        assert_eq!(&back[..512], &[1; 512]);
        assert_eq!(&back[512..], &[0; 512]);
        mem.read_at(&mut back, 0).unwrap();
        assert_eq!(&back[..512], &[1; 512]);
    }
}
