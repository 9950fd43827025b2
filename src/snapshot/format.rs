//! The snapshot file format: a small header anyone can read, the engine's state compressed, and
//! a checksum over everything.
//!
//! ```text
//! magic      8 bytes  "HSSNAP\r\n" (the line break catches text-mode mangling)
//! version    u32 LE   FORMAT_VERSION
//! header     u32 LE length, then the header (postcard)
//! body       u64 LE length, then the body:
//!              u32 LE section count, then per section: u64 LE length, LZ4-compressed bytes
//!              (the engine state's sections, postcard; compressed and decompressed in parallel)
//! checksum   u64 LE   XXH3-64 of every byte before it
//! ```
//!
//! The format version is checked before anything else is decoded, so a file from a newer
//! release is refused with that reason rather than misread; a change to the header or to the
//! state's layout bumps it (see the README on upgrades: an unreadable snapshot costs a re-read
//! of the input, never a wrong state).

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::event::Millis;

pub const MAGIC: &[u8; 8] = b"HSSNAP\r\n";
/// Bumped on any change to the header or to the state's encoding.
pub const FORMAT_VERSION: u32 = 1;

/// What a snapshot reflects: which partition, up to where in each input, and under which model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub partition: i32,
    /// The three input topics (usage, support, billing), so a file of another deployment is
    /// recognised as foreign.
    pub topics: [String; 3],
    /// For each input, the next offset to process: the state reflects every record before it.
    /// `None`: nothing had been read from that input.
    pub offsets: [Option<i64>; 3],
    /// Each input's event time of the latest record read, which the merge gives a following
    /// record whose time cannot be read (so the re-read after a restore orders records as the
    /// original run did).
    pub last_times: [Millis; 3],
    pub stream_time: Option<Millis>,
    pub customers: u64,
    pub scorecard_version: String,
    /// Wall-clock time it was taken (Unix milliseconds); for people, not for recovery.
    pub created_ms: i64,
    /// Size of the engine state before compression.
    pub state_bytes: u64,
}

/// Why a file is not a usable snapshot.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SnapshotError {
    #[error("not a healthscore snapshot (wrong magic bytes)")]
    NotASnapshot,
    #[error("snapshot format {found} is newer than this release reads ({supported}); written by a newer healthscore")]
    NewerFormat { found: u32, supported: u32 },
    #[error("snapshot format {found} is no longer read by this release (reads {supported})")]
    OlderFormat { found: u32, supported: u32 },
    #[error("snapshot is truncated: {0}")]
    Truncated(&'static str),
    #[error("snapshot checksum mismatch: the file is corrupt")]
    Checksum,
    #[error("snapshot is corrupt: {0}")]
    Corrupt(String),
    #[error("snapshot belongs elsewhere: {0}")]
    Foreign(String),
}

/// Frames a snapshot: compresses the engine state's sections and adds the header and checksum.
pub fn encode(header: &SnapshotHeader, sections: &[Vec<u8>]) -> Vec<u8> {
    let header_bytes = postcard::to_allocvec(header).expect("a header always serialises");
    let compressed = crate::parallel::map(sections, |_, s| lz4_flex::block::compress_prepend_size(s));
    let body_len = 4 + compressed.iter().map(|c| 8 + c.len()).sum::<usize>();
    let mut out = Vec::with_capacity(8 + 4 + 4 + header_bytes.len() + 8 + body_len + 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(header_bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&header_bytes);
    out.extend_from_slice(&(body_len as u64).to_le_bytes());
    out.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
    for c in &compressed {
        out.extend_from_slice(&(c.len() as u64).to_le_bytes());
        out.extend_from_slice(c);
    }
    let sum = xxh3_64(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// Checks a snapshot's framing and checksum and reads its header, without decompressing the
/// state. Returns the header and the compressed body.
pub fn open(bytes: &[u8]) -> Result<(SnapshotHeader, &[u8]), SnapshotError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(SnapshotError::NotASnapshot);
    }
    let mut r = Reader { bytes, at: MAGIC.len() };
    let version = u32::from_le_bytes(r.take(4, "format version")?.try_into().expect("4 bytes"));
    if version > FORMAT_VERSION {
        return Err(SnapshotError::NewerFormat { found: version, supported: FORMAT_VERSION });
    }
    if version < FORMAT_VERSION {
        return Err(SnapshotError::OlderFormat { found: version, supported: FORMAT_VERSION });
    }
    if bytes.len() < r.at + 8 {
        return Err(SnapshotError::Truncated("no checksum"));
    }
    let header_len = u32::from_le_bytes(r.take(4, "header length")?.try_into().expect("4 bytes")) as usize;
    let header_bytes = r.take(header_len, "header")?;
    let body_len = u64::from_le_bytes(r.take(8, "body length")?.try_into().expect("8 bytes"));
    let body = r.take(usize::try_from(body_len).map_err(|_| SnapshotError::Truncated("body"))?, "body")?;
    let end = r.at;
    let sum = r.take(8, "checksum")?;
    if r.at != bytes.len() {
        return Err(SnapshotError::Corrupt(format!("{} unexpected bytes after the checksum", bytes.len() - r.at)));
    }
    if xxh3_64(&bytes[..end]).to_le_bytes() != sum {
        return Err(SnapshotError::Checksum);
    }
    let header: SnapshotHeader =
        postcard::from_bytes(header_bytes).map_err(|e| SnapshotError::Corrupt(format!("header: {e}")))?;
    Ok((header, body))
}

/// Opens a snapshot and decompresses its state's sections.
pub fn decode(bytes: &[u8]) -> Result<(SnapshotHeader, Vec<Vec<u8>>), SnapshotError> {
    let (header, body) = open(bytes)?;
    let mut r = Reader { bytes: body, at: 0 };
    let count = u32::from_le_bytes(r.take(4, "section count")?.try_into().expect("4 bytes"));
    let mut compressed = Vec::new();
    for _ in 0..count {
        let len = u64::from_le_bytes(r.take(8, "section length")?.try_into().expect("8 bytes"));
        compressed.push(r.take(usize::try_from(len).map_err(|_| SnapshotError::Truncated("section"))?, "section")?);
    }
    if r.at != body.len() {
        return Err(SnapshotError::Corrupt(format!("{} bytes after the last section", body.len() - r.at)));
    }
    let sections = crate::parallel::map(&compressed, |_, c| lz4_flex::block::decompress_size_prepended(c));
    let sections = sections
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SnapshotError::Corrupt(format!("section: {e}")))?;
    let total: u64 = sections.iter().map(|s| s.len() as u64).sum();
    if total != header.state_bytes {
        return Err(SnapshotError::Corrupt(format!("state is {total} bytes, the header says {}", header.state_bytes)));
    }
    Ok((header, sections))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], SnapshotError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len()).ok_or(SnapshotError::Truncated(what))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SnapshotHeader {
        SnapshotHeader {
            partition: 3,
            topics: ["u".into(), "s".into(), "b".into()],
            offsets: [Some(10), None, Some(7)],
            last_times: [1, Millis::MIN, 3],
            stream_time: Some(1_700_000_000_000),
            customers: 2,
            scorecard_version: "v1".into(),
            created_ms: 5,
            state_bytes: 11,
        }
    }

    #[test]
    fn round_trips() {
        let h = SnapshotHeader { state_bytes: 16, ..header() };
        let sections = vec![b"hello world".to_vec(), Vec::new(), b"again".to_vec()];
        let bytes = encode(&h, &sections);
        assert_eq!(decode(&bytes).unwrap(), (h, sections));
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let h = SnapshotHeader { state_bytes: 24, ..header() };
        let bytes = encode(&h, &[b"hello world, hello world".to_vec()]);
        assert!(decode(&bytes).is_ok());
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "truncated to {n} bytes was accepted");
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x20;
            assert!(decode(&bad).is_err(), "a flipped byte {i} was accepted");
        }
    }

    #[test]
    fn says_why() {
        assert_eq!(decode(b"{\"json\": true}").unwrap_err(), SnapshotError::NotASnapshot);
        let mut newer = encode(&header(), &[b"hello world".to_vec()]);
        newer[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        assert_eq!(decode(&newer).unwrap_err(), SnapshotError::NewerFormat { found: 2, supported: 1 });
        let good = encode(&header(), &[b"hello world".to_vec()]);
        assert_eq!(decode(&good[..good.len() - 3]).unwrap_err(), SnapshotError::Truncated("checksum"));
        let mut flipped = good.clone();
        let n = flipped.len();
        flipped[n - 12] ^= 1;
        assert_eq!(decode(&flipped).unwrap_err(), SnapshotError::Checksum);
    }
}
