//! The send stream: a dataset's items as a sequence of checksummed
//! records, written by `send.rs` and read by `receive.rs`.
//!
//! A stream is a BEGIN record, any number of PUT, DATA and DEL records in
//! strictly increasing key order, and an END record. Every record is
//! framed as u8 type · u8 0 · u16 0 · u32 payload length (LE) · payload
//! · 16-byte trailer. The trailer is the xxh3-128 (LE) of the previous
//! record's trailer (16 zero bytes before BEGIN), this record's header
//! and its payload: a chain, so a record that verifies proves every
//! record before it arrived whole and in order, and END's trailer is the
//! checksum of the whole stream. A receiver applies only verified
//! records, so whatever it has applied when a stream breaks off is a
//! prefix of the sender's, and a resume can start after its last key.
//!
//! The byte layout of each payload is in `docs/format.md` ("Send
//! stream"). Decoding checks every length against the payload and every
//! field against its range; nothing here trusts the stream.

use std::io::{ErrorKind, Read, Write};

use aegis_pool::codec::{Reader, Writer};
use aegis_pool::{ChecksumType, Compression, StoredForm};
use xxhash_rust::xxh3::Xxh3;

use crate::error::{FsError, Result};

pub const STREAM_MAGIC: [u8; 8] = *b"AEGISSND";
/// The format version this build writes and the newest it reads.
pub const STREAM_VERSION: u16 = 1;
const HEADER_BYTES: usize = 8;
const TRAILER_BYTES: usize = 16;
/// Largest payload: a 1 MiB block with its record header and key.
pub const MAX_PAYLOAD_BYTES: usize = (1 << 20) + 4096;
/// Longest key a record may carry (dataset keys are far shorter).
pub const MAX_KEY_BYTES: usize = 1024;

const T_BEGIN: u8 = 1;
const T_PUT: u8 = 2;
const T_DATA: u8 = 3;
const T_DEL: u8 = 4;
const T_END: u8 = 5;

/// Data record kinds, as in `FileRecord`.
const KIND_BLOCK: u8 = 2;
const KIND_PREALLOC: u8 = 3;

/// What a stream holds and what it needs to be received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Begin {
    /// The sent snapshot's guid.
    pub snapshot_guid: u64,
    /// The base snapshot's guid for an incremental stream; 0 for a full one.
    pub base_guid: u64,
    pub created_ns: u64,
    /// The snapshot's txg in the sending pool (shown, not used).
    pub source_txg: u64,
    /// The sending pool's block size: file records count space in it.
    pub block_size: u32,
    /// The sent dataset's incompat features (its meta record's).
    pub features: u64,
    pub name: String,
    /// A resumed stream starts after this key; empty for a whole one.
    pub resume_after: Vec<u8>,
}

/// A data block in its stored form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamBlock {
    pub form: StoredForm,
    pub stored: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Begin(Begin),
    /// An item stored as it is (anything but a file record with a block).
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// A file record with a block (`prealloc`: a preallocated record,
    /// whose block is optional).
    Data {
        key: Vec<u8>,
        len: u32,
        prealloc: bool,
        block: Option<StreamBlock>,
    },
    /// An item of the base that the sent snapshot no longer has.
    Del {
        key: Vec<u8>,
    },
    End {
        records: u64,
        data_bytes: u64,
    },
}

impl Record {
    /// The key of an item record.
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            Record::Put { key, .. } | Record::Data { key, .. } | Record::Del { key } => Some(key),
            _ => None,
        }
    }

    fn kind(&self) -> u8 {
        match self {
            Record::Begin(_) => T_BEGIN,
            Record::Put { .. } => T_PUT,
            Record::Data { .. } => T_DATA,
            Record::Del { .. } => T_DEL,
            Record::End { .. } => T_END,
        }
    }

    fn encode_payload(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            Record::Begin(b) => encode_begin(&mut w, b),
            Record::Put { key, value } => {
                put_key(&mut w, key);
                w.bytes(value);
            }
            Record::Data {
                key,
                len,
                prealloc,
                block,
            } => encode_data(&mut w, key, *len, *prealloc, block.as_ref()),
            Record::Del { key } => put_key(&mut w, key),
            Record::End {
                records,
                data_bytes,
            } => {
                w.u64(*records);
                w.u64(*data_bytes);
            }
        }
        w.into_inner()
    }

    fn decode_payload(kind: u8, p: &[u8]) -> Result<Record> {
        let mut r = Reader::new(p, "send stream record");
        let rec = match kind {
            T_BEGIN => Record::Begin(decode_begin(&mut r)?),
            T_PUT => Record::Put {
                key: get_key(&mut r)?,
                value: r.bytes(r.remaining())?.to_vec(),
            },
            T_DATA => decode_data(&mut r)?,
            T_DEL => Record::Del {
                key: get_key(&mut r)?,
            },
            T_END => Record::End {
                records: r.u64()?,
                data_bytes: r.u64()?,
            },
            other => return Err(bad(format!("unknown record type {other}"))),
        };
        if r.remaining() != 0 {
            return Err(bad(format!(
                "{} bytes past the record's fields",
                r.remaining()
            )));
        }
        Ok(rec)
    }
}

fn bad(s: String) -> FsError {
    FsError::Stream(s)
}

fn encode_begin(w: &mut Writer, b: &Begin) {
    w.bytes(&STREAM_MAGIC);
    w.u16(STREAM_VERSION);
    w.u16(0);
    w.u32(b.block_size);
    w.u64(b.snapshot_guid);
    w.u64(b.base_guid);
    w.u64(b.created_ns);
    w.u64(b.source_txg);
    w.u64(b.features);
    w.u16(b.name.len() as u16);
    w.bytes(b.name.as_bytes());
    w.u16(b.resume_after.len() as u16);
    w.bytes(&b.resume_after);
}

fn decode_begin(r: &mut Reader<'_>) -> Result<Begin> {
    if r.array::<8>()? != STREAM_MAGIC {
        return Err(bad("not an AegisFS send stream (bad magic)".into()));
    }
    let version = r.u16()?;
    if version > STREAM_VERSION {
        return Err(bad(format!(
            "format version {version} is newer than this build reads ({STREAM_VERSION}); upgrade aegisfs"
        )));
    }
    if version == 0 || r.u16()? != 0 {
        return Err(bad("bad version or flags in BEGIN".into()));
    }
    let block_size = r.u32()?;
    let (snapshot_guid, base_guid) = (r.u64()?, r.u64()?);
    let (created_ns, source_txg, features) = (r.u64()?, r.u64()?, r.u64()?);
    let name_len = r.u16()? as usize;
    let name = std::str::from_utf8(r.bytes(name_len)?)
        .map_err(|_| bad("snapshot name is not UTF-8".into()))?
        .to_string();
    crate::dataset_admin::validate_name(&name).map_err(|e| bad(e.to_string()))?;
    let resume_len = r.u16()? as usize;
    if resume_len > MAX_KEY_BYTES {
        return Err(bad("resume key too long".into()));
    }
    let resume_after = r.bytes(resume_len)?.to_vec();
    if snapshot_guid == 0 || snapshot_guid == base_guid {
        return Err(bad("snapshot guid 0 or equal to its base's".into()));
    }
    Ok(Begin {
        snapshot_guid,
        base_guid,
        created_ns,
        source_txg,
        block_size,
        features,
        name,
        resume_after,
    })
}

fn put_key(w: &mut Writer, key: &[u8]) {
    assert!(key.len() <= MAX_KEY_BYTES, "key of {} bytes", key.len());
    w.u16(key.len() as u16);
    w.bytes(key);
}

fn get_key(r: &mut Reader<'_>) -> Result<Vec<u8>> {
    let n = r.u16()? as usize;
    if !(9..=MAX_KEY_BYTES).contains(&n) {
        return Err(bad(format!("key of {n} bytes")));
    }
    Ok(r.bytes(n)?.to_vec())
}

fn encode_data(w: &mut Writer, key: &[u8], len: u32, prealloc: bool, block: Option<&StreamBlock>) {
    put_key(w, key);
    w.u8(if prealloc { KIND_PREALLOC } else { KIND_BLOCK });
    w.u32(len);
    let Some(b) = block else {
        w.u8(0);
        return;
    };
    w.u8(1);
    w.u8(b.form.compression as u8);
    w.u8(b.form.checksum_type as u8);
    w.u32(b.form.logical_size);
    w.bytes(&b.form.checksum);
    w.bytes(&b.stored);
}

fn decode_data(r: &mut Reader<'_>) -> Result<Record> {
    let key = get_key(r)?;
    let prealloc = match r.u8()? {
        KIND_BLOCK => false,
        KIND_PREALLOC => true,
        k => return Err(bad(format!("unknown data record kind {k}"))),
    };
    let len = r.u32()?;
    if len == 0 || len > crate::posix::MAX_RECORD_SIZE {
        return Err(bad(format!("record length {len}")));
    }
    let block = match r.u8()? {
        0 if prealloc => None,
        1 => Some(decode_block(r, len, prealloc)?),
        _ => return Err(bad("data record without its block".into())),
    };
    Ok(Record::Data {
        key,
        len,
        prealloc,
        block,
    })
}

fn decode_block(r: &mut Reader<'_>, len: u32, prealloc: bool) -> Result<StreamBlock> {
    let compression = Compression::from_u8(r.u8()?)?;
    let checksum_type = ChecksumType::from_u8(r.u8()?)?;
    let logical_size = r.u32()?;
    let fits = match prealloc {
        true => logical_size <= len,
        false => logical_size == len,
    };
    if logical_size == 0 || !fits {
        return Err(bad(format!(
            "block of {logical_size} bytes in a {len}-byte record"
        )));
    }
    let checksum = r.array::<32>()?;
    let stored = r.bytes(r.remaining())?.to_vec();
    if stored.is_empty()
        || (compression == Compression::None && stored.len() != logical_size as usize)
    {
        return Err(bad(format!("stored block of {} bytes", stored.len())));
    }
    Ok(StreamBlock {
        form: StoredForm {
            compression,
            checksum_type,
            checksum,
            logical_size,
        },
        stored,
    })
}

fn chain_hash(prev: &[u8; TRAILER_BYTES], header: &[u8], payload: &[u8]) -> [u8; TRAILER_BYTES] {
    let mut h = Xxh3::new();
    h.update(prev);
    h.update(header);
    h.update(payload);
    h.digest128().to_le_bytes()
}

/// Recompute the trailers of `b`'s records in place, so that a mutated
/// stream reaches the decoders behind the checksums (fuzzing, tests).
/// Stops at the first frame that does not fit.
#[doc(hidden)]
pub fn reseal(b: &mut [u8]) {
    let mut chain = [0u8; TRAILER_BYTES];
    let mut at = 0usize;
    while at + HEADER_BYTES <= b.len() {
        let len = u32::from_le_bytes(b[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        let Some(end) = (at + HEADER_BYTES)
            .checked_add(len)
            .and_then(|p| p.checked_add(TRAILER_BYTES))
            .filter(|&e| e <= b.len())
        else {
            return;
        };
        let body = at + HEADER_BYTES + len;
        chain = chain_hash(
            &chain,
            &b[at..at + HEADER_BYTES],
            &b[at + HEADER_BYTES..body],
        );
        b[body..end].copy_from_slice(&chain);
        at = end;
    }
}

/// Writes records, chaining their checksums; [`StreamWriter::finish`]
/// adds END.
pub struct StreamWriter<W: Write> {
    out: W,
    chain: [u8; TRAILER_BYTES],
    records: u64,
    data_bytes: u64,
    bytes: u64,
}

impl<W: Write> StreamWriter<W> {
    pub fn new(out: W) -> StreamWriter<W> {
        StreamWriter {
            out,
            chain: [0; TRAILER_BYTES],
            records: 0,
            data_bytes: 0,
            bytes: 0,
        }
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn write(&mut self, rec: &Record) -> Result<()> {
        assert!(
            !matches!(rec, Record::End { .. }),
            "END is written by finish"
        );
        if let Record::Data { block: Some(b), .. } = rec {
            self.data_bytes += b.stored.len() as u64;
        }
        self.emit(rec)
    }

    fn emit(&mut self, rec: &Record) -> Result<()> {
        let payload = rec.encode_payload();
        assert!(
            payload.len() <= MAX_PAYLOAD_BYTES,
            "payload of {} bytes",
            payload.len()
        );
        let mut header = [0u8; HEADER_BYTES];
        header[0] = rec.kind();
        header[4..].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        self.chain = chain_hash(&self.chain, &header, &payload);
        let io = |e: std::io::Error| FsError::Stream(format!("writing the stream: {e}"));
        self.out.write_all(&header).map_err(io)?;
        self.out.write_all(&payload).map_err(io)?;
        self.out.write_all(&self.chain).map_err(io)?;
        self.records += 1;
        self.bytes += (HEADER_BYTES + payload.len() + TRAILER_BYTES) as u64;
        Ok(())
    }

    /// Write END (the count of records before it and their block bytes)
    /// and flush; returns the output and the stream's length.
    pub fn finish(mut self) -> Result<(W, u64)> {
        let end = Record::End {
            records: self.records,
            data_bytes: self.data_bytes,
        };
        self.emit(&end)?;
        self.out
            .flush()
            .map_err(|e| FsError::Stream(format!("writing the stream: {e}")))?;
        Ok((self.out, self.bytes))
    }
}

/// Reads and verifies records one at a time. After END it returns
/// `None`; a stream that stops before END is an error, never a short
/// success.
pub struct StreamReader<R: Read> {
    inp: R,
    chain: [u8; TRAILER_BYTES],
    records: u64,
    data_bytes: u64,
    bytes: u64,
    ended: bool,
}

impl<R: Read> StreamReader<R> {
    pub fn new(inp: R) -> StreamReader<R> {
        StreamReader {
            inp,
            chain: [0; TRAILER_BYTES],
            records: 0,
            data_bytes: 0,
            bytes: 0,
            ended: false,
        }
    }

    /// Bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The next verified record; `None` once END has been read.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        if self.ended {
            return Ok(None);
        }
        let mut header = [0u8; HEADER_BYTES];
        if !self.fill(&mut header)? {
            return Err(self.truncated());
        }
        let len = u32::from_le_bytes(header[4..].try_into().expect("4 bytes")) as usize;
        if header[1..4] != [0, 0, 0] || len > MAX_PAYLOAD_BYTES {
            return Err(bad(format!("bad record header at byte {}", self.bytes)));
        }
        let mut payload = vec![0u8; len];
        let mut trailer = [0u8; TRAILER_BYTES];
        if !self.fill(&mut payload)? || !self.fill(&mut trailer)? {
            return Err(self.truncated());
        }
        let want = chain_hash(&self.chain, &header, &payload);
        if want != trailer {
            return Err(bad(format!(
                "record {} (at byte {}) fails its checksum",
                self.records, self.bytes
            )));
        }
        let rec = Record::decode_payload(header[0], &payload)?;
        self.check_place(&rec)?;
        self.chain = want;
        self.records += 1;
        self.bytes += (HEADER_BYTES + len + TRAILER_BYTES) as u64;
        if let Record::Data { block: Some(b), .. } = &rec {
            self.data_bytes += b.stored.len() as u64;
        }
        Ok(Some(rec))
    }

    /// BEGIN first and only first; END's counts must be this reader's.
    fn check_place(&mut self, rec: &Record) -> Result<()> {
        match rec {
            Record::Begin(_) if self.records == 0 => Ok(()),
            Record::Begin(_) => Err(bad("a second BEGIN".into())),
            _ if self.records == 0 => Err(bad("the stream does not start with BEGIN".into())),
            Record::End {
                records,
                data_bytes,
            } => {
                if (*records, *data_bytes) != (self.records, self.data_bytes) {
                    return Err(bad(format!(
                        "END counts {records} records and {data_bytes} block bytes, {} and {} arrived",
                        self.records, self.data_bytes
                    )));
                }
                self.ended = true;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn truncated(&self) -> FsError {
        bad(format!(
            "truncated after {} records ({} bytes): no END record",
            self.records, self.bytes
        ))
    }

    /// Fill `buf` whole: false at a clean end of input before it.
    fn fill(&mut self, buf: &mut [u8]) -> Result<bool> {
        let mut got = 0;
        while got < buf.len() {
            match self.inp.read(&mut buf[got..]) {
                Ok(0) => return Ok(false),
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(bad(format!("reading the stream: {e}"))),
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn begin() -> Begin {
        Begin {
            snapshot_guid: 7,
            base_guid: 0,
            created_ns: 1,
            source_txg: 9,
            block_size: 4096,
            features: 0,
            name: "s".into(),
            resume_after: Vec::new(),
        }
    }

    fn sample() -> Vec<Record> {
        let key = |n: u8| {
            let mut k = 5u64.to_be_bytes().to_vec();
            k.push(n);
            k
        };
        vec![
            Record::Begin(begin()),
            Record::Put {
                key: key(1),
                value: b"inode".to_vec(),
            },
            Record::Data {
                key: key(7),
                len: 4,
                prealloc: false,
                block: Some(StreamBlock {
                    form: StoredForm {
                        compression: Compression::None,
                        checksum_type: ChecksumType::Blake3,
                        checksum: [1; 32],
                        logical_size: 4,
                    },
                    stored: b"abcd".to_vec(),
                }),
            },
            Record::Data {
                key: key(8),
                len: 9000,
                prealloc: true,
                block: None,
            },
            Record::Del { key: key(9) },
        ]
    }

    fn encode(recs: &[Record]) -> Vec<u8> {
        let mut w = StreamWriter::new(Vec::new());
        for r in recs {
            w.write(r).unwrap();
        }
        w.finish().unwrap().0
    }

    fn decode(b: &[u8]) -> Result<Vec<Record>> {
        let mut r = StreamReader::new(b);
        let mut out = Vec::new();
        while let Some(rec) = r.next_record()? {
            out.push(rec);
        }
        Ok(out)
    }

    #[test]
    fn round_trip() {
        let recs = sample();
        let got = decode(&encode(&recs)).unwrap();
        assert_eq!(&got[..recs.len()], &recs[..]);
        assert!(matches!(
            got.last(),
            Some(Record::End {
                records: 5,
                data_bytes: 4
            })
        ));
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let b = encode(&sample());
        for n in 0..b.len() {
            assert!(decode(&b[..n]).is_err(), "cut at {n} accepted");
        }
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x10;
            assert!(decode(&c).is_err(), "flip at {i} accepted");
        }
    }

    /// The byte ranges of a stream's records.
    fn frames(b: &[u8]) -> Vec<std::ops::Range<usize>> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < b.len() {
            let len = u32::from_le_bytes(b[at + 4..at + 8].try_into().unwrap()) as usize;
            let end = at + HEADER_BYTES + len + TRAILER_BYTES;
            out.push(at..end);
            at = end;
        }
        out
    }

    #[test]
    fn dropped_or_reordered_records_are_refused() {
        let b = encode(&sample());
        let f = frames(&b);
        assert_eq!(f.len(), 6);
        // Each record left out, each pair of neighbours swapped: every
        // record still verifies alone, but the chain breaks.
        for i in 1..f.len() {
            let mut d = b[..f[i].start].to_vec();
            d.extend_from_slice(&b[f[i].end..]);
            assert!(decode(&d).is_err(), "record {i} dropped unnoticed");
        }
        for i in 1..f.len() - 1 {
            let mut d = b[..f[i].start].to_vec();
            d.extend_from_slice(&b[f[i + 1].clone()]);
            d.extend_from_slice(&b[f[i].clone()]);
            d.extend_from_slice(&b[f[i + 1].end..]);
            assert!(
                decode(&d).is_err(),
                "records {i} and {} swapped unnoticed",
                i + 1
            );
        }
    }

    #[test]
    fn newer_version_is_refused_with_a_clear_message() {
        let mut b = encode(&sample());
        // The version is the u16 after the 8-byte header and the magic.
        b[16] = 9;
        // Re-seal BEGIN so only the version is wrong.
        let len = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
        let t = chain_hash(&[0; 16], &b[..8], &b[8..8 + len]);
        b[8 + len..8 + len + 16].copy_from_slice(&t);
        let e = decode(&b).unwrap_err().to_string();
        assert!(e.contains("newer than this build"), "{e}");
    }
}
