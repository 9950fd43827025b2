//! Reading one field of a raw event without parsing it: the shells order input by event time
//! before the engine parses it once, so they only need the timestamp.

use memchr::memmem;

use super::{parse_rfc3339, Millis};

/// The event time of a raw event, read by a substring search for `"timestamp"`; `None` when it
/// cannot be read that way (the full parse decides what is wrong with it later).
pub fn quick_timestamp(finder: &memmem::Finder<'_>, line: &[u8]) -> Option<Millis> {
    parse_rfc3339(std::str::from_utf8(quick_string_field(finder, line)?).ok()?)
}

/// A finder for [`quick_timestamp`]; build it once and reuse it.
pub fn timestamp_finder() -> memmem::Finder<'static> {
    memmem::Finder::new(b"\"timestamp\"")
}

/// The raw text of the first string value after the key `finder` looks for (`"key"`), up to the
/// next quote; `None` when the key is absent or not followed by a string.
pub fn quick_string_field<'a>(finder: &memmem::Finder<'_>, line: &'a [u8]) -> Option<&'a [u8]> {
    let at = finder.find(line)? + finder.needle().len();
    let rest = &line[at..];
    let open = rest.iter().position(|b| *b == b'"')?;
    if !rest[..open].iter().all(|b| *b == b':' || b.is_ascii_whitespace()) {
        return None;
    }
    let value = &rest[open + 1..];
    let close = value.iter().position(|b| *b == b'"')?;
    Some(&value[..close])
}
