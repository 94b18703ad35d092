//! A receive in progress: the dataset's [`RECV_STATE`] item, and the
//! resume token made from it.
//!
//! The item is written in the first commit of a receive and rewritten in
//! the commit of every batch applied after it, so it always names the
//! last key whose record is on disk; the commit that finishes the receive
//! removes it (and takes the snapshot). While it exists the dataset's
//! meta record carries [`FEATURE_RECEIVING`], which keeps it from being
//! mounted.
//!
//! Layout (little-endian): u8 version (1) · u8 kind (1 full, 2
//! incremental) · u16 0 · u32 0 · u64 snapshot guid · u64 base guid ·
//! u64 creation time (ns) of the snapshot being received · u64 records
//! applied · u64 local id of the base snapshot (0 for a full receive) ·
//! u16 name length · name · u16 key length · the last key applied
//! (empty before the first item).
//!
//! A resume token is `aegis1-` and the hex of: u64 snapshot guid · u64
//! base guid · u16 key length · key (all LE). The sender checks the guids
//! against the snapshots it is asked to send and starts after the key.
//!
//! [`RECV_STATE`]: crate::posix::keys::RECV_STATE
//! [`FEATURE_RECEIVING`]: crate::posix::FEATURE_RECEIVING

use aegis_pool::codec::{Reader, Writer};

use crate::dataset::MAX_DATASET_NAME;
use crate::error::{FsError, Result};
use crate::send_stream::MAX_KEY_BYTES;

const VERSION: u8 = 1;
const KIND_FULL: u8 = 1;
const KIND_INCREMENTAL: u8 = 2;
const TOKEN_PREFIX: &str = "aegis1-";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecvState {
    pub snapshot_guid: u64,
    /// 0 for a full receive.
    pub base_guid: u64,
    pub created_ns: u64,
    pub records: u64,
    /// The base snapshot's id here, for an incremental receive.
    pub base_id: u64,
    pub name: String,
    pub last_key: Vec<u8>,
}

impl RecvState {
    pub fn is_incremental(&self) -> bool {
        self.base_guid != 0
    }

    pub fn encode(&self) -> Vec<u8> {
        assert!(self.name.len() <= MAX_DATASET_NAME && self.last_key.len() <= MAX_KEY_BYTES);
        let mut w = Writer::new();
        w.u8(VERSION);
        w.u8(match self.is_incremental() {
            true => KIND_INCREMENTAL,
            false => KIND_FULL,
        });
        w.u16(0);
        w.u32(0);
        w.u64(self.snapshot_guid);
        w.u64(self.base_guid);
        w.u64(self.created_ns);
        w.u64(self.records);
        w.u64(self.base_id);
        w.u16(self.name.len() as u16);
        w.bytes(self.name.as_bytes());
        w.u16(self.last_key.len() as u16);
        w.bytes(&self.last_key);
        w.into_inner()
    }

    pub fn decode(b: &[u8]) -> Result<RecvState> {
        let bad = |d: &str| FsError::Corrupt {
            what: "receive state".into(),
            detail: d.into(),
        };
        let mut r = Reader::new(b, "receive state");
        if r.u8()? != VERSION {
            return Err(bad("unknown version"));
        }
        let kind = r.u8()?;
        if r.u16()? != 0 || r.u32()? != 0 {
            return Err(bad("reserved bytes not zero"));
        }
        let (snapshot_guid, base_guid) = (r.u64()?, r.u64()?);
        let (created_ns, records, base_id) = (r.u64()?, r.u64()?, r.u64()?);
        let incremental = match kind {
            KIND_FULL => false,
            KIND_INCREMENTAL => true,
            _ => return Err(bad("unknown kind")),
        };
        if snapshot_guid == 0 || incremental != (base_guid != 0) || incremental != (base_id != 0) {
            return Err(bad("guids do not match the kind"));
        }
        let name_len = r.u16()? as usize;
        if name_len > MAX_DATASET_NAME {
            return Err(bad("name too long"));
        }
        let name = std::str::from_utf8(r.bytes(name_len)?)
            .map_err(|_| bad("name is not UTF-8"))?
            .to_string();
        let key_len = r.u16()? as usize;
        if key_len > MAX_KEY_BYTES || r.remaining() != key_len {
            return Err(bad("key length"));
        }
        let last_key = r.bytes(key_len)?.to_vec();
        Ok(RecvState {
            snapshot_guid,
            base_guid,
            created_ns,
            records,
            base_id,
            name,
            last_key,
        })
    }

    /// The token a sender needs to go on from here.
    pub fn token(&self) -> String {
        let mut w = Writer::new();
        w.u64(self.snapshot_guid);
        w.u64(self.base_guid);
        w.u16(self.last_key.len() as u16);
        w.bytes(&self.last_key);
        let hex: String = w.into_inner().iter().map(|b| format!("{b:02x}")).collect();
        format!("{TOKEN_PREFIX}{hex}")
    }
}

/// A decoded resume token: what the stream must be and where it resumes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumeToken {
    pub snapshot_guid: u64,
    pub base_guid: u64,
    pub after_key: Vec<u8>,
}

impl ResumeToken {
    pub fn parse(s: &str) -> Result<ResumeToken> {
        let bad = || FsError::Invalid(format!("{s:?} is not a resume token (aegis1-...)"));
        let hex = s.trim().strip_prefix(TOKEN_PREFIX).ok_or_else(bad)?;
        if hex.len() % 2 != 0 || hex.len() > 2 * (18 + MAX_KEY_BYTES) {
            return Err(bad());
        }
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
            .collect::<Result<_>>()?;
        let mut r = Reader::new(&bytes, "resume token");
        let parsed = (|| -> aegis_pool::Result<ResumeToken> {
            let (snapshot_guid, base_guid) = (r.u64()?, r.u64()?);
            let n = r.u16()? as usize;
            let after_key = r.bytes(n)?.to_vec();
            Ok(ResumeToken {
                snapshot_guid,
                base_guid,
                after_key,
            })
        })()
        .map_err(|_| bad())?;
        if r.remaining() != 0 || parsed.snapshot_guid == 0 {
            return Err(bad());
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_token_and_rejects() {
        let s = RecvState {
            snapshot_guid: 5,
            base_guid: 6,
            created_ns: 7,
            records: 8,
            base_id: 40,
            name: "daily".into(),
            last_key: vec![0, 1, 2, 3, 4, 5, 6, 7, 1],
        };
        let e = s.encode();
        assert_eq!(RecvState::decode(&e).unwrap(), s);
        assert!(RecvState::decode(&e[..e.len() - 1]).is_err());
        let full_with_base = RecvState {
            base_id: 0,
            ..s.clone()
        };
        assert!(RecvState::decode(&full_with_base.encode()).is_err());
        let t = ResumeToken::parse(&s.token()).unwrap();
        assert_eq!(
            (t.snapshot_guid, t.base_guid, &t.after_key),
            (5, 6, &s.last_key)
        );
        assert!(ResumeToken::parse("aegis1-0").is_err());
        assert!(ResumeToken::parse("nonsense").is_err());
        assert!(ResumeToken::parse(&format!("{}00", s.token())).is_err());
    }
}
