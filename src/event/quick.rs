//! Reading one field of a raw event without parsing it: the shells order input by event time
//! before the engine parses it once, so they only need the timestamp.

use memchr::memmem;

use super::time::parse_rfc3339_bytes;
use super::Millis;

/// An event time read by [`quick_time`], with where its text lies in the bytes it was read from.
/// The full parse (`parse_known`) takes it: when the `timestamp` it finds is that very text, it
/// uses this value instead of parsing the text again (same text, same value, so the outcome is
/// exactly a plain parse's; it saves a tenth of the parse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownTime {
    pub start: u32,
    pub len: u32,
    pub millis: Millis,
}

impl KnownTime {
    /// Whether `text` is the span this time was read from, in `bytes`.
    pub fn read_from(&self, bytes: &[u8], text: &str) -> bool {
        text.len() == self.len as usize && std::ptr::eq(text.as_ptr(), bytes.as_ptr().wrapping_add(self.start as usize))
    }
}

/// The event time of a raw event, read by a substring search for `"timestamp"`, with where its
/// text was (see [`KnownTime`]); `None` when it cannot be read that way (the full parse decides
/// what is wrong with it later).
pub fn quick_time(finder: &memmem::Finder<'_>, line: &[u8]) -> Option<KnownTime> {
    let text = quick_string_field(finder, line)?;
    let millis = match parse_rfc3339_bytes(text) {
        Some(millis) => millis,
        // JSON escapes (`\u005A` for `Z`) are legal and the full parse reads them, so ordering
        // must too: else such an event is ordered by its neighbour's time, not its own. Rare, so
        // the unescape allocates. (The span then never matches the parsed, owned text, so
        // `parse_known` reads the time again itself.)
        None if memchr::memchr(b'\\', text).is_some() => unescaped_time(text)?,
        None => return None,
    };
    let start = text.as_ptr() as usize - line.as_ptr() as usize;
    Some(KnownTime { start: u32::try_from(start).ok()?, len: u32::try_from(text.len()).ok()?, millis })
}

/// The time in a timestamp's raw text that holds JSON escapes.
fn unescaped_time(raw: &[u8]) -> Option<Millis> {
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    let text: String = serde_json::from_slice(&quoted).ok()?;
    parse_rfc3339_bytes(text.as_bytes())
}

/// A finder for [`quick_time`]; build it once and reuse it.
pub fn timestamp_finder() -> memmem::Finder<'static> {
    memmem::Finder::new(b"\"timestamp\"")
}

/// The raw text of the first string value after the key `finder` looks for (`"key"`), up to the
/// next quote; `None` when the key is absent or not followed by a string.
pub fn quick_string_field<'a>(finder: &memmem::Finder<'_>, line: &'a [u8]) -> Option<&'a [u8]> {
    let at = finder.find(line)? + finder.needle().len();
    let rest = &line[at..];
    // Nearly every producer writes `"key":"`; anything else is searched for.
    let value = match rest.strip_prefix(b":\"") {
        Some(value) => value,
        None => {
            let open = memchr::memchr(b'"', rest)?;
            if !rest[..open].iter().all(|b| *b == b':' || b.is_ascii_whitespace()) {
                return None;
            }
            &rest[open + 1..]
        }
    };
    let close = memchr::memchr(b'"', value)?;
    Some(&value[..close])
}
