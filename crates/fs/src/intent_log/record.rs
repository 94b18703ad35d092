//! Intent log records: what each change of the on-disk filesystem
//! records, encoded canonically so a decoded record encodes back to the
//! same bytes (the fuzzer checks it).
//!
//! Records: u8 type, then fields (little-endian; names and values with a
//! u32 length; optional fields as a flag 0 or 1 and the value, zero when
//! absent). Times set explicitly are recorded resolved, so a replayed
//! `utimensat(..., UTIME_NOW)` gives the original time. Replay re-runs
//! the records on top of the last txg, in order; inode numbers come out
//! the same because allocation is deterministic, and each create checks
//! it.

use aegis_pool::codec::{Reader, Writer};

use crate::error::{FsError, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogRec {
    /// mknod, create and mkdir: `mode` holds the type, as given (before
    /// setgid inheritance); `ino` is what it created.
    Mknod {
        parent: u64,
        name: Vec<u8>,
        mode: u32,
        rdev: u64,
        uid: u32,
        gid: u32,
        ino: u64,
    },
    Symlink {
        parent: u64,
        name: Vec<u8>,
        target: Vec<u8>,
        uid: u32,
        gid: u32,
        ino: u64,
    },
    Unlink {
        parent: u64,
        name: Vec<u8>,
    },
    Rmdir {
        parent: u64,
        name: Vec<u8>,
    },
    Rename {
        parent: u64,
        name: Vec<u8>,
        newparent: u64,
        newname: Vec<u8>,
        flags: u32,
    },
    Link {
        ino: u64,
        newparent: u64,
        newname: Vec<u8>,
    },
    /// The attributes after the change (`None` = untouched).
    SetAttr {
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        times: [Option<i64>; 4],
    },
    Write {
        ino: u64,
        offset: u64,
        data: Vec<u8>,
    },
    Punch {
        ino: u64,
        offset: u64,
        end: u64,
    },
    Extend {
        ino: u64,
        size: u64,
    },
    SetXattr {
        ino: u64,
        name: Vec<u8>,
        value: Vec<u8>,
        flags: i32,
    },
    /// fallocate(2) other than a hole punch (which is [`LogRec::Punch`]):
    /// preallocate, zero, collapse or insert a range; `mode` holds the
    /// Linux `FALLOC_FL_*` bits as given.
    Fallocate {
        ino: u64,
        mode: u32,
        offset: u64,
        len: u64,
    },
    RemoveXattr {
        ino: u64,
        name: Vec<u8>,
    },
}

fn put_bytes(w: &mut Writer, b: &[u8]) {
    w.u32(b.len() as u32);
    w.bytes(b);
}

fn get_bytes(r: &mut Reader<'_>) -> Result<Vec<u8>> {
    let n = r.u32()? as usize;
    Ok(r.bytes(n)?.to_vec())
}

fn opt32(w: &mut Writer, v: Option<u32>) {
    w.u8(v.is_some() as u8);
    w.u32(v.unwrap_or(0));
}

fn opt64(w: &mut Writer, v: Option<u64>) {
    w.u8(v.is_some() as u8);
    w.u64(v.unwrap_or(0));
}

/// An optional field: a flag 0 or 1, then the value (zero when absent),
/// so every record has one encoding.
fn get_opt(flag: u8, v: u64) -> Result<Option<u64>> {
    match (flag, v) {
        (0, 0) => Ok(None),
        (1, v) => Ok(Some(v)),
        _ => Err(FsError::Damaged(
            "log record with a malformed optional field".into(),
        )),
    }
}

fn get_opt32(r: &mut Reader<'_>) -> Result<Option<u32>> {
    let flag = r.u8()?;
    Ok(get_opt(flag, r.u32()? as u64)?.map(|v| v as u32))
}

fn get_opt64(r: &mut Reader<'_>) -> Result<Option<u64>> {
    let flag = r.u8()?;
    get_opt(flag, r.u64()?)
}

impl LogRec {
    /// The inodes whose policy governs this record.
    pub fn inos(&self) -> Vec<u64> {
        match self {
            LogRec::Mknod { parent, ino, .. } | LogRec::Symlink { parent, ino, .. } => {
                vec![*parent, *ino]
            }
            LogRec::Unlink { parent, .. } | LogRec::Rmdir { parent, .. } => vec![*parent],
            LogRec::Rename {
                parent, newparent, ..
            } => vec![*parent, *newparent],
            LogRec::Link { ino, newparent, .. } => vec![*ino, *newparent],
            LogRec::SetAttr { ino, .. }
            | LogRec::Write { ino, .. }
            | LogRec::Punch { ino, .. }
            | LogRec::Extend { ino, .. }
            | LogRec::Fallocate { ino, .. }
            | LogRec::SetXattr { ino, .. }
            | LogRec::RemoveXattr { ino, .. } => vec![*ino],
        }
    }

    // Not split: one arm per record type keeps the format in one place.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            LogRec::Mknod {
                parent,
                name,
                mode,
                rdev,
                uid,
                gid,
                ino,
            } => {
                w.u8(1);
                w.u64(*parent);
                w.u32(*mode);
                w.u64(*rdev);
                w.u32(*uid);
                w.u32(*gid);
                w.u64(*ino);
                put_bytes(&mut w, name);
            }
            LogRec::Symlink {
                parent,
                name,
                target,
                uid,
                gid,
                ino,
            } => {
                w.u8(2);
                w.u64(*parent);
                w.u32(*uid);
                w.u32(*gid);
                w.u64(*ino);
                put_bytes(&mut w, name);
                put_bytes(&mut w, target);
            }
            LogRec::Unlink { parent, name } | LogRec::Rmdir { parent, name } => {
                w.u8(if matches!(self, LogRec::Unlink { .. }) {
                    3
                } else {
                    4
                });
                w.u64(*parent);
                put_bytes(&mut w, name);
            }
            LogRec::Rename {
                parent,
                name,
                newparent,
                newname,
                flags,
            } => {
                w.u8(5);
                w.u64(*parent);
                w.u64(*newparent);
                w.u32(*flags);
                put_bytes(&mut w, name);
                put_bytes(&mut w, newname);
            }
            LogRec::Link {
                ino,
                newparent,
                newname,
            } => {
                w.u8(6);
                w.u64(*ino);
                w.u64(*newparent);
                put_bytes(&mut w, newname);
            }
            LogRec::SetAttr {
                ino,
                mode,
                uid,
                gid,
                size,
                times,
            } => {
                w.u8(7);
                w.u64(*ino);
                opt32(&mut w, *mode);
                opt32(&mut w, *uid);
                opt32(&mut w, *gid);
                opt64(&mut w, *size);
                for t in times {
                    opt64(&mut w, t.map(|v| v as u64));
                }
            }
            LogRec::Write { ino, offset, data } => {
                w.u8(8);
                w.u64(*ino);
                w.u64(*offset);
                put_bytes(&mut w, data);
            }
            LogRec::Punch { ino, offset, end } => {
                w.u8(9);
                w.u64(*ino);
                w.u64(*offset);
                w.u64(*end);
            }
            LogRec::Extend { ino, size } => {
                w.u8(10);
                w.u64(*ino);
                w.u64(*size);
            }
            LogRec::SetXattr {
                ino,
                name,
                value,
                flags,
            } => {
                w.u8(11);
                w.u64(*ino);
                w.u32(*flags as u32);
                put_bytes(&mut w, name);
                put_bytes(&mut w, value);
            }
            LogRec::RemoveXattr { ino, name } => {
                w.u8(12);
                w.u64(*ino);
                put_bytes(&mut w, name);
            }
            LogRec::Fallocate {
                ino,
                mode,
                offset,
                len,
            } => {
                w.u8(13);
                w.u64(*ino);
                w.u32(*mode);
                w.u64(*offset);
                w.u64(*len);
            }
        }
        w.into_inner()
    }

    // Not split: one arm per record type, mirroring `encode`.
    pub fn decode(b: &[u8]) -> Result<LogRec> {
        let mut r = Reader::new(b, "log record");
        let rec = match r.u8()? {
            1 => {
                let (parent, mode, rdev, uid, gid, ino) =
                    (r.u64()?, r.u32()?, r.u64()?, r.u32()?, r.u32()?, r.u64()?);
                LogRec::Mknod {
                    parent,
                    name: get_bytes(&mut r)?,
                    mode,
                    rdev,
                    uid,
                    gid,
                    ino,
                }
            }
            2 => {
                let (parent, uid, gid, ino) = (r.u64()?, r.u32()?, r.u32()?, r.u64()?);
                let name = get_bytes(&mut r)?;
                LogRec::Symlink {
                    parent,
                    name,
                    target: get_bytes(&mut r)?,
                    uid,
                    gid,
                    ino,
                }
            }
            t @ (3 | 4) => {
                let parent = r.u64()?;
                let name = get_bytes(&mut r)?;
                if t == 3 {
                    LogRec::Unlink { parent, name }
                } else {
                    LogRec::Rmdir { parent, name }
                }
            }
            5 => {
                let (parent, newparent, flags) = (r.u64()?, r.u64()?, r.u32()?);
                let name = get_bytes(&mut r)?;
                LogRec::Rename {
                    parent,
                    name,
                    newparent,
                    newname: get_bytes(&mut r)?,
                    flags,
                }
            }
            6 => {
                let (ino, newparent) = (r.u64()?, r.u64()?);
                LogRec::Link {
                    ino,
                    newparent,
                    newname: get_bytes(&mut r)?,
                }
            }
            7 => {
                let ino = r.u64()?;
                let (mode, uid, gid, size) = (
                    get_opt32(&mut r)?,
                    get_opt32(&mut r)?,
                    get_opt32(&mut r)?,
                    get_opt64(&mut r)?,
                );
                let mut times = [None; 4];
                for t in &mut times {
                    *t = get_opt64(&mut r)?.map(|v| v as i64);
                }
                LogRec::SetAttr {
                    ino,
                    mode,
                    uid,
                    gid,
                    size,
                    times,
                }
            }
            8 => {
                let (ino, offset) = (r.u64()?, r.u64()?);
                LogRec::Write {
                    ino,
                    offset,
                    data: get_bytes(&mut r)?,
                }
            }
            9 => LogRec::Punch {
                ino: r.u64()?,
                offset: r.u64()?,
                end: r.u64()?,
            },
            10 => LogRec::Extend {
                ino: r.u64()?,
                size: r.u64()?,
            },
            11 => {
                let (ino, flags) = (r.u64()?, r.u32()? as i32);
                let name = get_bytes(&mut r)?;
                LogRec::SetXattr {
                    ino,
                    name,
                    value: get_bytes(&mut r)?,
                    flags,
                }
            }
            12 => {
                let ino = r.u64()?;
                LogRec::RemoveXattr {
                    ino,
                    name: get_bytes(&mut r)?,
                }
            }
            13 => LogRec::Fallocate {
                ino: r.u64()?,
                mode: r.u32()?,
                offset: r.u64()?,
                len: r.u64()?,
            },
            t => return Err(FsError::Damaged(format!("log record of unknown type {t}"))),
        };
        if r.remaining() != 0 {
            return Err(FsError::Damaged("log record with trailing bytes".into()));
        }
        Ok(rec)
    }
}

/// One record of each kind (tests and fuzz seeds).
// Not split: one literal per record type.
#[doc(hidden)]
pub fn samples() -> Vec<LogRec> {
    vec![
        LogRec::Mknod {
            parent: 1,
            name: b"a".to_vec(),
            mode: 0o100644,
            rdev: 0,
            uid: 5,
            gid: 6,
            ino: 9,
        },
        LogRec::Symlink {
            parent: 1,
            name: b"s".to_vec(),
            target: b"t/u".to_vec(),
            uid: 0,
            gid: 0,
            ino: 10,
        },
        LogRec::Unlink {
            parent: 1,
            name: b"a".to_vec(),
        },
        LogRec::Rmdir {
            parent: 1,
            name: b"d".to_vec(),
        },
        LogRec::Rename {
            parent: 1,
            name: b"x".to_vec(),
            newparent: 2,
            newname: b"y".to_vec(),
            flags: 2,
        },
        LogRec::Link {
            ino: 9,
            newparent: 1,
            newname: b"b".to_vec(),
        },
        LogRec::SetAttr {
            ino: 9,
            mode: Some(0o600),
            uid: None,
            gid: Some(3),
            size: Some(7),
            times: [Some(-5), None, Some(1 << 60), None],
        },
        LogRec::Write {
            ino: 9,
            offset: 4096,
            data: vec![1, 2, 3],
        },
        LogRec::Punch {
            ino: 9,
            offset: 1,
            end: 2,
        },
        LogRec::Extend {
            ino: 9,
            size: 1 << 40,
        },
        LogRec::SetXattr {
            ino: 9,
            name: b"user.a".to_vec(),
            value: vec![0; 100],
            flags: 1,
        },
        LogRec::RemoveXattr {
            ino: 9,
            name: b"user.a".to_vec(),
        },
        LogRec::Fallocate {
            ino: 9,
            mode: 0x10,
            offset: 1 << 17,
            len: 1 << 18,
        },
    ]
}

/// Decode one record, for the fuzzer: `Ok` if the bytes are a record,
/// which must then encode back to them (the assertion is the fuzzer's
/// oracle, not a check of device data).
#[doc(hidden)]
pub fn fuzz_record(b: &[u8]) -> Result<()> {
    let r = LogRec::decode(b)?;
    assert_eq!(r.encode(), b, "log record does not round-trip");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let recs = samples();
        for r in recs {
            let e = r.encode();
            assert_eq!(LogRec::decode(&e).unwrap(), r);
            assert!(LogRec::decode(&e[..e.len() - 1]).is_err());
        }
        assert!(LogRec::decode(&[99]).is_err());
    }
}
