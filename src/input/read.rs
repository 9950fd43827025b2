//! Reading one source line by line in bounded chunks: decompression picked by the first bytes
//! (gzip, zstd or plain), a UTF-8 byte-order mark at the start dropped, `\r\n` taken as `\n`,
//! blank lines skipped, and each line's event time read by substring search ([`quick_time`]).
//!
//! A line lives in the reader's chunk buffer until the next one is read: nothing is copied on
//! the way to the merge. The buffer only grows past its chunk size for a single longer line.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;

use memchr::memmem;

use crate::event::{quick_time, KnownTime, Millis};

/// Bytes read from a source at a time.
pub(crate) const CHUNK: usize = 1 << 18;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where a source's bytes are, once standard input has been copied to a file.
#[derive(Debug, Clone)]
pub(crate) enum Place {
    File(PathBuf),
    Memory(Arc<[u8]>),
}

/// A source's bytes, decompressed.
enum Decoded {
    Plain(BufReader<File>),
    Gzip(Box<flate2::bufread::MultiGzDecoder<BufReader<File>>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, BufReader<File>>>),
    Memory(io::Cursor<Arc<[u8]>>),
}

impl Read for Decoded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoded::Plain(r) => r.read(buf),
            Decoded::Gzip(r) => r.read(buf),
            Decoded::Zstd(r) => r.read(buf),
            Decoded::Memory(r) => r.read(buf),
        }
    }
}

/// Opens `place`, decompressing gzip (any number of members) or zstd when its first bytes say
/// so, whatever the file is called.
fn open(place: &Place) -> io::Result<Decoded> {
    let path = match place {
        Place::Memory(bytes) => return Ok(Decoded::Memory(io::Cursor::new(bytes.clone()))),
        Place::File(path) => path,
    };
    let mut file = BufReader::with_capacity(1 << 16, File::open(path)?);
    let head = file.fill_buf()?;
    Ok(if head.starts_with(&GZIP_MAGIC) {
        Decoded::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(file)))
    } else if head.starts_with(&ZSTD_MAGIC) {
        Decoded::Zstd(Box::new(zstd::stream::read::Decoder::with_buffer(file)?))
    } else {
        Decoded::Plain(file)
    })
}

/// One source's non-blank lines in file order, each with its event time. A line whose time
/// cannot be quick-read takes the time of the line before it in the same source (or the
/// earliest time, first in a source), so it keeps its place among its neighbours and is
/// rejected by the engine's parse later, as it always was.
pub(crate) struct TextLines {
    src: Decoded,
    buf: Vec<u8>,
    /// The unread bytes are `buf[pos..end]`.
    pos: usize,
    end: usize,
    eof: bool,
    line_no: u64,
    finder: memmem::Finder<'static>,
    last_time: Millis,
    /// The current line: its span in `buf`, number, time.
    cur: (usize, usize),
    head: Head,
}

/// What the merge needs to know of a stream's current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub time: Millis,
    pub known: Option<KnownTime>,
    pub line: u64,
}

impl TextLines {
    pub(crate) fn open(place: &Place) -> io::Result<Self> {
        Ok(TextLines {
            src: open(place)?,
            buf: vec![0; CHUNK],
            pos: 0,
            end: 0,
            eof: false,
            line_no: 0,
            finder: memmem::Finder::new(b"\"timestamp\"").into_owned(),
            last_time: Millis::MIN,
            cur: (0, 0),
            head: Head { time: Millis::MIN, known: None, line: 0 },
        })
    }

    /// The current line's bytes (after a successful [`TextLines::advance`]).
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf[self.cur.0..self.cur.1]
    }

    pub(crate) fn head(&self) -> Head {
        self.head
    }

    /// Moves to the next non-blank line; `false` at the end of the source.
    pub(crate) fn advance(&mut self) -> io::Result<bool> {
        loop {
            let Some((start, end)) = self.raw_line()? else { return Ok(false) };
            self.line_no += 1;
            let mut line = &self.buf[start..end];
            if self.line_no == 1 {
                line = line.strip_prefix(BOM).unwrap_or(line);
            }
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let known = quick_time(&self.finder, line);
            let time = known.map_or(self.last_time, |k| k.millis);
            self.last_time = time;
            let offset = line.as_ptr() as usize - self.buf.as_ptr() as usize;
            self.cur = (offset, offset + line.len());
            self.head = Head { time, known, line: self.line_no };
            return Ok(true);
        }
    }

    /// The span of the next line in `buf`, without its `\n`; refills the buffer as needed.
    fn raw_line(&mut self) -> io::Result<Option<(usize, usize)>> {
        let mut searched = self.pos;
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[searched..self.end]) {
                let (start, end) = (self.pos, searched + i);
                self.pos = end + 1;
                return Ok(Some((start, end)));
            }
            if self.eof {
                if self.pos < self.end {
                    let start = self.pos;
                    self.pos = self.end;
                    return Ok(Some((start, self.end)));
                }
                return Ok(None);
            }
            // Keep the partial line, read more after it.
            let partial = self.end - self.pos;
            if self.pos > 0 {
                self.buf.copy_within(self.pos..self.end, 0);
                self.pos = 0;
                self.end = partial;
            }
            if self.end == self.buf.len() {
                let grown = self.buf.len() * 2;
                self.buf.resize(grown, 0);
            }
            searched = self.end;
            let n = read_some(&mut self.src, &mut self.buf[self.end..])?;
            if n == 0 {
                self.eof = true;
            }
            self.end += n;
        }
    }
}

fn read_some(src: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match src.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[u8]) -> Vec<(u64, Millis, Vec<u8>)> {
        let mut r = TextLines::open(&Place::Memory(text.into())).unwrap();
        let mut out = Vec::new();
        while r.advance().unwrap() {
            out.push((r.head().line, r.head().time, r.bytes().to_vec()));
        }
        out
    }

    #[test]
    fn a_bom_crlf_and_blank_lines_are_dropped_and_lines_keep_their_numbers() {
        let got = lines(b"\xEF\xBB\xBF{\"a\":1}\r\n\r\n  \n{\"b\":2}");
        assert_eq!(got, vec![(1, Millis::MIN, b"{\"a\":1}".to_vec()), (4, Millis::MIN, b"{\"b\":2}".to_vec())]);
    }

    #[test]
    fn a_line_without_a_readable_time_takes_its_predecessors() {
        let got = lines(b"x\n{\"timestamp\":\"2026-01-05T00:00:00Z\"}\nnot json\n");
        let t = crate::event::parse_rfc3339("2026-01-05T00:00:00Z").unwrap();
        let times: Vec<Millis> = got.iter().map(|l| l.1).collect();
        assert_eq!(times, vec![Millis::MIN, t, t]);
    }

    #[test]
    fn lines_longer_than_a_chunk_are_read_whole() {
        let long = vec![b'x'; CHUNK * 3 + 7];
        let mut text = b"a\n".to_vec();
        text.extend_from_slice(&long);
        text.extend_from_slice(b"\nb");
        let got = lines(&text);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].2, long);
        assert_eq!(got[2], (3, Millis::MIN, b"b".to_vec()));
    }
}
