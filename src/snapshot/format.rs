//! The snapshot file format: a small header anyone can read, the engine's state compressed, and
//! a checksum over everything.
//!
//! ```text
//! magic      8 bytes  "HSSNAP\r\n" (the line break catches text-mode mangling)
//! version    u32 LE   FORMAT_VERSION
//! header     u32 LE length, then the header (postcard)
//! body       u64 LE length, then the body:
//!              u32 LE section count, then per section: u64 LE length, then its frames
//!              (the engine state's sections, postcard, encoded and decoded in parallel), each
//!              u32 LE length before compression, u32 LE compressed length, an LZ4 block
//!              (frames of ~256 KiB end between two customers, so a reader decodes one at a time)
//! checksum   u64 LE   XXH3-64 of every byte before it
//! ```
//!
//! The format version is checked before anything else is decoded, so a file from a newer
//! release is refused with that reason rather than misread; a change to the header or to the
//! state's layout bumps it (see "Upgrades" in docs/operations.md, State and recovery: an
//! unreadable snapshot costs a re-read of the input, never a wrong state).

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::event::Millis;

pub const MAGIC: &[u8; 8] = b"HSSNAP\r\n";
/// Bumped on any change to the header or to the state's encoding.
/// 2: sections compressed frame by frame (1 compressed each section as one block).
/// 3: the stream clock carries the leaps not yet confirmed (`max_lead_secs`).
/// 4: the first section carries the reference population of relative curves.
/// 5: the first section carries the online learner's state (empty when learning is off).
/// 6: a customer keeps its contract term (`contract_term_days`), and so do the learner's sightings.
pub const FORMAT_VERSION: u32 = 6;

/// Encoded state per frame before compression: large enough that LZ4 (64 KiB window) loses
/// nothing to frame breaks, small enough to stay in cache between encoding and compressing.
pub const FRAME_BYTES: usize = 256 * 1024;

/// A frame larger than this before compression is refused as corrupt (a frame holds whole
/// customers, and one customer's state is bounded far below it), so a damaged length cannot
/// make a reader allocate without bound.
const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

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

/// Appends `raw` to a section as one compressed frame (an [`crate::engine::Pack`]).
pub fn pack_frame(raw: &[u8], out: &mut Vec<u8>) {
    let at = out.len();
    out.resize(at + 8 + lz4_flex::block::get_maximum_output_size(raw.len()), 0);
    let n = lz4_flex::block::compress_into(raw, &mut out[at + 8..]).expect("the output has the maximum size");
    out[at..at + 4].copy_from_slice(&(raw.len() as u32).to_le_bytes());
    out[at + 4..at + 8].copy_from_slice(&(n as u32).to_le_bytes());
    out.truncate(at + 8 + n);
}

/// Decompresses the frame at the start of `packed` into `raw` and returns the bytes it took
/// (an [`crate::engine::Unpack`]).
pub fn unpack_frame(packed: &[u8], raw: &mut Vec<u8>) -> Result<usize, String> {
    let field = |at: usize| -> Result<usize, String> {
        let bytes = packed.get(at..at + 4).ok_or("truncated frame header")?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")) as usize)
    };
    let (len, compressed) = (field(0)?, field(4)?);
    if len > MAX_FRAME_BYTES {
        return Err(format!("a frame of {len} bytes"));
    }
    let block = packed.get(8..8 + compressed).ok_or("truncated frame")?;
    raw.resize(len, 0);
    let n = lz4_flex::block::decompress_into(block, raw).map_err(|e| format!("frame: {e}"))?;
    if n != len {
        return Err(format!("a frame of {n} bytes, its header says {len}"));
    }
    Ok(8 + compressed)
}

/// Frames a snapshot: the engine state's packed sections (see [`pack_frame`]) with the
/// header, and the checksum.
pub fn encode(header: &SnapshotHeader, sections: &[Vec<u8>]) -> Vec<u8> {
    let header_bytes = postcard::to_allocvec(header).expect("a header always serialises");
    let body_len = 4 + sections.iter().map(|c| 8 + c.len()).sum::<usize>();
    let mut out = Vec::with_capacity(8 + 4 + 4 + header_bytes.len() + 8 + body_len + 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(header_bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&header_bytes);
    out.extend_from_slice(&(body_len as u64).to_le_bytes());
    out.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    for c in sections {
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

/// Opens a snapshot and splits its body into the state's packed sections (still compressed:
/// [`crate::engine::Engine::from_state_packed`] with [`unpack_frame`] decodes them).
pub fn decode(bytes: &[u8]) -> Result<(SnapshotHeader, Vec<&[u8]>), SnapshotError> {
    let (header, body) = open(bytes)?;
    let mut r = Reader { bytes: body, at: 0 };
    let count = u32::from_le_bytes(r.take(4, "section count")?.try_into().expect("4 bytes"));
    let mut sections = Vec::new();
    for _ in 0..count {
        let len = u64::from_le_bytes(r.take(8, "section length")?.try_into().expect("8 bytes"));
        sections.push(r.take(usize::try_from(len).map_err(|_| SnapshotError::Truncated("section"))?, "section")?);
    }
    if r.at != body.len() {
        return Err(SnapshotError::Corrupt(format!("{} bytes after the last section", body.len() - r.at)));
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
        let (header, decoded) = decode(&bytes).unwrap();
        assert_eq!(header, h);
        assert_eq!(decoded, sections.iter().map(Vec::as_slice).collect::<Vec<_>>());
    }

    #[test]
    fn frames_round_trip_and_a_damaged_frame_is_refused() {
        let (a, b) = (b"hello world, hello world".repeat(10), b"again".to_vec());
        let mut packed = Vec::new();
        pack_frame(&a, &mut packed);
        pack_frame(&b, &mut packed);
        pack_frame(&[], &mut packed);
        let mut raw = Vec::new();
        let n = unpack_frame(&packed, &mut raw).unwrap();
        assert_eq!(raw, a);
        assert!(n < a.len(), "compressed");
        let m = unpack_frame(&packed[n..], &mut raw).unwrap();
        assert_eq!(raw, b);
        assert_eq!(unpack_frame(&packed[n + m..], &mut raw), Ok(packed.len() - n - m), "the empty frame is the rest");
        assert!(raw.is_empty());
        for cut in 0..n {
            assert!(unpack_frame(&packed[..cut], &mut raw).is_err(), "a frame cut to {cut} bytes was accepted");
        }
        let mut longer = packed.clone();
        longer[0] += 1;
        assert!(unpack_frame(&longer, &mut raw).is_err(), "a frame longer than its header says");
        longer[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(unpack_frame(&longer, &mut raw), Err(format!("a frame of {} bytes", u32::MAX)));
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
        assert_eq!(
            decode(&newer).unwrap_err(),
            SnapshotError::NewerFormat { found: FORMAT_VERSION + 1, supported: FORMAT_VERSION }
        );
        let good = encode(&header(), &[b"hello world".to_vec()]);
        assert_eq!(decode(&good[..good.len() - 3]).unwrap_err(), SnapshotError::Truncated("checksum"));
        let mut flipped = good.clone();
        let n = flipped.len();
        flipped[n - 12] ^= 1;
        assert_eq!(decode(&flipped).unwrap_err(), SnapshotError::Checksum);
    }
}
